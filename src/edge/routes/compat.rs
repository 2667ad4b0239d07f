//! WeChat's own token and ticket paths (and WeCom's `gettoken`, and the open platform's
//! component and authorizer tokens), in WeChat's own JSON, so an unmodified SDK whose API
//! base points here works. The `secret` an SDK sends is a client key; the access_token it sends
//! to `getticket` must be one this server issued (current, or replaced moments ago and still
//! accepted by WeChat).
//!
//! Answers are always HTTP 200, errors as `{"errcode","errmsg"}`, as WeChat does.

use crate::edge::adapters::request::param;
use crate::edge::adapters::respond;
use crate::edge::adapters::runtime::{self, now_secs};
use crate::edge::objects::directory;
use crate::edge::objects::reader::{self, read};
use crate::edge::routes::access;
use crate::error::{wechat_shape, AppError};
use crate::policy::accounts::AccountKind;
use crate::policy::auth::Route;
use crate::policy::config::AccountName;
use crate::policy::ticket::{TicketKind, TicketRecord};
use crate::policy::token::{Credential, TokenRecord};
use crate::policy::wecom_provider::corp_account_id;
use serde_json::{json, Value};
use worker::{Context, Env, Response};

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

fn invalid_token() -> WeChatError {
    wechat_error(
        40001,
        "invalid credential, access_token is invalid or not latest",
    )
}

/// `pairs`: the query; `body`: the POST body, already size- and type-checked (empty for GET).
pub async fn answer(
    path: &str,
    pairs: &[(String, String)],
    body: &str,
    env: &Env,
    ctx: &Context,
) -> Response {
    let outcome = match path {
        "/cgi-bin/token" => token(pairs, env, ctx).await,
        "/cgi-bin/gettoken" => wecom_token(pairs, env, ctx).await,
        "/cgi-bin/stable_token" => stable_token(body, env, ctx).await,
        "/cgi-bin/component/api_component_token" => component_token(body, env, ctx).await,
        "/cgi-bin/component/api_authorizer_token" => authorizer_token(pairs, body, env, ctx).await,
        "/cgi-bin/service/get_suite_token" => suite_token(body, env, ctx).await,
        "/cgi-bin/service/get_provider_token" => provider_token(body, env, ctx).await,
        "/cgi-bin/service/get_corp_token" => corp_token(pairs, body, env, ctx).await,
        _ => ticket(pairs, env, ctx).await,
    };
    respond::json(200, &outcome.unwrap_or_else(|WeChatError(body)| body))
}

/// `GET /cgi-bin/token?grant_type=client_credential&appid=<account>&secret=<client key>`
async fn token(pairs: &[(String, String)], env: &Env, ctx: &Context) -> Result<Value, WeChatError> {
    if param(pairs, "grant_type") != Some("client_credential") {
        return Err(wechat_error(40002, "invalid grant_type"));
    }
    issue(env, ctx, param(pairs, "appid"), param(pairs, "secret")).await
}

/// WeCom's `GET /cgi-bin/gettoken?corpid=<account id or corpid>&corpsecret=<client key>`, in
/// WeCom's shape (`errcode` 0 on success; a wrong secret is 40001 there). Apps of one corp share
/// the corpid: name them by account id.
async fn wecom_token(
    pairs: &[(String, String)],
    env: &Env,
    ctx: &Context,
) -> Result<Value, WeChatError> {
    let issued = issue(env, ctx, param(pairs, "corpid"), param(pairs, "corpsecret")).await;
    match issued {
        Ok(mut answer) => {
            answer["errcode"] = json!(0);
            answer["errmsg"] = json!("ok");
            Ok(answer)
        }
        Err(WeChatError(body)) if body["errcode"] == 40125 => {
            Err(wechat_error(40001, "invalid secret"))
        }
        Err(other) => Err(other),
    }
}

/// `POST /cgi-bin/stable_token` with `{"grant_type","appid","secret","force_refresh"}`.
/// `force_refresh` is answered like a normal fetch: it names no rejected token, and forcing on
/// an SDK's word would let any client kill the token every other consumer holds. A client whose
/// token was rejected reports it with `POST /token/refresh`.
async fn stable_token(body: &str, env: &Env, ctx: &Context) -> Result<Value, WeChatError> {
    let body: Value =
        serde_json::from_str(body).map_err(|_| wechat_error(47001, "data format error"))?;
    if body.get("grant_type").and_then(Value::as_str) != Some("client_credential") {
        return Err(wechat_error(40002, "invalid grant_type"));
    }
    let text = |name| body.get(name).and_then(Value::as_str);
    issue(env, ctx, text("appid"), text("secret")).await
}

async fn issue(
    env: &Env,
    ctx: &Context,
    appid: Option<&str>,
    key: Option<&str>,
) -> Result<Value, WeChatError> {
    let (record, _) = issued_token(env, ctx, appid, key).await?;
    Ok(
        json!({ "access_token": record.access_token, "expires_in": record.remaining_secs(now_secs()) }),
    )
}

/// The current token of the account `appid` names, for a client key, with the account's kind.
async fn issued_token(
    env: &Env,
    ctx: &Context,
    appid: Option<&str>,
    key: Option<&str>,
) -> Result<(TokenRecord, AccountKind), WeChatError> {
    let (grant, settings) = access::authenticate(env, key, Route::Token).await?;
    let name = AccountName::AppId(appid.unwrap_or_default());
    let account = access::account(env, &grant, &settings, name).await?;
    let record = read::<TokenRecord>(env, ctx, &settings, &account, ()).await?;
    Ok((record, account.kind))
}

/// `POST /cgi-bin/component/api_component_token` with `{"component_appid",
/// "component_appsecret": <client key>, "component_verify_ticket"}`: the component token. The
/// ticket an SDK sends is ignored: the server keeps WeChat's.
async fn component_token(body: &str, env: &Env, ctx: &Context) -> Result<Value, WeChatError> {
    let body: Value =
        serde_json::from_str(body).map_err(|_| wechat_error(47001, "data format error"))?;
    let text = |name| body.get(name).and_then(Value::as_str);
    let (record, kind) = issued_token(
        env,
        ctx,
        text("component_appid"),
        text("component_appsecret"),
    )
    .await?;
    if kind != AccountKind::Component {
        return Err(wechat_error(40013, "invalid appid: not the platform's"));
    }
    Ok(json!({
        "component_access_token": record.access_token,
        "expires_in": record.remaining_secs(now_secs()),
    }))
}

/// The current token of the account `id`, for a client key allowed `route`, with its kind;
/// a wrong key answered as WeCom answers a wrong secret (40001).
async fn issued_by_id(
    (env, ctx): (&Env, &Context),
    id: &str,
    key: Option<&str>,
    route: Route,
) -> Result<(TokenRecord, AccountKind), WeChatError> {
    let issued = async {
        let (grant, settings) = access::authenticate(env, key, route).await?;
        let account = access::account(env, &grant, &settings, AccountName::Id(id)).await?;
        let record = read::<TokenRecord>(env, ctx, &settings, &account, ()).await?;
        Ok::<_, WeChatError>((record, account.kind))
    };
    issued
        .await
        .map_err(|WeChatError(body)| match body["errcode"].as_i64() {
            Some(40125) => wechat_error(40001, "invalid secret"),
            _ => WeChatError(body),
        })
}

fn json_body(body: &str) -> Result<Value, WeChatError> {
    serde_json::from_str(body).map_err(|_| wechat_error(47001, "data format error"))
}

/// WeCom's `POST /cgi-bin/service/get_suite_token` with `{"suite_id","suite_secret": <client
/// key>,"suite_ticket"}`: the suite's token. The ticket an SDK sends is ignored: the server
/// keeps WeCom's. Like WeCom, no `errcode` on success.
async fn suite_token(body: &str, env: &Env, ctx: &Context) -> Result<Value, WeChatError> {
    let body = json_body(body)?;
    let text = |name| body.get(name).and_then(Value::as_str);
    let suite_id = text("suite_id").unwrap_or_default();
    // Only a suite's id: no other account's token is read (or fetched) for this call.
    let settings = runtime::settings(env)?;
    if !settings.suites.iter().any(|s| s.account.id == suite_id) {
        return Err(wechat_error(40083, "invalid suite_id"));
    }
    let key = text("suite_secret");
    let (record, _) = issued_by_id((env, ctx), suite_id, key, Route::WeComSuite).await?;
    Ok(json!({
        "suite_access_token": record.access_token,
        "expires_in": record.remaining_secs(now_secs()),
    }))
}

/// WeCom's `POST /cgi-bin/service/get_provider_token` with `{"corpid","provider_secret":
/// <client key>}`: the provider's token.
async fn provider_token(body: &str, env: &Env, ctx: &Context) -> Result<Value, WeChatError> {
    let body = json_body(body)?;
    let text = |name| body.get(name).and_then(Value::as_str);
    let settings = runtime::settings(env)?;
    let provider = settings
        .provider
        .as_ref()
        .filter(|p| Some(p.corpid()) == text("corpid"))
        .ok_or_else(|| wechat_error(40013, "invalid corpid"))?;
    let id = provider.account.id.clone();
    let key = text("provider_secret");
    let (record, _) = issued_by_id((env, ctx), &id, key, Route::WeComProvider).await?;
    Ok(json!({
        "provider_access_token": record.access_token,
        "expires_in": record.remaining_secs(now_secs()),
    }))
}

/// WeCom's `POST /cgi-bin/service/get_corp_token?suite_access_token=<a suite token this server
/// issued>` with `{"auth_corpid","permanent_code": <client key>}`: the corporation's token.
/// The server keeps the real permanent code.
async fn corp_token(
    pairs: &[(String, String)],
    body: &str,
    env: &Env,
    ctx: &Context,
) -> Result<Value, WeChatError> {
    let refused = || wechat_error(40082, "invalid suite_access_token");
    let presented = param(pairs, "suite_access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(refused)?;
    let settings = runtime::settings(env)?;
    let suite_id = reader::recognize(env, ctx, &settings, presented)
        .await?
        .filter(|id| settings.suites.iter().any(|s| &s.account.id == id))
        .ok_or_else(refused)?;
    let body = json_body(body)?;
    let text = |name| body.get(name).and_then(Value::as_str);
    let corp = corp_account_id(&suite_id, text("auth_corpid").unwrap_or_default());
    let issued = issued_by_id((env, ctx), &corp, text("permanent_code"), Route::Token);
    let (record, _) = issued
        .await
        .map_err(unknown_as(40084, "invalid permanent_code"))?;
    Ok(json!({
        "access_token": record.access_token,
        "expires_in": record.remaining_secs(now_secs()),
    }))
}

/// An account this server does not know, answered as WeCom answers a wrong id.
fn unknown_as(errcode: i64, errmsg: &'static str) -> impl Fn(WeChatError) -> WeChatError {
    move |WeChatError(body)| match body["errcode"].as_i64() {
        Some(40013) => wechat_error(errcode, errmsg),
        _ => WeChatError(body),
    }
}

/// What an SDK gets in place of an authorizer's refresh token: the server keeps the real one.
const REFRESH_TOKEN_PLACEHOLDER: &str = "kept-by-the-central-server";

/// `POST /cgi-bin/component/api_authorizer_token?component_access_token=<a component token
/// this server issued>` with `{"component_appid","authorizer_appid","authorizer_refresh_token"}`:
/// the authorizer's current token, refreshed with the refresh token the server keeps.
async fn authorizer_token(
    pairs: &[(String, String)],
    body: &str,
    env: &Env,
    ctx: &Context,
) -> Result<Value, WeChatError> {
    let presented = param(pairs, "component_access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(invalid_token)?;
    let settings = runtime::settings(env)?;
    let component_id = settings.component.as_ref().map(|c| c.account.id.as_str());
    let recognized = reader::recognize(env, ctx, &settings, presented).await?;
    if recognized.is_none() || recognized.as_deref() != component_id {
        return Err(invalid_token());
    }
    let body: Value =
        serde_json::from_str(body).map_err(|_| wechat_error(47001, "data format error"))?;
    let appid = body
        .get("authorizer_appid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let account = directory::find(env, &settings, AccountName::Id(appid))
        .await?
        .filter(|a| a.kind == AccountKind::Authorizer)
        .ok_or_else(|| wechat_error(61003, "component is not authorized by this account"))?;
    let record = read::<TokenRecord>(env, ctx, &settings, &account, ()).await?;
    Ok(json!({
        "authorizer_access_token": record.access_token,
        "expires_in": record.remaining_secs(now_secs()),
        "authorizer_refresh_token": REFRESH_TOKEN_PLACEHOLDER,
    }))
}

/// `GET /cgi-bin/ticket/getticket?access_token=<token this server issued>&type=jsapi|wx_card`
async fn ticket(
    pairs: &[(String, String)],
    env: &Env,
    ctx: &Context,
) -> Result<Value, WeChatError> {
    let presented = param(pairs, "access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(invalid_token)?;
    let settings = runtime::settings(env)?;
    let account_id = reader::recognize(env, ctx, &settings, presented)
        .await?
        .ok_or_else(invalid_token)?;
    let account = directory::by_id(env, &settings, &account_id).await?;
    let kind = TicketKind::parse(Some(param(pairs, "type").unwrap_or("jsapi")), account.kind)
        .map_err(|e| wechat_error(40097, &format!("invalid args: {}", e.message())))?;
    let record = read::<TicketRecord>(env, ctx, &settings, &account, kind).await?;
    Ok(json!({
        "errcode": 0,
        "errmsg": "ok",
        "ticket": record.ticket,
        "expires_in": record.remaining_secs(now_secs()),
    }))
}
