//! Rules of the HTTP API that need no runtime: request bodies, size and content-type limits,
//! CORS. Pure.

use crate::error::AppError;
use serde_json::Value;

/// The body of `POST /token/refresh`: `{"stale_token":"…"}` names the token WeChat rejected;
/// no body (or no `stale_token`) asks for a new token.
pub fn passive_refresh_body(body: &str) -> Result<Option<String>, AppError> {
    if body.trim().is_empty() {
        return Ok(None);
    }
    let shape = || {
        AppError::BadRequest(
            "the body must be empty or a JSON object such as {\"stale_token\":\"<token WeChat \
             rejected>\"}"
                .into(),
        )
    };
    let json: Value = serde_json::from_str(body).map_err(|_| shape())?;
    let object = json.as_object().ok_or_else(shape)?;
    match object.get("stale_token") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(token)) if !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
        Some(_) => Err(AppError::BadRequest(
            "stale_token must be a non-empty string".into(),
        )),
    }
}

/// The path of a URL as the runtime serializes it (WHATWG, special scheme): from the first `/`
/// after the host to the query, percent-encoding kept. That serialization always has a path,
/// in which `?` and `#` are encoded, so nothing needs parsing again.
pub fn path_of_url(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let Some(start) = url[after_scheme..].find('/') else {
        return "/";
    };
    let path = &url[after_scheme + start..];
    &path[..path.find(['?', '#']).unwrap_or(path.len())]
}

/// Larger request bodies are refused (413): no request of this API needs more.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// 413 when the declared or actual body size is over the limit.
pub fn check_body_size(
    content_length: Option<&str>,
    actual: Option<usize>,
) -> Result<(), AppError> {
    let declared = content_length.and_then(|v| v.trim().parse::<usize>().ok());
    if declared
        .max(actual)
        .is_some_and(|size| size > MAX_BODY_BYTES)
    {
        return Err(AppError::PayloadTooLarge { limit_kib: 8 });
    }
    Ok(())
}

/// 415 unless a body is JSON. An empty body may come with any content type, or none.
pub fn check_content_type(content_type: Option<&str>, body_is_empty: bool) -> Result<(), AppError> {
    let media_type = content_type.map(|v| {
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match media_type.as_deref() {
        _ if body_is_empty => Ok(()),
        Some("application/json") => Ok(()),
        _ => Err(AppError::UnsupportedMediaType),
    }
}

/// CORS response headers for a request from `origin`, if `CORS_ALLOW_ORIGINS` lets it in
/// (`*` lets every origin in). None: no CORS headers at all.
pub fn cors_headers(
    origin: Option<&str>,
    allowed: &[String],
) -> Option<Vec<(&'static str, String)>> {
    let origin = origin?;
    let permitted = allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin));
    permitted.then(|| {
        vec![
            ("access-control-allow-origin", origin.to_owned()),
            (
                "access-control-allow-methods",
                "GET, HEAD, POST, OPTIONS".to_owned(),
            ),
            (
                "access-control-allow-headers",
                "Authorization, Content-Type".to_owned(),
            ),
            ("access-control-max-age", "600".to_owned()),
            ("vary", "Origin".to_owned()),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_read_off_the_serialized_url_as_it_is() {
        let cases = [
            ("https://edge.example/token?account=a", "/token"),
            (
                "http://127.0.0.1:8787/gateway/cgi-bin/user/info",
                "/gateway/cgi-bin/user/info",
            ),
            (
                "https://edge.example/cgi-bin/compone%6Et/x?y=1#z",
                "/cgi-bin/compone%6Et/x",
            ),
            ("https://edge.example/a/b/#frag", "/a/b/"),
            ("https://edge.example", "/"),
            ("https://edge.example/", "/"),
        ];
        for (url, path) in cases {
            assert_eq!(path_of_url(url), path, "{url}");
        }
    }

    #[test]
    fn an_empty_body_names_no_token() {
        assert_eq!(passive_refresh_body(""), Ok(None));
        assert_eq!(passive_refresh_body(" \n"), Ok(None));
        assert_eq!(passive_refresh_body("{}"), Ok(None));
        assert_eq!(passive_refresh_body(r#"{"stale_token":null}"#), Ok(None));
    }

    #[test]
    fn names_the_stale_token() {
        assert_eq!(
            passive_refresh_body(r#"{"stale_token":"AT-1"}"#),
            Ok(Some("AT-1".into()))
        );
    }

    #[test]
    fn rejects_malformed_bodies() {
        for body in [
            "{",
            "[]",
            "\"AT\"",
            r#"{"stale_token":""}"#,
            r#"{"stale_token":5}"#,
        ] {
            assert!(
                matches!(passive_refresh_body(body), Err(AppError::BadRequest(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn body_limits() {
        assert_eq!(check_body_size(Some("8192"), Some(8192)), Ok(()));
        assert_eq!(
            check_body_size(Some("8193"), None),
            Err(AppError::PayloadTooLarge { limit_kib: 8 })
        );
        assert_eq!(
            check_body_size(None, Some(9000)),
            Err(AppError::PayloadTooLarge { limit_kib: 8 })
        );
        assert_eq!(check_body_size(Some("junk"), Some(10)), Ok(()));
    }

    #[test]
    fn content_types() {
        assert_eq!(check_content_type(Some("application/json"), false), Ok(()));
        assert_eq!(
            check_content_type(Some("Application/JSON; charset=utf-8"), false),
            Ok(())
        );
        assert_eq!(check_content_type(None, true), Ok(()));
        assert_eq!(check_content_type(Some("text/plain"), true), Ok(()));
        assert_eq!(
            check_content_type(Some("text/plain"), false),
            Err(AppError::UnsupportedMediaType)
        );
        assert_eq!(
            check_content_type(None, false),
            Err(AppError::UnsupportedMediaType)
        );
    }

    #[test]
    fn cors_only_for_listed_origins() {
        let allowed = vec!["https://a.example".to_owned()];
        assert!(cors_headers(Some("https://a.example"), &allowed).is_some());
        assert!(cors_headers(Some("https://b.example"), &allowed).is_none());
        assert!(cors_headers(None, &allowed).is_none());
        assert!(cors_headers(Some("https://a.example"), &[]).is_none());
        let any = vec!["*".to_owned()];
        let headers = cors_headers(Some("https://b.example"), &any).unwrap();
        assert!(headers.contains(&(
            "access-control-allow-origin",
            "https://b.example".to_owned()
        )));
    }
}
