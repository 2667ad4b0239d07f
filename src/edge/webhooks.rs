//! Delivering alerts to the operators' webhooks (`ALERT_WEBHOOK_URL`): one POST of JSON per
//! webhook, tried once more if it fails, never on a token read's path (the objects send them
//! after their answer). A webhook URL carries the service's key: logs name its host only.

use crate::edge::runtime::log_error;
use crate::edge::upstream;
use crate::policy::alerts::AlertFormat;
use serde_json::{json, Value};
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, Request, RequestInit};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends each webhook the payload `payload` makes in its format.
pub async fn deliver(hooks: &[(String, AlertFormat)], payload: impl Fn(AlertFormat) -> Value) {
    for (url, format) in hooks {
        let body = payload(*format).to_string();
        let mut outcome = post(url, &body).await;
        if outcome.is_err() {
            outcome = post(url, &body).await;
        }
        if let Err(why) = outcome {
            log_error(json!({
                "event": "alert_delivery_failed", "webhook_host": host(url), "message": why,
            }));
        }
    }
}

async fn post(url: &str, body: &str) -> Result<(), String> {
    let headers = Headers::new();
    headers
        .set("content-type", "application/json")
        .map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(body)));
    let request = Request::new_with_init(url, &init).map_err(|_| "not a URL".to_owned())?;
    let sent = upstream::within(DELIVERY_TIMEOUT, Fetch::Request(request).send()).await;
    match sent {
        None => Err("no answer within 5 s".into()),
        // The error text of a failed fetch may quote the URL: not logged.
        Some(Err(_)) => Err("the webhook could not be reached".into()),
        Some(Ok(mut response)) if (200..300).contains(&response.status_code()) => {
            // WeCom, DingTalk and Feishu answer a refusal (a wrong key, a keyword or
            // signature check) with HTTP 200 and a code in the body.
            let body = response.text().await.unwrap_or_default();
            match refusal(&body) {
                Some(code) => Err(format!("the webhook refused it (code {code})")),
                None => Ok(()),
            }
        }
        Some(Ok(response)) => Err(format!("HTTP status {}", response.status_code())),
    }
}

/// A non-zero `errcode` (WeCom, DingTalk) or `code` (Feishu) in a webhook's answer.
fn refusal(body: &str) -> Option<i64> {
    let json: Value = serde_json::from_str(body).ok()?;
    ["errcode", "code", "StatusCode"]
        .iter()
        .filter_map(|field| json.get(field).and_then(Value::as_i64))
        .find(|code| *code != 0)
}

/// The host (and port) of a webhook URL: never its path, query or any credentials in it.
fn host(url: &str) -> &str {
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    authority.rsplit('@').next().unwrap_or_default()
}
