//! One call to WeChat (or WeCom), bounded by a time budget: for a token or a ticket (what is
//! left of `UPSTREAM_TIMEOUT_MS`; retries are the refresher's business), or a gateway call.
//! With `WECHAT_EGRESS_KEY` set, every call carries it for the fixed-IP egress relay. A gateway
//! call's bodies may stream both ways; the budget then covers the answer's headers and the part
//! read for an errcode.

use crate::edge::adapters::streams::{self, Body};
use crate::error::UpstreamFailure;
use crate::policy::accounts::Account;
use crate::policy::config::Settings;
use crate::policy::gateway;
use crate::policy::ticket::TicketKind;
use crate::wechat::api::{self, HttpMethod, Issued};
use crate::wechat::platform::PlatformRequest;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::js_sys::{self, Uint8Array};
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys;
use worker::{AbortController, Delay, Method};

/// The header the fixed-IP egress relay checks (`WECHAT_EGRESS_KEY`).
const EGRESS_HEADER: &str = "x-egress-key";

pub async fn fetch_token(
    settings: &Settings,
    account: &Account,
    force: bool,
    budget_ms: u64,
) -> Result<Issued, UpstreamFailure> {
    let secret = account.secret.as_str();
    // Carries the secret: it goes to fetch and nowhere else (no log, no error message).
    let spec = api::token_request(account, &settings.api_base, &settings.wecom_api_base, force)
        .ok_or_else(|| UpstreamFailure::Unreachable {
            detail: "a platform account's token is fetched through the platform".into(),
        })?;
    let (status, body) = send(
        spec.method,
        &spec.url,
        spec.body.as_deref(),
        &[secret],
        egress(settings),
        budget_ms,
    )
    .await?;
    api::parse_token_response(status, &body, secret)
}

/// Sends one of the platform's requests; the status and body of the answer, for
/// `wechat::platform` to read. Every secret the request carries is scrubbed from error text.
pub async fn platform_call(
    settings: &Settings,
    request: &PlatformRequest,
    budget_ms: u64,
) -> Result<(u16, String), UpstreamFailure> {
    let sensitive: Vec<&str> = request.sensitive.iter().map(String::as_str).collect();
    let (url, body) = (&request.url, Some(request.body.as_str()));
    send(
        request.method,
        url,
        body,
        &sensitive,
        egress(settings),
        budget_ms,
    )
    .await
}

pub async fn fetch_ticket(
    settings: &Settings,
    account: &Account,
    kind: TicketKind,
    access_token: &str,
    budget_ms: u64,
) -> Result<Issued, UpstreamFailure> {
    let url = api::ticket_url(
        account,
        &settings.api_base,
        &settings.wecom_api_base,
        kind,
        access_token,
    );
    let egress = egress(settings);
    let sensitive = [access_token];
    let (status, body) = send(HttpMethod::Get, &url, None, &sensitive, egress, budget_ms).await?;
    api::parse_ticket_response(status, &body, access_token)
}

fn egress(settings: &Settings) -> Option<&str> {
    settings.egress_key.as_ref().map(|key| key.0.as_str())
}

/// The relay marks its own refusal (`X-Egress-Refused`), so that a 403 of WeChat's passes on
/// as WeChat's.
const EGRESS_REFUSED_HEADER: &str = "x-egress-refused";

/// The relay's refusal of the key, told apart from WeChat's own statuses. `marked` reads the
/// relay's mark, only for a 403: every header read is a call into the runtime.
fn refused_by_relay(
    status: u16,
    marked: impl FnOnce() -> bool,
    egress: Option<&str>,
) -> Result<(), UpstreamFailure> {
    match (status, egress) {
        (403, Some(_)) if marked() => Err(UpstreamFailure::EgressRefused),
        _ => Ok(()),
    }
}

/// An answer, as WeChat gave it: the status, the headers the gateway passes back, the body
/// (held when it was read, else still streaming), and its errcode if it was read for one.
pub struct Forwarded {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Body>,
    pub errcode: Option<i64>,
    /// WeChat's request id, when the errcode's `errmsg` names one.
    pub rid: Option<String>,
}

impl Forwarded {
    /// Whether the answer says it is JSON or text (or says nothing), rather than a file.
    pub fn textual(&self) -> bool {
        let content_type = self
            .headers
            .iter()
            .find(|(name, _)| *name == "content-type");
        !gateway::is_file(content_type.map(|(_, value)| value.as_str()))
    }
}

/// How much of an answer to read before handing it on.
#[derive(Clone, Copy)]
enum Reading {
    /// All of it: a token or ticket answer.
    Whole,
    /// A gateway answer: read if it may carry an errcode (policy's rule), else streamed.
    Inspect,
    /// A gateway answer of the platform's: every answer but a file read whole (up to
    /// `gateway::MAX_REDACTED_BYTES`), to take refresh tokens out.
    Redact,
}

/// Forwards one gateway call. `url` carries the credential; `secret` (the appsecret, which
/// login calls carry) is scrubbed from any error text, and so is the whole query. A streamed
/// body has longer than `UPSTREAM_TIMEOUT_MS`: WeChat answers only once it has all of it.
/// `redacting`: the answer is the platform's, read whole to take refresh tokens out. A 5xx
/// that is not WeChat's JSON (a relay's error page) is a failure, not an answer to pass on.
pub async fn forward(
    settings: &Settings,
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: Option<Body>,
    secret: &str,
    redacting: bool,
) -> Result<Forwarded, UpstreamFailure> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let budget_ms = match body {
        Some(Body::Stream(_)) => settings
            .upstream_timeout_ms
            .max(gateway::STREAMED_BODY_BUDGET_MS),
        _ => settings.upstream_timeout_ms,
    };
    let body = body.map(Body::into_js);
    let scrub = |text: &str| api::scrub(&api::scrub(text, query), secret);
    let egress = egress(settings);
    let reading = match redacting {
        true => Reading::Redact,
        false => Reading::Inspect,
    };
    let answer = exchange(
        method, url, &headers, body, egress, budget_ms, reading, scrub,
    )
    .await?;
    if answer.status >= 500 && answer.errcode.is_none() {
        return Err(UpstreamFailure::HttpStatus {
            status: answer.status,
        });
    }
    Ok(answer)
}

/// Sends a token or ticket request; returns the status and the whole body, or why not.
/// `sensitive` (the secrets or tokens the request carries) is scrubbed from any error text.
async fn send(
    method: HttpMethod,
    url: &str,
    json_body: Option<&str>,
    sensitive: &[&str],
    egress: Option<&str>,
    budget_ms: u64,
) -> Result<(u16, String), UpstreamFailure> {
    let (method, headers): (Method, &[(&str, &str)]) = match method {
        HttpMethod::Post => (Method::Post, &[("content-type", "application/json")]),
        HttpMethod::Get => (Method::Get, &[]),
    };
    let body = json_body.map(JsValue::from_str);
    let scrub = |text: &str| {
        sensitive
            .iter()
            .fold(text.to_owned(), |text, secret| api::scrub(&text, secret))
    };
    let reading = Reading::Whole;
    let answer = exchange(
        method, url, headers, body, egress, budget_ms, reading, scrub,
    )
    .await?;
    let text = match &answer.body {
        Some(Body::Kept(bytes)) => String::from_utf8_lossy(&bytes.to_vec()).into_owned(),
        _ => String::new(),
    };
    Ok((answer.status, text))
}

/// One request to WeChat, with the relay key `egress` if one is configured, within
/// `budget_ms` for the headers and whatever of the body `reading` asks for: the status, the
/// answer headers and the body, or why not. `scrub` cleans error text of whatever secret the
/// request carries.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<JsValue>,
    egress: Option<&str>,
    budget_ms: u64,
    reading: Reading,
    scrub: impl Fn(&str) -> String,
) -> Result<Forwarded, UpstreamFailure> {
    let unreachable = |error: worker::Error| UpstreamFailure::Unreachable {
        detail: scrub(&error.to_string()),
    };
    let js_failure = |e: JsValue| unreachable(e.into());
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        // The runtime's own fetch, straight from a URL and its init: no intermediate Request
        // object, and the answer's body read (or handed on) from the Response itself.
        let request_headers = web_sys::Headers::new().map_err(js_failure)?;
        for (name, value) in headers
            .iter()
            .copied()
            .chain(egress.map(|key| (EGRESS_HEADER, key)))
        {
            request_headers.set(name, value).map_err(js_failure)?;
        }
        let init = web_sys::RequestInit::new();
        init.set_method(method.as_ref());
        init.set_headers(&request_headers);
        if let Some(body) = &body {
            init.set_body(body);
        }
        // Never followed: the egress key (and a body) would go to wherever `Location` says.
        init.set_redirect(web_sys::RequestRedirect::Manual);
        init.set_signal(Some(&signal));
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let sent = global.fetch_with_str_and_init(url, &init);
        let response: web_sys::Response = JsFuture::from(sent)
            .await
            .and_then(JsCast::dyn_into)
            .map_err(js_failure)?;
        let status = response.status();
        let answer = response.headers();
        let header = |name| answer.get(name).ok().flatten();
        let marked = || answer.has(EGRESS_REFUSED_HEADER).unwrap_or(false);
        refused_by_relay(status, marked, egress)?;
        if gateway::is_redirect(status) {
            return Err(UpstreamFailure::Redirect { status });
        }
        let answer_headers: Vec<(&'static str, String)> = gateway::PASSED_BACK_ANSWER_HEADERS
            .iter()
            .filter_map(|name| Some((*name, header(name)?)))
            .collect();
        let declared_len = header("content-length").and_then(|n| n.parse().ok());
        // A compressed answer's declared length is not what reading it yields.
        let length_known = declared_len.is_some() && header("content-encoding").is_none();
        // Content-Type is one of the headers passed back: read once.
        let content_type = answer_headers
            .iter()
            .find(|(name, _)| *name == "content-type")
            .map(|(_, value)| value.as_str());
        let read = match reading {
            Reading::Whole => true,
            Reading::Inspect => gateway::inspects_answer(content_type, declared_len),
            Reading::Redact => !gateway::is_file(content_type),
        };
        let peek_limit = match reading {
            Reading::Redact => gateway::MAX_REDACTED_BYTES,
            _ => gateway::MAX_INSPECTED_BYTES,
        };
        let whole = matches!(reading, Reading::Whole)
            || (length_known && declared_len.is_some_and(|n| n <= peek_limit as u64));
        let body = match response.body() {
            Some(stream) if !read => Some(Body::Stream(stream)),
            Some(_) if whole => {
                let buffer = response.array_buffer().map_err(js_failure)?;
                let buffer = JsFuture::from(buffer).await.map_err(js_failure)?;
                Some(Body::Kept(Uint8Array::new(&buffer)))
            }
            Some(stream) => Some(
                streams::peek(stream, peek_limit)
                    .await
                    .map_err(js_failure)?,
            ),
            None => None,
        };
        // Only a small answer can be a refusal with an errcode; a large one is not copied in.
        let said = match (&body, reading) {
            (_, Reading::Whole) => None,
            (Some(Body::Kept(bytes)), _)
                if bytes.length() as usize <= gateway::MAX_INSPECTED_BYTES =>
            {
                gateway::errcode(&bytes.to_vec())
            }
            _ => None,
        };
        Ok(Forwarded {
            status,
            headers: answer_headers,
            body,
            errcode: said.as_ref().map(|said| said.errcode),
            rid: said.and_then(|said| said.rid),
        })
    };
    match within(Duration::from_millis(budget_ms), call).await {
        Some(outcome) => outcome,
        None => {
            controller.abort();
            Err(UpstreamFailure::Timeout {
                after_ms: budget_ms,
            })
        }
    }
}

/// The future's output, or None if `budget` runs out first (covers headers and body alike).
pub async fn within<T>(budget: Duration, future: impl Future<Output = T>) -> Option<T> {
    let mut future = pin!(future);
    let mut timer = pin!(Delay::from(budget));
    poll_fn(|cx| {
        if let Poll::Ready(value) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}
