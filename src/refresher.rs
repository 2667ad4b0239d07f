//! How an account's Durable Object gets its credentials: apply the policy (`token::decide`),
//! call WeChat one call at a time per credential (retrying transient failures within the time
//! budget), and record the outcome in the object's storage (the truth) and in KV (the edge
//! cache), with the counts and errors `/status` shows.
//!
//! [`Core`] is cheap to clone so that background refreshes can outlive the request that
//! started them.

use crate::accounts::{Account, TokenApi};
use crate::backoff;
use crate::config::Settings;
use crate::error::{AppError, UpstreamFailure};
use crate::fingerprint::{config_fingerprint, fingerprint};
use crate::jssdk::{TicketKind, TicketRecord};
use crate::kv_cache;
use crate::quota::{quota_pause, DailyCount};
use crate::runtime::{self, log_error, log_event, now_millis, now_secs};
use crate::singleflight::SingleFlight;
use crate::status::{self, ErrorRecord};
use crate::token::{
    decide, AttemptRecord, Credential, Decision, ForceLog, Observed, TokenRecord, Trigger,
};
use crate::upstream;
use crate::wechat::{self, Issued};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;
use worker::durable::State;
use worker::{Delay, Env};

/// Re-cache a served credential in KV at most this often (KV allows one write per key per
/// second, and a burst of edge misses should not become a burst of writes).
const KV_RECACHE_SECS: u64 = 60;
const FORCED_KEY: &str = "forced";
const LAST_ERROR_KEY: &str = "last_error";
/// The configuration (fingerprint) WeChat last refused the credentials of.
const BLOCKED_CONFIG_KEY: &str = "blocked_config";

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
    fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Ticket(kind) => kind.name(),
        }
    }

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

    fn usage_key(self) -> String {
        format!("usage:{}", self.name())
    }

    fn kv_key(self, account_id: &str) -> String {
        match self {
            Self::Token => kv_cache::token_key(account_id),
            Self::Ticket(kind) => kv_cache::ticket_key(account_id, kind),
        }
    }
}

/// Calls to WeChat for one credential today, and when WeChat last said its quota was used up.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Usage {
    calls: DailyCount,
    quota_error_at: Option<u64>,
}

/// One credential's in-memory state, a copy of what the object stores.
struct Slot<R> {
    record: RefCell<Option<R>>,
    last_attempt: RefCell<Option<AttemptRecord>>,
    usage: RefCell<Usage>,
    kv_written_at: Cell<u64>,
    flight: SingleFlight<Result<R, AppError>>,
}

impl<R: Clone> Default for Slot<R> {
    fn default() -> Self {
        Self {
            record: RefCell::default(),
            last_attempt: RefCell::default(),
            usage: RefCell::default(),
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
    last_error: RefCell<Option<ErrorRecord>>,
    blocked_config: RefCell<Option<String>>,
}

impl Shared {
    fn ticket(&self, kind: TicketKind) -> &Slot<TicketRecord> {
        match kind {
            TicketKind::Jsapi => &self.jsapi,
            TicketKind::WxCard => &self.wx_card,
        }
    }

    fn usage(&self, which: Which) -> &RefCell<Usage> {
        match which {
            Which::Token => &self.token.usage,
            Which::Ticket(kind) => &self.ticket(kind).usage,
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
        let token_usage = get(&storage, &Which::Token.usage_key()).await?;
        let forced = get(&storage, FORCED_KEY).await?;
        let last_error = get(&storage, LAST_ERROR_KEY).await?;
        let blocked_config = get(&storage, BLOCKED_CONFIG_KEY).await?;
        let mut tickets = Vec::new();
        for kind in TicketKind::ALL {
            let which = Which::Ticket(kind);
            let record = get(&storage, &which.record_key()).await?;
            let attempt = get(&storage, &which.attempt_key()).await?;
            tickets.push((
                kind,
                record,
                attempt,
                get(&storage, &which.usage_key()).await?,
            ));
        }
        if !shared.loaded.replace(true) {
            *shared.token.record.borrow_mut() = token;
            *shared.token.last_attempt.borrow_mut() = token_attempt;
            *shared.token.usage.borrow_mut() = token_usage.unwrap_or_default();
            *shared.forced.borrow_mut() = forced.unwrap_or_default();
            *shared.last_error.borrow_mut() = last_error;
            *shared.blocked_config.borrow_mut() = blocked_config;
            for (kind, record, attempt, usage) in tickets {
                let slot = shared.ticket(kind);
                *slot.record.borrow_mut() = record;
                *slot.last_attempt.borrow_mut() = attempt;
                *slot.usage.borrow_mut() = usage.unwrap_or_default();
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
                paused_until: self.paused_until(Which::Token, now),
                automatic_blocked: self.automatic_blocked(),
            };
            let decision = decide(trigger, &observed, now, self.settings.refresh);
            self.log_decision(Which::Token, trigger, &decision, record.as_ref());
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
        let which = Which::Ticket(kind);
        let slot = self.shared.ticket(kind);
        let now = now_secs();
        let record = slot.record.borrow().clone();
        let last_attempt = slot.last_attempt.borrow().clone();
        let observed = Observed {
            record: record.as_ref(),
            last_attempt: last_attempt.as_ref(),
            in_flight: slot.flight.in_flight(),
            forced: None,
            paused_until: self.paused_until(which, now),
            automatic_blocked: false,
        };
        let decision = decide(trigger, &observed, now, self.settings.refresh);
        self.log_decision(which, trigger, &decision, record.as_ref());
        if let Decision::Refresh { .. } = decision {
            return Ok(Acquired::Refreshed(
                self.refresh_ticket(kind, trigger.name()).await?,
            ));
        }
        self.settle(which, trigger, decision, record, last_attempt)
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

    /// The account's entry in `/status`.
    pub fn status(&self) -> Value {
        let now = now_secs();
        let shared = &self.shared;
        let token = shared
            .token
            .record
            .borrow()
            .as_ref()
            .map(|r| status::credential_json(r, r.refreshed_at, now));
        let mut tickets = Map::new();
        for kind in TicketKind::ALL {
            if let Some(record) = shared.ticket(kind).record.borrow().as_ref() {
                let mut entry = status::credential_json(record, record.refreshed_at, now);
                entry["upstream_calls_today"] = json!(self.calls_today(Which::Ticket(kind), now));
                tickets.insert(kind.name().into(), entry);
            }
        }
        json!({
            "account": self.account.id,
            "kind": self.account.kind.name(),
            "api": self.account.api.name(),
            "token": token,
            "tickets": tickets,
            "last_error": shared.last_error.borrow().as_ref().map(ErrorRecord::to_json),
            "upstream_calls_today": self.calls_today(Which::Token, now),
            "forced_refreshes_today": shared.forced.borrow().count_today(now),
            "daily_quota": self.settings.daily_quota(&self.account),
            "auto_refresh": status::auto_refresh(self.paused_until(Which::Token, now), self.automatic_blocked(), now),
        })
    }

    fn calls_today(&self, which: Which, now: u64) -> u64 {
        self.shared.usage(which).borrow().calls.today(now)
    }

    fn paused_until(&self, which: Which, now: u64) -> Option<u64> {
        let usage = self.shared.usage(which).borrow();
        let quota = self.settings.daily_quota(&self.account);
        quota_pause(usage.quota_error_at, usage.calls.today(now), quota, now)
    }

    /// WeChat refused this very configuration's credentials: no automatic retries.
    fn automatic_blocked(&self) -> bool {
        let current = config_fingerprint(&self.account.appid, &self.account.secret);
        self.shared.blocked_config.borrow().as_deref() == Some(current.as_str())
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
        let blocked_config = self.shared.blocked_config.borrow().clone();
        let last_error = self.shared.last_error.borrow().clone();
        let mut writes = vec![
            storage.put(&which.attempt_key(), &attempt).await,
            storage.put(&which.usage_key(), &usage).await,
            storage.put(BLOCKED_CONFIG_KEY, &blocked_config).await,
        ];
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

    /// One line per refresh decision (never the credential: its fingerprint).
    fn log_decision(
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

/// A cron outcome for the log: never the credential itself.
fn outcome_summary<R>(outcome: Result<Acquired<R>, AppError>) -> Value {
    match outcome {
        Ok(Acquired::Refreshed(_)) => json!({ "status": 200, "outcome": "refreshed" }),
        Ok(Acquired::Served(_)) => json!({ "status": 200, "outcome": "served" }),
        Ok(Acquired::Skipped) => json!({ "status": 200, "outcome": "skipped" }),
        Err(e) => json!({ "status": e.status(), "outcome": e.code(), "message": e.message() }),
    }
}
