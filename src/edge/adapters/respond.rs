//! HTTP responses: the server's own answers are JSON, the gateway's pass on what WeChat sent;
//! none is cached, and every error is mapped here.

use crate::edge::adapters::runtime;
use crate::edge::adapters::streams::Body;
use crate::error::AppError;
use serde_json::Value;
use worker::{web_sys, Headers, Response};

pub fn json(status: u16, body: &Value) -> Response {
    own(
        status,
        "application/json; charset=utf-8",
        body.to_string().into_bytes(),
    )
}

/// A plain-text answer (WeChat expects `success` to its pushes).
pub fn text(status: u16, body: &str) -> Response {
    own(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

/// Prometheus's text exposition format.
pub fn metrics(body: String) -> Response {
    own(200, crate::policy::metrics::CONTENT_TYPE, body.into_bytes())
}

/// One of the server's own answers, never cached.
fn own(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    let headers = Headers::new();
    // Setting a fixed, valid header on a fresh Headers object cannot fail.
    let _ = headers.set("content-type", content_type);
    let _ = headers.set("cache-control", "no-store");
    Response::from_bytes(body)
        .expect("a byte body is always accepted")
        .with_status(status)
        .with_headers(headers)
}

/// An answer passed on as it came (the gateway's), with the headers it may keep, never cached.
/// Its body stays in the runtime's memory (held or streaming), never copied into the worker's.
/// It comes from WeChat but is served from this origin, the status page's: a browser must
/// neither sniff it into HTML nor run anything in it.
pub fn passed_on(
    status: u16,
    kept_headers: &[(&str, String)],
    body: Option<Body>,
) -> web_sys::Response {
    let headers = Headers::new();
    for (name, value) in kept_headers {
        let _ = headers.set(name, value);
    }
    let _ = headers.set("cache-control", "no-store");
    let _ = headers.set("x-content-type-options", "nosniff");
    let _ = headers.set("content-security-policy", "sandbox");
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&headers.0);
    let answer = match body {
        // No body at all where there was none (204, 304) or it was empty.
        Some(Body::Kept(bytes)) if bytes.length() > 0 => {
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(&bytes), &init)
        }
        Some(Body::Held(blob)) => web_sys::Response::new_with_opt_blob_and_init(Some(&blob), &init),
        Some(Body::Stream(stream)) => {
            web_sys::Response::new_with_opt_readable_stream_and_init(Some(&stream), &init)
        }
        _ => web_sys::Response::new_with_opt_str_and_init(None, &init),
    };
    answer.unwrap_or_else(|e| {
        let why = runtime::internal(
            "the answer could not be built",
            e.as_string().unwrap_or_default(),
        );
        error(&why).into()
    })
}

/// The one place an [`AppError`] becomes an HTTP response.
pub fn error(error: &AppError) -> Response {
    let response = json(error.status(), &error.body());
    if let Some(secs) = error.retry_after_secs() {
        let _ = response
            .headers()
            .set("retry-after", &secs.max(1).to_string());
    }
    if *error == AppError::Unauthorized {
        let _ = response.headers().set("www-authenticate", "Bearer");
    }
    if let Some(allow) = error.allow() {
        let _ = response.headers().set("allow", allow);
    }
    response
}

pub fn result(outcome: Result<Response, AppError>) -> Response {
    outcome.unwrap_or_else(|e| error(&e))
}

pub fn empty(status: u16) -> Response {
    Response::empty()
        .expect("an empty body is always accepted")
        .with_status(status)
}

/// What a route answers: one of the server's own answers, or one passed on as the runtime
/// built it (the gateway's, which never goes through worker's `Response`: converting it
/// there and back would build it twice).
pub enum Answer {
    Own(Response),
    PassedOn(web_sys::Response),
}

/// Adds the CORS headers (when the origin is allowed), and drops the body of a HEAD answer.
pub fn finish(answer: Answer, cors: Option<&[(&str, String)]>, head: bool) -> web_sys::Response {
    let answer: web_sys::Response = match answer {
        Answer::PassedOn(raw) if head => empty(raw.status())
            .with_headers(Headers(raw.headers()))
            .into(),
        Answer::PassedOn(raw) => raw,
        Answer::Own(own) if head => empty(own.status_code())
            .with_headers(own.headers().clone())
            .into(),
        Answer::Own(own) => own.into(),
    };
    for (name, value) in cors.unwrap_or_default() {
        let _ = answer.headers().set(name, value);
    }
    answer
}
