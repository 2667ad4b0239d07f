//! WeChat's API management (openApi 管理): an API's daily quota (`quota/get`), clearing an
//! account's quotas with its appsecret (`clear_quota/v2`, or the platform's
//! `component/clear_quota/v2` for an authorizer), and a failed call's record by its rid
//! (`rid/get`). Pure: requests to send and answers to read.
//!
//! A rid's record holds the failed call as WeChat saw it, token and secrets included: every
//! value of a secret-bearing parameter is masked before it leaves here.

use crate::error::UpstreamFailure;
use crate::policy::accounts::{Account, TokenApi};
use crate::policy::watch::is_api_path;
use crate::wechat::api::{self, percent_encode, HttpMethod};
use crate::wechat::platform::PlatformRequest;
use serde::Serialize;
use serde_json::{json, Value};

/// An API path as `quota/get` takes it: `/cgi-bin/message/custom/send`, without WeChat's host.
pub fn cgi_path(path: Option<&str>) -> Result<&str, String> {
    let path = path.ok_or("?path= names the API, e.g. /cgi-bin/message/custom/send")?;
    match is_api_path(path) {
        true => Ok(path),
        false => Err("?path= must be an API path such as /cgi-bin/message/custom/send".into()),
    }
}

/// A rid as WeChat writes it (`64eed8de-4cdaca9b-1be8f193`).
pub fn rid(rid: Option<&str>) -> Result<&str, String> {
    match rid {
        Some(rid)
            if (1..=64).contains(&rid.len())
                && rid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            Ok(rid)
        }
        _ => Err("?rid= must be WeChat's rid, e.g. 64eed8de-4cdaca9b-1be8f193".into()),
    }
}

fn with_token(api_base: &str, path: &str, access_token: &str, body: Value) -> PlatformRequest {
    PlatformRequest {
        method: HttpMethod::Post,
        url: format!(
            "{api_base}{path}?access_token={}",
            percent_encode(access_token)
        ),
        body: body.to_string(),
        sensitive: vec![access_token.to_owned()],
    }
}

pub fn quota_request(api_base: &str, access_token: &str, cgi_path: &str) -> PlatformRequest {
    let body = json!({ "cgi_path": cgi_path });
    with_token(api_base, "/cgi-bin/openapi/quota/get", access_token, body)
}

pub fn rid_request(api_base: &str, access_token: &str, rid: &str) -> PlatformRequest {
    let body = json!({ "rid": rid });
    with_token(api_base, "/cgi-bin/openapi/rid/get", access_token, body)
}

/// Clears `account`'s quotas with its appsecret, which works when its token is spent. An
/// authorizer has no appsecret of its own: the platform clears for it with the component's
/// (`component`); the component clears its own with the platform's variant.
pub fn clear_quota_request(
    api_base: &str,
    account: &Account,
    component: Option<&Account>,
) -> PlatformRequest {
    let (path, body, secret) = match component {
        None if account.api == TokenApi::Component => (
            "/cgi-bin/component/clear_quota/v2",
            json!({ "component_appid": account.appid, "appsecret": account.secret }),
            &account.secret,
        ),
        Some(component) => (
            "/cgi-bin/component/clear_quota/v2",
            json!({ "appid": account.appid, "component_appid": component.appid,
                    "appsecret": component.secret }),
            &component.secret,
        ),
        None => (
            "/cgi-bin/clear_quota/v2",
            json!({ "appid": account.appid, "appsecret": account.secret }),
            &account.secret,
        ),
    };
    PlatformRequest {
        method: HttpMethod::Post,
        url: format!("{api_base}{path}"),
        body: body.to_string(),
        sensitive: vec![secret.clone()],
    }
}

/// An API's quota today, as `GET /quota` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub daily_limit: u64,
    pub used: u64,
    pub remain: u64,
    /// WeChat's rate limit on the API (`{call_count, refresh_second}`), when it names one.
    pub rate_limit: Value,
}

pub fn parse_quota(status: u16, body: &str, access_token: &str) -> Result<Quota, UpstreamFailure> {
    let answer = api::parse_answer(status, body, access_token)?;
    let quota = member(&answer, "quota")?;
    let number = |name: &str| quota.get(name).and_then(Value::as_u64).unwrap_or(0);
    Ok(Quota {
        daily_limit: number("daily_limit"),
        used: number("used"),
        remain: number("remain"),
        rate_limit: answer.get("rate_limit").cloned().unwrap_or(Value::Null),
    })
}

/// The object WeChat's answer holds under `name`.
fn member<'a>(answer: &'a Value, name: &str) -> Result<&'a Value, UpstreamFailure> {
    answer
        .get(name)
        .filter(|v| v.is_object())
        .ok_or_else(|| UpstreamFailure::BadResponse {
            detail: format!("{name} is missing"),
        })
}

pub fn parse_cleared(status: u16, body: &str, secret: &str) -> Result<(), UpstreamFailure> {
    api::parse_answer(status, body, secret).map(|_| ())
}

/// A rid's record (`request{…}`), every secret in it masked. `known` are values to mask
/// wherever they appear (the account's token and secret), whatever carries them.
pub fn parse_rid(
    status: u16,
    body: &str,
    access_token: &str,
    known: &[&str],
) -> Result<Value, UpstreamFailure> {
    let answer = api::parse_answer(status, body, access_token)?;
    let request = member(&answer, "request")?;
    let text = |name: &str| {
        let value = request.get(name).and_then(Value::as_str).unwrap_or("");
        mask(value, known)
    };
    Ok(json!({
        "invoke_time": request.get("invoke_time"),
        "cost_in_ms": request.get("cost_in_ms"),
        "request_url": text("request_url"),
        "request_body": text("request_body"),
        "response_body": text("response_body"),
        "client_ip": request.get("client_ip"),
    }))
}

const MASK: &str = "***";

/// Whether a parameter's value is a secret, by its name: a token, secret, code, ticket or key of
/// any kind (`access_token`, `authorizer_refresh_token`, `appsecret`, `js_code`,
/// `authorization_code`, `component_verify_ticket`, `session_key`, …), never `errcode`.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let last = name.rsplit('_').next().unwrap_or("");
    matches!(
        last,
        "token" | "secret" | "appsecret" | "code" | "ticket" | "key" | "password"
    )
}

/// `text` with every secret masked: in JSON (parsed, at any depth, and in strings that hold
/// JSON themselves) the value of every secret-named member; in a query string (a URL or a
/// form) the value of every secret-named parameter, its name percent-decoded first; and every
/// `known` value (the account's token and secret) wherever it appears.
pub fn mask(text: &str, known: &[&str]) -> String {
    let masked = match serde_json::from_str::<Value>(text) {
        Ok(json) if json.is_object() || json.is_array() => mask_json(json).to_string(),
        _ => mask_query(text),
    };
    known
        .iter()
        .filter(|v| !v.is_empty())
        .fold(masked, |text, value| text.replace(value, MASK))
}

fn mask_json(value: Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .map(|(name, value)| {
                    let value = match is_secret_name(&name) && !value.is_null() {
                        true => Value::String(MASK.into()),
                        false => mask_json(value),
                    };
                    (name, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(mask_json).collect()),
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(inner) if inner.is_object() || inner.is_array() => {
                Value::String(mask_json(inner).to_string())
            }
            _ => Value::String(text),
        },
        other => other,
    }
}

/// The query part (after a `?`, or all of it) as `name=value` pairs split on `&`.
fn mask_query(text: &str) -> String {
    let (head, query) = match text.split_once('?') {
        Some((head, query)) => (format!("{head}?"), query),
        None => (String::new(), text),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(&decode(name)) => format!("{name}={MASK}"),
            _ => pair.to_owned(),
        })
        .collect();
    head + &pairs.join("&")
}

fn decode(name: &str) -> String {
    percent_encoding::percent_decode_str(&name.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_rids_are_checked_before_any_call() {
        assert_eq!(
            cgi_path(Some("/cgi-bin/message/custom/send")),
            Ok("/cgi-bin/message/custom/send")
        );
        for bad in [
            None,
            Some(""),
            Some("cgi-bin/x"),
            Some("https://api.weixin.qq.com/x"),
            Some("/cgi-bin/x?a=1"),
            Some("//evil"),
            Some("/"),
        ] {
            assert!(cgi_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            rid(Some("64eed8de-4cdaca9b-1be8f193")),
            Ok("64eed8de-4cdaca9b-1be8f193")
        );
        assert!(rid(Some("a b")).is_err() && rid(None).is_err() && rid(Some("")).is_err());
    }

    #[test]
    fn a_quota_answer_is_read() {
        let body = r#"{"errcode":0,"errmsg":"ok","quota":{"daily_limit":100,"used":7,"remain":93},
                       "rate_limit":{"call_count":50,"refresh_second":60}}"#;
        let quota = parse_quota(200, body, "T").unwrap();
        assert_eq!((quota.daily_limit, quota.used, quota.remain), (100, 7, 93));
        assert_eq!(quota.rate_limit["call_count"], 50);
        let refused = parse_quota(
            200,
            r#"{"errcode":76021,"errmsg":"cgi_path not found"}"#,
            "T",
        );
        assert!(matches!(
            refused,
            Err(UpstreamFailure::WeChat { errcode: 76021, .. })
        ));
        assert!(parse_quota(200, r#"{"errcode":0}"#, "T").is_err());
    }

    #[test]
    fn clearing_uses_the_appsecret_or_for_an_authorizer_the_components() {
        use crate::policy::accounts::AccountKind;
        let shop = Account::new(
            "shop",
            AccountKind::OfficialAccount,
            "wxshop",
            "s3cret",
            TokenApi::Classic,
        );
        let request = clear_quota_request("https://api", &shop, None);
        assert_eq!(request.url, "https://api/cgi-bin/clear_quota/v2");
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body, json!({"appid": "wxshop", "appsecret": "s3cret"}));
        assert_eq!(request.sensitive, vec!["s3cret"]);
        let component = Account::new(
            "wxcomp",
            AccountKind::Component,
            "wxcomp",
            "csecret",
            TokenApi::Component,
        );
        let request = clear_quota_request("https://api", &shop, Some(&component));
        assert_eq!(request.url, "https://api/cgi-bin/component/clear_quota/v2");
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(
            body,
            json!({"appid": "wxshop", "component_appid": "wxcomp", "appsecret": "csecret"})
        );
        let own = clear_quota_request("https://api", &component, None);
        assert_eq!(own.url, "https://api/cgi-bin/component/clear_quota/v2");
        let body: Value = serde_json::from_str(&own.body).unwrap();
        assert_eq!(
            body,
            json!({"component_appid": "wxcomp", "appsecret": "csecret"})
        );
    }

    #[test]
    fn every_secret_in_a_rid_record_is_masked() {
        let url = "access_token=50_Im7xx&openid=o1&secret=abc&code=c0de&refresh_token=r&js_code=j";
        assert_eq!(
            mask(url, &[]),
            "access_token=***&openid=o1&secret=***&code=***&refresh_token=***&js_code=***"
        );
        assert_eq!(
            mask(
                "/cgi-bin/x?access%5Ftoken=t&errcode=1&authorization_code=c",
                &[]
            ),
            "/cgi-bin/x?access%5Ftoken=***&errcode=1&authorization_code=***"
        );
        let body = json!({"appid": "wx1", "appsecret": "s3", "zipcode": "1",
            "component_verify_ticket": "ticket@@@x", "info": {"authorizer_refresh_token": "rt",
            "list": [{"session_key": "k", "pre_auth_code": "p"}]}, "errcode": 0});
        let masked: Value = serde_json::from_str(&mask(&body.to_string(), &[])).unwrap();
        assert_eq!(
            masked,
            json!({"appid": "wx1", "appsecret": "***", "zipcode": "1",
                "component_verify_ticket": "***", "info": {"authorizer_refresh_token": "***",
                "list": [{"session_key": "***", "pre_auth_code": "***"}]}, "errcode": 0})
        );
        // A secret with an escaped quote, and JSON held in a string, are masked whole.
        let tricky = r#"{"secret":"ab\"cd","inner":"{\"code\":\"x\"}"}"#;
        let masked = mask(tricky, &[]);
        assert!(
            !masked.contains("cd") && !masked.contains(r#"\"x\""#),
            "{masked}"
        );
        assert_eq!(
            mask("the token TOKEN-1 echoed", &["TOKEN-1"]),
            "the token *** echoed"
        );
        assert_eq!(mask("code", &[]), "code");
        let answer = json!({"errcode": 0, "errmsg": "ok", "request": {
            "invoke_time": 1635156704, "cost_in_ms": 30,
            "request_url": "access_token=50_Im7xx", "request_body": "",
            "response_body": "{\"errcode\":45009,\"errmsg\":\"reach max api daily quota limit\"}",
            "client_ip": "203.0.113.7"}});
        let record = parse_rid(200, &answer.to_string(), "50_Im7xx", &[]).unwrap();
        assert_eq!(record["request_url"], "access_token=***");
        assert_eq!(record["invoke_time"], 1635156704);
        assert_eq!(record["client_ip"], "203.0.113.7");
        let refused = parse_rid(
            200,
            r#"{"errcode":76001,"errmsg":"rid not found"}"#,
            "T",
            &[],
        );
        assert!(matches!(
            refused,
            Err(UpstreamFailure::WeChat { errcode: 76001, .. })
        ));
    }
}
