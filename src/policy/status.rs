//! What `/status` shows of an account. Pure: fingerprints, never tokens or tickets.
//!
//! An account's object reports its summary (the entry without the fields that tick with the
//! clock) to the registry whenever it changes; the `/status` listing reads those summaries, one
//! registry call per page, and [`as_of`] adds the ticking fields at the time of reading.

use crate::error::{AppError, UpstreamFailure};
use crate::policy::fingerprint::fingerprint;
use crate::policy::quota::MonthlyClears;
use crate::policy::token::Credential;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The account's most recent failure, whichever credential it was for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub at: u64,
    /// `token`, `jsapi` or `wx_card`.
    pub credential: String,
    pub failure: UpstreamFailure,
}

impl ErrorRecord {
    pub fn to_json(&self) -> Value {
        let body = AppError::Upstream(self.failure.clone()).body();
        json!({
            "at": self.at,
            "credential": self.credential,
            "wechat_errcode": body.get("wechat_errcode"),
            "wechat_errmsg": body.get("wechat_errmsg"),
            "message": body["message"],
        })
    }
}

/// A token's or ticket's state: when it expires and was refreshed, and its fingerprint.
pub fn credential_json(record: &impl Credential, refreshed_at: u64) -> Value {
    json!({
        "expires_at": record.expires_at(),
        "refreshed_at": refreshed_at,
        "fingerprint": fingerprint(record.value()),
    })
}

/// Adds to a summary the fields that tick with the clock, as of `now`: each credential's
/// `expires_in`, the verify ticket's `age_secs`, the quota clears left this month, and the
/// account's `state` ([`state_of`]).
pub fn as_of(entry: &mut Value, now: u64) {
    let remaining = |credential: &mut Value| {
        if let Some(at) = credential.get("expires_at").and_then(Value::as_u64) {
            credential["expires_in"] = json!(at.saturating_sub(now));
        }
    };
    if let Some(token) = entry.get_mut("token").filter(|t| t.is_object()) {
        remaining(token);
    }
    if let Some(tickets) = entry.get_mut("tickets").and_then(Value::as_object_mut) {
        tickets.values_mut().for_each(remaining);
    }
    if let Some(clears) = entry.as_object_mut().and_then(|e| e.remove("quota_clears")) {
        let clears: MonthlyClears = serde_json::from_value(clears).unwrap_or_default();
        entry["clears_left_this_month"] = json!(clears.left(now));
    }
    for pushed in ["verify_ticket", "suite_ticket"] {
        if let Some(ticket) = entry.get_mut(pushed).filter(|t| t.is_object()) {
            if let Some(at) = ticket.get("created_at").and_then(Value::as_u64) {
                ticket["age_secs"] = json!(now.saturating_sub(at));
            }
        }
    }
    if entry.is_object() {
        entry["state"] = json!(state_of(entry));
    }
}

/// The listing's entry for an account whose object has reported nothing yet (it has not been
/// visited since it was configured).
pub fn unreported(account: &str, kind: &str, api: &str) -> Value {
    json!({
        "account": account, "kind": kind, "api": api, "token": null, "tickets": {},
        "last_error": null, "alerts": [], "reported_at": null,
    })
}

/// `on`, `paused_until:<unix>` while the daily quota is used up, or
/// `blocked_until_config_changes` after WeChat refused the credentials themselves.
pub fn auto_refresh(paused_until: Option<u64>, blocked: bool, now: u64) -> String {
    match paused_until.filter(|until| now < *until) {
        Some(until) => format!("paused_until:{until}"),
        None if blocked => "blocked_until_config_changes".into(),
        None => "on".into(),
    }
}

/// The states `/metrics` and the status page count accounts by, worst last.
pub const STATES: [&str; 5] = ["healthy", "refreshing", "failing", "paused", "blocked"];

/// An account's state from its entry (as of reading): `blocked` (WeChat refused its
/// credentials), `paused` (its daily quota is used up), `failing` (its last error is newer
/// than its token, or it has an error and no token), `healthy` (a token with time left), else
/// `refreshing` (no valid token and no error: a first fetch, or one under way).
pub fn state_of(entry: &Value) -> &'static str {
    let auto_refresh = entry
        .get("auto_refresh")
        .and_then(Value::as_str)
        .unwrap_or("on");
    let at = |pointer: &str| entry.pointer(pointer).and_then(Value::as_u64);
    if auto_refresh.starts_with("blocked") {
        return "blocked";
    }
    if auto_refresh.starts_with("paused") {
        return "paused";
    }
    match (at("/last_error/at"), at("/token/refreshed_at")) {
        (Some(failed), Some(refreshed)) if failed > refreshed => "failing",
        (Some(_), None) => "failing",
        _ if at("/token/expires_in").unwrap_or(0) > 0 => "healthy",
        _ => "refreshing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::token::TokenRecord;

    #[test]
    fn shapes() {
        let token = TokenRecord::issued("abc".into(), 7200, 1000, "cfg");
        let mut entry = json!({ "token": credential_json(&token, 1000), "tickets": {
            "jsapi": { "expires_at": 900 } }, "verify_ticket": { "created_at": 1100 } });
        as_of(&mut entry, 1200);
        assert_eq!(
            entry["token"],
            json!({"expires_at": 8200, "expires_in": 7000, "refreshed_at": 1000, "fingerprint": "ba7816bf"})
        );
        assert_eq!(entry["tickets"]["jsapi"]["expires_in"], 0);
        assert_eq!(entry["verify_ticket"]["age_secs"], 100);
        let mut cleared = json!({ "quota_clears": { "month": crate::policy::quota::beijing_month(1200), "count": 3 } });
        as_of(&mut cleared, 1200);
        assert_eq!(
            cleared,
            json!({ "clears_left_this_month": 7, "state": "refreshing" })
        );
        let mut none = unreported("shop", "mini_program", "stable");
        as_of(&mut none, 1200);
        assert_eq!(none["token"], Value::Null);
        assert_eq!(none["state"], "refreshing");
        assert_eq!(auto_refresh(Some(2000), false, 1000), "paused_until:2000");
        assert_eq!(
            auto_refresh(Some(2000), true, 2000),
            "blocked_until_config_changes"
        );
        assert_eq!(auto_refresh(None, false, 2000), "on");
        let error = ErrorRecord {
            at: 5,
            credential: "token".into(),
            failure: UpstreamFailure::WeChat {
                errcode: 45009,
                errmsg: "quota".into(),
            },
        };
        let json = error.to_json();
        assert_eq!(json["wechat_errcode"], 45009);
        assert!(json["message"].as_str().unwrap().contains("45009"));
    }

    #[test]
    fn states_from_the_worst_down() {
        let token = json!({"refreshed_at": 100, "expires_in": 50});
        let state = |entry: Value| state_of(&entry);
        assert_eq!(
            state(json!({"auto_refresh": "blocked_until_config_changes"})),
            "blocked"
        );
        assert_eq!(
            state(json!({"auto_refresh": "paused_until:9", "token": token})),
            "paused"
        );
        assert_eq!(
            state(json!({"token": token, "last_error": {"at": 101}})),
            "failing"
        );
        assert_eq!(
            state(json!({"token": null, "last_error": {"at": 1}})),
            "failing"
        );
        assert_eq!(
            state(json!({"token": token, "last_error": {"at": 99}})),
            "healthy"
        );
        assert_eq!(
            state(json!({"token": {"refreshed_at": 1, "expires_in": 0}})),
            "refreshing"
        );
        assert_eq!(state(unreported("a", "wecom", "wecom")), "refreshing");
    }
}
