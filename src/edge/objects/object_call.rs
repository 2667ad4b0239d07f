//! A request to one of the worker's Durable Objects (an account's, the registry, the alert
//! outbox), answered within a bound whatever the object does: every request the worker
//! accepts is answered, also when an object, or a KV call inside one, never answers.

use crate::edge::adapters::runtime;
use crate::edge::adapters::upstream::within;
use crate::error::AppError;
use std::time::Duration;
use worker::wasm_bindgen::JsValue;
use worker::{Method, Request, RequestInit, Response, Stub};

/// Posts `body` to `stub` and waits at most `budget_ms` for its answer's headers (an object
/// answers with its whole body). `object` names it in errors ("the account registry").
pub async fn post(
    stub: &Stub,
    object: &str,
    body: &str,
    budget_ms: u64,
) -> Result<Response, AppError> {
    let failed = |e: worker::Error| runtime::internal(&format!("{object} failed"), e);
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(body)));
    // The URL is the object's own business: only its path would be read, and none is.
    let request = Request::new_with_init("https://durable-object/", &init).map_err(failed)?;
    match within(
        Duration::from_millis(budget_ms),
        stub.fetch_with_request(request),
    )
    .await
    {
        Some(answer) => answer.map_err(failed),
        None => Err(runtime::internal(
            &format!("{object} did not answer"),
            format!("within {budget_ms} ms"),
        )),
    }
}
