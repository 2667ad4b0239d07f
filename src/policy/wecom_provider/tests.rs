use super::*;

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn suite(extra: &str) -> String {
    format!(
        r#"[{{"suite_id":"wwsuite01","suite_secret":"s3cret-value","token":"push-token",
              "encoding_aes_key":"{KEY}"{extra}}}]"#
    )
}

fn problem(result: Result<impl std::fmt::Debug, AppError>, variable: &str) -> String {
    match result {
        Err(AppError::Config {
            variable: named,
            problem,
        }) => {
            assert_eq!(named, variable);
            problem
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_suite_is_an_account_named_by_its_id() {
    let suites = parse_suites(Some(&suite(""))).unwrap();
    let [only] = &suites[..] else { panic!() };
    assert_eq!(only.account.id, "wwsuite01");
    assert_eq!(only.account.kind, AccountKind::WeComSuite);
    assert_eq!(only.account.api, TokenApi::WeComSuite);
    assert_eq!(only.account.secret, "s3cret-value");
    assert_eq!(only.push_token, "push-token");
    assert!(parse_suites(None).unwrap().is_empty());
    assert!(!format!("{only:?}").contains("push-token"));
}

#[test]
fn a_bad_suite_field_is_named_never_its_value() {
    for (text, expected) in [
        ("{}".to_owned(), "must be a JSON array"),
        ("[1]".to_owned(), "entry 0 is not a JSON object"),
        (suite(r#","agentid":1"#), "unknown field \"agentid\""),
        (
            suite("").replace("\"token\":\"push-token\",", ""),
            "has no \"token\"",
        ),
        (
            suite("").replace(KEY, "short"),
            "\"encoding_aes_key\" that is not 43",
        ),
        (
            suite("").replace("wwsuite01", "ww suite"),
            "\"suite_id\" with characters",
        ),
        (
            suite("").replace("\"s3cret-value\"", "7"),
            "\"suite_secret\" that is not",
        ),
    ] {
        let problem = problem(parse_suites(Some(&text)), SUITES);
        assert!(problem.contains(expected), "{problem}");
        assert!(!problem.contains("s3cret-value") && !problem.contains(KEY));
    }
    let twice = suite("").replace("}]", &format!("}},{}", &suite("")[1..]));
    assert!(problem(parse_suites(Some(&twice)), SUITES).contains("repeats"));
}

#[test]
fn a_suite_ticket_serves_thirty_minutes_from_its_timestamp() {
    use crate::policy::platform::VerifyTicket;
    let state = PlatformState {
        verify_ticket: Some(VerifyTicket {
            ticket: "T".into(),
            received_at: 1_000_500,
            created_at: 1_000_000,
        }),
        ..PlatformState::default()
    };
    assert_eq!(usable_suite_ticket(&state, 1_001_799), Some("T"));
    assert_eq!(usable_suite_ticket(&state, 1_001_800), None);
    assert_eq!(usable_suite_ticket(&PlatformState::default(), 0), None);
}

#[test]
fn a_corporation_is_named_by_its_suite_and_corpid_and_a_code_is_taken_once() {
    let corp = corp_account("wwsuite01", "wxCorp-Abc", "permanent");
    assert_eq!(corp.id, "wwsuite01.wxCorp-Abc");
    assert_eq!(corp.kind, AccountKind::WeComCorp);
    assert_eq!(
        (corp.appid.as_str(), corp.secret.as_str()),
        ("wxCorp-Abc", "permanent")
    );
    assert_eq!(suite_of(&corp.id), Some("wwsuite01"));
    assert!(crate::policy::accounts::is_account_name(&corp.id));
    for bad in [".wxCorp", "wwsuite01.", "a.b.c", "a b.c"] {
        assert!(!crate::policy::accounts::is_account_name(bad), "{bad}");
    }
    let mut state = PlatformState::default();
    assert!(take_auth_code(&mut state, "CODE-1", 10));
    assert!(
        !take_auth_code(&mut state, "CODE-1", 10),
        "a retry of the same push"
    );
    assert!(take_auth_code(&mut state, "CODE-2", 11));
    let codes: Vec<_> = state.auth_codes.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(codes, ["CODE-1", "CODE-2"]);
    for n in 0..40 {
        take_auth_code(&mut state, &format!("C{n}"), 12);
    }
    assert_eq!(state.recent_codes.len(), REMEMBERED_CODES);
}

#[test]
fn a_corporations_pushes_act_in_wecoms_order() {
    let mut state = PlatformState::default();
    assert!(admit_authorization(&mut state, "wxCorp", 100));
    assert!(
        !admit_withdrawal(&mut state, "wxCorp", 90),
        "a late retry of an old one"
    );
    assert!(admit_withdrawal(&mut state, "wxCorp", 110));
    assert!(
        !admit_authorization(&mut state, "wxCorp", 105),
        "pushed before the withdrawal"
    );
    assert!(admit_authorization(&mut state, "wxCorp", 120));
    // Withdrawn before its code was exchanged: the exchange registers nothing.
    assert!(admit_withdrawal(&mut state, "wxOther", 200));
    assert!(!admit_authorization(&mut state, "wxOther", 150));
    assert!(
        admit_authorization(&mut state, "wxOther", 200),
        "same second: arrival order"
    );
    // A week later, only the corporation pushed last is remembered.
    assert!(admit_authorization(&mut state, "wxThird", 200 + 7 * 86_400));
    assert_eq!(state.corp_pushes.keys().collect::<Vec<_>>(), ["wxThird"]);
}

#[test]
fn the_provider_is_an_account_whose_appid_is_its_corpid() {
    let text = r#"{"corpid":"wwprovider01","provider_secret":"p-secret"}"#;
    let provider = parse_provider(Some(text)).unwrap().unwrap();
    assert_eq!(provider.corpid(), "wwprovider01");
    assert_eq!(provider.account.id, PROVIDER_ACCOUNT_ID);
    assert_eq!(provider.account.kind, AccountKind::WeComProvider);
    assert_eq!(parse_provider(None).unwrap(), None);
    let problem = problem(
        parse_provider(Some(r#"{"corpid":"wwprovider01"}"#)),
        PROVIDER,
    );
    assert!(problem.contains("has no \"provider_secret\""), "{problem}");
}
