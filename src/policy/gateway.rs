//! The API gateway's forwarding rules: which paths are forwarded, which paths are refused before
//! anything is sent, which headers pass either way, which calls carry the appsecret, and which
//! bodies are kept (for a retry) or read (for an errcode) rather than streamed. Pure.
//!
//! A gateway is a security boundary: the upstream origin is fixed by configuration, so what is
//! left to check is that a client-chosen path cannot step outside WeChat's API (no dot
//! segments, no empty segments, no backslashes, no encoded separators, no absolute URL), and
//! that nothing of the client's own (its key, cookies, addresses) is passed on.

use crate::error::wechat_codes::rid;
use crate::error::AppError;
use crate::policy::accounts::AccountKind;

/// `GATEWAY_PATH_PREFIXES`' default: WeChat's API families.
pub const DEFAULT_PATH_PREFIXES: &str = "/cgi-bin/,/sns/,/wxa/,/wxaapi/,/datacube/,/card/,\
/customservice/,/merchant/,/semantic/,/shop/,/product/,/union/,/channels/,/tcb/,/wxopen/";

/// The only request headers forwarded upstream (the body goes too). Never `Authorization`,
/// `Cookie`, `Host`, `CF-*`, `X-Forwarded-*` or the client's address.
pub const FORWARDED_REQUEST_HEADERS: [&str; 2] = ["content-type", "accept"];

/// The only answer headers passed back: what the body is, and the file name of a download
/// (SDKs such as EasyWeChat name a saved media file after it).
pub const PASSED_BACK_ANSWER_HEADERS: [&str; 2] = ["content-type", "content-disposition"];

/// Request bodies up to this size are kept, so that a call WeChat refused for its token can be
/// sent again; larger ones are streamed upstream and not retried.
pub const MAX_KEPT_BODY_BYTES: usize = 1 << 20;

/// How long a call whose body streams may take: WeChat answers only once it has the whole body,
/// which comes at the client's pace (`UPSTREAM_TIMEOUT_MS` covers the others).
pub const STREAMED_BODY_BUDGET_MS: u64 = 60_000;

/// Answers are read for an errcode only when JSON or text and at most this large; all others
/// (media downloads, large lists) stream back untouched.
pub const MAX_INSPECTED_BYTES: usize = 64 * 1024;

/// Whether an answer of this type and declared length may be read for an errcode (one with no
/// declared length is read up to [`MAX_INSPECTED_BYTES`] and streamed past it).
pub fn inspects_answer(content_type: Option<&str>, declared_len: Option<u64>) -> bool {
    let textual = content_type.is_some_and(|t| {
        let t = t.trim_start().to_ascii_lowercase();
        t.starts_with("application/json") || t.starts_with("text/")
    });
    textual && declared_len.is_none_or(|len| len <= MAX_INSPECTED_BYTES as u64)
}

/// Whether an answer of this type is a file (an image, a voice, a download): one that says it
/// is neither JSON nor text. One that says nothing is not taken for a file.
pub fn is_file(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| {
        let t = t.trim_start().to_ascii_lowercase();
        !(t.starts_with("application/json") || t.starts_with("text/"))
    })
}

/// Whether an answer's status is a redirect, which the edge never follows: the egress key,
/// and a body, would go to wherever it points.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// What WeChat said in an answer's body, if it is a JSON object with an `errcode`: the code,
/// and the rid its `errmsg` names.
pub fn errcode(body: &[u8]) -> Option<Said> {
    #[derive(serde::Deserialize)]
    struct Answer {
        errcode: Option<i64>,
        errmsg: Option<String>,
    }
    let answer = serde_json::from_slice::<Answer>(body).ok()?;
    Some(Said {
        errcode: answer.errcode?,
        rid: answer.errmsg.as_deref().and_then(rid).map(str::to_owned),
    })
}

/// An answer's `errcode`, and WeChat's request id if its `errmsg` has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Said {
    pub errcode: i64,
    pub rid: Option<String>,
}

/// `GATEWAY_PATH_PREFIXES`: comma-separated path prefixes such as `/cgi-bin/`, each of letters,
/// digits, `_` and `-` between a leading and a trailing `/`.
pub fn path_prefixes(value: Option<&str>) -> Result<Vec<String>, AppError> {
    let text = value.unwrap_or(DEFAULT_PATH_PREFIXES);
    let prefixes: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let well_formed = |p: &str| {
        p.len() > 2
            && p.starts_with('/')
            && p.ends_with('/')
            && p[1..p.len() - 1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    match prefixes.iter().position(|p| !well_formed(p)) {
        _ if prefixes.is_empty() => Err(prefix_error("lists no prefix".into())),
        Some(index) => Err(prefix_error(format!(
            "entry {} is not a path prefix such as /cgi-bin/",
            index + 1
        ))),
        None => Ok(prefixes),
    }
}

fn prefix_error(problem: String) -> AppError {
    AppError::Config {
        variable: "GATEWAY_PATH_PREFIXES",
        problem,
    }
}

/// Whether `path` (as the client sent it, not decoded) may be forwarded: under one of the
/// prefixes, and nothing in it that could reach outside WeChat's API, or past a rule, once an
/// upstream or a proxy decodes or normalises it. WeChat's API paths never need a `%`, so none
/// is taken: a percent-encoded letter would otherwise spell a refused path that the rules
/// below do not recognise and a decoding relay turns back into it. 400 otherwise, before
/// anything is sent.
pub fn check_path(path: &str, prefixes: &[String]) -> Result<(), AppError> {
    let refuse = |why: &str| Err(AppError::BadRequest(format!("gateway path refused: {why}")));
    if !path.starts_with('/') || path.contains("://") {
        return refuse("not a path");
    }
    if path.contains('\\') {
        return refuse("a backslash");
    }
    if path.contains('%') {
        return refuse("a '%' (WeChat's API paths need no percent-encoding)");
    }
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return refuse("a control character or space");
    }
    // Some servers cut a path at `;` (path parameters): what a rule sees must be all of it.
    if path.contains(';') {
        return refuse("a ';'");
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return refuse("a '.' or '..' segment");
    }
    let last = segments.len() - 1;
    if segments
        .iter()
        .enumerate()
        .any(|(i, s)| s.is_empty() && i != last)
    {
        return refuse("an empty segment ('//')");
    }
    if !prefixes.iter().any(|p| path.starts_with(p.as_str())) {
        return Err(AppError::NotFound);
    }
    Ok(())
}

/// The one spelling every rule below matches: lower case, without a trailing `/`, so that
/// `/cgi-bin/COMPONENT/api_get_authorizer_list/` meets the rule of
/// `/cgi-bin/component/api_get_authorizer_list`, whatever WeChat makes of either.
pub fn canonical(path: &str) -> String {
    path.trim_end_matches('/').to_ascii_lowercase()
}

/// The credential a WeChat API call carries, which decides what the edge adds and whether a
/// rejection heals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallCredential {
    /// The account's access_token (most of the API): the edge adds the current one, and a
    /// rejection heals it.
    AccountToken,
    /// The appid and appsecret: mini program login (`/sns/jscode2session`) and web OAuth's
    /// code exchange (`/sns/oauth2/access_token`). The edge checks the client key sent as
    /// `secret` and puts the real ones in. Never retried: a login code is single-use.
    AppSecret,
    /// A user's web OAuth token (`/sns/userinfo`, `/sns/auth`) or refresh token
    /// (`/sns/oauth2/refresh_token`, which also names the appid): the caller's own, forwarded
    /// as sent, keyed only. Never healed: WeChat refusing a user's token says nothing about
    /// the account's, and healing on it would let any caller rotate the account's token.
    UserToken { with_appid: bool },
    /// A third-party platform's login and web OAuth for an authorizer
    /// (`/sns/component/jscode2session`, `/sns/oauth2/component/access_token` and
    /// `refresh_token`): the authorizer's `appid`, the platform's `component_appid` and its
    /// `component_access_token`. Sent once (a code is single-use) and never healed.
    ComponentLogin,
}

pub fn call_credential(path: &str) -> CallCredential {
    match canonical(path).as_str() {
        "/sns/jscode2session" | "/sns/oauth2/access_token" => CallCredential::AppSecret,
        "/sns/userinfo" | "/sns/auth" => CallCredential::UserToken { with_appid: false },
        "/sns/oauth2/refresh_token" => CallCredential::UserToken { with_appid: true },
        "/sns/component/jscode2session"
        | "/sns/oauth2/component/access_token"
        | "/sns/oauth2/component/refresh_token" => CallCredential::ComponentLogin,
        _ => CallCredential::AccountToken,
    }
}

impl CallCredential {
    /// Whether a rejection of this call's credential may heal the account's token: only when
    /// the call carried the account's own token.
    pub fn heals(self) -> bool {
        self == Self::AccountToken
    }
}

/// The call an account of `kind` makes for `path`: an authorizer logs its users in through
/// the platform (WeChat's component variants, with the platform's credentials: an authorizer
/// has no appsecret here), so its login and OAuth paths become theirs. The platform itself
/// has no users: its login calls name an authorizer.
pub fn for_account(
    kind: AccountKind,
    path: &str,
    credential: CallCredential,
) -> Result<(String, CallCredential), AppError> {
    use CallCredential::*;
    let component_variant = |path: &str| match canonical(path).as_str() {
        "/sns/jscode2session" => Some("/sns/component/jscode2session"),
        "/sns/oauth2/access_token" => Some("/sns/oauth2/component/access_token"),
        "/sns/oauth2/refresh_token" => Some("/sns/oauth2/component/refresh_token"),
        _ => None,
    };
    match (kind, credential) {
        // Their secrets (a suite's, the provider's, a corporation's permanent code) go to
        // WeCom's token calls only, never into a forwarded URL.
        (
            AccountKind::WeComSuite | AccountKind::WeComProvider | AccountKind::WeComCorp,
            AppSecret | UserToken { .. } | ComponentLogin,
        ) => Err(AppError::BadRequest(
            "WeChat's login and OAuth calls are not a WeCom service provider's".into(),
        )),
        (AccountKind::Authorizer, AppSecret | UserToken { with_appid: true }) => {
            match component_variant(path) {
                Some(variant) => Ok((variant.to_owned(), ComponentLogin)),
                None => Ok((path.to_owned(), credential)),
            }
        }
        (AccountKind::Component, AppSecret | UserToken { .. } | ComponentLogin) => {
            Err(AppError::BadRequest(
                "the platform has no users of its own: name the authorizer \
                 (?account=<its appid>)"
                    .into(),
            ))
        }
        (AccountKind::Authorizer, _) | (_, AccountToken | AppSecret | UserToken { .. }) => {
            Ok((path.to_owned(), credential))
        }
        (_, ComponentLogin) => Err(AppError::BadRequest(
            "third-party login is for an authorizer of the platform (WECHAT_COMPONENT)".into(),
        )),
    }
}

/// The platform's calls that WeChat documents with `access_token=<component_access_token>`
/// (its domain settings); its other `/cgi-bin/component/` calls take `component_access_token`,
/// and its calls elsewhere (the code templates under `/wxa/`) `access_token`.
const COMPONENT_CALLS_WITH_ACCESS_TOKEN: [&str; 3] = [
    "/cgi-bin/component/modify_wxa_server_domain",
    "/cgi-bin/component/get_domain_confirmfile",
    "/cgi-bin/component/modify_wxa_jump_domain",
];

/// The query parameter an account's token goes in for a call to `path`.
pub fn token_parameter(kind: AccountKind, path: &str) -> &'static str {
    let path = canonical(path);
    let component_named = path.starts_with("/cgi-bin/component/")
        && !COMPONENT_CALLS_WITH_ACCESS_TOKEN.contains(&path.as_str());
    match kind {
        AccountKind::Component if component_named => "component_access_token",
        AccountKind::WeComSuite => "suite_access_token",
        AccountKind::WeComProvider => "provider_access_token",
        _ => "access_token",
    }
}

/// The calls the server makes itself, never on a caller's behalf: the platform's that carry
/// or answer its secrets (the appsecret, verify tickets, authorization codes, refresh
/// tokens), and every account's token and ticket calls and quota clears (a caller through
/// the whitelisted egress could otherwise rotate or force-kill a token, or spend WeChat's ten
/// clears a month), and a WeCom service provider's that carry its secrets, suite tickets,
/// authorization codes or permanent codes. The compatible endpoints answer SDKs' token and
/// ticket calls instead.
const SERVER_ONLY_PATHS: [&str; 21] = [
    "/cgi-bin/component/api_component_token",
    "/cgi-bin/component/api_authorizer_token",
    "/cgi-bin/component/api_query_auth",
    "/cgi-bin/component/api_get_authorizer_list",
    "/cgi-bin/component/api_start_push_ticket",
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/cgi-bin/gettoken",
    "/cgi-bin/ticket/getticket",
    "/cgi-bin/get_jsapi_ticket",
    "/cgi-bin/ticket/get",
    "/cgi-bin/clear_quota",
    "/cgi-bin/clear_quota/v2",
    "/cgi-bin/component/clear_quota",
    "/cgi-bin/service/get_suite_token",
    "/cgi-bin/service/get_provider_token",
    "/cgi-bin/service/get_corp_token",
    "/cgi-bin/service/get_permanent_code",
    "/cgi-bin/service/v2/get_permanent_code",
    "/cgi-bin/service/get_auth_info",
    "/cgi-bin/service/v2/get_auth_info",
];

/// 403 for a call the gateway never forwards, however it is spelt.
pub fn check_server_only_path(path: &str) -> Result<(), AppError> {
    match SERVER_ONLY_PATHS.contains(&canonical(path).as_str()) {
        true => Err(AppError::ForbiddenRoute),
        false => Ok(()),
    }
}

/// Whether the answers of an account of this kind may carry an authorizer's refresh token:
/// every answer to a call made with the component token or for an authorizer, whatever the
/// path, is read whole and the tokens taken out (one that cannot be read is not passed on).
pub fn redacts_answers(kind: AccountKind) -> bool {
    matches!(kind, AccountKind::Component | AccountKind::Authorizer)
}

/// Answers the platform's accounts get are read whole, to take refresh tokens out, up to this
/// size (an authorizer's follower list of 10,000 openids is about 300 KiB); a larger one is
/// not passed on.
pub const MAX_REDACTED_BYTES: usize = 1 << 20;

/// Takes every refresh token out of a platform answer; whether there was one. The server
/// keeps the real ones: a caller holding one could refresh behind its back and kill its token.
/// A user's own OAuth refresh token (`keep_users`: the answer of a login or OAuth call) is the
/// caller's and stays; an authorizer's never does.
pub fn redact_refresh_tokens(value: &mut serde_json::Value, keep_users: bool) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let mut found = map.remove("authorizer_refresh_token").is_some();
            if !keep_users {
                found |= map.remove("refresh_token").is_some();
            }
            map.values_mut().fold(found, |found, v| {
                redact_refresh_tokens(v, keep_users) | found
            })
        }
        serde_json::Value::Array(items) => items.iter_mut().fold(false, |found, v| {
            redact_refresh_tokens(v, keep_users) | found
        }),
        _ => false,
    }
}

/// Whether a request header may be forwarded upstream.
pub fn forwards_header(name: &str) -> bool {
    FORWARDED_REQUEST_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        path_prefixes(None).unwrap()
    }

    #[test]
    fn the_default_prefixes_are_wechats_api_families() {
        let prefixes = defaults();
        assert_eq!(prefixes.len(), 15);
        assert!(prefixes.contains(&"/cgi-bin/".to_owned()));
        assert!(prefixes.contains(&"/wxopen/".to_owned()));
        assert_eq!(
            path_prefixes(Some(" /cgi-bin/ , /sns/ ,")).unwrap(),
            vec!["/cgi-bin/".to_owned(), "/sns/".to_owned()]
        );
    }

    #[test]
    fn malformed_prefixes_are_named_by_position() {
        for (value, problem) in [
            ("", "lists no prefix"),
            ("/cgi-bin/,cgi-bin/", "entry 2"),
            ("/cgi-bin", "entry 1"),
            ("/a/b/", "entry 1"),
            ("//", "entry 1"),
        ] {
            match path_prefixes(Some(value)) {
                Err(AppError::Config { problem: p, .. }) => assert!(p.contains(problem), "{p}"),
                other => panic!("{value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_platforms_secret_calls_are_never_forwarded_and_refresh_tokens_never_returned() {
        for path in [
            "/cgi-bin/component/api_get_authorizer_list",
            "/cgi-bin/component/api_get_authorizer_list/",
            "/cgi-bin/COMPONENT/Api_Get_Authorizer_List",
            "/cgi-bin/component/api_authorizer_token//",
        ] {
            assert_eq!(
                check_server_only_path(path),
                Err(AppError::ForbiddenRoute),
                "{path}"
            );
        }
        assert_eq!(
            check_server_only_path("/cgi-bin/component/api_get_authorizer_info"),
            Ok(())
        );
        for path in [
            "/cgi-bin/stable_token",
            "/cgi-bin/Token/",
            "/cgi-bin/clear_quota/v2",
        ] {
            assert_eq!(
                check_server_only_path(path),
                Err(AppError::ForbiddenRoute),
                "{path}"
            );
        }
        let mut answer = serde_json::json!({"authorization_info": {"authorizer_appid": "wxa",
            "authorizer_refresh_token": "R", "func_info": [{"refresh_token": "R2"}]}});
        assert!(redact_refresh_tokens(&mut answer, false));
        assert!(!answer.to_string().contains("R\"") && !answer.to_string().contains("R2"));
        assert_eq!(answer["authorization_info"]["authorizer_appid"], "wxa");
        assert!(!redact_refresh_tokens(
            &mut serde_json::json!({"errcode": 0}),
            false
        ));
        // A user's OAuth refresh token is the caller's; an authorizer's never is.
        let mut oauth = serde_json::json!({"access_token": "U", "refresh_token": "UR",
            "authorizer_refresh_token": "R"});
        assert!(redact_refresh_tokens(&mut oauth, true));
        assert_eq!(
            oauth,
            serde_json::json!({"access_token": "U", "refresh_token": "UR"})
        );
        assert!(redacts_answers(AccountKind::Component));
        assert!(redacts_answers(AccountKind::Authorizer));
        assert!(!redacts_answers(AccountKind::OfficialAccount));
    }

    #[test]
    fn a_call_carries_the_account_token_unless_it_logs_in_or_acts_for_a_user() {
        use CallCredential::*;
        assert_eq!(call_credential("/cgi-bin/user/info"), AccountToken);
        assert_eq!(call_credential("/sns/jscode2session"), AppSecret);
        assert_eq!(call_credential("/sns/oauth2/access_token"), AppSecret);
        assert_eq!(
            call_credential("/sns/userinfo"),
            UserToken { with_appid: false }
        );
        assert_eq!(
            call_credential("/sns/oauth2/refresh_token"),
            UserToken { with_appid: true }
        );
        assert_eq!(
            call_credential("/sns/component/jscode2session"),
            ComponentLogin
        );
        assert_eq!(
            call_credential("/sns/oauth2/component/refresh_token"),
            ComponentLogin
        );
        assert!(AccountToken.heals());
        assert!(!AppSecret.heals() && !ComponentLogin.heals());
    }

    #[test]
    fn every_spelling_of_a_user_path_meets_the_same_rule() {
        use CallCredential::*;
        for path in [
            "/sns/userinfo/",
            "/sns/USERINFO",
            "/SNS/UserInfo//",
            "/sns/auth/",
        ] {
            assert_eq!(
                call_credential(path),
                UserToken { with_appid: false },
                "{path}"
            );
        }
        assert_eq!(call_credential("/sns/JSCODE2SESSION/"), AppSecret);
        assert_eq!(canonical("/cgi-bin/Component/X/"), "/cgi-bin/component/x");
    }

    #[test]
    fn an_authorizer_logs_its_users_in_through_the_platform() {
        use CallCredential::*;
        let authorizer = AccountKind::Authorizer;
        for (path, sent) in [
            ("/sns/jscode2session", "/sns/component/jscode2session"),
            (
                "/sns/oauth2/access_token",
                "/sns/oauth2/component/access_token",
            ),
            (
                "/sns/oauth2/refresh_token/",
                "/sns/oauth2/component/refresh_token",
            ),
        ] {
            assert_eq!(
                for_account(authorizer, path, call_credential(path)),
                Ok((sent.to_owned(), ComponentLogin)),
                "{path}"
            );
        }
        let userinfo = for_account(
            authorizer,
            "/sns/userinfo",
            call_credential("/sns/userinfo"),
        );
        assert_eq!(
            userinfo,
            Ok(("/sns/userinfo".to_owned(), UserToken { with_appid: false }))
        );
        let login = "/sns/component/jscode2session";
        assert!(matches!(
            for_account(AccountKind::Component, login, ComponentLogin),
            Err(AppError::BadRequest(_))
        ));
        assert!(matches!(
            for_account(AccountKind::OfficialAccount, login, ComponentLogin),
            Err(AppError::BadRequest(_))
        ));
        assert!(for_account(AccountKind::Component, "/wxa/gettemplatelist", AccountToken).is_ok());
    }

    #[test]
    fn a_wecom_service_providers_secret_calls_are_never_forwarded() {
        for path in [
            "/cgi-bin/service/get_suite_token",
            "/cgi-bin/service/get_corp_token/",
            "/cgi-bin/SERVICE/v2/get_permanent_code",
            "/cgi-bin/service/v2/get_auth_info",
            "/cgi-bin/service/get_provider_token",
        ] {
            assert_eq!(
                check_server_only_path(path),
                Err(AppError::ForbiddenRoute),
                "{path}"
            );
        }
        assert!(check_server_only_path("/cgi-bin/service/get_pre_auth_code").is_ok());
        assert!(
            check_server_only_path("/cgi-bin/ticket/get").is_err(),
            "agent_config tickets"
        );
        let semicolon = check_path("/cgi-bin/service/get_corp_token;x", &defaults());
        assert!(matches!(semicolon, Err(AppError::BadRequest(_))));
        for kind in [
            AccountKind::WeComSuite,
            AccountKind::WeComProvider,
            AccountKind::WeComCorp,
        ] {
            let login = "/sns/jscode2session";
            let refused = for_account(kind, login, call_credential(login));
            assert!(matches!(refused, Err(AppError::BadRequest(_))), "{kind:?}");
        }
        let path = "/cgi-bin/service/get_pre_auth_code";
        assert_eq!(
            token_parameter(AccountKind::WeComSuite, path),
            "suite_access_token"
        );
        let path = "/cgi-bin/service/get_license_info";
        assert_eq!(
            token_parameter(AccountKind::WeComProvider, path),
            "provider_access_token"
        );
        assert_eq!(
            token_parameter(AccountKind::WeComCorp, "/cgi-bin/user/get"),
            "access_token"
        );
    }

    #[test]
    fn the_component_token_goes_in_the_parameter_wechat_documents() {
        let component = AccountKind::Component;
        for (path, name) in [
            (
                "/cgi-bin/component/api_get_authorizer_info",
                "component_access_token",
            ),
            (
                "/cgi-bin/component/fastregisterweapp",
                "component_access_token",
            ),
            (
                "/cgi-bin/component/modify_wxa_server_domain",
                "access_token",
            ),
            ("/cgi-bin/component/get_domain_confirmfile", "access_token"),
            ("/wxa/gettemplatedraftlist", "access_token"),
            ("/wxa/addtotemplate", "access_token"),
            ("/wxa/gettemplatelist", "access_token"),
            ("/wxa/deletetemplate", "access_token"),
        ] {
            assert_eq!(token_parameter(component, path), name, "{path}");
        }
        assert_eq!(
            token_parameter(AccountKind::Authorizer, "/cgi-bin/component/x"),
            "access_token"
        );
    }

    #[test]
    fn ordinary_api_paths_pass() {
        for path in [
            "/cgi-bin/user/info",
            "/cgi-bin/message/custom/send",
            "/sns/jscode2session",
            "/wxa/getwxacodeunlimit",
            "/cgi-bin/media/get",
        ] {
            assert_eq!(check_path(path, &defaults()), Ok(()), "{path}");
        }
    }

    #[test]
    fn paths_that_could_leave_the_api_are_refused_before_anything_is_sent() {
        for path in [
            "/cgi-bin/../admin",
            "/cgi-bin/./user/info",
            "/cgi-bin//user/info",
            "/cgi-bin/user\\info",
            "/cgi-bin/%2e%2e/admin",
            "/cgi-bin/..%2Fadmin",
            "/cgi-bin/a%5cb",
            "/cgi-bin/a%00b",
            "/cgi-bin/compone%6Et/api_get_authorizer_list",
            "/sns/user%69nfo",
            "/cgi-bin/user/info%20",
            "https://evil.example/cgi-bin/x",
            "cgi-bin/user/info",
            "/cgi-bin/a b",
        ] {
            assert!(
                matches!(check_path(path, &defaults()), Err(AppError::BadRequest(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn paths_outside_the_prefixes_are_not_found() {
        for path in ["/admin", "/cgi-binx/user", "/", "/token"] {
            assert_eq!(
                check_path(path, &defaults()),
                Err(AppError::NotFound),
                "{path}"
            );
        }
    }

    #[test]
    fn only_content_type_and_accept_go_upstream() {
        for name in ["Content-Type", "accept"] {
            assert!(forwards_header(name));
        }
        for name in [
            "Authorization",
            "Cookie",
            "Host",
            "CF-Connecting-IP",
            "X-Forwarded-For",
            "X-Real-IP",
        ] {
            assert!(!forwards_header(name), "{name}");
        }
    }

    #[test]
    fn only_small_json_or_text_answers_are_read() {
        let json = Some("application/json; charset=utf-8");
        assert!(inspects_answer(json, Some(120)));
        assert!(inspects_answer(Some("text/plain"), None));
        assert!(inspects_answer(json, Some(MAX_INSPECTED_BYTES as u64)));
        assert!(!inspects_answer(json, Some(MAX_INSPECTED_BYTES as u64 + 1)));
        assert!(!inspects_answer(Some("image/jpeg"), Some(10)));
        assert!(!inspects_answer(None, Some(10)));
    }

    #[test]
    fn an_errcode_is_read_from_a_json_object_only() {
        let said = |errcode, rid: Option<&str>| Said {
            errcode,
            rid: rid.map(str::to_owned),
        };
        assert_eq!(
            errcode(br#"{"errcode":40001,"errmsg":"x","a":[1,{}]}"#),
            Some(said(40001, None))
        );
        assert_eq!(
            errcode(br#"{"errcode":45009,"errmsg":"quota rid: 64eed8de-4cd"}"#),
            Some(said(45009, Some("64eed8de-4cd")))
        );
        assert_eq!(errcode(br#"{"openid":"o"}"#), None);
        assert_eq!(errcode(b"[1,2]"), None);
        assert_eq!(errcode(b"\xff\xd8 binary"), None);
    }
}
