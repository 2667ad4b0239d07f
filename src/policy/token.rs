//! Freshness and the refresh policy of access_tokens (and, through [`Credential`], of JS-SDK
//! tickets): given what is stored and what just happened, should we serve, refresh, wait, or
//! refuse? Pure, with "now" passed in, so every rule is unit-tested.

use crate::error::{TooSoonReason, UpstreamFailure};
use crate::policy::accounts::TokenApi;
use crate::policy::backoff;
use crate::policy::quota::{ForceLimits, ForceLog};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// WeChat keeps a replaced access_token working this long after the new one is issued
/// (classic and WeCom; a forced stable_token call kills the previous token at once).
pub const REPLACED_TOKEN_GRACE_SECS: u64 = 300;

/// stable_token's normal mode hands out the current token again until this close to its
/// expiry, then issues the next one.
pub const STABLE_ROTATES_WITHIN_SECS: u64 = 300;

/// Something WeChat issues for a limited time: an access_token or a ticket.
pub trait Credential: Clone {
    fn value(&self) -> &str;
    /// Unix seconds; never served at or after this.
    fn expires_at(&self) -> u64;

    fn is_valid(&self, now: u64) -> bool {
        now < self.expires_at()
    }

    fn remaining_secs(&self, now: u64) -> u64 {
        self.expires_at().saturating_sub(now)
    }

    /// The account configuration (appid, kind, token API) it was issued under: a record
    /// issued under another is never served.
    fn issued_for(&self) -> &str;

    /// Not worth refreshing before this, although inside the margin (stable_token answers
    /// with the same token until it rotates it).
    fn hold_until(&self) -> Option<u64> {
        None
    }

    /// Inside the margin: still valid, but due for a refresh.
    fn is_due(&self, now: u64, margin_secs: u64) -> bool {
        self.remaining_secs(now) <= margin_secs && self.hold_until().is_none_or(|t| now >= t)
    }
}

/// An access_token and when it stops being valid (unix seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub access_token: String,
    pub expires_at: u64,
    pub refreshed_at: u64,
    /// `Account::config_fingerprint` of the configuration that fetched it.
    #[serde(default)]
    pub issued_for: String,
    /// stable_token gave this token back unchanged: no automatic refresh before WeChat will
    /// rotate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<u64>,
    /// The token this one replaced, and until when WeChat still accepts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ReplacedToken>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacedToken {
    pub access_token: String,
    pub accepted_until: u64,
}

impl Credential for TokenRecord {
    fn value(&self) -> &str {
        &self.access_token
    }
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
    fn issued_for(&self) -> &str {
        &self.issued_for
    }
    fn hold_until(&self) -> Option<u64> {
        self.hold_until
    }
}

/// How a new token came about, for [`TokenRecord::replacing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issuance {
    /// classic `token` or WeCom `gettoken`: the previous token lives on for five minutes.
    Rotating,
    /// stable_token's normal mode: the same token until it is close to its expiry.
    StableNormal,
    /// stable_token with `force_refresh`: the previous token dies at once.
    StableForced,
}

impl Issuance {
    /// How a call to `api` (`forced`: stable_token's `force_refresh`) issues its token.
    pub fn of(api: TokenApi, forced: bool) -> Self {
        match (api, forced) {
            (TokenApi::Stable, true) => Self::StableForced,
            (TokenApi::Stable, false) => Self::StableNormal,
            (TokenApi::Classic | TokenApi::WeCom, _) => Self::Rotating,
        }
    }
}

impl TokenRecord {
    /// `requested_at` is when the upstream request was sent, so the expiry errs on the early side.
    pub fn issued(
        access_token: String,
        expires_in: u64,
        requested_at: u64,
        issued_for: &str,
    ) -> Self {
        Self {
            access_token,
            expires_at: requested_at + expires_in,
            refreshed_at: requested_at,
            issued_for: issued_for.to_owned(),
            hold_until: None,
            previous: None,
        }
    }

    /// This record as the successor of `before`. A changed token notes the one it replaced,
    /// accepted by WeChat for five minutes at most (never past its own expiry, and not at all
    /// after a forced stable_token call). The same token handed back by stable_token's normal
    /// mode is held until WeChat will rotate it.
    pub fn replacing(mut self, before: Option<&TokenRecord>, how: Issuance, now: u64) -> Self {
        let Some(before) = before.filter(|b| b.issued_for == self.issued_for) else {
            return self;
        };
        if before.access_token == self.access_token {
            self.previous = before.previous.clone();
            if how == Issuance::StableNormal {
                let rotates_at = self.expires_at.saturating_sub(STABLE_ROTATES_WITHIN_SECS);
                self.hold_until = (rotates_at > now).then_some(rotates_at);
            }
        } else {
            let grace = match how {
                Issuance::StableForced => 0,
                Issuance::Rotating | Issuance::StableNormal => REPLACED_TOKEN_GRACE_SECS,
            };
            self.previous = Some(ReplacedToken {
                access_token: before.access_token.clone(),
                accepted_until: before.expires_at.min(now + grace),
            });
        }
        self
    }

    /// A call for a new token was sent at `sent_at` and its answer was lost (a timeout, a
    /// broken answer, an object evicted mid-call): WeChat may have issued a new token. After a
    /// rotating call this one then dies five minutes after the call: stop serving it by then,
    /// and refresh it now. After a forced stable_token call it may be dead already: stop at
    /// once (the next fetch, in normal mode, gets whichever token is current). A normal
    /// stable_token call replaces nothing that is still valid.
    pub fn possibly_replaced(mut self, sent_at: u64, how: Issuance) -> Self {
        let grace = match how {
            Issuance::Rotating => REPLACED_TOKEN_GRACE_SECS,
            Issuance::StableForced => 0,
            Issuance::StableNormal => return self,
        };
        self.expires_at = self.expires_at.min(sent_at + grace);
        self.hold_until = None;
        self
    }

    /// Whether `token` is this account's current token, or the one it replaced moments ago.
    pub fn accepts(&self, token: &str, now: u64) -> bool {
        let current = self.is_valid(now) && self.access_token == token;
        let replaced = self
            .previous
            .as_ref()
            .is_some_and(|p| p.access_token == token && now < p.accepted_until);
        current || replaced
    }

    /// The `GET /token` answer.
    pub fn answer(&self, account_id: &str, appid: &str, now: u64) -> Value {
        json!({
            "access_token": self.access_token,
            "expires_in": self.remaining_secs(now),
            "expires_at": self.expires_at,
            "appid": appid,
            "account": account_id,
        })
    }
}

/// The last call to WeChat for an account: when it was sent and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at: u64,
    pub failure: Option<UpstreamFailure>,
    /// Failed refreshes in a row, this one included (0 after a success).
    #[serde(default)]
    pub failures_in_a_row: u32,
}

impl AttemptRecord {
    /// The record of a refresh sent at `at`, following `previous`.
    pub fn after(
        previous: Option<&AttemptRecord>,
        at: u64,
        failure: Option<UpstreamFailure>,
    ) -> Self {
        let failures_in_a_row = match (&failure, previous) {
            (None, _) => 0,
            (Some(_), Some(previous)) => previous.failures_in_a_row + 1,
            (Some(_), None) => 1,
        };
        Self {
            at,
            failure,
            failures_in_a_row,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh when fewer seconds than this remain.
    pub margin_secs: u64,
    /// No two upstream calls of one account closer than this.
    pub min_interval_secs: u64,
}

/// Why the token is being looked at. Also the message the worker sends the Durable Object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    /// A client wants a token now.
    Read,
    /// A reader saw the token inside the margin and asked for a refresh without waiting.
    Background,
    /// The cron trigger.
    Cron,
    /// `POST /token/refresh`: WeChat rejected `stale_token`, or (None) the caller asks for a
    /// new token (on stable_token accounts: whatever the normal mode answers).
    Passive { stale_token: Option<String> },
    /// getticket rejected `stale_token`: as a passive refresh naming it, but the object's own,
    /// outside the clients' explicit budget.
    TicketRejected { stale_token: String },
    /// The account's alarm: a refresh cut off by eviction, or a KV write to retry.
    Alarm,
}

impl Trigger {
    /// The token a passive refresh says WeChat rejected.
    pub fn stale_token(&self) -> Option<&str> {
        match self {
            Self::Passive { stale_token } => stale_token.as_deref(),
            Self::TicketRejected { stale_token } => Some(stale_token),
            _ => None,
        }
    }

    /// Whether to decide again after a refresh answered `fresh_token`: a passive refresh that
    /// joined an unforced call already under way can get back the very token it reported
    /// (stable_token hands out the current token unless forced), and that is no answer.
    pub fn decide_again(&self, fresh_token: &str, forced: bool) -> bool {
        !forced && self.stale_token() == Some(fresh_token)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Background => "background",
            Self::Cron => "cron",
            Self::Alarm => "alarm",
            Self::Passive { .. } => "passive",
            Self::TicketRejected { .. } => "ticket_rejected",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer with the stored token.
    Serve,
    /// Answer with the stored token now, and refresh it in the background.
    ServeAndRefresh,
    /// Call WeChat (or join the call already under way) and answer with its result. `force`:
    /// ask stable_token for a new token rather than the current one.
    Refresh { force: bool },
    /// Nothing to do (background and cron only).
    Skip,
    /// A forced refresh too soon after the last call, or over stable_token's limits: 429.
    TooSoon {
        retry_after_secs: u64,
        reason: TooSoonReason,
    },
    /// No valid token and WeChat failed moments ago: 503 with that failure.
    Unavailable { retry_after_secs: u64 },
}

/// What the account's Durable Object knows about a credential when a request arrives.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a, R> {
    pub record: Option<&'a R>,
    pub last_attempt: Option<&'a AttemptRecord>,
    /// A call to WeChat for this account is under way: whoever needs a new token waits for it
    /// rather than starting another.
    pub in_flight: bool,
    /// For stable_token accounts: the forced refreshes so far and WeChat's limits on them.
    pub forced: Option<(&'a ForceLog, ForceLimits)>,
    /// The daily quota is used up: automatic refreshes wait until then (`quota::quota_pause`).
    pub paused_until: Option<u64>,
    /// The last call failed on the credentials themselves (bad appid or secret, frozen secret)
    /// and the configuration has not changed since: no automatic retries.
    pub automatic_blocked: bool,
    /// For tokens: explicit refreshes (`POST /token/refresh` that reaches WeChat) started
    /// today, and the daily budget for them.
    pub explicit: Option<ExplicitBudget>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExplicitBudget {
    pub used_today: u64,
    pub daily_limit: u64,
    /// When the budget resets (the next Beijing midnight).
    pub resets_at: u64,
}

/// The whole refresh policy.
pub fn decide<R: Credential>(
    trigger: &Trigger,
    observed: &Observed<R>,
    now: u64,
    policy: RefreshPolicy,
) -> Decision {
    let in_flight = observed.in_flight;
    let valid = observed.record.filter(|r| r.is_valid(now));
    let due = valid.is_none_or(|r| r.is_due(now, policy.margin_secs));
    let paused_for = observed
        .paused_until
        .filter(|until| now < *until)
        .map(|until| until - now);
    // An explicit request may call WeChat once the minimum interval has passed; an automatic
    // refresh also backs off after repeated failures, and stops while paused or blocked.
    let explicit_wait = wait_secs(observed.last_attempt, valid.is_some(), now, policy, false);
    let automatic_allowed = paused_for.is_none()
        && !observed.automatic_blocked
        && wait_secs(observed.last_attempt, valid.is_some(), now, policy, true).is_none();
    let refresh = Decision::Refresh { force: false };

    match trigger {
        Trigger::Read => match valid {
            Some(_) if due && !in_flight && automatic_allowed => Decision::ServeAndRefresh,
            Some(_) => Decision::Serve,
            None if in_flight => refresh,
            None => match paused_for.or(explicit_wait) {
                Some(retry_after_secs) => Decision::Unavailable { retry_after_secs },
                None => refresh,
            },
        },
        Trigger::Background | Trigger::Cron | Trigger::Alarm => {
            if due && !in_flight && automatic_allowed {
                refresh
            } else {
                Decision::Skip
            }
        }
        Trigger::Passive { .. } | Trigger::TicketRejected { .. } => {
            let stale_token = trigger.stale_token();
            let stale_is_current = |current: &R| stale_token == Some(current.value());
            let over_budget = observed
                .explicit
                .filter(|b| b.used_today >= b.daily_limit)
                .map(|b| b.resets_at.saturating_sub(now));
            match (valid, explicit_wait) {
                (Some(current), _) if stale_token.is_some() && !stale_is_current(current) => {
                    Decision::Serve
                }
                _ if in_flight => refresh,
                _ if paused_for.is_some() => Decision::TooSoon {
                    retry_after_secs: paused_for.unwrap_or_default(),
                    reason: TooSoonReason::QuotaExhausted,
                },
                (Some(_), Some(retry_after_secs)) => Decision::TooSoon {
                    retry_after_secs,
                    reason: TooSoonReason::MinInterval,
                },
                (None, Some(retry_after_secs)) => Decision::Unavailable { retry_after_secs },
                // Whoever holds a key may ask; the account's quota is everyone's.
                _ if over_budget.is_some() => Decision::TooSoon {
                    retry_after_secs: over_budget.unwrap_or_default(),
                    reason: TooSoonReason::ExplicitDailyLimit,
                },
                // stable_token hands out the current token unless forced, and WeChat limits
                // forcing: force only when the caller proves the current token was rejected.
                (Some(current), None) if stale_is_current(current) => match observed.forced {
                    Some((log, limits)) => match log.check(now, limits) {
                        Ok(()) => Decision::Refresh { force: true },
                        Err((retry_after_secs, reason)) => Decision::TooSoon {
                            retry_after_secs,
                            reason,
                        },
                    },
                    None => refresh,
                },
                (_, None) => refresh,
            }
        }
    }
}

/// Seconds until WeChat may be called again, or None if it may be called now: the minimum
/// interval after the last call, or for automatic refreshes after a failure, a wait that grows
/// with each failure in a row. The first call is always allowed; so is a call when no valid
/// token is left and the last call succeeded (WeChat issued a token shorter than the interval):
/// holding back would only serve errors.
fn wait_secs(
    last_attempt: Option<&AttemptRecord>,
    have_valid_token: bool,
    now: u64,
    policy: RefreshPolicy,
    automatic: bool,
) -> Option<u64> {
    let last = last_attempt?;
    if !have_valid_token && last.failure.is_none() {
        return None;
    }
    let wait = match &last.failure {
        Some(_) if automatic => {
            backoff::automatic_wait_secs(last.failures_in_a_row, policy.min_interval_secs)
        }
        _ => policy.min_interval_secs,
    };
    let allowed_at = last.at + wait;
    (now < allowed_at).then(|| allowed_at - now)
}

/// The cron keeps refreshing a ticket that someone read within the last day.
pub const TICKET_IDLE_SECS: u64 = 86_400;

/// Whether a ticket last read at `last_read_at` is still worth refreshing ahead of time.
pub fn ticket_in_use(last_read_at: u64, now: u64) -> bool {
    now < last_read_at + TICKET_IDLE_SECS
}

#[cfg(test)]
mod tests;
