//! How an account's Durable Object gets its credentials: apply the policy (`refresh::decide`),
//! call WeChat one call at a time per credential (retrying transient failures within the time
//! budget), and record the outcome in the object's storage (the truth) and in KV (the edge
//! cache), with the counts and errors `/status` shows.
//!
//! [`AccountCtx`] is cheap to clone so that background refreshes can outlive the request that
//! started them.
//!
//! Over 400 lines: this is the object's one context (its ops, the decision for each, the
//! flights, persistence and its report to the registry); the calls, KV, alerts, platform and
//! admin parts are already in `refresher/`, and what is left shares the context's state.

mod admin;
mod alerts;
mod calls;
mod flight;
mod kv_sync;
mod platform;
mod state;
mod watch;
mod wecom_auth_info;
mod wecom_corps;
mod wecom_service;

use crate::edge::adapters::faults;
use crate::edge::adapters::runtime::{self, now_secs};
use crate::edge::objects::registry;
use crate::error::AppError;
use crate::policy::accounts::{Account, TokenApi};
use crate::policy::config::Settings;
use crate::policy::fingerprint::config_fingerprint;
use crate::policy::quota::{next_beijing_midnight, quota_pause};
use crate::policy::refresh::{decide, AttemptRecord, Decision, ExplicitBudget, Observed, Trigger};
use crate::policy::schedule::{alarm_delay_secs, credential_due, next_wake};
use crate::policy::status::{self, ErrorRecord};
use crate::policy::ticket::ticket_in_use;
use crate::policy::ticket::{TicketKind, TicketRecord};
use crate::policy::token::{Credential, TokenRecord};
use crate::policy::wecom_provider::usable_suite_ticket;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::rc::Rc;
use worker::durable::State;
use worker::Env;

use crate::policy::ledger::CredentialKind;
pub use admin::{admits, erase};
pub use state::AccountState;

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

/// One account's object at work: its memory and storage, the worker's env and the account's
/// configuration.
#[derive(Clone)]
pub struct AccountCtx {
    pub state: Rc<AccountState>,
    pub object: Rc<State>,
    pub env: Env,
    pub settings: Rc<Settings>,
    pub account: Rc<Account>,
}

impl AccountCtx {
    pub async fn token(&self, trigger: &Trigger) -> Result<Acquired<TokenRecord>, AppError> {
        let slot = &self.state.token;
        // At most two rounds: see `Trigger::decide_again`.
        let mut joined: Option<TokenRecord> = None;
        for round in 1..=2 {
            let now = now_secs();
            self.note_read(CredentialKind::Token, trigger, now);
            let (record, last_attempt) = {
                let state = slot.state.borrow();
                (state.record.clone(), state.last_attempt.clone())
            };
            let ledger = self.state.ledger.borrow().clone();
            let stable = self.account.api == TokenApi::Stable;
            // A client's request for a new token, or a gateway call's heal, each with a budget
            // of its own; the ticket path's refresh is neither.
            let budget = match trigger {
                Trigger::Passive { .. } => Some((
                    &ledger.explicit,
                    self.settings.explicit_daily_limit(&self.account),
                )),
                Trigger::Healed { .. } => Some((
                    &ledger.healed,
                    self.settings.heal_daily_limit(&self.account),
                )),
                _ => None,
            };
            let observed = Observed {
                record: record.as_ref(),
                last_attempt: last_attempt.as_ref(),
                in_flight: slot.flight.in_flight(),
                forced: stable.then_some((&ledger.forced, self.settings.stable_force)),
                paused_until: self.paused_until(CredentialKind::Token, now),
                automatic_blocked: self.automatic_blocked(),
                explicit: budget.map(|(count, daily_limit)| ExplicitBudget {
                    used_today: count.today(now),
                    daily_limit,
                    resets_at: next_beijing_midnight(now),
                    last_started_at: ledger.last_heal_at,
                }),
            };
            let decision = decide(trigger, &observed, now, self.settings.refresh);
            self.log_decision(CredentialKind::Token, trigger, &decision, record.as_ref());
            if let Decision::Refresh { force } = decision {
                // A heal decides again only to force: a second normal call would answer the
                // token the first one did.
                let unforced_again = !force && !observed.in_flight;
                if let Some(fresh) = joined.take().filter(|_| unforced_again) {
                    return Ok(Acquired::Refreshed(fresh));
                }
                if budget.is_some() && !observed.in_flight {
                    // Counted when it starts a call; joining one under way is free.
                    let mut ledger = self.state.ledger.borrow_mut();
                    match trigger {
                        Trigger::Healed { .. } => {
                            ledger.healed.add(now, 1);
                            ledger.last_heal_at = Some(now);
                        }
                        _ => ledger.explicit.add(now, 1),
                    }
                }
                let fresh = self.refresh_token(trigger.name(), force).await;
                match force {
                    // WeChat killed the old token: KV gets the new one before anyone hears.
                    true => self.sync_kv_fully(CredentialKind::Token).await,
                    false => self.sync_kv(CredentialKind::Token).await,
                }
                let fresh = fresh?;
                if !(trigger.decide_again(&fresh.access_token, force) && round < 2) {
                    return Ok(Acquired::Refreshed(fresh));
                }
                if matches!(trigger, Trigger::Healed { .. }) {
                    joined = Some(fresh);
                }
                continue;
            }
            return self.settle(
                CredentialKind::Token,
                trigger,
                decision,
                record,
                last_attempt,
            );
        }
        Err(runtime::internal("policy", "no decision after two rounds"))
    }

    pub async fn ticket(
        &self,
        kind: TicketKind,
        trigger: &Trigger,
    ) -> Result<Acquired<TicketRecord>, AppError> {
        let which = CredentialKind::Ticket(kind);
        let slot = self.state.ticket(kind);
        let now = now_secs();
        self.note_read(which, trigger, now);
        let (record, last_attempt) = {
            let state = slot.state.borrow();
            (state.record.clone(), state.last_attempt.clone())
        };
        let observed = Observed {
            record: record.as_ref(),
            last_attempt: last_attempt.as_ref(),
            in_flight: slot.flight.in_flight(),
            forced: None,
            paused_until: self.paused_until(which, now),
            automatic_blocked: false,
            explicit: None,
        };
        // WeCom's hourly ticket limits: its accounts' ticket calls further apart.
        let mut policy = self.settings.refresh;
        policy.min_interval_secs =
            TicketKind::min_interval_secs(self.account.kind, policy.min_interval_secs);
        let decision = decide(trigger, &observed, now, policy);
        self.log_decision(which, trigger, &decision, record.as_ref());
        if let Decision::Refresh { .. } = decision {
            let fresh = self.refresh_ticket(kind, trigger.name()).await;
            self.sync_kv(which).await;
            return Ok(Acquired::Refreshed(fresh?));
        }
        self.settle(which, trigger, decision, record, last_attempt)
    }

    /// The cron visit: the token, then every ticket someone read in the last day (and a
    /// suite's authorization codes still waiting for their exchange, a corporation's auth
    /// info still unread).
    pub async fn cron(&self) -> Value {
        let visit = self.visit(&Trigger::Cron).await;
        self.exchange_auth_codes().await;
        self.refresh_auth_info().await;
        visit
    }

    /// The token, and each ticket in use, refreshed if due (the cron's and the alarm's visit).
    async fn visit(&self, trigger: &Trigger) -> Value {
        let mut tickets = Map::new();
        let token = outcome_summary(self.token(trigger).await);
        let now = now_secs();
        for kind in TicketKind::ALL {
            let state = self.state.ticket(kind).state.borrow().clone();
            if state.record.is_none() {
                continue;
            }
            let outcome = if ticket_in_use(state.last_read_at, now) {
                outcome_summary(self.ticket(kind, trigger).await)
            } else {
                json!({ "status": 200, "outcome": "idle" })
            };
            tickets.insert(kind.name().into(), outcome);
        }
        json!({ "token": token, "tickets": tickets })
    }

    /// The alarm: KV writes to retry, and whatever is due (or was cut off) refreshed, so an
    /// account no one reads stays fresh in KV. Returns whether KV writes are left for another
    /// run; the next due time is set by [`AccountCtx::arm_due`].
    pub async fn alarm(&self) -> bool {
        for which in CredentialKind::ALL {
            if self.state.kv_pending(which) {
                self.slot_kv(which).dirty.set(true);
            }
            self.sync_kv(which).await;
        }
        let visit = self.visit(&Trigger::Alarm).await;
        self.watch_quotas().await;
        self.refresh_auth_info().await;
        let pending = CredentialKind::ALL
            .iter()
            .any(|which| self.state.kv_pending(*which));
        runtime::log_event(json!({
            "event": "alarm",
            "account": self.account.id,
            "token": visit["token"],
            "tickets": visit["tickets"],
            "kv_pending": pending,
        }));
        pending
    }

    /// Sets the alarm for when the token, or a ticket in use, next falls due (see
    /// `policy::schedule`), unless one is set sooner.
    pub async fn arm_due(&self) {
        if self.state.retired.get() {
            return;
        }
        let now = now_secs();
        let policy = self.settings.refresh;
        // Each credential's due time, from what `refresh::decide` weighs: expiry, hold, last
        // attempt, quota pause.
        let due = |which, record: Option<(u64, Option<u64>)>, attempt: Option<&AttemptRecord>| {
            let attempt = attempt.map(|a| (a.at, a.failures_in_a_row));
            // A WeCom account's tickets keep WeCom's hourly limits, as `ticket` decides.
            let interval = match which {
                CredentialKind::Ticket(_) => {
                    TicketKind::min_interval_secs(self.account.kind, policy.min_interval_secs)
                }
                CredentialKind::Token => policy.min_interval_secs,
            };
            let margin = policy.margin_secs;
            let at = credential_due(record, attempt, margin, interval);
            at.max(self.paused_until(which, now).unwrap_or(0))
        };
        let mut dues = Vec::new();
        // The component (or a WeCom suite) without a ticket has nothing to call with: the
        // next ticket pushed fetches its token.
        let waits_for_ticket = match self.account.api {
            TokenApi::Component => self.state.platform.borrow().usable_ticket(now).is_none(),
            TokenApi::WeComSuite => {
                usable_suite_ticket(&self.state.platform.borrow(), now).is_none()
            }
            _ => false,
        };
        if !self.automatic_blocked() && !waits_for_ticket {
            let token = self.state.token.state.borrow();
            let record = token
                .record
                .as_ref()
                .map(|r| (r.expires_at, r.hold_until()));
            dues.push(due(
                CredentialKind::Token,
                record,
                token.last_attempt.as_ref(),
            ));
        }
        for kind in TicketKind::ALL {
            let state = self.state.ticket(kind).state.borrow();
            if state.record.is_some() && ticket_in_use(state.last_read_at, now) {
                let record = state
                    .record
                    .as_ref()
                    .map(|r| (r.expires_at, r.hold_until()));
                let which = CredentialKind::Ticket(kind);
                dues.push(due(which, record, state.last_attempt.as_ref()));
            }
        }
        // The component wakes when its verify ticket would turn stale, to alert on time.
        if let Some(stale_secs) = self
            .ticket_stale_secs()
            .filter(|_| self.settings.alerts.is_some())
        {
            let stale_at = self.verify_ticket_since(now) + stale_secs;
            if stale_at > now {
                dues.push(stale_at);
            }
        }
        // Alerts keep their own times, not jittered: a start or a repeat is due then.
        let random = u32::from_le_bytes(runtime::random_bytes::<4>());
        let earliest = dues.iter().copied().min();
        let wake = next_wake(dues, policy.margin_secs, random);
        let alert = self.alert_wake(now).filter(|at| *at > now);
        let at = wake
            .into_iter()
            .chain(alert)
            .chain(self.watch_due(now))
            .min();
        // A due time already past that the policy declined: the safety net, longer each
        // time in a row.
        let idle_runs = self.state.safety_net_runs.get();
        let delay_secs =
            at.map(|at| alarm_delay_secs(at, now, policy.min_interval_secs, idle_runs));
        let safety_net = at.is_some_and(|at| at <= now);
        let runs = if safety_net { idle_runs + 1 } else { 0 };
        if runs != idle_runs && !self.state.retired.get() {
            self.state.safety_net_runs.set(runs);
            let storage = self.object.storage();
            if let Err(e) = storage.put(state::SAFETY_NET_KEY, runs.to_string()).await {
                self.log_storage_error(&e.to_string());
            }
        }
        // The registry keeps every account's due time (for the cron to find missed alarms:
        // under the safety net, when it will look again) and its summary (for the `/status`
        // listing): told when either changes.
        let reported_due = match (earliest, delay_secs) {
            (Some(due), Some(delay)) if due <= now => Some(now + delay),
            _ => earliest,
        };
        self.report(reported_due, now).await;
        if faults::no_due_alarms(&self.env) {
            return;
        }
        if let Some(delay_secs) = delay_secs {
            self.schedule_alarm(delay_secs * 1000).await;
        }
    }

    /// Tells the registry the account's next due time (for the cron to find missed alarms)
    /// and its summary (for the `/status` listing), if either changed since it last did.
    pub(super) async fn report(&self, due_at: Option<u64>, now: u64) {
        // One report at a time, so that they reach the registry in order: one asked for
        // while another is under way is sent after it, the newest only.
        self.state.report_wanted.set(Some(due_at));
        if self.state.reporting.replace(true) {
            return;
        }
        let mut now = now;
        while let Some(due_at) = self.state.report_wanted.take() {
            self.send_report(due_at, now).await;
            now = now_secs();
        }
        self.state.reporting.set(false);
    }

    async fn send_report(&self, due_at: Option<u64>, now: u64) {
        let mut summary = self.summary(now);
        let report = (due_at, summary.to_string());
        if self.state.retired.get() || self.state.reported.borrow().as_ref() == Some(&report) {
            return;
        }
        summary["reported_at"] = json!(now);
        match registry::report(&self.env, &self.account.id, due_at, summary).await {
            Ok(()) => {
                if !self.state.retired.get() {
                    let kept = serde_json::to_string(&report).unwrap_or_default();
                    let storage = self.object.storage();
                    if let Err(e) = storage.put(state::REPORTED_KEY, kept).await {
                        runtime::log_error(json!({
                            "event": "storage_write_failed", "account": self.account.id,
                            "message": e.to_string(),
                        }));
                    }
                }
                *self.state.reported.borrow_mut() = Some(report);
            }
            Err(e) => runtime::log_error(json!({
                "event": "report_failed", "account": self.account.id,
                "message": e.message(),
            })),
        }
    }

    /// The account's entry in `/status`, live.
    pub fn status(&self) -> Value {
        let now = now_secs();
        let mut entry = self.summary(now);
        status::as_of(&mut entry, now);
        entry
    }

    /// What the object reports to the registry for the `/status` listing: its entry without
    /// the fields that tick with the clock.
    fn summary(&self, now: u64) -> Value {
        let state = &self.state;
        let token = state
            .token
            .record()
            .map(|r| status::credential_json(&r, r.refreshed_at));
        let mut tickets = Map::new();
        for kind in TicketKind::ALL {
            if let Some(record) = state.ticket(kind).record() {
                let mut entry = status::credential_json(&record, record.refreshed_at);
                entry["upstream_calls_today"] =
                    json!(self.calls_today(CredentialKind::Ticket(kind), now));
                tickets.insert(kind.name().into(), entry);
            }
        }
        let ledger = state.ledger.borrow();
        let mut entry = json!({
            "account": self.account.id,
            "kind": self.account.kind.name(),
            "api": self.account.api.name(),
            "token": token,
            "tickets": tickets,
            "last_error": ledger.last_error.as_ref().map(ErrorRecord::to_json),
            "upstream_calls_today": self.calls_today(CredentialKind::Token, now),
            "forced_refreshes_today": ledger.forced.count_today(now),
            "explicit_refreshes_today": ledger.explicit.today(now),
            "explicit_daily_limit": self.settings.explicit_daily_limit(&self.account),
            "gateway_heals_today": ledger.healed.today(now),
            "gateway_heal_daily_limit": self.settings.heal_daily_limit(&self.account),
            "daily_quota": self.settings.daily_quota(&self.account),
            "auto_refresh": status::auto_refresh(self.paused_until(CredentialKind::Token, now), self.automatic_blocked(), now),
            "alerts": ledger.alerts.alerting.iter().map(|a| &a.condition).collect::<Vec<_>>(),
            // `status::as_of` turns it into the clears left in the month of reading.
            "quota_clears": ledger.quota_clears,
            "counters": ledger.counters,
            "watched_quotas": self.watched_quotas(&ledger.watch),
        });
        self.platform_status(&mut entry);
        entry
    }

    /// Readers reach the object when their KV entry is missing or stale: note the read (the
    /// cron refreshes only tickets in use), and write the entry again if ours is no longer
    /// fresh.
    fn note_read(&self, which: CredentialKind, trigger: &Trigger, now: u64) {
        if !matches!(trigger, Trigger::Read | Trigger::Background) {
            return;
        }
        let previous = match which {
            CredentialKind::Token => {
                std::mem::replace(&mut self.state.token.state.borrow_mut().last_read_at, now)
            }
            CredentialKind::Ticket(kind) => std::mem::replace(
                &mut self.state.ticket(kind).state.borrow_mut().last_read_at,
                now,
            ),
        };
        // Otherwise stored with the next outcome: an hour's drift is nothing to the idle rule.
        if state::read_worth_storing(previous, now) {
            let ctx = self.clone();
            self.object
                .wait_until(async move { ctx.persist(Some(which)).await });
        }
        let kv = &self.slot_kv(which);
        if kv.fresh_until.get() <= now {
            kv.dirty.set(true);
        }
    }

    fn slot_kv(&self, which: CredentialKind) -> &state::KvSync {
        match which {
            CredentialKind::Token => &self.state.token.kv,
            CredentialKind::Ticket(kind) => &self.state.ticket(kind).kv,
        }
    }

    fn calls_today(&self, which: CredentialKind, now: u64) -> u64 {
        self.state.usage(which).calls.today(now)
    }

    fn paused_until(&self, which: CredentialKind, now: u64) -> Option<u64> {
        let usage = self.state.usage(which);
        let quota = self.settings.daily_quota(&self.account);
        quota_pause(
            usage.quota_error_at,
            usage.calls.since_reset(now),
            quota,
            now,
        )
    }

    /// WeChat refused this very configuration's credentials: no automatic retries.
    fn automatic_blocked(&self) -> bool {
        let current = config_fingerprint(&self.account.appid, &self.account.secret);
        self.state.ledger.borrow().blocked_config.as_deref() == Some(current.as_str())
    }

    /// Every decision but a refresh in the foreground.
    fn settle<R>(
        &self,
        which: CredentialKind,
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
                self.spawn_kv_sync(which);
                Ok(Acquired::Served(current))
            }
            Decision::ServeAndRefresh => {
                let current = current()?;
                // The outcome is logged and stored by the refresh itself.
                let ctx = self.clone();
                let name = trigger.name();
                self.object.wait_until(async move {
                    let _ = match which {
                        CredentialKind::Token => ctx.refresh_token(name, false).await.map(drop),
                        CredentialKind::Ticket(kind) => {
                            ctx.refresh_ticket(kind, name).await.map(drop)
                        }
                    };
                    ctx.sync_kv(which).await;
                });
                Ok(Acquired::Served(current))
            }
            Decision::Skip => {
                // A background ask may come from a reader whose KV entry went stale.
                self.spawn_kv_sync(which);
                Ok(Acquired::Skipped)
            }
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
}

/// A cron or alarm outcome for the log: never the credential itself.
fn outcome_summary<R>(outcome: Result<Acquired<R>, AppError>) -> Value {
    match outcome {
        Ok(Acquired::Refreshed(_)) => json!({ "status": 200, "outcome": "refreshed" }),
        Ok(Acquired::Served(_)) => json!({ "status": 200, "outcome": "served" }),
        Ok(Acquired::Skipped) => json!({ "status": 200, "outcome": "skipped" }),
        Err(e) => json!({
            "status": e.status(), "outcome": e.code(), "message": e.message(),
            "wechat_rid": e.rid(),
        }),
    }
}
