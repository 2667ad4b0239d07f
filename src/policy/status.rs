//! What `/status` shows of an account. Pure: fingerprints, never tokens or tickets.

use crate::error::{AppError, UpstreamFailure};
use crate::policy::fingerprint::fingerprint;
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
pub fn credential_json(record: &impl Credential, refreshed_at: u64, now: u64) -> Value {
    json!({
        "expires_at": record.expires_at(),
        "expires_in": record.remaining_secs(now),
        "refreshed_at": refreshed_at,
        "fingerprint": fingerprint(record.value()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::token::TokenRecord;

    #[test]
    fn shapes() {
        let token = TokenRecord::issued("abc".into(), 7200, 1000, "cfg");
        let json = credential_json(&token, 1000, 1200);
        assert_eq!(
            json,
            json!({"expires_at": 8200, "expires_in": 7000, "refreshed_at": 1000, "fingerprint": "ba7816bf"})
        );
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
}
