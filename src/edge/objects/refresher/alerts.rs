//! The account's alerts: after each visit (a request, the alarm, the cron), the object checks
//! the conditions of `policy::alerts` against what it knows, records what starts, repeats or
//! clears, and hands that to the alert outbox (which paces what goes to the webhooks).

use super::AccountCtx;
use crate::edge::adapters::runtime::{log_error, log_event, now_secs};
use crate::edge::objects::alert_outbox;
use crate::error::UpstreamFailure;
use crate::policy::accounts::TokenApi;
use crate::policy::alerts::{self, Notice, Observation, VERIFY_TICKET_STALE_SECS};
use crate::policy::ledger::{CredentialKind, CredentialState};
use crate::policy::token::TokenRecord;
use crate::policy::wecom_provider::SUITE_TICKET_STALE_SECS;
use serde_json::json;

impl AccountCtx {
    /// Checks the alert conditions and delivers what changed (after the answer: the object
    /// runs this in the background).
    pub async fn check_alerts(&self) {
        let Some(settings) = self.settings.alerts.clone() else {
            return;
        };
        if self.state.retired.get() {
            return;
        }
        let now = now_secs();
        if self.ticket_stale_secs().is_some() {
            // A fresh component's hour (a suite's 20 minutes) starts once, and survives an
            // eviction.
            let first_wait = {
                let mut platform = self.state.platform.borrow_mut();
                let waits = platform.verify_ticket.is_none() && platform.no_ticket_since.is_none();
                if waits {
                    platform.no_ticket_since = Some(now);
                }
                waits
            };
            if first_wait {
                self.persist(None).await;
            }
        }
        let token = self.state.token.state.borrow().clone();
        let failure = token.last_attempt.as_ref().and_then(|a| a.failure.clone());
        let seen = self.observation(&token, failure.as_ref(), now);
        let active = alerts::active_conditions(&seen, now, settings.after_secs);
        let (before, sent) = {
            let mut ledger = self.state.ledger.borrow_mut();
            let before = ledger.alerts.clone();
            let sent = ledger.alerts.step(&active, now, settings.repeat_secs);
            (before, sent)
        };
        if sent.is_empty() {
            return;
        }
        for alert in &sent {
            log_event(json!({
                "event": "alert", "account": self.account.id,
                "condition": alert.condition.name(), "state": alert.transition.name(),
            }));
        }
        let id = &self.account.id;
        let notices: Vec<Notice> = sent
            .iter()
            .map(|alert| Notice::new(id, alert, failure.as_ref()))
            .collect();
        if let Err(e) = alert_outbox::enqueue(&self.env, &notices).await {
            // Not recorded as sent: the next visit finds the same change and hands it again.
            self.state.ledger.borrow_mut().alerts = before;
            log_error(json!({
                "event": "alert_enqueue_failed", "account": id, "message": e.message(),
            }));
            return;
        }
        self.persist(None).await;
        // The listing shows what is under alert: reported with the due time last told.
        let reported_due = self.state.reported.borrow().as_ref().map(|(due, _)| *due);
        if let Some(due_at) = reported_due {
            self.report(due_at, now).await;
        }
    }

    /// What the alert conditions are checked against.
    fn observation<'a>(
        &self,
        token: &CredentialState<TokenRecord>,
        failure: Option<&'a UpstreamFailure>,
        now: u64,
    ) -> Observation<'a> {
        let attempt = token.last_attempt.as_ref();
        let expires_at = token.record.as_ref().map(|r| r.expires_at);
        // A platform awaiting its first verify ticket has failed nothing yet: the stale
        // ticket's alert speaks for it after an hour.
        let first_ticket_awaited = self.ticket_stale_secs().is_some()
            && self.state.platform.borrow().verify_ticket.is_none();
        Observation {
            token_valid: expires_at.is_some_and(|at| at > now),
            token_expired_at: expires_at.filter(|at| *at <= now),
            failing_since: attempt
                .filter(|a| a.failure.is_some() && !first_ticket_awaited)
                .map(|a| a.failing_since.unwrap_or(a.at)),
            last_failure: failure,
            paused: self.paused_until(CredentialKind::Token, now).is_some(),
            blocked: self.automatic_blocked(),
            verify_ticket_created_at: (self.account.api == TokenApi::Component)
                .then(|| Some(self.verify_ticket_since(now))),
            suite_ticket_created_at: (self.account.api == TokenApi::WeComSuite)
                .then(|| Some(self.verify_ticket_since(now))),
            quota_low_since: self.state.ledger.borrow().watch.low_since,
        }
    }

    /// When the object must look again for an alert to start or repeat on time (a token
    /// running out during a pause or a block, failures reaching `ALERT_AFTER_SECS`, a repeat
    /// due), whatever the refresh schedule says.
    pub(super) fn alert_wake(&self, now: u64) -> Option<u64> {
        let settings = self.settings.alerts.as_ref()?;
        let token = self.state.token.state.borrow().clone();
        let seen = self.observation(&token, None, now);
        let expires_at = token.record.as_ref().map(|r| r.expires_at);
        let start = alerts::next_start(&seen, expires_at, now, settings.after_secs);
        let repeat = self
            .state
            .ledger
            .borrow()
            .alerts
            .next_repeat(settings.repeat_secs);
        start.into_iter().chain(repeat).min()
    }

    /// After how long a platform's pushed ticket (the component's verify ticket, a suite's
    /// suite ticket) is stale; None for the accounts that have none.
    pub(super) fn ticket_stale_secs(&self) -> Option<u64> {
        match self.account.api {
            TokenApi::Component => Some(VERIFY_TICKET_STALE_SECS),
            TokenApi::WeComSuite => Some(SUITE_TICKET_STALE_SECS),
            _ => None,
        }
    }

    /// The component (or a suite): since when its latest pushed ticket is, or, with none,
    /// since when it has waited for one.
    pub(super) fn verify_ticket_since(&self, now: u64) -> u64 {
        let platform = self.state.platform.borrow();
        match &platform.verify_ticket {
            Some(ticket) => ticket.issued_at(),
            None => platform.no_ticket_since.unwrap_or(now),
        }
    }
}
