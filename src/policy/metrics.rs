//! `/metrics` in Prometheus's text exposition format (version 0.0.4), from the accounts'
//! `/status` summaries and the server's counters. Pure.
//!
//! Every family is announced with `# HELP` and `# TYPE` once, then its samples; names follow
//! Prometheus's conventions (a `wechat_token_edge_` prefix, `_total` on counters, base units).

use crate::policy::counters::{self, Counters};
use crate::policy::status;
use serde_json::Value;
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const PREFIX: &str = "wechat_token_edge_";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

/// One family: its name (without the prefix), help, type, and samples (labels, value).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    /// Every value is a whole number (counts and seconds): no float formatting in the wasm.
    samples: Vec<(Vec<(&'static str, String)>, u64)>,
}

impl Family {
    fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }
}

/// The families of one account's summary (`status::as_of` applied).
fn account_samples(entry: &Value, families: &mut [Family; ACCOUNT_FAMILIES]) {
    let text = |field: &str| {
        entry
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let base = vec![
        ("account", text("account")),
        ("kind", text("kind")),
        ("api", text("api")),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut labels = base.clone();
        labels.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        labels
    };
    let number = |value: Option<&Value>| value.and_then(Value::as_u64);
    let [expires, tickets, refreshes, calls, today, explicit, forced, quota, alerts, kv, clears, state, watched_used, watched_limit, pushed] =
        families;
    // The platform's verify ticket, a WeCom suite's suite ticket: how old the newest is.
    for name in ["verify_ticket", "suite_ticket"] {
        if let Some(age) = number(entry.get(name).and_then(|t| t.get("age_secs"))) {
            pushed.samples.push((with(&[("ticket", name)]), age));
        }
    }
    if let Some(watched) = entry.get("watched_quotas").and_then(Value::as_object) {
        for (path, reading) in watched {
            let labels = with(&[("path", path)]);
            if let Some(used) = number(reading.get("used")) {
                watched_used.samples.push((labels.clone(), used));
            }
            if let Some(limit) = number(reading.get("daily_limit")) {
                watched_limit.samples.push((labels, limit));
            }
        }
    }
    if let Some(left) = number(entry.pointer("/token/expires_in")) {
        expires.samples.push((with(&[]), left));
    }
    if let Some(map) = entry.get("tickets").and_then(Value::as_object) {
        for (kind, ticket) in map {
            if let Some(left) = number(ticket.get("expires_in")) {
                tickets.samples.push((with(&[("ticket", kind)]), left));
            }
        }
    }
    let counted: Counters = entry
        .get("counters")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    for (key, value) in &counted.refreshes {
        let (credential, outcome) = counters::labels(key);
        let labels = with(&[("credential", credential), ("outcome", outcome)]);
        refreshes.samples.push((labels, *value));
    }
    for (key, value) in &counted.upstream_calls {
        let (credential, outcome) = counters::labels(key);
        let labels = with(&[("credential", credential), ("outcome", outcome)]);
        calls.samples.push((labels, *value));
    }
    kv.samples.push((with(&[]), counted.kv_write_failures));
    for (family, field) in [
        (today, "upstream_calls_today"),
        (explicit, "explicit_refreshes_today"),
        (forced, "forced_refreshes_today"),
        (quota, "daily_quota"),
        (clears, "clears_left_this_month"),
    ] {
        if let Some(value) = number(entry.get(field)) {
            family.samples.push((with(&[]), value));
        }
    }
    if let Some(active) = entry.get("alerts").and_then(Value::as_array) {
        for condition in active.iter().filter_map(Value::as_str) {
            alerts.samples.push((with(&[("condition", condition)]), 1));
        }
    }
    state
        .samples
        .push((with(&[("state", status::state_of(entry))]), 1));
}

const ACCOUNT_FAMILIES: usize = 15;

fn account_families() -> [Family; ACCOUNT_FAMILIES] {
    use Kind::{Counter, Gauge};
    [
        Family::new("token_expires_in_seconds", Gauge, "Seconds until the account's access_token expires."),
        Family::new("ticket_expires_in_seconds", Gauge, "Seconds until the account's ticket expires."),
        Family::new("refreshes_total", Counter, "Refreshes of a credential (retries included in one), by outcome."),
        Family::new("upstream_calls_total", Counter, "Calls to WeChat for a credential, by outcome (ok or the error's code)."),
        Family::new("upstream_calls_today", Gauge, "Token calls to WeChat today (Beijing day), the server's count against the daily quota."),
        Family::new("explicit_refreshes_today", Gauge, "Explicit refreshes (POST /token/refresh) that reached WeChat today."),
        Family::new("forced_refreshes_today", Gauge, "stable_token forced refreshes today."),
        Family::new("daily_quota", Gauge, "The daily token-call quota the server keeps to (DAILY_QUOTA)."),
        Family::new("alert_active", Gauge, "1 for each condition under alert."),
        Family::new("kv_write_failures_total", Counter, "KV writes of the account's credentials that failed (each retried)."),
        Family::new("quota_clears_left", Gauge, "Quota clears left this calendar month (Beijing time); WeChat allows 10."),
        Family::new("account_state", Gauge, "1 for the account's state: healthy, refreshing, failing, paused or blocked."),
        Family::new("watched_quota_used", Gauge, "Calls of a watched API today, as WeChat counted them at its last answer (QUOTA_WATCH_PATHS)."),
        Family::new("watched_quota_daily_limit", Gauge, "A watched API's daily limit, as WeChat last answered."),
        Family::new("pushed_ticket_age_seconds", Gauge, "Age of the newest ticket pushed to the account (the platform's verify ticket, a WeCom suite's suite ticket)."),
    ]
}

/// The exposition of `entries` (page `page` of the accounts) with the page's accounts by
/// state, and, with `server`, the server's own counters (the gateway's calls by status class).
pub fn render(entries: &[Value], page: usize, server: Option<&ServerCounts>) -> String {
    let mut families = account_families();
    for entry in entries {
        account_samples(entry, &mut families);
    }
    let mut all: Vec<Family> = families.into_iter().collect();
    // Every page counts its own accounts (labelled with the page, so that pages scraped as
    // separate targets never collide): the server's are the sum over the pages.
    let mut states = Family::new(
        "accounts",
        Kind::Gauge,
        "Accounts by state, on this page of /metrics (sum over the pages for the server's).",
    );
    for state in status::STATES {
        let count = entries
            .iter()
            .filter(|e| status::state_of(e) == state)
            .count();
        let labels = vec![("page", page.to_string()), ("state", state.to_owned())];
        states.samples.push((labels, count as u64));
    }
    all.push(states);
    if let Some(server) = server {
        let mut gateway = Family::new(
            "gateway_calls_total",
            Kind::Counter,
            "Gateway calls by the status class answered (tallied per isolate, handed over every 10 s at most).",
        );
        for (name, value) in &server.counters {
            if let Some(class) = name.strip_prefix("gateway_calls:") {
                gateway
                    .samples
                    .push((vec![("status_class", class.to_owned())], *value));
            }
        }
        all.push(gateway);
    }
    let mut out = String::new();
    for family in all {
        let kind = match family.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {PREFIX}{} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {PREFIX}{} {kind}", family.name);
        for (labels, value) in &family.samples {
            let _ = write!(out, "{PREFIX}{}", family.name);
            if !labels.is_empty() {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", pairs.join(","));
            }
            let _ = writeln!(out, " {value}");
        }
    }
    out
}

/// The server's counters, as the registry keeps them.
pub struct ServerCounts {
    pub counters: Vec<(String, u64)>,
}

/// A label value as the format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_renders_each_family_once_with_its_samples() {
        let entry = json!({
            "account": "shop", "kind": "mini_program", "api": "stable",
            "token": {"expires_in": 6900, "refreshed_at": 10}, "tickets": {"jsapi": {"expires_in": 100}},
            "upstream_calls_today": 3, "explicit_refreshes_today": 1, "forced_refreshes_today": 0,
            "daily_quota": 2000, "clears_left_this_month": 9, "alerts": ["refresh_failing"],
            "watched_quotas": {"/cgi-bin/message/custom/send": {"used": 5, "daily_limit": 100, "remain": 95, "fetched_at": 1}},
            "auto_refresh": "on", "last_error": null,
            "counters": {"refreshes": {"token:ok": 2}, "upstream_calls": {"token:ok": 2, "token:wechat_error": 1},
                         "kv_write_failures": 0, "hourly": []},
        });
        let odd = json!({"account": "a\"b\\c", "kind": "official_account", "api": "classic", "token": null});
        let suite = json!({"account": "wwsuite", "kind": "wecom_suite", "api": "wecom_suite",
                           "suite_ticket": {"created_at": 1, "age_secs": 120}});
        let server = ServerCounts {
            counters: vec![("gateway_calls:2xx".into(), 7)],
        };
        let text = render(&[entry, odd, suite], 0, Some(&server));
        assert!(text.contains("wechat_token_edge_pushed_ticket_age_seconds{account=\"wwsuite\",kind=\"wecom_suite\",api=\"wecom_suite\",ticket=\"suite_ticket\"} 120\n"));
        assert_eq!(
            text.matches("# TYPE wechat_token_edge_refreshes_total counter")
                .count(),
            1
        );
        assert!(text.contains("wechat_token_edge_token_expires_in_seconds{account=\"shop\",kind=\"mini_program\",api=\"stable\"} 6900\n"));
        assert!(text.contains("wechat_token_edge_upstream_calls_total{account=\"shop\",kind=\"mini_program\",api=\"stable\",credential=\"token\",outcome=\"wechat_error\"} 1\n"));
        assert!(text.contains("ticket=\"jsapi\"} 100\n"));
        assert!(text.contains("wechat_token_edge_watched_quota_used{account=\"shop\",kind=\"mini_program\",api=\"stable\",path=\"/cgi-bin/message/custom/send\"} 5\n"));
        assert!(text.contains("condition=\"refresh_failing\"} 1\n"));
        assert!(text.contains("wechat_token_edge_gateway_calls_total{status_class=\"2xx\"} 7\n"));
        assert!(text.contains("wechat_token_edge_accounts{page=\"0\",state=\"healthy\"} 1\n"));
        assert!(text.contains("wechat_token_edge_accounts{page=\"0\",state=\"refreshing\"} 2\n"));
        assert!(
            text.contains("account=\"a\\\"b\\\\c\""),
            "label values are escaped"
        );
        let page_two = render(&[], 1, None);
        assert!(page_two.contains("wechat_token_edge_accounts{page=\"1\",state=\"healthy\"} 0\n"));
        assert!(
            !page_two.contains("gateway_calls_total"),
            "the server's families on page 0 only"
        );
    }
}
