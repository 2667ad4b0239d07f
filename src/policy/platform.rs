//! The third-party platform (开放平台): `WECHAT_COMPONENT`, what each object of the platform
//! keeps besides its token (the component's verify ticket, an authorizer's refresh token), and
//! the platform's timing rules. Pure.

use crate::error::AppError;
use crate::policy::accounts::{is_identifier, Account, AccountKind, TokenApi};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::{alphabet, Engine};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const VARIABLE: &str = "WECHAT_COMPONENT";
const FIELDS: [&str; 5] = [
    "appid",
    "secret",
    "token",
    "encoding_aes_key",
    "previous_encoding_aes_key",
];

/// WeChat pushes a verify ticket every ten minutes; each is good for 12 hours.
pub const VERIFY_TICKET_LIFE_SECS: u64 = 12 * 3600;
/// The server asks WeChat to push a ticket again (`api_start_push_ticket`) at most this often.
pub const PUSH_REQUEST_INTERVAL_SECS: u64 = 3600;
/// The largest push body taken.
pub const MAX_PUSH_BYTES: usize = 64 * 1024;

/// `WECHAT_COMPONENT`: the platform's appid and appsecret (its token is the component token),
/// the message token its pushes are signed with, and the AES keys they are sealed with.
#[derive(Clone, PartialEq, Eq)]
pub struct Component {
    /// An account of kind `component`, its id the platform's appid.
    pub account: Account,
    pub push_token: String,
    /// The current `encoding_aes_key`, then the previous one if set.
    pub aes_keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("account", &self.account)
            .field("push_token", &"[redacted]")
            .field("aes_keys", &self.aes_keys.len())
            .finish()
    }
}

/// An `EncodingAESKey`'s last character carries 2 bits past the key's 256: WeChat's keys are
/// random characters, so those bits are rarely zero, and a strict decoder refuses most keys.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// `EncodingAESKey`: 43 characters of base64 that, with "=", are the 32-byte AES key.
pub fn encoding_aes_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 43 {
        return None;
    }
    let bytes = KEY_BASE64.decode(format!("{text}=")).ok()?;
    bytes.try_into().ok()
}

/// `WECHAT_COMPONENT`, if set. Errors name the field, never a value.
pub fn parse(value: Option<&str>) -> Result<Option<Component>, AppError> {
    let Some(text) = value else {
        return Ok(None);
    };
    let fail = |problem: String| AppError::Config {
        variable: VARIABLE,
        problem,
    };
    let object: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(object)) => object,
        _ => {
            return Err(fail(
                "must be a JSON object {\"appid\",\"secret\",\"token\",\"encoding_aes_key\"}"
                    .into(),
            ))
        }
    };
    if let Some(unknown) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        let name: String = unknown.chars().take(32).collect();
        return Err(fail(format!(
            "has an unknown field \"{name}\" (fields: {})",
            FIELDS.join(", ")
        )));
    }
    let text = |field: &str| -> Result<Option<&str>, AppError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim())),
            Some(_) => Err(fail(format!(
                "has a \"{field}\" that is not a non-empty string"
            ))),
        }
    };
    let required = |field: &str| text(field)?.ok_or_else(|| fail(format!("has no \"{field}\"")));
    let appid = required("appid")?;
    if !is_identifier(appid) {
        return Err(fail(
            "has an \"appid\" with characters other than letters, digits, '_' and '-'".into(),
        ));
    }
    let secret = required("secret")?;
    let push_token = required("token")?;
    let key = |field: &str, value: &str| {
        encoding_aes_key(value).ok_or_else(|| {
            fail(format!(
                "has a \"{field}\" that is not 43 characters of base64 (the platform's \
                 消息加解密Key)"
            ))
        })
    };
    let mut aes_keys = vec![key("encoding_aes_key", required("encoding_aes_key")?)?];
    if let Some(previous) = text("previous_encoding_aes_key")? {
        aes_keys.push(key("previous_encoding_aes_key", previous)?);
    }
    let account = Account::new(
        appid,
        AccountKind::Component,
        appid,
        secret,
        TokenApi::Component,
    );
    Ok(Some(Component {
        account,
        push_token: push_token.to_owned(),
        aes_keys,
    }))
}

/// An authorizer: an account of kind `authorizer`, named by its appid; its refresh token lives
/// in its object, not here.
pub fn authorizer(appid: &str) -> Account {
    Account::new(
        appid,
        AccountKind::Authorizer,
        appid,
        "",
        TokenApi::Authorizer,
    )
}

/// A verify ticket as the component's object keeps it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyTicket {
    pub ticket: String,
    pub received_at: u64,
    /// WeChat's CreateTime: a push older than the stored ticket (a replay) is ignored.
    #[serde(default)]
    pub created_at: u64,
}

/// What a platform object keeps besides its credentials, in storage under its own key.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformState {
    /// The component: the latest verify ticket WeChat pushed. A WeCom suite: the latest
    /// suite ticket WeCom pushed.
    #[serde(default)]
    pub verify_ticket: Option<VerifyTicket>,
    /// The component: when it last asked WeChat to push a ticket.
    #[serde(default)]
    pub push_requested_at: Option<u64>,
    /// An authorizer: its refresh token (WeChat's only way to its tokens).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// An authorizer: an authorization code not yet exchanged.
    #[serde(default)]
    pub authorization_code: Option<String>,
    /// An authorizer: when it (last) authorized the platform.
    #[serde(default)]
    pub authorized_at: Option<u64>,
    /// An authorizer: when its refresh token was last looked up in the authorizer list.
    #[serde(default)]
    pub refresh_lookup_at: Option<u64>,
    /// The component: since when it has waited for its first verify ticket (for alerts).
    #[serde(default)]
    pub no_ticket_since: Option<u64>,
    /// An authorizer: the CreateTime of the latest authorization push acted on, and of the
    /// withdrawal that erased it (kept through the erase), so that pushes act in WeChat's
    /// order however they arrive.
    #[serde(default)]
    pub authorization_pushed_at: Option<u64>,
    #[serde(default)]
    pub withdrawal_pushed_at: Option<u64>,
    /// An authorizer: the fingerprint of the last authorization code received, so that
    /// WeChat's retry of a push already stored does not send its code a second time.
    #[serde(default)]
    pub last_code_fingerprint: Option<String>,
    /// A WeCom suite: authorization codes pushed and not yet exchanged (each single-use).
    #[serde(default)]
    pub auth_codes: Vec<PendingCode>,
    /// A WeCom suite: per corporation, the TimeStamps of the latest authorization acted on
    /// and of the latest withdrawal, so that pushes act in WeCom's order.
    #[serde(default)]
    pub corp_pushes: std::collections::BTreeMap<String, CorpPushes>,
    /// A WeCom suite: the fingerprints of the last codes pushed, so that WeCom's retry of a
    /// push is not exchanged twice.
    #[serde(default)]
    pub recent_codes: Vec<String>,
    /// A WeCom suite: permanent codes WeCom gave (sealed for their corporation's account id)
    /// whose corporation is not registered yet: kept until it is, or until a withdrawal
    /// pushed after them makes them moot.
    #[serde(default)]
    pub exchanged: Vec<ExchangedCode>,
    /// A WeCom corporation: what it authorized (WeCom's auth info), and whether a
    /// `change_auth` asks for it again.
    #[serde(default)]
    pub auth_info: Option<AuthInfo>,
    /// The fingerprint of the permanent code the auth info was read with: a new code (a new
    /// installation) reads it again.
    #[serde(default)]
    pub auth_info_code: Option<String>,
    #[serde(default)]
    pub auth_info_stale: bool,
    #[serde(default)]
    pub auth_info_tried_at: Option<u64>,
}

/// A WeCom corporation's authorization code waiting for its exchange, with its push's
/// TimeStamp.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCode {
    pub code: String,
    pub created_at: u64,
}

impl std::fmt::Debug for PendingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingCode([code], {})", self.created_at)
    }
}

/// A corporation's permanent code, sealed, waiting for its registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangedCode {
    pub corpid: String,
    pub sealed_permanent_code: String,
    /// The TimeStamp of the push whose code it was exchanged for.
    pub created_at: u64,
}

/// What a WeCom suite's object knows of one corporation's pushes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpPushes {
    pub authorized_at: Option<u64>,
    pub withdrawn_at: Option<u64>,
}

/// What a corporation authorized, as WeCom's `v2/get_auth_info` answers it: nothing
/// secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthInfo {
    pub corp_name: String,
    /// The suite's applications in the corporation (one for a single-app suite): the
    /// `agentid` that `wx.agentConfig` and the corporation's message calls name.
    pub agents: Vec<Agent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub agentid: u64,
    pub name: String,
}

/// An authorizer's pushes that change whether it is authorized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationPush {
    /// `authorized`, `updateauthorized`, or a fast registration's result.
    Authorized,
    /// `unauthorized`.
    Withdrawn,
}

impl VerifyTicket {
    /// When WeChat issued it (when it arrived, for one stored without its CreateTime).
    pub fn issued_at(&self) -> u64 {
        match self.created_at {
            0 => self.received_at,
            at => at,
        }
    }
}

impl std::fmt::Debug for PlatformState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformState")
            .field(
                "verify_ticket_received_at",
                &self.verify_ticket.as_ref().map(|t| t.received_at),
            )
            .field("push_requested_at", &self.push_requested_at)
            .field("refresh_token", &self.refresh_token.is_some())
            .field("authorization_code", &self.authorization_code.is_some())
            .field("authorized_at", &self.authorized_at)
            .field("auth_codes", &self.auth_codes.len())
            .finish()
    }
}

impl PlatformState {
    /// Whether a push of `created_at` (WeChat's CreateTime) is not older than what was acted
    /// on: an authorization not older than the latest authorization or withdrawal, a
    /// withdrawal not older than the latest authorization. (Within one second the order of
    /// arrival decides; a retry of a code already received is told apart by the code.)
    pub fn admits(&self, push: AuthorizationPush, created_at: u64) -> bool {
        let not_older = |at: Option<u64>| at.is_none_or(|at| created_at >= at);
        match push {
            AuthorizationPush::Authorized => {
                not_older(self.authorization_pushed_at) && not_older(self.withdrawal_pushed_at)
            }
            AuthorizationPush::Withdrawn => not_older(self.authorization_pushed_at),
        }
    }

    /// What an erased authorizer keeps: the order of its pushes, nothing else.
    pub fn withdrawn(&self, created_at: u64) -> Self {
        Self {
            authorization_pushed_at: self.authorization_pushed_at,
            withdrawal_pushed_at: Some(created_at),
            last_code_fingerprint: self.last_code_fingerprint.clone(),
            ..Self::default()
        }
    }

    /// The verify ticket to fetch the component token with: the latest, while WeChat still
    /// takes it.
    pub fn usable_ticket(&self, now: u64) -> Option<&str> {
        self.verify_ticket
            .as_ref()
            .filter(|t| now < t.received_at + VERIFY_TICKET_LIFE_SECS)
            .map(|t| t.ticket.as_str())
    }

    /// Whether an authorizer without a refresh token may look it up in the authorizer list
    /// (at most once per [`PUSH_REQUEST_INTERVAL_SECS`]: a lost one rarely comes back).
    pub fn refresh_lookup_due(&self, now: u64) -> bool {
        self.refresh_lookup_at
            .is_none_or(|at| now >= at + PUSH_REQUEST_INTERVAL_SECS)
    }

    /// Whether to ask WeChat to push a ticket now (at most once per
    /// [`PUSH_REQUEST_INTERVAL_SECS`]).
    pub fn push_request_due(&self, now: u64) -> bool {
        self.push_requested_at
            .is_none_or(|at| now >= at + PUSH_REQUEST_INTERVAL_SECS)
    }
}

#[cfg(test)]
mod tests;
