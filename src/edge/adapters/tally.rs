//! Counts that no object sees (the gateway's calls, answered by whichever isolate took them),
//! kept in this isolate's memory and handed to the registry at most every few seconds, with a
//! call that comes after them. An isolate that ends before it hands them over loses them:
//! `/metrics` says so in its help text.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// How often an isolate hands its counts over, at most.
pub const HAND_OVER_EVERY_MS: u64 = 10_000;

#[derive(Default)]
struct Tally {
    /// By name; a count costs no allocation on the hot path (its name is static).
    counts: BTreeMap<Cow<'static, str>, u64>,
    handed_over_ms: u64,
}

thread_local! {
    static TALLY: RefCell<Tally> = RefCell::default();
}

pub fn add(name: &'static str) {
    TALLY.with(|tally| {
        *tally
            .borrow_mut()
            .counts
            .entry(Cow::Borrowed(name))
            .or_default() += 1
    });
}

/// The counts to hand over now, if it is time (they are taken out of memory).
pub fn due(now_ms: u64) -> Option<Vec<(String, u64)>> {
    TALLY.with(|tally| {
        let mut tally = tally.borrow_mut();
        if tally.counts.is_empty() || now_ms < tally.handed_over_ms + HAND_OVER_EVERY_MS {
            return None;
        }
        tally.handed_over_ms = now_ms;
        let counts = std::mem::take(&mut tally.counts);
        Some(
            counts
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v))
                .collect(),
        )
    })
}

/// Counts the registry did not take: kept for the next hand-over.
pub fn give_back(counts: Vec<(String, u64)>) {
    TALLY.with(|tally| {
        let mut tally = tally.borrow_mut();
        for (name, amount) in counts {
            *tally.counts.entry(Cow::Owned(name)).or_default() += amount;
        }
    });
}
