//! Request bodies of the HTTP API. Pure.

use crate::error::AppError;
use serde_json::Value;

/// The body of `POST /token/refresh`: `{"stale_token":"…"}` names the token WeChat rejected;
/// no body (or no `stale_token`) forces a refresh.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_body_forces_a_refresh() {
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
}
