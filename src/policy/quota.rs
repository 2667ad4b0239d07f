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

/// Upstream calls of one kind made today (Beijing day), kept in the Durable Object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyCount {
    pub day: u64,
    pub count: u64,
    /// Today's calls made before the operator reset the account (after WeChat's
    /// `clear_quota`): they no longer count against the quota, but still show in `/status`.
    #[serde(default)]
    pub before_reset: u64,
}

impl DailyCount {
    pub fn today(&self, now: u64) -> u64 {
        if self.day == beijing_day(now) {
            self.count
        } else {
            0
        }
    }

    pub fn add(&mut self, now: u64, calls: u64) {
        let today = beijing_day(now);
        if self.day != today {
            *self = Self {
                day: today,
                ..Self::default()
            };
        }
        self.count += calls;
    }

    /// Today's calls since the last reset: what counts against the quota.
    pub fn since_reset(&self, now: u64) -> u64 {
        match self.day == beijing_day(now) {
            true => self.count.saturating_sub(self.before_reset),
            false => 0,
        }
    }

    /// WeChat's quota was cleared: today's calls so far no longer count against it.
    pub fn reset(&mut self, now: u64) {
        self.add(now, 0);
        self.before_reset = self.count;
    }
}

/// Until when automatic refreshes are paused, if they are: after WeChat said the daily quota is
/// used up (45009), or after this server counted `daily_quota` calls today (since the last
/// reset), until the quota resets at midnight Beijing time.
pub fn quota_pause(
    quota_error_at: Option<u64>,
    calls_today: u64,
    daily_quota: u64,
    now: u64,
) -> Option<u64> {
    let exhausted_today = quota_error_at.is_some_and(|at| beijing_day(at) == beijing_day(now));
    (exhausted_today || calls_today >= daily_quota).then(|| next_beijing_midnight(now))
}

/// How many times a calendar month WeChat clears an account's quotas (`clear_quota` and its
/// appsecret variant share them).
pub const CLEARS_PER_MONTH: u64 = 10;

/// The calendar month in Beijing time, as months since year 0 (`2026-12` is 2026 * 12 + 11).
pub fn beijing_month(now: u64) -> u64 {
    use chrono::Datelike;
    let date = i64::try_from(now + BEIJING_OFFSET_SECS)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|at| at.date_naive())
        .unwrap_or_default();
    date.year().max(0) as u64 * 12 + u64::from(date.month0())
}

/// The unix time the next Beijing month starts.
pub fn next_beijing_month(now: u64) -> u64 {
    let next = beijing_month(now) + 1;
    let (year, month) = ((next / 12) as i32, (next % 12) as u32 + 1);
    chrono::NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc().timestamp() as u64 - BEIJING_OFFSET_SECS)
        .unwrap_or(u64::MAX)
}

/// The quota clears an account made this month, kept in its Durable Object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthlyClears {
    pub month: u64,
    pub count: u64,
    /// WeChat said this month's clears are used (48006): no clear it gives back undoes that.
    #[serde(default)]
    pub refused: bool,
}

impl MonthlyClears {
    pub fn left(&self, now: u64) -> u64 {
        match self.month == beijing_month(now) {
            true => CLEARS_PER_MONTH.saturating_sub(self.count),
            false => CLEARS_PER_MONTH,
        }
    }

    /// Takes one of this month's clears before WeChat is asked (so that two requests cannot
    /// both take the last one), or says how long until the month turns.
    pub fn take(&mut self, now: u64) -> Result<(), u64> {
        if self.left(now) == 0 {
            return Err(next_beijing_month(now) - now);
        }
        if self.month != beijing_month(now) {
            *self = Self {
                month: beijing_month(now),
                ..Self::default()
            };
        }
        self.count += 1;
        Ok(())
    }

    /// WeChat did not clear (the clear taken by [`take`](Self::take) is not spent).
    pub fn give_back(&mut self, now: u64) {
        if self.month == beijing_month(now) && !self.refused {
            self.count = self.count.saturating_sub(1);
        }
    }

    /// WeChat said the month's clears are used (48006: some were made elsewhere, in the
    /// platform's console).
    pub fn used_up(&mut self, now: u64) {
        *self = Self {
            month: beijing_month(now),
            count: CLEARS_PER_MONTH,
            refused: true,
        };
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

    #[test]
    fn daily_counts_reset_at_beijing_midnight() {
        let mut count = DailyCount::default();
        count.add(BEFORE_MIDNIGHT - 5, 3);
        count.add(BEFORE_MIDNIGHT, 1);
        assert_eq!(count.today(BEFORE_MIDNIGHT), 4);
        assert_eq!(count.today(BEFORE_MIDNIGHT + 1), 0);
        count.add(BEFORE_MIDNIGHT + 1, 2);
        assert_eq!(count.today(BEFORE_MIDNIGHT + 1), 2);
    }

    #[test]
    fn a_reset_lifts_the_count_against_the_quota_not_the_count_shown() {
        let mut count = DailyCount::default();
        count.add(BEFORE_MIDNIGHT - 10, 2000);
        count.reset(BEFORE_MIDNIGHT - 5);
        assert_eq!(count.today(BEFORE_MIDNIGHT - 5), 2000);
        assert_eq!(count.since_reset(BEFORE_MIDNIGHT - 5), 0);
        count.add(BEFORE_MIDNIGHT, 3);
        assert_eq!(count.since_reset(BEFORE_MIDNIGHT), 3);
        // The next day starts from nothing.
        count.add(BEFORE_MIDNIGHT + 1, 1);
        assert_eq!(count.since_reset(BEFORE_MIDNIGHT + 1), 1);
        assert_eq!(count.before_reset, 0);
    }

    #[test]
    fn a_quota_pause_lasts_until_the_quota_day_turns() {
        let midnight = BEFORE_MIDNIGHT + 1;
        // WeChat said 45009 an hour before midnight: paused until midnight, then not.
        let error_at = Some(BEFORE_MIDNIGHT - 3600);
        assert_eq!(
            quota_pause(error_at, 10, 2000, BEFORE_MIDNIGHT),
            Some(midnight)
        );
        assert_eq!(quota_pause(error_at, 0, 2000, midnight), None);
        // Our own count reaching the quota pauses too, until the count resets.
        assert_eq!(
            quota_pause(None, 2000, 2000, BEFORE_MIDNIGHT),
            Some(midnight)
        );
        assert_eq!(quota_pause(None, 1999, 2000, BEFORE_MIDNIGHT), None);
    }

    #[test]
    fn ten_clears_a_beijing_month_and_the_eleventh_waits_for_the_next() {
        // 2026-11-30T16:00:00Z is 2026-12-01 00:00 in Beijing.
        let december = 1_796_054_400;
        assert_eq!(beijing_month(december), 2026 * 12 + 11);
        assert_eq!(beijing_month(december - 1), 2026 * 12 + 10);
        assert_eq!(next_beijing_month(december - 1), december);
        // 2027-01-01 00:00 Beijing: December has 31 days.
        assert_eq!(next_beijing_month(december), december + 31 * DAY_SECS);
        let mut clears = MonthlyClears::default();
        let late_november = december - 3600;
        for n in 0..CLEARS_PER_MONTH {
            assert_eq!(clears.take(late_november + n), Ok(()), "clear {n}");
        }
        assert_eq!(clears.left(late_november + 20), 0);
        assert_eq!(clears.take(late_november + 20), Err(3600 - 20));
        clears.give_back(late_november + 20);
        assert_eq!(clears.left(late_november + 20), 1);
        clears.used_up(late_november + 30);
        assert_eq!(clears.take(late_november + 40), Err(3600 - 40));
        // Another clear under way that fails for another reason does not undo WeChat's word.
        clears.give_back(late_november + 50);
        assert_eq!(clears.left(late_november + 50), 0);
        // The month turns at midnight Beijing time.
        assert_eq!(clears.left(december), CLEARS_PER_MONTH);
        assert_eq!(clears.take(december), Ok(()));
        assert_eq!(clears.left(december), CLEARS_PER_MONTH - 1);
    }
}
