//! The call to WeChat's (or WeCom's) token endpoint, bounded by `UPSTREAM_TIMEOUT_MS`.

use crate::accounts::Account;
use crate::config::Settings;
use crate::error::UpstreamFailure;
use crate::wechat::{self, HttpMethod, IssuedToken};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

pub async fn fetch_token(
    settings: &Settings,
    account: &Account,
    force: bool,
) -> Result<IssuedToken, UpstreamFailure> {
    let secret = account.secret.as_str();
    // Carries the secret: it goes to fetch and nowhere else (no log, no error message).
    let spec = wechat::token_request(account, &settings.api_base, &settings.wecom_api_base, force);
    let unreachable = |error: worker::Error| UpstreamFailure::Unreachable {
        detail: wechat::scrub(&error.to_string(), secret),
    };

    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let mut init = RequestInit::new();
        if spec.method == HttpMethod::Post {
            let headers = Headers::new();
            headers
                .set("content-type", "application/json")
                .map_err(unreachable)?;
            init.with_method(Method::Post).with_headers(headers);
        }
        init.with_body(spec.body.as_deref().map(JsValue::from_str));
        let request = Request::new_with_init(&spec.url, &init).map_err(unreachable)?;
        let mut response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(unreachable)?;
        let status = response.status_code();
        let body = response.text().await.map_err(unreachable)?;
        wechat::parse_token_response(status, &body, secret)
    };

    let budget = Duration::from_millis(settings.upstream_timeout_ms);
    match within(budget, call).await {
        Some(outcome) => outcome,
        None => {
            controller.abort();
            Err(UpstreamFailure::Timeout {
                after_ms: settings.upstream_timeout_ms,
            })
        }
    }
}

/// The future's output, or None if `budget` runs out first (covers headers and body alike).
async fn within<T>(budget: Duration, future: impl Future<Output = T>) -> Option<T> {
    let mut future = pin!(future);
    let mut timer = pin!(Delay::from(budget));
    poll_fn(|cx| {
        if let Poll::Ready(value) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}
