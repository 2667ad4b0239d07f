//! The watched quotas (`QUOTA_WATCH_PATHS`): on its alarm, at most hourly, the object asks
//! WeChat for each watched API's daily quota with the account's current token, and keeps the
//! answers for `/status`, `/metrics`, the page and the `quota_low` alert.

use super::AccountCtx;
use crate::edge::adapters::faults;
use crate::edge::adapters::runtime::{log_error, log_event, now_secs};
use crate::edge::adapters::upstream;
use crate::error::{AppError, UpstreamFailure};
use crate::policy::accounts::TokenApi;
use crate::policy::token::Credential;
use crate::policy::watch::{Watch, WatchedQuota, WATCH_INTERVAL_SECS};
use crate::wechat::openapi;
use serde_json::{json, Map, Value};

impl AccountCtx {
    /// Whether this account's quotas are watched: WeChat meters official accounts, mini
    /// programs and authorizers this way (a component's token calls are not, and WeCom has
    /// no such API).
    fn watches(&self) -> bool {
        !self.settings.quota_watch_paths.is_empty()
            && !self.account.kind.is_wecom()
            && self.account.api != TokenApi::Component
    }

    fn watch_interval(&self) -> u64 {
        faults::quota_watch_secs(&self.env).unwrap_or(WATCH_INTERVAL_SECS)
    }

    /// When the object must wake to ask again (at once for a first round).
    pub(super) fn watch_due(&self, now: u64) -> Option<u64> {
        let interval = self.watch_interval();
        self.watches().then(|| {
            self.state
                .ledger
                .borrow()
                .watch
                .due_at(interval)
                .max(now + 1)
        })
    }

    /// Asks for the watched quotas if a round is due; a path WeChat does not answer keeps its
    /// last reading until the next round.
    pub(super) async fn watch_quotas(&self) {
        let now = now_secs();
        let due = self
            .state
            .ledger
            .borrow()
            .watch
            .due_at(self.watch_interval());
        if !self.watches() || now < due || self.state.retired.get() {
            return;
        }
        let token = self
            .state
            .token
            .record()
            .filter(|record| record.expires_at() > now);
        let mut answers = Vec::new();
        let paths = &self.settings.quota_watch_paths;
        for (token, path) in token
            .iter()
            .flat_map(|t| paths.iter().map(move |p| (t.value(), p)))
        {
            let request = openapi::quota_request(&self.settings.api_base, token, path);
            let budget = self.settings.upstream_timeout_ms;
            let outcome = upstream::platform_call(&self.settings, &request, budget)
                .await
                .and_then(|(status, body)| openapi::parse_quota(status, &body, token));
            match outcome {
                Ok(quota) => answers.push((
                    path.clone(),
                    WatchedQuota {
                        daily_limit: quota.daily_limit,
                        used: quota.used,
                        remain: quota.remain,
                        fetched_at: now_secs(),
                        hourly: Vec::new(),
                    },
                )),
                Err(failure) => self.log_watch_failure(path, failure),
            }
        }
        let low = {
            let mut ledger = self.state.ledger.borrow_mut();
            let percent = self.settings.quota_low_percent;
            ledger.watch.checked(answers, paths, percent, now_secs());
            ledger.watch.low_since.is_some()
        };
        self.persist(None).await;
        log_event(json!({
            "event": "quota_watch", "account": self.account.id, "low": low,
            "token": token.is_some(),
        }));
    }

    /// The watched quotas as `/status` shows them, each marked `low` as the alert judges it.
    pub(super) fn watched_quotas(&self, watch: &Watch) -> Value {
        let (now, percent) = (now_secs(), self.settings.quota_low_percent);
        let shown: Map<String, Value> = watch
            .quotas
            .iter()
            .map(|(path, quota)| {
                let mut entry = json!(quota);
                entry["low"] = json!(quota.is_low_today(percent, now));
                (path.clone(), entry)
            })
            .collect();
        Value::Object(shown)
    }

    fn log_watch_failure(&self, path: &str, failure: UpstreamFailure) {
        let rid = failure.rid().map(str::to_owned);
        let error = AppError::Upstream(failure);
        log_error(json!({
            "event": "quota_watch_failed", "account": self.account.id, "path": path,
            "outcome": error.code(), "message": error.message(), "wechat_rid": rid,
        }));
    }
}
