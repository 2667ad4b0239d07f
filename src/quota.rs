//! WeChat's quota day and the limits on stable_token's forced refreshes. Pure.
//!
//! WeChat counts quotas per day in Beijing time (UTC+8, no daylight saving), so "today" here is
//! the Beijing calendar day, whatever the time zone of the edge location.

use crate::error::TooSoonReason;
use serde::{Deserialize, Serialize};

const BEIJING_OFFSET_SECS: u64 = 8 * 3600;
const DAY_SECS: u64 = 86_400;

/// Days since 1970-01-01 in Beijing time.
pub fn beijing_day(now: u64) -> u64 {
    (now + BEIJING_OFFSET_SECS) / DAY_SECS
}

/// The unix time of the next midnight in Beijing.
pub fn next_beijing_midnight(now: u64) -> u64 {
    (beijing_day(now) + 1) * DAY_SECS - BEIJING_OFFSET_SECS
}

/// WeChat's rules for `force_refresh: true`: some time apart, and a few a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForceLimits {
    pub spacing_secs: u64,
    pub daily_limit: u64,
}

/// The forced refreshes an account has made, kept in its Durable Object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceLog {
    pub day: u64,
    pub count: u64,
    pub last_at: Option<u64>,
}

impl ForceLog {
    pub fn count_today(&self, now: u64) -> u64 {
        if self.day == beijing_day(now) {
            self.count
        } else {
            0
        }
    }

    pub fn record(&mut self, now: u64) {
        let today = beijing_day(now);
        if self.day != today {
            *self = Self {
                day: today,
                count: 0,
                last_at: self.last_at,
            };
        }
        self.count += 1;
        self.last_at = Some(now);
    }

    /// Ok if a forced refresh may be sent now; otherwise how long to wait, and why.
    pub fn check(&self, now: u64, limits: ForceLimits) -> Result<(), (u64, TooSoonReason)> {
        if self.count_today(now) >= limits.daily_limit {
            let wait = next_beijing_midnight(now) - now;
            return Err((wait, TooSoonReason::ForceDailyLimit));
        }
        match self.last_at {
            Some(last) if now < last + limits.spacing_secs => Err((
                last + limits.spacing_secs - now,
                TooSoonReason::ForceSpacing,
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-24T15:59:59Z is 23:59:59 in Beijing; one second later is the next Beijing day.
    const BEFORE_MIDNIGHT: u64 = 1_795_535_999;
    const LIMITS: ForceLimits = ForceLimits {
        spacing_secs: 30,
        daily_limit: 20,
    };

    #[test]
    fn the_quota_day_turns_at_beijing_midnight() {
        assert_eq!(
            beijing_day(BEFORE_MIDNIGHT) + 1,
            beijing_day(BEFORE_MIDNIGHT + 1)
        );
        assert_eq!(next_beijing_midnight(BEFORE_MIDNIGHT), BEFORE_MIDNIGHT + 1);
        assert_eq!(
            next_beijing_midnight(BEFORE_MIDNIGHT + 1),
            BEFORE_MIDNIGHT + 1 + DAY_SECS
        );
        // 16:00 UTC is midnight in Beijing: the UTC date has not changed, the quota day has.
        assert_eq!((BEFORE_MIDNIGHT + 1) % DAY_SECS, 16 * 3600);
    }

    #[test]
    fn forced_refreshes_are_spaced() {
        let mut log = ForceLog::default();
        assert_eq!(log.check(BEFORE_MIDNIGHT - 100, LIMITS), Ok(()));
        log.record(BEFORE_MIDNIGHT - 100);
        assert_eq!(
            log.check(BEFORE_MIDNIGHT - 90, LIMITS),
            Err((20, TooSoonReason::ForceSpacing))
        );
        assert_eq!(log.check(BEFORE_MIDNIGHT - 70, LIMITS), Ok(()));
    }

    #[test]
    fn the_daily_limit_resets_at_beijing_midnight() {
        let mut log = ForceLog::default();
        let start = BEFORE_MIDNIGHT - 20 * 40;
        for n in 0..20 {
            let at = start + n * 40;
            assert_eq!(log.check(at, LIMITS), Ok(()), "refresh {n}");
            log.record(at);
        }
        assert_eq!(log.count_today(BEFORE_MIDNIGHT), 20);
        assert_eq!(
            log.check(BEFORE_MIDNIGHT, LIMITS),
            Err((1, TooSoonReason::ForceDailyLimit))
        );
        assert_eq!(log.count_today(BEFORE_MIDNIGHT + 1), 0);
        assert_eq!(log.check(BEFORE_MIDNIGHT + 1, LIMITS), Ok(()));
        log.record(BEFORE_MIDNIGHT + 1);
        assert_eq!(log.count_today(BEFORE_MIDNIGHT + 1), 1);
    }

    #[test]
    fn a_zero_limit_refuses_every_forced_refresh() {
        let limits = ForceLimits {
            spacing_secs: 0,
            daily_limit: 0,
        };
        assert!(ForceLog::default().check(BEFORE_MIDNIGHT, limits).is_err());
    }
}
