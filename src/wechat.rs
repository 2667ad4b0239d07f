//! WeChat's token API: the request URL, reading the answer, and what its error codes mean.
//!
//! Pure: `upstream.rs` sends the request and hands the HTTP status and body back here.

use crate::accounts::{Account, TokenApi};
use crate::error::UpstreamFailure;
use serde_json::{json, Value};

/// A token as WeChat issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

/// The request that fetches an account's token. It carries the secret, in the URL or the
/// body: it goes to `fetch` and nowhere else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub method: HttpMethod,
    pub url: String,
    /// JSON, for POST.
    pub body: Option<String>,
}

/// `force`: stable_token's `force_refresh` (ignored by the other APIs, which always issue a
/// new token).
pub fn token_request(
    account: &Account,
    api_base: &str,
    wecom_api_base: &str,
    force: bool,
) -> TokenRequest {
    let (appid, secret) = (
        percent_encode(&account.appid),
        percent_encode(&account.secret),
    );
    match account.api {
        TokenApi::Classic => TokenRequest {
            method: HttpMethod::Get,
            url: format!(
                "{api_base}/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}"
            ),
            body: None,
        },
        TokenApi::Stable => TokenRequest {
            method: HttpMethod::Post,
            url: format!("{api_base}/cgi-bin/stable_token"),
            body: Some(
                json!({
                    "grant_type": "client_credential",
                    "appid": account.appid,
                    "secret": account.secret,
                    "force_refresh": force,
                })
                .to_string(),
            ),
        },
        TokenApi::WeCom => TokenRequest {
            method: HttpMethod::Get,
            url: format!("{wecom_api_base}/cgi-bin/gettoken?corpid={appid}&corpsecret={secret}"),
            body: None,
        },
    }
}

/// WeChat's and WeCom's "this access_token is not (or no longer) valid" codes.
pub fn is_token_rejected(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40014 | 42001)
}

/// Reads WeChat's answer to a token request. `secret` is only used to scrub it from anything
/// we keep (WeChat does not echo it today; this keeps it that way if a proxy ever does).
pub fn parse_token_response(
    http_status: u16,
    body: &str,
    secret: &str,
) -> Result<IssuedToken, UpstreamFailure> {
    if !(200..300).contains(&http_status) {
        return Err(UpstreamFailure::HttpStatus {
            status: http_status,
        });
    }
    let json: Value = serde_json::from_str(body).map_err(|_| UpstreamFailure::BadResponse {
        detail: "the body is not valid JSON".into(),
    })?;
    let errcode = json.get("errcode").and_then(Value::as_i64).unwrap_or(0);
    if errcode != 0 {
        let errmsg = json.get("errmsg").and_then(Value::as_str).unwrap_or("");
        return Err(UpstreamFailure::WeChat {
            errcode,
            errmsg: scrub(errmsg, secret),
        });
    }
    let access_token = json
        .get("access_token")
        .and_then(Value::as_str)
        .unwrap_or("");
    let expires_in = json.get("expires_in").and_then(Value::as_u64).unwrap_or(0);
    if access_token.is_empty() || expires_in == 0 {
        return Err(UpstreamFailure::BadResponse {
            detail: "access_token or expires_in is missing".into(),
        });
    }
    Ok(IssuedToken {
        access_token: access_token.to_owned(),
        expires_in,
    })
}

/// An operator-facing sentence for a WeChat errcode, with what to do where we know it.
pub fn explain_errcode(errcode: i64, errmsg: &str) -> String {
    match errcode {
        -1 => "WeChat is busy (errcode -1); the call can be retried shortly.".into(),
        40164 => {
            let ip = reported_ip(errmsg).unwrap_or("(not reported)");
            format!(
                "WeChat refused the call because this server's egress IP {ip} is not in the \
                 account's IP whitelist (errcode 40164). Either add {ip} to the whitelist \
                 (Official Account platform: Settings and Development > Basic Configuration > \
                 IP whitelist), or send WeChat calls through a fixed-IP egress proxy and point \
                 WECHAT_API_BASE at it; Cloudflare's egress addresses are shared and change."
            )
        }
        40013 => "WeChat rejected the appid or corpid (errcode 40013): check the account's \
                  appid in WECHAT_APPID or WECHAT_ACCOUNTS."
            .into(),
        40001 | 40125 => format!(
            "WeChat rejected the credentials (errcode {errcode}): check the account's secret \
             (WECHAT_APPSECRET or WECHAT_ACCOUNTS) against the platform's current one."
        ),
        40243 => "The account's AppSecret is frozen (errcode 40243): unfreeze or reset it in \
                  the platform, then update the configured secret."
            .into(),
        45009 => "The account reached WeChat's daily quota for this API (errcode 45009); it \
                  resets at midnight Beijing time."
            .into(),
        _ => format!("WeChat returned errcode {errcode}: {errmsg}"),
    }
}

/// The IP in a 40164 message, e.g. `invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in
/// whitelist`.
pub fn reported_ip(errmsg: &str) -> Option<&str> {
    let rest = &errmsg[errmsg.find("invalid ip ")? + "invalid ip ".len()..];
    let ip = rest.split([' ', ',']).next()?;
    (!ip.is_empty()).then_some(ip)
}

/// Removes `secret` from text we are about to keep or show, and bounds its length.
pub fn scrub(text: &str, secret: &str) -> String {
    const MAX_CHARS: usize = 300;
    let cleaned = if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "[redacted]")
    };
    cleaned.chars().take(MAX_CHARS).collect()
}

/// RFC 3986 query-component encoding: appids and secrets are alphanumeric today, but the
/// URL must stay well-formed whatever an operator pastes.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn account(api: TokenApi) -> Account {
        Account {
            id: "main".into(),
            kind: crate::accounts::AccountKind::OfficialAccount,
            appid: "wx123".into(),
            secret: "s e&c".into(),
            api,
        }
    }

    const BASE: &str = "https://api.weixin.qq.com";
    const WECOM: &str = "https://qyapi.weixin.qq.com";

    #[test]
    fn classic_request_encodes_credentials_in_the_query() {
        let request = token_request(&account(TokenApi::Classic), BASE, WECOM, true);
        assert_eq!(request.method, HttpMethod::Get);
        assert_eq!(
            request.url,
            "https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid=wx123&secret=s%20e%26c"
        );
        assert_eq!(request.body, None);
    }

    #[test]
    fn stable_request_posts_json_with_the_force_flag() {
        for force in [false, true] {
            let request = token_request(&account(TokenApi::Stable), BASE, WECOM, force);
            assert_eq!(request.method, HttpMethod::Post);
            assert_eq!(
                request.url,
                "https://api.weixin.qq.com/cgi-bin/stable_token"
            );
            let body: Value = serde_json::from_str(request.body.as_deref().unwrap()).unwrap();
            assert_eq!(
                body,
                json!({"grant_type": "client_credential", "appid": "wx123", "secret": "s e&c", "force_refresh": force})
            );
        }
    }

    #[test]
    fn wecom_request_uses_corpid_and_corpsecret() {
        let request = token_request(&account(TokenApi::WeCom), BASE, WECOM, false);
        assert_eq!(request.method, HttpMethod::Get);
        assert_eq!(
            request.url,
            "https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=wx123&corpsecret=s%20e%26c"
        );
    }

    #[test]
    fn rejected_token_codes() {
        for code in [40001, 40014, 42001] {
            assert!(is_token_rejected(code));
        }
        for code in [0, -1, 40013, 40125, 45009] {
            assert!(!is_token_rejected(code));
        }
    }

    #[test]
    fn parses_a_token() {
        let token = parse_token_response(200, r#"{"access_token":"AT","expires_in":7200}"#, SECRET);
        assert_eq!(
            token,
            Ok(IssuedToken {
                access_token: "AT".into(),
                expires_in: 7200
            })
        );
    }

    #[test]
    fn errcode_zero_with_a_token_is_success() {
        let body = r#"{"errcode":0,"errmsg":"ok","access_token":"AT","expires_in":7200}"#;
        assert!(parse_token_response(200, body, SECRET).is_ok());
    }

    #[test]
    fn classifies_failures() {
        assert_eq!(
            parse_token_response(500, "oops", SECRET),
            Err(UpstreamFailure::HttpStatus { status: 500 })
        );
        assert!(matches!(
            parse_token_response(200, r#"{"access_token":"AT","exp"#, SECRET),
            Err(UpstreamFailure::BadResponse { .. })
        ));
        assert!(matches!(
            parse_token_response(200, r#"{"expires_in":7200}"#, SECRET),
            Err(UpstreamFailure::BadResponse { .. })
        ));
        assert_eq!(
            parse_token_response(200, r#"{"errcode":-1,"errmsg":"system error"}"#, SECRET),
            Err(UpstreamFailure::WeChat {
                errcode: -1,
                errmsg: "system error".into()
            })
        );
    }

    #[test]
    fn never_keeps_the_secret_from_an_errmsg() {
        let body = r#"{"errcode":40125,"errmsg":"invalid appsecret TOPSECRET"}"#;
        let Err(UpstreamFailure::WeChat { errmsg, .. }) =
            parse_token_response(200, body, "TOPSECRET")
        else {
            panic!("expected a WeChat error");
        };
        assert!(!errmsg.contains("TOPSECRET"));
    }

    #[test]
    fn explains_the_ip_whitelist_error_with_the_ip() {
        let errmsg = "invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist rid: 1";
        assert_eq!(reported_ip(errmsg), Some("203.0.113.9"));
        let text = explain_errcode(40164, errmsg);
        assert!(text.contains("203.0.113.9"));
        assert!(text.contains("WECHAT_API_BASE"));
        assert_eq!(
            reported_ip("invalid ip 198.51.100.1, not in whitelist"),
            Some("198.51.100.1")
        );
        assert_eq!(reported_ip("something else"), None);
    }
}
