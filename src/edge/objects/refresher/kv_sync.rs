//! Keeping KV in step with the object: each credential's entry, and for tokens the index from
//! a token to its account. One writer per entry, a second between writes to a key (KV's
//! limit), and the latest record always written last; a failed write is retried by the alarm,
//! and the entry's bounded freshness covers whatever is lost meanwhile.

use super::state::Slot;
use super::AccountCtx;
use crate::edge::adapters::kv_cache::{self, IndexEntry};
use crate::edge::adapters::runtime::{log_error, now_millis, now_secs};
use crate::policy::ledger::CredentialKind;
use crate::policy::token::{Credential, TokenRecord};
use serde::Serialize;
use serde_json::json;
use std::time::Duration;
use worker::Delay;

/// KV accepts one write per second to a key.
const KV_WRITE_SPACING_MS: u64 = 1_000;
/// The alarm's first retry of a failed KV write; doubled per failure, up to a minute.
const KV_RETRY_FIRST_MS: u64 = 2_000;
const KV_RETRY_MAX_MS: u64 = 60_000;

impl AccountCtx {
    /// Writes the credential's KV entry if it is behind, and waits for it. A caller that
    /// finds a write under way returns at once: that writer picks up the latest record.
    pub(super) async fn sync_kv(&self, which: CredentialKind) {
        match which {
            CredentialKind::Token => self.sync_slot(which, &self.state.token).await,
            CredentialKind::Ticket(kind) => self.sync_slot(which, self.state.ticket(kind)).await,
        }
    }

    /// As [`Self::sync_kv`], and if another caller's write is under way, waits for it too (at
    /// most a few seconds): after a forced stable_token refresh, KV must have the new token
    /// before anyone is told it.
    pub(super) async fn sync_kv_fully(&self, which: CredentialKind) {
        self.sync_kv(which).await;
        let kv = self.slot_kv(which);
        for _ in 0..50 {
            if !kv.running.get() {
                return;
            }
            Delay::from(Duration::from_millis(100)).await;
        }
    }

    /// As [`Self::sync_kv`], without waiting.
    pub(super) fn spawn_kv_sync(&self, which: CredentialKind) {
        let ctx = self.clone();
        self.object
            .wait_until(async move { ctx.sync_kv(which).await });
    }

    async fn sync_slot<R: Credential + Serialize + IndexedRecord>(
        &self,
        which: CredentialKind,
        slot: &Slot<R>,
    ) {
        let kv = &slot.kv;
        if self.state.retired.get() || !kv.dirty.get() || kv.running.replace(true) {
            return;
        }
        let mut failed = false;
        while kv.dirty.replace(false) {
            let wait_ms =
                (kv.last_write_ms.get() + KV_WRITE_SPACING_MS).saturating_sub(now_millis());
            if wait_ms > 0 {
                Delay::from(Duration::from_millis(wait_ms)).await;
            }
            let Some(record) = slot.record() else { break };
            if self.state.retired.get() {
                break;
            }
            let now = now_secs();
            let fresh_until = record.expires_at().min(now + self.settings.kv_max_age_secs);
            let key = kv_cache::key(&self.account.id, which);
            let keep_until = fresh_until + self.settings.kv_stale_answer_secs();
            let until = (fresh_until, keep_until);
            let written = kv_cache::write(&self.env, &key, &record, until, now).await;
            kv.last_write_ms.set(now_millis());
            let indexed = match written {
                Ok(()) => {
                    kv.fresh_until.set(fresh_until);
                    self.write_index(slot, &record, now).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = indexed {
                self.log_kv_error(which, &e.to_string());
                failed = true;
                break;
            }
        }
        kv.running.set(false);
        let was_pending = slot.state.borrow().kv_pending;
        // Stored with every failure too: the failure's count must outlive an eviction.
        if failed || was_pending {
            slot.state.borrow_mut().kv_pending = failed;
            self.persist(Some(which)).await;
        }
        if failed {
            // An entry that cannot be written now is retried; until then, readers stop
            // trusting the old entry once its freshness runs out.
            kv.dirty.set(true);
            let failures = self.state.alarm_failures.get();
            let delay = (KV_RETRY_FIRST_MS << failures.min(5)).min(KV_RETRY_MAX_MS);
            self.state.alarm_failures.set(failures + 1);
            self.schedule_alarm(delay).await;
        } else {
            self.state.alarm_failures.set(0);
        }
    }

    /// For tokens: the index entries of the current token and of the one it replaced, written
    /// once per new token.
    async fn write_index<R: IndexedRecord>(
        &self,
        slot: &Slot<R>,
        record: &R,
        now: u64,
    ) -> worker::Result<()> {
        let Some(token) = record.as_token() else {
            return Ok(());
        };
        let this = (token.access_token.clone(), token.expires_at);
        if slot.kv.indexed.borrow().as_ref() == Some(&this) {
            return Ok(());
        }
        let entry = |accepted_until| IndexEntry {
            account: self.account.id.clone(),
            issuer: self.account.issuer.clone(),
            accepted_until,
        };
        kv_cache::write_index(
            &self.env,
            &token.access_token,
            &entry(token.expires_at),
            now,
        )
        .await?;
        if let Some(previous) = &token.previous {
            let until = entry(previous.accepted_until);
            kv_cache::write_index(&self.env, &previous.access_token, &until, now).await?;
        }
        *slot.kv.indexed.borrow_mut() = Some(this);
        Ok(())
    }

    fn log_kv_error(&self, which: CredentialKind, message: &str) {
        self.state.ledger.borrow_mut().counters.kv_write_failed();
        log_error(json!({
            "event": "kv_write_failed",
            "account": self.account.id,
            "credential": which.name(),
            "message": message,
        }));
    }
}

/// Records whose KV writes also maintain the token index.
pub(super) trait IndexedRecord: Clone {
    fn as_token(&self) -> Option<&TokenRecord> {
        None
    }
}

impl IndexedRecord for TokenRecord {
    fn as_token(&self) -> Option<&TokenRecord> {
        Some(self)
    }
}

impl IndexedRecord for crate::policy::ticket::TicketRecord {}
