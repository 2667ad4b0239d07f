//! Counts that no object sees (the gateway's calls, answered by whichever isolate took them),
//! kept in this isolate's memory and handed to the registry at most every few seconds. An
//! isolate that ends before it hands them over loses those seconds' counts: `/metrics` says
//! so in its help text.

use std::cell::RefCell;
use std::collections::BTreeMap;

/// How often an isolate hands its counts over, at most.
pub const HAND_OVER_EVERY_MS: u64 = 10_000;

#[derive(Default)]
struct Tally {
    counts: BTreeMap<String, u64>,
    handed_over_ms: u64,
}

thread_local! {
    static TALLY: RefCell<Tally> = RefCell::default();
}

pub fn add(name: &str) {
    TALLY.with(|tally| {
        *tally
            .borrow_mut()
            .counts
            .entry(name.to_owned())
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
        Some(std::mem::take(&mut tally.counts).into_iter().collect())
    })
}

/// Counts the registry did not take: kept for the next hand-over.
pub fn give_back(counts: Vec<(String, u64)>) {
    TALLY.with(|tally| {
        let mut tally = tally.borrow_mut();
        for (name, amount) in counts {
            *tally.counts.entry(name).or_default() += amount;
        }
    });
}
