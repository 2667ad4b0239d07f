//! The operators' webhooks (`ALERT_WEBHOOK_URL`): each one's format, its signing secret (the
//! signed robots of DingTalk 加签 and Feishu 签名校验), the request a message becomes, and how an
//! answer is judged. Pure: the time and the HMAC's inputs are given.

use crate::error::AppError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The webhook formats: each service's incoming-webhook (群机器人) payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertFormat {
    WeCom,
    Feishu,
    DingTalk,
    Slack,
    Json,
}

impl AlertFormat {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "wecom" => Self::WeCom,
            "feishu" => Self::Feishu,
            "dingtalk" => Self::DingTalk,
            "slack" => Self::Slack,
            "json" => Self::Json,
            _ => return None,
        })
    }

    /// The format a webhook's host implies.
    fn of_url(url: &str) -> Self {
        match host(url).to_ascii_lowercase().as_str() {
            "qyapi.weixin.qq.com" => Self::WeCom,
            "open.feishu.cn" | "open.larksuite.com" => Self::Feishu,
            "oapi.dingtalk.com" => Self::DingTalk,
            "hooks.slack.com" => Self::Slack,
            _ => Self::Json,
        }
    }

    fn signs(self) -> bool {
        matches!(self, Self::DingTalk | Self::Feishu)
    }
}

/// One webhook. Its URL and secret are the service's keys: never logged, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Hook {
    pub url: String,
    pub format: AlertFormat,
    pub secret: Option<String>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hook({:?} at {})", self.format, host(&self.url))
    }
}

/// The hooks of `ALERT_WEBHOOK_URL` (comma-separated; each may end in `#<secret>`), in
/// `format` or the one each host implies, signed with their own secret or `shared_secret`
/// (`ALERT_WEBHOOK_SECRET`). Errors name the variable and the entry's position, never a URL.
pub fn parse_hooks(
    urls: &str,
    format: Option<AlertFormat>,
    shared_secret: Option<&str>,
) -> Result<Vec<Hook>, AppError> {
    let entries = urls.split(',').map(str::trim).filter(|u| !u.is_empty());
    let mut hooks = Vec::new();
    for (index, entry) in entries.enumerate() {
        let problem = |problem: &str| AppError::Config {
            variable: "ALERT_WEBHOOK_URL",
            problem: format!("entry {} {problem}", index + 1),
        };
        let (url, own_secret) = match entry.split_once('#') {
            Some((url, secret)) => (url, Some(secret)),
            None => (entry, None),
        };
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("https" | "http")) || host(url).is_empty() {
            return Err(problem("is not an http(s) URL"));
        }
        let format = format.unwrap_or(AlertFormat::of_url(url));
        let secret = own_secret.or(shared_secret).filter(|s| !s.is_empty());
        if own_secret.is_some_and(|s| s.is_empty()) {
            return Err(problem("ends in # with no secret after it"));
        }
        if own_secret.is_some() && !format.signs() {
            return Err(problem(
                "has a #secret, but only DingTalk and Feishu robots are signed",
            ));
        }
        hooks.push(Hook {
            url: url.to_owned(),
            format,
            secret: secret.filter(|_| format.signs()).map(str::to_owned),
        });
    }
    Ok(hooks)
}

/// The host (and port) of a URL: never its path, query or any credentials in it.
pub fn host(url: &str) -> &str {
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    authority.rsplit('@').next().unwrap_or_default()
}

/// The request one message becomes at `now_ms`: the URL (DingTalk's signed robots take the
/// signature in the query) and the body (Feishu's take it in the JSON).
pub fn signed_request(hook: &Hook, payload: &Value, now_ms: u64) -> (String, String) {
    let Some(secret) = hook.secret.as_deref() else {
        return (hook.url.clone(), payload.to_string());
    };
    match hook.format {
        AlertFormat::DingTalk => {
            // 加签: HMAC-SHA256 keyed with the secret over "<ms>\n<secret>", base64, in the URL.
            let timestamp = now_ms.to_string();
            let sign = hmac_base64(
                secret.as_bytes(),
                format!("{timestamp}\n{secret}").as_bytes(),
            );
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("timestamp", &timestamp)
                .append_pair("sign", &sign)
                .finish();
            let joiner = if hook.url.contains('?') { '&' } else { '?' };
            (format!("{}{joiner}{query}", hook.url), payload.to_string())
        }
        AlertFormat::Feishu => {
            // 签名校验: HMAC-SHA256 keyed with "<seconds>\n<secret>" over nothing, in the body.
            let timestamp = (now_ms / 1000).to_string();
            let sign = hmac_base64(format!("{timestamp}\n{secret}").as_bytes(), b"");
            let mut body = payload.clone();
            body["timestamp"] = json!(timestamp);
            body["sign"] = json!(sign);
            (hook.url.clone(), body.to_string())
        }
        _ => (hook.url.clone(), payload.to_string()),
    }
}

fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// How a webhook answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Not delivered: try again after `retry_after_secs` (a throttled robot longer).
    Failed {
        why: String,
        retry_after_secs: u64,
    },
}

/// DingTalk mutes a robot for ten minutes once it sends more than 20 a minute.
const DINGTALK_MUTE_SECS: u64 = 600;

/// Judges an answer of HTTP `status` with `body`. WeCom, DingTalk and Feishu answer a refusal
/// (a wrong key, a keyword or signature check, too many messages) with HTTP 200 and a code in
/// the body; any other receiver is judged by its HTTP status alone.
pub fn judge(format: AlertFormat, status: u16, body: &str, retry_secs: u64) -> Delivery {
    if !(200..300).contains(&status) {
        return Delivery::Failed {
            why: format!("HTTP status {status}"),
            retry_after_secs: retry_secs,
        };
    }
    let fields: &[&str] = match format {
        AlertFormat::WeCom | AlertFormat::DingTalk => &["errcode"],
        AlertFormat::Feishu => &["code", "StatusCode"],
        AlertFormat::Slack | AlertFormat::Json => &[],
    };
    let json: Value = serde_json::from_str(body).unwrap_or_default();
    let code = fields
        .iter()
        .filter_map(|field| json.get(field).and_then(Value::as_i64))
        .find(|code| *code != 0);
    match code {
        None => Delivery::Delivered,
        Some(code) => Delivery::Failed {
            why: format!("the webhook refused it (code {code})"),
            // DingTalk's "sending too fast" (130101) mutes the robot for ten minutes.
            retry_after_secs: match (format, code) {
                (AlertFormat::DingTalk, 130101) => DINGTALK_MUTE_SECS.max(retry_secs),
                _ => retry_secs,
            },
        },
    }
}

/// Slack's mrkdwn reads `&`, `<` and `>` as markup: escaped as Slack documents.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests;
