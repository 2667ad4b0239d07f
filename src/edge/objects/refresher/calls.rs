//! The calls to WeChat behind a refresh, and recording what they returned.
//! Just over 400 lines: the attempt loop (its budget, retries and lost answers) and the
//! recording of each outcome are read together.

use super::state::Slot;
use super::AccountCtx;
use crate::edge::adapters::runtime::{self, log_event, now_millis, now_secs};
use crate::edge::adapters::upstream;
use crate::error::wechat_codes;
use crate::error::{AppError, UpstreamFailure};
use crate::policy::backoff;
use crate::policy::fingerprint::{config_fingerprint, fingerprint};
use crate::policy::ledger::{Configured, CredentialKind, TokenCallSent};
use crate::policy::refresh::{Decision, Trigger};
use crate::policy::ticket::{TicketKind, TicketRecord};
use crate::policy::token::{Credential, Issuance, TokenRecord};
use crate::wechat::api::Issued;
use serde_json::json;
use std::future::Future;
use std::time::Duration;
use worker::Delay;

/// How often a refresh's call may be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sending {
    /// Transient failures are tried again within the time budget.
    Retried,
    /// stable_token's `force_refresh`: once (each counts against WeChat's daily limit of them).
    Forced,
    /// Once: what it carries is single-use (an authorization code).
    Once,
}

/// No call to WeChat starts with less of the time budget left than this: a call cut short
/// may still have been processed, and rotated the token, with its answer lost.
const MIN_ATTEMPT_BUDGET_MS: u64 = 1_000;

impl AccountCtx {
    /// Calls WeChat for a token, or joins the call already under way.
    pub(super) async fn refresh_token(
        &self,
        trigger: &'static str,
        force: bool,
    ) -> Result<TokenRecord, AppError> {
        let ctx = self.clone();
        let flight = &self.state.token.flight;
        flight
            .run(|| async move { ctx.call_for_token(trigger, force).await })
            .await
    }

    pub(super) async fn refresh_ticket(
        &self,
        kind: TicketKind,
        trigger: &'static str,
    ) -> Result<TicketRecord, AppError> {
        let ctx = self.clone();
        let flight = &self.state.ticket(kind).flight;
        flight
            .run(|| async move { ctx.call_for_ticket(kind, trigger).await })
            .await
    }

    /// A state retired by a change of registration starts no call: the new one calls.
    fn still_registered(&self) -> Result<(), AppError> {
        match self.state.retired.get() {
            false => Ok(()),
            true => Err(AppError::Conflict(
                "the account's registration changed while this request was handled: ask again"
                    .into(),
            )),
        }
    }

    async fn call_for_token(
        &self,
        trigger: &'static str,
        force: bool,
    ) -> Result<TokenRecord, AppError> {
        self.still_registered()?;
        // The platform's accounts call with more than their configuration. Nothing to call
        // with answers at once, recorded as a failed attempt like any other (backoff, the
        // last error, alerts; a missing refresh token stops automatic refreshes as WeChat's
        // refusal of one does), so that nothing retries it every minute.
        let grant = match self.platform_grant().await {
            Ok(grant) => grant,
            Err(refused) => {
                let failure = grant_failure(&refused);
                self.store(
                    CredentialKind::Token,
                    &self.state.token,
                    &Err(failure),
                    None,
                )
                .await;
                return Err(refused);
            }
        };
        let started_at = now_secs();
        {
            let mut ledger = self.state.ledger.borrow_mut();
            // Counted when sent: WeChat counts the attempt, whatever it answers.
            if force {
                ledger.forced.record(started_at);
            }
            ledger.token_call_sent = Some(TokenCallSent {
                at: started_at,
                forced: force,
            });
        }
        // Durable before the call: an eviction mid-call is then noticed on the next load. A
        // code taken out for this call must be gone from storage before it is sent: if that
        // write fails, it goes back and is not sent now.
        let taken_code = grant.as_ref().and_then(|g| g.code()).map(str::to_owned);
        match taken_code {
            None => self.persist(None).await,
            Some(code) => {
                if let Err(e) = self.persist_checked(None).await {
                    self.state.ledger.borrow_mut().token_call_sent = None;
                    let mut platform = self.state.platform.borrow_mut();
                    platform.authorization_code.get_or_insert(code);
                    return Err(e);
                }
            }
        }
        let (outcome, answer_lost) = match grant {
            Some(grant) => self.call_platform(trigger, grant).await,
            None => {
                let sending = match force {
                    true => Sending::Forced,
                    false => Sending::Retried,
                };
                self.call_upstream(CredentialKind::Token, trigger, sending, |budget_ms| {
                    upstream::fetch_token(&self.settings, &self.account, force, budget_ms)
                })
                .await
            }
        };
        let before = self.state.token.record();
        let issuance = Issuance::of(self.account.api, force);
        let now = now_secs();
        let replacement = match &outcome {
            Ok(issued) => Some(
                TokenRecord::issued(
                    issued.value.clone(),
                    issued.expires_in,
                    started_at,
                    &self.account.issuer,
                )
                .replacing(before.as_ref(), issuance, now),
            ),
            // An answer was lost on the way (on any attempt): WeChat may have issued a token
            // that never arrived.
            Err(_) if answer_lost => before.map(|r| r.possibly_replaced(started_at, issuance)),
            Err(_) => None,
        };
        self.state.ledger.borrow_mut().token_call_sent = None;
        self.store(
            CredentialKind::Token,
            &self.state.token,
            &outcome,
            replacement,
        )
        .await;
        match (outcome, self.state.token.record()) {
            (Ok(_), Some(record)) => Ok(record),
            (Ok(_), None) => Err(runtime::internal("policy", "a token call stored nothing")),
            (Err(failure), _) => Err(AppError::Upstream(failure)),
        }
    }

    /// Fetches a ticket with the current access_token. If WeChat says that token is not (or no
    /// longer) valid, the token is refreshed (a passive refresh naming it, so only if it is
    /// still current) and the ticket fetched once more. If that refresh is refused (interval,
    /// quota, force limits), the ticket's failure is recorded all the same, so the next read
    /// waits like after any failure instead of calling getticket again at once.
    async fn call_for_ticket(
        &self,
        kind: TicketKind,
        trigger: &'static str,
    ) -> Result<TicketRecord, AppError> {
        self.still_registered()?;
        let which = CredentialKind::Ticket(kind);
        let token = self
            .token(&Trigger::Read)
            .await?
            .record()
            .ok_or_else(|| runtime::internal("policy", "no token"))?;
        let started_at = now_secs();
        let (settings, account) = (&*self.settings, &*self.account);
        let used = token.access_token.as_str();
        let (mut outcome, _) = self
            .call_upstream(which, trigger, Sending::Retried, |budget_ms| {
                upstream::fetch_ticket(settings, account, kind, used, budget_ms)
            })
            .await;
        if let Err(UpstreamFailure::WeChat { errcode, .. }) = &outcome {
            if wechat_codes::is_token_rejected(*errcode) {
                let stale = Trigger::Rejected {
                    stale_token: used.to_owned(),
                };
                let replacement = match self.token(&stale).await {
                    Ok(acquired) => acquired.record(),
                    Err(refused) => {
                        log_event(json!({
                            "event": "ticket_token_refresh_refused",
                            "account": self.account.id,
                            "credential": which.name(),
                            "outcome": refused.code(),
                            "wechat_rid": refused.rid(),
                        }));
                        None
                    }
                };
                if let Some(replacement) = replacement.filter(|r| r.access_token != used) {
                    let fresh = replacement.access_token.as_str();
                    outcome = self
                        .call_upstream(which, trigger, Sending::Retried, |budget_ms| {
                            upstream::fetch_ticket(settings, account, kind, fresh, budget_ms)
                        })
                        .await
                        .0;
                }
            }
        }
        let issuer = &self.account.issuer;
        let replacement = outcome.as_ref().ok().map(|issued| {
            TicketRecord::issued(issued.value.clone(), issued.expires_in, started_at, issuer)
        });
        self.store(which, self.state.ticket(kind), &outcome, replacement)
            .await;
        outcome.map_err(AppError::Upstream).and_then(|_| {
            self.state
                .ticket(kind)
                .record()
                .ok_or_else(|| runtime::internal("policy", "a ticket call stored nothing"))
        })
    }

    /// One refresh's calls to WeChat: a busy WeChat or a network/5xx failure is tried again
    /// after a short jittered delay, while at least [`MIN_ATTEMPT_BUDGET_MS`] of the upstream
    /// time budget is left for it, unless the call may be sent only once (`Sending`). Also says
    /// whether any attempt's answer was lost on the way (WeChat may have processed it).
    pub(super) async fn call_upstream<F, Fut>(
        &self,
        which: CredentialKind,
        trigger: &'static str,
        sending: Sending,
        send: F,
    ) -> (Result<Issued, UpstreamFailure>, bool)
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<Issued, UpstreamFailure>>,
    {
        let budget_ms = self.settings.upstream_timeout_ms;
        let started_ms = now_millis();
        let force = sending == Sending::Forced;
        let attempts = match sending {
            Sending::Retried => backoff::MAX_ATTEMPTS,
            Sending::Forced | Sending::Once => 1,
        };
        let mut attempt = 1;
        let mut answer_lost = false;
        loop {
            let call_started_ms = now_millis();
            let left_ms = (started_ms + budget_ms).saturating_sub(call_started_ms);
            let outcome = send(left_ms).await;
            self.count_call(which);
            self.log_call(which, trigger, force, attempt, &outcome, call_started_ms);
            answer_lost |= outcome.as_ref().is_err_and(lost_on_the_way);
            let retry = match &outcome {
                Err(failure) if attempt < attempts && backoff::is_retryable(failure) => {
                    let random = u32::from_le_bytes(runtime::random_bytes::<4>());
                    Some(backoff::retry_delay_ms(attempt, random))
                }
                _ => None,
            };
            let deadline_ms = started_ms + budget_ms;
            match retry {
                Some(delay_ms)
                    if now_millis() + delay_ms + MIN_ATTEMPT_BUDGET_MS <= deadline_ms =>
                {
                    Delay::from(Duration::from_millis(delay_ms)).await;
                    attempt += 1;
                }
                _ => return (outcome, answer_lost),
            }
        }
    }

    fn count_call(&self, which: CredentialKind) {
        let now = now_secs();
        match which {
            CredentialKind::Token => self.state.token.state.borrow_mut().usage.calls.add(now, 1),
            CredentialKind::Ticket(kind) => {
                let slot = self.state.ticket(kind);
                slot.state.borrow_mut().usage.calls.add(now, 1)
            }
        }
    }

    /// Records a refresh's outcome in memory, then in storage in one write (the object is the
    /// truth); the caller then brings KV in step. `replacement`: the credential's new record,
    /// if the outcome changed it.
    async fn store<R>(
        &self,
        which: CredentialKind,
        slot: &Slot<R>,
        outcome: &Result<Issued, UpstreamFailure>,
        replacement: Option<R>,
    ) where
        R: Credential,
    {
        let config = config_fingerprint(&self.account.appid, &self.account.secret);
        let configured = Configured {
            fingerprint: &config,
            api: self.account.api,
        };
        let changed = self.state.ledger.borrow_mut().record_outcome(
            which,
            &mut slot.state.borrow_mut(),
            outcome.as_ref().err(),
            replacement,
            configured,
            now_secs(),
        );
        if changed {
            slot.kv.dirty.set(true);
        }
        self.persist(Some(which)).await;
    }

    /// One line per refresh decision (never the credential: its fingerprint).
    pub(super) fn log_decision(
        &self,
        which: CredentialKind,
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

    /// One line per call to WeChat, and its count.
    fn log_call(
        &self,
        which: CredentialKind,
        trigger: &str,
        force: bool,
        attempt: u32,
        outcome: &Result<Issued, UpstreamFailure>,
        started_ms: u64,
    ) {
        let failure = outcome.as_ref().err();
        let code = failure.map(|f| AppError::Upstream(f.clone()).code().to_owned());
        let outcome_code = code.as_deref().unwrap_or("ok");
        let counted = &mut self.state.ledger.borrow_mut().counters;
        counted.upstream_call(which.name(), outcome_code, now_secs());
        log_event(json!({
            "event": "upstream_call",
            "account": self.account.id,
            "api": self.account.api.name(),
            "credential": which.name(),
            "trigger": trigger,
            "force": force,
            "attempt": attempt,
            "outcome": outcome_code,
            "wechat_errcode": match failure { Some(UpstreamFailure::WeChat { errcode, .. }) => json!(errcode), _ => json!(null) },
            "wechat_rid": failure.and_then(UpstreamFailure::rid),
            "duration_ms": now_millis().saturating_sub(started_ms),
            "fingerprint": outcome.as_ref().ok().map(|issued| fingerprint(&issued.value)),
        }));
    }
}

/// What a platform account's missing grant is recorded as: the WeChat error it amounts to
/// (no verify ticket is an invalid one, no refresh token a refused one), or the component's
/// own failure, so that the ledger treats it as it treats WeChat's.
fn grant_failure(refused: &AppError) -> UpstreamFailure {
    let said = |errcode, errmsg: &str| UpstreamFailure::WeChat {
        errcode,
        errmsg: errmsg.into(),
    };
    match refused {
        AppError::NoVerifyTicket => said(
            wechat_codes::VERIFY_TICKET_INVALID,
            "no component_verify_ticket received yet (this server's own finding; nothing \
             was sent to WeChat)",
        ),
        AppError::NoRefreshToken => said(
            wechat_codes::REFRESH_TOKEN_INVALID,
            "no refresh token is stored and the authorizer list does not show one (this \
             server's own finding; nothing was sent to WeChat)",
        ),
        AppError::NoSuiteTicket => said(
            wechat_codes::SUITE_TICKET_INVALID,
            "no suite_ticket younger than 30 minutes (this server's own finding; nothing was \
             sent to WeCom)",
        ),
        AppError::Upstream(failure) => failure.clone(),
        AppError::NoValidToken {
            last_failure: Some(failure),
            ..
        } => failure.clone(),
        other => UpstreamFailure::Unreachable {
            detail: format!("the platform's component: {}", other.code()),
        },
    }
}

/// A failure after which WeChat may have processed the call: no answer in time, or an answer
/// broken on the way.
fn lost_on_the_way(failure: &UpstreamFailure) -> bool {
    matches!(
        failure,
        UpstreamFailure::Timeout { .. }
            | UpstreamFailure::BadResponse { .. }
            | UpstreamFailure::Unreachable { .. }
    )
}
