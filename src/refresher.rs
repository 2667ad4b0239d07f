//! How an account's Durable Object gets its credentials: apply the policy (`token::decide`),
//! call WeChat one call at a time per credential (retrying transient failures within the time
//! budget), and record the outcome in the object's storage (the truth) and in KV (the edge
//! cache), with the counts and errors `/status` shows.
//!
//! [`Core`] is cheap to clone so that background refreshes can outlive the request that
//! started them.

mod calls;
mod state;

use crate::accounts::{Account, TokenApi};
use crate::config::Settings;
use crate::error::AppError;
use crate::fingerprint::config_fingerprint;
use crate::jssdk::{TicketKind, TicketRecord};
use crate::quota::quota_pause;
use crate::runtime::{self, now_secs};
use crate::status::{self, ErrorRecord};
use crate::token::{decide, AttemptRecord, Credential, Decision, Observed, TokenRecord, Trigger};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::rc::Rc;
use worker::durable::State;
use worker::Env;

pub use state::Shared;
use state::Which;

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

#[derive(Clone)]
pub struct Core {
    pub shared: Rc<Shared>,
    pub state: Rc<State>,
    pub env: Env,
    pub settings: Rc<Settings>,
    pub account: Rc<Account>,
}

impl Core {
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
