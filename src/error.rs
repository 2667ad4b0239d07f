//! The one error type of the service, and what each variant means over HTTP.
//!
//! Pure: `respond.rs` turns an [`AppError`] into a `worker::Response` in exactly one place, using
//! [`AppError::status`], [`AppError::body`] and [`AppError::retry_after_secs`].
//!
//! Over 400 lines: every variant's status, code, message and body sit side by side, so that
//! one error reads the same in each (WeChat's own codes are in `error/wechat_codes`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Why a call to WeChat did not produce a token. Stored in the Durable Object as the account's
/// last failure, so it is (de)serializable; it never holds a secret (see `wechat::api::scrub`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpstreamFailure {
    /// WeChat answered with a non-zero `errcode`.
    WeChat { errcode: i64, errmsg: String },
    /// WeChat (or the proxy in front of it) answered with a non-2xx HTTP status.
    HttpStatus { status: u16 },
    /// The answer was not the JSON we expect (truncated, HTML error page, missing fields).
    BadResponse { detail: String },
    /// The request could not be sent or the connection failed.
    Unreachable { detail: String },
    /// No complete answer within the upstream timeout.
    Timeout { after_ms: u64 },
    /// The fixed-IP egress relay refused the call: the relay key does not match.
    EgressRefused,
    /// WeChat (or the relay) answered with a redirect, which is never followed.
    Redirect { status: u16 },
}

/// What to check when the platform has no usable verify ticket.
const NO_VERIFY_TICKET_ADVICE: &str = "No current component_verify_ticket: WeChat pushes one \
    every ten minutes to the platform's 授权事件接收URL, which must be \
    https://<this worker>/component/events, with WECHAT_COMPONENT's token and encoding_aes_key \
    equal to the platform's settings. The server has asked WeChat to push one again \
    (api_start_push_ticket, at most once an hour).";

impl UpstreamFailure {
    fn code(&self) -> &'static str {
        match self {
            Self::WeChat {
                errcode: wechat_codes::VERIFY_TICKET_EXPIRED | wechat_codes::VERIFY_TICKET_INVALID,
                ..
            } => "no_verify_ticket",
            Self::WeChat {
                errcode: wechat_codes::SUITE_TICKET_INVALID,
                ..
            } => "no_suite_ticket",
            Self::WeChat {
                errcode: wechat_codes::REFRESH_TOKEN_INVALID,
                ..
            } => "authorizer_refresh_token_invalid",
            Self::WeChat { .. } => "wechat_error",
            Self::HttpStatus { .. } => "upstream_http_error",
            Self::BadResponse { .. } => "upstream_bad_response",
            Self::Unreachable { .. } => "upstream_unreachable",
            Self::Timeout { .. } => "upstream_timeout",
            Self::EgressRefused => "egress_refused",
            Self::Redirect { .. } => "upstream_redirect",
        }
    }

    /// A platform failure with its own code: no usable verify ticket, or a refused refresh
    /// token.
    fn is_platform_cause(&self) -> bool {
        matches!(
            self,
            Self::WeChat {
                errcode: wechat_codes::VERIFY_TICKET_EXPIRED
                    | wechat_codes::VERIFY_TICKET_INVALID
                    | wechat_codes::SUITE_TICKET_INVALID
                    | wechat_codes::REFRESH_TOKEN_INVALID,
                ..
            }
        )
    }

    fn status(&self) -> u16 {
        match self {
            Self::Timeout { .. } => 504,
            Self::WeChat {
                errcode:
                    wechat_codes::VERIFY_TICKET_EXPIRED
                    | wechat_codes::VERIFY_TICKET_INVALID
                    | wechat_codes::SUITE_TICKET_INVALID,
                ..
            } => 503,
            _ => 502,
        }
    }

    /// A sentence for the operator. For WeChat errors it explains the errcode where we know what
    /// to do about it.
    pub fn describe(&self) -> String {
        match self {
            Self::WeChat { errcode, errmsg } => wechat_codes::explain_errcode(*errcode, errmsg),
            Self::HttpStatus { status } => {
                format!("WeChat answered with HTTP status {status} instead of its JSON.")
            }
            Self::BadResponse { detail } => {
                format!("WeChat's answer could not be read as a token response: {detail}.")
            }
            Self::Unreachable { detail } => format!("WeChat could not be reached: {detail}."),
            Self::Timeout { after_ms } => {
                format!("WeChat did not answer within {after_ms} ms (UPSTREAM_TIMEOUT_MS).")
            }
            Self::EgressRefused => "The egress relay refused the call (HTTP 403): \
                WECHAT_EGRESS_KEY does not match the key the relay expects."
                .into(),
            Self::Redirect { status } => format!(
                "WeChat (or the egress relay) answered with a redirect (HTTP {status}), which \
                 is never followed: check WECHAT_API_BASE and WECOM_API_BASE."
            ),
        }
    }

    fn wechat_fields(&self) -> Option<(i64, &str)> {
        match self {
            Self::WeChat { errcode, errmsg } => Some((*errcode, errmsg)),
            _ => None,
        }
    }

    /// WeChat's request id, when WeChat answered and its `errmsg` names one.
    pub fn rid(&self) -> Option<&str> {
        self.wechat_fields()
            .and_then(|(_, errmsg)| wechat_codes::rid(errmsg))
    }
}

/// A log line's `outcome`: `ok`, or the error's code.
pub fn outcome_code<T>(result: &Result<T, AppError>) -> &str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// Which limit a refresh ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TooSoonReason {
    /// `MIN_REFRESH_INTERVAL_SECS` since the account's last upstream call.
    MinInterval,
    /// stable_token's forced refreshes must be `STABLE_FORCE_SPACING_SECS` apart.
    ForceSpacing,
    /// stable_token allows `STABLE_FORCE_DAILY_LIMIT` forced refreshes per Beijing day.
    ForceDailyLimit,
    /// The account's daily quota is used up (WeChat said 45009, or we counted it).
    QuotaExhausted,
    /// `EXPLICIT_REFRESH_DAILY_LIMIT` explicit refreshes reached WeChat today.
    ExplicitDailyLimit,
    /// `GATEWAY_HEAL_DAILY_LIMIT` gateway heals reached WeChat today.
    HealDailyLimit,
}

impl TooSoonReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::MinInterval => "min_interval",
            Self::ForceSpacing => "force_spacing",
            Self::ForceDailyLimit => "force_daily_limit",
            Self::QuotaExhausted => "quota_exhausted",
            Self::ExplicitDailyLimit => "explicit_daily_limit",
            Self::HealDailyLimit => "gateway_heal_daily_limit",
        }
    }

    fn explain(self, retry_after_secs: u64) -> String {
        match self {
            Self::MinInterval => format!(
                "This account's token was refreshed moments ago (MIN_REFRESH_INTERVAL_SECS); \
                 retry in {retry_after_secs} s."
            ),
            Self::ForceSpacing => format!(
                "WeChat allows stable_token forced refreshes only some time apart \
                 (STABLE_FORCE_SPACING_SECS); retry in {retry_after_secs} s."
            ),
            Self::ForceDailyLimit => format!(
                "This account used all of today's stable_token forced refreshes (WeChat allows \
                 STABLE_FORCE_DAILY_LIMIT a day); the count resets at midnight Beijing time, in \
                 {retry_after_secs} s."
            ),
            Self::QuotaExhausted => format!(
                "This account's daily quota of WeChat calls is used up (errcode 45009, or \
                 DAILY_QUOTA calls counted today); refreshes are paused until midnight Beijing \
                 time, in {retry_after_secs} s. The current token is still served while valid."
            ),
            Self::ExplicitDailyLimit => format!(
                "Explicit refreshes of this account used today's budget \
                 (EXPLICIT_REFRESH_DAILY_LIMIT), so that no client can spend the daily quota; \
                 automatic refreshes go on. The count resets at midnight Beijing time, in \
                 {retry_after_secs} s."
            ),
            Self::HealDailyLimit => format!(
                "Gateway calls whose token WeChat rejected used today's budget of refreshes \
                 (GATEWAY_HEAL_DAILY_LIMIT), so that no caller can spend the daily quota by \
                 provoking rejections; automatic refreshes go on. The count resets at midnight \
                 Beijing time, in {retry_after_secs} s."
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppError {
    /// A variable is missing or malformed. Names the variable, never its value.
    Config {
        variable: &'static str,
        problem: String,
    },
    BadRequest(String),
    /// The body is larger than the route takes (`limit_kib`).
    PayloadTooLarge {
        limit_kib: usize,
    },
    UnsupportedMediaType,
    /// A push whose `msg_signature` is not WeChat's for the platform's token.
    BadSignature,
    /// The platform has no current `component_verify_ticket`: WeChat's pushes do not arrive.
    NoVerifyTicket,
    /// A WeCom suite has no suite ticket younger than 30 minutes: nothing was sent to WeCom.
    NoSuiteTicket,
    /// An authorizer has no refresh token (its authorization's exchange failed, and the
    /// authorizer list does not show it): it must authorize again.
    NoRefreshToken,
    Unauthorized,
    /// An admin route without a valid admin key (the admin API disabled alike).
    AdminUnauthorized,
    /// The request contradicts what is there (an environment account is read-only).
    Conflict(String),
    /// The client key is limited to other accounts.
    ForbiddenAccount,
    /// The client key is limited to other routes.
    ForbiddenRoute,
    NotFound,
    UnknownAccount,
    MethodNotAllowed {
        allow: &'static str,
    },
    RefreshTooSoon {
        retry_after_secs: u64,
        reason: TooSoonReason,
    },
    /// We called WeChat for this request and it failed.
    Upstream(UpstreamFailure),
    /// The account used this month's quota clears (WeChat allows 10 a calendar month).
    ClearQuotaMonthlyLimit {
        retry_after_secs: u64,
    },
    /// No valid token, and WeChat may not be called yet (it failed moments ago).
    NoValidToken {
        last_failure: Option<UpstreamFailure>,
        retry_after_secs: u64,
    },
    Internal(String),
    /// An error the account's Durable Object already answered with, passed on unchanged.
    Relayed {
        status: u16,
        body: Value,
        retry_after_secs: Option<u64>,
    },
}

impl AppError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Config { .. } | Self::Internal(_) => 500,
            Self::Relayed { status, .. } => *status,
            Self::BadRequest(_) => 400,
            Self::PayloadTooLarge { .. } => 413,
            Self::BadSignature => 401,
            Self::NoVerifyTicket | Self::NoSuiteTicket => 503,
            Self::NoRefreshToken => 502,
            Self::UnsupportedMediaType => 415,
            Self::Unauthorized | Self::AdminUnauthorized => 401,
            Self::Conflict(_) => 409,
            Self::ForbiddenAccount | Self::ForbiddenRoute => 403,
            Self::NotFound | Self::UnknownAccount => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::RefreshTooSoon { .. } | Self::ClearQuotaMonthlyLimit { .. } => 429,
            Self::Upstream(failure) => failure.status(),
            Self::NoValidToken { .. } => 503,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Self::Relayed { body, .. } => body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("internal_error"),
            Self::Config { .. } => "config_error",
            Self::BadRequest(_) => "bad_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BadSignature => "bad_signature",
            Self::NoVerifyTicket => "no_verify_ticket",
            Self::NoSuiteTicket => "no_suite_ticket",
            Self::NoRefreshToken => "authorizer_refresh_token_invalid",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unauthorized | Self::AdminUnauthorized => "unauthorized",
            Self::Conflict(_) => "conflict",
            Self::ForbiddenAccount => "forbidden_account",
            Self::ForbiddenRoute => "forbidden_route",
            Self::NotFound => "not_found",
            Self::UnknownAccount => "unknown_account",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::RefreshTooSoon { .. } => "refresh_too_soon",
            Self::ClearQuotaMonthlyLimit { .. } => "clear_quota_monthly_limit",
            Self::Upstream(failure) => failure.code(),
            // The platform's causes say more than "no token": what to check.
            Self::NoValidToken {
                last_failure: Some(failure),
                ..
            } if failure.is_platform_cause() => failure.code(),
            Self::NoValidToken { .. } => "no_valid_token",
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Config { variable, problem } => {
                format!("Configuration error: {variable} {problem}.")
            }
            Self::BadRequest(why) => format!("Malformed request: {why}."),
            Self::PayloadTooLarge { limit_kib } => {
                format!("The request body is larger than this route takes ({limit_kib} KiB).")
            }
            Self::BadSignature => "The push's msg_signature does not match: it is not from \
                WeChat, or WECHAT_COMPONENT's token differs from the platform's message token \
                (消息校验Token). Nothing was stored."
                .into(),
            Self::NoVerifyTicket => NO_VERIFY_TICKET_ADVICE.into(),
            Self::NoSuiteTicket => wechat_codes::explain_errcode(
                wechat_codes::SUITE_TICKET_INVALID,
                "no suite_ticket younger than 30 minutes; nothing was sent to WeCom",
            ),
            Self::NoRefreshToken => "This authorizer has no refresh token (the exchange of its \
                authorization failed, and WeChat's authorizer list does not show it): the \
                account must authorize the platform again (POST /component/preauthcode)."
                .into(),
            Self::UnsupportedMediaType => {
                "Send the request body as JSON, with `Content-Type: application/json`.".into()
            }
            Self::Unauthorized => "Missing or wrong client key: send `Authorization: Bearer \
                <client key>` (if every key is refused, the worker's log names a setting to fix)."
                .into(),
            Self::AdminUnauthorized => "Missing or wrong admin key: send `Authorization: Bearer \
                <admin key>`; a client key is not one, and the admin API exists only where \
                ADMIN_KEYS is set (if every key is refused, the worker's log names a setting to \
                fix)."
                .into(),
            Self::Conflict(why) => format!("Conflict: {why}."),
            Self::ForbiddenAccount => "This client key is not allowed to read that account.".into(),
            Self::ForbiddenRoute => "This client key is not allowed to use this route.".into(),
            Self::NotFound => "No such route.".into(),
            Self::UnknownAccount => "No account with that id is configured.".into(),
            Self::MethodNotAllowed { allow } => format!("Method not allowed here; use {allow}."),
            Self::RefreshTooSoon {
                retry_after_secs,
                reason,
            } => reason.explain(*retry_after_secs),
            Self::ClearQuotaMonthlyLimit { retry_after_secs } => format!(
                "WeChat allows 10 quota clears a calendar month (Beijing time) per account, and \
                 this account has used them; the next is allowed in {retry_after_secs} s, when \
                 the month turns. WeChat was not called."
            ),
            Self::Upstream(failure) => failure.describe(),
            Self::NoValidToken {
                last_failure,
                retry_after_secs,
            } => {
                let cause = last_failure
                    .as_ref()
                    .map(|f| format!(" Last failure: {}", f.describe()))
                    .unwrap_or_default();
                format!(
                    "No valid access_token to serve; the next attempt is allowed in \
                     {retry_after_secs} s.{cause}"
                )
            }
            Self::Internal(what) => format!("Internal error: {what}."),
            Self::Relayed { body, .. } => body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RefreshTooSoon {
                retry_after_secs, ..
            }
            | Self::NoValidToken {
                retry_after_secs, ..
            }
            | Self::ClearQuotaMonthlyLimit { retry_after_secs } => Some(*retry_after_secs),
            Self::Relayed {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        }
    }

    pub fn allow(&self) -> Option<&'static str> {
        match self {
            Self::MethodNotAllowed { allow } => Some(allow),
            _ => None,
        }
    }

    /// What WeChat answered, when this error is WeChat's (or an object's answer carrying it).
    fn wechat_failure(&self) -> Option<&UpstreamFailure> {
        match self {
            Self::Upstream(failure)
            | Self::NoValidToken {
                last_failure: Some(failure),
                ..
            } => Some(failure),
            _ => None,
        }
    }

    /// WeChat's request id behind this error, for a log line (`GET /diagnostics/rid`).
    pub fn rid(&self) -> Option<&str> {
        match self {
            Self::Relayed { body, .. } => body["wechat_rid"].as_str(),
            _ => self.wechat_failure().and_then(UpstreamFailure::rid),
        }
    }

    /// `{"error","message"}` plus `wechat_errcode`/`wechat_errmsg` when WeChat said something.
    pub fn body(&self) -> Value {
        if let Self::Relayed { body, .. } = self {
            return body.clone();
        }
        let mut body = json!({ "error": self.code(), "message": self.message() });
        let wechat = self
            .wechat_failure()
            .and_then(UpstreamFailure::wechat_fields);
        if let Some((errcode, errmsg)) = wechat {
            body["wechat_errcode"] = json!(errcode);
            body["wechat_errmsg"] = json!(errmsg);
            // The key to WeChat's own record of the call (`GET /diagnostics/rid`).
            if let Some(rid) = wechat_codes::rid(errmsg) {
                body["wechat_rid"] = json!(rid);
            }
        }
        if let Self::RefreshTooSoon { reason, .. } = self {
            body["reason"] = json!(reason.code());
        }
        body
    }
}

/// The same error in WeChat's own shape, `{"errcode","errmsg"}`, for the WeChat-compatible
/// endpoints: what WeChat said if it said something, else the nearest WeChat code.
pub fn wechat_shape(error_body: &Value) -> Value {
    if let Some(errcode) = error_body.get("wechat_errcode") {
        return json!({ "errcode": errcode, "errmsg": error_body["wechat_errmsg"] });
    }
    let message = error_body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (errcode, errmsg) = match error_body.get("error").and_then(Value::as_str) {
        Some("unauthorized" | "forbidden_account") => (40125, "invalid appsecret".to_owned()),
        Some("forbidden_route") => (48001, "api unauthorized".to_owned()),
        Some("unknown_account") => (40013, "invalid appid".to_owned()),
        Some("refresh_too_soon") => (45009, format!("reach max api daily quota limit: {message}")),
        Some("bad_request") => (40097, format!("invalid args: {message}")),
        _ => (-1, format!("system error: {message}")),
    };
    json!({ "errcode": errcode, "errmsg": errmsg })
}

impl From<UpstreamFailure> for AppError {
    fn from(failure: UpstreamFailure) -> Self {
        Self::Upstream(failure)
    }
}

pub mod wechat_codes;

#[cfg(test)]
mod tests;
