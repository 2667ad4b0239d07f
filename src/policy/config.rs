//! Configuration from the worker's vars and secrets. Pure: it reads through a lookup function,
//! so `runtime.rs` passes the worker's `Env` and the tests pass a map.
//!
//! Errors name the variable and what is wrong with it, never its value.

use crate::error::AppError;
use crate::policy::accounts::{self, Account, TokenApi};
use crate::policy::alerts::{self, AlertSettings};
use crate::policy::auth::ClientKeys;
use crate::policy::gateway;
use crate::policy::platform::{self, Component};
use crate::policy::quota::ForceLimits;
use crate::policy::refresh::RefreshPolicy;
use crate::policy::test_switches;
use crate::policy::watch;
use crate::policy::wecom_provider::{self, Provider, Suite};

pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
pub const DEFAULT_WECOM_API_BASE: &str = "https://qyapi.weixin.qq.com";
const DEFAULT_MARGIN_SECS: u64 = 900;
/// A minute: one caller's loop of explicit refreshes costs at most 1,440 calls a day, and the
/// explicit budget below caps the total.
const DEFAULT_MIN_INTERVAL_SECS: u64 = 60;
/// KV entries are answered at the edge for at most this long, plus a minute while the object
/// rewrites them: a lost KV update heals within WeChat's five-minute overlap.
const DEFAULT_KV_MAX_AGE_SECS: u64 = 240;
const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 10_000;
/// WeChat's own limits on stable_token's force_refresh mode.
const DEFAULT_FORCE_SPACING_SECS: u64 = 30;
const DEFAULT_FORCE_DAILY_LIMIT: u64 = 20;

/// Everything but the client keys, which are read separately so that authentication comes
/// before any other configuration check (an unauthenticated caller learns nothing else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub accounts: Vec<Account>,
    /// The account a request without `?account=` means: `WECHAT_APPID`'s, or the only one.
    pub default_account: Option<String>,
    /// `WECHAT_TOKEN_API`: the API of an official account or mini program that names none.
    pub default_api: TokenApi,
    pub api_base: String,
    pub wecom_api_base: String,
    pub refresh: RefreshPolicy,
    pub stable_force: ForceLimits,
    pub upstream_timeout_ms: u64,
    /// `DAILY_QUOTA`: overrides the per-API default of [`Settings::daily_quota`].
    pub daily_quota_override: Option<u64>,
    /// `EXPLICIT_REFRESH_DAILY_LIMIT`: overrides [`Settings::explicit_daily_limit`]'s default.
    pub explicit_limit_override: Option<u64>,
    /// `GATEWAY_HEAL_DAILY_LIMIT`: overrides [`Settings::heal_daily_limit`]'s default.
    pub heal_limit_override: Option<u64>,
    /// `KV_MAX_AGE_SECS`: how long an edge reader trusts a KV entry before asking the object.
    pub kv_max_age_secs: u64,
    /// `CRON_BATCH`: the most accounts one cron run visits (the free plan allows 50
    /// subrequests per invocation; the run makes one more, to the registry).
    pub cron_batch: usize,
    /// `GATEWAY_PATH_PREFIXES`: the WeChat paths the gateway forwards.
    pub gateway_prefixes: Vec<String>,
    /// `WECHAT_EGRESS_KEY`: sent as `X-Egress-Key` on every call to WeChat, for the fixed-IP
    /// egress relay.
    pub egress_key: Option<EgressKey>,
    /// `WECHAT_COMPONENT`: the third-party platform, if this server runs one (its account is
    /// also in `accounts`).
    pub component: Option<Component>,
    /// `WECOM_SUITES`: a WeCom service provider's suites (their accounts are also in
    /// `accounts`).
    pub suites: Vec<Suite>,
    /// `WECOM_PROVIDER`: the WeCom service provider itself (its account is also in
    /// `accounts`).
    pub provider: Option<Provider>,
    /// `ALERT_WEBHOOK_URL` and the rest: where to tell the operators, if anywhere.
    pub alerts: Option<AlertSettings>,
    /// `QUOTA_WATCH_PATHS`: the APIs whose daily quota each account's object watches.
    pub quota_watch_paths: Vec<String>,
    /// `QUOTA_LOW_PERCENT`: a watched quota under this share of its daily limit is low.
    pub quota_low_percent: u64,
}

/// The relay key: a secret, so its `Debug` says nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct EgressKey(pub String);

impl std::fmt::Debug for EgressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EgressKey([redacted])")
    }
}

/// How a request names its account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountName<'a> {
    /// None named: the default account.
    Default,
    /// `?account=`: an account id.
    Id(&'a str),
    /// `?appid=` (and an SDK's `appid`): the account with that appid, or else that id.
    AppId(&'a str),
}

impl Settings {
    /// How long past its `fresh_until` a KV entry is still answered (a quarter of
    /// `KV_MAX_AGE_SECS`, at most a minute) while the object is asked to write it again:
    /// otherwise every read at a location would go to the object until KV there caught up.
    /// KV keeps the entry that long too, or the window could never be used.
    pub fn kv_stale_answer_secs(&self) -> u64 {
        (self.kv_max_age_secs / 4).min(60)
    }

    /// The upstream calls per Beijing day this server allows itself for one of the account's
    /// credentials: WeChat's published quota for the API, or `DAILY_QUOTA`.
    pub fn daily_quota(&self, account: &Account) -> u64 {
        self.daily_quota_override.unwrap_or(match account.api {
            TokenApi::Stable => 500_000,
            // The platform's token calls: WeChat publishes no figure we rely on; 2,000 is
            // its usual per-API quota (DAILY_QUOTA overrides).
            TokenApi::Classic
            | TokenApi::WeCom
            | TokenApi::Component
            | TokenApi::Authorizer
            | TokenApi::WeComSuite
            | TokenApi::WeComProvider
            | TokenApi::WeComCorp => 2_000,
        })
    }

    /// Explicit refreshes (`POST /token/refresh` calls that reach WeChat) allowed per account
    /// and Beijing day: a tenth of the daily quota unless `EXPLICIT_REFRESH_DAILY_LIMIT` says.
    pub fn explicit_daily_limit(&self, account: &Account) -> u64 {
        self.explicit_limit_override
            .unwrap_or(self.daily_quota(account) / 10)
    }

    /// The platform's own account (`WECHAT_COMPONENT`), which an authorizer's calls go
    /// through.
    pub fn component_account(&self) -> Result<&Account, AppError> {
        self.component
            .as_ref()
            .map(|c| &c.account)
            .ok_or(AppError::Config {
                variable: "WECHAT_COMPONENT",
                problem: "is not set, and an authorizer's calls go through the platform".into(),
            })
    }

    /// Gateway heals (refreshes after WeChat rejected the token of a gateway call) allowed
    /// per account and Beijing day: the explicit budget unless `GATEWAY_HEAL_DAILY_LIMIT` says.
    pub fn heal_daily_limit(&self, account: &Account) -> u64 {
        self.heal_limit_override
            .unwrap_or_else(|| self.explicit_daily_limit(account))
    }

    /// The account a request names. `Ok(None)`: no configured account has that name.
    pub fn find(&self, name: AccountName) -> Result<Option<&Account>, AppError> {
        let by_id = |id: &str| self.accounts.iter().find(|a| a.id == id);
        match name {
            AccountName::Default => {
                let id = self.default_account.as_deref().ok_or_else(|| {
                    AppError::BadRequest(
                        "no default account (several, or none, are configured): name one with \
                         ?account=<id>"
                            .into(),
                    )
                })?;
                Ok(by_id(id))
            }
            AccountName::Id(id) => Ok(by_id(id)),
            AccountName::AppId(appid) => {
                let mut matching = self
                    .accounts
                    .iter()
                    .filter(|a| a.appid == appid && !a.kind.named_only());
                match (matching.next(), matching.next()) {
                    (Some(account), None) => Ok(Some(account)),
                    (Some(_), Some(_)) => Err(AppError::BadRequest(
                        "several accounts share that appid (WeCom apps of one corp): name one \
                         with ?account=<id>"
                            .into(),
                    )),
                    (None, _) => Ok(by_id(appid).filter(|a| !a.kind.named_only())),
                }
            }
        }
    }

    /// The account with this id (the Durable Object's own).
    pub fn account(&self, id: &str) -> Result<&Account, AppError> {
        self.find(AccountName::Id(id))?
            .ok_or(AppError::UnknownAccount)
    }
}

pub fn client_keys(lookup: &impl Fn(&str) -> Option<String>) -> Result<ClientKeys, AppError> {
    ClientKeys::parse(present(lookup, "CLIENT_KEYS").as_deref())
}

pub fn settings(lookup: &impl Fn(&str) -> Option<String>) -> Result<Settings, AppError> {
    let default_api = TokenApi::parse_default(present(lookup, "WECHAT_TOKEN_API").as_deref())?;
    let shorthand_appid = present(lookup, "WECHAT_APPID");
    let mut accounts = accounts::parse(
        (shorthand_appid.clone(), present(lookup, "WECHAT_APPSECRET")),
        present(lookup, "WECHAT_ACCOUNTS").as_deref(),
        default_api,
    )?;
    let component = platform::parse(present(lookup, "WECHAT_COMPONENT").as_deref())?;
    let suites = wecom_provider::parse_suites(present(lookup, "WECOM_SUITES").as_deref())?;
    let provider = wecom_provider::parse_provider(present(lookup, "WECOM_PROVIDER").as_deref())?;
    // Corporations' permanent codes are sealed with it: without it, an installation would
    // spend its single-use code and keep nothing.
    if !suites.is_empty() && present(lookup, "ACCOUNTS_ENCRYPTION_KEY").is_none() {
        return Err(AppError::Config {
            variable: "ACCOUNTS_ENCRYPTION_KEY",
            problem: "is not set, and WECOM_SUITES needs it: corporations' permanent codes are \
                      sealed with it"
                .into(),
        });
    }
    // Without environment accounts, the admin API (or a platform's authorizers) is the only
    // way to have one.
    if accounts.is_empty()
        && component.is_none()
        && suites.is_empty()
        && provider.is_none()
        && present(lookup, "ADMIN_KEYS").is_none()
    {
        return Err(AppError::Config {
            variable: "WECHAT_ACCOUNTS",
            problem: "and WECHAT_APPID are both unset: configure at least one account, or \
                      enable the admin API (ADMIN_KEYS) to register them at runtime"
                .into(),
        });
    }
    let default_account = match (shorthand_appid, accounts.as_slice()) {
        (Some(appid), _) => Some(appid),
        (None, [only]) => Some(only.id.clone()),
        (None, _) => None,
    };
    // The component is an account of the environment too (its token refreshed like theirs),
    // never the default one.
    if let Some(component) = &component {
        let id = &component.account.id;
        if accounts.iter().any(|a| &a.id == id || &a.appid == id) {
            return Err(AppError::Config {
                variable: "WECHAT_COMPONENT",
                problem: format!("has the appid \"{id}\" of an account in WECHAT_ACCOUNTS"),
            });
        }
        accounts.push(component.account.clone());
    }
    // The service provider's accounts likewise, each named by an id of its own.
    let service_accounts = suites
        .iter()
        .map(|s| (&s.account, "WECOM_SUITES"))
        .chain(provider.iter().map(|p| (&p.account, "WECOM_PROVIDER")));
    for (account, variable) in service_accounts {
        if accounts.iter().any(|a| a.id == account.id) {
            return Err(AppError::Config {
                variable,
                problem: format!(
                    "names the account id \"{}\" another account has",
                    account.id
                ),
            });
        }
        accounts.push(account.clone());
    }
    let alerts = alert_settings(lookup)?;
    let api_base = origin(lookup, "WECHAT_API_BASE", DEFAULT_API_BASE)?;
    let wecom_api_base = origin(lookup, "WECOM_API_BASE", DEFAULT_WECOM_API_BASE)?;
    test_switches::check(
        lookup,
        &[
            ("WECHAT_API_BASE", &api_base),
            ("WECOM_API_BASE", &wecom_api_base),
        ],
    )?;
    let quota_watch_paths = watch::parse_paths(present(lookup, "QUOTA_WATCH_PATHS").as_deref())
        .map_err(|problem| AppError::Config {
            variable: "QUOTA_WATCH_PATHS",
            problem,
        })?;
    Ok(Settings {
        component,
        suites,
        provider,
        alerts,
        quota_watch_paths,
        quota_low_percent: number(
            lookup,
            "QUOTA_LOW_PERCENT",
            watch::DEFAULT_LOW_PERCENT,
            1..=99,
        )?,
        default_account,
        default_api,
        accounts,
        api_base,
        wecom_api_base,
        refresh: RefreshPolicy {
            margin_secs: number(lookup, "REFRESH_MARGIN_SECS", DEFAULT_MARGIN_SECS, 0..=7200)?,
            min_interval_secs: number(
                lookup,
                "MIN_REFRESH_INTERVAL_SECS",
                DEFAULT_MIN_INTERVAL_SECS,
                0..=3600,
            )?,
        },
        stable_force: ForceLimits {
            spacing_secs: number(
                lookup,
                "STABLE_FORCE_SPACING_SECS",
                DEFAULT_FORCE_SPACING_SECS,
                0..=3600,
            )?,
            daily_limit: number(
                lookup,
                "STABLE_FORCE_DAILY_LIMIT",
                DEFAULT_FORCE_DAILY_LIMIT,
                0..=1000,
            )?,
        },
        upstream_timeout_ms: number(
            lookup,
            "UPSTREAM_TIMEOUT_MS",
            DEFAULT_UPSTREAM_TIMEOUT_MS,
            100..=60_000,
        )?,
        daily_quota_override: optional_number(lookup, "DAILY_QUOTA", 1..=10_000_000)?,
        explicit_limit_override: optional_number(
            lookup,
            "EXPLICIT_REFRESH_DAILY_LIMIT",
            0..=10_000_000,
        )?,
        heal_limit_override: optional_number(lookup, "GATEWAY_HEAL_DAILY_LIMIT", 0..=10_000_000)?,
        kv_max_age_secs: number(lookup, "KV_MAX_AGE_SECS", DEFAULT_KV_MAX_AGE_SECS, 1..=7200)?,
        cron_batch: number(lookup, "CRON_BATCH", DEFAULT_CRON_BATCH, 1..=1000)? as usize,
        gateway_prefixes: gateway::path_prefixes(
            present(lookup, "GATEWAY_PATH_PREFIXES").as_deref(),
        )?,
        egress_key: present(lookup, "WECHAT_EGRESS_KEY").map(EgressKey),
    })
}

/// `CORS_ALLOW_ORIGINS`: origins (`https://app.example`) allowed to call from a browser, or
/// `*`. Read apart from the other settings: CORS headers go on every answer, errors included.
pub fn cors_origins(lookup: &impl Fn(&str) -> Option<String>) -> Vec<String> {
    present(lookup, "CORS_ALLOW_ORIGINS")
        .unwrap_or_default()
        .split(',')
        .map(|origin| origin.trim().trim_end_matches('/').to_owned())
        .filter(|origin| !origin.is_empty())
        .collect()
}

/// Unset and blank are the same: `wrangler dev --var NAME:` yields an empty string.
fn present(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// One cron run: 40 object calls and one registry call stay under the free plan's 50
/// subrequests per invocation.
const DEFAULT_CRON_BATCH: u64 = 40;

fn number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, AppError> {
    let Some(text) = present(lookup, name) else {
        return Ok(default);
    };
    text.parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| AppError::Config {
            variable: name,
            problem: format!(
                "must be a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        })
}

/// `ALERT_*` alone: the alert outbox reads them even when another setting is broken, so that
/// an account whose object cannot load still reaches the operators.
pub fn alert_settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<alerts::AlertSettings>, AppError> {
    let (urls, format) = (
        present(lookup, "ALERT_WEBHOOK_URL"),
        present(lookup, "ALERT_FORMAT"),
    );
    let secret = present(lookup, "ALERT_WEBHOOK_SECRET");
    alerts::parse_settings(alerts::AlertVariables {
        urls: urls.as_deref(),
        format: format.as_deref(),
        secret: secret.as_deref(),
        after_secs: optional_number(lookup, "ALERT_AFTER_SECS", 0..=86_400)?,
        // A repeat a minute at the most: every repeat is an alarm and a message per account.
        repeat_secs: optional_number(lookup, "ALERT_REPEAT_SECS", 60..=604_800)?,
    })
}

fn optional_number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, AppError> {
    match present(lookup, name) {
        Some(_) => Ok(Some(number(lookup, name, 0, range)?)),
        None => Ok(None),
    }
}

fn origin(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
) -> Result<String, AppError> {
    let value = present(lookup, name);
    let base = value.as_deref().unwrap_or(default).trim_end_matches('/');
    let host = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"));
    match host {
        Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => Ok(base.to_owned()),
        _ => Err(AppError::Config {
            variable: name,
            problem: format!("must be an http:// or https:// origin such as {default}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const MINIMAL: &[(&str, &str)] = &[("WECHAT_APPID", "wx0123"), ("WECHAT_APPSECRET", "s3cret")];

    #[test]
    fn no_environment_account_needs_the_admin_api() {
        match settings(&env(&[])) {
            Err(AppError::Config { variable, problem }) => {
                assert_eq!(variable, "WECHAT_ACCOUNTS");
                assert!(problem.contains("ADMIN_KEYS"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        let registry_only = settings(&env(&[("ADMIN_KEYS", "k")])).unwrap();
        assert!(registry_only.accounts.is_empty() && registry_only.default_account.is_none());
    }

    #[test]
    fn defaults() {
        let settings = settings(&env(MINIMAL)).unwrap();
        assert_eq!(settings.accounts.len(), 1);
        let default = settings.find(AccountName::Default).unwrap().unwrap();
        assert_eq!(default.appid, "wx0123");
        assert_eq!(settings.account("wx0123").unwrap().api, TokenApi::Classic);
        assert_eq!(settings.explicit_daily_limit(default), 200);
        assert_eq!(settings.kv_max_age_secs, 240);
        assert_eq!(settings.api_base, DEFAULT_API_BASE);
        assert_eq!(settings.wecom_api_base, DEFAULT_WECOM_API_BASE);
        assert_eq!(
            settings.refresh,
            RefreshPolicy {
                margin_secs: 900,
                min_interval_secs: 60
            }
        );
        assert_eq!(
            settings.stable_force,
            ForceLimits {
                spacing_secs: 30,
                daily_limit: 20
            }
        );
        assert_eq!(settings.upstream_timeout_ms, 10_000);
    }

    #[test]
    fn suites_need_the_key_that_seals_permanent_codes() {
        let suites = r#"[{"suite_id":"wwsuite01","suite_secret":"s","token":"t",
            "encoding_aes_key":"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}]"#;
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("WECOM_SUITES", suites));
        match settings(&env(&pairs)) {
            Err(AppError::Config { variable, .. }) => {
                assert_eq!(variable, "ACCOUNTS_ENCRYPTION_KEY")
            }
            other => panic!("{other:?}"),
        }
        pairs.push(("ACCOUNTS_ENCRYPTION_KEY", "a-key"));
        let settings = settings(&env(&pairs)).unwrap();
        assert_eq!(settings.suites.len(), 1);
        assert!(settings.accounts.iter().any(|a| a.id == "wwsuite01"));
    }

    #[test]
    fn overrides() {
        let mut pairs = MINIMAL.to_vec();
        pairs.extend([
            ("WECHAT_API_BASE", "http://127.0.0.1:9000/"),
            ("WECOM_API_BASE", "http://127.0.0.1:9001"),
            ("WECHAT_TOKEN_API", "stable"),
            ("REFRESH_MARGIN_SECS", "60"),
            ("MIN_REFRESH_INTERVAL_SECS", "0"),
            ("STABLE_FORCE_SPACING_SECS", "0"),
            ("STABLE_FORCE_DAILY_LIMIT", "3"),
            ("UPSTREAM_TIMEOUT_MS", "1500"),
        ]);
        let settings = settings(&env(&pairs)).unwrap();
        assert_eq!(settings.api_base, "http://127.0.0.1:9000");
        assert_eq!(settings.wecom_api_base, "http://127.0.0.1:9001");
        assert_eq!(settings.accounts[0].api, TokenApi::Stable);
        assert_eq!(
            settings.refresh,
            RefreshPolicy {
                margin_secs: 60,
                min_interval_secs: 0
            }
        );
        assert_eq!(
            settings.stable_force,
            ForceLimits {
                spacing_secs: 0,
                daily_limit: 3
            }
        );
        assert_eq!(settings.upstream_timeout_ms, 1500);
    }

    #[test]
    fn choosing_the_account() {
        let accounts = r#"[{"appid":"wxA","secret":"a"},{"id":"corp","kind":"wecom","appid":"ww1","secret":"b"}]"#;
        let several = settings(&env(&[("WECHAT_ACCOUNTS", accounts)])).unwrap();
        assert!(matches!(
            several.find(AccountName::Default),
            Err(AppError::BadRequest(_))
        ));
        assert_eq!(several.account("corp").unwrap().appid, "ww1");
        assert_eq!(several.account("nope"), Err(AppError::UnknownAccount));
        // ?appid= names an appid, or else an id; ?account= only ids.
        let by_appid = several.find(AccountName::AppId("ww1")).unwrap().unwrap();
        assert_eq!(by_appid.id, "corp");
        assert_eq!(
            several.find(AccountName::AppId("corp")).unwrap(),
            Some(by_appid)
        );
        assert_eq!(several.find(AccountName::Id("ww1")).unwrap(), None);

        let mut pairs = MINIMAL.to_vec();
        pairs.push(("WECHAT_ACCOUNTS", accounts));
        let with_shorthand = settings(&env(&pairs)).unwrap();
        let default = with_shorthand.find(AccountName::Default).unwrap().unwrap();
        assert_eq!(default.id, "wx0123");

        let one = settings(&env(&[(
            "WECHAT_ACCOUNTS",
            r#"[{"appid":"wxA","secret":"a"}]"#,
        )]))
        .unwrap();
        assert_eq!(one.find(AccountName::Default).unwrap().unwrap().id, "wxA");

        let shared_corp = r#"[{"id":"a","kind":"wecom","appid":"ww1","secret":"a"},
            {"id":"b","kind":"wecom","appid":"ww1","secret":"b"}]"#;
        let corp = settings(&env(&[("WECHAT_ACCOUNTS", shared_corp)])).unwrap();
        assert!(matches!(
            corp.find(AccountName::AppId("ww1")),
            Err(AppError::BadRequest(_))
        ));
    }

    fn error_variable(result: Result<Settings, AppError>) -> &'static str {
        match result {
            Err(AppError::Config { variable, .. }) => variable,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn missing_and_invalid_values_name_the_variable_not_the_value() {
        assert_eq!(
            error_variable(settings(&env(&[("WECHAT_APPSECRET", "s")]))),
            "WECHAT_APPID"
        );
        assert_eq!(
            error_variable(settings(&env(&[("WECHAT_APPID", "wx")]))),
            "WECHAT_APPSECRET"
        );
        assert_eq!(error_variable(settings(&env(&[]))), "WECHAT_ACCOUNTS");
        assert_eq!(
            error_variable(settings(&env(&[
                ("WECHAT_APPID", "wx 1"),
                ("WECHAT_APPSECRET", "s")
            ]))),
            "WECHAT_APPID"
        );
        for (name, bad) in [
            ("REFRESH_MARGIN_SECS", "-5"),
            ("REFRESH_MARGIN_SECS", "ten"),
            ("REFRESH_MARGIN_SECS", "7201"),
            ("MIN_REFRESH_INTERVAL_SECS", "1.5"),
            ("STABLE_FORCE_DAILY_LIMIT", "lots"),
            ("UPSTREAM_TIMEOUT_MS", "5"),
            ("KV_MAX_AGE_SECS", "forever"),
            ("EXPLICIT_REFRESH_DAILY_LIMIT", "many"),
            ("WECHAT_API_BASE", "ftp://example.com"),
            ("WECHAT_API_BASE", "http://?q"),
            ("WECOM_API_BASE", "wecom.example.com"),
            ("WECHAT_TOKEN_API", "modern"),
        ] {
            let mut pairs = MINIMAL.to_vec();
            pairs.push((name, bad));
            let error = settings(&env(&pairs)).unwrap_err();
            assert_eq!(error_variable(Err(error.clone())), name);
            assert!(
                !error.message().contains(bad),
                "{name}={bad} echoed: {}",
                error.message()
            );
        }
    }

    #[test]
    fn secret_never_appears_in_debug_output() {
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("WECHAT_EGRESS_KEY", "relay-key-0123456789"));
        let settings = settings(&env(&pairs)).unwrap();
        assert_eq!(
            settings.egress_key,
            Some(EgressKey("relay-key-0123456789".into()))
        );
        assert!(!format!("{settings:?}").contains("s3cret"));
        assert!(!format!("{settings:?}").contains("relay-key"));
    }
}
