//! The worker's HTTP entry point: which route, which method, and each route's handler.

use crate::edge::adapters::request::{self, param, query, Incoming};
use crate::edge::adapters::respond::{self, Answer};
use crate::edge::adapters::runtime::{self, now_secs};
use crate::edge::objects::object_client;
use crate::edge::objects::reader::{read, refresh};
use crate::edge::routes::access::{self, account_name};
use crate::edge::routes::admin;
use crate::edge::routes::compat;
use crate::edge::routes::diagnostics;
use crate::edge::routes::gateway;
use crate::edge::routes::platform;
use crate::edge::routes::status_listing;
use crate::edge::routes::status_page;
use crate::edge::routes::wecom_provider;
use crate::error::AppError;
use crate::policy::accounts::Account;
use crate::policy::auth::Route;
use crate::policy::config::{AccountName, Settings};
use crate::policy::metrics::{self, ServerCounts};
use crate::policy::refresh::Trigger;
use crate::policy::registry;
use crate::policy::requests;
use crate::policy::ticket::{TicketKind, TicketRecord};
use crate::policy::token::TokenRecord;
use crate::wechat::jssdk;
use serde_json::json;
use std::rc::Rc;
use worker::{event, web_sys, Context, Env, Method, Request, Response};

/// The only route a browser may call (with `CORS_ALLOW_ORIGINS`): it never returns a raw
/// token or ticket.
const BROWSER_ROUTE: &str = "/jssdk/signature";

#[event(fetch)]
async fn fetch(raw: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    console_error_panic_hook::set_once();
    let incoming = Incoming::new(raw);
    let cors = match incoming.path() == BROWSER_ROUTE {
        true => {
            let origin = incoming.header("origin");
            requests::cors_headers(origin.as_deref(), &runtime::cors_origins(&env))
        }
        false => None,
    };
    let method = incoming.method();
    let answer = if method == Method::Options && cors.is_some() {
        Answer::Own(respond::empty(204))
    } else {
        route(&incoming, &env, &ctx)
            .await
            .unwrap_or_else(|e| Answer::Own(respond::error(&e)))
    };
    Ok(respond::finish(
        answer,
        cors.as_deref(),
        method == Method::Head,
    ))
}

async fn route(incoming: &Incoming, env: &Env, ctx: &Context) -> Result<Answer, AppError> {
    // HEAD is answered as GET; `respond::finish` drops the body.
    let method = match incoming.method() {
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
    // Only this server's own routes take worker's wrapper of the request, never the gateway.
    let request = || incoming.request();
    let path = incoming.path();
    let own = match path {
        "/healthz" => allow(Method::Get).map(|()| respond::json(200, &json!({ "ok": true }))),
        "/" => allow(Method::Get).map(|()| status_page::page()),
        "/token" => {
            allow(Method::Get)?;
            get_token(request(), env, ctx).await
        }
        "/token/refresh" => {
            allow(Method::Post)?;
            refresh_token(request(), env).await
        }
        "/ticket" => {
            allow(Method::Get)?;
            get_ticket(request(), env, ctx).await
        }
        BROWSER_ROUTE => {
            allow(Method::Get)?;
            get_signature(request(), env, ctx).await
        }
        "/status" => {
            allow(Method::Get)?;
            get_status(request(), env).await
        }
        "/metrics" => {
            allow(Method::Get)?;
            get_metrics(request(), env).await
        }
        "/quota" => {
            allow(Method::Get)?;
            diagnostics::quota(request(), env, ctx).await
        }
        "/diagnostics/rid" => {
            allow(Method::Get)?;
            diagnostics::rid(request(), env, ctx).await
        }
        "/cgi-bin/token" | "/cgi-bin/gettoken" | "/cgi-bin/ticket/getticket" => {
            allow(Method::Get)?;
            let pairs = query(request())?;
            Ok(compat::answer(path, &pairs, "", env, ctx).await)
        }
        "/cgi-bin/stable_token"
        | "/cgi-bin/component/api_component_token"
        | "/cgi-bin/component/api_authorizer_token"
        | "/cgi-bin/service/get_suite_token"
        | "/cgi-bin/service/get_provider_token"
        | "/cgi-bin/service/get_corp_token" => {
            allow(Method::Post)?;
            // The client key is in the body: read it (bounded) before authenticating.
            let body = match path {
                "/cgi-bin/stable_token" => request::read(request()).await?,
                _ => request::read_untyped(request()).await?,
            };
            let pairs = query(request())?;
            Ok(compat::answer(path, &pairs, &body, env, ctx).await)
        }
        wecom if wecom.starts_with("/wecom/") => {
            wecom_provider::route(request(), method, &wecom["/wecom".len()..], env, ctx).await
        }
        component if component.starts_with("/component/") => {
            platform::route(
                request(),
                method,
                &component["/component".len()..],
                env,
                ctx,
            )
            .await
        }
        "/admin/component/authorizers/sync" => {
            access::authenticate_admin(env, request()).await?;
            allow(Method::Post)?;
            platform::sync_authorizers(request(), env, ctx).await
        }
        "/admin/reseal" => {
            access::authenticate_admin(env, request()).await?;
            allow(Method::Post)?;
            admin::reseal(request(), env).await
        }
        admin if admin == "/admin/accounts" || admin.starts_with("/admin/accounts/") => {
            admin::route(request(), method, &admin["/admin/accounts".len()..], env).await
        }
        keyed if keyed.starts_with("/gateway/") => {
            allow_gateway(&method)?;
            let answer = gateway::keyed(incoming, &keyed["/gateway".len()..], env, ctx).await?;
            return Ok(Answer::PassedOn(answer));
        }
        other => {
            // Anything else under WeChat's API families goes through the gateway as it is.
            let settings = runtime::settings(env)?;
            if !settings
                .gateway_prefixes
                .iter()
                .any(|p| other.starts_with(p.as_str()))
            {
                return Err(AppError::NotFound);
            }
            allow_gateway(&method)?;
            let answer = gateway::pass_through(incoming, other, env, ctx).await;
            return Ok(Answer::PassedOn(answer));
        }
    };
    own.map(Answer::Own)
}

/// The gateway forwards GET and POST, WeChat's only methods.
fn allow_gateway(method: &Method) -> Result<(), AppError> {
    match method {
        Method::Get | Method::Post => Ok(()),
        _ => Err(AppError::MethodNotAllowed {
            allow: "GET, HEAD, POST",
        }),
    }
}

/// An authenticated request for one account.
struct Caller {
    settings: Rc<Settings>,
    account: Rc<Account>,
    query: Vec<(String, String)>,
}

/// `Authorization: Bearer <key>` for `route`, and the account the query names.
async fn authorized(request: &Request, env: &Env, route: Route) -> Result<Caller, AppError> {
    let query = query(request)?;
    let (grant, settings) =
        access::authenticate(env, request::bearer(request).as_deref(), route).await?;
    let account = access::account(env, &grant, &settings, account_name(&query)?).await?;
    Ok(Caller {
        settings,
        account,
        query,
    })
}

async fn get_token(request: &Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let Caller {
        settings, account, ..
    } = authorized(request, env, Route::Token).await?;
    let record = read::<TokenRecord>(env, ctx, &settings, &account, ()).await?;
    Ok(respond::json(
        200,
        &record.answer(&account.id, &account.appid, now_secs()),
    ))
}

async fn refresh_token(request: &Request, env: &Env) -> Result<Response, AppError> {
    // Authenticated before the body is read.
    let Caller {
        settings, account, ..
    } = authorized(request, env, Route::Token).await?;
    let body = request::read(request).await?;
    let stale_token = requests::passive_refresh_body(&body)?;
    let record = refresh(env, &settings, &account, Trigger::Passive { stale_token }).await?;
    Ok(respond::json(
        200,
        &record.answer(&account.id, &account.appid, now_secs()),
    ))
}

/// Every account the key may read, a page at a time (`?limit=&cursor=`), from what each
/// account's object last reported; or the one the query names, live from its object.
async fn get_status(request: &Request, env: &Env) -> Result<Response, AppError> {
    let pairs = query(request)?;
    let (grant, settings) =
        access::authenticate(env, request::bearer(request).as_deref(), Route::Status).await?;
    let answer = match account_name(&pairs)? {
        AccountName::Default => {
            let limit = registry::page_limit(param(&pairs, "limit"), registry::STATUS_PAGE)?;
            let cursor = param(&pairs, "cursor");
            let page =
                status_listing::page(env, &settings, &grant, cursor, limit, now_secs()).await?;
            let mut answer = json!({ "accounts": page.accounts, "next_cursor": page.next_cursor });
            if let Some(count) = page.sealed_under_older_keys {
                answer["sealed_under_older_keys"] = json!(count);
            }
            answer
        }
        named => {
            let account = access::account(env, &grant, &settings, named).await?;
            let entry = object_client::status(env, &account.id).await?;
            json!({ "accounts": [entry], "next_cursor": null })
        }
    };
    Ok(respond::json(200, &answer))
}

/// Accounts a `/metrics` page.
const METRICS_PAGE: usize = 1000;

/// Prometheus's scrape: a page of accounts (`?page=` from 0) in one registry call whatever the
/// number of accounts, and, on the first page for a key that sees every account, the server's
/// own counters (`status_listing::metrics_page` reads them only then).
async fn get_metrics(request: &Request, env: &Env) -> Result<Response, AppError> {
    let pairs = query(request)?;
    let (grant, settings) = access::authenticate_or_admin(env, request, Route::Metrics).await?;
    let page = match param(&pairs, "page") {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n < 1_000_000)
            .ok_or_else(|| AppError::BadRequest("?page= is a page number from 0".into()))?,
    };
    let window = (page, METRICS_PAGE);
    let (entries, counters) =
        status_listing::metrics_page(env, &settings, &grant, window, now_secs()).await?;
    let server = counters.map(|counters| ServerCounts { counters });
    Ok(respond::metrics(metrics::render(
        &entries,
        page,
        server.as_ref(),
    )))
}

async fn get_ticket(request: &Request, env: &Env, ctx: &Context) -> Result<Response, AppError> {
    let Caller {
        settings,
        account,
        query: pairs,
    } = authorized(request, env, Route::Ticket).await?;
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
    } = authorized(request, env, Route::Signature).await?;
    let url = jssdk::page_url(param(&pairs, "url"))?;
    // `wx.config` signs with the jsapi ticket; WeCom's `wx.agentConfig` with the application's
    // agent_config ticket (`?type=agent_config`), the same way.
    let kind = match param(&pairs, "type") {
        None | Some("jsapi") => TicketKind::Jsapi,
        Some("agent_config") => TicketKind::AgentConfig,
        Some(_) => {
            return Err(AppError::BadRequest(
                "type must be jsapi (wx.config) or agent_config (wx.agentConfig)".into(),
            ))
        }
    };
    TicketKind::parse(Some(kind.name()), account.kind)?;
    let ticket = read::<TicketRecord>(env, ctx, &settings, &account, kind).await?;
    let nonce = jssdk::nonce_from(&runtime::random_bytes::<16>());
    let answer = jssdk::signature_answer(&account.appid, &ticket.ticket, &nonce, now_secs(), url);
    Ok(respond::json(200, &answer))
}
