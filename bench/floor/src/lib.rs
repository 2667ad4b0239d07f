//! The benchmark's workers-rs floors (scripts/bench).
//!
//! - Without `UPSTREAM`: answers every request with the fixed body `BODY` (the benchmark sets it
//!   to the size of a real token answer) and the server's headers, through worker's `Request`
//!   and `Response` as the server's own routes do: the floor for `GET /token`.
//! - With `UPSTREAM`: the least a workers-rs gateway can do under the gateway's rules, the
//!   floor for the gateway rows: the path and query forwarded to `UPSTREAM` with one allowed
//!   header, the answer read whole (as the gateway reads a small answer for its errcode) and
//!   passed back with its content type and the gateway's three fixed headers, and one JSON log
//!   line, as the JavaScript pass-through with its log line writes, written from a microtask
//!   as the server writes its lines (see `runtime::log_record` in the server).

use worker::js_sys::{self, Uint8Array};
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{event, web_sys, Context, Env, Headers, Request, Response, Result};

#[event(fetch)]
async fn fetch(raw: web_sys::Request, env: Env, _ctx: Context) -> Result<web_sys::Response> {
    match env.var("UPSTREAM") {
        Ok(upstream) => pass_through(raw, &upstream.to_string()).await,
        Err(_) => constant(Request::from(raw), &env).map(Into::into),
    }
}

fn constant(_request: Request, env: &Env) -> Result<Response> {
    let body = env.var("BODY")?.to_string();
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_bytes(body.into_bytes())?.with_headers(headers))
}

async fn pass_through(raw: web_sys::Request, upstream: &str) -> Result<web_sys::Response> {
    let started = js_sys::Date::now();
    let url = raw.url();
    let after_host = url.find("://").map_or(0, |at| at + 3);
    let path_and_query = &url[after_host + url[after_host..].find('/').unwrap_or(0)..];
    let path = path_and_query.split('?').next().unwrap_or_default();
    let method = raw.method();

    let headers = web_sys::Headers::new()?;
    let accept = raw.headers().get("accept")?;
    headers.set("accept", accept.as_deref().unwrap_or("*/*"))?;
    let init = web_sys::RequestInit::new();
    init.set_method(&method);
    init.set_headers(&headers);
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let sent = global.fetch_with_str_and_init(&format!("{upstream}{path_and_query}"), &init);
    let answer: web_sys::Response = JsFuture::from(sent).await?.dyn_into()?;
    let status = answer.status();
    let content_type = answer.headers().get("content-type")?;
    let body = Uint8Array::new(&JsFuture::from(answer.array_buffer()?).await?);
    let read = body.to_vec();
    let errcode = read.windows(9).position(|w| w == b"\"errcode\"").map(|_| 0);

    let kept = web_sys::Headers::new()?;
    if let Some(content_type) = content_type {
        kept.set("content-type", &content_type)?;
    }
    kept.set("cache-control", "no-store")?;
    kept.set("x-content-type-options", "nosniff")?;
    kept.set("content-security-policy", "sandbox")?;
    let out = web_sys::ResponseInit::new();
    out.set_status(status);
    out.set_headers(&kept);
    let response = web_sys::Response::new_with_opt_buffer_source_and_init(Some(&body), &out)?;
    let errcode = errcode.map_or("null".to_owned(), |code: i64| code.to_string());
    log_from_a_microtask(&format!(
        "{{\"event\":\"gateway_call\",\"account\":\"bench\",\"method\":\"{method}\",\
         \"path\":\"{path}\",\"mode\":\"keyed\",\"status\":{status},\"errcode\":{errcode},\
         \"retried\":false,\"duration_ms\":{}}}",
        (js_sys::Date::now() - started) as u64
    ));
    Ok(response)
}

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = "
export function log_from_a_microtask(line) { queueMicrotask(() => console.log(line)); }
")]
extern "C" {
    fn log_from_a_microtask(line: &str);
}
