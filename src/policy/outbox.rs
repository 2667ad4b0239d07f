//! The alert outbox's pacing: what goes to each webhook now, as how few messages. Alerts of one
//! condition and state that arrive within `gather_secs` of each other go as one digest, a
//! condition and state goes to a webhook at most once a window (what arrives meanwhile waits
//! for the next digest), a webhook gets at most `per_window` messages a window (WeCom's and
//! DingTalk's robots allow 20 a minute), and a webhook that failed is tried again after its
//! retry time with everything queued for it since. Nothing is dropped here. Pure.

use crate::policy::alerts::Notice;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// How long the first alert of a group waits for others to join it.
    pub gather_secs: u64,
    /// The rate window, the spacing of one group's digests, and the retry after a failure.
    pub window_secs: u64,
    /// Messages a webhook takes per window.
    pub per_window: usize,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            gather_secs: 10,
            window_secs: 60,
            per_window: 20,
        }
    }
}

/// An alert waiting for one webhook (`hook`: the webhook's fingerprint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub seq: u64,
    pub hook: String,
    pub notice: Notice,
    pub queued_at: u64,
}

/// What the outbox remembers of one webhook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookLog {
    /// When messages went to it, within the last window.
    pub sent_at: Vec<u64>,
    /// Not before then (after a failure).
    pub retry_at: u64,
    /// When each condition and state (`"<condition>/<state>"`) last went to it.
    pub groups: BTreeMap<String, u64>,
}

/// One message to send now: the alerts it carries (one condition and state, one webhook).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub hook: String,
    pub seqs: Vec<u64>,
    pub notices: Vec<Notice>,
}

pub fn group_key(notice: &Notice) -> String {
    format!("{}/{}", notice.condition, notice.state)
}

/// The digests to send at `now` (oldest group first), and when to look again for what must
/// wait (None: nothing is left).
pub fn plan(
    queued: &[Queued],
    logs: &BTreeMap<String, HookLog>,
    pace: &Pace,
    now: u64,
) -> (Vec<Digest>, Option<u64>) {
    // Groups in the order their first alert arrived.
    let mut groups: Vec<(String, String, Vec<&Queued>)> = Vec::new();
    for item in queued {
        let key = group_key(&item.notice);
        match groups
            .iter_mut()
            .find(|(hook, k, _)| *hook == item.hook && *k == key)
        {
            Some((_, _, items)) => items.push(item),
            None => groups.push((item.hook.clone(), key, vec![item])),
        }
    }
    groups.sort_by_key(|(_, _, items)| items.iter().map(|i| i.seq).min());
    let empty = HookLog::default();
    let mut planned: BTreeMap<&str, usize> = BTreeMap::new();
    let mut digests = Vec::new();
    let mut wake: Option<u64> = None;
    let mut later = |at: u64| wake = Some(wake.map_or(at, |w| w.min(at)));
    for (hook, key, items) in &groups {
        let log = logs.get(hook).unwrap_or(&empty);
        let first_at = items.iter().map(|i| i.queued_at).min().unwrap_or(now);
        let spaced = log.groups.get(key).map_or(0, |at| at + pace.window_secs);
        let ready_at = (first_at + pace.gather_secs).max(spaced).max(log.retry_at);
        if ready_at > now {
            later(ready_at);
            continue;
        }
        let recent: Vec<u64> = log
            .sent_at
            .iter()
            .copied()
            .filter(|at| at + pace.window_secs > now)
            .collect();
        let used = recent.len() + planned.get(hook.as_str()).copied().unwrap_or(0);
        if used >= pace.per_window {
            // The webhook's window is full: when its oldest message leaves it.
            let frees_at = recent
                .iter()
                .min()
                .map_or(now + 1, |at| at + pace.window_secs);
            later(frees_at.max(now + 1));
            continue;
        }
        *planned.entry(hook.as_str()).or_default() += 1;
        digests.push(Digest {
            hook: hook.clone(),
            seqs: items.iter().map(|i| i.seq).collect(),
            notices: items.iter().map(|i| i.notice.clone()).collect(),
        });
    }
    (digests, wake)
}

impl HookLog {
    /// Records a message sent at `now`: delivered, or failed and to be tried again after
    /// the seconds given (either way it counts: a robot counts what it was sent).
    pub fn sent(&mut self, digest: &Digest, outcome: Result<(), u64>, pace: &Pace, now: u64) {
        self.sent_at.retain(|at| at + pace.window_secs > now);
        self.sent_at.push(now);
        match outcome {
            Ok(()) => {
                if let Some(notice) = digest.notices.first() {
                    self.groups.insert(group_key(notice), now);
                }
            }
            Err(retry_after_secs) => self.retry_at = now + retry_after_secs,
        }
    }
}

#[cfg(test)]
mod tests;
