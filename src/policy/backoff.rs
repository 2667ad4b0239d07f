//! When to try WeChat again. Pure.
//!
//! Two scales: inside one refresh, a busy WeChat (-1) or a network/5xx failure is retried a few
//! times after short jittered delays, within the upstream timeout; across refreshes, automatic
//! refreshes (cron, background) of an account that keeps failing wait longer each time.

use crate::error::UpstreamFailure;

/// Calls to WeChat within one refresh, the first included.
pub const MAX_ATTEMPTS: u32 = 3;
const FIRST_RETRY_DELAY_MS: u64 = 200;
/// Automatic refreshes of a failing account wait at most this long (the cron period).
pub const MAX_AUTOMATIC_WAIT_SECS: u64 = 300;

/// Failures that a moment's wait may cure.
pub fn is_retryable(failure: &UpstreamFailure) -> bool {
    match failure {
        UpstreamFailure::WeChat { errcode, .. } => *errcode == -1,
        UpstreamFailure::HttpStatus { status } => *status >= 500,
        UpstreamFailure::Unreachable { .. } => true,
        UpstreamFailure::BadResponse { .. }
        | UpstreamFailure::Timeout { .. }
        | UpstreamFailure::EgressRefused
        | UpstreamFailure::Redirect { .. } => false,
    }
}

/// The delay before retry number `retry` (1-based): exponential, with "equal jitter" (half
/// fixed, half random) so that many isolates retrying together spread out. `random` is any
/// value from the runtime's random source.
pub fn retry_delay_ms(retry: u32, random: u32) -> u64 {
    let ceiling = FIRST_RETRY_DELAY_MS << (retry.saturating_sub(1)).min(10);
    ceiling / 2 + u64::from(random) % (ceiling / 2 + 1)
}

/// How long automatic refreshes wait after `failures_in_a_row` failed calls: the minimum
/// interval, doubled per further failure, capped.
pub fn automatic_wait_secs(failures_in_a_row: u32, min_interval_secs: u64) -> u64 {
    if failures_in_a_row == 0 {
        return min_interval_secs;
    }
    let doubled = min_interval_secs
        .max(1)
        .saturating_mul(1 << (failures_in_a_row - 1).min(16));
    doubled.min(MAX_AUTOMATIC_WAIT_SECS).max(min_interval_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        let wechat = |errcode| UpstreamFailure::WeChat {
            errcode,
            errmsg: String::new(),
        };
        assert!(is_retryable(&wechat(-1)));
        assert!(!is_retryable(&wechat(45009)));
        assert!(!is_retryable(&wechat(40164)));
        assert!(is_retryable(&UpstreamFailure::HttpStatus { status: 502 }));
        assert!(!is_retryable(&UpstreamFailure::HttpStatus { status: 404 }));
        assert!(is_retryable(&UpstreamFailure::Unreachable {
            detail: String::new()
        }));
        assert!(!is_retryable(&UpstreamFailure::Timeout { after_ms: 1 }));
    }

    #[test]
    fn retry_delays_grow_and_stay_jittered_within_bounds() {
        for random in [0, 1, 77, u32::MAX] {
            let first = retry_delay_ms(1, random);
            let second = retry_delay_ms(2, random);
            assert!((100..=200).contains(&first), "{first}");
            assert!((200..=400).contains(&second), "{second}");
        }
        assert_ne!(retry_delay_ms(1, 0), retry_delay_ms(1, 60));
    }

    #[test]
    fn automatic_waits_double_up_to_the_cap() {
        assert_eq!(automatic_wait_secs(0, 30), 30);
        assert_eq!(automatic_wait_secs(1, 30), 30);
        assert_eq!(automatic_wait_secs(2, 30), 60);
        assert_eq!(automatic_wait_secs(4, 30), 240);
        assert_eq!(automatic_wait_secs(5, 30), MAX_AUTOMATIC_WAIT_SECS);
        assert_eq!(automatic_wait_secs(40, 30), MAX_AUTOMATIC_WAIT_SECS);
        assert_eq!(
            automatic_wait_secs(3, 0),
            4,
            "a zero interval still backs off"
        );
        assert_eq!(automatic_wait_secs(3, 600), 600, "never below the interval");
    }
}
