//! Small adapters between the pure modules and the Workers runtime: configuration lookup,
//! the clock, and structured logs.

use crate::edge::adapters::memo;
use crate::error::AppError;
use crate::policy::alerts::AlertSettings;
use crate::policy::auth::ClientKeys;
use crate::policy::config::{self, Settings};
use crate::policy::registry::AdminKeys;
use crate::policy::sealing::KeyRing;
use serde::Serialize;
use serde_json::Value;
use std::rc::Rc;

use worker::{js_sys, Env};

/// Binding names in wrangler.toml.
pub const KV_BINDING: &str = "TOKENS";
pub const OBJECT_BINDING: &str = "ACCOUNT_TOKENS";
pub const REGISTRY_BINDING: &str = "ACCOUNT_REGISTRY";
pub const OUTBOX_BINDING: &str = "ALERT_OUTBOX";

pub fn lookup(env: &Env) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| env.var(name).ok().map(|value| value.to_string())
}

/// The settings, parsed once per isolate (the env does not change while an isolate lives).
pub fn settings(env: &Env) -> Result<Rc<Settings>, AppError> {
    memo::once("config:settings", || {
        let parsed = config::settings(&lookup(env)).map(Rc::new);
        // Once per isolate: every route answers it, and the log says which setting.
        if let Err(AppError::Config { variable, .. }) = &parsed {
            log_error(serde_json::json!({
                "event": "config_error", "variable": variable,
                "message": parsed.as_ref().err().map(AppError::message),
            }));
        }
        parsed
    })
}

pub fn client_keys(env: &Env) -> Result<Rc<ClientKeys>, AppError> {
    memo::once("config:client_keys", || {
        config::client_keys(&lookup(env)).map(Rc::new)
    })
}

/// `ALERT_*` alone (see `config::alert_settings`).
pub fn alert_settings(env: &Env) -> Result<Rc<Option<AlertSettings>>, AppError> {
    memo::once("config:alerts", || {
        config::alert_settings(&lookup(env)).map(Rc::new)
    })
}

/// `ADMIN_KEYS`; None: the admin API is disabled.
pub fn admin_keys(env: &Env) -> Result<Rc<Option<AdminKeys>>, AppError> {
    memo::once("config:admin_keys", || {
        let clients = client_keys(env).ok();
        let is_client_key = |key: &str| {
            clients
                .as_ref()
                .is_some_and(|c| c.authorize_key(Some(key)).is_ok())
        };
        AdminKeys::parse(lookup(env)("ADMIN_KEYS").as_deref(), is_client_key).map(Rc::new)
    })
}

/// `ACCOUNTS_ENCRYPTION_KEY`, parsed when a runtime account's secret is sealed or opened.
pub fn key_ring(env: &Env) -> Result<Rc<KeyRing>, AppError> {
    memo::once("config:key_ring", || {
        KeyRing::parse(lookup(env)("ACCOUNTS_ENCRYPTION_KEY").as_deref()).map(Rc::new)
    })
}

pub fn cors_origins(env: &Env) -> Rc<Vec<String>> {
    memo::once("config:cors", || {
        Rc::new(config::cors_origins(&lookup(env)))
    })
}

pub fn now_secs() -> u64 {
    now_millis() / 1000
}

/// `Date.now()`: one call into the runtime (worker's `Date::now` builds a `Date` object first).
pub fn now_millis() -> u64 {
    js_sys::Date::now() as u64
}

/// One JSON object per line, so logs can be filtered with `wrangler tail --format json` or
/// any log pipeline. Callers never put a secret or a token in `fields`.
pub fn log_event(fields: Value) {
    log_record(&fields);
}

/// [`log_event`] for a line of a hot path, written straight from its own type (no `Value`
/// built, no formatting machinery).
pub fn log_record(fields: &impl Serialize) {
    if let Ok(line) = serde_json::to_string(fields) {
        log_from_a_microtask(&line);
    }
}

pub fn log_error(fields: Value) {
    error_from_a_microtask(&fields.to_string());
}

// Lines are written from a microtask of their own, right after the current step of the
// request, events and errors alike (so they keep their order): with an inspector attached
// (`wrangler dev`), every console call captures the caller's stack, and a wasm future's stack
// is deep. There, a JavaScript worker logging from 40 frames deeper spent 7 % more CPU per
// call (docs/benchmark.md).
#[wasm_bindgen::prelude::wasm_bindgen(inline_js = "
export function log_from_a_microtask(line) { queueMicrotask(() => console.log(line)); }
export function error_from_a_microtask(line) { queueMicrotask(() => console.error(line)); }
")]
extern "C" {
    fn log_from_a_microtask(line: &str);
    fn error_from_a_microtask(line: &str);
}

pub fn internal(what: &str, error: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("{what}: {error}"))
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buffer: &mut [u8]);
}

/// Bytes from the runtime's cryptographic random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    get_random_values(&mut bytes);
    bytes
}
