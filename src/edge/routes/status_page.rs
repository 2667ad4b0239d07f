//! `GET /`: the status page, one self-contained HTML page (inline style and script, no
//! external assets) that asks for a client key, keeps it in `sessionStorage` only, and shows
//! `/status`. It holds nothing of its own: without a key it shows nothing. Its inline code runs
//! under a per-answer nonce and a Content-Security-Policy that allows nothing else.

use crate::edge::adapters::runtime;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use worker::{Headers, Response};

const PAGE: &str = include_str!("status_page.html");

pub fn page() -> Response {
    let nonce = BASE64.encode(runtime::random_bytes::<16>());
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    let headers = Headers::new();
    for (name, value) in [
        ("content-type", "text/html; charset=utf-8"),
        ("cache-control", "no-store"),
        ("content-security-policy", csp.as_str()),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        let _ = headers.set(name, value);
    }
    Response::from_bytes(PAGE.replace("{NONCE}", &nonce).into_bytes())
        .expect("a byte body is always accepted")
        .with_headers(headers)
}
