use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn account(api: TokenApi) -> Account {
    Account::new(
        "main",
        crate::policy::accounts::AccountKind::OfficialAccount,
        "wx123",
        "s e&c",
        api,
    )
}

const BASE: &str = "https://api.weixin.qq.com";
const WECOM: &str = "https://qyapi.weixin.qq.com";

#[test]
fn classic_request_encodes_credentials_in_the_query() {
    let request = token_request(&account(TokenApi::Classic), BASE, WECOM, true).unwrap();
    assert_eq!(request.method, HttpMethod::Get);
    assert_eq!(
        request.url,
        "https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid=wx123&secret=s%20e%26c"
    );
    assert_eq!(request.body, None);
}

#[test]
fn stable_request_posts_json_with_the_force_flag() {
    for force in [false, true] {
        let request = token_request(&account(TokenApi::Stable), BASE, WECOM, force).unwrap();
        assert_eq!(request.method, HttpMethod::Post);
        assert_eq!(
            request.url,
            "https://api.weixin.qq.com/cgi-bin/stable_token"
        );
        let body: Value = serde_json::from_str(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"grant_type": "client_credential", "appid": "wx123", "secret": "s e&c", "force_refresh": force})
        );
    }
}

#[test]
fn wecom_request_uses_corpid_and_corpsecret() {
    let request = token_request(&account(TokenApi::WeCom), BASE, WECOM, false).unwrap();
    assert_eq!(request.method, HttpMethod::Get);
    assert_eq!(
        request.url,
        "https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=wx123&corpsecret=s%20e%26c"
    );
}

#[test]
fn parses_a_token() {
    let token = parse_token_response(200, r#"{"access_token":"AT","expires_in":7200}"#, SECRET);
    assert_eq!(
        token,
        Ok(Issued {
            value: "AT".into(),
            expires_in: 7200,
            refresh_token: None,
        })
    );
}

#[test]
fn errcode_zero_with_a_token_is_success() {
    let body = r#"{"errcode":0,"errmsg":"ok","access_token":"AT","expires_in":7200}"#;
    assert!(parse_token_response(200, body, SECRET).is_ok());
}

#[test]
fn classifies_failures() {
    assert_eq!(
        parse_token_response(500, "oops", SECRET),
        Err(UpstreamFailure::HttpStatus { status: 500 })
    );
    assert!(matches!(
        parse_token_response(200, r#"{"access_token":"AT","exp"#, SECRET),
        Err(UpstreamFailure::BadResponse { .. })
    ));
    assert!(matches!(
        parse_token_response(200, r#"{"expires_in":7200}"#, SECRET),
        Err(UpstreamFailure::BadResponse { .. })
    ));
    assert_eq!(
        parse_token_response(200, r#"{"errcode":-1,"errmsg":"system error"}"#, SECRET),
        Err(UpstreamFailure::WeChat {
            errcode: -1,
            errmsg: "system error".into()
        })
    );
}

#[test]
fn never_keeps_the_secret_from_an_errmsg() {
    let body = r#"{"errcode":40125,"errmsg":"invalid appsecret TOPSECRET"}"#;
    let Err(UpstreamFailure::WeChat { errmsg, .. }) = parse_token_response(200, body, "TOPSECRET")
    else {
        panic!("expected a WeChat error");
    };
    assert!(!errmsg.contains("TOPSECRET"));
}

#[test]
fn ticket_urls() {
    let url = ticket_url(
        &account(TokenApi::Stable),
        BASE,
        WECOM,
        TicketKind::WxCard,
        "A&T",
    );
    assert_eq!(
        url,
        "https://api.weixin.qq.com/cgi-bin/ticket/getticket?access_token=A%26T&type=wx_card"
    );
    let url = ticket_url(
        &account(TokenApi::WeCom),
        BASE,
        WECOM,
        TicketKind::Jsapi,
        "AT",
    );
    assert_eq!(
        url,
        "https://qyapi.weixin.qq.com/cgi-bin/get_jsapi_ticket?access_token=AT"
    );
}

#[test]
fn parses_tickets_and_scrubs_the_token() {
    let body = r#"{"errcode":0,"errmsg":"ok","ticket":"TK","expires_in":7200}"#;
    assert_eq!(
        parse_ticket_response(200, body, "AT"),
        Ok(Issued {
            value: "TK".into(),
            expires_in: 7200,
            refresh_token: None,
        })
    );
    let body =
        r#"{"errcode":40001,"errmsg":"invalid credential, access_token is invalid: ATOKEN123"}"#;
    let Err(UpstreamFailure::WeChat {
        errcode: 40001,
        errmsg,
    }) = parse_ticket_response(200, body, "ATOKEN123")
    else {
        panic!("expected 40001");
    };
    assert!(!errmsg.contains("ATOKEN123"));
    assert!(matches!(
        parse_ticket_response(200, r#"{"errcode":0,"errmsg":"ok"}"#, "AT"),
        Err(UpstreamFailure::BadResponse { .. })
    ));
}

#[test]
fn scrub_removes_the_secret_raw_and_percent_encoded() {
    let secret = "s e&c/ret";
    let text = format!(
        "fetch failed: https://x/?secret={} and {secret}",
        "s%20e%26c%2Fret"
    );
    let cleaned = scrub(&text, secret);
    assert!(
        !cleaned.contains("s%20e%26c%2Fret") && !cleaned.contains(secret),
        "{cleaned}"
    );
    assert_eq!(cleaned.matches("[redacted]").count(), 2);
}
