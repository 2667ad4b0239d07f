//! WeChat's token API: the request URL, reading the answer, and what its error codes mean.
//!
//! Pure: `upstream.rs` sends the request and hands the HTTP status and body back here.

use crate::accounts::{Account, TokenApi};
use crate::error::UpstreamFailure;
use crate::jssdk::TicketKind;
use serde_json::{json, Value};

/// A token or ticket as WeChat issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub value: String,
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

/// The request for a JS-SDK ticket. Its URL carries the access_token: never log it.
pub fn ticket_url(
    account: &Account,
    api_base: &str,
    wecom_api_base: &str,
    kind: TicketKind,
    access_token: &str,
) -> String {
    let token = percent_encode(access_token);
    match account.api {
        TokenApi::WeCom => {
            format!("{wecom_api_base}/cgi-bin/get_jsapi_ticket?access_token={token}")
        }
        TokenApi::Classic | TokenApi::Stable => format!(
            "{api_base}/cgi-bin/ticket/getticket?access_token={token}&type={}",
            kind.name()
        ),
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
) -> Result<Issued, UpstreamFailure> {
    parse_issued(http_status, body, "access_token", secret)
}

/// Reads WeChat's answer to a ticket request; `access_token` (in the request URL) is scrubbed
/// likewise.
pub fn parse_ticket_response(
    http_status: u16,
    body: &str,
    access_token: &str,
) -> Result<Issued, UpstreamFailure> {
    parse_issued(http_status, body, "ticket", access_token)
}

fn parse_issued(
    http_status: u16,
    body: &str,
    field: &str,
    sensitive: &str,
) -> Result<Issued, UpstreamFailure> {
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
            errmsg: scrub(errmsg, sensitive),
        });
    }
    let value = json.get(field).and_then(Value::as_str).unwrap_or("");
    let expires_in = json.get("expires_in").and_then(Value::as_u64).unwrap_or(0);
    if value.is_empty() || expires_in == 0 {
        return Err(UpstreamFailure::BadResponse {
            detail: format!("{field} or expires_in is missing"),
        });
    }
    Ok(Issued {
        value: value.to_owned(),
        expires_in,
    })
}

/// An operator-facing sentence for a WeChat errcode, with what to do where we know it.
pub fn explain_errcode(errcode: i64, errmsg: &str) -> String {
    if is_ip_whitelist_error(errcode) {
        return explain_ip_whitelist(errcode, errmsg);
    }
    match errcode {
        -1 => "WeChat is busy (errcode -1); the call can be retried shortly.".into(),
        40013 => "WeChat rejected the appid or corpid (errcode 40013): check the account's \
                  appid in WECHAT_APPID or WECHAT_ACCOUNTS. Automatic refreshes stop until the \
                  configuration changes."
            .into(),
        40001 | 40125 => format!(
            "WeChat rejected the credentials (errcode {errcode}): check the account's secret \
             (WECHAT_APPSECRET or WECHAT_ACCOUNTS) against the platform's current one. \
             Automatic refreshes stop until the configuration changes."
        ),
        40243 => "The account's AppSecret is frozen (errcode 40243): unfreeze or reset it in \
                  the platform, then update the configured secret. Automatic refreshes stop \
                  until the configuration changes."
            .into(),
        45009 => "The account reached WeChat's daily quota for this API (errcode 45009); \
                  refreshes are paused until the quota resets at midnight Beijing time, and the \
                  current token is served while it is valid."
            .into(),
        _ => format!("WeChat returned errcode {errcode}: {errmsg}"),
    }
}

/// WeChat refusing the caller's IP: not whitelisted (40164, 61004), or waiting for, or refused
/// by, an administrator's confirmation (89501, 89503, 89506, 89507).
pub fn is_ip_whitelist_error(errcode: i64) -> bool {
    matches!(errcode, 40164 | 61004 | 89501 | 89503 | 89506 | 89507)
}

/// A token call failing on the credentials themselves: retrying cannot help until the
/// configuration changes. (On a ticket call, 40001 means the access_token instead.)
pub fn is_credential_error(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40013 | 40125 | 40243)
}

fn explain_ip_whitelist(errcode: i64, errmsg: &str) -> String {
    let ip = reported_ip(errmsg).unwrap_or("(WeChat did not say which)");
    let what = match errcode {
        89501 | 89503 => "a call from this IP is waiting for an administrator's confirmation",
        89506 => "an administrator refused calls from this IP twice; it is blocked for 24 hours",
        89507 => "an administrator refused calls from this IP; it is blocked for an hour",
        _ => "this IP is not in the account's IP whitelist",
    };
    format!(
        "WeChat refused the call from egress IP {ip} (errcode {errcode}): {what}. Two fixes: \
         add {ip} to the account's IP whitelist (Official Account platform: Settings and \
         Development > Basic Configuration > IP whitelist), which lasts only until Cloudflare's \
         shared egress address changes; or send WeChat calls through a fixed-IP egress proxy, \
         whitelist that proxy's IP, and point WECHAT_API_BASE at it."
    )
}

/// The first IPv4 address in an errmsg, e.g. `invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9,
/// not in whitelist`.
pub fn reported_ip(errmsg: &str) -> Option<&str> {
    errmsg
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 4
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
        })
}

/// Removes `secret` from text we are about to keep or show, as it is and as it appears in a
/// URL (percent-encoded), and bounds the text's length.
pub fn scrub(text: &str, secret: &str) -> String {
    const MAX_CHARS: usize = 300;
    let mut cleaned = text.to_owned();
    if !secret.is_empty() {
        for form in [secret.to_owned(), percent_encode(secret)] {
            cleaned = cleaned.replace(&form, "[redacted]");
        }
    }
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
mod tests;
