//! WeChat's own token and ticket paths, in WeChat's own JSON, so an unmodified SDK whose API
//! base points here works. The `secret` an SDK sends is a client key; the access_token it sends
//! to `getticket` must be one this server issued (current, or replaced under five minutes ago).
//!
//! Answers are always HTTP 200, errors as `{"errcode","errmsg"}`, as WeChat does.

use crate::error::{wechat_shape, AppError};
use crate::jssdk::{TicketKind, TicketRecord};
use crate::kv_cache;
use crate::respond;
use crate::router::{self, param, query, read};
use crate::runtime::{self, join_all, now_secs};
use crate::token::{Credential, TokenRecord, Trigger};
use serde_json::{json, Value};
use worker::{Context, Env, Request, Response};

/// A WeChat-shaped failure: `{"errcode","errmsg"}`.
struct WeChatError(Value);

impl From<AppError> for WeChatError {
    fn from(error: AppError) -> Self {
        Self(wechat_shape(&error.body()))
    }
}

fn wechat_error(errcode: i64, errmsg: &str) -> WeChatError {
    WeChatError(json!({ "errcode": errcode, "errmsg": errmsg }))
}

/// `body`: the POST body, already size- and type-checked (empty for GET).
pub async fn answer(
    path: &str,
    request: &Request,
    body: &str,
    env: &Env,
    ctx: &Context,
) -> Response {
    let outcome = match path {
        "/cgi-bin/token" => token(request, env, ctx).await,
        "/cgi-bin/stable_token" => stable_token(body, env, ctx).await,
        _ => ticket(request, env, ctx).await,
    };
    respond::json(200, &outcome.unwrap_or_else(|WeChatError(body)| body))
}

/// `GET /cgi-bin/token?grant_type=client_credential&appid=<account>&secret=<client key>`
async fn token(request: &Request, env: &Env, ctx: &Context) -> Result<Value, WeChatError> {
    let pairs = query(request)?;
    if param(&pairs, "grant_type") != Some("client_credential") {
        return Err(wechat_error(40002, "invalid grant_type"));
    }
    issue(
        env,
        ctx,
        param(&pairs, "appid"),
        param(&pairs, "secret"),
        false,
    )
    .await
}

/// `POST /cgi-bin/stable_token` with `{"grant_type","appid","secret","force_refresh"}`;
/// `force_refresh: true` is a passive refresh of the current token.
async fn stable_token(body: &str, env: &Env, ctx: &Context) -> Result<Value, WeChatError> {
    let body: Value =
        serde_json::from_str(body).map_err(|_| wechat_error(47001, "data format error"))?;
    if body.get("grant_type").and_then(Value::as_str) != Some("client_credential") {
        return Err(wechat_error(40002, "invalid grant_type"));
    }
    let text = |name| body.get(name).and_then(Value::as_str);
    let force = body
        .get("force_refresh")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    issue(env, ctx, text("appid"), text("secret"), force).await
}

async fn issue(
    env: &Env,
    ctx: &Context,
    appid: Option<&str>,
    key: Option<&str>,
    force: bool,
) -> Result<Value, WeChatError> {
    let keys = runtime::client_keys(env)?;
    let grant = keys.authorize_key(key)?;
    let settings = runtime::settings(env)?;
    let account = settings.account_for_sdk(appid)?.clone();
    grant.check(&account.id)?;
    let record = if force {
        router::refresh(env, &settings, &account, Trigger::Force).await?
    } else {
        read::<TokenRecord>(env, ctx, &settings, &account, ()).await?
    };
    Ok(
        json!({ "access_token": record.access_token, "expires_in": record.remaining_secs(now_secs()) }),
    )
}

/// `GET /cgi-bin/ticket/getticket?access_token=<token this server issued>&type=jsapi|wx_card`
async fn ticket(request: &Request, env: &Env, ctx: &Context) -> Result<Value, WeChatError> {
    let pairs = query(request)?;
    let invalid_token = || {
        wechat_error(
            40001,
            "invalid credential, access_token is invalid or not latest",
        )
    };
    let presented = param(&pairs, "access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(invalid_token)?;
    let settings = runtime::settings(env)?;

    // The token names the account: look for it among the accounts' cached tokens.
    let now = now_secs();
    let lookups = settings.accounts.iter().map(|account| {
        let key = kv_cache::token_key(&account.id);
        async move { kv_cache::read::<TokenRecord>(env, &key).await }
    });
    let cached = join_all(lookups.collect()).await;
    let account = settings
        .accounts
        .iter()
        .zip(cached)
        .find(|(_, record)| record.as_ref().is_some_and(|r| r.accepts(presented, now)))
        .map(|(account, _)| account.clone())
        .ok_or_else(invalid_token)?;

    let kind = TicketKind::parse(Some(param(&pairs, "type").unwrap_or("jsapi")), account.kind)
        .map_err(|_| wechat_error(40097, "invalid args: type must be jsapi or wx_card"))?;
    let record = read::<TicketRecord>(env, ctx, &settings, &account, kind).await?;
    Ok(json!({
        "errcode": 0,
        "errmsg": "ok",
        "ticket": record.ticket,
        "expires_in": record.remaining_secs(now_secs()),
    }))
}
