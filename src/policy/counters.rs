//! What an account's object counts for `/metrics` and the status page: refreshes and upstream
//! calls by outcome, KV write failures (all only ever going up, kept with the object's
//! storage), and the last 24 hours of calls and failures, an hour at a time. Pure.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const HOUR_SECS: u64 = 3600;
/// The hours the status page draws.
pub const HOURS_KEPT: u64 = 24;

/// One hour's upstream calls (unix time / 3600) and how many failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourCount {
    pub hour: u64,
    pub calls: u64,
    pub failures: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Refreshes (retries included) by `credential:outcome`, outcome `ok` or `failed`.
    #[serde(default)]
    pub refreshes: BTreeMap<String, u64>,
    /// Calls to WeChat by `credential:outcome`, outcome `ok` or the error's code.
    #[serde(default)]
    pub upstream_calls: BTreeMap<String, u64>,
    #[serde(default)]
    pub kv_write_failures: u64,
    /// The last [`HOURS_KEPT`] hours that had calls, oldest first.
    #[serde(default)]
    pub hourly: Vec<HourCount>,
}

impl Counters {
    pub fn refresh(&mut self, credential: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        *self
            .refreshes
            .entry(format!("{credential}:{outcome}"))
            .or_default() += 1;
    }

    /// A call to WeChat for `credential` (`token`, `jsapi`, `wx_card`) ended (`outcome`: `ok`, or the failure's error code) at `now`.
    pub fn upstream_call(&mut self, credential: &str, outcome: &str, now: u64) {
        *self
            .upstream_calls
            .entry(format!("{credential}:{outcome}"))
            .or_default() += 1;
        let hour = now / HOUR_SECS;
        match self.hourly.last_mut() {
            Some(last) if last.hour == hour => {}
            _ => self.hourly.push(HourCount {
                hour,
                ..HourCount::default()
            }),
        }
        self.hourly.retain(|h| h.hour + HOURS_KEPT > hour);
        if let Some(last) = self.hourly.last_mut() {
            last.calls += 1;
            last.failures += u64::from(outcome != "ok");
        }
    }

    pub fn kv_write_failed(&mut self) {
        self.kv_write_failures += 1;
    }
}

/// Splits a `credential:outcome` key.
pub fn labels(key: &str) -> (&str, &str) {
    key.split_once(':').unwrap_or((key, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_054_400; // on the hour

    #[test]
    fn counts_go_up_by_credential_and_outcome() {
        let mut counters = Counters::default();
        counters.refresh("token", true);
        counters.refresh("token", true);
        counters.refresh("jsapi", false);
        counters.upstream_call("token", "ok", NOW);
        counters.upstream_call("token", "wechat_error", NOW + 10);
        counters.kv_write_failed();
        assert_eq!(counters.refreshes["token:ok"], 2);
        assert_eq!(counters.refreshes["jsapi:failed"], 1);
        assert_eq!(counters.upstream_calls["token:wechat_error"], 1);
        assert_eq!(counters.kv_write_failures, 1);
        assert_eq!(labels("jsapi:failed"), ("jsapi", "failed"));
    }

    #[test]
    fn the_last_day_is_kept_an_hour_at_a_time() {
        let mut counters = Counters::default();
        counters.upstream_call("token", "ok", NOW - 30 * HOUR_SECS);
        counters.upstream_call("token", "ok", NOW - 2 * HOUR_SECS);
        counters.upstream_call("token", "upstream_timeout", NOW - 2 * HOUR_SECS);
        counters.upstream_call("token", "ok", NOW + 5);
        assert_eq!(counters.hourly.len(), 2, "the hour 30 hours ago is gone");
        let current = NOW / HOUR_SECS;
        assert_eq!(
            counters.hourly,
            [
                HourCount {
                    hour: current - 2,
                    calls: 2,
                    failures: 1
                },
                HourCount {
                    hour: current,
                    calls: 1,
                    failures: 0
                },
            ]
        );
    }
}
