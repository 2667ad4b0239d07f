//! The alert outbox: one Durable Object (SQLite storage) that every account's object hands its
//! alerts to, and that alone talks to the webhooks, paced as `policy::outbox` says: alerts of
//! one condition that arrive together go as one digest, no webhook gets more than its robot
//! allows, and what could not be sent stays queued for the next digest. Its alarm does the
//! sending; the client below is what the account objects call.

use crate::edge::adapters::faults;
use crate::edge::adapters::respond;
use crate::edge::adapters::runtime::{
    self, log_error, log_event, now_millis, now_secs, OUTBOX_BINDING,
};
use crate::edge::adapters::webhooks;
use crate::edge::objects::object_call;
use crate::error::AppError;
use crate::policy::alerts::{self, Notice};
use crate::policy::fingerprint::fingerprint;
use crate::policy::outbox::{self, HookLog, Pace, Queued};
use crate::policy::webhook::{self, Delivery, Hook};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use worker::Delay;
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

const OUTBOX_NAME: &str = "alerts";
/// A webhook that stays unreachable keeps at most this many alerts (the oldest go first, and
/// the log says how many): a digest names five accounts and counts the rest anyway.
const MAX_QUEUED: i64 = 10_000;
/// Between two messages to one webhook in one run.
const SAME_HOOK_SPACING_MS: u64 = 1_100;

const OUTBOX: &str = "the alert outbox";
const ENQUEUE_BUDGET_MS: u64 = 10_000;

/// Hands `notices` to the outbox (one Durable Object request).
pub async fn enqueue(env: &Env, notices: &[Notice]) -> Result<(), AppError> {
    let failed = |e: worker::Error| runtime::internal(&format!("{OUTBOX} failed"), e);
    let stub = env
        .durable_object(OUTBOX_BINDING)
        .and_then(|namespace| namespace.get_by_name(OUTBOX_NAME))
        .map_err(failed)?;
    faults::object_request(env, "outbox", "enqueue");
    let body = serde_json::to_string(notices).map_err(|e| runtime::internal("encoding", e))?;
    // Its own storage only: an outbox that does not answer in this long is failing.
    let response = object_call::post(&stub, OUTBOX, &body, ENQUEUE_BUDGET_MS).await?;
    match response.status_code() {
        200 => Ok(()),
        status => Err(runtime::internal(
            &format!("{OUTBOX} failed"),
            format!("HTTP {status}"),
        )),
    }
}

/// A webhook's key in the outbox: its URL's fingerprint (the URL itself is never stored).
fn hook_key(hook: &Hook) -> String {
    fingerprint(&hook.url)
}

#[durable_object]
pub struct AlertOutbox {
    state: State,
    env: Env,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS queued (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, hook TEXT NOT NULL, notice TEXT NOT NULL,
    queued_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS hooks (hook TEXT PRIMARY KEY, log TEXT NOT NULL)";

#[derive(Deserialize)]
struct QueuedRow {
    seq: i64,
    hook: String,
    notice: String,
    queued_at: i64,
}

#[derive(Deserialize)]
struct HookRow {
    hook: String,
    log: String,
}

impl DurableObject for AlertOutbox {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut request: Request) -> worker::Result<Response> {
        let outcome = match request.json::<Vec<Notice>>().await {
            Ok(notices) => {
                faults::stall(&self.env, "outbox", || "enqueue".into()).await;
                self.enqueue(notices).await
            }
            Err(e) => Err(runtime::internal("unreadable alerts", e)),
        };
        Ok(respond::result(
            outcome.map(|()| respond::json(200, &Value::Null)),
        ))
    }

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.flush().await {
            log_error(json!({ "event": "alert_outbox_failed", "message": e.message() }));
            // Tried again in a minute: the outbox never goes quiet with alerts in it.
            self.wake_in(60).await;
        }
        Response::empty()
    }
}

impl AlertOutbox {
    fn sql(&self) -> Result<SqlStorage, AppError> {
        let sql = self.state.storage().sql();
        sql.exec(SCHEMA, None).map_err(storage_failed)?;
        Ok(sql)
    }

    fn pace(&self) -> Pace {
        faults::alert_pace(&self.env).unwrap_or_default()
    }

    async fn enqueue(&self, notices: Vec<Notice>) -> Result<(), AppError> {
        let settings = runtime::alert_settings(&self.env)?;
        let Some(settings) = settings.as_ref() else {
            return Ok(());
        };
        let sql = self.sql()?;
        let now = now_secs();
        for notice in &notices {
            let text =
                serde_json::to_string(notice).map_err(|e| runtime::internal("encoding", e))?;
            for hook in &settings.hooks {
                sql.exec(
                    "INSERT INTO queued (hook, notice, queued_at) VALUES (?, ?, ?)",
                    vec![
                        hook_key(hook).into(),
                        text.as_str().into(),
                        (now as i64).into(),
                    ],
                )
                .map_err(storage_failed)?;
            }
        }
        let dropped = self.bound(&sql)?;
        if dropped > 0 {
            log_error(json!({ "event": "alerts_dropped", "count": dropped,
                "message": "a webhook has failed for long: the oldest queued alerts went" }));
        }
        self.wake_in(self.pace().gather_secs).await;
        Ok(())
    }

    /// Keeps the queue within [`MAX_QUEUED`]; how many went.
    fn bound(&self, sql: &SqlStorage) -> Result<i64, AppError> {
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        let rows: Vec<Count> = sql
            .exec("SELECT COUNT(*) AS n FROM queued", None)
            .and_then(|c| c.to_array())
            .map_err(storage_failed)?;
        let excess = rows.first().map_or(0, |c| c.n) - MAX_QUEUED;
        if excess > 0 {
            sql.exec(
                "DELETE FROM queued WHERE seq IN (SELECT seq FROM queued ORDER BY seq LIMIT ?)",
                vec![excess.into()],
            )
            .map_err(storage_failed)?;
        }
        Ok(excess.max(0))
    }

    /// Sends what is due, records how each webhook answered, and wakes again for the rest.
    async fn flush(&self) -> Result<(), AppError> {
        let sql = self.sql()?;
        let hooks = match runtime::alert_settings(&self.env)?.as_ref() {
            Some(settings) => settings.hooks.clone(),
            None => Vec::new(),
        };
        let by_key: BTreeMap<String, &Hook> = hooks.iter().map(|h| (hook_key(h), h)).collect();
        let rows: Vec<QueuedRow> = sql
            .exec("SELECT * FROM queued ORDER BY seq", None)
            .and_then(|c| c.to_array())
            .map_err(storage_failed)?;
        let mut queued = Vec::new();
        for row in rows {
            let notice = serde_json::from_str(&row.notice).ok();
            match notice.filter(|_| by_key.contains_key(&row.hook)) {
                Some(notice) => queued.push(Queued {
                    seq: row.seq as u64,
                    hook: row.hook,
                    notice,
                    queued_at: row.queued_at as u64,
                }),
                // For a webhook no longer configured: nowhere to go.
                None => {
                    sql.exec("DELETE FROM queued WHERE seq = ?", vec![row.seq.into()])
                        .map_err(storage_failed)?;
                }
            }
        }
        let log_rows: Vec<HookRow> = sql
            .exec("SELECT * FROM hooks", None)
            .and_then(|c| c.to_array())
            .map_err(storage_failed)?;
        let mut logs: BTreeMap<String, HookLog> = log_rows
            .into_iter()
            .map(|r| (r.hook, serde_json::from_str(&r.log).unwrap_or_default()))
            .collect();
        let pace = self.pace();
        let now = now_secs();
        let (digests, _) = outbox::plan(&queued, &logs, &pace, now);
        let mut delivered: Vec<u64> = Vec::new();
        let mut failed_hooks: Vec<&str> = Vec::new();
        let mut last_sent_ms: BTreeMap<&str, u64> = BTreeMap::new();
        for digest in &digests {
            let Some(hook) = by_key.get(&digest.hook) else {
                continue;
            };
            // A webhook that failed in this run is not tried again in it.
            if failed_hooks.contains(&digest.hook.as_str()) {
                continue;
            }
            // A second message to one webhook waits a second (Feishu takes 5 a second,
            // Slack about 1).
            if let Some(last) = last_sent_ms.get(digest.hook.as_str()) {
                let wait = (last + SAME_HOOK_SPACING_MS).saturating_sub(now_millis());
                Delay::from(Duration::from_millis(wait)).await;
            }
            let text = alerts::text(&digest.notices, now);
            let payload = alerts::payload(hook.format, &digest.notices, &text);
            let delivery = webhooks::send(hook, &payload, pace.window_secs).await;
            last_sent_ms.insert(digest.hook.as_str(), now_millis());
            let log = logs.entry(digest.hook.clone()).or_default();
            let first = &digest.notices[0];
            match delivery {
                Delivery::Delivered => {
                    log.sent(digest, Ok(()), &pace, now);
                    delivered.extend(&digest.seqs);
                    for seq in &digest.seqs {
                        sql.exec(
                            "DELETE FROM queued WHERE seq = ?",
                            vec![(*seq as i64).into()],
                        )
                        .map_err(storage_failed)?;
                    }
                    log_event(json!({
                        "event": "alert_delivered", "webhook_host": webhook::host(&hook.url),
                        "condition": first.condition, "state": first.state,
                        "accounts": digest.notices.len(),
                    }));
                }
                Delivery::Failed {
                    why,
                    retry_after_secs,
                } => {
                    log.sent(digest, Err(retry_after_secs), &pace, now);
                    failed_hooks.push(digest.hook.as_str());
                    log_error(json!({
                        "event": "alert_delivery_failed",
                        "webhook_host": webhook::host(&hook.url),
                        "message": why, "retry_in_secs": retry_after_secs,
                        "condition": first.condition, "accounts": digest.notices.len(),
                    }));
                }
            }
        }
        for (key, log) in &logs {
            let text = serde_json::to_string(log).map_err(|e| runtime::internal("encoding", e))?;
            sql.exec(
                "INSERT OR REPLACE INTO hooks VALUES (?, ?)",
                vec![key.as_str().into(), text.as_str().into()],
            )
            .map_err(storage_failed)?;
        }
        // What is left (and what arrived while sending) decides the next wake.
        let left: Vec<Queued> = queued
            .into_iter()
            .filter(|q| !delivered.contains(&q.seq))
            .collect();
        let (_, wake) = outbox::plan(&left, &logs, &pace, now);
        if let Some(at) = wake {
            self.wake_in(at.saturating_sub(now).max(1)).await;
        }
        Ok(())
    }

    /// Sets the alarm `secs` from now, unless one is set sooner (alerts that arrived while
    /// this one ran set theirs).
    async fn wake_in(&self, secs: u64) {
        let storage = self.state.storage();
        let at_ms = ((now_secs() + secs) * 1000) as i64;
        if matches!(storage.get_alarm().await, Ok(Some(set)) if set <= at_ms) {
            return;
        }
        if let Err(e) = storage.set_alarm(Duration::from_secs(secs)).await {
            log_error(json!({ "event": "alert_outbox_failed", "message": e.to_string() }));
        }
    }
}

fn storage_failed(e: worker::Error) -> AppError {
    runtime::internal("the alert outbox's storage failed", e)
}
