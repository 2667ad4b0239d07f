//! The API gateway: business servers send their WeChat API calls here; the edge adds the
//! credential, heals a rejected token once for everyone, and forwards to the account's fixed
//! API origin. Two ways in:
//!
//! - keyed: `/gateway/<WeChat path>?account=…` with `Authorization: Bearer <client key>`; the
//!   edge adds `access_token` (or, for login and OAuth calls, the appid and appsecret). Errors
//!   in this API's own shape.
//! - pass-through: WeChat's own paths (`GATEWAY_PATH_PREFIXES`) with an `access_token` this
//!   server issued (or, for login and OAuth, `secret=<client key>`), so an unmodified SDK whose
//!   API base points here works. Errors in WeChat's shape, as SDKs parse it.
//!
//! The rules (paths refused, headers forwarded) are `policy::gateway`'s.
//!
//! Over 400 lines: the two ways in share the call's construction, its heal, the refresh
//! tokens taken out of platform answers and the one log line; apart, each would repeat them.

use crate::edge::adapters::request::{param, Incoming};
use crate::edge::adapters::respond;
use crate::edge::adapters::runtime::{self, log_error, log_record, now_millis};
use crate::edge::adapters::streams::{self, Body};
use crate::edge::adapters::tally;
use crate::edge::adapters::upstream::{self, Forwarded};
use crate::edge::objects::directory;
use crate::edge::objects::reader::{self, read, with_healing, Healed};
use crate::edge::objects::registry;
use crate::edge::routes::access::{self, account_name};
use crate::error::{wechat_codes, wechat_shape, AppError, UpstreamFailure};
use crate::policy::accounts::{Account, AccountKind, TokenApi};
use crate::policy::auth::{bearer_token, Route};
use crate::policy::config::{AccountName, Settings};
use crate::policy::gateway::{self, CallCredential};
use crate::policy::refresh::Trigger;
use crate::policy::token::TokenRecord;
use serde::Serialize;
use serde_json::json;
use worker::js_sys::Uint8Array;
use worker::{web_sys, Context, Env, Method};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Keyed,
    PassThrough,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Keyed => "keyed",
            Self::PassThrough => "pass_through",
        }
    }
}

/// What a call needs besides the account: the method, the WeChat path, the query the client
/// sent (less what the edge uses itself), the headers that may go on, and the body (kept, so
/// it can be sent again, or streaming, so it cannot).
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Body>,
    credential: CallCredential,
}

impl Call {
    /// The call a request makes to `path` for an account of `kind`, less the query parameters
    /// the edge uses itself (`account`, and on the keyed way `appid`, which name the account)
    /// and any credential the client sent: the edge puts in the real one. A user's own OAuth
    /// token is the client's and stays, and so does the `appid` a platform's login names on
    /// the pass-through.
    async fn of(
        incoming: &Incoming,
        kind: AccountKind,
        path: &str,
        pairs: Vec<(String, String)>,
        mode: Mode,
    ) -> Result<Self, AppError> {
        let method = match incoming.method() {
            // Answered as a GET without its body: WeChat's API knows GET and POST only.
            Method::Head => Method::Get,
            method => method,
        };
        let (path, credential) = gateway::for_account(kind, path, gateway::call_credential(path))?;
        let used = |name: &str| match (name, credential, mode) {
            ("account", _, Mode::Keyed) => true,
            ("access_token", CallCredential::UserToken { .. }, _) => false,
            ("appid", CallCredential::ComponentLogin, Mode::PassThrough) => false,
            (name, _, _) => CREDENTIAL_PARAMETERS.contains(&name),
        };
        Ok(Self {
            method,
            path,
            query: pairs.into_iter().filter(|(k, _)| !used(k)).collect(),
            headers: forwarded_headers(incoming),
            body: read_body(incoming).await?,
            credential,
        })
    }
}

/// The query parameters that carry an account's token, in the order they are looked for.
const TOKEN_PARAMETERS: [&str; 4] = [
    "access_token",
    "component_access_token",
    "suite_access_token",
    "provider_access_token",
];

/// The query parameters that carry a credential: never passed on as the client sent them.
const CREDENTIAL_PARAMETERS: [&str; 7] = [
    "access_token",
    "component_access_token",
    "suite_access_token",
    "provider_access_token",
    "component_appid",
    "appid",
    "secret",
];

/// `/gateway/<path>`: the client key names the account; the edge adds the credential.
pub async fn keyed(
    incoming: &Incoming,
    path: &str,
    env: &Env,
    ctx: &Context,
) -> Result<web_sys::Response, AppError> {
    let pairs = incoming.query();
    let header = incoming.header("authorization");
    let key = header.as_deref().and_then(bearer_token);
    let (grant, settings) = access::authenticate(env, key, Route::Gateway).await?;
    gateway::check_path(path, &settings.gateway_prefixes)?;
    gateway::check_server_only_path(path)?;
    let account = access::account(env, &grant, &settings, account_name(&pairs)?).await?;
    let call = Call::of(incoming, account.kind, path, pairs, Mode::Keyed).await?;
    let answer = forward(env, ctx, &settings, &account, call, Mode::Keyed).await?;
    Ok(answer.into_response())
}

/// A WeChat path with the caller's own `access_token` (one this server issued) or, for login
/// and OAuth, `appid` and `secret=<client key>`. Always answers; errors in WeChat's shape.
pub async fn pass_through(
    incoming: &Incoming,
    path: &str,
    env: &Env,
    ctx: &Context,
) -> web_sys::Response {
    match pass_through_call(incoming, path, env, ctx).await {
        Ok(answer) => answer.into_response(),
        Err(error) => respond::json(200, &wechat_shape(&error.body())).into(),
    }
}

async fn pass_through_call(
    incoming: &Incoming,
    path: &str,
    env: &Env,
    ctx: &Context,
) -> Result<Forwarded, AppError> {
    let settings = runtime::settings(env)?;
    gateway::check_path(path, &settings.gateway_prefixes)?;
    gateway::check_server_only_path(path)?;
    let pairs = incoming.query();
    let credential = gateway::call_credential(path);
    let account = match credential {
        CallCredential::AppSecret => {
            let (grant, settings) =
                access::authenticate(env, param(&pairs, "secret"), Route::Gateway).await?;
            let name = AccountName::AppId(param(&pairs, "appid").unwrap_or_default());
            access::account(env, &grant, &settings, name).await?
        }
        CallCredential::UserToken { .. } => {
            // Nothing in it is this server's to check: no open proxy.
            return Err(AppError::BadRequest(
                "a user's OAuth call carries no credential of this server: send it through \
                 /gateway/ with a client key, or straight to WeChat"
                    .into(),
            ));
        }
        CallCredential::AccountToken | CallCredential::ComponentLogin => {
            // The platform's own calls carry its token as `component_access_token`, a WeCom
            // suite's and provider's as `suite_access_token` and `provider_access_token`.
            let presented = TOKEN_PARAMETERS
                .into_iter()
                .find_map(|name| param(&pairs, name))
                .unwrap_or_default();
            let id = reader::recognize(env, ctx, &settings, presented)
                .await?
                .ok_or_else(|| AppError::Upstream(token_refused()))?;
            let account = directory::by_id(env, &settings, &id).await?;
            if credential == CallCredential::ComponentLogin {
                // The platform logs an authorizer's users in: the authorizer is the `appid`
                // the caller names, and its token a component token.
                if account.kind != AccountKind::Component {
                    return Err(AppError::Upstream(token_refused()));
                }
                let authorizer = param(&pairs, "appid").unwrap_or_default();
                directory::by_id(env, &settings, authorizer)
                    .await
                    .ok()
                    .filter(|a| a.kind == AccountKind::Authorizer)
                    .ok_or_else(|| {
                        AppError::BadRequest("appid names no authorizer of the platform".into())
                    })?
            } else {
                account
            }
        }
    };
    let call = Call::of(incoming, account.kind, path, pairs, Mode::PassThrough).await?;
    forward(env, ctx, &settings, &account, call, Mode::PassThrough).await
}

/// WeChat's own answer to a token it does not accept.
fn token_refused() -> UpstreamFailure {
    UpstreamFailure::WeChat {
        errcode: 40001,
        errmsg: "invalid credential, access_token is invalid or not latest".into(),
    }
}

fn forwarded_headers(incoming: &Incoming) -> Vec<(String, String)> {
    gateway::FORWARDED_REQUEST_HEADERS
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), incoming.header(name)?)))
        .collect()
}

/// The body, kept if it ends within [`gateway::MAX_KEPT_BODY_BYTES`]; a larger one (declared
/// or found so) streams on as it comes.
async fn read_body(incoming: &Incoming) -> Result<Option<Body>, AppError> {
    if matches!(incoming.method(), Method::Get | Method::Head) {
        return Ok(None);
    }
    let Some(stream) = incoming.body() else {
        return Ok(None);
    };
    let declared = incoming.header("content-length");
    let declared_len = declared.and_then(|n| n.parse::<usize>().ok());
    if declared_len.is_some_and(|n| n > gateway::MAX_KEPT_BODY_BYTES) {
        // Handed on untouched, so that its length goes upstream with it.
        return Ok(Some(Body::Stream(stream)));
    }
    streams::hold(stream, gateway::MAX_KEPT_BODY_BYTES)
        .await
        .map(Some)
        .map_err(|_| AppError::BadRequest("unreadable body".into()))
}

/// Sends the call with the account's credential (see [`send_healed`]) and writes its one log
/// line, whatever the outcome.
async fn forward(
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    account: &Account,
    call: Call,
    mode: Mode,
) -> Result<Forwarded, AppError> {
    let started_ms = now_millis();
    let outcome = send_healed(env, ctx, settings, account, &call, mode)
        .await
        .and_then(|sent| {
            let answer = without_refresh_tokens(account.kind, call.credential, sent.answer)?;
            Ok(Sent { answer, ..sent })
        });
    let (status, errcode, rid, retried, heal_refused, edge_error) = match &outcome {
        Ok(sent) => (
            sent.answer.status,
            sent.answer.errcode,
            sent.answer.rid.as_deref(),
            sent.retried,
            sent.heal_refused.as_deref(),
            None,
        ),
        Err(e) => (e.status(), None, None, false, None, Some(e.code())),
    };
    log_record(&CallLine {
        event: "gateway_call",
        account: &account.id,
        method: call.method.as_ref(),
        path: &call.path,
        mode: mode.name(),
        status,
        errcode,
        retried,
        duration_ms: now_millis().saturating_sub(started_ms),
        edge_error,
        heal_refused,
        wechat_rid: rid,
    });
    count_call(env, ctx, status);
    outcome.map(|sent| sent.answer)
}

/// The one log line of a gateway call. The last three only when there is something to say:
/// a log line costs by its length too.
#[derive(Serialize)]
struct CallLine<'a> {
    event: &'static str,
    account: &'a str,
    method: &'a str,
    path: &'a str,
    mode: &'static str,
    status: u16,
    errcode: Option<i64>,
    retried: bool,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    edge_error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heal_refused: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wechat_rid: Option<&'a str>,
}

/// Counts the call by its status class (`gateway_calls:2xx`) for `/metrics`; the isolate
/// hands its counts to the registry after the answer, every few seconds at most.
fn count_call(env: &Env, ctx: &Context, status: u16) {
    tally::add(match status / 100 {
        1 => "gateway_calls:1xx",
        2 => "gateway_calls:2xx",
        3 => "gateway_calls:3xx",
        4 => "gateway_calls:4xx",
        _ => "gateway_calls:5xx",
    });
    let Some(counts) = tally::due(now_millis()) else {
        return;
    };
    let env = env.clone();
    ctx.wait_until(async move {
        if let Err(e) = registry::count(&env, counts.clone()).await {
            tally::give_back(counts);
            log_error(json!({ "event": "count_failed", "message": e.message() }));
        }
    });
}

/// What a call came back with: the answer, whether it came from a second send, and why a heal
/// was refused if it was.
struct Sent {
    answer: Forwarded,
    retried: bool,
    heal_refused: Option<String>,
}

/// Sends the call; a token WeChat rejects is replaced (one gateway heal naming it, shared by
/// every caller and within its own budget) and the call sent once more, unless its body
/// streamed: then nothing is left to send again, and the caller gets WeChat's answer (its
/// next call has the new token). Calls that carry the appsecret or log a user in are sent
/// once (a login code is single-use), and so are a user's OAuth calls (their token is not the
/// account's). A refused heal answers the keyed caller why; the pass-through passes WeChat's
/// own rejection on, which is what an SDK understands.
async fn send_healed(
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    account: &Account,
    call: &Call,
    mode: Mode,
) -> Result<Sent, AppError> {
    let origin = match account.api {
        TokenApi::WeCom | TokenApi::WeComSuite | TokenApi::WeComProvider | TokenApi::WeComCorp => {
            &settings.wecom_api_base
        }
        TokenApi::Classic | TokenApi::Stable | TokenApi::Component | TokenApi::Authorizer => {
            &settings.api_base
        }
    };
    let redacting = gateway::redacts_answers(account.kind);
    // A streamed body can be sent once only; the guard below sees to that.
    let send = |credential: Vec<(&'static str, String)>| {
        let url = upstream_url(origin, &call.path, &call.query, &credential);
        let secret = account.secret.clone();
        let (method, headers, body) =
            (call.method.clone(), call.headers.clone(), call.body.clone());
        async move {
            upstream::forward(settings, method, &url, &headers, body, &secret, redacting)
                .await
                .map_err(AppError::Upstream)
        }
    };
    let once = |answer| Sent {
        answer,
        retried: false,
        heal_refused: None,
    };
    match call.credential {
        CallCredential::AppSecret => {
            let credential = vec![
                ("appid", account.appid.clone()),
                ("secret", account.secret.clone()),
            ];
            return Ok(once(send(credential).await?));
        }
        CallCredential::UserToken { with_appid } => {
            let credential = with_appid.then(|| ("appid", account.appid.clone()));
            return Ok(once(send(credential.into_iter().collect()).await?));
        }
        CallCredential::ComponentLogin => {
            let component = settings.component_account()?;
            let token = read::<TokenRecord>(env, ctx, settings, component, ()).await?;
            let credential = vec![
                ("appid", account.appid.clone()),
                ("component_appid", component.appid.clone()),
                ("component_access_token", token.access_token),
            ];
            return Ok(once(send(credential).await?));
        }
        CallCredential::AccountToken => {}
    }
    let name = gateway::token_parameter(account.kind, &call.path);
    let resendable = call.body.as_ref().is_none_or(Body::resendable);
    // A suite's calls carry its suite_access_token, whose rejection WeCom says its own way.
    let rejection = match account.kind {
        AccountKind::WeComSuite => wechat_codes::is_suite_token_rejected,
        _ => wechat_codes::is_token_rejected,
    };
    let rejected = |sent: &Result<Forwarded, AppError>| {
        sent.as_ref()
            .is_ok_and(|answer| answer.errcode.is_some_and(rejection))
    };
    let trigger = |stale_token| Trigger::Healed { stale_token };
    let healed = with_healing(
        (env, ctx, settings),
        account,
        trigger,
        resendable,
        rejected,
        |token| send(vec![(name, token)]),
    )
    .await?;
    match healed {
        Healed::First(first) => first.map(once),
        Healed::Resent(second) => second.map(|answer| Sent {
            answer,
            retried: true,
            heal_refused: None,
        }),
        // Healing failed: why is worth more than WeChat's 40001 to a keyed caller that can
        // resend; an SDK on the pass-through understands WeChat's own answer best.
        Healed::Refused { why, .. } if resendable && mode == Mode::Keyed => Err(why),
        Healed::Refused { first, why } => first.map(|answer| Sent {
            heal_refused: Some(why.code().to_owned()),
            ..once(answer)
        }),
    }
}

/// An answer of the platform's (one made with the component token or for an authorizer)
/// without the refresh tokens it may carry (`policy::gateway`): one that cannot be read as
/// JSON, or is too large to read, is not passed on. A file (an image, a voice) carries none.
fn without_refresh_tokens(
    kind: AccountKind,
    credential: CallCredential,
    mut answer: Forwarded,
) -> Result<Forwarded, AppError> {
    if !gateway::redacts_answers(kind) {
        return Ok(answer);
    }
    let refused = |detail: &str| {
        Err(AppError::Upstream(UpstreamFailure::BadResponse {
            detail: detail.into(),
        }))
    };
    let bytes = match &answer.body {
        None => return Ok(answer),
        Some(Body::Kept(bytes)) if bytes.length() == 0 => return Ok(answer),
        Some(Body::Kept(bytes)) => bytes.to_vec(),
        Some(Body::Held(_)) => return refused("a platform answer held as a file"),
        Some(Body::Stream(_)) if !answer.textual() => return Ok(answer),
        Some(Body::Stream(_)) => {
            return refused("a platform answer too large to check for refresh tokens")
        }
    };
    let not_json = "a platform answer that is not JSON, so not checked for refresh tokens";
    // Most answers name no refresh token (nor escape any name): one validating pass, with no
    // values built, and the answer goes on as it came.
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if !contains(b"refresh_token") && !contains(b"\\u") {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            Ok(_) => Ok(answer),
            Err(_) => refused(not_json),
        };
    }
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return refused(not_json);
    };
    // A user's own OAuth refresh token is the caller's.
    let keep_users = credential != CallCredential::AccountToken;
    if gateway::redact_refresh_tokens(&mut json, keep_users) {
        let text = json.to_string();
        answer.body = Some(Body::Kept(Uint8Array::from(text.as_bytes())));
    }
    Ok(answer)
}

/// The URL a call goes to: the configured origin, the checked path (no `%`, no space, no
/// control character: nothing in it needs encoding), and the query, form-encoded.
fn upstream_url(
    origin: &str,
    path: &str,
    query: &[(String, String)],
    credential: &[(&str, String)],
) -> String {
    // The query starts after the `?` (`new` would take the whole URL for it, and put a `&`
    // before the first pair).
    let start = format!("{origin}{path}?");
    let query_at = start.len();
    let mut pairs = form_urlencoded::Serializer::for_suffix(start, query_at);
    for (key, value) in credential {
        pairs.append_pair(key, value);
    }
    for (key, value) in query {
        pairs.append_pair(key, value);
    }
    pairs.finish()
}

impl Forwarded {
    fn into_response(self) -> web_sys::Response {
        respond::passed_on(self.status, &self.headers, self.body)
    }
}
