//! Posting one message to one of the operators' webhooks (`ALERT_WEBHOOK_URL`): signed at the
//! moment it is sent (DingTalk and Feishu check the time), within 5 s, judged by the
//! service's rules. A webhook URL carries the service's key: logs name its host only.

use crate::edge::adapters::runtime::now_millis;
use crate::edge::adapters::upstream;
use crate::policy::webhook::{self, Delivery, Hook};
use serde_json::Value;
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, Request, RequestInit};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `payload` to `hook`; a failure says when to try again (`retry_secs`, or longer for
/// a robot that mutes).
pub async fn send(hook: &Hook, payload: &Value, retry_secs: u64) -> Delivery {
    let (url, body) = webhook::signed_request(hook, payload, now_millis());
    let failed = |why: &str| Delivery::Failed {
        why: why.into(),
        retry_after_secs: retry_secs,
    };
    let headers = Headers::new();
    if headers.set("content-type", "application/json").is_err() {
        return failed("the request could not be built");
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&body)));
    let Ok(request) = Request::new_with_init(&url, &init) else {
        return failed("not a URL");
    };
    // The answer, body included, within the bound: a webhook that stalls mid-body must not
    // hold the outbox.
    let answered = upstream::within(DELIVERY_TIMEOUT, async {
        let mut response = Fetch::Request(request).send().await?;
        let body = response.text().await.unwrap_or_default();
        Ok::<_, worker::Error>((response.status_code(), body))
    })
    .await;
    match answered {
        None => failed("no answer within 5 s"),
        // The error text of a failed fetch may quote the URL: not logged.
        Some(Err(_)) => failed("the webhook could not be reached"),
        Some(Ok((status, body))) => webhook::judge(hook.format, status, &body, retry_secs),
    }
}
