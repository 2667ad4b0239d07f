//! How an account's Durable Object gets its credentials: apply the policy (`token::decide`),
//! call WeChat one call at a time per credential, and record the outcome in the object's
//! storage (the truth) and in KV (the edge cache).
//!
//! [`Core`] is cheap to clone so that background refreshes can outlive the request that
//! started them.

use crate::accounts::{Account, TokenApi};
use crate::config::Settings;
use crate::error::{AppError, UpstreamFailure};
use crate::jssdk::{TicketKind, TicketRecord};
use crate::kv_cache;
use crate::runtime::{self, log_error, log_event, now_millis, now_secs};
use crate::singleflight::SingleFlight;
use crate::token::{
    decide, AttemptRecord, Credential, Decision, ForceLog, Observed, TokenRecord, Trigger,
};
use crate::upstream;
use crate::wechat;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use worker::durable::State;
use worker::Env;

/// Re-cache a served credential in KV at most this often (KV allows one write per key per
/// second, and a burst of edge misses should not become a burst of writes).
const KV_RECACHE_SECS: u64 = 60;

/// What a request for a credential got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "record", rename_all = "snake_case")]
pub enum Acquired<R> {
    /// The stored one, still valid.
    Served(R),
    /// A new one from WeChat.
    Refreshed(R),
    /// Nothing to do (cron and background only).
    Skipped,
}

impl<R> Acquired<R> {
    pub fn record(self) -> Option<R> {
        match self {
            Self::Served(record) | Self::Refreshed(record) => Some(record),
            Self::Skipped => None,
        }
    }
}

/// The account's credentials: the access_token and the two kinds of ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Token,
    Ticket(TicketKind),
}

impl Which {
    fn record_key(self) -> String {
        match self {
            Self::Token => "token".into(),
            Self::Ticket(kind) => format!("ticket:{}", kind.name()),
        }
    }

    fn attempt_key(self) -> String {
        match self {
            Self::Token => "last_attempt".into(),
            Self::Ticket(kind) => format!("ticket_attempt:{}", kind.name()),
        }
    }

    fn kv_key(self, account_id: &str) -> String {
        match self {
            Self::Token => kv_cache::token_key(account_id),
            Self::Ticket(kind) => kv_cache::ticket_key(account_id, kind),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Ticket(kind) => kind.name(),
        }
    }
}

const FORCED_KEY: &str = "forced";

/// One credential's in-memory state, a copy of what the object stores.
struct Slot<R> {
    record: RefCell<Option<R>>,
    last_attempt: RefCell<Option<AttemptRecord>>,
    kv_written_at: Cell<u64>,
    flight: SingleFlight<Result<R, AppError>>,
}

impl<R: Clone> Default for Slot<R> {
    fn default() -> Self {
        Self {
            record: RefCell::default(),
            last_attempt: RefCell::default(),
            kv_written_at: Cell::default(),
            flight: SingleFlight::default(),
        }
    }
}

#[derive(Default)]
pub struct Shared {
    loaded: Cell<bool>,
    token: Slot<TokenRecord>,
    forced: RefCell<ForceLog>,
    jsapi: Slot<TicketRecord>,
    wx_card: Slot<TicketRecord>,
}

impl Shared {
    fn ticket(&self, kind: TicketKind) -> &Slot<TicketRecord> {
        match kind {
            TicketKind::Jsapi => &self.jsapi,
            TicketKind::WxCard => &self.wx_card,
        }
    }
}

#[derive(Clone)]
pub struct Core {
    pub shared: Rc<Shared>,
    pub state: Rc<State>,
    pub env: Env,
    pub settings: Rc<Settings>,
    pub account: Rc<Account>,
}

impl Core {
    /// Reads the stored state once per object instance. Storage reads do not interleave with
    /// other requests (input gates), so two loads cannot race.
    pub async fn load(&self) -> Result<(), AppError> {
        let shared = &self.shared;
        if shared.loaded.get() {
            return Ok(());
        }
        let storage = self.state.storage();
        async fn get<T: DeserializeOwned>(
            storage: &worker::Storage,
            key: &str,
        ) -> Result<Option<T>, AppError> {
            storage
                .get(key)
                .await
                .map_err(|e| runtime::internal("reading storage", e))
        }
        let token = get(&storage, &Which::Token.record_key()).await?;
        let token_attempt = get(&storage, &Which::Token.attempt_key()).await?;
        let forced = get(&storage, FORCED_KEY).await?;
        let mut tickets = Vec::new();
        for kind in TicketKind::ALL {
            let which = Which::Ticket(kind);
            let record = get(&storage, &which.record_key()).await?;
            tickets.push((kind, record, get(&storage, &which.attempt_key()).await?));
        }
        if !shared.loaded.replace(true) {
            *shared.token.record.borrow_mut() = token;
            *shared.token.last_attempt.borrow_mut() = token_attempt;
            *shared.forced.borrow_mut() = forced.unwrap_or_default();
            for (kind, record, attempt) in tickets {
                *shared.ticket(kind).record.borrow_mut() = record;
                *shared.ticket(kind).last_attempt.borrow_mut() = attempt;
            }
        }
        Ok(())
    }

    pub async fn token(&self, trigger: &Trigger) -> Result<Acquired<TokenRecord>, AppError> {
        let slot = &self.shared.token;
        // A passive refresh that joined a call already under way can get back the very token
        // it reported (stable_token hands out the current token unless forced): decide again.
        for round in 1..=2 {
            let now = now_secs();
            let record = slot.record.borrow().clone();
            let last_attempt = slot.last_attempt.borrow().clone();
            let forced = self.shared.forced.borrow().clone();
            let stable = self.account.api == TokenApi::Stable;
            let observed = Observed {
                record: record.as_ref(),
                last_attempt: last_attempt.as_ref(),
                in_flight: slot.flight.in_flight(),
                forced: stable.then_some((&forced, self.settings.stable_force)),
            };
            let decision = decide(trigger, &observed, now, self.settings.refresh);
            self.log_decision(Which::Token, trigger, &decision);
            if let Decision::Refresh { force } = decision {
                let fresh = self.refresh_token(trigger.name(), force).await?;
                let got_back_the_stale_token = matches!(
                    trigger,
                    Trigger::Passive { stale_token: Some(stale) } if *stale == fresh.access_token
                );
                if !(got_back_the_stale_token && !force && round < 2) {
                    return Ok(Acquired::Refreshed(fresh));
                }
                continue;
            }
            return self.settle(Which::Token, trigger, decision, record, last_attempt);
        }
        Err(runtime::internal("policy", "no decision after two rounds"))
    }

    pub async fn ticket(
        &self,
        kind: TicketKind,
        trigger: &Trigger,
    ) -> Result<Acquired<TicketRecord>, AppError> {
        let slot = self.shared.ticket(kind);
        let now = now_secs();
        let record = slot.record.borrow().clone();
        let last_attempt = slot.last_attempt.borrow().clone();
        let observed = Observed {
            record: record.as_ref(),
            last_attempt: last_attempt.as_ref(),
            in_flight: slot.flight.in_flight(),
            forced: None,
        };
        let decision = decide(trigger, &observed, now, self.settings.refresh);
        self.log_decision(Which::Ticket(kind), trigger, &decision);
        if let Decision::Refresh { .. } = decision {
            return Ok(Acquired::Refreshed(
                self.refresh_ticket(kind, trigger.name()).await?,
            ));
        }
        self.settle(Which::Ticket(kind), trigger, decision, record, last_attempt)
    }

    /// The cron visit: the token, then every ticket the account has used.
    pub async fn cron(&self) -> Value {
        let mut tickets = Map::new();
        let token = outcome_summary(self.token(&Trigger::Cron).await);
        for kind in TicketKind::ALL {
            if self.shared.ticket(kind).record.borrow().is_some() {
                let outcome = outcome_summary(self.ticket(kind, &Trigger::Cron).await);
                tickets.insert(kind.name().into(), outcome);
            }
        }
        json!({ "token": token, "tickets": tickets })
    }

    /// Every decision but a refresh in the foreground.
    fn settle<R>(
        &self,
        which: Which,
        trigger: &Trigger,
        decision: Decision,
        record: Option<R>,
        last_attempt: Option<AttemptRecord>,
    ) -> Result<Acquired<R>, AppError>
    where
        R: Credential + Serialize + 'static,
    {
        let current = || {
            record
                .clone()
                .ok_or_else(|| runtime::internal("policy", "no record"))
        };
        match decision {
            Decision::Serve => {
                let current = current()?;
                if *trigger == Trigger::Read {
                    self.recache(which, &current);
                }
                Ok(Acquired::Served(current))
            }
            Decision::ServeAndRefresh => {
                let current = current()?;
                // The outcome is logged and stored by the refresh itself.
                let core = self.clone();
                let name = trigger.name();
                self.state.wait_until(async move {
                    let _ = match which {
                        Which::Token => core.refresh_token(name, false).await.map(drop),
                        Which::Ticket(kind) => core.refresh_ticket(kind, name).await.map(drop),
                    };
                });
                Ok(Acquired::Served(current))
            }
            Decision::Skip => Ok(Acquired::Skipped),
            Decision::TooSoon {
                retry_after_secs,
                reason,
            } => Err(AppError::RefreshTooSoon {
                retry_after_secs,
                reason,
            }),
            Decision::Unavailable { retry_after_secs } => Err(AppError::NoValidToken {
                last_failure: last_attempt.and_then(|attempt| attempt.failure),
                retry_after_secs,
            }),
            Decision::Refresh { .. } => Err(runtime::internal("policy", "refresh not settled")),
        }
    }

    /// Calls WeChat for a token, or joins the call already under way.
    async fn refresh_token(
        &self,
        trigger: &'static str,
        force: bool,
    ) -> Result<TokenRecord, AppError> {
        let flight = &self.shared.token.flight;
        flight.run(|| self.call_for_token(trigger, force)).await
    }

    async fn refresh_ticket(
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
        let started_ms = now_millis();
        if force {
            // Counted when sent: WeChat counts the attempt, whatever it answers.
            self.shared.forced.borrow_mut().record(started_at);
            let forced = self.shared.forced.borrow().clone();
            if let Err(e) = self.state.storage().put(FORCED_KEY, &forced).await {
                self.log_storage_error(e);
            }
        }
        let outcome = upstream::fetch_token(&self.settings, &self.account, force).await;
        self.log_call(Which::Token, trigger, force, &outcome, started_ms);
        let before = self.shared.token.record.borrow().clone();
        let outcome = outcome.map(|issued| {
            TokenRecord::issued(issued.value, issued.expires_in, started_at)
                .replacing(before.as_ref(), started_at)
        });
        self.store(Which::Token, &self.shared.token, started_at, &outcome)
            .await;
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
        let started_ms = now_millis();
        let mut outcome =
            upstream::fetch_ticket(&self.settings, &self.account, kind, &token.access_token).await;
        self.log_call(which, trigger, false, &outcome, started_ms);

        if let Err(UpstreamFailure::WeChat { errcode, .. }) = &outcome {
            if wechat::is_token_rejected(*errcode) {
                let stale = Trigger::Passive {
                    stale_token: Some(token.access_token.clone()),
                };
                let replacement = self.token(&stale).await?.record();
                if let Some(replacement) =
                    replacement.filter(|r| r.access_token != token.access_token)
                {
                    let retry_ms = now_millis();
                    outcome = upstream::fetch_ticket(
                        &self.settings,
                        &self.account,
                        kind,
                        &replacement.access_token,
                    )
                    .await;
                    self.log_call(which, trigger, false, &outcome, retry_ms);
                }
            }
        }
        let outcome =
            outcome.map(|issued| TicketRecord::issued(issued.value, issued.expires_in, started_at));
        self.store(which, self.shared.ticket(kind), started_at, &outcome)
            .await;
        outcome.map_err(AppError::Upstream)
    }

    /// Records a call's outcome: in memory, in storage (durable first: the object is the
    /// truth), then in KV, awaited so that whoever gets the new credential from us also finds
    /// it there on their next read.
    async fn store<R>(
        &self,
        which: Which,
        slot: &Slot<R>,
        started_at: u64,
        outcome: &Result<R, UpstreamFailure>,
    ) where
        R: Credential + Serialize,
    {
        let attempt = AttemptRecord {
            at: started_at,
            failure: outcome.as_ref().err().cloned(),
        };
        *slot.last_attempt.borrow_mut() = Some(attempt.clone());
        if let Ok(record) = outcome {
            *slot.record.borrow_mut() = Some(record.clone());
        }
        let storage = self.state.storage();
        let persisted = match outcome {
            Ok(record) => storage.put(&which.record_key(), record).await,
            Err(_) => Ok(()),
        };
        if let Err(e) = persisted.and(storage.put(&which.attempt_key(), &attempt).await) {
            self.log_storage_error(e);
        }
        if let Ok(record) = outcome {
            let now = now_secs();
            let key = which.kv_key(&self.account.id);
            match kv_cache::write(&self.env, &key, record, record.expires_at(), now).await {
                Ok(()) => slot.kv_written_at.set(now),
                Err(e) => self.log_kv_error(e),
            }
        }
    }

    /// The worker only asks for a read on a KV miss: put the record back for the next readers.
    fn recache<R: Credential + Serialize + 'static>(&self, which: Which, record: &R) {
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

    fn log_decision(&self, which: Which, trigger: &Trigger, decision: &Decision) {
        if *decision != Decision::Serve {
            log_event(json!({
                "event": "refresh_decision",
                "account": self.account.id,
                "credential": which.name(),
                "trigger": trigger.name(),
                "decision": format!("{decision:?}"),
            }));
        }
    }

    fn log_call<T>(
        &self,
        which: Which,
        trigger: &str,
        force: bool,
        outcome: &Result<T, UpstreamFailure>,
        started_ms: u64,
    ) {
        let failure = outcome.as_ref().err();
        log_event(json!({
            "event": "upstream_call",
            "account": self.account.id,
            "credential": which.name(),
            "api": self.account.api.name(),
            "force": force,
            "trigger": trigger,
            "outcome": failure.map_or("ok".to_owned(), |f| AppError::Upstream(f.clone()).code().to_owned()),
            "wechat_errcode": match failure { Some(UpstreamFailure::WeChat { errcode, .. }) => json!(errcode), _ => json!(null) },
            "duration_ms": now_millis().saturating_sub(started_ms),
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

/// A cron outcome for the log: never the credential itself.
fn outcome_summary<R>(outcome: Result<Acquired<R>, AppError>) -> Value {
    match outcome {
        Ok(Acquired::Refreshed(_)) => json!({ "status": 200, "outcome": "refreshed" }),
        Ok(Acquired::Served(_)) => json!({ "status": 200, "outcome": "served" }),
        Ok(Acquired::Skipped) => json!({ "status": 200, "outcome": "skipped" }),
        Err(e) => json!({ "status": e.status(), "outcome": e.code(), "message": e.message() }),
    }
}
