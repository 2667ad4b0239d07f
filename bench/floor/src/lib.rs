//! Answers every request with the fixed body `BODY` (the benchmark sets it to the size of a real
//! token answer) and the server's headers: the floor for a workers-rs worker.

use worker::{event, Context, Env, Headers, Request, Response, Result};

#[event(fetch)]
async fn fetch(_request: Request, env: Env, _ctx: Context) -> Result<Response> {
    let body = env.var("BODY")?.to_string();
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_bytes(body.into_bytes())?.with_headers(headers))
}
