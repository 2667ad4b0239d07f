//! The worker's HTTP entry point: routing, authentication, account selection, and the KV
//! read-through shared by tokens and tickets.

use crate::account_object;
use crate::accounts::Account;
use crate::api;
use crate::compat;
use crate::config::Settings;
use crate::error::AppError;
use crate::jssdk::{self, TicketKind, TicketRecord};
use crate::kv_cache;
use crate::memo;
use crate::refresher::Acquired;
use crate::respond;
use crate::runtime::{self, join_all, log_error, now_millis, now_secs};
use crate::token::{Credential, TokenRecord, Trigger};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::rc::Rc;
use worker::{event, Context, Env, Method, Request, Response};

#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
    let origin = request.headers().get("origin").ok().flatten();
    let cors = api::cors_headers(origin.as_deref(), &runtime::cors_origins(&env));
    let head = request.method() == Method::Head;
    let response = if request.method() == Method::Options && cors.is_some() {
        respond::empty(204)
    } else {
        respond::result(route(request, &env, &ctx).await)
    };
    Ok(respond::finish(response, cors.as_deref(), head))
}

async fn route(mut request: Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    // HEAD is answered as GET; `respond::finish` drops the body.
    let method = match request.method() {
        Method::Head => Method::Get,
        other => other,
    };
    let allow = |allowed: Method| {
        if method == allowed {
            Ok(())
        } else if allowed == Method::Post {
            Err(AppError::MethodNotAllowed { allow: "POST" })
        } else {
            Err(AppError::MethodNotAllowed { allow: "GET, HEAD" })
        }
    };
    let path = request.path();
    match path.as_str() {
        "/healthz" => allow(Method::Get).map(|()| respond::json(200, &json!({ "ok": true }))),
        "/token" => {
            allow(Method::Get)?;
            get_token(&request, env, ctx).await
        }
        "/token/refresh" => {
            allow(Method::Post)?;
            let body = read_body(&mut request).await?;
            refresh_token(&request, &body, env).await
        }
        "/ticket" => {
            allow(Method::Get)?;
            get_ticket(&request, env, ctx).await
        }
        "/jssdk/signature" => {
            allow(Method::Get)?;
            get_signature(&request, env, ctx).await
        }
        "/status" => {
            allow(Method::Get)?;
            get_status(&request, env).await
        }
        "/cgi-bin/token" | "/cgi-bin/ticket/getticket" => {
            allow(Method::Get)?;
            Ok(compat::answer(&path, &request, "", env, ctx).await)
        }
        "/cgi-bin/stable_token" => {
            allow(Method::Post)?;
            let body = read_body(&mut request).await?;
            Ok(compat::answer(&path, &request, &body, env, ctx).await)
        }
        _ => Err(AppError::NotFound),
    }
}

/// A POST body: at most 8 KiB (413), and JSON unless empty (415).
async fn read_body(request: &mut Request) -> Result<String, AppError> {
    let header = |name| request.headers().get(name).ok().flatten();
    let (declared, content_type) = (header("content-length"), header("content-type"));
    api::check_body_size(declared.as_deref(), None)?;
    let body = request
        .text()
        .await
        .map_err(|_| AppError::BadRequest("unreadable body".into()))?;
    api::check_body_size(None, Some(body.len()))?;
    api::check_content_type(content_type.as_deref(), body.trim().is_empty())?;
    Ok(body)
}

/// The query's name/value pairs.
pub fn query(request: &Request) -> Result<Vec<(String, String)>, AppError> {
    let url = request
        .url()
        .map_err(|_| AppError::BadRequest("unreadable URL".into()))?;
    Ok(url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Authenticates `key`, then resolves the account asked for and checks the key may read it.
/// A scoped key asking for an account outside its list gets 403 whether or not it exists.
fn authorized_account(
    env: &Env,
    key: Option<&str>,
    requested: Option<&str>,
) -> Result<(Rc<Settings>, Account), AppError> {
    let keys = runtime::client_keys(env)?;
    let grant = keys.authorize_key(key)?;
    if let Some(id) = requested {
        grant.check(id)?;
    }
    let settings = runtime::settings(env)?;
    let account = settings.account(requested)?.clone();
    grant.check(&account.id)?;
    Ok((settings, account))
}

/// An authenticated request for one account.
struct Caller {
    settings: Rc<Settings>,
    account: Account,
    query: Vec<(String, String)>,
}

/// `Authorization: Bearer <key>` and `?account=` (alias `?appid=`).
fn authorized(request: &Request, env: &Env) -> Result<Caller, AppError> {
    let header = request.headers().get("authorization").ok().flatten();
    let pairs = query(request)?;
    let requested = requested_account(&pairs)?;
    let (settings, account) = authorized_account(
        env,
        header.as_deref().and_then(crate::auth::bearer_token),
        requested,
    )?;
    Ok(Caller {
        settings,
        account,
        query: pairs,
    })
}

/// The account `?account=` (alias `?appid=`) names, if any: once, and not empty.
fn requested_account(pairs: &[(String, String)]) -> Result<Option<&str>, AppError> {
    let mut named = pairs
        .iter()
        .filter(|(k, _)| k == "account" || k == "appid")
        .map(|(_, v)| v.as_str());
    match (named.next(), named.next()) {
        (None, _) => Ok(None),
        (Some(id), None) if !id.is_empty() => Ok(Some(id)),
        (Some(_), None) => Err(AppError::BadRequest("?account= is empty".into())),
        (Some(_), Some(_)) => Err(AppError::BadRequest("name one account, once".into())),
    }
}

/// A token or a ticket, as the read-through below fetches it.
pub trait Readable: Credential + DeserializeOwned + 'static {
    type Kind: Copy + 'static;
    fn kv_key(account_id: &str, kind: Self::Kind) -> String;
    async fn ask(
        env: &Env,
        account_id: &str,
        kind: Self::Kind,
        trigger: Trigger,
    ) -> Result<Acquired<Self>, AppError>;
}

impl Readable for TokenRecord {
    type Kind = ();
    fn kv_key(account_id: &str, (): ()) -> String {
        kv_cache::token_key(account_id)
    }
    async fn ask(
        env: &Env,
        account_id: &str,
        (): (),
        trigger: Trigger,
    ) -> Result<Acquired<Self>, AppError> {
        account_object::token(env, account_id, trigger).await
    }
}

impl Readable for TicketRecord {
    type Kind = TicketKind;
    fn kv_key(account_id: &str, kind: TicketKind) -> String {
        kv_cache::ticket_key(account_id, kind)
    }
    async fn ask(
        env: &Env,
        account_id: &str,
        kind: TicketKind,
        trigger: Trigger,
    ) -> Result<Acquired<Self>, AppError> {
        account_object::ticket(env, account_id, kind, trigger).await
    }
}

/// Served from this isolate's memory or from KV when the record there is valid; a record
/// inside the margin is still served at once while the Durable Object refreshes it in the
/// background. A miss goes to the object.
pub async fn read<R: Readable>(
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    account: &Account,
    kind: R::Kind,
) -> Result<R, AppError> {
    let now_ms = now_millis();
    let now = now_ms / 1000;
    let key = R::kv_key(&account.id, kind);
    if let Some(remembered) = memo::recall::<R>(&key, now_ms) {
        return Ok(remembered);
    }
    let margin_secs = settings.refresh.margin_secs;
    let cached = kv_cache::read::<R>(env, &key).await;
    let Some(cached) = cached.filter(|r| r.is_valid(now)) else {
        // Whatever the object does may replace the token (a ticket fetch that WeChat answers
        // with 40001 does): this isolate must not keep answering with the old one.
        memo::forget(&kv_cache::token_key(&account.id));
        let acquired = R::ask(env, &account.id, kind, Trigger::Read).await?;
        let record = acquired
            .record()
            .ok_or_else(|| runtime::internal("policy", "a read got nothing"))?;
        remember(&key, &record, now_ms, margin_secs);
        return Ok(record);
    };
    if cached.is_due(now, margin_secs) {
        let (env, id) = (env.clone(), account.id.clone());
        ctx.wait_until(async move {
            if let Err(e) = R::ask(&env, &id, kind, Trigger::Background).await {
                log_error(json!({ "event": "background_refresh_failed", "account": id, "message": e.message() }));
            }
        });
    }
    remember(&key, &cached, now_ms, margin_secs);
    Ok(cached)
}

/// Keeps `record` in this isolate's memory for a moment, never into its margin (where every
/// read must see it and ask for a refresh).
pub fn remember<R: Credential + 'static>(key: &str, record: &R, now_ms: u64, margin_secs: u64) {
    let due_at_ms = record.expires_at().saturating_sub(margin_secs) * 1000;
    let until_ms = (now_ms + memo::RECORD_MEMO_MS).min(due_at_ms);
    if until_ms > now_ms {
        memo::remember(key, record.clone(), Some(until_ms));
    }
}

async fn get_token(request: &Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let Caller {
        settings, account, ..
    } = authorized(request, env)?;
    let record = read::<TokenRecord>(env, ctx, &settings, &account, ()).await?;
    Ok(respond::json(
        200,
        &record.answer(&account.id, &account.appid, now_secs()),
    ))
}

async fn refresh_token(request: &Request, body: &str, env: &Env) -> Result<Response, AppError> {
    let Caller {
        settings, account, ..
    } = authorized(request, env)?;
    let stale_token = api::passive_refresh_body(body)?;
    let record = refresh(env, &settings, &account, Trigger::Passive { stale_token }).await?;
    Ok(respond::json(
        200,
        &record.answer(&account.id, &account.appid, now_secs()),
    ))
}

/// A passive or forced refresh by the account's object. Readers in this isolate see its
/// outcome at once.
pub async fn refresh(
    env: &Env,
    settings: &Settings,
    account: &Account,
    trigger: Trigger,
) -> Result<TokenRecord, AppError> {
    let acquired = account_object::token(env, &account.id, trigger).await?;
    let record = acquired
        .record()
        .ok_or_else(|| runtime::internal("policy", "a refresh got nothing"))?;
    let margin_secs = settings.refresh.margin_secs;
    remember(
        &kv_cache::token_key(&account.id),
        &record,
        now_millis(),
        margin_secs,
    );
    Ok(record)
}

/// Every account the key may read (or the one `?account=` names), each from its object.
async fn get_status(request: &Request, env: &Env) -> Result<Response, AppError> {
    let keys = runtime::client_keys(env)?;
    let header = request.headers().get("authorization").ok().flatten();
    let grant = keys.authorize(header.as_deref())?;
    let pairs = query(request)?;
    let settings = runtime::settings(env)?;
    let named = requested_account(&pairs)?;
    if let Some(id) = named {
        grant.check(id)?;
        settings.account(Some(id))?;
    }
    let ids: Vec<&str> = settings
        .accounts
        .iter()
        .map(|account| account.id.as_str())
        .filter(|id| grant.permits(id) && named.is_none_or(|named| named == *id))
        .collect();
    let entries = join_all(
        ids.iter()
            .map(|id| account_object::status(env, id))
            .collect(),
    )
    .await;
    let accounts: Vec<_> = ids
        .iter()
        .zip(entries)
        .map(|(id, entry)| entry.unwrap_or_else(|e| json!({ "account": id, "error": e.body() })))
        .collect();
    Ok(respond::json(200, &json!({ "accounts": accounts })))
}

async fn get_ticket(request: &Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let Caller {
        settings,
        account,
        query: pairs,
    } = authorized(request, env)?;
    let kind = TicketKind::parse(param(&pairs, "type"), account.kind)?;
    let record = read::<TicketRecord>(env, ctx, &settings, &account, kind).await?;
    Ok(respond::json(
        200,
        &record.answer(kind, &account.id, now_secs()),
    ))
}

async fn get_signature(request: &Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let Caller {
        settings,
        account,
        query: pairs,
    } = authorized(request, env)?;
    let url = jssdk::page_url(param(&pairs, "url"))?;
    let ticket = read::<TicketRecord>(env, ctx, &settings, &account, TicketKind::Jsapi).await?;
    let nonce = jssdk::nonce_from(&runtime::random_bytes::<16>());
    let answer = jssdk::signature_answer(&account.appid, &ticket.ticket, &nonce, now_secs(), url);
    Ok(respond::json(200, &answer))
}
