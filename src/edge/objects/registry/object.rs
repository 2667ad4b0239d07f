//! The registry object. It alone writes the edge's copies of registered accounts in KV
//! (`account:<id>` with its version, `account-appid:<appid>` with every id of the appid), and
//! it writes them in the order the registry changed: writes and removals of accounts (and
//! reseals) hold one lock from the table change to the KV writes. A KV write that fails
//! leaves the entry marked unpublished; the cron's visit republishes those and compares a
//! few more with KV each run.

use super::{sealed, summaries, tables, Deleted, Op, Picked, Resealed, Stored};
use crate::edge::adapters::faults;
use crate::edge::adapters::respond;
use crate::edge::adapters::runtime::{self, log_error, now_secs, KV_BINDING};
use crate::error::AppError;
use crate::policy::registry::Registered;
use futures_util::lock::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use std::cell::Cell;
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

/// Entries the cron's visit republishes (marked unpublished) and compares with KV, per run.
const REPUBLISH_PER_RUN: usize = 20;
const VERIFY_PER_RUN: usize = 10;

#[durable_object]
pub struct AccountRegistry {
    state: State,
    env: Env,
    /// Whether this instance has created its tables (once per object life).
    schema_ready: Cell<bool>,
    /// Held from an account's table change to its KV writes.
    writes: Mutex<()>,
}

impl DurableObject for AccountRegistry {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            schema_ready: Cell::default(),
            writes: Mutex::new(()),
        }
    }

    async fn fetch(&self, mut request: Request) -> worker::Result<Response> {
        let outcome = match request.json::<Op>().await {
            Ok(op) => {
                faults::stall(&self.env, "registry", || op_name(&op)).await;
                self.handle(op).await
            }
            Err(e) => Err(runtime::internal("unreadable registry call", e)),
        };
        Ok(respond::result(outcome.map(|v| respond::json(200, &v))))
    }
}

/// An op's name as its client sends it (`statuses`), for the test switches.
fn op_name(op: &Op) -> String {
    let encoded = serde_json::to_value(op).unwrap_or_default();
    encoded["op"].as_str().unwrap_or_default().to_owned()
}

impl AccountRegistry {
    fn sql(&self) -> Result<SqlStorage, AppError> {
        let sql = self.state.storage().sql();
        if !self.schema_ready.get() {
            tables::prepare(&sql)?;
            self.schema_ready.set(true);
        }
        Ok(sql)
    }

    async fn handle(&self, op: Op) -> Result<Value, AppError> {
        let sql = self.sql()?;
        match op {
            Op::Put { entry } => {
                faults::registry_put(&self.env).map_err(|e| runtime::internal("registry", e))?;
                let _held = self.writes.lock().await;
                let mut stored = tables::put(&sql, entry)?;
                stored.published = self.publish_stored(&sql, &stored).await;
                encode(&stored)
            }
            Op::Delete { id } => {
                let _held = self.writes.lock().await;
                let deleted = tables::delete(&sql, &id, now_secs())?;
                if let Some(deleted) = &deleted {
                    // Failing here leaves the tombstone: a retry (or the cron) finishes it.
                    self.withdraw(deleted).await?;
                }
                encode(&deleted)
            }
            Op::Bury { id, deleted_at } => encode(&tables::bury(&sql, &id, deleted_at)?),
            Op::Reseal { limit } => {
                let ring = runtime::key_ring(&self.env)?;
                let _held = self.writes.lock().await;
                let mut resealed: Resealed = sealed::reseal(&sql, &ring, limit)?;
                for entry in &resealed.resealed {
                    self.republish(&sql, entry).await;
                }
                resealed.edge_pending = tables::count_unpublished(&sql)?;
                encode(&resealed)
            }
            Op::Pick {
                env_ids,
                batch,
                overdue_before,
            } => {
                let mut picked: Picked = tables::pick(&sql, &env_ids, batch, overdue_before)?;
                picked.repaired = self.repair(&sql, &picked.erase).await?;
                encode(&picked)
            }
            Op::Get { id } => encode(&tables::one(&sql, &id)?),
            Op::List { after, limit, kind } => {
                encode(&tables::list(&sql, &after, limit, kind.as_deref())?)
            }
            Op::Report {
                id,
                due_at,
                summary,
            } => encode(&summaries::report(&sql, &id, due_at, &summary)?),
            Op::Census => {
                let ring = runtime::key_ring(&self.env)?;
                encode(&sealed::census(&sql, &ring)?)
            }
            Op::Statuses {
                ids,
                after,
                limit,
                sealing_key,
                skip,
                with_counters,
            } => {
                let window = (after.as_deref(), skip, limit);
                let mut rows = summaries::statuses(&sql, &ids, window, sealing_key.as_deref())?;
                if with_counters {
                    rows.counters = summaries::counters(&sql)?;
                }
                encode(&rows)
            }
            Op::Count { counts } => encode(&summaries::add_counts(&sql, &counts)?),
        }
    }

    /// Writes what a put changed to KV: the descriptor, and the appid index of its appid (and
    /// of the appid it replaced). A failure leaves it unpublished, for the cron. Whether it
    /// was written.
    async fn publish_stored(&self, sql: &SqlStorage, stored: &Stored) -> bool {
        let mut written = Ok(());
        if let (Some(old), Some(ids)) = (&stored.previous, &stored.sharing_previous_appid) {
            written = self.write_index(&old.appid, ids).await;
        }
        if written.is_ok() {
            written = self.write_descriptor(&stored.entry).await;
        }
        if written.is_ok() {
            written = self
                .write_index(&stored.entry.appid, &stored.sharing_appid)
                .await;
        }
        self.published(sql, &stored.entry, written)
    }

    /// Writes an entry to KV again as the registry has it.
    async fn republish(&self, sql: &SqlStorage, entry: &Registered) {
        let mut written = self.write_descriptor(entry).await;
        if written.is_ok() {
            match tables::sharing(sql, &entry.appid) {
                Ok(ids) => written = self.write_index(&entry.appid, &ids).await,
                Err(e) => written = Err(e),
            }
        }
        let _ = self.published(sql, entry, written);
    }

    fn published(
        &self,
        sql: &SqlStorage,
        entry: &Registered,
        written: Result<(), AppError>,
    ) -> bool {
        let outcome = written.and_then(|()| tables::mark_published(sql, &entry.id, entry.version));
        if let Err(e) = &outcome {
            log_error(json!({
                "event": "kv_publish_failed", "account": entry.id, "message": e.message(),
                "repair": "the cron writes it again",
            }));
        }
        outcome.is_ok()
    }

    /// Withdraws a removed account from KV: its descriptor, and its id from its appid's index.
    async fn withdraw(&self, deleted: &Deleted) -> Result<(), AppError> {
        let id = &deleted.entry.id;
        let key = descriptor_key(id);
        faults::kv_write(&self.env, &key).map_err(kv_failed)?;
        self.kv()?.delete(&key).await.map_err(kv_failed)?;
        self.write_index(&deleted.entry.appid, &deleted.sharing_appid)
            .await
    }

    /// The cron's repairs: the KV copies of removals it is about to finish (withdrawn again,
    /// in case that failed), entries whose KV write failed, then a few more compared with what
    /// KV holds (a version or an appid index that differs is written again). How many were
    /// written.
    async fn repair(&self, sql: &SqlStorage, erasing: &[(String, u64)]) -> Result<usize, AppError> {
        let _held = self.writes.lock().await;
        let mut repaired = 0;
        for (id, _) in erasing {
            if let Some(deleted) = tables::delete(sql, id, now_secs())? {
                if let Err(e) = self.withdraw(&deleted).await {
                    log_error(json!({ "event": "kv_publish_failed", "account": id,
                        "message": e.message(), "repair": "the next cron run withdraws it" }));
                }
            }
        }
        for entry in tables::unpublished(sql, REPUBLISH_PER_RUN)? {
            self.republish(sql, &entry).await;
            repaired += 1;
        }
        let kv = self.kv()?;
        for entry in tables::next_to_verify(sql, VERIFY_PER_RUN)? {
            let held = kv
                .get(&descriptor_key(&entry.id))
                .json::<Registered>()
                .await;
            if held.ok().flatten().as_ref() != Some(&entry) {
                self.republish(sql, &entry).await;
                repaired += 1;
            }
        }
        Ok(repaired)
    }

    fn kv(&self) -> Result<worker::kv::KvStore, AppError> {
        self.env
            .kv(KV_BINDING)
            .map_err(|e| runtime::internal("KV", e))
    }

    async fn write_descriptor(&self, entry: &Registered) -> Result<(), AppError> {
        let key = descriptor_key(&entry.id);
        let text = serde_json::to_string(entry).map_err(|e| runtime::internal("encoding", e))?;
        faults::kv_write(&self.env, &key).map_err(kv_failed)?;
        self.kv()?
            .put(&key, text)
            .map_err(kv_failed)?
            .execute()
            .await
            .map_err(kv_failed)
    }

    /// The appid's index: every id registered with it (none: the entry goes).
    async fn write_index(&self, appid: &str, ids: &[String]) -> Result<(), AppError> {
        let key = appid_key(appid);
        faults::kv_write(&self.env, &key).map_err(kv_failed)?;
        let kv = self.kv()?;
        if ids.is_empty() {
            return kv.delete(&key).await.map_err(kv_failed);
        }
        let list = serde_json::to_string(ids).map_err(|e| runtime::internal("encoding", e))?;
        kv.put(&key, list)
            .map_err(kv_failed)?
            .execute()
            .await
            .map_err(kv_failed)
    }
}

pub fn descriptor_key(id: &str) -> String {
    format!("account:{id}")
}

pub fn appid_key(appid: &str) -> String {
    format!("account-appid:{appid}")
}

fn kv_failed(e: impl std::fmt::Display) -> AppError {
    runtime::internal("writing a registered account to KV", e)
}

fn encode<T: Serialize>(value: &T) -> Result<Value, AppError> {
    serde_json::to_value(value).map_err(|e| runtime::internal("encoding", e))
}
