//! What an account's Durable Object keeps about its credentials, and how a call's outcome
//! changes it: the attempt and failure counts, the quota pause after 45009, the block on
//! refused credentials, the account's last error. Pure; the object stores these as they are.

use crate::error::wechat_codes;
use crate::error::UpstreamFailure;
use crate::policy::accounts::TokenApi;
use crate::policy::alerts::AlertLedger;
use crate::policy::counters::Counters;
use crate::policy::quota::{DailyCount, ForceLog, MonthlyClears};
use crate::policy::refresh::AttemptRecord;
use crate::policy::status::ErrorRecord;
use crate::policy::ticket::TicketKind;
use crate::policy::watch::Watch;
use serde::{Deserialize, Serialize};

/// The account's configuration as an outcome is recorded under it: its fingerprint (a block
/// holds until it changes) and its token API.
#[derive(Clone, Copy, Debug)]
pub struct Configured<'a> {
    pub fingerprint: &'a str,
    pub api: TokenApi,
}

/// Whether a token call's errcode says the credentials themselves are refused, so that
/// automatic refreshes stop until they change. An authorizer's token call takes the component
/// token (whose 40001 heals elsewhere) and a refresh token: only a refused refresh token
/// (61023) is the authorizer's own, and it changes with a new authorization.
pub fn refuses_credentials(api: TokenApi, errcode: i64) -> bool {
    match api {
        TokenApi::Authorizer => errcode == wechat_codes::REFRESH_TOKEN_INVALID,
        _ => wechat_codes::is_credential_error(errcode),
    }
}

/// The account's credentials: the access_token and the two kinds of ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    Token,
    Ticket(TicketKind),
}

impl CredentialKind {
    pub const ALL: [CredentialKind; 4] = [
        Self::Token,
        Self::Ticket(TicketKind::Jsapi),
        Self::Ticket(TicketKind::WxCard),
        Self::Ticket(TicketKind::AgentConfig),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Ticket(kind) => kind.name(),
        }
    }
}

/// Calls to WeChat for one credential today, and when WeChat last said its quota was used up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub calls: DailyCount,
    pub quota_error_at: Option<u64>,
}

/// One credential as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialState<R> {
    pub record: Option<R>,
    pub last_attempt: Option<AttemptRecord>,
    #[serde(default)]
    pub usage: Usage,
    /// The KV entry may lag behind `record`: the alarm writes it again.
    #[serde(default)]
    pub kv_pending: bool,
    /// The last read that reached the object (edge readers do once their KV entry is stale):
    /// the cron stops refreshing a ticket nobody reads.
    #[serde(default)]
    pub last_read_at: u64,
}

impl<R> Default for CredentialState<R> {
    fn default() -> Self {
        Self {
            record: None,
            last_attempt: None,
            usage: Usage::default(),
            kv_pending: false,
            last_read_at: 0,
        }
    }
}

/// The account-wide part of what is stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLedger {
    /// The account id, for the alarm (which arrives without a request naming it).
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub forced: ForceLog,
    /// Explicit refreshes that reached WeChat today.
    #[serde(default)]
    pub explicit: DailyCount,
    /// Gateway heals that reached WeChat today, and when the last one did.
    #[serde(default)]
    pub healed: DailyCount,
    #[serde(default)]
    pub last_heal_at: Option<u64>,
    pub last_error: Option<ErrorRecord>,
    /// The configuration (fingerprint) WeChat last refused the credentials of.
    pub blocked_config: Option<String>,
    /// A token call was sent and its outcome is not recorded yet. Found on load, it means the
    /// object was evicted mid-call: WeChat may have replaced the stored token.
    #[serde(default)]
    pub token_call_sent: Option<TokenCallSent>,
    /// The conditions under alert (`policy::alerts`).
    #[serde(default)]
    pub alerts: AlertLedger,
    /// The quota clears made this month (WeChat allows 10).
    #[serde(default)]
    pub quota_clears: MonthlyClears,
    /// What `/metrics` counts: refreshes and calls by outcome, KV write failures.
    #[serde(default)]
    pub counters: Counters,
    /// The watched quotas (`QUOTA_WATCH_PATHS`), as WeChat last answered.
    #[serde(default)]
    pub watch: Watch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCallSent {
    pub at: u64,
    pub forced: bool,
}

impl AccountLedger {
    /// Records the outcome of a refresh of `which` (its calls ended at `now`): the attempt,
    /// `replacement` as the new record if the outcome brought one, and what a failure means
    /// for later refreshes. `config` fingerprints the account's appid and secret. Returns
    /// whether the record changed.
    pub fn record_outcome<R>(
        &mut self,
        which: CredentialKind,
        state: &mut CredentialState<R>,
        failure: Option<&UpstreamFailure>,
        replacement: Option<R>,
        config: Configured,
        now: u64,
    ) -> bool {
        // The interval counts from the refresh's last call (retries included).
        state.last_attempt = Some(AttemptRecord::after(
            state.last_attempt.as_ref(),
            now,
            failure.cloned(),
        ));
        let changed = replacement.is_some();
        if replacement.is_some() {
            state.record = replacement;
        }
        let errcode = match failure {
            Some(UpstreamFailure::WeChat { errcode, .. }) => Some(*errcode),
            _ => None,
        };
        if errcode == Some(wechat_codes::QUOTA_EXHAUSTED) {
            state.usage.quota_error_at = Some(now);
        }
        self.counters.refresh(which.name(), failure.is_none());
        if let Some(failure) = failure {
            self.last_error = Some(ErrorRecord {
                at: now,
                credential: which.name().into(),
                failure: failure.clone(),
            });
        }
        // Only a token call says whether the credentials work (on a ticket call 40001 means
        // the access_token), and a transient failure says nothing either way.
        if which == CredentialKind::Token {
            if errcode.is_some_and(|code| refuses_credentials(config.api, code)) {
                self.blocked_config = Some(config.fingerprint.to_owned());
            } else if failure.is_none() {
                self.blocked_config = None;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classic(fingerprint: &str) -> Configured<'_> {
        Configured {
            fingerprint,
            api: TokenApi::Classic,
        }
    }

    const NOW: u64 = 1_700_000_000;

    fn wechat(errcode: i64) -> UpstreamFailure {
        UpstreamFailure::WeChat {
            errcode,
            errmsg: String::new(),
        }
    }

    #[test]
    fn failures_count_up_and_a_success_resets_them() {
        let (mut ledger, mut state) = (AccountLedger::default(), CredentialState::<u8>::default());
        let busy = wechat(-1);
        for n in 1..=3 {
            ledger.record_outcome(
                CredentialKind::Token,
                &mut state,
                Some(&busy),
                None,
                classic("c"),
                NOW,
            );
            assert_eq!(state.last_attempt.as_ref().unwrap().failures_in_a_row, n);
        }
        assert_eq!(state.record, None);
        assert_eq!(ledger.last_error.as_ref().unwrap().credential, "token");
        let changed = ledger.record_outcome(
            CredentialKind::Token,
            &mut state,
            None,
            Some(7),
            classic("c"),
            NOW,
        );
        assert!(changed);
        assert_eq!(state.record, Some(7));
        assert_eq!(state.last_attempt.as_ref().unwrap().failures_in_a_row, 0);
        assert!(ledger.last_error.is_some(), "kept after a later success");
    }

    #[test]
    fn quota_exhaustion_is_noted_for_the_credential_that_hit_it() {
        let (mut ledger, mut state) = (AccountLedger::default(), CredentialState::<u8>::default());
        let jsapi = CredentialKind::Ticket(TicketKind::Jsapi);
        ledger.record_outcome(
            jsapi,
            &mut state,
            Some(&wechat(45009)),
            None,
            classic("c"),
            NOW,
        );
        assert_eq!(state.usage.quota_error_at, Some(NOW));
        assert_eq!(ledger.last_error.as_ref().unwrap().credential, "jsapi");
    }

    #[test]
    fn refused_credentials_block_until_a_success_not_a_transient_failure() {
        let (mut ledger, mut state) = (AccountLedger::default(), CredentialState::<u8>::default());
        let token = CredentialKind::Token;
        ledger.record_outcome(
            token,
            &mut state,
            Some(&wechat(40125)),
            None,
            classic("cfg"),
            NOW,
        );
        assert_eq!(ledger.blocked_config.as_deref(), Some("cfg"));
        let timeout = UpstreamFailure::Timeout { after_ms: 10 };
        ledger.record_outcome(token, &mut state, Some(&timeout), None, classic("cfg"), NOW);
        assert_eq!(
            ledger.blocked_config.as_deref(),
            Some("cfg"),
            "says nothing either way"
        );
        ledger.record_outcome(token, &mut state, None, Some(1), classic("cfg"), NOW);
        assert_eq!(ledger.blocked_config, None);
    }

    #[test]
    fn a_tickets_40001_is_about_the_token_not_the_credentials() {
        let (mut ledger, mut state) = (AccountLedger::default(), CredentialState::<u8>::default());
        let jsapi = CredentialKind::Ticket(TicketKind::Jsapi);
        ledger.record_outcome(
            jsapi,
            &mut state,
            Some(&wechat(40001)),
            None,
            classic("cfg"),
            NOW,
        );
        assert_eq!(ledger.blocked_config, None);
    }

    #[test]
    fn an_authorizer_is_blocked_by_a_refused_refresh_token_only() {
        assert!(refuses_credentials(TokenApi::Classic, 40001));
        assert!(!refuses_credentials(TokenApi::Authorizer, 40001));
        assert!(refuses_credentials(TokenApi::Authorizer, 61023));
        assert!(refuses_credentials(TokenApi::Component, 40125));
    }
}
