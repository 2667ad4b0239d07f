//! WeChat's token and ticket APIs: the requests, and reading the answers.
//!
//! Pure: the edge's `upstream` sends the request and hands the HTTP status and body back here.

use crate::error::UpstreamFailure;
use crate::policy::accounts::{Account, TokenApi};
use crate::policy::ticket::TicketKind;
use serde_json::{json, Value};

/// A token or ticket as WeChat issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub value: String,
    pub expires_in: u64,
    /// An authorizer's refresh token, when WeChat's answer carries one (it may be a new one).
    pub refresh_token: Option<String>,
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
/// new token). None for the platform's accounts, whose requests carry more than the account
/// holds (`wechat::platform`).
pub fn token_request(
    account: &Account,
    api_base: &str,
    wecom_api_base: &str,
    force: bool,
) -> Option<TokenRequest> {
    let (appid, secret) = (
        percent_encode(&account.appid),
        percent_encode(&account.secret),
    );
    Some(match account.api {
        TokenApi::Component
        | TokenApi::Authorizer
        | TokenApi::WeComSuite
        | TokenApi::WeComProvider
        | TokenApi::WeComCorp => return None,
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
    })
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
        TokenApi::WeCom | TokenApi::WeComSuite | TokenApi::WeComProvider | TokenApi::WeComCorp => {
            match kind {
                TicketKind::AgentConfig => format!(
                    "{wecom_api_base}/cgi-bin/ticket/get?access_token={token}&type=agent_config"
                ),
                _ => format!("{wecom_api_base}/cgi-bin/get_jsapi_ticket?access_token={token}"),
            }
        }
        // An authorizer's token works as an account's.
        TokenApi::Classic | TokenApi::Stable | TokenApi::Component | TokenApi::Authorizer => {
            format!(
                "{api_base}/cgi-bin/ticket/getticket?access_token={token}&type={}",
                kind.name()
            )
        }
    }
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
    let json = parse_answer(http_status, body, sensitive)?;
    issued_from(&json, field, "expires_in")
}

/// A WeChat answer as JSON, or its failure: a non-2xx status, a body that is not JSON, or a
/// non-zero `errcode` (its `errmsg` scrubbed of `sensitive`).
pub fn parse_answer(
    http_status: u16,
    body: &str,
    sensitive: &str,
) -> Result<Value, UpstreamFailure> {
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
    Ok(json)
}

/// The credential in `json[field]` with its lifetime in `json[lifetime]`.
pub fn issued_from(json: &Value, field: &str, lifetime: &str) -> Result<Issued, UpstreamFailure> {
    let value = json.get(field).and_then(Value::as_str).unwrap_or("");
    let expires_in = json.get(lifetime).and_then(Value::as_u64).unwrap_or(0);
    if value.is_empty() || expires_in == 0 {
        return Err(UpstreamFailure::BadResponse {
            detail: format!("{field} or {lifetime} is missing"),
        });
    }
    Ok(Issued {
        value: value.to_owned(),
        expires_in,
        refresh_token: None,
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

/// Everything but RFC 3986's unreserved characters is encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// RFC 3986 query-component encoding: appids and secrets are alphanumeric today, but the
/// URL must stay well-formed whatever an operator pastes.
pub(crate) fn percent_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests;
