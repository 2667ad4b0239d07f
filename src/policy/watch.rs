//! Watched quotas (`QUOTA_WATCH_PATHS`): each account's object asks WeChat for those APIs'
//! daily quotas at most hourly, keeps the last answers, and says when one runs low (under
//! `QUOTA_LOW_PERCENT` of its daily limit left), for the `quota_low` alert. Pure.

use crate::policy::quota::beijing_day;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How often an object asks, at most.
pub const WATCH_INTERVAL_SECS: u64 = 3600;
pub const DEFAULT_LOW_PERCENT: u64 = 10;

/// An API path as WeChat's `quota/get` takes it: `/cgi-bin/message/custom/send`, without the
/// host, nothing that needs encoding.
pub fn is_api_path(path: &str) -> bool {
    path.len() > 1
        && path.len() <= 200
        && path.starts_with('/')
        && !path.contains("//")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-.".contains(c))
}

/// `QUOTA_WATCH_PATHS`: comma-separated API paths, each once.
pub fn parse_paths(value: Option<&str>) -> Result<Vec<String>, String> {
    let mut paths: Vec<String> = Vec::new();
    for path in value.unwrap_or("").split(',').map(str::trim) {
        if path.is_empty() || paths.iter().any(|p| p == path) {
            continue;
        }
        if !is_api_path(path) {
            return Err(format!(
                "names {path:?}, not an API path such as /cgi-bin/message/custom/send"
            ));
        }
        paths.push(path.to_owned());
    }
    Ok(paths)
}

/// One API's quota as WeChat last answered it, and its use over the last day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedQuota {
    pub daily_limit: u64,
    pub used: u64,
    pub remain: u64,
    pub fetched_at: u64,
    /// `[hour, used]` for the last [`HOURS_KEPT`] hours with an answer (unix time / 3600; the
    /// hour's last answer), oldest first: the status page draws it.
    #[serde(default)]
    pub hourly: Vec<(u64, u64)>,
}

/// The hours of use kept per watched API.
pub const HOURS_KEPT: u64 = 24;

impl WatchedQuota {
    /// Fewer than `percent` of the daily limit left.
    pub fn is_low(&self, percent: u64) -> bool {
        self.daily_limit > 0 && self.remain * 100 < self.daily_limit * percent
    }

    /// Low, in a reading of today (Beijing day): an earlier day's says nothing of today's quota.
    pub fn is_low_today(&self, percent: u64, now: u64) -> bool {
        beijing_day(self.fetched_at) == beijing_day(now) && self.is_low(percent)
    }
}

/// What an account's object keeps of its watched quotas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// When it last asked (or tried to).
    pub checked_at: u64,
    pub quotas: BTreeMap<String, WatchedQuota>,
    /// Since when a watched quota has been low (None: none is).
    pub low_since: Option<u64>,
}

impl Watch {
    pub fn due_at(&self, interval_secs: u64) -> u64 {
        self.checked_at + interval_secs
    }

    /// Asks again at the next alarm (the quotas were just cleared).
    pub fn ask_again(&mut self) {
        self.checked_at = 0;
    }

    /// A round of questions ended at `now`: `answers` are the quotas WeChat gave (a path it
    /// did not answer keeps its last reading), `paths` what is watched now.
    pub fn checked(
        &mut self,
        answers: Vec<(String, WatchedQuota)>,
        paths: &[String],
        low_percent: u64,
        now: u64,
    ) {
        self.checked_at = now;
        for (path, mut answer) in answers {
            let hour = answer.fetched_at / 3600;
            let mut hourly = self
                .quotas
                .remove(&path)
                .map(|q| q.hourly)
                .unwrap_or_default();
            hourly.retain(|(h, _)| *h != hour && h + HOURS_KEPT > hour);
            hourly.push((hour, answer.used));
            answer.hourly = hourly;
            self.quotas.insert(path, answer);
        }
        self.quotas.retain(|path, _| paths.contains(path));
        let low = self
            .quotas
            .values()
            .any(|q| q.is_low_today(low_percent, now));
        self.low_since = match (low, self.low_since) {
            (true, since) => Some(since.unwrap_or(now)),
            (false, _) => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND: &str = "/cgi-bin/message/custom/send";

    fn quota(daily_limit: u64, used: u64, at: u64) -> WatchedQuota {
        WatchedQuota {
            daily_limit,
            used,
            remain: daily_limit - used,
            fetched_at: at,
            hourly: Vec::new(),
        }
    }

    #[test]
    fn paths_are_checked_and_kept_once() {
        let parsed = parse_paths(Some(" /cgi-bin/a , /cgi-bin/b,/cgi-bin/a,")).unwrap();
        assert_eq!(parsed, ["/cgi-bin/a", "/cgi-bin/b"]);
        assert_eq!(parse_paths(None).unwrap(), Vec::<String>::new());
        for bad in [
            "cgi-bin/a",
            "/cgi-bin/a?x=1",
            "https://api.weixin.qq.com/a",
            "/",
        ] {
            assert!(parse_paths(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quota_under_the_percentage_is_low_until_it_is_not() {
        let paths = vec![SEND.to_owned()];
        let mut watch = Watch::default();
        assert_eq!(watch.due_at(WATCH_INTERVAL_SECS), WATCH_INTERVAL_SECS);
        watch.checked(vec![(SEND.into(), quota(100, 50, 10))], &paths, 10, 10);
        assert_eq!((watch.checked_at, watch.low_since), (10, None));
        watch.checked(vec![(SEND.into(), quota(100, 91, 20))], &paths, 10, 20);
        assert_eq!(watch.low_since, Some(20));
        // WeChat did not answer this time: the last reading stands, and so does the alert.
        watch.checked(vec![], &paths, 10, 30);
        assert_eq!(watch.low_since, Some(20));
        assert_eq!(watch.quotas[SEND].used, 91);
        // Nor past the Beijing day of the reading: the quota starts again at midnight.
        let next_day = 2 * 86_400;
        watch.checked(vec![], &paths, 10, next_day);
        assert_eq!(watch.low_since, None);
        watch.ask_again();
        assert_eq!(watch.due_at(WATCH_INTERVAL_SECS), WATCH_INTERVAL_SECS);
        watch.checked(vec![(SEND.into(), quota(100, 0, 40))], &paths, 10, 40);
        assert_eq!(watch.low_since, None);
        // A path no longer watched is dropped.
        watch.checked(vec![], &[], 10, 50);
        assert!(watch.quotas.is_empty());
        assert!(!quota(0, 0, 1).is_low(10), "no limit is never low");
        assert!(quota(100, 90, 1).is_low(11) && !quota(100, 90, 1).is_low(10));
    }

    #[test]
    fn each_hour_keeps_its_last_answer_for_a_day() {
        let paths = vec![SEND.to_owned()];
        let mut watch = Watch::default();
        let hour = 500_000;
        for (at, used) in [
            (hour * 3600, 1),
            (hour * 3600 + 60, 2),
            ((hour + 1) * 3600, 5),
        ] {
            watch.checked(vec![(SEND.into(), quota(100, used, at))], &paths, 10, at);
        }
        assert_eq!(watch.quotas[SEND].hourly, [(hour, 2), (hour + 1, 5)]);
        let later = (hour + 25) * 3600;
        watch.checked(vec![(SEND.into(), quota(100, 7, later))], &paths, 10, later);
        assert_eq!(
            watch.quotas[SEND].hourly,
            [(hour + 25, 7)],
            "a day later, only the new hour"
        );
    }
}
