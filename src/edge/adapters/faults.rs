//! Test-only fault injection, off unless its variables are set. Local KV never fails and has
//! no rate limit; Cloudflare's does (transient errors, one write per second per key, the Free
//! plan's daily cap). The end-to-end tests set these to show that a lost KV write heals, and
//! that the cron catches an account whose alarm never fired. Never set them in production.
//!
//! - `TEST_FAIL_KV_WRITES="2-3"`: the 2nd and 3rd writes to each KV key fail; `"2-"`: every
//!   write from the 2nd on.
//! - `TEST_KV_ONE_WRITE_PER_SEC="1"`: a write to a key less than a second after the last one
//!   fails, as Cloudflare's KV answers 429.
//! - `TEST_NO_DUE_ALARMS="1"`: objects set no alarm for their due times (they still tell the
//!   registry), as if every alarm were lost; the cron and reads are then the only triggers.
//! - `TEST_FAIL_ERASES="1"`: the first erase(s) of an object's state fail, as a Durable
//!   Object call can, leaving a removal half done for its retry to finish.
//! - `TEST_FAIL_REGISTRY_PUTS="1"`: the first registration(s) the registry is asked to store
//!   fail, as a Durable Object call can (a WeCom corporation's registration after its
//!   permanent code came).
//! - `TEST_FAIL_PUSH_STORES="1"`: the first storage write(s) of a pushed message (a ticket, an
//!   authorization code, a withdrawal) fail, as a Durable Object's storage can: the push is
//!   answered 5xx and its retry taken afresh.
//! - `TEST_ALERT_PACE="<gather>,<window>"`: the alert outbox's gathering and window in
//!   seconds (10 and 60 in production), so that a test sees a digest's pacing in seconds.
//! - `TEST_LOG_OBJECT_REQUESTS="1"`: every Durable Object request the worker makes is logged
//!   (`object_request`, which object), so that a test or the scale run counts what a route
//!   costs.
//! - `TEST_STALL_OBJECTS="registry:statuses,outbox:enqueue"`: those Durable Object requests
//!   (`object:op`) wait two minutes before they are handled, as an object, or a KV call inside
//!   one, that does not answer; their callers' bounds answer first.
//! - `TEST_QUOTA_WATCH_SECS="3"`: objects ask for the watched quotas every 3 s, not hourly.

use crate::edge::adapters::memo;
use crate::edge::adapters::runtime::{self, now_millis};
use crate::policy::outbox::Pace;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use worker::Env;

#[derive(Clone, Default)]
struct Faults {
    /// Inclusive range of write ordinals (per key) that fail.
    failing_writes: Option<(u64, u64)>,
    one_write_per_sec: bool,
    no_due_alarms: bool,
    failing_erases: u64,
    failing_registry_puts: u64,
    failing_push_stores: u64,
    log_object_requests: bool,
    alert_pace: Option<Pace>,
    /// `object:op` pairs whose requests stall.
    stalled_ops: Vec<String>,
    /// How often objects ask for the watched quotas, in place of the hour.
    quota_watch_secs: Option<u64>,
}

thread_local! {
    /// Per KV key: writes attempted, and when the last one was let through.
    static WRITES: RefCell<HashMap<String, (u64, u64)>> = RefCell::default();
    /// Erases attempted in this isolate.
    static ERASES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Registrations the registry was asked to store in this isolate.
    static REGISTRY_PUTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Pushed messages stored by objects in this isolate.
    static PUSH_STORES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn faults(env: &Env) -> Rc<Faults> {
    memo::once("config:test_faults", || {
        let lookup = runtime::lookup(env);
        let failing_writes = lookup("TEST_FAIL_KV_WRITES").and_then(|spec| {
            let (first, last) = spec.trim().split_once('-')?;
            let first = first.parse().ok()?;
            let last = if last.is_empty() {
                u64::MAX
            } else {
                last.parse().ok()?
            };
            Some((first, last))
        });
        let one_write_per_sec = lookup("TEST_KV_ONE_WRITE_PER_SEC").is_some_and(|v| v == "1");
        let no_due_alarms = lookup("TEST_NO_DUE_ALARMS").is_some_and(|v| v == "1");
        // How many of the first ones fail.
        let count = |name| {
            lookup(name)
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        };
        let failing_erases = count("TEST_FAIL_ERASES");
        let failing_registry_puts = count("TEST_FAIL_REGISTRY_PUTS");
        let failing_push_stores = count("TEST_FAIL_PUSH_STORES");
        let log_object_requests = lookup("TEST_LOG_OBJECT_REQUESTS").is_some_and(|v| v == "1");
        let alert_pace = lookup("TEST_ALERT_PACE").and_then(|spec| {
            let (gather, window) = spec.trim().split_once(',')?;
            Some(Pace {
                gather_secs: gather.parse().ok()?,
                window_secs: window.parse().ok()?,
                ..Pace::default()
            })
        });
        let stalled_ops = lookup("TEST_STALL_OBJECTS")
            .map(|list| list.split(',').map(|op| op.trim().to_owned()).collect())
            .unwrap_or_default();
        let quota_watch_secs = lookup("TEST_QUOTA_WATCH_SECS").and_then(|n| n.trim().parse().ok());
        Rc::new(Faults {
            quota_watch_secs,
            stalled_ops,
            alert_pace,
            log_object_requests,
            failing_writes,
            one_write_per_sec,
            no_due_alarms,
            failing_erases,
            failing_registry_puts,
            failing_push_stores,
        })
    })
}

/// How often objects ask for the watched quotas, if a test shortens the hour.
pub fn quota_watch_secs(env: &Env) -> Option<u64> {
    faults(env).quota_watch_secs
}

/// Whether objects must not set alarms for their due times.
pub fn no_due_alarms(env: &Env) -> bool {
    faults(env).no_due_alarms
}

/// The alert outbox's pace, if the test variables set one.
pub fn alert_pace(env: &Env) -> Option<Pace> {
    faults(env).alert_pace
}

/// Logs a Durable Object request (`object`: `account` or `registry`; `op`: what it asks), if
/// the test variables ask for it.
pub fn object_request(env: &Env, object: &str, op: &str) {
    if faults(env).log_object_requests {
        runtime::log_event(serde_json::json!({
            "event": "object_request", "object": object, "op": op,
        }));
    }
}

/// Waits two minutes if the test variables stall `op` of `object`; `op` is worked out only
/// then (the object's request, as its client sent it).
pub async fn stall(env: &Env, object: &str, op: impl FnOnce() -> String) {
    let stalled_ops = &faults(env).stalled_ops;
    if stalled_ops.is_empty() || !stalled_ops.contains(&format!("{object}:{}", op())) {
        return;
    }
    worker::Delay::from(std::time::Duration::from_secs(120)).await;
}

/// An injected failure for this erase of an object's state, if the test variables ask for one.
pub fn erase(env: &Env) -> worker::Result<()> {
    let failing = faults(env).failing_erases;
    first_ones_fail(&ERASES, failing, "an erase (TEST_FAIL_ERASES)")
}

/// An injected failure for this registration the registry stores, if the test variables ask.
pub fn registry_put(env: &Env) -> worker::Result<()> {
    let failing = faults(env).failing_registry_puts;
    first_ones_fail(
        &REGISTRY_PUTS,
        failing,
        "a registration (TEST_FAIL_REGISTRY_PUTS)",
    )
}

/// An injected failure for this store of a pushed message, if the test variables ask.
pub fn push_store(env: &Env) -> worker::Result<()> {
    let failing = faults(env).failing_push_stores;
    first_ones_fail(
        &PUSH_STORES,
        failing,
        "a push's storage write (TEST_FAIL_PUSH_STORES)",
    )
}

fn first_ones_fail(
    attempts: &'static std::thread::LocalKey<std::cell::Cell<u64>>,
    failing: u64,
    what: &str,
) -> worker::Result<()> {
    let attempt = attempts.with(|count| {
        count.set(count.get() + 1);
        count.get()
    });
    match attempt <= failing {
        true => Err(worker::Error::RustError(format!(
            "injected failure of {what}"
        ))),
        false => Ok(()),
    }
}

/// An injected failure for this write to `key`, if the test variables ask for one.
pub fn kv_write(env: &Env, key: &str) -> worker::Result<()> {
    let faults = faults(env);
    if faults.failing_writes.is_none() && !faults.one_write_per_sec {
        return Ok(());
    }
    let now_ms = now_millis();
    WRITES.with(|writes| {
        let mut writes = writes.borrow_mut();
        let (count, last_ms) = writes.entry(key.to_owned()).or_default();
        *count += 1;
        if faults
            .failing_writes
            .is_some_and(|(first, last)| (first..=last).contains(count))
        {
            return Err(worker::Error::RustError(
                "injected KV write failure (TEST_FAIL_KV_WRITES)".into(),
            ));
        }
        if faults.one_write_per_sec && *last_ms > 0 && now_ms < *last_ms + 1000 {
            return Err(worker::Error::RustError(
                "injected KV rate limit: one write per second per key (TEST_KV_ONE_WRITE_PER_SEC)"
                    .into(),
            ));
        }
        *last_ms = now_ms;
        Ok(())
    })
}
