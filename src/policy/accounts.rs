//! The accounts this server keeps tokens for: `WECHAT_ACCOUNTS` (a JSON array) and the
//! one-account shorthand `WECHAT_APPID` + `WECHAT_APPSECRET`. Pure.
//!
//! Entries are validated field by field rather than through serde's derive, whose messages can
//! quote the offending value (a misplaced secret, say). Errors name the entry, never a value
//! other than its id.
//!
//! Over 400 lines: the kinds and token APIs of every account (the platform's and WeCom's
//! service providers' among them) sit beside the parsing that names them.

use crate::error::AppError;
use crate::policy::fingerprint::issuer_fingerprint;
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountKind {
    OfficialAccount,
    MiniProgram,
    WeCom,
    /// The third-party platform itself (`WECHAT_COMPONENT`): its token is the
    /// component_access_token.
    Component,
    /// An account that authorized the platform: its token comes through the platform, with
    /// the refresh token its object keeps.
    Authorizer,
    /// A WeCom service provider's suite (`WECOM_SUITES`): its token is the
    /// suite_access_token, fetched with the latest suite ticket WeCom pushed.
    WeComSuite,
    /// The WeCom service provider itself (`WECOM_PROVIDER`): its token is the
    /// provider_access_token.
    WeComProvider,
    /// A corporation that authorized a suite: its token comes with the suite's token and its
    /// permanent code (the registry keeps it sealed, as an appsecret).
    WeComCorp,
}

impl AccountKind {
    /// A WeCom account of any kind: WeCom's API, limits and errors, never WeChat's (no
    /// openapi quota, rid lookup or quota clear).
    pub fn is_wecom(self) -> bool {
        matches!(
            self,
            Self::WeCom | Self::WeComSuite | Self::WeComProvider | Self::WeComCorp
        )
    }

    /// The kinds an operator configures (`WECHAT_ACCOUNTS`, the admin API).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::OfficialAccount, Self::MiniProgram, Self::WeCom]
            .into_iter()
            .find(|kind| kind.name() == name)
    }

    /// Any kind, as the registry stores it (authorizers are registered by the platform).
    pub fn parse_stored(name: &str) -> Option<Self> {
        Self::parse(name).or(match name {
            "component" => Some(Self::Component),
            "authorizer" => Some(Self::Authorizer),
            "wecom_corp" => Some(Self::WeComCorp),
            _ => None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OfficialAccount => "official_account",
            Self::MiniProgram => "mini_program",
            Self::WeCom => "wecom",
            Self::Component => "component",
            Self::Authorizer => "authorizer",
            Self::WeComSuite => "wecom_suite",
            Self::WeComProvider => "wecom_provider",
            Self::WeComCorp => "wecom_corp",
        }
    }

    /// A kind that only names its own accounts: never found by an appid shared with
    /// another (a provider's corpid is also its own apps' corpid).
    pub fn named_only(self) -> bool {
        matches!(self, Self::WeComSuite | Self::WeComProvider)
    }
}

/// Which WeChat endpoint issues the account's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenApi {
    /// `GET /cgi-bin/token`
    Classic,
    /// `POST /cgi-bin/stable_token`
    Stable,
    /// WeCom's `GET /cgi-bin/gettoken`
    WeCom,
    /// `POST /cgi-bin/component/api_component_token`, with the latest verify ticket.
    Component,
    /// `POST /cgi-bin/component/api_authorizer_token`, with the component token and the
    /// authorizer's refresh token.
    Authorizer,
    /// WeCom's `POST /cgi-bin/service/get_suite_token`, with the latest suite ticket.
    WeComSuite,
    /// WeCom's `POST /cgi-bin/service/get_provider_token`.
    WeComProvider,
    /// WeCom's `POST /cgi-bin/service/get_corp_token`, with the suite's token and the
    /// corporation's permanent code.
    WeComCorp,
}

impl TokenApi {
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Classic, Self::Stable, Self::WeCom]
            .into_iter()
            .find(|api| api.name() == name)
    }

    /// Any API, as the registry stores it.
    pub fn parse_stored(name: &str) -> Option<Self> {
        Self::parse(name).or(match name {
            "component" => Some(Self::Component),
            "authorizer" => Some(Self::Authorizer),
            "wecom_corp" => Some(Self::WeComCorp),
            _ => None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Stable => "stable",
            Self::WeCom => "wecom",
            Self::Component => "component",
            Self::Authorizer => "authorizer",
            Self::WeComSuite => "wecom_suite",
            Self::WeComProvider => "wecom_provider",
            Self::WeComCorp => "wecom_corp",
        }
    }

    /// Whether the token comes through the third-party platform.
    pub fn through_platform(self) -> bool {
        matches!(self, Self::Component | Self::Authorizer)
    }

    /// Whether the account's object keeps a `PlatformState` in its storage: the platform's
    /// (verify ticket, refresh token), a WeCom suite's (suite ticket, pending codes) and a
    /// WeCom corporation's (its auth info).
    pub fn keeps_platform_state(self) -> bool {
        self.through_platform() || matches!(self, Self::WeComSuite | Self::WeComCorp)
    }

    /// Whether the token is one of a WeCom service provider's (WeCom's API, not WeChat's).
    pub fn wecom_service(self) -> bool {
        matches!(
            self,
            Self::WeComSuite | Self::WeComProvider | Self::WeComCorp
        )
    }

    /// `WECHAT_TOKEN_API`: the default for official accounts and mini programs.
    pub fn parse_default(value: Option<&str>) -> Result<Self, AppError> {
        match value {
            None | Some("classic") => Ok(Self::Classic),
            Some("stable") => Ok(Self::Stable),
            Some(_) => Err(AppError::Config {
                variable: "WECHAT_TOKEN_API",
                problem: "must be classic or stable".into(),
            }),
        }
    }
}

/// One WeChat account whose token this server keeps.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// Names the account in requests (`?account=`), its Durable Object and its KV entry.
    pub id: String,
    pub kind: AccountKind,
    /// The appid, or the corpid for WeCom.
    pub appid: String,
    pub secret: String,
    pub api: TokenApi,
    /// Fingerprint of (appid, kind, api), stamped on every record fetched under it: a record
    /// stamped otherwise belongs to an older configuration of this id and is never served.
    pub issuer: String,
}

impl Account {
    pub fn new(id: &str, kind: AccountKind, appid: &str, secret: &str, api: TokenApi) -> Self {
        Self {
            id: id.to_owned(),
            kind,
            appid: appid.to_owned(),
            secret: secret.to_owned(),
            api,
            issuer: issuer_fingerprint(appid, kind.name(), api.name()),
        }
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("appid", &self.appid)
            .field("secret", &"[redacted]")
            .field("api", &self.api)
            .finish()
    }
}

const FIELDS: [&str; 5] = ["id", "kind", "appid", "secret", "api"];

/// All configured accounts, shorthand first (none is not an error here: accounts may be
/// registered at runtime; `config::settings` decides). `shorthand` is (`WECHAT_APPID`, `WECHAT_APPSECRET`)
/// as set; `accounts_json` is `WECHAT_ACCOUNTS`.
pub fn parse(
    shorthand: (Option<String>, Option<String>),
    accounts_json: Option<&str>,
    default_api: TokenApi,
) -> Result<Vec<Account>, AppError> {
    let mut accounts = Vec::new();
    match shorthand {
        (Some(appid), Some(secret)) => {
            if !is_identifier(&appid) {
                return Err(config(
                    "WECHAT_APPID",
                    "may hold only letters, digits, '_' and '-'".into(),
                ));
            }
            accounts.push(Account::new(
                &appid,
                AccountKind::OfficialAccount,
                &appid,
                &secret,
                default_api,
            ));
        }
        (Some(_), None) => {
            return Err(config(
                "WECHAT_APPSECRET",
                "is not set (WECHAT_APPID is)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(config(
                "WECHAT_APPID",
                "is not set (WECHAT_APPSECRET is)".into(),
            ))
        }
        (None, None) => {}
    }

    if let Some(text) = accounts_json {
        let entries = match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(entries)) => entries,
            _ => {
                return Err(config(
                    "WECHAT_ACCOUNTS",
                    "must be a JSON array of accounts such as [{\"kind\":\"official_account\",\
                     \"appid\":\"wx…\",\"secret\":\"…\"}]"
                        .into(),
                ))
            }
        };
        for (index, entry) in entries.iter().enumerate() {
            accounts.push(parse_entry(index + 1, entry, default_api)?);
        }
    }

    check_distinct(&accounts)?;
    Ok(accounts)
}

/// Ids are unique; no id is another account's appid (`?appid=` must name one account); and no
/// two accounts fetch tokens for the same appid through the same API, since each would
/// invalidate the other's token (WeCom apps of one corp share the corpid legitimately).
fn check_distinct(accounts: &[Account]) -> Result<(), AppError> {
    for (index, account) in accounts.iter().enumerate() {
        for earlier in &accounts[..index] {
            let problem = if earlier.id == account.id {
                format!(
                    "names the account id \"{}\" twice (ids default to the appid or corpid; \
                     give each account a distinct \"id\")",
                    account.id
                )
            } else if earlier.appid == account.appid
                && earlier.api == account.api
                && account.api != TokenApi::WeCom
            {
                format!(
                    "lists the appid of \"{}\" again as \"{}\" with the same token API: two \
                     fetchers of one appid invalidate each other's tokens",
                    earlier.id, account.id
                )
            } else if (account.id == earlier.appid || earlier.id == account.appid)
                && earlier.appid != account.appid
            {
                format!(
                    "uses \"{}\" both as an id and as another account's appid",
                    if earlier.id == account.appid {
                        &earlier.id
                    } else {
                        &account.id
                    }
                )
            } else {
                continue;
            };
            return Err(config("WECHAT_ACCOUNTS", problem));
        }
    }
    Ok(())
}

fn parse_entry(position: usize, entry: &Value, default_api: TokenApi) -> Result<Account, AppError> {
    let fail = |problem: &str| config("WECHAT_ACCOUNTS", format!("entry {position} {problem}"));
    entry_fields(entry, default_api, fail)
}

/// An account registered at runtime (`PUT /admin/accounts/{id}`): the body is a
/// `WECHAT_ACCOUNTS` entry whose id, if given, is the path's. Errors are 400s naming the field.
pub fn parse_registered(
    id: &str,
    entry: &Value,
    default_api: TokenApi,
) -> Result<Account, AppError> {
    let fail = |problem: &str| AppError::BadRequest(format!("the account {problem}"));
    if !is_identifier(id) {
        return Err(fail(
            "id (in the path) must be 1 to 64 letters, digits, '_' or '-'",
        ));
    }
    let mut entry = entry.clone();
    match entry.as_object_mut() {
        Some(object) => match object.get("id") {
            None | Some(Value::Null) => {
                object.insert("id".into(), Value::String(id.to_owned()));
            }
            Some(Value::String(given)) if given == id => {}
            Some(_) => return Err(fail("body's \"id\" differs from the path's")),
        },
        None => return Err(fail("body is not a JSON object")),
    }
    entry_fields(&entry, default_api, fail)
}

/// The fields of one entry, checked one by one; `fail` makes the error for a problem.
fn entry_fields(
    entry: &Value,
    default_api: TokenApi,
    fail: impl Fn(&str) -> AppError,
) -> Result<Account, AppError> {
    let object: &Map<String, Value> = entry
        .as_object()
        .ok_or_else(|| fail("is not a JSON object"))?;
    if let Some(unknown) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        // Field names are ours to show; values are not.
        return Err(fail(&format!(
            "has an unknown field \"{}\" (fields: {})",
            truncate(unknown),
            FIELDS.join(", ")
        )));
    }
    let text = |field: &str| -> Result<Option<&str>, AppError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim())),
            Some(_) => Err(fail(&format!(
                "has a \"{field}\" that is not a non-empty string"
            ))),
        }
    };

    let kind = match text("kind")? {
        None | Some("official_account") => AccountKind::OfficialAccount,
        Some("mini_program") => AccountKind::MiniProgram,
        Some("wecom") => AccountKind::WeCom,
        Some(_) => {
            return Err(fail(
                "has an unknown kind (official_account, mini_program or wecom)",
            ))
        }
    };
    let appid = text("appid")?.ok_or_else(|| fail("has no \"appid\" (the corpid for wecom)"))?;
    if !is_identifier(appid) {
        return Err(fail(
            "has an \"appid\" with characters other than letters, digits, '_' and '-'",
        ));
    }
    let id = text("id")?.unwrap_or(appid);
    if !is_identifier(id) {
        return Err(fail(
            "has an \"id\" with characters other than letters, digits, '_' and '-'",
        ));
    }
    let fail = |problem: &str| fail(&format!("(id \"{id}\") {problem}"));
    let secret =
        text("secret").map_err(|_| fail("has a \"secret\" that is not a non-empty string"))?;
    let secret = secret.ok_or_else(|| fail("has no \"secret\""))?;
    let api = match (kind, text("api")?) {
        (AccountKind::WeCom, None) => TokenApi::WeCom,
        (AccountKind::WeCom, Some(_)) => {
            return Err(fail(
                "sets \"api\", which applies only to official_account and mini_program",
            ))
        }
        (_, None) => default_api,
        (_, Some("classic")) => TokenApi::Classic,
        (_, Some("stable")) => TokenApi::Stable,
        (_, Some(_)) => return Err(fail("has an unknown \"api\" (classic or stable)")),
    };
    Ok(Account::new(id, kind, appid, secret, api))
}

/// Ids and appids travel in URLs, KV keys and logs: keep them plain.
pub fn is_identifier(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// An account's id as requests name it: an identifier, or a WeCom corporation's
/// `<suite_id>.<corpid>`.
pub fn is_account_name(value: &str) -> bool {
    is_identifier(value)
        || value
            .split_once('.')
            .is_some_and(|(suite, corpid)| is_identifier(suite) && is_identifier(corpid))
}

fn truncate(text: &str) -> String {
    text.chars().take(32).collect()
}

fn config(variable: &'static str, problem: String) -> AppError {
    AppError::Config { variable, problem }
}

#[cfg(test)]
mod tests;
