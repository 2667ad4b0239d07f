//! The words of an alert: one notice as an account's object hands it to the outbox, the text
//! of a message or a digest, and each chat service's payload. Pure.

use super::{Alert, Condition, Transition};
use crate::error::{wechat_codes, AppError, UpstreamFailure};
use crate::policy::webhook::{self, AlertFormat};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A unix time as people read it in a chat: `2026-12-01 17:00:00 UTC`.
pub fn utc(unix: u64) -> String {
    use chrono::{Datelike, Timelike};
    let Some(at) = i64::try_from(unix)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
    else {
        return format!("{unix} (unix time)");
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// One alert as an account's object hands it to the outbox: its words made where it happened,
/// so that the outbox needs nothing of the account to send it. Never a token, ticket, secret
/// or key (`advice` is the error's own operator text, scrubbed where it was made).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub account: String,
    pub condition: String,
    pub state: String,
    pub since: u64,
    pub errcode: Option<i64>,
    pub errmsg: Option<String>,
    /// WeChat's request id in `errmsg`, if it gave one.
    #[serde(default)]
    pub rid: Option<String>,
    /// What to do (None once recovered).
    pub advice: Option<String>,
}

impl Notice {
    pub fn new(account: &str, alert: &Alert, failure: Option<&UpstreamFailure>) -> Self {
        // A low quota is no failure: the token's last one is not its cause.
        let failure = failure.filter(|_| alert.condition != Condition::QuotaLow);
        let (errcode, errmsg) = match failure {
            Some(UpstreamFailure::WeChat { errcode, errmsg }) => {
                (Some(*errcode), Some(errmsg.clone()))
            }
            _ => (None, None),
        };
        let recovered = alert.transition == Transition::Recovered;
        Self {
            account: account.to_owned(),
            condition: alert.condition.name().into(),
            state: alert.transition.name().into(),
            since: alert.since,
            errcode: errcode.filter(|_| !recovered),
            rid: errmsg
                .as_deref()
                .and_then(wechat_codes::rid)
                .filter(|_| !recovered)
                .map(str::to_owned),
            errmsg: errmsg.filter(|_| !recovered),
            advice: (!recovered).then(|| advice(alert.condition, account, failure)),
        }
    }

    /// An object that cannot load, in words that name the problem (never a value).
    pub fn config_error(account: &str, transition: Transition, since: u64, problem: &str) -> Self {
        let recovered = transition == Transition::Recovered;
        Self {
            account: account.to_owned(),
            condition: Condition::ConfigError.name().into(),
            state: transition.name().into(),
            since,
            errcode: None,
            errmsg: None,
            rid: None,
            advice: (!recovered).then(|| problem.to_owned()),
        }
    }
}

/// How many account ids a digest names before "and N more".
const DIGEST_NAMES: usize = 5;

/// The words of a message: one alert, or a digest of alerts of one condition and state (the
/// first few accounts named, WeChat's errcode and what to do as the first one says).
pub fn text(notices: &[Notice], now: u64) -> String {
    let Some(first) = notices.first() else {
        return String::new();
    };
    let state = match first.state.as_str() {
        "started" => "ALERT",
        "repeated" => "STILL",
        _ => "RECOVERED",
    };
    let title = Condition::parse(&first.condition).map_or("", Condition::title);
    let since = notices.iter().map(|n| n.since).min().unwrap_or(first.since);
    let lasted = now.saturating_sub(since);
    let mut lines = match notices {
        [one] => vec![format!(
            "[wechat-token-edge] {state} {}: {title} (since {}, {lasted} s)",
            one.account,
            utc(since)
        )],
        many => {
            let ids = distinct_accounts(many);
            let named = ids.iter().take(DIGEST_NAMES).copied().collect::<Vec<_>>();
            let rest = ids.len().saturating_sub(DIGEST_NAMES);
            let more = if rest > 0 {
                format!(" and {rest} more")
            } else {
                String::new()
            };
            vec![
                format!(
                    "[wechat-token-edge] {state} {} accounts: {title} (the first since {}, \
                     {lasted} s)",
                    ids.len(),
                    utc(since)
                ),
                format!("{}{more}", named.join(", ")),
            ]
        }
    };
    if let (Some(code), Some(message)) = (first.errcode, &first.errmsg) {
        let whose = if notices.len() > 1 {
            format!(" ({})", first.account)
        } else {
            String::new()
        };
        lines.push(format!("WeChat errcode {code}: {message}{whose}"));
        if let Some(rid) = &first.rid {
            lines.push(format!(
                "WeChat's record of the call: GET /diagnostics/rid?account={}&rid={rid}",
                first.account
            ));
        }
    }
    if let Some(advice) = &first.advice {
        lines.push(format!("What to do: {advice}"));
    }
    lines.join("\n")
}

/// Each account once, in the order they came.
fn distinct_accounts(notices: &[Notice]) -> Vec<&str> {
    let mut ids: Vec<&str> = Vec::new();
    for notice in notices {
        if !ids.contains(&notice.account.as_str()) {
            ids.push(&notice.account);
        }
    }
    ids
}

fn advice(condition: Condition, account: &str, failure: Option<&UpstreamFailure>) -> String {
    match condition {
        Condition::QuotaPaused => format!(
            "look for another fetcher of this appid (a second server, a staging copy); after \
             WeChat's clear_quota, POST /admin/accounts/{account}/reset."
        ),
        Condition::VerifyTicketStale => AppError::NoVerifyTicket.message(),
        Condition::SuiteTicketStale => format!(
            "WeCom pushes a suite_ticket every ten minutes to the suite's 指令回调URL, which \
             must be https://<this worker>/wecom/suites/{account}/events, with WECOM_SUITES' \
             token and encoding_aes_key equal to the suite's; a push can be asked for in the \
             provider's admin (刷新Ticket). Each ticket works 30 minutes from its TimeStamp."
        ),
        Condition::QuotaLow => format!(
            "a watched API has less than QUOTA_LOW_PERCENT of its daily calls left: GET \
             /status?account={account} shows watched_quotas; POST \
             /admin/accounts/{account}/clear-quota clears the account's quotas (10 a month)."
        ),
        _ => failure.map_or_else(
            || "see GET /status for the account's last error.".into(),
            UpstreamFailure::describe,
        ),
    }
}

/// The payload `format`'s webhook accepts, for `text` (and, in `json`, the fields: `account`
/// is the first account, `accounts` all of them).
pub fn payload(format: AlertFormat, notices: &[Notice], text: &str) -> Value {
    match format {
        AlertFormat::WeCom | AlertFormat::DingTalk => {
            json!({ "msgtype": "text", "text": { "content": text } })
        }
        AlertFormat::Feishu => json!({ "msg_type": "text", "content": { "text": text } }),
        AlertFormat::Slack => json!({ "text": webhook::slack_escape(text) }),
        AlertFormat::Json => {
            let first = notices.first();
            let accounts = distinct_accounts(notices);
            json!({
                "source": "wechat-token-edge",
                "account": first.map(|n| &n.account),
                "accounts": accounts,
                "count": accounts.len(),
                "condition": first.map(|n| &n.condition),
                "state": first.map(|n| &n.state),
                "since": notices.iter().map(|n| n.since).min(),
                "errcode": first.and_then(|n| n.errcode),
                "errmsg": first.and_then(|n| n.errmsg.as_ref()),
                "rid": first.and_then(|n| n.rid.as_ref()),
                "text": text,
            })
        }
    }
}
