use super::*;
use serde_json::json;

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
    let names: Vec<_> = active_conditions(&seen, NOW + 500, 600)
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
fn a_suite_ticket_is_stale_after_twenty_minutes() {
    let suite = |created_at| Observation {
        token_valid: true,
        suite_ticket_created_at: Some(created_at),
        ..Observation::default()
    };
    assert!(active_conditions(&suite(Some(NOW - 1199)), NOW, 600).is_empty());
    assert_eq!(
        active_conditions(&suite(Some(NOW - 1200)), NOW, 600),
        [(Condition::SuiteTicketStale, NOW - 1200)]
    );
    assert_eq!(
        active_conditions(&suite(None), NOW, 600),
        [(Condition::SuiteTicketStale, NOW)]
    );
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
    assert_eq!(parse_settings(AlertVariables::default()), Ok(None));
    let hooks = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1,http://127.0.0.1:9/hook";
    let parsed = parse_settings(AlertVariables {
        urls: Some(hooks),
        ..AlertVariables::default()
    })
    .unwrap()
    .unwrap();
    let formats: Vec<_> = parsed.hooks.iter().map(|h| h.format).collect();
    assert_eq!(formats, [AlertFormat::WeCom, AlertFormat::Json]);
    assert_eq!((parsed.after_secs, parsed.repeat_secs), (600, 3600));
    assert!(!format!("{parsed:?}").contains("k1"));
    let forced = parse_settings(AlertVariables {
        urls: Some("http://127.0.0.1:9/hook"),
        format: Some("feishu"),
        secret: Some("s"),
        after_secs: Some(5),
        repeat_secs: Some(90),
    })
    .unwrap()
    .unwrap();
    assert_eq!(forced.hooks[0].format, AlertFormat::Feishu);
    assert_eq!(forced.hooks[0].secret.as_deref(), Some("s"));
    let teams = AlertVariables {
        urls: Some("https://a.example/"),
        format: Some("teams"),
        ..AlertVariables::default()
    };
    assert!(parse_settings(teams).is_err());
}

#[test]
fn each_format_is_its_services_shape_and_says_what_to_do() {
    let failure = busy();
    let alert = Alert {
        condition: Condition::RefreshFailing,
        transition: Transition::Started,
        since: NOW - 700,
    };
    let one = [Notice::new("shop", &alert, Some(&failure))];
    let words = text(&one, NOW);
    assert!(words.starts_with("[wechat-token-edge] ALERT shop: token refreshes are failing"));
    assert!(words.contains("WeChat errcode -1: system error") && words.contains("What to do:"));
    assert!(words.contains("700 s") && words.contains(" UTC, 700 s)"));
    let wecom = payload(AlertFormat::WeCom, &one, &words);
    assert_eq!(wecom["msgtype"], "text");
    assert_eq!(wecom["text"]["content"], words);
    let feishu = payload(AlertFormat::Feishu, &one, &words);
    assert_eq!(feishu["msg_type"], "text");
    assert_eq!(feishu["content"]["text"], words);
    let slack = payload(AlertFormat::Slack, &one, "a <b> & c");
    assert_eq!(slack, json!({ "text": "a &lt;b&gt; &amp; c" }));
    let plain = payload(AlertFormat::Json, &one, &words);
    assert_eq!(
        (
            plain["condition"].as_str(),
            plain["state"].as_str(),
            plain["errcode"].as_i64(),
            plain["account"].as_str(),
            plain["count"].as_u64(),
        ),
        (
            Some("refresh_failing"),
            Some("started"),
            Some(-1),
            Some("shop"),
            Some(1)
        )
    );
    let recovered = Alert {
        transition: Transition::Recovered,
        ..alert
    };
    let words = text(&[Notice::new("shop", &recovered, Some(&failure))], NOW);
    assert!(
        words.starts_with("[wechat-token-edge] RECOVERED shop") && !words.contains("What to do")
    );
    assert!(!words.contains("errcode"));
}

#[test]
fn an_alert_carries_wechats_rid_and_where_to_look_it_up() {
    let failure = UpstreamFailure::WeChat {
        errcode: 45009,
        errmsg: "reach max api daily quota limit rid: 64eed8de-4cdaca9b".into(),
    };
    let alert = Alert {
        condition: Condition::RefreshFailing,
        transition: Transition::Started,
        since: NOW - 60,
    };
    let one = [Notice::new("shop", &alert, Some(&failure))];
    let words = text(&one, NOW);
    assert!(words.contains("GET /diagnostics/rid?account=shop&rid=64eed8de-4cdaca9b"));
    assert_eq!(
        payload(AlertFormat::Json, &one, &words)["rid"],
        "64eed8de-4cdaca9b"
    );
    let without = [Notice::new("shop", &alert, Some(&busy()))];
    assert!(!text(&without, NOW).contains("/diagnostics/rid"));
}

#[test]
fn a_digest_names_the_first_accounts_and_counts_the_rest() {
    let alert = Alert {
        condition: Condition::NoValidToken,
        transition: Transition::Started,
        since: NOW - 60,
    };
    let failure = busy();
    let notices: Vec<Notice> = (1..=12)
        .map(|n| Notice::new(&format!("shop-{n}"), &alert, Some(&failure)))
        .collect();
    let words = text(&notices, NOW);
    let lines: Vec<&str> = words.lines().collect();
    assert!(
        lines[0].starts_with("[wechat-token-edge] ALERT 12 accounts: no valid token can be served")
    );
    assert_eq!(
        lines[1],
        "shop-1, shop-2, shop-3, shop-4, shop-5 and 7 more"
    );
    assert!(lines[2].contains("errcode -1") && lines[2].ends_with("(shop-1)"));
    let plain = payload(AlertFormat::Json, &notices, &words);
    assert_eq!(plain["count"], 12);
    assert_eq!(plain["accounts"].as_array().unwrap().len(), 12);
}

#[test]
fn an_ip_refusal_waits_for_alert_after_secs_like_failing_refreshes() {
    let ip = UpstreamFailure::WeChat {
        errcode: 40164,
        errmsg: "invalid ip 203.0.113.9".into(),
    };
    let seen = Observation {
        token_valid: true,
        failing_since: Some(NOW),
        last_failure: Some(&ip),
        ..Observation::default()
    };
    assert!(active_conditions(&seen, NOW + 10, 600).is_empty());
    let names: Vec<_> = active_conditions(&seen, NOW + 600, 600)
        .iter()
        .map(|(c, _)| c.name())
        .collect();
    assert_eq!(names, ["refresh_failing", "ip_refused"]);
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

#[test]
fn an_object_that_cannot_load_alerts_at_once_then_every_repeat() {
    let mut failure = LoadFailure::default();
    assert_eq!(failure.failed(NOW, 3600), Some(Transition::Started));
    assert_eq!(failure.failed(NOW + 30, 3600), None);
    assert_eq!(failure.failed(NOW + 3600, 3600), Some(Transition::Repeated));
    assert_eq!((failure.since, failure.failures_in_a_row), (NOW, 3));
    let words = text(
        &[Notice::config_error(
            "shop",
            Transition::Started,
            NOW,
            "ACCOUNTS_ENCRYPTION_KEY opens no key",
        )],
        NOW,
    );
    assert!(words.contains("ALERT shop: its object cannot load"));
    assert!(words.contains("What to do: ACCOUNTS_ENCRYPTION_KEY"));
}

#[test]
fn a_low_watched_quota_alerts_from_when_it_was_seen_low_with_no_errcode() {
    let seen = Observation {
        token_valid: true,
        quota_low_since: Some(NOW - 30),
        ..Observation::default()
    };
    assert_eq!(
        active_conditions(&seen, NOW, 600),
        vec![(Condition::QuotaLow, NOW - 30)]
    );
    let alert = Alert {
        condition: Condition::QuotaLow,
        transition: Transition::Started,
        since: NOW - 30,
    };
    // The token's last failure is not the low quota's cause: not named.
    let notice = Notice::new("shop", &alert, Some(&busy()));
    assert_eq!((notice.errcode, notice.rid.as_deref()), (None, None));
    let words = text(&[notice], NOW);
    assert!(words.contains("daily quota is running low") && words.contains("clear-quota"));
}
