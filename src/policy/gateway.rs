//! The API gateway's forwarding rules: which paths are forwarded, which paths are refused before
//! anything is sent, which headers pass either way, which calls carry the appsecret, and which
//! bodies are kept (for a retry) or read (for an errcode) rather than streamed. Pure.
//!
//! A gateway is a security boundary: the upstream origin is fixed by configuration, so what is
//! left to check is that a client-chosen path cannot step outside WeChat's API (no dot
//! segments, no empty segments, no backslashes, no encoded separators, no absolute URL), and
//! that nothing of the client's own (its key, cookies, addresses) is passed on.

use crate::error::AppError;

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

/// The `errcode` of an answer's body, if it is a JSON object that has one.
pub fn errcode(body: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Errcode {
        errcode: Option<i64>,
    }
    serde_json::from_slice::<Errcode>(body).ok()?.errcode
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
/// prefixes, and nothing in it that could reach outside WeChat's API once an upstream or a
/// proxy decodes or normalises it. 400 otherwise, before anything is sent.
pub fn check_path(path: &str, prefixes: &[String]) -> Result<(), AppError> {
    let refuse = |why: &str| Err(AppError::BadRequest(format!("gateway path refused: {why}")));
    if !path.starts_with('/') || path.contains("://") {
        return refuse("not a path");
    }
    if path.contains('\\') {
        return refuse("a backslash");
    }
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return refuse("an encoded '/', '\\', '.' or NUL");
    }
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return refuse("a control character or space");
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
}

pub fn call_credential(path: &str) -> CallCredential {
    match path {
        "/sns/jscode2session" | "/sns/oauth2/access_token" => CallCredential::AppSecret,
        "/sns/userinfo" | "/sns/auth" => CallCredential::UserToken { with_appid: false },
        "/sns/oauth2/refresh_token" => CallCredential::UserToken { with_appid: true },
        _ => CallCredential::AccountToken,
    }
}

/// The platform calls that carry or answer its secrets (the appsecret, verify tickets,
/// authorization codes, refresh tokens): the server makes them itself, never on a caller's
/// behalf (its compatible `api_component_token` and `api_authorizer_token` answer SDKs).
const PLATFORM_SECRET_PATHS: [&str; 5] = [
    "/cgi-bin/component/api_component_token",
    "/cgi-bin/component/api_authorizer_token",
    "/cgi-bin/component/api_query_auth",
    "/cgi-bin/component/api_get_authorizer_list",
    "/cgi-bin/component/api_start_push_ticket",
];

/// 403 for a platform call the gateway never forwards.
pub fn check_platform_path(path: &str) -> Result<(), AppError> {
    match PLATFORM_SECRET_PATHS.contains(&path) {
        true => Err(AppError::ForbiddenRoute),
        false => Ok(()),
    }
}

/// Whether an answer may carry an authorizer's refresh token (the platform's other calls, such
/// as `api_get_authorizer_info`): it is read whole and the token taken out.
pub fn redacts_answer(path: &str) -> bool {
    path.starts_with("/cgi-bin/component/")
}

/// Takes every refresh token out of a platform answer; whether there was one. The server
/// keeps the real ones: a caller holding one could refresh behind its back and kill its token.
pub fn redact_refresh_tokens(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let mut found = false;
            for key in ["authorizer_refresh_token", "refresh_token"] {
                found |= map.remove(key).is_some();
            }
            map.values_mut()
                .fold(found, |found, v| redact_refresh_tokens(v) | found)
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |found, v| redact_refresh_tokens(v) | found),
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
        assert_eq!(
            check_platform_path("/cgi-bin/component/api_get_authorizer_list"),
            Err(AppError::ForbiddenRoute)
        );
        assert_eq!(
            check_platform_path("/cgi-bin/component/api_get_authorizer_info"),
            Ok(())
        );
        let mut answer = serde_json::json!({"authorization_info": {"authorizer_appid": "wxa",
            "authorizer_refresh_token": "R", "func_info": [{"refresh_token": "R2"}]}});
        assert!(redact_refresh_tokens(&mut answer));
        assert!(!answer.to_string().contains("R\"") && !answer.to_string().contains("R2"));
        assert_eq!(answer["authorization_info"]["authorizer_appid"], "wxa");
        assert!(!redact_refresh_tokens(
            &mut serde_json::json!({"errcode": 0})
        ));
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
        assert_eq!(
            errcode(br#"{"errcode":40001,"errmsg":"x","a":[1,{}]}"#),
            Some(40001)
        );
        assert_eq!(errcode(br#"{"openid":"o"}"#), None);
        assert_eq!(errcode(b"[1,2]"), None);
        assert_eq!(errcode(b"\xff\xd8 binary"), None);
    }
}
