use super::*;

const DING: &str = "https://oapi.dingtalk.com/robot/send?access_token=t3";
const FEISHU: &str = "https://open.feishu.cn/open-apis/bot/v2/hook/h2";

#[test]
fn hooks_take_their_format_from_the_host_and_a_secret_from_the_entry_or_the_variable() {
    let urls = format!(
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1,{FEISHU}#own,{DING},\
         https://hooks.slack.com/services/x,http://127.0.0.1:9/hook"
    );
    let hooks = parse_hooks(&urls, None, Some("shared")).unwrap();
    let formats: Vec<_> = hooks.iter().map(|h| h.format).collect();
    use AlertFormat::*;
    assert_eq!(formats, [WeCom, Feishu, DingTalk, Slack, Json]);
    let secrets: Vec<_> = hooks.iter().map(|h| h.secret.as_deref()).collect();
    // The shared secret signs only the robots that sign.
    assert_eq!(secrets, [None, Some("own"), Some("shared"), None, None]);
    assert_eq!(hooks[1].url, FEISHU, "the #secret is not part of the URL");
    assert!(!format!("{hooks:?}").contains("k1") && !format!("{hooks:?}").contains("own"));
    for (bad, why) in [
        ("https://a.example/,ftp://secret-host/", "entry 2 is not"),
        ("HTTPS://a.example/,https://", "entry 2 is not"),
        (
            "https://qyapi.weixin.qq.com/x#s",
            "only DingTalk and Feishu",
        ),
        (&format!("{DING}#") as &str, "no secret"),
    ] {
        match parse_hooks(bad, None, None) {
            Err(AppError::Config { variable, problem }) => {
                assert_eq!(variable, "ALERT_WEBHOOK_URL");
                assert!(problem.contains(why), "{bad}: {problem}");
                assert!(!problem.contains("secret-host") && !problem.contains("qyapi"));
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert_eq!(
        parse_hooks("HTTPS://a.example/x", None, None).unwrap()[0].format,
        Json
    );
}

#[test]
fn signed_robots_are_signed_as_dingtalk_and_feishu_document() {
    let payload = json!({ "msgtype": "text", "text": { "content": "hi" } });
    let ding = Hook {
        url: DING.into(),
        format: AlertFormat::DingTalk,
        secret: Some("SECabc".into()),
    };
    let (url, body) = signed_request(&ding, &payload, 1_700_000_000_000);
    assert_eq!(
        url,
        format!(
            "{DING}&timestamp=1700000000000&sign=jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM%3D"
        )
    );
    assert_eq!(body, payload.to_string());
    let feishu = Hook {
        url: FEISHU.into(),
        format: AlertFormat::Feishu,
        secret: Some("SECabc".into()),
    };
    let (url, body) = signed_request(&feishu, &payload, 1_700_000_000_999);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(url, FEISHU);
    assert_eq!(body["timestamp"], "1700000000");
    assert_eq!(body["sign"], "XprR1de+0SSBnwWyU/4k6x2TL+Q2SJlM5NNEdAv7MWg=");
    assert_eq!(body["text"]["content"], "hi");
    let plain = Hook {
        secret: None,
        ..feishu
    };
    assert_eq!(signed_request(&plain, &payload, 1).1, payload.to_string());
}

#[test]
fn answers_are_judged_by_each_services_rules() {
    use AlertFormat::*;
    assert_eq!(
        judge(WeCom, 200, r#"{"errcode":0}"#, 60),
        Delivery::Delivered
    );
    assert!(matches!(
        judge(WeCom, 200, r#"{"errcode":45009}"#, 60),
        Delivery::Failed {
            retry_after_secs: 60,
            ..
        }
    ));
    assert!(matches!(
        judge(DingTalk, 200, r#"{"errcode":130101}"#, 60),
        Delivery::Failed {
            retry_after_secs: 600,
            ..
        }
    ));
    assert!(matches!(
        judge(Feishu, 200, r#"{"code":19021}"#, 60),
        Delivery::Failed { .. }
    ));
    // A generic receiver's own success shape is no refusal.
    assert_eq!(judge(Json, 200, r#"{"code":200}"#, 60), Delivery::Delivered);
    assert_eq!(judge(Slack, 200, "ok", 60), Delivery::Delivered);
    assert!(matches!(judge(Json, 500, "", 60), Delivery::Failed { .. }));
    assert_eq!(slack_escape("a<b>&c"), "a&lt;b&gt;&amp;c");
}
