//! Configuration from the worker's vars and secrets. Pure: it reads through a lookup function,
//! so `env.rs` passes the worker's `Env` and the tests pass a map.
//!
//! Errors name the variable and what is wrong with it, never its value.

use crate::auth::ClientKeys;
use crate::error::AppError;
use crate::token::RefreshPolicy;

pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
const DEFAULT_MARGIN_SECS: u64 = 900;
const DEFAULT_MIN_INTERVAL_SECS: u64 = 30;
const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 10_000;

/// One WeChat account whose token this server keeps.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// Names the account's Durable Object and KV entry.
    pub id: String,
    pub appid: String,
    pub secret: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("appid", &self.appid)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Everything but the client keys, which are read separately so that authentication comes
/// before any other configuration check (an unauthenticated caller learns nothing else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub account: Account,
    pub api_base: String,
    pub refresh: RefreshPolicy,
    pub upstream_timeout_ms: u64,
}

pub fn client_keys(lookup: &impl Fn(&str) -> Option<String>) -> Result<ClientKeys, AppError> {
    let keys: Vec<String> = lookup("CLIENT_KEYS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return Err(config_error(
            "CLIENT_KEYS",
            "lists no key, so every token request is refused; set it with `wrangler secret put \
             CLIENT_KEYS`",
        ));
    }
    Ok(ClientKeys::new(keys))
}

pub fn settings(lookup: &impl Fn(&str) -> Option<String>) -> Result<Settings, AppError> {
    let appid = required(lookup, "WECHAT_APPID")?;
    if !appid
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(config_error(
            "WECHAT_APPID",
            "may hold only letters, digits, '_' and '-'",
        ));
    }
    let secret = required(lookup, "WECHAT_APPSECRET")?;
    let api_base = api_base(lookup("WECHAT_API_BASE"))?;
    let refresh = RefreshPolicy {
        margin_secs: number(lookup, "REFRESH_MARGIN_SECS", DEFAULT_MARGIN_SECS, 0..=7200)?,
        min_interval_secs: number(
            lookup,
            "MIN_REFRESH_INTERVAL_SECS",
            DEFAULT_MIN_INTERVAL_SECS,
            0..=3600,
        )?,
    };
    let upstream_timeout_ms = number(
        lookup,
        "UPSTREAM_TIMEOUT_MS",
        DEFAULT_UPSTREAM_TIMEOUT_MS,
        100..=60_000,
    )?;
    Ok(Settings {
        account: Account {
            id: appid.clone(),
            appid,
            secret,
        },
        api_base,
        refresh,
        upstream_timeout_ms,
    })
}

fn config_error(variable: &'static str, problem: &str) -> AppError {
    AppError::Config {
        variable,
        problem: problem.to_owned(),
    }
}

/// Unset and blank are the same: `wrangler dev --var NAME:` yields an empty string.
fn present(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn required(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, AppError> {
    present(lookup, name).ok_or_else(|| config_error(name, "is not set"))
}

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

fn api_base(value: Option<String>) -> Result<String, AppError> {
    let base = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let base = base
        .as_deref()
        .unwrap_or(DEFAULT_API_BASE)
        .trim_end_matches('/');
    let host = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"));
    match host {
        Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => Ok(base.to_owned()),
        _ => Err(config_error(
            "WECHAT_API_BASE",
            "must be an http:// or https:// origin such as https://api.weixin.qq.com",
        )),
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
    fn defaults() {
        let settings = settings(&env(MINIMAL)).unwrap();
        assert_eq!(settings.account.appid, "wx0123");
        assert_eq!(settings.account.id, "wx0123");
        assert_eq!(settings.api_base, DEFAULT_API_BASE);
        assert_eq!(
            settings.refresh,
            RefreshPolicy {
                margin_secs: 900,
                min_interval_secs: 30
            }
        );
        assert_eq!(settings.upstream_timeout_ms, 10_000);
    }

    #[test]
    fn overrides() {
        let mut pairs = MINIMAL.to_vec();
        pairs.extend([
            ("WECHAT_API_BASE", "http://127.0.0.1:9000/"),
            ("REFRESH_MARGIN_SECS", "60"),
            ("MIN_REFRESH_INTERVAL_SECS", "0"),
            ("UPSTREAM_TIMEOUT_MS", "1500"),
        ]);
        let settings = settings(&env(&pairs)).unwrap();
        assert_eq!(settings.api_base, "http://127.0.0.1:9000");
        assert_eq!(
            settings.refresh,
            RefreshPolicy {
                margin_secs: 60,
                min_interval_secs: 0
            }
        );
        assert_eq!(settings.upstream_timeout_ms, 1500);
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
            ("UPSTREAM_TIMEOUT_MS", "5"),
            ("WECHAT_API_BASE", "ftp://example.com"),
            ("WECHAT_API_BASE", "http://?q"),
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
        let settings = settings(&env(MINIMAL)).unwrap();
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn client_keys_fail_closed() {
        for value in [None, Some(""), Some(" , ,")] {
            let lookup = move |_: &str| value.map(str::to_owned);
            assert!(matches!(
                client_keys(&lookup),
                Err(AppError::Config {
                    variable: "CLIENT_KEYS",
                    ..
                })
            ));
        }
        let keys = client_keys(&env(&[("CLIENT_KEYS", " alpha-key , beta-key ")])).unwrap();
        assert!(keys.authorize(Some("Bearer beta-key")).is_ok());
    }
}
