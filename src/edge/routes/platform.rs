//! The third-party platform's routes (开放平台, `WECHAT_COMPONENT`): WeChat's pushes to
//! `POST /component/events` (verify tickets, authorizations, withdrawals), the component token,
//! pre-auth codes with the authorization page, and the list of authorizers. The component is
//! an account of the environment and each authorizer an account registered at runtime (kind
//! `authorizer`, id its appid), so every other route serves them as any account.
//!
//! Over 400 lines: the pushes and the platform's own API routes (pre-auth code, authorizer
//! list and its import) share the component's lookup and its healed calls.

use crate::edge::adapters::request::{self, param, query};
use crate::edge::adapters::respond;
use crate::edge::adapters::runtime::{self, log_event, now_secs};
use crate::edge::adapters::upstream;
use crate::edge::objects::directory;
use crate::edge::objects::object_client;
use crate::edge::objects::reader::{read, with_healing, Healed};
use crate::edge::objects::registry;
use crate::edge::objects::removal;
use crate::edge::routes::access;
use crate::error::{wechat_codes, AppError, UpstreamFailure};
use crate::policy::accounts::AccountKind;
use crate::policy::auth::Route;
use crate::policy::config::AccountName;
use crate::policy::config::Settings;
use crate::policy::platform::{self, AuthorizationPush, Component, MAX_PUSH_BYTES};
use crate::policy::refresh::Trigger;
use crate::policy::registry::{page_limit, Registered, STATUS_PAGE};
use crate::policy::token::TokenRecord;
use crate::wechat::platform as protocol;
use crate::wechat::push::{self, PlatformEvent, PushError};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::future::Future;
use worker::{Context, Env, Method, Request, Response};

/// `/component/…`: `rest` is what follows `/component`.
pub async fn route(
    request: &Request,
    method: Method,
    rest: &str,
    env: &Env,
    ctx: &Context,
) -> Result<Response, AppError> {
    let allow = |allowed: Method, allow: &'static str| match method == allowed {
        true => Ok(()),
        false => Err(AppError::MethodNotAllowed { allow }),
    };
    match rest {
        "/events" => {
            allow(Method::Post, "POST")?;
            events(request, env).await
        }
        "/token" => {
            allow(Method::Get, "GET, HEAD")?;
            token(request, env, ctx).await
        }
        "/preauthcode" => {
            allow(Method::Post, "POST")?;
            pre_auth_code(request, env, ctx).await
        }
        "/authorizers" => {
            allow(Method::Get, "GET, HEAD")?;
            authorizers(request, env).await
        }
        _ => Err(AppError::NotFound),
    }
}

/// The platform, or 404 saying it is not configured.
fn component(settings: &Settings) -> Result<&Component, AppError> {
    settings.component.as_ref().ok_or(AppError::NotFound)
}

/// WeChat's pushes: verified, decrypted, acted on, answered `success` (WeChat's word for
/// "received"). Anything wrong is a 4xx with a reason, and nothing is stored.
async fn events(request: &Request, env: &Env) -> Result<Response, AppError> {
    let settings = runtime::settings(env)?;
    let component = component(&settings)?;
    let pairs = query(request)?;
    let field = |name| param(&pairs, name).unwrap_or_default();
    if param(&pairs, "encrypt_type").is_some_and(|t| t != "aes") {
        return Err(AppError::BadRequest("encrypt_type must be aes".into()));
    }
    let body = request::read_bytes(request, MAX_PUSH_BYTES).await?;
    let body = String::from_utf8(body)
        .map_err(|_| AppError::BadRequest("the body is not UTF-8".into()))?;
    let refused = AppError::from;
    let encrypted = push::xml_field(&body, "Encrypt")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| refused(PushError::Malformed("no Encrypt element in an <xml> body")))?;
    push::verify_signature(
        &component.push_token,
        field("timestamp"),
        field("nonce"),
        &encrypted,
        field("msg_signature"),
    )
    .map_err(refused)?;
    let message = push::decrypt(&encrypted, &component.aes_keys, &component.account.appid)
        .map_err(refused)?;
    let event = push::parse_event(&message, &component.account.appid).map_err(refused)?;
    let id = &component.account.id;
    // A push without its CreateTime counts as sent now.
    let or_now = |created_at: u64| {
        if created_at == 0 {
            now_secs()
        } else {
            created_at
        }
    };
    match event {
        PlatformEvent::VerifyTicket { ticket, created_at } => {
            object_client::verify_ticket(env, id, ticket, created_at).await?;
        }
        PlatformEvent::Authorized {
            authorizer,
            code,
            created_at,
        } => {
            let created_at = or_now(created_at);
            // Pushes act in WeChat's order: an authorization older than what was acted on
            // (a late retry, a replay) changes nothing.
            let push = AuthorizationPush::Authorized;
            if !object_client::admits(env, &authorizer, push, created_at).await? {
                log_push_ignored(&authorizer, "authorized", created_at);
                return Ok(respond::text(200, "success"));
            }
            register_authorizer(env, &settings, &authorizer).await?;
            // The code is stored before WeChat hears `success` (a failure is a 5xx, and
            // WeChat pushes again); the object exchanges it in the background.
            object_client::authorize(env, &authorizer, code, created_at).await?;
        }
        PlatformEvent::Unauthorized {
            authorizer,
            created_at,
        } => {
            let created_at = or_now(created_at);
            // Only an authorizer: an account registered otherwise is the operator's. One no
            // longer registered may be a withdrawal that failed half-way: it is finished.
            let registered = registry::get(env, &authorizer).await?;
            let operators = settings.accounts.iter().any(|a| a.id == authorizer)
                || registered
                    .as_ref()
                    .is_some_and(|e| e.kind != AccountKind::Authorizer.name());
            let push = AuthorizationPush::Withdrawn;
            if !operators && !object_client::admits(env, &authorizer, push, created_at).await? {
                log_push_ignored(&authorizer, "unauthorized", created_at);
                return Ok(respond::text(200, "success"));
            }
            if !operators {
                match removal::remove(env, &authorizer, Some(created_at)).await {
                    // A newer authorization was taken meanwhile: it stands, registered (the
                    // withdrawal may have unregistered it before its object said so).
                    Err(e) if e.status() == 409 => {
                        register_authorizer(env, &settings, &authorizer).await?;
                        log_push_ignored(&authorizer, "unauthorized", created_at);
                        return Ok(respond::text(200, "success"));
                    }
                    other => other?,
                };
            }
            log_event(json!({
                "event": "authorizer_unauthorized", "account": authorizer,
                "known": registered.is_some() && !operators,
            }));
        }
        PlatformEvent::Other { info_type } => {
            let info_type: String = info_type.chars().take(64).collect();
            log_event(json!({ "event": "platform_push_ignored", "info_type": info_type }));
        }
    }
    Ok(respond::text(200, "success"))
}

fn log_push_ignored(authorizer: &str, info_type: &str, created_at: u64) {
    log_event(json!({
        "event": "platform_push_out_of_order", "account": authorizer,
        "info_type": info_type, "created_at": created_at,
    }));
}

/// Registers (or keeps) an authorizer as an account of kind `authorizer`, and tells the edge.
/// An account of the environment or the admin API with that id or that appid is another
/// account: a conflict, never overwritten.
pub(crate) async fn register_authorizer(
    env: &Env,
    settings: &Settings,
    appid: &str,
) -> Result<Registered, AppError> {
    if settings
        .accounts
        .iter()
        .any(|a| a.id == appid || a.appid == appid)
    {
        return Err(AppError::Conflict(format!(
            "the authorizer {appid} is also configured in WECHAT_ACCOUNTS"
        )));
    }
    let by_appid = directory::find(env, settings, AccountName::AppId(appid)).await?;
    if by_appid.is_some_and(|a| a.kind != AccountKind::Authorizer) {
        return Err(AppError::Conflict(format!(
            "the authorizer {appid} is the appid of an account registered through the admin API"
        )));
    }
    let existing = registry::get(env, appid).await?;
    match &existing {
        // Authorized again: the registration stands, and the object keeps its state (a
        // refresh under way included); the new code goes to it.
        Some(entry) if entry.kind == AccountKind::Authorizer.name() => {
            return Ok(entry.clone());
        }
        Some(_) => {
            return Err(AppError::Conflict(format!(
                "the authorizer {appid} is an account registered through the admin API"
            )))
        }
        None => {}
    }
    let account = platform::authorizer(appid);
    let entry = Registered::new(&account, String::new(), now_secs(), None);
    let stored = registry::put(env, entry).await?;
    directory::forget_registered(appid, false);
    if stored.revived {
        // A removal left half done: the removed authorizer's state goes first.
        object_client::erase(env, appid, None).await?;
    }
    log_event(json!({ "event": "authorizer_registered", "account": appid }));
    Ok(stored.entry)
}

/// `GET /component/token`: the component token, shaped like `GET /token`.
async fn token(request: &Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let (grant, settings) =
        access::authenticate(env, request::bearer(request).as_deref(), Route::Token).await?;
    let id = component(&settings)?.account.id.clone();
    let name = crate::policy::config::AccountName::Id(&id);
    let account = access::account(env, &grant, &settings, name).await?;
    let record = read::<TokenRecord>(env, ctx, &settings, &account, ()).await?;
    Ok(respond::json(
        200,
        &record.answer(&account.id, &account.appid, now_secs()),
    ))
}

/// `POST /component/preauthcode` `{"redirect_uri","auth_type"}` (`?mobile=1` for the page
/// for WeChat on a phone): a pre-auth code and the page that uses it.
async fn pre_auth_code(request: &Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let pairs = query(request)?;
    let (grant, settings) =
        access::authenticate(env, request::bearer(request).as_deref(), Route::Component).await?;
    let component = component(&settings)?;
    if !grant.permits(&component.account.id) {
        return Err(AppError::ForbiddenAccount);
    }
    let body: Value = serde_json::from_str(&request::read(request).await?)
        .map_err(|_| AppError::BadRequest("the body must be a JSON object".into()))?;
    let redirect_uri = body["redirect_uri"]
        .as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .ok_or_else(|| AppError::BadRequest("redirect_uri must be an http(s) URL".into()))?;
    let auth_type = match &body["auth_type"] {
        Value::Null => 3,
        value => value
            .as_u64()
            .filter(|t| (1..=6).contains(t))
            .ok_or_else(|| AppError::BadRequest("auth_type must be 1 to 6".into()))?
            as u8,
    };
    let mobile = param(&pairs, "mobile") == Some("1");
    let appid = component.account.appid.as_str();
    let settings = &*settings;
    let issued = with_component_token(env, ctx, settings, |token| {
        let call = protocol::pre_auth_code_request(&settings.api_base, appid, &token);
        async move {
            let (status, body) =
                upstream::platform_call(settings, &call, settings.upstream_timeout_ms).await?;
            protocol::parse_pre_auth_code(status, &body, &call.sensitive)
        }
    })
    .await?;
    let url = protocol::authorization_url(appid, &issued.value, redirect_uri, auth_type, mobile);
    Ok(respond::json(
        200,
        &json!({
            "pre_auth_code": issued.value,
            "expires_in": issued.expires_in,
            "authorization_url": url,
        }),
    ))
}

/// Makes one of the platform's own calls with the component token; a token WeChat rejects is
/// refreshed once (for everyone: a refresh naming it) and the call sent again with its
/// successor (a refresh that brings no new token answers the refusal).
async fn with_component_token<T, F, Fut>(
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    call: F,
) -> Result<T, AppError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, UpstreamFailure>>,
{
    let account = settings.component_account()?;
    let rejected = |outcome: &Result<T, UpstreamFailure>| {
        matches!(outcome, Err(UpstreamFailure::WeChat { errcode, .. })
            if wechat_codes::is_token_rejected(*errcode))
    };
    let trigger = |stale_token| Trigger::Rejected { stale_token };
    let healed = with_healing((env, ctx, settings), account, trigger, true, rejected, call).await?;
    match healed {
        Healed::First(outcome) | Healed::Resent(outcome) => outcome.map_err(AppError::Upstream),
        Healed::Refused { why, .. } => Err(why),
    }
}

/// How many rows of the list one sync request takes at most (`?count=`): each authorizer
/// costs about six subrequests (the registry twice, KV three times, its object), and an
/// invocation has 50 on the Free plan (seven rows and the list) and 1,000 on the Paid one.
const SYNC_DEFAULT_COUNT: usize = 7;
const SYNC_MAX_COUNT: usize = 150;

/// `POST /admin/component/authorizers/sync?offset=&count=` (admin key): authorizers that
/// authorized before this deployment, imported from WeChat's authorizer list a page at a
/// time: each registered (unless another account has its id or appid: a conflict, listed)
/// and given the refresh token the list shows. Answers `next_offset` while the list goes on.
pub async fn sync_authorizers(
    request: &Request,
    env: &Env,
    ctx: &Context,
) -> Result<Response, AppError> {
    let settings = runtime::settings(env)?;
    let component = component(&settings)?;
    let pairs = query(request)?;
    let number = |name: &str, default: usize, max: usize| match param(&pairs, name) {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| AppError::BadRequest(format!("{name} must be 0 to {max}"))),
    };
    let offset = number("offset", 0, usize::MAX)?;
    let count = number("count", SYNC_DEFAULT_COUNT, SYNC_MAX_COUNT)?.max(1);
    let appid = component.account.appid.as_str();
    let settings = &*settings;
    let (listed, total) = with_component_token(env, ctx, settings, |token| {
        let call = protocol::authorizer_list_request(&settings.api_base, appid, &token, offset);
        async move {
            let (status, body) =
                upstream::platform_call(settings, &call, settings.upstream_timeout_ms).await?;
            protocol::authorizer_list_page(status, &body, &call.sensitive)
        }
    })
    .await?;
    let (mut imported, mut conflicts, mut skipped) = (Vec::new(), Vec::new(), 0);
    let taken = listed.len().min(count);
    for row in listed.into_iter().take(count) {
        // A row without an appid or a refresh token has nothing to import.
        let Some((appid, refresh_token)) = row.and_then(|r| Some((r.appid, r.refresh_token?)))
        else {
            skipped += 1;
            continue;
        };
        match register_authorizer(env, settings, &appid).await {
            Ok(_) => {
                object_client::adopt(env, &appid, refresh_token).await?;
                imported.push(appid);
            }
            Err(AppError::Conflict(_)) => conflicts.push(appid),
            Err(e) => return Err(e),
        }
    }
    // Every row taken counts, imported or not, so that the next page starts after them.
    let done = offset + taken;
    let next_offset = (taken > 0 && done < total).then_some(done);
    log_event(json!({
        "event": "authorizers_synced", "offset": offset, "imported": imported.len(),
        "conflicts": conflicts.len(), "total": total,
    }));
    Ok(respond::json(
        200,
        &json!({
            "imported": imported,
            "conflicts": conflicts,
            "skipped": skipped,
            "total": total,
            "next_offset": next_offset,
        }),
    ))
}

/// `GET /component/authorizers?limit=&cursor=`: each authorizer's appid, when it authorized,
/// and its token's expiry and fingerprint; never a token.
async fn authorizers(request: &Request, env: &Env) -> Result<Response, AppError> {
    let pairs = query(request)?;
    let (grant, settings) =
        access::authenticate(env, request::bearer(request).as_deref(), Route::Component).await?;
    component(&settings)?;
    let limit = page_limit(param(&pairs, "limit"), STATUS_PAGE)?;
    let after = param(&pairs, "cursor").unwrap_or_default();
    let mut entries = registry::list_kind(env, AccountKind::Authorizer, after, limit + 1).await?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next_cursor = more.then(|| entries.last().map(|e| e.id.clone())).flatten();
    let entries: Vec<Registered> = entries
        .into_iter()
        .filter(|e| grant.permits(&e.id))
        .collect();
    let statuses = join_all(entries.iter().map(|e| object_client::status(env, &e.id))).await;
    let listed: Vec<Value> = entries
        .iter()
        .zip(statuses)
        .map(|(entry, status)| {
            let status = status.unwrap_or_else(|e| json!({ "error": e.body() }));
            json!({
                "appid": entry.appid,
                "registered_at": entry.created_at,
                "authorized_at": status.get("authorized_at"),
                "token": status.get("token").map(|t| json!({
                    "expires_at": t.get("expires_at"),
                    "fingerprint": t.get("fingerprint"),
                })),
                "last_error": status.get("last_error"),
            })
        })
        .collect();
    Ok(respond::json(
        200,
        &json!({ "authorizers": listed, "next_cursor": next_cursor }),
    ))
}
