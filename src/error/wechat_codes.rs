//! What WeChat's error codes mean: which reject the access_token, which the caller's IP, which
//! the credentials, which the daily quota, and a sentence for the operator. Pure text and rules,
//! used by the error type to explain WeChat's failures and by the policy to act on them.

/// The account's daily quota for this API is used up.
pub const QUOTA_EXHAUSTED: i64 = 45009;

/// The account used this month's 10 quota clears.
pub const CLEAR_QUOTA_MONTHLY_LIMIT: i64 = 48006;

/// The platform's verify ticket is too old (61005) or not one WeChat pushed (61006).
pub const VERIFY_TICKET_EXPIRED: i64 = 61005;
pub const VERIFY_TICKET_INVALID: i64 = 61006;

/// WeCom: a suite ticket too old, or another suite's.
pub const SUITE_TICKET_INVALID: i64 = 40085;

/// WeCom: the suite_access_token is not valid (40082) or has expired (42009).
pub const SUITE_TOKEN_INVALID: i64 = 40082;
pub const SUITE_TOKEN_EXPIRED: i64 = 42009;

/// WeCom: a corporation's permanent code is no longer valid (the app was removed).
pub const PERMANENT_CODE_INVALID: i64 = 40084;

/// An authorizer's refresh token is no longer valid: the account must authorize again.
pub const REFRESH_TOKEN_INVALID: i64 = 61023;

/// WeChat's and WeCom's "this access_token is not (or no longer) valid" codes.
pub fn is_token_rejected(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40014 | 42001)
}

/// WeCom's "this suite_access_token is not (or no longer) valid": a rejection of the token
/// only where a suite's token was sent.
pub fn is_suite_token_rejected(errcode: i64) -> bool {
    is_token_rejected(errcode) || matches!(errcode, SUITE_TOKEN_INVALID | SUITE_TOKEN_EXPIRED)
}

/// An operator-facing sentence for a WeChat errcode, with what to do where we know it.
pub fn explain_errcode(errcode: i64, errmsg: &str) -> String {
    if is_ip_whitelist_error(errcode) {
        return explain_ip_whitelist(errcode, errmsg);
    }
    match errcode {
        -1 => "WeChat is busy (errcode -1); the call can be retried shortly.".into(),
        40013 => "WeChat rejected the appid or corpid (errcode 40013): check the account's \
                  appid in WECHAT_APPID or WECHAT_ACCOUNTS. Automatic refreshes stop until the \
                  configuration changes."
            .into(),
        40001 | 40125 => format!(
            "WeChat rejected the credentials (errcode {errcode}): check the account's secret \
             (WECHAT_APPSECRET or WECHAT_ACCOUNTS) against the platform's current one. \
             Automatic refreshes stop until the configuration changes."
        ),
        40243 => "The account's AppSecret is frozen (errcode 40243): unfreeze or reset it in \
                  the platform, then update the configured secret. Automatic refreshes stop \
                  until the configuration changes."
            .into(),
        45009 => "The account reached WeChat's daily quota for this API (errcode 45009); \
                  refreshes are paused until the quota resets at midnight Beijing time (or \
                  POST /admin/accounts/<id>/clear-quota clears it), and the current token is \
                  served while it is valid."
            .into(),
        CLEAR_QUOTA_MONTHLY_LIMIT => "WeChat refused to clear the quota (errcode 48006): the \
            account used its 10 clears this month."
            .into(),
        76021 => "WeChat does not know that API path (errcode 76021): name it as \
                  /cgi-bin/message/custom/send, without WeChat's host."
            .into(),
        76022 => "This account's token cannot ask for that API's quota (errcode 76022): the \
                  API belongs to another kind of account, or is a /sns/ API, which WeChat does \
                  not meter this way."
            .into(),
        76001 => "WeChat has no record of that rid for this account (errcode 76001): WeChat \
                  keeps a rid for 7 days."
            .into(),
        76003 => "That rid belongs to another account (errcode 76003): ask with the account \
                  whose call failed."
            .into(),
        VERIFY_TICKET_EXPIRED | VERIFY_TICKET_INVALID => format!(
            "WeChat refused the platform's component_verify_ticket (errcode {errcode}): \
             check that the platform's 授权事件接收URL is https://<this worker>/component/events \
             and that WECHAT_COMPONENT's token and encoding_aes_key match the platform's \
             settings; the server has asked WeChat to push a ticket again."
        ),
        SUITE_TOKEN_INVALID | SUITE_TOKEN_EXPIRED => format!(
            "WeCom refused the suite_access_token (errcode {errcode}): it is replaced once for \
             everyone and the call sent again; if this persists, check the suite's secret in \
             WECOM_SUITES."
        ),
        PERMANENT_CODE_INVALID => "WeCom refused the corporation's permanent code (errcode \
            40084: the corporation removed the app, or its permanent code was reset): automatic \
            refreshes stop until a new create_auth or reset_permanent_code brings another."
            .into(),
        40078 => "WeCom refused the authorization code (errcode 40078: spent, expired, or not \
            this suite's): the corporation must install the app again for a new one."
            .into(),
        41025 => format!("WeCom says a parameter is missing (errcode 41025): {errmsg}"),
        710000 => "WeCom wants an encrypted corpid where a plain one was sent (errcode 710000): \
            a service provider's calls name corporations by the corpid WeCom gave it."
            .into(),
        SUITE_TICKET_INVALID => "WeCom refused the suite_ticket (errcode 40085: older than 30 \
            minutes, or another suite's): WeCom pushes one every ten minutes to the suite's \
            指令回调URL, which must be https://<this worker>/wecom/suites/<suite_id>/events, \
            with WECOM_SUITES' token and encoding_aes_key equal to the suite's; a push can be \
            asked for in the provider's admin (刷新Ticket)."
            .into(),
        REFRESH_TOKEN_INVALID => "WeChat refused the authorizer's refresh token (errcode \
            61023), also after looking it up again in api_get_authorizer_list: the account \
            must authorize the platform again (a new authorization link, POST \
            /component/preauthcode)."
            .into(),
        _ => format!("WeChat returned errcode {errcode}: {errmsg}"),
    }
}

/// WeChat refusing the caller's IP: not whitelisted (40164, 61004), or waiting for, or refused
/// by, an administrator's confirmation (89501, 89503, 89506, 89507).
pub fn is_ip_whitelist_error(errcode: i64) -> bool {
    matches!(
        errcode,
        40164 | 60020 | 61004 | 89501 | 89503 | 89506 | 89507
    )
}

/// A token call failing on the credentials themselves: retrying cannot help until the
/// configuration changes. (On a ticket call, 40001 means the access_token instead.)
pub fn is_credential_error(errcode: i64) -> bool {
    matches!(
        errcode,
        40001 | 40013 | 40125 | 40243 | PERMANENT_CODE_INVALID
    )
}

fn explain_ip_whitelist(errcode: i64, errmsg: &str) -> String {
    let ip = reported_ip(errmsg).unwrap_or("(WeChat did not say which)");
    let what = match errcode {
        89501 | 89503 => "a call from this IP is waiting for an administrator's confirmation",
        89506 => "an administrator refused calls from this IP twice; it is blocked for 24 hours",
        89507 => "an administrator refused calls from this IP; it is blocked for an hour",
        _ => "this IP is not in the account's IP whitelist",
    };
    if errcode == 60020 {
        return format!(
            "WeCom refused the call from egress IP {ip} (errcode 60020): this IP is not among \
             the app's trusted IPs (企业可信IP, or the suite's IP whitelist in the provider's \
             admin). Add it, or send WeCom calls through a fixed-IP egress proxy, whitelist \
             that proxy's IP, and point WECOM_API_BASE at it."
        );
    }
    format!(
        "WeChat refused the call from egress IP {ip} (errcode {errcode}): {what}. Two fixes: \
         add {ip} to the account's IP whitelist (Official Account platform: Settings and \
         Development > Basic Configuration > IP whitelist), which lasts only until Cloudflare's \
         shared egress address changes; or send WeChat calls through a fixed-IP egress proxy, \
         whitelist that proxy's IP, and point WECHAT_API_BASE at it."
    )
}

/// The first IPv4 address in an errmsg, e.g. `invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9,
/// not in whitelist`.
pub fn reported_ip(errmsg: &str) -> Option<&str> {
    errmsg
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 4
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
        })
}

/// The request id WeChat appends to an errmsg (`… rid: 64eed8de-4cdaca9b-1be8f193`), by
/// which `/cgi-bin/openapi/rid/get` finds the call's details.
pub fn rid(errmsg: &str) -> Option<&str> {
    let start = errmsg.rfind("rid: ")? + "rid: ".len();
    let rid = errmsg[start..]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .next()?;
    (!rid.is_empty()).then_some(rid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rid_is_read_from_the_end_of_an_errmsg() {
        let errmsg = "reach max api daily quota limit rid: 64eed8de-4cdaca9b-1be8f193";
        assert_eq!(rid(errmsg), Some("64eed8de-4cdaca9b-1be8f193"));
        assert_eq!(
            rid("invalid credential rid: 6620d1f0-5e6f, try again"),
            Some("6620d1f0-5e6f")
        );
        assert_eq!(rid("system error"), None);
        assert_eq!(rid("hint: [uAgBWA0486e669] rid: "), None);
    }

    #[test]
    fn rejected_token_codes() {
        for code in [40001, 40014, 42001] {
            assert!(is_token_rejected(code));
        }
        for code in [0, -1, 40013, 40125, 45009] {
            assert!(!is_token_rejected(code));
        }
    }

    #[test]
    fn explains_the_ip_whitelist_error_with_the_ip() {
        let errmsg = "invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist rid: 1";
        assert_eq!(reported_ip(errmsg), Some("203.0.113.9"));
        let text = explain_errcode(40164, errmsg);
        assert!(text.contains("203.0.113.9"));
        assert!(text.contains("WECHAT_API_BASE"));
        assert_eq!(
            reported_ip("invalid ip 198.51.100.1, not in whitelist"),
            Some("198.51.100.1")
        );
        assert_eq!(reported_ip("something else"), None);
    }

    #[test]
    fn the_ip_whitelist_family_names_the_ip_and_both_fixes() {
        for (errcode, errmsg) in [
            (
                40164,
                "invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist",
            ),
            (
                61004,
                "access clientip is not registered requestIP: 203.0.113.9 rid: 1",
            ),
            (
                89503,
                "this call from 203.0.113.9 needs the administrator's confirmation",
            ),
            (89506, "ip 203.0.113.9 refused twice"),
        ] {
            assert!(is_ip_whitelist_error(errcode));
            let text = explain_errcode(errcode, errmsg);
            assert!(text.contains("203.0.113.9"), "{text}");
            assert!(
                text.contains("whitelist") && text.contains("WECHAT_API_BASE"),
                "{text}"
            );
        }
        assert!(explain_errcode(89501, "waiting").contains("did not say"));
    }

    #[test]
    fn reported_ips() {
        assert_eq!(
            reported_ip("invalid ip 198.51.100.1, not in whitelist"),
            Some("198.51.100.1")
        );
        assert_eq!(reported_ip("requestIP: 1.2.3.4 rid: 5.6"), Some("1.2.3.4"));
        assert_eq!(reported_ip("version 1.2.3 only"), None);
        assert_eq!(reported_ip("999.1.1.1"), None);
    }

    #[test]
    fn credential_errors() {
        for code in [40001, 40013, 40125, 40243] {
            assert!(is_credential_error(code));
            assert!(explain_errcode(code, "").contains("until the configuration changes"));
        }
        assert!(!is_credential_error(-1));
        assert!(!is_credential_error(45009));
    }
}
