//! The admin API: accounts registered at runtime (`/admin/accounts…`), behind `ADMIN_KEYS`.
//! A write goes to the registry object (the truth, which also writes KV, what the edge reads),
//! then to the account's own object. Environment accounts are listed and can be reset, but
//! are read-only here.

use crate::edge::adapters::request::{self, param, query};
use crate::edge::adapters::respond;
use crate::edge::adapters::runtime::{self, log_event, now_secs};
use crate::edge::objects::directory::{self, Listed};
use crate::edge::objects::object_client;
use crate::edge::objects::reader;
use crate::edge::objects::registry;
use crate::edge::objects::removal;
use crate::edge::routes::access;
use crate::error::AppError;
use crate::policy::accounts::{self, TokenApi};
use crate::policy::config::Settings;
use crate::policy::registry::{
    env_public, page_limit, Cursor, Registered, ADMIN_PAGE, RESEAL_BATCH,
};
use crate::policy::sealing::NONCE_BYTES;
use serde_json::{json, Value};
use worker::{Env, Method, Request, Response};

/// What `POST /admin/accounts/<id>/<action>` does to an account (environment accounts too).
const ACTIONS: [&str; 2] = ["/reset", "/clear-quota"];

/// `/admin/accounts` and `/admin/accounts/<id>[/reset|/clear-quota]`; `rest` is the path after
/// `/admin/accounts`, `method` the request's (HEAD as GET). The key is checked before anything
/// else, the body read only after it.
pub async fn route(
    request: &Request,
    method: Method,
    rest: &str,
    env: &Env,
) -> Result<Response, AppError> {
    access::authenticate_admin(env, request).await?;
    let settings = runtime::settings(env)?;
    match (rest.strip_prefix('/'), method) {
        (None, Method::Get) if rest.is_empty() => list(request, env, &settings).await,
        (None, _) if rest.is_empty() => Err(AppError::MethodNotAllowed { allow: "GET, HEAD" }),
        (Some(tail), method) if ACTIONS.iter().any(|a| tail.ends_with(a)) => {
            if method != Method::Post {
                return Err(AppError::MethodNotAllowed { allow: "POST" });
            }
            match tail.rsplit_once('/') {
                Some((id, "reset")) => reset(env, &settings, id).await,
                Some((id, _)) => clear_quota(env, &settings, id).await,
                None => Err(AppError::NotFound),
            }
        }
        (Some(id), _) if id.contains('/') || id.is_empty() => Err(AppError::NotFound),
        (Some(id), Method::Get) => show(env, &settings, id).await,
        (Some(id), Method::Put) => put(request, env, &settings, id).await,
        (Some(id), Method::Delete) => delete(env, &settings, id).await,
        (Some(_), _) => Err(AppError::MethodNotAllowed {
            allow: "GET, HEAD, PUT, DELETE",
        }),
        (None, _) => Err(AppError::NotFound),
    }
}

async fn list(request: &Request, env: &Env, settings: &Settings) -> Result<Response, AppError> {
    let pairs = query(request)?;
    let cursor = Cursor::parse(param(&pairs, "cursor"))?;
    let limit = page_limit(param(&pairs, "limit"), ADMIN_PAGE)?;
    let (listed, next) = directory::page(env, settings, &cursor, limit).await?;
    let accounts: Vec<Value> = listed.iter().map(Listed::public).collect();
    let next_cursor = next.map(|c| c.encode());
    Ok(respond::json(
        200,
        &json!({ "accounts": accounts, "next_cursor": next_cursor }),
    ))
}

async fn show(env: &Env, settings: &Settings, id: &str) -> Result<Response, AppError> {
    if let Ok(account) = settings.account(id) {
        return Ok(respond::json(200, &env_public(account)));
    }
    let entry = registry::get(env, id)
        .await?
        .ok_or(AppError::UnknownAccount)?;
    Ok(respond::json(200, &entry.public()))
}

fn read_only(id: &str) -> AppError {
    AppError::Conflict(format!(
        "\"{id}\" is configured in the environment (WECHAT_ACCOUNTS or WECHAT_APPID), which \
         the admin API does not change"
    ))
}

async fn put(
    request: &Request,
    env: &Env,
    settings: &Settings,
    id: &str,
) -> Result<Response, AppError> {
    let body = request::read(request).await?;
    let entry: Value = serde_json::from_str(&body)
        .map_err(|_| AppError::BadRequest("the body is not a JSON object".into()))?;
    let account = accounts::parse_registered(id, &entry, settings.default_api)?;
    if settings.account(id).is_ok() {
        return Err(read_only(id));
    }
    let rival = settings.accounts.iter().find(|other| {
        other.appid == account.appid && other.api == account.api && account.api != TokenApi::WeCom
    });
    if let Some(rival) = rival {
        return Err(AppError::Conflict(format!(
            "the environment account \"{}\" already fetches tokens for this appid through this \
             API; two would invalidate each other's tokens",
            rival.id
        )));
    }
    // Sealed here, so the registry, KV and the logs only ever see the sealed form.
    let nonce = runtime::random_bytes::<NONCE_BYTES>();
    let sealed = runtime::key_ring(env)?.seal(&account.id, &account.secret, nonce);
    // The registry writes the edge's copy in KV too, in the order of the writes.
    let stored = registry::put(env, Registered::new(&account, sealed, now_secs(), None)).await?;
    directory::forget_registered(id, false);
    if stored.revived {
        // A removal left half done: the removed account's state goes first.
        reader::forget_account(id);
        object_client::erase(env, id, None).await?;
    } else if !stored.created {
        reader::forget_account(id);
        object_client::forget(env, id).await?;
    }
    // Its first token now, and its alarm set: the first read is a KV hit. A failure here
    // (a wrong secret, say) is the account's to report in `/status`, not the write's.
    let warm = object_client::cron(env, id).await;
    log_event(json!({
        "event": "admin_account_put", "account": id, "created": stored.created,
        "warmed": warm.is_ok(),
    }));
    let status = if stored.created { 201 } else { 200 };
    let mut answer = stored.entry.public();
    // The registry has it; the edge's copy in KV may lag until the cron writes it again.
    answer["edge_updated"] = json!(stored.published);
    Ok(respond::json(status, &answer))
}

async fn delete(env: &Env, settings: &Settings, id: &str) -> Result<Response, AppError> {
    if settings.account(id).is_ok() {
        return Err(read_only(id));
    }
    removal::remove(env, id, None)
        .await?
        .ok_or(AppError::UnknownAccount)?;
    log_event(json!({ "event": "admin_account_deleted", "account": id }));
    Ok(respond::empty(204))
}

async fn reset(env: &Env, settings: &Settings, id: &str) -> Result<Response, AppError> {
    directory::by_id(env, settings, id).await?;
    object_client::reset(env, id).await?;
    log_event(json!({ "event": "admin_account_reset", "account": id }));
    Ok(respond::json(200, &json!({ "id": id, "reset": true })))
}

/// Asks WeChat to clear the account's quotas (one of its 10 a month), and lifts the server's
/// own quota pause and count as a reset does.
async fn clear_quota(env: &Env, settings: &Settings, id: &str) -> Result<Response, AppError> {
    directory::by_id(env, settings, id).await?;
    let answer = object_client::clear_quota(env, id).await?;
    log_event(json!({ "event": "admin_quota_cleared", "account": id }));
    Ok(respond::json(200, &answer))
}

/// `POST /admin/reseal?limit=`: seals again, under the first key of
/// `ACCOUNTS_ENCRYPTION_KEY`, up to `limit` runtime accounts sealed under another (default
/// 100, at most 200); call it again until `remaining` is 0, and remove the older key once
/// `edge_pending` (copies in KV not yet written again: the cron writes them) is 0 too. No
/// appsecret leaves the worker.
pub async fn reseal(request: &Request, env: &Env) -> Result<Response, AppError> {
    let pairs = query(request)?;
    let limit = page_limit(param(&pairs, "limit"), RESEAL_BATCH)?;
    let ring = runtime::key_ring(env)?;
    // The registry writes the edge's copies of what it sealed again.
    let outcome = registry::reseal(env, limit).await?;
    for entry in &outcome.resealed {
        directory::forget_registered(&entry.id, false);
    }
    log_event(json!({
        "event": "admin_reseal", "resealed": outcome.resealed.len(),
        "remaining": outcome.remaining, "unopenable": outcome.unopenable.len(),
    }));
    Ok(respond::json(
        200,
        &json!({
            "sealing_key": ring.sealing_id(),
            "resealed": outcome.resealed.len(),
            "remaining": outcome.remaining,
            "unopenable": outcome.unopenable,
            "edge_pending": outcome.edge_pending,
        }),
    ))
}
