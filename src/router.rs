//! The worker's HTTP entry point: routing, authentication, account selection and the KV fast
//! path.

use crate::account_object;
use crate::accounts::Account;
use crate::api;
use crate::config::{self, Settings};
use crate::error::AppError;
use crate::kv_cache;
use crate::respond;
use crate::runtime::{self, log_error, now_secs};
use crate::token::Trigger;
use serde_json::json;
use worker::{event, Context, Env, Method, Request, Response};

#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
    Ok(respond::result(route(request, &env, &ctx).await))
}

async fn route(request: Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let method = request.method();
    match request.path().as_str() {
        "/healthz" => match method {
            Method::Get => Ok(respond::json(200, &json!({ "ok": true }))),
            _ => Err(AppError::MethodNotAllowed { allow: "GET" }),
        },
        "/token" => match method {
            Method::Get => get_token(&request, env, ctx).await,
            _ => Err(AppError::MethodNotAllowed { allow: "GET" }),
        },
        "/token/refresh" => match method {
            Method::Post => refresh_token(request, env).await,
            _ => Err(AppError::MethodNotAllowed { allow: "POST" }),
        },
        _ => Err(AppError::NotFound),
    }
}

/// Authenticates the caller, then resolves the account it asks for (`?account=`, alias
/// `?appid=`) and checks the key may read it. A scoped key asking for an account outside its
/// list gets 403 whether or not the account exists.
fn authorized_account(request: &Request, env: &Env) -> Result<(Settings, Account), AppError> {
    let keys = config::client_keys(&runtime::lookup(env))?;
    let header = request.headers().get("authorization").ok().flatten();
    let grant = keys.authorize(header.as_deref())?;
    let requested = requested_account(request)?;
    if let Some(id) = &requested {
        grant.check(id)?;
    }
    let settings = runtime::settings(env)?;
    let account = settings.account(requested.as_deref())?.clone();
    grant.check(&account.id)?;
    Ok((settings, account))
}

fn requested_account(request: &Request) -> Result<Option<String>, AppError> {
    let url = request
        .url()
        .map_err(|_| AppError::BadRequest("unreadable URL".into()))?;
    let mut named = url
        .query_pairs()
        .filter(|(name, _)| name == "account" || name == "appid")
        .map(|(_, value)| value.into_owned());
    match (named.next(), named.next()) {
        (None, _) => Ok(None),
        (Some(id), None) if !id.is_empty() => Ok(Some(id)),
        (Some(_), None) => Err(AppError::BadRequest("?account= is empty".into())),
        (Some(_), Some(_)) => Err(AppError::BadRequest("name one account, once".into())),
    }
}

/// Served from KV when the cached token is valid; a token inside the margin is still served at
/// once while the Durable Object refreshes it in the background. A miss goes to the object.
async fn get_token(request: &Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let (settings, account) = authorized_account(request, env)?;
    let now = now_secs();
    let Some(cached) = kv_cache::read(env, &account.id)
        .await
        .filter(|r| r.is_valid(now))
    else {
        return account_object::ask(env, &account.id, Trigger::Read).await;
    };
    if cached.is_due(now, settings.refresh.margin_secs) {
        let (env, id) = (env.clone(), account.id.clone());
        ctx.wait_until(async move {
            if let Err(e) = account_object::ask(&env, &id, Trigger::Background).await {
                log_error(json!({ "event": "background_refresh_failed", "account": id, "message": e.message() }));
            }
        });
    }
    Ok(respond::json(
        200,
        &cached.answer(&account.id, &account.appid, now),
    ))
}

async fn refresh_token(mut request: Request, env: &Env) -> Result<Response, AppError> {
    let (_, account) = authorized_account(&request, env)?;
    let body = request
        .text()
        .await
        .map_err(|_| AppError::BadRequest("unreadable body".into()))?;
    let stale_token = api::passive_refresh_body(&body)?;
    account_object::ask(env, &account.id, Trigger::Passive { stale_token }).await
}
