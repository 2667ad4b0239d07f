//! WeCom's service providers (企业微信服务商): `WECOM_SUITES`, the suites whose tokens this
//! server keeps (third-party apps, and 代开发 templates whose ids start with `dk`), and
//! `WECOM_PROVIDER`, the provider's own corpid and secret; and the suite ticket's timing.
//! Pure.
//!
//! Errors name the variable, the entry and the field, never a value other than a suite id.

use crate::error::AppError;
use crate::policy::accounts::{is_identifier, Account, AccountKind, TokenApi};
use crate::policy::fingerprint::fingerprint;
use crate::policy::platform::{encoding_aes_key, PendingCode, PlatformState};
use serde_json::{Map, Value};

const SUITES: &str = "WECOM_SUITES";
const PROVIDER: &str = "WECOM_PROVIDER";
const SUITE_FIELDS: [&str; 4] = ["suite_id", "suite_secret", "token", "encoding_aes_key"];
const PROVIDER_FIELDS: [&str; 2] = ["corpid", "provider_secret"];

/// WeCom pushes a suite ticket every ten minutes; each is good for 30 minutes from its
/// `TimeStamp` (WeCom's 推送suite_ticket).
pub const SUITE_TICKET_LIFE_SECS: u64 = 30 * 60;
/// Two pushes missed in a row: the alert, while the ticket still works.
pub const SUITE_TICKET_STALE_SECS: u64 = 20 * 60;
/// The provider's account id (its token is the provider_access_token).
pub const PROVIDER_ACCOUNT_ID: &str = "wecom_provider";

/// One suite: an account of kind `wecom_suite` named by its suite id, the token its pushes
/// are signed with, and the AES key they are sealed with.
#[derive(Clone, PartialEq, Eq)]
pub struct Suite {
    pub account: Account,
    pub push_token: String,
    pub aes_key: [u8; 32],
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite")
            .field("account", &self.account)
            .field("push_token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// The provider: an account of kind `wecom_provider` whose appid is its corpid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    pub account: Account,
}

impl Provider {
    pub fn corpid(&self) -> &str {
        &self.account.appid
    }
}

/// How many codes a suite remembers having received, so that WeCom's retry of a push is not
/// exchanged twice.
const REMEMBERED_CODES: usize = 32;

/// A corporation's account id: `<suite_id>.<corpid>` (corpids case-preserved: WeCom's
/// encrypted corpids are case-sensitive).
pub fn corp_account_id(suite_id: &str, corpid: &str) -> String {
    format!("{suite_id}.{corpid}")
}

/// A corporation that authorized `suite_id`, its permanent code as its secret.
pub fn corp_account(suite_id: &str, corpid: &str, permanent_code: &str) -> Account {
    Account::new(
        &corp_account_id(suite_id, corpid),
        AccountKind::WeComCorp,
        corpid,
        permanent_code,
        TokenApi::WeComCorp,
    )
}

/// The suite a corporation's account id names.
pub fn suite_of(corp_account_id: &str) -> Option<&str> {
    corp_account_id.split_once('.').map(|(suite, _)| suite)
}

/// A suite's object takes a pushed authorization code: false if it had it already (WeCom's
/// retry of a push stored before). The code waits in `auth_codes` for its exchange.
pub fn take_auth_code(state: &mut PlatformState, code: &str, created_at: u64) -> bool {
    let seen = fingerprint(code);
    if state.recent_codes.contains(&seen) {
        return false;
    }
    state.recent_codes.push(seen);
    if state.recent_codes.len() > REMEMBERED_CODES {
        state.recent_codes.remove(0);
    }
    state.auth_codes.push(PendingCode {
        code: code.to_owned(),
        created_at,
    });
    true
}

/// How long a corporation's pushes are remembered for ordering: WeCom retries a push for
/// minutes, not days.
const PUSH_ORDER_MEMORY_SECS: u64 = 7 * 86_400;

/// Forgets the corporations whose last push is older than a week (the map is stored with
/// every write of the suite's state).
fn forget_old_pushes(state: &mut PlatformState, now: u64) {
    state.corp_pushes.retain(|_, p| {
        let last = p.authorized_at.max(p.withdrawn_at).unwrap_or(0);
        last + PUSH_ORDER_MEMORY_SECS > now
    });
}

/// Whether a corporation's authorization pushed at `created_at` is not older than what was
/// acted on (its latest authorization and withdrawal); if so, it is recorded. Within one
/// second the order of arrival decides.
pub fn admit_authorization(state: &mut PlatformState, corpid: &str, created_at: u64) -> bool {
    forget_old_pushes(state, created_at);
    let pushes = state.corp_pushes.entry(corpid.to_owned()).or_default();
    let not_older = |at: Option<u64>| at.is_none_or(|at| created_at >= at);
    let admitted = not_older(pushes.authorized_at) && not_older(pushes.withdrawn_at);
    if admitted {
        pushes.authorized_at = Some(created_at);
    }
    admitted
}

/// Whether a corporation's withdrawal pushed at `created_at` is not older than its latest
/// authorization; if so, it is recorded (an authorization exchanged later, but pushed
/// before it, is then not registered).
pub fn admit_withdrawal(state: &mut PlatformState, corpid: &str, created_at: u64) -> bool {
    forget_old_pushes(state, created_at);
    let pushes = state.corp_pushes.entry(corpid.to_owned()).or_default();
    let admitted = pushes.authorized_at.is_none_or(|at| created_at >= at);
    if admitted {
        pushes.withdrawn_at = Some(pushes.withdrawn_at.unwrap_or(0).max(created_at));
    }
    admitted
}

/// A suite's ticket to fetch its token with (its object keeps it where the component keeps
/// its verify ticket): the latest, for 30 minutes from its `TimeStamp`.
pub fn usable_suite_ticket(state: &PlatformState, now: u64) -> Option<&str> {
    state
        .verify_ticket
        .as_ref()
        .filter(|t| now < t.issued_at() + SUITE_TICKET_LIFE_SECS)
        .map(|t| t.ticket.as_str())
}

fn config_error(variable: &'static str, problem: String) -> AppError {
    AppError::Config { variable, problem }
}

/// The fields of one JSON object, each a non-empty string, none unknown.
fn fields<'a>(
    object: &'a Map<String, Value>,
    known: &[&str],
    fail: &dyn Fn(String) -> AppError,
) -> Result<Vec<&'a str>, AppError> {
    if let Some(unknown) = object.keys().find(|key| !known.contains(&key.as_str())) {
        let name: String = unknown.chars().take(32).collect();
        return Err(fail(format!(
            "has an unknown field \"{name}\" (fields: {})",
            known.join(", ")
        )));
    }
    known
        .iter()
        .map(|field| match object.get(*field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
            None | Some(Value::Null) => Err(fail(format!("has no \"{field}\""))),
            Some(_) => Err(fail(format!(
                "has a \"{field}\" that is not a non-empty string"
            ))),
        })
        .collect()
}

/// `WECOM_SUITES`: a JSON array of `{"suite_id","suite_secret","token","encoding_aes_key"}`.
pub fn parse_suites(value: Option<&str>) -> Result<Vec<Suite>, AppError> {
    let Some(text) = value else {
        return Ok(Vec::new());
    };
    let entries = match serde_json::from_str(text) {
        Ok(Value::Array(entries)) => entries,
        _ => {
            return Err(config_error(
                SUITES,
                "must be a JSON array of {\"suite_id\",\"suite_secret\",\"token\",\
                 \"encoding_aes_key\"}"
                    .into(),
            ))
        }
    };
    let mut suites: Vec<Suite> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let fail = |problem: String| config_error(SUITES, format!("entry {index} {problem}"));
        let Value::Object(object) = entry else {
            return Err(fail("is not a JSON object".into()));
        };
        let [suite_id, suite_secret, push_token, key] = fields(object, &SUITE_FIELDS, &fail)?[..]
        else {
            unreachable!("one value per field")
        };
        if !is_identifier(suite_id) {
            return Err(fail(
                "has a \"suite_id\" with characters other than letters, digits, '_' and '-'".into(),
            ));
        }
        if suites.iter().any(|s| s.account.id == suite_id) {
            return Err(fail(format!("repeats the suite_id \"{suite_id}\"")));
        }
        let aes_key = encoding_aes_key(key).ok_or_else(|| {
            fail(
                "has an \"encoding_aes_key\" that is not 43 characters of base64 (the suite's \
                 EncodingAESKey)"
                    .into(),
            )
        })?;
        let account = Account::new(
            suite_id,
            AccountKind::WeComSuite,
            suite_id,
            suite_secret,
            TokenApi::WeComSuite,
        );
        suites.push(Suite {
            account,
            push_token: push_token.to_owned(),
            aes_key,
        });
    }
    Ok(suites)
}

/// `WECOM_PROVIDER`: `{"corpid","provider_secret"}`.
pub fn parse_provider(value: Option<&str>) -> Result<Option<Provider>, AppError> {
    let Some(text) = value else {
        return Ok(None);
    };
    let fail = |problem: String| config_error(PROVIDER, problem);
    let Ok(Value::Object(object)) = serde_json::from_str(text) else {
        return Err(fail(
            "must be a JSON object {\"corpid\",\"provider_secret\"}".into(),
        ));
    };
    let [corpid, secret] = fields(&object, &PROVIDER_FIELDS, &fail)?[..] else {
        unreachable!("one value per field")
    };
    if !is_identifier(corpid) {
        return Err(fail(
            "has a \"corpid\" with characters other than letters, digits, '_' and '-'".into(),
        ));
    }
    let account = Account::new(
        PROVIDER_ACCOUNT_ID,
        AccountKind::WeComProvider,
        corpid,
        secret,
        TokenApi::WeComProvider,
    );
    Ok(Some(Provider { account }))
}

#[cfg(test)]
mod tests;
