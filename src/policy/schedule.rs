//! When an account's object wakes by itself (its alarm): at the earliest time one of its
//! credentials falls due, moved earlier by a small random jitter so that thousands of accounts
//! registered together do not fire together. An alarm refreshes what falls due within the
//! jitter window (`refresh::decide`), so waking early never means waking twice. Pure.

use crate::policy::backoff::automatic_wait_secs;

/// The most an alarm is moved earlier (less if the margin is small).
pub const MAX_JITTER_SECS: u64 = 60;

/// The jitter window for a margin: a quarter of it, at most [`MAX_JITTER_SECS`].
pub fn jitter_window(margin_secs: u64) -> u64 {
    (margin_secs / 4).min(MAX_JITTER_SECS)
}

/// How long past its due time an account counts as overdue for the cron (its alarm missed): a
/// quarter of the margin, at most two minutes (alarms retry on their own for a while).
pub fn overdue_after_secs(margin_secs: u64) -> u64 {
    (margin_secs / 4).min(120)
}

/// When one credential falls due: its record's expiry less `margin_secs`, not before the
/// record's hold (a stable token WeChat hands back unchanged until it rotates it), and not
/// before automatic refreshes may call again after its last attempt at `.0` (`.1` failures in
/// a row), which is `min_interval_secs` or more. The same inputs `refresh::decide` weighs.
pub fn credential_due(
    record: Option<(u64, Option<u64>)>,
    last_attempt: Option<(u64, u32)>,
    margin_secs: u64,
    min_interval_secs: u64,
) -> u64 {
    let may_call_at = last_attempt
        .map(|(at, failures)| at + automatic_wait_secs(failures, min_interval_secs))
        .unwrap_or(0);
    let due = record.map_or(0, |(expires_at, hold_until)| {
        expires_at
            .saturating_sub(margin_secs)
            .max(hold_until.unwrap_or(0))
    });
    due.max(may_call_at)
}

/// The longest the safety net waits between two alarm runs that found nothing to do.
pub const SAFETY_NET_MAX_SECS: u64 = 3600;

/// The alarm's delay from `now` for a wake time `at`. One that is already due and yet was not
/// refreshed (its alarm just ran and the policy said no) waits `min_interval_secs`, at least
/// ten seconds, doubled for each such run in a row (`idle_runs` before this one) up to an
/// hour: a safety net, so that a due time the policy does not share (a component without a
/// ticket under its authorizers) never makes an alarm fire every minute for long.
pub fn alarm_delay_secs(at: u64, now: u64, min_interval_secs: u64, idle_runs: u32) -> u64 {
    if at > now {
        at - now
    } else {
        let first = min_interval_secs.max(10);
        first
            .saturating_mul(1 << idle_runs.min(12))
            .min(SAFETY_NET_MAX_SECS.max(first))
    }
}

/// The alarm time for the credentials' due times, `random` (any value) choosing the jitter.
pub fn next_wake(
    dues: impl IntoIterator<Item = u64>,
    margin_secs: u64,
    random: u32,
) -> Option<u64> {
    let earliest = dues.into_iter().min()?;
    let jitter = u64::from(random) % (jitter_window(margin_secs) + 1);
    Some(earliest.saturating_sub(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(expires_at: Option<u64>, last_attempt: Option<(u64, u32)>) -> u64 {
        credential_due(expires_at.map(|e| (e, None)), last_attempt, 900, 60)
    }

    #[test]
    fn a_held_stable_token_is_due_when_its_hold_ends() {
        assert_eq!(
            credential_due(Some((10_000, Some(9_700))), None, 900, 60),
            9_700
        );
        assert_eq!(
            credential_due(Some((10_000, Some(5_000))), None, 900, 60),
            9_100
        );
    }

    #[test]
    fn an_alarm_never_fires_again_at_once() {
        assert_eq!(alarm_delay_secs(1_030, 1_000, 60, 5), 30);
        assert_eq!(alarm_delay_secs(1_000, 1_000, 60, 0), 60);
        assert_eq!(alarm_delay_secs(900, 1_000, 0, 0), 10);
        // Runs in a row that find nothing to do wait longer each time, up to an hour.
        assert_eq!(alarm_delay_secs(900, 1_000, 60, 1), 120);
        assert_eq!(alarm_delay_secs(900, 1_000, 60, 3), 480);
        assert_eq!(alarm_delay_secs(900, 1_000, 60, 40), SAFETY_NET_MAX_SECS);
    }

    #[test]
    fn a_credential_falls_due_at_its_margin() {
        assert_eq!(due(Some(10_000), Some((2_800, 0))), 9_100);
        assert_eq!(due(Some(10_000), None), 9_100);
    }

    #[test]
    fn after_failures_it_waits_for_the_automatic_backoff() {
        // Due already, but the last of two failed calls was at 9_200: 120 s later.
        assert_eq!(due(Some(10_000), Some((9_200, 2))), 9_320);
        assert_eq!(due(None, Some((500, 1))), 560);
        assert_eq!(due(None, None), 0);
    }

    #[test]
    fn an_alarm_is_missed_a_quarter_of_the_margin_late() {
        assert_eq!(overdue_after_secs(900), 120);
        assert_eq!(overdue_after_secs(20), 5);
    }

    #[test]
    fn the_alarm_comes_at_most_the_jitter_window_early() {
        assert_eq!(next_wake([9_100, 9_500], 900, 0), Some(9_100));
        assert_eq!(next_wake([9_100], 900, 60), Some(9_040));
        assert_eq!(next_wake([9_100], 900, 61), Some(9_100));
        assert_eq!(
            next_wake([9_100], 40, 7),
            Some(9_093),
            "a quarter of a small margin"
        );
        assert_eq!(next_wake([], 900, 3), None);
        let spread: std::collections::HashSet<u64> = (0..200)
            .map(|r| next_wake([9_100], 900, r).unwrap())
            .collect();
        assert_eq!(spread.len(), 61);
    }
}
