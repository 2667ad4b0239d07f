use super::*;
use crate::policy::token::TokenRecord;

/// `decide` for a classic (non-stable) account.
fn decide(
    trigger: &Trigger,
    record: Option<&TokenRecord>,
    last_attempt: Option<&AttemptRecord>,
    in_flight: bool,
    now: u64,
    policy: RefreshPolicy,
) -> Decision {
    let observed = Observed {
        record,
        last_attempt,
        in_flight,
        forced: None,
        paused_until: None,
        automatic_blocked: false,
        explicit: None,
    };
    super::decide(trigger, &observed, now, policy)
}

const REFRESH: Decision = Decision::Refresh { force: false };

fn too_soon(retry_after_secs: u64) -> Decision {
    Decision::TooSoon {
        retry_after_secs,
        reason: TooSoonReason::MinInterval,
    }
}

const POLICY: RefreshPolicy = RefreshPolicy {
    margin_secs: 900,
    min_interval_secs: 30,
};
const T0: u64 = 1_700_000_000;
const CFG: &str = "cfg";

fn token(name: &str, expires_at: u64) -> TokenRecord {
    TokenRecord {
        access_token: name.into(),
        expires_at,
        refreshed_at: expires_at - 7200,
        issued_for: CFG.into(),
        hold_until: None,
        previous: None,
        expiry_before_cap: None,
    }
}

fn ok_at(at: u64) -> AttemptRecord {
    AttemptRecord::after(None, at, None)
}

fn failed_at(at: u64) -> AttemptRecord {
    AttemptRecord::after(None, at, Some(busy()))
}

fn busy() -> UpstreamFailure {
    UpstreamFailure::WeChat {
        errcode: -1,
        errmsg: "busy".into(),
    }
}

fn passive(stale: &str) -> Trigger {
    Trigger::Passive {
        stale_token: Some(stale.into()),
    }
}

#[test]
fn a_passive_refresh_that_got_its_own_stale_token_back_decides_again() {
    assert!(passive("A").decide_again("A", false));
    assert!(
        !passive("A").decide_again("A", true),
        "a forced call is an answer"
    );
    assert!(!passive("A").decide_again("B", false));
    let rejected = Trigger::Rejected {
        stale_token: "A".into(),
    };
    assert!(rejected.decide_again("A", false));
    assert!(!Trigger::Read.decide_again("A", false));
    assert!(!Trigger::Passive { stale_token: None }.decide_again("A", false));
}

#[test]
fn first_read_fetches() {
    assert_eq!(
        decide(&Trigger::Read, None, None, false, T0, POLICY),
        REFRESH
    );
}

#[test]
fn fresh_token_is_served() {
    let record = token("A", T0 + 7000);
    let last = ok_at(T0 - 200);
    assert_eq!(
        decide(
            &Trigger::Read,
            Some(&record),
            Some(&last),
            false,
            T0,
            POLICY
        ),
        Decision::Serve
    );
}

#[test]
fn token_in_margin_is_served_and_refreshed_once() {
    let record = token("A", T0 + 600);
    let last = ok_at(T0 - 6600);
    let decide_read = |in_flight| {
        decide(
            &Trigger::Read,
            Some(&record),
            Some(&last),
            in_flight,
            T0,
            POLICY,
        )
    };
    assert_eq!(decide_read(false), Decision::ServeAndRefresh);
    assert_eq!(
        decide_read(true),
        Decision::Serve,
        "a refresh is already under way"
    );
}

#[test]
fn token_in_margin_is_not_refreshed_inside_the_interval() {
    // WeChat issued a token shorter than the margin: refresh at most once per interval.
    let record = token("A", T0 + 600);
    let last = ok_at(T0 - 10);
    assert_eq!(
        decide(
            &Trigger::Read,
            Some(&record),
            Some(&last),
            false,
            T0,
            POLICY
        ),
        Decision::Serve
    );
    assert_eq!(
        decide(
            &Trigger::Cron,
            Some(&record),
            Some(&last),
            false,
            T0,
            POLICY
        ),
        Decision::Skip
    );
}

#[test]
fn expired_token_is_never_served() {
    let record = token("A", T0);
    let last = ok_at(T0 - 7200);
    assert_eq!(
        decide(
            &Trigger::Read,
            Some(&record),
            Some(&last),
            false,
            T0,
            POLICY
        ),
        REFRESH
    );
}

#[test]
fn expired_short_lived_token_is_refetched_even_inside_the_interval() {
    let record = token("A", T0);
    let last = ok_at(T0 - 5);
    assert_eq!(
        decide(
            &Trigger::Read,
            Some(&record),
            Some(&last),
            false,
            T0,
            POLICY
        ),
        REFRESH
    );
}

#[test]
fn no_token_and_a_recent_failure_is_unavailable() {
    let last = failed_at(T0 - 10);
    assert_eq!(
        decide(&Trigger::Read, None, Some(&last), false, T0, POLICY),
        Decision::Unavailable {
            retry_after_secs: 20
        }
    );
    let later = T0 + 20;
    assert_eq!(
        decide(&Trigger::Read, None, Some(&last), false, later, POLICY),
        REFRESH
    );
}

#[test]
fn readers_without_a_token_join_the_call_under_way() {
    let last = failed_at(T0 - 1);
    assert_eq!(
        decide(&Trigger::Read, None, Some(&last), true, T0, POLICY),
        REFRESH
    );
}

#[test]
fn cron_refreshes_only_inside_the_margin() {
    let last = ok_at(T0 - 100);
    let fresh = token("A", T0 + 7100);
    let due = token("A", T0 + 899);
    assert_eq!(
        decide(&Trigger::Cron, Some(&fresh), Some(&last), false, T0, POLICY),
        Decision::Skip
    );
    assert_eq!(
        decide(&Trigger::Cron, Some(&due), Some(&last), false, T0, POLICY),
        REFRESH
    );
    assert_eq!(
        decide(&Trigger::Cron, None, None, false, T0, POLICY),
        REFRESH
    );
    assert_eq!(
        decide(
            &Trigger::Background,
            Some(&due),
            Some(&last),
            true,
            T0,
            POLICY
        ),
        Decision::Skip
    );
}

#[test]
fn cron_backs_off_after_a_failure() {
    let due = token("A", T0 + 300);
    let last = failed_at(T0 - 5);
    assert_eq!(
        decide(&Trigger::Cron, Some(&due), Some(&last), false, T0, POLICY),
        Decision::Skip
    );
    assert_eq!(
        decide(
            &Trigger::Cron,
            Some(&due),
            Some(&last),
            false,
            T0 + 25,
            POLICY
        ),
        REFRESH
    );
}

#[test]
fn passive_refresh_with_the_current_token_refreshes() {
    let record = token("A", T0 + 7000);
    let last = ok_at(T0 - 200);
    assert_eq!(
        decide(&passive("A"), Some(&record), Some(&last), false, T0, POLICY),
        REFRESH
    );
}

#[test]
fn passive_refresh_with_an_old_token_serves_the_current_one() {
    let record = token("B", T0 + 7000);
    let last = ok_at(T0 - 1);
    assert_eq!(
        decide(&passive("A"), Some(&record), Some(&last), false, T0, POLICY),
        Decision::Serve
    );
    assert_eq!(
        decide(&passive("A"), Some(&record), Some(&last), true, T0, POLICY),
        Decision::Serve
    );
}

#[test]
fn passive_refreshes_join_the_call_under_way() {
    let record = token("A", T0 + 7000);
    let last = ok_at(T0 - 1);
    assert_eq!(
        decide(&passive("A"), Some(&record), Some(&last), true, T0, POLICY),
        REFRESH
    );
}

#[test]
fn forced_refresh_respects_the_interval() {
    let record = token("A", T0 + 7000);
    let last = ok_at(T0 - 10);
    let forced = Trigger::Passive { stale_token: None };
    assert_eq!(
        decide(&forced, Some(&record), Some(&last), false, T0, POLICY),
        too_soon(20)
    );
    assert_eq!(
        decide(&passive("A"), Some(&record), Some(&last), false, T0, POLICY),
        too_soon(20)
    );
    assert_eq!(
        decide(&forced, Some(&record), Some(&last), false, T0 + 20, POLICY),
        REFRESH
    );
    assert_eq!(
        decide(&forced, None, None, false, T0, POLICY),
        REFRESH,
        "first fetch"
    );
}

#[test]
fn forced_refresh_without_a_token_after_a_failure_is_unavailable() {
    let last = failed_at(T0 - 10);
    let forced = Trigger::Passive { stale_token: None };
    assert_eq!(
        decide(&forced, None, Some(&last), false, T0, POLICY),
        Decision::Unavailable {
            retry_after_secs: 20
        }
    );
}

#[test]
fn zero_interval_never_makes_a_passive_refresh_wait() {
    let policy = RefreshPolicy {
        margin_secs: 900,
        min_interval_secs: 0,
    };
    let record = token("A", T0 + 7000);
    let last = failed_at(T0);
    assert_eq!(
        decide(&passive("A"), Some(&record), Some(&last), false, T0, policy),
        REFRESH
    );
}

#[test]
fn an_explicit_refresh_naming_the_current_token_refreshes() {
    let record = token("A", T0 + 7000);
    let last = ok_at(T0 - 200);
    assert_eq!(
        decide(&passive("A"), Some(&record), Some(&last), false, T0, POLICY),
        REFRESH
    );
    let recent = ok_at(T0 - 10);
    assert_eq!(
        decide(
            &passive("A"),
            Some(&record),
            Some(&recent),
            false,
            T0,
            POLICY
        ),
        too_soon(20)
    );
    assert_eq!(
        super::decide(
            &passive("A"),
            &stable(&record, &last, &ForceLog::default()),
            T0,
            POLICY
        ),
        Decision::Refresh { force: true }
    );
}

fn budget(used_today: u64) -> Option<ExplicitBudget> {
    Some(ExplicitBudget {
        used_today,
        daily_limit: 3,
        resets_at: T0 + 5000,
        last_started_at: None,
    })
}

#[test]
fn explicit_refreshes_have_a_daily_budget_that_automatic_ones_do_not_share() {
    let current = token("A", T0 + 7000);
    let due = token("A", T0 + 600);
    let last = ok_at(T0 - 200);
    fn with<'a>(
        record: &'a TokenRecord,
        last: &'a AttemptRecord,
        used: u64,
    ) -> (Observed<'a, TokenRecord>, ()) {
        let mut observed = observed(Some(record), Some(last));
        observed.explicit = budget(used);
        (observed, ())
    }
    let unnamed = Trigger::Passive { stale_token: None };
    for trigger in [passive("A"), unnamed.clone()] {
        let (under, _) = with(&current, &last, 2);
        assert_eq!(super::decide(&trigger, &under, T0, POLICY), REFRESH);
        let (over, _) = with(&current, &last, 3);
        assert_eq!(
            super::decide(&trigger, &over, T0, POLICY),
            Decision::TooSoon {
                retry_after_secs: 5000,
                reason: TooSoonReason::ExplicitDailyLimit
            }
        );
    }
    // Over budget: an old stale token is still answered, joining a call is free, and
    // automatic refreshes go on.
    let (over, _) = with(&current, &last, 3);
    assert_eq!(
        super::decide(&passive("OLD"), &over, T0, POLICY),
        Decision::Serve
    );
    let (mut joining, _) = with(&current, &last, 3);
    joining.in_flight = true;
    assert_eq!(super::decide(&unnamed, &joining, T0, POLICY), REFRESH);
    let (due_over, _) = with(&due, &last, 3);
    assert_eq!(
        super::decide(&Trigger::Cron, &due_over, T0, POLICY),
        REFRESH
    );
    assert_eq!(
        super::decide(&Trigger::Read, &due_over, T0, POLICY),
        Decision::ServeAndRefresh
    );
}

fn stable<'a>(
    record: &'a TokenRecord,
    last: &'a AttemptRecord,
    log: &'a ForceLog,
) -> Observed<'a, TokenRecord> {
    let limits = ForceLimits {
        spacing_secs: 30,
        daily_limit: 20,
    };
    Observed {
        record: Some(record),
        last_attempt: Some(last),
        in_flight: false,
        forced: Some((log, limits)),
        paused_until: None,
        automatic_blocked: false,
        explicit: None,
    }
}

#[test]
fn stable_accounts_force_only_for_the_current_token_and_within_limits() {
    let record = token("A", T0 + 7000);
    let last = ok_at(T0 - 200);
    let mut log = ForceLog::default();
    let forced = Decision::Refresh { force: true };
    assert_eq!(
        super::decide(&passive("A"), &stable(&record, &last, &log), T0, POLICY),
        forced
    );
    // Forcing without naming the rejected token is a normal fetch.
    let unnamed = Trigger::Passive { stale_token: None };
    assert_eq!(
        super::decide(&unnamed, &stable(&record, &last, &log), T0, POLICY),
        REFRESH
    );
    log.record(T0 - 10);
    assert_eq!(
        super::decide(&passive("A"), &stable(&record, &last, &log), T0, POLICY),
        Decision::TooSoon {
            retry_after_secs: 20,
            reason: TooSoonReason::ForceSpacing
        }
    );
}

fn observed<'a>(
    record: Option<&'a TokenRecord>,
    last: Option<&'a AttemptRecord>,
) -> Observed<'a, TokenRecord> {
    Observed {
        record,
        last_attempt: last,
        in_flight: false,
        forced: None,
        paused_until: None,
        automatic_blocked: false,
        explicit: None,
    }
}

#[test]
fn automatic_refreshes_back_off_after_failures_in_a_row() {
    let due = token("A", T0 + 600);
    let mut last = failed_at(T0 - 40);
    // One failure: the interval (30 s) has passed.
    assert_eq!(
        super::decide(
            &Trigger::Cron,
            &observed(Some(&due), Some(&last)),
            T0,
            POLICY
        ),
        REFRESH
    );
    // Three in a row: 30 * 2 * 2 = 120 s.
    last = AttemptRecord::after(
        Some(&AttemptRecord::after(Some(&last), T0 - 40, Some(busy()))),
        T0 - 40,
        Some(busy()),
    );
    assert_eq!(last.failures_in_a_row, 3);
    assert_eq!(
        super::decide(
            &Trigger::Cron,
            &observed(Some(&due), Some(&last)),
            T0,
            POLICY
        ),
        Decision::Skip
    );
    assert_eq!(
        super::decide(
            &Trigger::Read,
            &observed(Some(&due), Some(&last)),
            T0,
            POLICY
        ),
        Decision::Serve
    );
    assert_eq!(
        super::decide(
            &Trigger::Cron,
            &observed(Some(&due), Some(&last)),
            T0 + 80,
            POLICY
        ),
        REFRESH
    );
    // An explicit request still only waits for the interval.
    assert_eq!(
        super::decide(
            &passive("A"),
            &observed(Some(&due), Some(&last)),
            T0,
            POLICY
        ),
        REFRESH
    );
    // A success resets the count.
    assert_eq!(
        AttemptRecord::after(Some(&last), T0, None).failures_in_a_row,
        0
    );
}

#[test]
fn a_quota_pause_stops_automatic_and_forced_refreshes_but_serves_the_token() {
    let due = token("A", T0 + 600);
    let last = ok_at(T0 - 3600);
    let mut paused = observed(Some(&due), Some(&last));
    paused.paused_until = Some(T0 + 500);
    assert_eq!(
        super::decide(&Trigger::Cron, &paused, T0, POLICY),
        Decision::Skip
    );
    assert_eq!(
        super::decide(&Trigger::Read, &paused, T0, POLICY),
        Decision::Serve
    );
    assert_eq!(
        super::decide(&passive("A"), &paused, T0, POLICY),
        Decision::TooSoon {
            retry_after_secs: 500,
            reason: TooSoonReason::QuotaExhausted
        }
    );
    // Without a valid token: unavailable until the pause ends, then fetched.
    let mut empty = observed(None, Some(&last));
    empty.paused_until = Some(T0 + 500);
    assert_eq!(
        super::decide(&Trigger::Read, &empty, T0, POLICY),
        Decision::Unavailable {
            retry_after_secs: 500
        }
    );
    assert_eq!(
        super::decide(&Trigger::Read, &empty, T0 + 500, POLICY),
        REFRESH
    );
    assert_eq!(
        super::decide(&Trigger::Cron, &paused, T0 + 500, POLICY),
        REFRESH
    );
}

#[test]
fn credential_errors_stop_automatic_retries_only() {
    let due = token("A", T0 + 600);
    let last = ok_at(T0 - 3600);
    let mut blocked = observed(Some(&due), Some(&last));
    blocked.automatic_blocked = true;
    assert_eq!(
        super::decide(&Trigger::Cron, &blocked, T0, POLICY),
        Decision::Skip
    );
    assert_eq!(
        super::decide(&Trigger::Read, &blocked, T0, POLICY),
        Decision::Serve
    );
    assert_eq!(super::decide(&passive("A"), &blocked, T0, POLICY), REFRESH);
}

fn healed(stale: &str) -> Trigger {
    Trigger::Healed {
        stale_token: stale.into(),
    }
}

#[test]
fn a_gateway_heal_has_its_own_budget_and_the_interval() {
    let current = token("A", T0 + 7000);
    let recent = ok_at(T0 - 10);
    let earlier = ok_at(T0 - 200);
    let mut observed = observed(Some(&current), Some(&earlier));
    observed.explicit = budget(2);
    assert_eq!(super::decide(&healed("A"), &observed, T0, POLICY), REFRESH);
    // A rejection of an older token is answered with the current one, without a call.
    assert_eq!(
        super::decide(&healed("OLD"), &observed, T0, POLICY),
        Decision::Serve
    );
    observed.explicit = budget(3);
    assert_eq!(
        super::decide(&healed("A"), &observed, T0, POLICY),
        Decision::TooSoon {
            retry_after_secs: 5000,
            reason: TooSoonReason::HealDailyLimit
        }
    );
    // Heals are spaced from each other, not from other calls: a token rejected moments
    // after a refresh is healed at once, a second heal waits for the interval.
    observed.explicit = budget(0);
    observed.last_attempt = Some(&recent);
    assert_eq!(super::decide(&healed("A"), &observed, T0, POLICY), REFRESH);
    observed.explicit = budget(1).map(|b| ExplicitBudget {
        last_started_at: Some(T0 - 10),
        ..b
    });
    assert_eq!(
        super::decide(&healed("A"), &observed, T0, POLICY),
        too_soon(20)
    );
    // After a failed call, the interval counts from it, as for any explicit refresh.
    let failed = failed_at(T0 - 10);
    observed.explicit = budget(0);
    observed.last_attempt = Some(&failed);
    assert_eq!(
        super::decide(&healed("A"), &observed, T0, POLICY),
        too_soon(20)
    );
}

#[test]
fn a_gateway_heal_on_stable_token_forces_only_within_wechats_limits() {
    let record = token("A", T0 + 7000);
    let last = ok_at(T0 - 200);
    let mut log = ForceLog::default();
    assert_eq!(
        super::decide(&healed("A"), &stable(&record, &last, &log), T0, POLICY),
        Decision::Refresh { force: true }
    );
    // Past WeChat's limits on forced calls, a normal one: never a refusal that a caller
    // could provoke, never a forced call WeChat would refuse.
    log.record(T0 - 10);
    assert_eq!(
        super::decide(&healed("A"), &stable(&record, &last, &log), T0, POLICY),
        REFRESH
    );
    assert_eq!(
        super::decide(&healed("OLD"), &stable(&record, &last, &log), T0, POLICY),
        Decision::Serve
    );
}
