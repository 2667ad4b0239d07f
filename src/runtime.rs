//! Small adapters between the pure modules and the Workers runtime: configuration lookup,
//! the clock, and structured logs.

use crate::config::{self, Settings};
use crate::error::AppError;
use serde_json::Value;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use worker::{console_error, console_log, Date, Env};

/// Binding names in wrangler.toml.
pub const KV_BINDING: &str = "TOKENS";
pub const OBJECT_BINDING: &str = "ACCOUNT_TOKENS";

pub fn lookup(env: &Env) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| env.var(name).ok().map(|value| value.to_string())
}

pub fn settings(env: &Env) -> Result<Settings, AppError> {
    config::settings(&lookup(env))
}

pub fn now_secs() -> u64 {
    Date::now().as_millis() / 1000
}

pub fn now_millis() -> u64 {
    Date::now().as_millis()
}

/// One JSON object per line, so logs can be filtered with `wrangler tail --format json` or
/// any log pipeline. Callers never put a secret or a token in `fields`.
pub fn log_event(fields: Value) {
    console_log!("{fields}");
}

pub fn log_error(fields: Value) {
    console_error!("{fields}");
}

pub fn internal(what: &str, error: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("{what}: {error}"))
}

/// Runs the futures concurrently and returns when all are done.
pub async fn join_all<F: Future<Output = ()>>(futures: Vec<F>) {
    let mut running: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    poll_fn(|cx| {
        for slot in running.iter_mut() {
            if slot
                .as_mut()
                .is_some_and(|f| f.as_mut().poll(cx).is_ready())
            {
                *slot = None;
            }
        }
        if running.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
