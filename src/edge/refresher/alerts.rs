//! The account's alerts: after each visit (a request, the alarm, the cron), the object checks
//! the conditions of `policy::alerts` against what it knows, records what starts, repeats or
//! clears, and sends that to the webhooks.

use super::AccountCtx;
use crate::edge::runtime::{log_event, now_secs};
use crate::edge::webhooks;
use crate::policy::accounts::TokenApi;
use crate::policy::alerts::{self, Observation};
use crate::policy::ledger::CredentialKind;
use serde_json::json;

impl AccountCtx {
    /// Checks the alert conditions and delivers what changed (after the answer: the object
    /// runs this in the background).
    pub async fn check_alerts(&self) {
        let Some(settings) = self.settings.alerts.clone() else {
            return;
        };
        let now = now_secs();
        let token = self.state.token.state.borrow().clone();
        let attempt = token.last_attempt.as_ref();
        let failure = attempt.and_then(|a| a.failure.clone());
        let ticket_since = match self.account.api {
            TokenApi::Component => Some(Some(self.verify_ticket_since(now))),
            _ => None,
        };
        let seen = Observation {
            token_valid: token.record.as_ref().is_some_and(|r| r.expires_at > now),
            failing_since: attempt
                .filter(|a| a.failure.is_some())
                .map(|a| a.failing_since.unwrap_or(a.at)),
            last_failure: failure.as_ref(),
            paused: self.paused_until(CredentialKind::Token, now).is_some(),
            blocked: self.automatic_blocked(),
            verify_ticket_created_at: ticket_since,
        };
        let active = alerts::active_conditions(&seen, now, settings.after_secs);
        let sent = {
            let mut ledger = self.state.ledger.borrow_mut();
            ledger.alerts.step(&active, now, settings.repeat_secs)
        };
        if sent.is_empty() {
            return;
        }
        self.persist(None).await;
        for alert in &sent {
            log_event(json!({
                "event": "alert", "account": self.account.id,
                "condition": alert.condition.name(), "state": alert.transition.name(),
            }));
            let text = alerts::text(&self.account.id, alert, failure.as_ref(), now);
            let id = &self.account.id;
            webhooks::deliver(&settings.hooks, |format| {
                alerts::payload(format, id, alert, failure.as_ref(), &text)
            })
            .await;
        }
    }

    /// The component: since when its latest verify ticket is, or, with none, since when it
    /// has waited for one (kept, so that a fresh deployment has its hour too).
    pub(super) fn verify_ticket_since(&self, now: u64) -> u64 {
        let mut platform = self.state.platform.borrow_mut();
        match &platform.verify_ticket {
            Some(ticket) => ticket.issued_at(),
            None => *platform.no_ticket_since.get_or_insert(now),
        }
    }
}
