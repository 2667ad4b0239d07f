//! The calls to WeChat behind a refresh, and recording what they returned.

use super::state::{Slot, Which, BLOCKED_CONFIG_KEY, FORCED_KEY, LAST_ERROR_KEY};
use super::Core;
use crate::backoff;
use crate::error::{AppError, UpstreamFailure};
use crate::fingerprint::{config_fingerprint, fingerprint};
use crate::jssdk::{TicketKind, TicketRecord};
use crate::kv_cache;
use crate::runtime::{self, log_error, log_event, now_millis, now_secs};
use crate::status::ErrorRecord;
use crate::token::{AttemptRecord, Credential, Decision, TokenRecord, Trigger};
use crate::upstream;
use crate::wechat::{self, Issued};
use serde::Serialize;
use serde_json::json;
use std::future::Future;
use std::time::Duration;
use worker::Delay;

/// Re-cache a served credential in KV at most this often (KV allows one write per key per
/// second, and a burst of edge misses should not become a burst of writes).
const KV_RECACHE_SECS: u64 = 60;

impl Core {
    /// Calls WeChat for a token, or joins the call already under way.
    pub(super) async fn refresh_token(
        &self,
        trigger: &'static str,
        force: bool,
    ) -> Result<TokenRecord, AppError> {
        let flight = &self.shared.token.flight;
        flight.run(|| self.call_for_token(trigger, force)).await
    }

    pub(super) async fn refresh_ticket(
        &self,
        kind: TicketKind,
        trigger: &'static str,
    ) -> Result<TicketRecord, AppError> {
        let flight = &self.shared.ticket(kind).flight;
        flight.run(|| self.call_for_ticket(kind, trigger)).await
    }

    async fn call_for_token(
        &self,
        trigger: &'static str,
        force: bool,
    ) -> Result<TokenRecord, AppError> {
        let started_at = now_secs();
        if force {
            // Counted when sent: WeChat counts the attempt, whatever it answers.
            self.shared.forced.borrow_mut().record(started_at);
            let forced = self.shared.forced.borrow().clone();
            if let Err(e) = self.state.storage().put(FORCED_KEY, &forced).await {
                self.log_storage_error(e);
            }
        }
        let outcome = self
            .call_upstream(Which::Token, trigger, force, |budget_ms| {
                upstream::fetch_token(&self.settings, &self.account, force, budget_ms)
            })
            .await;
        let before = self.shared.token.record.borrow().clone();
        let outcome = outcome.map(|issued| {
            TokenRecord::issued(issued.value, issued.expires_in, started_at)
                .replacing(before.as_ref(), started_at)
        });
        self.store(Which::Token, &self.shared.token, &outcome).await;
        outcome.map_err(AppError::Upstream)
    }

    /// Fetches a ticket with the current access_token. If WeChat says that token is not (or no
    /// longer) valid, the token is refreshed (a passive refresh naming it, so only if it is
    /// still current) and the ticket fetched once more.
    async fn call_for_ticket(
        &self,
        kind: TicketKind,
        trigger: &'static str,
    ) -> Result<TicketRecord, AppError> {
        let which = Which::Ticket(kind);
        let token = self
            .token(&Trigger::Read)
            .await?
            .record()
            .ok_or_else(|| runtime::internal("policy", "no token"))?;
        let started_at = now_secs();
        let (settings, account) = (&*self.settings, &*self.account);
        let used = token.access_token.as_str();
        let mut outcome = self
            .call_upstream(which, trigger, false, |budget_ms| {
                upstream::fetch_ticket(settings, account, kind, used, budget_ms)
            })
            .await;
        if let Err(UpstreamFailure::WeChat { errcode, .. }) = &outcome {
            if wechat::is_token_rejected(*errcode) {
                let stale = Trigger::Passive {
                    stale_token: Some(used.to_owned()),
                };
                let replacement = self.token(&stale).await?.record();
                if let Some(replacement) = replacement.filter(|r| r.access_token != used) {
                    let fresh = replacement.access_token.as_str();
                    outcome = self
                        .call_upstream(which, trigger, false, |budget_ms| {
                            upstream::fetch_ticket(settings, account, kind, fresh, budget_ms)
                        })
                        .await;
                }
            }
        }
        let outcome =
            outcome.map(|issued| TicketRecord::issued(issued.value, issued.expires_in, started_at));
        self.store(which, self.shared.ticket(kind), &outcome).await;
        outcome.map_err(AppError::Upstream)
    }

    /// One refresh's calls to WeChat: a busy WeChat or a network/5xx failure is tried again
    /// after a short jittered delay, while the upstream time budget lasts. A forced stable_token
    /// refresh is sent once (each one counts against WeChat's daily limit of them).
    async fn call_upstream<F, Fut>(
        &self,
        which: Which,
        trigger: &'static str,
        force: bool,
        send: F,
    ) -> Result<Issued, UpstreamFailure>
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<Issued, UpstreamFailure>>,
    {
        let budget_ms = self.settings.upstream_timeout_ms;
        let started_ms = now_millis();
        let attempts = if force { 1 } else { backoff::MAX_ATTEMPTS };
        let mut attempt = 1;
        loop {
            let spent_ms = now_millis().saturating_sub(started_ms);
            let call_started_ms = now_millis();
            let outcome = send(budget_ms.saturating_sub(spent_ms).max(1)).await;
            self.shared
                .usage(which)
                .borrow_mut()
                .calls
                .add(now_secs(), 1);
            self.log_call(which, trigger, force, attempt, &outcome, call_started_ms);
            let retry = match &outcome {
                Err(failure) if attempt < attempts && backoff::is_retryable(failure) => {
                    let random = u32::from_le_bytes(runtime::random_bytes::<4>());
                    Some(backoff::retry_delay_ms(attempt, random))
                }
                _ => None,
            };
            match retry {
                Some(delay_ms) if now_millis() + delay_ms < started_ms + budget_ms => {
                    Delay::from(Duration::from_millis(delay_ms)).await;
                    attempt += 1;
                }
                _ => return outcome,
            }
        }
    }

    /// Records a refresh's outcome: in memory, in storage (durable first: the object is the
    /// truth), then in KV, awaited so that whoever gets the new credential from us also finds
    /// it there on their next read.
    async fn store<R>(&self, which: Which, slot: &Slot<R>, outcome: &Result<R, UpstreamFailure>)
    where
        R: Credential + Serialize,
    {
        let now = now_secs();
        let failure = outcome.as_ref().err().cloned();
        let previous = slot.last_attempt.borrow().clone();
        // The interval counts from the refresh's last call (retries included), not its first.
        let attempt = AttemptRecord::after(previous.as_ref(), now, failure.clone());
        *slot.last_attempt.borrow_mut() = Some(attempt.clone());
        if let Ok(record) = outcome {
            *slot.record.borrow_mut() = Some(record.clone());
        }
        let wechat_errcode = match &failure {
            Some(UpstreamFailure::WeChat { errcode, .. }) => Some(*errcode),
            _ => None,
        };
        if wechat_errcode == Some(45009) {
            slot.usage.borrow_mut().quota_error_at = Some(now);
        }
        if let Some(failure) = &failure {
            let error = ErrorRecord {
                at: now,
                credential: which.name().into(),
                failure: failure.clone(),
            };
            *self.shared.last_error.borrow_mut() = Some(error);
        }
        if which == Which::Token {
            let refused = wechat_errcode.is_some_and(wechat::is_credential_error);
            *self.shared.blocked_config.borrow_mut() =
                refused.then(|| config_fingerprint(&self.account.appid, &self.account.secret));
        }

        let storage = self.state.storage();
        let usage = slot.usage.borrow().clone();
        let last_error = self.shared.last_error.borrow().clone();
        let mut writes = vec![
            storage.put(&which.attempt_key(), &attempt).await,
            storage.put(&which.usage_key(), &usage).await,
        ];
        if which == Which::Token {
            // Only a token call can change it.
            let blocked_config = self.shared.blocked_config.borrow().clone();
            writes.push(storage.put(BLOCKED_CONFIG_KEY, &blocked_config).await);
        }
        match outcome {
            Ok(record) => writes.push(storage.put(&which.record_key(), record).await),
            Err(_) => writes.push(storage.put(LAST_ERROR_KEY, &last_error).await),
        }

        for failed in writes.into_iter().filter_map(Result::err) {
            self.log_storage_error(failed);
        }
        if let Ok(record) = outcome {
            let key = which.kv_key(&self.account.id);
            match kv_cache::write(&self.env, &key, record, record.expires_at(), now).await {
                Ok(()) => slot.kv_written_at.set(now),
                Err(e) => self.log_kv_error(e),
            }
        }
    }

    /// The worker only asks for a read on a KV miss: put the record back for the next readers.
    pub(super) fn recache<R: Credential + Serialize + 'static>(&self, which: Which, record: &R) {
        let written_at = match which {
            Which::Token => &self.shared.token.kv_written_at,
            Which::Ticket(kind) => &self.shared.ticket(kind).kv_written_at,
        };
        let now = now_secs();
        if now < written_at.get() + KV_RECACHE_SECS {
            return;
        }
        written_at.set(now);
        let (core, record) = (self.clone(), record.clone());
        self.state.wait_until(async move {
            let key = which.kv_key(&core.account.id);
            if let Err(e) =
                kv_cache::write(&core.env, &key, &record, record.expires_at(), now).await
            {
                core.log_kv_error(e);
            }
        });
    }

    /// One line per refresh decision (never the credential: its fingerprint).
    pub(super) fn log_decision(
        &self,
        which: Which,
        trigger: &Trigger,
        decision: &Decision,
        current: Option<&impl Credential>,
    ) {
        log_event(json!({
            "event": "refresh_decision",
            "account": self.account.id,
            "api": self.account.api.name(),
            "credential": which.name(),
            "trigger": trigger.name(),
            "decision": format!("{decision:?}"),
            "fingerprint": current.map(|c| fingerprint(c.value())),
        }));
    }

    /// One line per call to WeChat.
    fn log_call(
        &self,
        which: Which,
        trigger: &str,
        force: bool,
        attempt: u32,
        outcome: &Result<Issued, UpstreamFailure>,
        started_ms: u64,
    ) {
        let failure = outcome.as_ref().err();
        log_event(json!({
            "event": "upstream_call",
            "account": self.account.id,
            "api": self.account.api.name(),
            "credential": which.name(),
            "trigger": trigger,
            "force": force,
            "attempt": attempt,
            "outcome": failure.map_or("ok".to_owned(), |f| AppError::Upstream(f.clone()).code().to_owned()),
            "wechat_errcode": match failure { Some(UpstreamFailure::WeChat { errcode, .. }) => json!(errcode), _ => json!(null) },
            "duration_ms": now_millis().saturating_sub(started_ms),
            "fingerprint": outcome.as_ref().ok().map(|issued| fingerprint(&issued.value)),
        }));
    }

    fn log_storage_error(&self, error: worker::Error) {
        log_error(
            json!({ "event": "storage_write_failed", "account": self.account.id, "message": error.to_string() }),
        );
    }

    fn log_kv_error(&self, error: worker::Error) {
        log_error(
            json!({ "event": "kv_write_failed", "account": self.account.id, "message": error.to_string() }),
        );
    }
}
