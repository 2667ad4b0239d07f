use super::*;

const NOW: u64 = 1_800_000_000;

fn busy() -> UpstreamFailure {
    UpstreamFailure::WeChat {
        errcode: -1,
        errmsg: "system error".into(),
    }
}

#[test]
fn conditions_follow_what_the_object_sees() {
    let failure = busy();
    let mut seen = Observation {
        token_valid: true,
        failing_since: Some(NOW - 100),
        last_failure: Some(&failure),
        ..Observation::default()
    };
    assert_eq!(active_conditions(&seen, NOW, 600), vec![]);
    assert_eq!(
        active_conditions(&seen, NOW + 500, 600),
        vec![(Condition::RefreshFailing, NOW - 100)]
    );
    seen.token_valid = false;
    assert_eq!(
        active_conditions(&seen, NOW, 600),
        vec![(Condition::NoValidToken, NOW - 100)]
    );
    let ip = UpstreamFailure::WeChat {
        errcode: 40164,
        errmsg: "invalid ip 203.0.113.9".into(),
    };
    seen.last_failure = Some(&ip);
    let names: Vec<_> = active_conditions(&seen, NOW, 600)
        .iter()
        .map(|(c, _)| c.name())
        .collect();
    assert_eq!(names, ["no_valid_token", "ip_refused"]);
    let calm = Observation {
        token_valid: true,
        paused: true,
        blocked: true,
        verify_ticket_created_at: Some(Some(NOW - 3600)),
        ..Observation::default()
    };
    let names: Vec<_> = active_conditions(&calm, NOW, 600)
        .iter()
        .map(|(c, _)| c.name())
        .collect();
    assert_eq!(
        names,
        ["quota_paused", "credentials_refused", "verify_ticket_stale"]
    );
    let fresh_ticket = Observation {
        token_valid: true,
        verify_ticket_created_at: Some(Some(NOW - 600)),
        ..Observation::default()
    };
    assert!(active_conditions(&fresh_ticket, NOW, 600).is_empty());
}

#[test]
fn an_alert_starts_once_repeats_after_the_window_and_recovers_once() {
    let mut ledger = AlertLedger::default();
    let active = [(Condition::IpRefused, NOW)];
    let sent = ledger.step(&active, NOW, 3600);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].transition, Transition::Started);
    assert!(ledger.step(&active, NOW + 3599, 3600).is_empty());
    let again = ledger.step(&active, NOW + 3600, 3600);
    assert_eq!(again[0].transition, Transition::Repeated);
    assert_eq!(again[0].since, NOW);
    let recovered = ledger.step(&[], NOW + 4000, 3600);
    assert_eq!(
        recovered,
        vec![Alert {
            condition: Condition::IpRefused,
            transition: Transition::Recovered,
            since: NOW
        }]
    );
    assert!(ledger.step(&[], NOW + 5000, 3600).is_empty());
}

#[test]
fn settings_name_the_variable_never_the_url() {
    assert_eq!(parse_settings(None, None, None, None), Ok(None));
    let hooks = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1,\
                 https://open.feishu.cn/open-apis/bot/v2/hook/h2,https://oapi.dingtalk.com/robot/send?access_token=t3,\
                 https://hooks.slack.com/services/x,http://127.0.0.1:9/hook";
    let parsed = parse_settings(Some(hooks), None, None, None)
        .unwrap()
        .unwrap();
    let formats: Vec<_> = parsed.hooks.iter().map(|(_, f)| *f).collect();
    use AlertFormat::*;
    assert_eq!(formats, [WeCom, Feishu, DingTalk, Slack, Json]);
    assert_eq!((parsed.after_secs, parsed.repeat_secs), (600, 3600));
    assert!(!format!("{parsed:?}").contains("k1"));
    let forced = parse_settings(
        Some("http://127.0.0.1:9/hook"),
        Some("feishu"),
        Some(5),
        Some(9),
    )
    .unwrap()
    .unwrap();
    assert_eq!(forced.hooks[0].1, Feishu);
    match parse_settings(
        Some("https://a.example/,ftp://secret-host/"),
        None,
        None,
        None,
    ) {
        Err(AppError::Config { variable, problem }) => {
            assert_eq!(variable, "ALERT_WEBHOOK_URL");
            assert!(problem.contains("entry 2") && !problem.contains("secret-host"));
        }
        other => panic!("{other:?}"),
    }
    assert!(parse_settings(Some("https://a.example/"), Some("teams"), None, None).is_err());
}

#[test]
fn each_format_is_its_services_shape_and_says_what_to_do() {
    let failure = busy();
    let alert = Alert {
        condition: Condition::RefreshFailing,
        transition: Transition::Started,
        since: NOW - 700,
    };
    let words = text("shop", &alert, Some(&failure), NOW);
    assert!(words.starts_with("[wechat-token-edge] ALERT shop: token refreshes are failing"));
    assert!(words.contains("WeChat errcode -1: system error") && words.contains("What to do:"));
    assert!(words.contains("700 s") && words.contains(" UTC, 700 s)"));
    let wecom = payload(AlertFormat::WeCom, "shop", &alert, Some(&failure), &words);
    assert_eq!(wecom["msgtype"], "text");
    assert_eq!(wecom["text"]["content"], words);
    let feishu = payload(AlertFormat::Feishu, "shop", &alert, Some(&failure), &words);
    assert_eq!(feishu["msg_type"], "text");
    assert_eq!(feishu["content"]["text"], words);
    let slack = payload(AlertFormat::Slack, "shop", &alert, Some(&failure), &words);
    assert_eq!(slack, json!({ "text": words }));
    let plain = payload(AlertFormat::Json, "shop", &alert, Some(&failure), &words);
    assert_eq!(
        (
            plain["condition"].as_str(),
            plain["state"].as_str(),
            plain["errcode"].as_i64()
        ),
        (Some("refresh_failing"), Some("started"), Some(-1))
    );
    let recovered = Alert {
        transition: Transition::Recovered,
        ..alert
    };
    let words = text("shop", &recovered, Some(&failure), NOW);
    assert!(
        words.starts_with("[wechat-token-edge] RECOVERED shop") && !words.contains("What to do")
    );
}

#[test]
fn a_token_that_runs_out_with_no_failed_call_is_no_valid_token() {
    let paused = Observation {
        token_valid: false,
        token_expired_at: Some(NOW - 5),
        paused: true,
        ..Observation::default()
    };
    let names: Vec<_> = active_conditions(&paused, NOW, 600)
        .iter()
        .map(|(c, since)| (c.name(), *since))
        .collect();
    assert_eq!(names, [("no_valid_token", NOW - 5), ("quota_paused", NOW)]);
    // A fresh account that has not fetched yet is nothing to alert on.
    assert!(active_conditions(&Observation::default(), NOW, 600).is_empty());
    let valid = Observation {
        token_valid: true,
        failing_since: Some(NOW - 60),
        ..Observation::default()
    };
    assert_eq!(
        next_start(&valid, Some(NOW + 100), NOW, 600),
        Some(NOW + 101)
    );
    assert_eq!(
        next_start(&valid, Some(NOW + 9_000), NOW, 600),
        Some(NOW + 540)
    );
}

#[test]
fn failing_refreshes_that_leave_no_token_are_not_a_recovery() {
    let mut ledger = AlertLedger::default();
    ledger.step(&[(Condition::RefreshFailing, NOW)], NOW, 3600);
    let worse = ledger.step(&[(Condition::NoValidToken, NOW)], NOW + 10, 3600);
    assert_eq!(
        worse
            .iter()
            .map(|a| (a.condition, a.transition))
            .collect::<Vec<_>>(),
        [(Condition::NoValidToken, Transition::Started)]
    );
    assert_eq!(ledger.next_repeat(3600), Some(NOW + 10 + 3600));
}

#[test]
fn times_read_as_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(1_795_536_000), "2026-11-24 16:00:00 UTC");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
}
