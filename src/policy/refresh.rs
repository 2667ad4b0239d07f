//! The refresh policy of tokens and tickets: given what is stored and what just happened (the
//! trigger, the last attempt, a call under way, limits and pauses), should the object serve,
//! refresh, wait, or refuse? Pure, with "now" passed in, so every rule is unit-tested.

use crate::error::{TooSoonReason, UpstreamFailure};
use crate::policy::backoff;
use crate::policy::quota::{ForceLimits, ForceLog};
use crate::policy::schedule::jitter_window;
use crate::policy::token::Credential;
use serde::{Deserialize, Serialize};

/// The last call to WeChat for an account: when it was sent and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at: u64,
    pub failure: Option<UpstreamFailure>,
    /// Failed refreshes in a row, this one included (0 after a success).
    #[serde(default)]
    pub failures_in_a_row: u32,
    /// When the first of those failures was sent (None after a success): for alerts.
    #[serde(default)]
    pub failing_since: Option<u64>,
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
        let failing_since = match (&failure, previous) {
            (None, _) => None,
            (Some(_), Some(previous)) if previous.failure.is_some() => {
                previous.failing_since.or(Some(previous.at))
            }
            (Some(_), _) => Some(at),
        };
        Self {
            at,
            failure,
            failures_in_a_row,
            failing_since,
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
    /// WeChat rejected `stale_token` on a call the server made itself with its own request (a
    /// ticket fetch, a pre-auth code): as a passive refresh naming it, but outside the
    /// clients' explicit budget.
    Rejected { stale_token: String },
    /// WeChat rejected `stale_token` on a gateway call, whose path and body a client chose: a
    /// budget of its own (`GATEWAY_HEAL_DAILY_LIMIT`), and on stable_token accounts a forced
    /// call only while WeChat's limits on them allow (a normal call otherwise), so that no
    /// caller can spend the quota or the forced refreshes by provoking rejections.
    Healed { stale_token: String },
    /// The account's alarm: a refresh cut off by eviction, or a KV write to retry.
    Alarm,
}

impl Trigger {
    /// The token a passive refresh says WeChat rejected.
    pub fn stale_token(&self) -> Option<&str> {
        match self {
            Self::Passive { stale_token } => stale_token.as_deref(),
            Self::Rejected { stale_token } | Self::Healed { stale_token } => Some(stale_token),
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
            Self::Rejected { .. } => "rejected",
            Self::Healed { .. } => "gateway_heal",
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
    /// today and the daily budget for them, or for a gateway heal its own count and budget.
    pub explicit: Option<ExplicitBudget>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExplicitBudget {
    pub used_today: u64,
    pub daily_limit: u64,
    /// When the budget resets (the next Beijing midnight).
    pub resets_at: u64,
    /// For gateway heals: when the last one called WeChat. Heals are spaced from each other,
    /// not from other calls: a token WeChat rejects a moment after a refresh (another server
    /// fetched one) is replaced at once, not a minute of failed calls later.
    pub last_started_at: Option<u64>,
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
    // An alarm comes up to the jitter window early (`schedule`): what falls due within it is
    // due now, so that an early alarm refreshes rather than setting itself again.
    let due_by = match trigger {
        Trigger::Alarm => now + jitter_window(policy.margin_secs),
        _ => now,
    };
    let due = valid.is_none_or(|r| r.is_due(due_by, policy.margin_secs));
    let paused_for = observed
        .paused_until
        .filter(|until| now < *until)
        .map(|until| until - now);
    // An explicit request may call WeChat once the minimum interval has passed; an automatic
    // refresh also backs off after repeated failures, and stops while paused or blocked.
    let explicit_wait = wait_secs(observed.last_attempt, valid.is_some(), now, policy, false);
    // A heal after a failed call waits like any explicit refresh; otherwise it waits for the
    // previous heal only.
    let last_failed = observed.last_attempt.is_some_and(|a| a.failure.is_some());
    let heal_wait = match observed.explicit.and_then(|b| b.last_started_at) {
        _ if last_failed => explicit_wait,
        Some(at) => {
            (now < at + policy.min_interval_secs).then(|| at + policy.min_interval_secs - now)
        }
        None => None,
    };
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
        Trigger::Passive { .. } | Trigger::Rejected { .. } | Trigger::Healed { .. } => {
            let explicit_wait = match trigger {
                Trigger::Healed { .. } => heal_wait,
                _ => explicit_wait,
            };
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
                    reason: match trigger {
                        Trigger::Healed { .. } => TooSoonReason::HealDailyLimit,
                        _ => TooSoonReason::ExplicitDailyLimit,
                    },
                },
                // stable_token hands out the current token unless forced, and WeChat limits
                // forcing: force only when the caller proves the current token was rejected.
                (Some(current), None) if stale_is_current(current) => match observed.forced {
                    Some((log, limits)) => match log.check(now, limits) {
                        Ok(()) => Decision::Refresh { force: true },
                        // A gateway heal never spends what WeChat's limits refuse: the normal
                        // call answers whatever stable_token holds.
                        Err(_) if matches!(trigger, Trigger::Healed { .. }) => refresh,
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

#[cfg(test)]
mod tests;
