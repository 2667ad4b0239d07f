//! Access_tokens and what is kept of them: freshness (through [`Credential`], shared with
//! tickets), the token a new one replaced and how long WeChat still accepts it, the hold on a
//! stable token handed back unchanged, and a token whose replacement may have been lost. Pure.

use crate::policy::accounts::TokenApi;
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
    /// `Account::issuer` of the configuration that fetched it.
    #[serde(default)]
    pub issued_for: String,
    /// stable_token gave this token back unchanged: no automatic refresh before WeChat will
    /// rotate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<u64>,
    /// The token this one replaced, and until when WeChat still accepts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ReplacedToken>,
    /// The expiry WeChat gave, when a lost answer cut `expires_at` short: if WeChat hands this
    /// very token back, the lost call replaced nothing and the token lives until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_before_cap: Option<u64>,
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
            // The platforms' tokens too: each call issues a new one (WeCom's: the same while
            // valid), the old one lives on.
            (
                TokenApi::Classic
                | TokenApi::WeCom
                | TokenApi::Component
                | TokenApi::Authorizer
                | TokenApi::WeComSuite
                | TokenApi::WeComProvider
                | TokenApi::WeComCorp,
                _,
            ) => Self::Rotating,
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
            expiry_before_cap: None,
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
            // The token already held, handed back (WeCom's `gettoken` does so while it is
            // valid, announcing the full lifetime again): it dies when it was going to, so its
            // life is never extended, and asking again before then only gets it back again.
            // The lost call a cap stood for replaced nothing: the expiry WeChat gave stands.
            let known = before.expiry_before_cap.unwrap_or(before.expires_at);
            self.expires_at = self.expires_at.min(known);
            self.refreshed_at = before.refreshed_at;
            self.previous = before.previous.clone();
            let hold = match how {
                Issuance::StableNormal => {
                    self.expires_at.saturating_sub(STABLE_ROTATES_WITHIN_SECS)
                }
                Issuance::Rotating | Issuance::StableForced => self.expires_at,
            };
            self.hold_until = (hold > now).then_some(hold);
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
        self.expiry_before_cap = Some(self.expiry_before_cap.unwrap_or(self.expires_at));
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

    /// Whether this record knows `token` as the one it replaced, and its acceptance over (a
    /// forced stable_token call ends it at once): what the token index says of it then no
    /// longer counts, however late its own entry is rewritten.
    pub fn retired(&self, token: &str, now: u64) -> bool {
        self.previous
            .as_ref()
            .is_some_and(|p| p.access_token == token && now >= p.accepted_until)
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

#[cfg(test)]
mod tests;
