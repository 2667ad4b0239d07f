use super::*;

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn component(extra: &str) -> String {
    format!(
        r#"{{"appid":"wxcomponent01","secret":"s3cret-value","token":"push-token",
             "encoding_aes_key":"{KEY}"{extra}}}"#
    )
}

fn problem(value: &str) -> String {
    match parse(Some(value)) {
        Err(AppError::Config { variable, problem }) => {
            assert_eq!(variable, VARIABLE);
            problem
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_component_is_an_account_of_its_own_kind() {
    assert_eq!(parse(None), Ok(None));
    let parsed = parse(Some(&component(""))).unwrap().unwrap();
    assert_eq!(parsed.account.id, "wxcomponent01");
    assert_eq!(parsed.account.kind, AccountKind::Component);
    assert_eq!(parsed.account.api, TokenApi::Component);
    assert_eq!(parsed.aes_keys.len(), 1);
    let both = component(&format!(r#","previous_encoding_aes_key":"{}""#, &KEY[..42]));
    assert!(problem(&both).contains("previous_encoding_aes_key"));
    let both = component(&format!(r#","previous_encoding_aes_key":"{KEY}""#));
    assert_eq!(parse(Some(&both)).unwrap().unwrap().aes_keys.len(), 2);
    assert!(
        !format!("{parsed:?}").contains("s3cret") && !format!("{parsed:?}").contains("push-token")
    );
}

#[test]
fn errors_name_the_field_never_the_value() {
    assert!(problem("[1]").contains("JSON object"));
    let no_token = component("").replace(r#""token":"push-token","#, "");
    assert!(problem(&no_token).contains("\"token\""));
    let bad_key = component("").replace(KEY, "short-key-value");
    let text = problem(&bad_key);
    assert!(text.contains("encoding_aes_key") && !text.contains("short-key-value"));
    let extra = component(r#","colour":"red""#);
    assert!(problem(&extra).contains("colour"));
    let bad_appid = component("").replace("wxcomponent01", "wx component");
    assert!(problem(&bad_appid).contains("appid"));
}

#[test]
fn encoding_aes_keys_are_43_characters_of_base64() {
    assert!(encoding_aes_key(KEY).is_some(), "trailing bits allowed");
    assert!(encoding_aes_key(&KEY[1..]).is_none());
    assert!(encoding_aes_key(&format!("{}!", &KEY[1..])).is_none());
}

#[test]
fn a_ticket_serves_twelve_hours_and_pushes_are_asked_for_hourly() {
    let mut state = PlatformState::default();
    assert_eq!(state.usable_ticket(1_000), None);
    assert!(state.push_request_due(1_000));
    state.verify_ticket = Some(VerifyTicket {
        ticket: "t".into(),
        received_at: 1_000,
        created_at: 990,
    });
    assert_eq!(state.usable_ticket(1_000 + 43_199), Some("t"));
    assert_eq!(state.usable_ticket(1_000 + 43_200), None);
    state.push_requested_at = Some(5_000);
    assert!(!state.push_request_due(5_000 + 3_599));
    assert!(state.push_request_due(5_000 + 3_600));
    assert!(!format!("{state:?}").contains("\"t\""));
}

#[test]
fn authorization_pushes_act_in_wechats_order() {
    use AuthorizationPush::*;
    let mut state = PlatformState::default();
    assert!(state.admits(Authorized, 100) && state.admits(Withdrawn, 100));
    state.authorization_pushed_at = Some(100);
    // A withdrawal older than the authorization came late; one of its second did not.
    assert!(!state.admits(Withdrawn, 99));
    assert!(state.admits(Withdrawn, 100) && state.admits(Withdrawn, 101));
    // An older authorization is stale.
    assert!(!state.admits(Authorized, 90));
    assert!(state.admits(Authorized, 100) && state.admits(Authorized, 101));
    let erased = PlatformState {
        refresh_token: Some("R".into()),
        ..state.clone()
    }
    .withdrawn(150);
    assert_eq!(erased.refresh_token, None);
    assert_eq!(erased.authorization_pushed_at, Some(100));
    // After a withdrawal, only an authorization of that second or later.
    assert!(!erased.admits(Authorized, 149));
    assert!(erased.admits(Authorized, 150) && erased.admits(Authorized, 151));
    assert!(!erased.admits(Withdrawn, 99));
}
