//! A WeCom service provider's routes (企业微信服务商, `WECOM_SUITES`, `WECOM_PROVIDER`):
//! WeCom's pushes to each suite's `…/wecom/suites/{suite_id}/events` (the URL check, and the
//! suite tickets), each suite's token, and the provider's token. Suites and the provider are
//! accounts of the environment (kinds `wecom_suite`, `wecom_provider`), refreshed like every
//! other, and listed by `/status`.

use crate::edge::adapters::request::{self, param, query};
use crate::edge::adapters::respond;
use crate::edge::adapters::runtime::{self, log_event, now_secs};
use crate::edge::objects::object_client;
use crate::edge::objects::reader::read;
use crate::edge::routes::access;
use crate::error::AppError;
use crate::policy::auth::Route;
use crate::policy::config::{AccountName, Settings};
use crate::policy::platform::MAX_PUSH_BYTES;
use crate::policy::token::TokenRecord;
use crate::policy::wecom_provider::{corp_account_id, Suite, PROVIDER_ACCOUNT_ID};
use crate::wechat::push::{self, PushError};
use crate::wechat::wecom_service::{self as protocol, SuiteEvent};
use serde_json::json;
use worker::{Context, Env, Method, Request, Response};

/// `/wecom/…`: `rest` is what follows `/wecom`.
pub async fn route(
    request: &Request,
    method: Method,
    rest: &str,
    env: &Env,
    ctx: &Context,
) -> Result<Response, AppError> {
    let only = |allowed: &[Method], allow: &'static str| match allowed.contains(&method) {
        true => Ok(()),
        false => Err(AppError::MethodNotAllowed { allow }),
    };
    if rest == "/provider/token" {
        only(&[Method::Get, Method::Head], "GET, HEAD")?;
        return token(request, env, ctx, Route::WeComProvider, PROVIDER_ACCOUNT_ID).await;
    }
    let Some((suite_id, what)) = rest
        .strip_prefix("/suites/")
        .and_then(|r| r.split_once('/'))
    else {
        return Err(AppError::NotFound);
    };
    match what {
        "events" if method == Method::Get => url_check(request, env, suite_id).await,
        "events" => {
            only(&[Method::Post], "GET, POST")?;
            events(request, env, suite_id).await
        }
        "token" => {
            only(&[Method::Get, Method::Head], "GET, HEAD")?;
            token(request, env, ctx, Route::WeComSuite, suite_id).await
        }
        _ => Err(AppError::NotFound),
    }
}

/// The suite `suite_id` names, or 404 saying it is not configured.
fn suite<'a>(settings: &'a Settings, suite_id: &str) -> Result<&'a Suite, AppError> {
    settings
        .suites
        .iter()
        .find(|s| s.account.id == suite_id)
        .ok_or(AppError::NotFound)
}

/// WeCom's check of the URL (`GET …?msg_signature&timestamp&nonce&echostr`): the `echostr`,
/// decrypted, is the answer. WeCom seals it for the provider's corpid.
async fn url_check(request: &Request, env: &Env, suite_id: &str) -> Result<Response, AppError> {
    let settings = runtime::settings(env)?;
    let suite = suite(&settings, suite_id)?;
    let pairs = query(request)?;
    let field = |name| param(&pairs, name).unwrap_or_default();
    let echostr = field("echostr");
    push::verify_signature(
        &suite.push_token,
        field("timestamp"),
        field("nonce"),
        echostr,
        field("msg_signature"),
    )
    .map_err(AppError::from)?;
    let provider = settings.provider.as_ref().ok_or_else(|| AppError::Config {
        variable: "WECOM_PROVIDER",
        problem: "is not set, and WeCom checks a suite's URL with the provider's corpid".into(),
    })?;
    let plain =
        push::decrypt(echostr, &[suite.aes_key], provider.corpid()).map_err(AppError::from)?;
    Ok(respond::text(200, &plain))
}

/// WeCom's pushes for one suite: verified, decrypted for that suite, its `SuiteId` checked,
/// stored, answered `success`. Anything wrong is a 4xx with a reason, and nothing is stored.
async fn events(request: &Request, env: &Env, suite_id: &str) -> Result<Response, AppError> {
    let settings = runtime::settings(env)?;
    let suite = suite(&settings, suite_id)?;
    let pairs = query(request)?;
    let field = |name| param(&pairs, name).unwrap_or_default();
    let body = request::read_bytes(request, MAX_PUSH_BYTES).await?;
    let body = String::from_utf8(body)
        .map_err(|_| AppError::BadRequest("the body is not UTF-8".into()))?;
    let encrypted = push::xml_field(&body, "Encrypt")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            AppError::from(PushError::Malformed("no Encrypt element in an <xml> body"))
        })?;
    push::verify_signature(
        &suite.push_token,
        field("timestamp"),
        field("nonce"),
        &encrypted,
        field("msg_signature"),
    )
    .map_err(AppError::from)?;
    let message =
        push::decrypt(&encrypted, &[suite.aes_key], &suite.account.id).map_err(AppError::from)?;
    match protocol::parse_suite_event(&message, &suite.account.id).map_err(AppError::from)? {
        SuiteEvent::Ticket { ticket, created_at } => {
            // Stored before WeCom hears `success` (a failure is a 5xx, and WeCom pushes again).
            object_client::verify_ticket(env, &suite.account.id, ticket, created_at).await?;
        }
        SuiteEvent::Authorized { code, created_at } => {
            // Stored by the suite's object before WeCom hears `success`; exchanged after.
            let created_at = sent_at(created_at);
            object_client::authorize(env, &suite.account.id, code, created_at).await?;
        }
        SuiteEvent::Cancelled { corpid, created_at } => {
            cancel(env, &suite.account.id, &corpid, created_at).await?;
        }
        SuiteEvent::AuthChanged { corpid } => {
            // Marked by the corporation's object before `success`; read after it. A
            // corporation this server does not know (yet) has nothing to read again.
            let id = corp_account_id(&suite.account.id, &corpid);
            // 404: no such account; 400: an account of that id that is not a corporation.
            let known = match object_client::auth_changed(env, &id).await {
                Ok(()) => true,
                Err(e) if matches!(e.status(), 400 | 404) => false,
                Err(e) => return Err(e),
            };
            log_event(json!({ "event": "wecom_auth_changed", "account": id, "known": known }));
        }
        SuiteEvent::Other { info_type } => {
            let info_type: String = info_type.chars().take(64).collect();
            log_event(json!({
                "event": "wecom_push_ignored", "suite": suite.account.id, "info_type": info_type,
            }));
        }
    }
    Ok(respond::text(200, "success"))
}

/// A corporation withdrew its authorization: its account, tokens and permanent code go. The
/// suite's object decides the order and removes it, one step with its registrations (see
/// `corp_withdrawn`), before WeCom hears `success`.
async fn cancel(env: &Env, suite_id: &str, corpid: &str, created_at: u64) -> Result<(), AppError> {
    let created_at = sent_at(created_at);
    let done = object_client::corp_withdrawn(env, suite_id, corpid, created_at).await?;
    log_event(json!({
        "event": "wecom_corp_cancelled", "account": corp_account_id(suite_id, corpid),
        "removed": done["removed"], "out_of_order": done["in_order"] == false,
    }));
    Ok(())
}

/// A push's TimeStamp; one without it counts as sent now.
fn sent_at(created_at: u64) -> u64 {
    match created_at {
        0 => now_secs(),
        at => at,
    }
}

/// `GET /wecom/suites/{suite_id}/token`, `GET /wecom/provider/token`: the token, as `/token`
/// answers any account's.
async fn token(
    request: &Request,
    env: &Env,
    ctx: &Context,
    route: Route,
    id: &str,
) -> Result<Response, AppError> {
    let (grant, settings) =
        access::authenticate(env, request::bearer(request).as_deref(), route).await?;
    let configured = match route {
        Route::WeComProvider => settings.provider.is_some(),
        _ => suite(&settings, id).is_ok(),
    };
    if !configured {
        return Err(AppError::NotFound);
    }
    let account = access::account(env, &grant, &settings, AccountName::Id(id)).await?;
    let record = read::<TokenRecord>(env, ctx, &settings, &account, ()).await?;
    Ok(respond::json(
        200,
        &record.answer(&account.id, &account.appid, now_secs()),
    ))
}
