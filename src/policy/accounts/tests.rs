use super::*;

const SECRET: &str = "0123456789abcdef-not-for-messages";

fn parse_json(json: &str) -> Result<Vec<Account>, AppError> {
    parse((None, None), Some(json), TokenApi::Classic)
}

fn problem(result: Result<Vec<Account>, AppError>) -> String {
    match result {
        Err(AppError::Config { variable, problem }) => format!("{variable} {problem}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn shorthand_is_one_official_account() {
    let accounts = parse(
        (Some("wx1".into()), Some(SECRET.into())),
        None,
        TokenApi::Stable,
    )
    .unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].id, "wx1");
    assert_eq!(accounts[0].kind, AccountKind::OfficialAccount);
    assert_eq!(accounts[0].api, TokenApi::Stable);
}

#[test]
fn shorthand_needs_both_halves() {
    assert!(
        problem(parse((Some("wx1".into()), None), None, TokenApi::Classic))
            .starts_with("WECHAT_APPSECRET")
    );
    assert!(
        problem(parse((None, Some(SECRET.into())), None, TokenApi::Classic))
            .starts_with("WECHAT_APPID")
    );
    assert_eq!(parse((None, None), None, TokenApi::Classic), Ok(Vec::new()));
}

#[test]
fn entries_of_every_kind() {
    let json = format!(
        r#"[{{"kind":"official_account","appid":"wxA","secret":"{SECRET}","api":"stable"}},
           {{"id":"shop","kind":"mini_program","appid":"wxB","secret":"{SECRET}"}},
           {{"id":"hr-app","kind":"wecom","appid":"ww123","secret":"{SECRET}"}},
           {{"appid":"wxC","secret":"{SECRET}"}}]"#
    );
    let accounts = parse(
        (Some("wx0".into()), Some(SECRET.into())),
        Some(&json),
        TokenApi::Classic,
    )
    .unwrap();
    let summary: Vec<_> = accounts
        .iter()
        .map(|a| (a.id.as_str(), a.kind, a.api))
        .collect();
    assert_eq!(
        summary,
        [
            ("wx0", AccountKind::OfficialAccount, TokenApi::Classic),
            ("wxA", AccountKind::OfficialAccount, TokenApi::Stable),
            ("shop", AccountKind::MiniProgram, TokenApi::Classic),
            ("hr-app", AccountKind::WeCom, TokenApi::WeCom),
            ("wxC", AccountKind::OfficialAccount, TokenApi::Classic),
        ]
    );
}

#[test]
fn malformed_entries_are_named_and_never_echo_the_secret() {
    let cases = [
        (
            format!(r#"{{"appid":"wx1","secret":"{SECRET}"}}"#),
            "JSON array",
        ),
        ("[1]".to_string(), "entry 1 is not a JSON object"),
        (
            format!(r#"[{{"secret":"{SECRET}"}}]"#),
            "entry 1 has no \"appid\"",
        ),
        (
            r#"[{"appid":"wx1"}]"#.to_string(),
            "entry 1 (id \"wx1\") has no \"secret\"",
        ),
        (
            format!(r#"[{{"appid":"wx1","secret":["{SECRET}"]}}]"#),
            "\"secret\" that is not",
        ),
        (
            format!(r#"[{{"appid":"wx1","secret":"x","kind":"{SECRET}"}}]"#),
            "unknown kind",
        ),
        (
            format!(r#"[{{"appid":"wx1","secret":"x","api":"{SECRET}"}}]"#),
            "unknown \"api\"",
        ),
        (
            format!(r#"[{{"appid":"wx1","secret":"x","secert":"{SECRET}"}}]"#),
            "unknown field \"secert\"",
        ),
        (
            format!(r#"[{{"appid":"ww1","kind":"wecom","secret":"{SECRET}","api":"stable"}}]"#),
            "applies only",
        ),
        (
            format!(r#"[{{"appid":"{SECRET} x","secret":"s"}}]"#),
            "entry 1 has an \"appid\"",
        ),
        (
            format!(
                r#"[{{"appid":"wx1","secret":"{SECRET}"}},{{"appid":"wx1","secret":"{SECRET}"}}]"#
            ),
            "\"wx1\" twice",
        ),
    ];
    for (json, expected) in cases {
        let text = problem(parse_json(&json));
        assert!(text.starts_with("WECHAT_ACCOUNTS"), "{text}");
        assert!(text.contains(expected), "{json}: {text}");
        assert!(!text.contains(SECRET), "echoed the secret: {text}");
    }
}

#[test]
fn shorthand_and_entries_share_the_id_space() {
    let json = format!(r#"[{{"appid":"wx1","secret":"{SECRET}"}}]"#);
    let text = problem(parse(
        (Some("wx1".into()), Some(SECRET.into())),
        Some(&json),
        TokenApi::Classic,
    ));
    assert!(text.contains("twice"));
}

#[test]
fn default_api_values() {
    assert_eq!(TokenApi::parse_default(None), Ok(TokenApi::Classic));
    assert_eq!(
        TokenApi::parse_default(Some("stable")),
        Ok(TokenApi::Stable)
    );
    assert!(TokenApi::parse_default(Some("wecom")).is_err());
}

#[test]
fn debug_never_prints_the_secret() {
    let accounts = parse(
        (Some("wx1".into()), Some(SECRET.into())),
        None,
        TokenApi::Classic,
    )
    .unwrap();
    assert!(!format!("{accounts:?}").contains(SECRET));
}

#[test]
fn one_appid_has_one_fetcher_per_token_api() {
    let entry = |id: &str, appid: &str, extra: &str| {
        format!(r#"{{"id":"{id}","appid":"{appid}","secret":"{SECRET}"{extra}}}"#)
    };
    let twice = format!("[{},{}]", entry("a", "wx1", ""), entry("b", "wx1", ""));
    let text = problem(parse_json(&twice));
    assert!(text.contains("appid of \"a\" again as \"b\""), "{text}");
    assert!(!text.contains(SECRET));
    // classic and stable tokens of one appid are separate; so are a corp's WeCom apps.
    let apis = format!(
        "[{},{}]",
        entry("a", "wx1", ""),
        entry("b", "wx1", r#","api":"stable""#)
    );
    assert_eq!(parse_json(&apis).unwrap().len(), 2);
    let corp = format!(
        "[{},{}]",
        entry("a", "ww1", r#","kind":"wecom""#),
        entry("b", "ww1", r#","kind":"wecom""#)
    );
    assert_eq!(parse_json(&corp).unwrap().len(), 2);
}

#[test]
fn an_id_may_not_be_another_accounts_appid() {
    let json = format!(
        r#"[{{"id":"wx2","appid":"wx1","secret":"{SECRET}"}},{{"id":"b","appid":"wx2","secret":"{SECRET}"}}]"#
    );
    let text = problem(parse_json(&json));
    assert!(
        text.contains("both as an id and as another account's appid"),
        "{text}"
    );
}

#[test]
fn the_issuer_changes_with_appid_kind_and_api() {
    let account = |kind, appid, api| Account::new("main", kind, appid, SECRET, api);
    let base = account(AccountKind::OfficialAccount, "wx1", TokenApi::Classic);
    for other in [
        account(AccountKind::MiniProgram, "wx1", TokenApi::Classic),
        account(AccountKind::OfficialAccount, "wx2", TokenApi::Classic),
        account(AccountKind::OfficialAccount, "wx1", TokenApi::Stable),
    ] {
        assert_ne!(base.issuer, other.issuer);
    }
    let rotated_secret = Account::new(
        "main",
        AccountKind::OfficialAccount,
        "wx1",
        "new",
        TokenApi::Classic,
    );
    assert_eq!(
        base.issuer, rotated_secret.issuer,
        "a new secret keeps the tokens"
    );
}

#[test]
fn a_registered_account_takes_its_id_from_the_path_and_fails_as_a_bad_request() {
    let entry = serde_json::json!({"kind": "mini_program", "appid": "wx9", "secret": "s3cr3t"});
    let account = parse_registered("shop-9", &entry, TokenApi::Stable).unwrap();
    assert_eq!(
        (account.id.as_str(), account.api),
        ("shop-9", TokenApi::Stable)
    );
    let other_id = serde_json::json!({"id": "x", "appid": "wx9", "secret": "s3cr3t"});
    for (id, entry, field) in [
        ("shop 9", &entry, "id"),
        ("shop-9", &other_id, "\"id\""),
        ("shop-9", &serde_json::json!({"appid": "wx9"}), "\"secret\""),
        ("shop-9", &serde_json::json!([1]), "JSON object"),
    ] {
        match parse_registered(id, entry, TokenApi::Classic) {
            Err(AppError::BadRequest(message)) => {
                assert!(message.contains(field), "{message}");
                assert!(!message.contains("s3cr3t"), "{message}");
            }
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[test]
fn every_wecom_kind_is_wecom_and_no_wechat_kind_is() {
    use AccountKind::*;
    for kind in [WeCom, WeComSuite, WeComProvider, WeComCorp] {
        assert!(kind.is_wecom(), "{kind:?}");
    }
    for kind in [OfficialAccount, MiniProgram, Component, Authorizer] {
        assert!(!kind.is_wecom(), "{kind:?}");
    }
}
