//! Small adapters between the pure modules and the Workers runtime: configuration lookup,
//! the clock, and structured logs.

use crate::config::{self, Settings};
use crate::error::AppError;
use serde_json::Value;
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
