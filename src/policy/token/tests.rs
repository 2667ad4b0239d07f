use super::*;

const T0: u64 = 1_700_000_000;
const CFG: &str = "cfg";

#[test]
fn freshness() {
    let record = TokenRecord::issued("A".into(), 7200, T0, CFG);
    assert_eq!(record.expires_at, T0 + 7200);
    assert!(record.is_valid(T0 + 7199));
    assert!(
        !record.is_valid(T0 + 7200),
        "never valid at or past expires_at"
    );
    assert_eq!(record.remaining_secs(T0 + 7300), 0);
    assert!(!record.is_due(T0 + 7200 - 901, 900));
    assert!(record.is_due(T0 + 7200 - 900, 900));
    let answer = record.answer("main", "wx1", T0 + 200);
    assert_eq!(answer["account"], "main");
    assert_eq!(answer["expires_in"], 7000);
    assert_eq!(answer["expires_at"], T0 + 7200);
    assert_eq!(answer["appid"], "wx1");
}

#[test]
fn a_replaced_token_is_accepted_for_five_minutes() {
    let old = TokenRecord::issued("OLD".into(), 7200, T0 - 7000, CFG);
    let new = TokenRecord::issued("NEW".into(), 7200, T0, CFG).replacing(
        Some(&old),
        Issuance::Rotating,
        T0,
    );
    assert!(new.accepts("NEW", T0 + 10));
    assert!(
        new.accepts("OLD", T0 + 199),
        "until the old token's own expiry"
    );
    assert!(!new.accepts("OLD", T0 + 200));
    assert!(!new.accepts("OTHER", T0));
    assert!(!new.accepts("NEW", T0 + 7200), "never once expired");

    let older = TokenRecord::issued("OLDER".into(), 7200, T0 - 1000, CFG);
    let newer = TokenRecord::issued("NEWER".into(), 7200, T0, CFG).replacing(
        Some(&older),
        Issuance::Rotating,
        T0,
    );
    assert!(newer.accepts("OLDER", T0 + 299));
    assert!(!newer.accepts("OLDER", T0 + 300));

    // stable_token handing out the same token again keeps the earlier replacement.
    let same = TokenRecord::issued("NEWER".into(), 7000, T0 + 200, CFG).replacing(
        Some(&newer),
        Issuance::StableNormal,
        T0 + 200,
    );
    assert_eq!(same.previous, newer.previous);
}

#[test]
fn an_already_expired_token_is_not_accepted_after_its_replacement() {
    let expired = TokenRecord::issued("OLD".into(), 7200, T0 - 7300, CFG);
    let new = TokenRecord::issued("NEW".into(), 7200, T0, CFG).replacing(
        Some(&expired),
        Issuance::Rotating,
        T0,
    );
    assert!(!new.accepts("OLD", T0));
}

#[test]
fn a_forced_stable_refresh_kills_the_previous_token_at_once() {
    let old = TokenRecord::issued("OLD".into(), 7200, T0 - 100, CFG);
    let new = TokenRecord::issued("NEW".into(), 7200, T0, CFG).replacing(
        Some(&old),
        Issuance::StableForced,
        T0,
    );
    assert!(!new.accepts("OLD", T0));
    assert_eq!(new.previous.as_ref().map(|p| p.accepted_until), Some(T0));
    assert!(new.retired("OLD", T0));
    assert!(!new.retired("NEW", T0) && !new.retired("OTHER", T0));
}

#[test]
fn a_replaced_token_is_retired_only_once_its_grace_is_over() {
    let old = TokenRecord::issued("OLD".into(), 7200, T0 - 100, CFG);
    let new = TokenRecord::issued("NEW".into(), 7200, T0, CFG).replacing(
        Some(&old),
        Issuance::Rotating,
        T0,
    );
    assert!(!new.retired("OLD", T0 + 299));
    assert!(new.retired("OLD", T0 + 300));
}

#[test]
fn the_same_stable_token_is_held_until_wechat_rotates_it() {
    let margin = 900;
    let first = TokenRecord::issued("S".into(), 7200, T0, CFG);
    // At T0+6400 it is due (800 s left); stable_token answers with the same token.
    let again = TokenRecord::issued("S".into(), 800, T0 + 6400, CFG).replacing(
        Some(&first),
        Issuance::StableNormal,
        T0 + 6400,
    );
    assert_eq!(
        again.hold_until,
        Some(T0 + 7200 - STABLE_ROTATES_WITHIN_SECS)
    );
    assert!(!again.is_due(T0 + 6401, margin));
    assert!(!again.is_due(T0 + 6899, margin));
    assert!(again.is_due(T0 + 6900, margin));
    // A new token is not held.
    let rotated = TokenRecord::issued("T".into(), 7200, T0 + 6900, CFG).replacing(
        Some(&again),
        Issuance::StableNormal,
        T0 + 6900,
    );
    assert_eq!(rotated.hold_until, None);
}

#[test]
fn a_lost_answer_caps_the_stored_token_within_wechats_grace() {
    let record = TokenRecord::issued("A".into(), 7200, T0, CFG);
    let capped = record
        .clone()
        .possibly_replaced(T0 + 100, Issuance::Rotating);
    assert_eq!(capped.expires_at, T0 + 100 + REPLACED_TOKEN_GRACE_SECS);
    assert!(capped.is_due(T0 + 100, 900), "refreshed at once");
    let short = TokenRecord::issued("A".into(), 200, T0, CFG);
    let short = short.possibly_replaced(T0 + 100, Issuance::Rotating);
    assert_eq!(short.expires_at, T0 + 200, "never extended");
    let forced = record
        .clone()
        .possibly_replaced(T0 + 100, Issuance::StableForced);
    assert!(
        !forced.is_valid(T0 + 100),
        "a lost forced call may have killed it"
    );
    let normal = record
        .clone()
        .possibly_replaced(T0 + 100, Issuance::StableNormal);
    assert_eq!(normal, record);
}

#[test]
fn the_same_token_handed_back_after_a_lost_answer_lives_until_its_own_expiry() {
    let first = TokenRecord::issued("W".into(), 7200, T0, CFG);
    let capped = first
        .clone()
        .possibly_replaced(T0 + 100, Issuance::Rotating)
        .possibly_replaced(T0 + 200, Issuance::Rotating);
    assert_eq!(capped.expires_at, T0 + 100 + REPLACED_TOKEN_GRACE_SECS);
    assert_eq!(
        capped.expiry_before_cap,
        Some(T0 + 7200),
        "the first cap keeps it"
    );
    // WeCom answers with the same token: the lost call issued nothing new.
    let again = TokenRecord::issued("W".into(), 7200, T0 + 500, CFG).replacing(
        Some(&capped),
        Issuance::Rotating,
        T0 + 500,
    );
    assert_eq!(
        again.expires_at,
        T0 + 7200,
        "WeChat's own expiry, never later"
    );
    assert_eq!(again.expiry_before_cap, None);
    assert!(
        !again.is_due(T0 + 600, 900),
        "not asked again before it dies"
    );
    // A new token after a cap is a new token like any other.
    let new = TokenRecord::issued("N".into(), 7200, T0 + 500, CFG).replacing(
        Some(&capped),
        Issuance::Rotating,
        T0 + 500,
    );
    assert_eq!(new.expires_at, T0 + 500 + 7200);
}

#[test]
fn a_record_of_another_configuration_is_not_a_predecessor() {
    let old = TokenRecord::issued("OLD".into(), 7200, T0 - 100, "other");
    let new = TokenRecord::issued("NEW".into(), 7200, T0, CFG).replacing(
        Some(&old),
        Issuance::Rotating,
        T0,
    );
    assert_eq!(new.previous, None);
}

#[test]
fn the_same_token_handed_back_never_lives_longer() {
    let margin = 900;
    let first = TokenRecord::issued("W".into(), 7200, T0, CFG);
    // Due at T0+6400; WeCom's gettoken answers with the same token and the full 7200 s.
    let again = TokenRecord::issued("W".into(), 7200, T0 + 6400, CFG).replacing(
        Some(&first),
        Issuance::Rotating,
        T0 + 6400,
    );
    assert_eq!(again.expires_at, T0 + 7200, "its life is not extended");
    assert_eq!(again.refreshed_at, T0);
    // Not asked again until it dies: before then WeCom only hands it back.
    assert_eq!(again.hold_until, Some(T0 + 7200));
    assert!(!again.is_due(T0 + 7199, margin));
    assert!(
        !again.is_valid(T0 + 7200),
        "never served past its first expiry"
    );
    // A forced stable call that got the same token back cannot make it live longer either.
    let forced = TokenRecord::issued("W".into(), 7200, T0 + 10, CFG).replacing(
        Some(&first),
        Issuance::StableForced,
        T0 + 10,
    );
    assert_eq!(forced.expires_at, T0 + 7200);
}
