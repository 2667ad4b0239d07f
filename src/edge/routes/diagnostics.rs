//! What the operator asks WeChat about an account, with the token the server holds for it: an
//! API's daily quota (`GET /quota`, cached a minute per account and path) and a failed call's
//! record by its rid (`GET /diagnostics/rid`, every secret in it masked).

use crate::edge::adapters::memo;
use crate::edge::adapters::request::{self, param, query};
use crate::edge::adapters::respond;
use crate::edge::adapters::runtime::{now_millis, now_secs};
use crate::edge::adapters::upstream;
use crate::edge::objects::reader::{with_healing, Healed};
use crate::edge::routes::access::{self, account_name};
use crate::error::{wechat_codes, AppError, UpstreamFailure};
use crate::policy::accounts::Account;
use crate::policy::auth::Route;
use crate::policy::config::Settings;
use crate::policy::refresh::Trigger;
use crate::wechat::openapi;
use crate::wechat::platform::PlatformRequest;
use serde_json::{json, Value};
use worker::{Context, Env, Request, Response};

/// How long an API's quota, once asked, is answered from this isolate's memory.
const QUOTA_CACHE_MS: u64 = 60_000;

/// `GET /quota?account=&path=/cgi-bin/message/custom/send`.
pub async fn quota(request: &Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let pairs = query(request)?;
    let presented = request::bearer(request);
    let (grant, settings) = access::authenticate(env, presented.as_deref(), Route::Quota).await?;
    let path = openapi::cgi_path(param(&pairs, "path")).map_err(AppError::BadRequest)?;
    let account = access::account(env, &grant, &settings, account_name(&pairs)?).await?;
    metered(&account)?;
    let key = format!("quota:{}:{path}", account.id);
    if let Some(answer) = memo::recall::<Value>(&key, now_millis()) {
        return Ok(respond::json(200, &answer));
    }
    let build = |token: &str| openapi::quota_request(&settings.api_base, token, path);
    let quota = with_token((env, ctx, &settings), &account, build, openapi::parse_quota).await?;
    let answer = json!({
        "account": account.id, "path": path, "daily_limit": quota.daily_limit,
        "used": quota.used, "remain": quota.remain, "rate_limit": quota.rate_limit,
        "fetched_at": now_secs(),
    });
    memo::remember(&key, answer.clone(), Some(now_millis() + QUOTA_CACHE_MS));
    Ok(respond::json(200, &answer))
}

/// `GET /diagnostics/rid?account=&rid=`: a client key with the `diagnostics` route, or an
/// admin key.
pub async fn rid(request: &Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let pairs = query(request)?;
    let (grant, settings) = access::authenticate_or_admin(env, request, Route::Diagnostics).await?;
    let rid = openapi::rid(param(&pairs, "rid")).map_err(AppError::BadRequest)?;
    let account = access::account(env, &grant, &settings, account_name(&pairs)?).await?;
    metered(&account)?;
    let build = |token: &str| openapi::rid_request(&settings.api_base, token, rid);
    let secret = account.secret.clone();
    let record = with_token(
        (env, ctx, &settings),
        &account,
        build,
        |status, body, token| openapi::parse_rid(status, body, token, &[token, &secret]),
    )
    .await?;
    let answer = json!({ "account": account.id, "rid": rid, "request": record });
    Ok(respond::json(200, &answer))
}

/// Refuses WeCom accounts of every kind: WeCom has neither API, its limits are its own, and
/// its tokens are never sent to WeChat.
fn metered(account: &Account) -> Result<(), AppError> {
    match account.kind.is_wecom() {
        true => Err(AppError::BadRequest(
            "WeCom accounts have no quota or rid lookup at WeChat".into(),
        )),
        false => Ok(()),
    }
}

/// Sends the request `build` makes with the account's current token, and reads the answer
/// with `parse`; a token WeChat refuses is replaced once (shared with every caller that saw
/// it) and the request sent again.
async fn with_token<T>(
    (env, ctx, settings): (&Env, &Context, &Settings),
    account: &Account,
    build: impl Fn(&str) -> PlatformRequest,
    parse: impl Fn(u16, &str, &str) -> Result<T, UpstreamFailure>,
) -> Result<T, AppError> {
    let (build, parse) = (&build, &parse);
    let send = |token: String| async move {
        let request = build(&token);
        let budget = settings.upstream_timeout_ms;
        let (status, body) = upstream::platform_call(settings, &request, budget).await?;
        parse(status, &body, &token)
    };
    let rejected = |outcome: &Result<T, UpstreamFailure>| {
        matches!(outcome, Err(UpstreamFailure::WeChat { errcode, .. })
            if wechat_codes::is_token_rejected(*errcode))
    };
    let trigger = |stale_token| Trigger::Rejected { stale_token };
    let healed = with_healing((env, ctx, settings), account, trigger, true, rejected, send).await?;
    match healed {
        Healed::First(outcome) | Healed::Resent(outcome) => outcome.map_err(AppError::Upstream),
        Healed::Refused { why, .. } => Err(why),
    }
}
