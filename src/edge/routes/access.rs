//! The one authentication-and-scope path of every route: the key first (an unauthenticated
//! caller learns nothing else), then its route scope, then its account scope. A key limited
//! to some accounts gets the same 403 for an account outside its list and for one that does
//! not exist, so it cannot probe which accounts are configured.

use crate::edge::adapters::runtime::log_error;
use crate::edge::{adapters::runtime, objects::directory};
use crate::error::AppError;
use crate::policy::accounts::{is_account_name, Account};
use crate::policy::auth::bearer_token;
use crate::policy::auth::{Grant, Route};
use crate::policy::config::{AccountName, Settings};
use serde_json::json;
use std::rc::Rc;
use worker::{Env, Request};

/// Authenticates `presented` (a client key) for `route`. Also checks, once the settings are
/// known, that every key's account scope names configured accounts (unless accounts may be
/// registered at runtime: the admin API, or a platform's authorizers).
pub async fn authenticate(
    env: &Env,
    presented: Option<&str>,
    route: Route,
) -> Result<(Grant, Rc<Settings>), AppError> {
    let keys = runtime::client_keys(env).map_err(|e| unreadable_keys(e, AppError::Unauthorized))?;
    let grant = keys.authorize_key(presented)?;
    grant.check_route(route)?;
    let settings = runtime::settings(env)?;
    directory::check_sealing_keys(env).await?;
    // Accounts registered at runtime (by the admin API, or a platform's authorizations) may
    // be named before they exist.
    if runtime::admin_keys(env)?.is_none() && settings.component.is_none() {
        keys.check_scopes(|id| settings.account(id).is_ok())?;
    }
    Ok((grant, settings))
}

/// A client key for `route`, or an admin key (which may read every account); a client key
/// without the route is refused as such, not tried as an admin key.
pub async fn authenticate_or_admin(
    env: &Env,
    request: &Request,
    route: Route,
) -> Result<(Grant, Rc<Settings>), AppError> {
    let presented = crate::edge::adapters::request::bearer(request);
    match authenticate(env, presented.as_deref(), route).await {
        Err(AppError::Unauthorized) => {
            // A refused admin key is the same 401; a configuration error is its own.
            authenticate_admin(env, request)
                .await
                .map_err(|e| match e {
                    AppError::AdminUnauthorized => AppError::Unauthorized,
                    other => other,
                })?;
            Ok((Grant::admin(), runtime::settings(env)?))
        }
        other => other,
    }
}

/// Authenticates an admin key (`Authorization: Bearer <admin key>`), before anything else of
/// the request is looked at.
pub async fn authenticate_admin(env: &Env, request: &Request) -> Result<(), AppError> {
    let refused = AppError::AdminUnauthorized;
    let keys = runtime::admin_keys(env).map_err(|e| unreadable_keys(e, refused.clone()))?;
    // Disabled or not, a caller without an admin key gets the same answer.
    let Some(keys) = keys.as_ref() else {
        return Err(refused);
    };
    let header = request.headers().get("authorization").ok().flatten();
    keys.authorize(header.as_deref().and_then(bearer_token))?;
    directory::check_sealing_keys(env).await
}

/// Keys that cannot be read (a malformed `CLIENT_KEYS` or `ADMIN_KEYS`) refuse every caller
/// as a wrong key does: nobody learns the setup's state from outside; the log names the
/// variable.
fn unreadable_keys(error: AppError, refused: AppError) -> AppError {
    log_error(json!({
        "event": "config_error", "code": error.code(), "message": error.message(),
    }));
    refused
}

/// The account `name` names, if `grant` may use it.
pub async fn account(
    env: &Env,
    grant: &Grant,
    settings: &Settings,
    name: AccountName<'_>,
) -> Result<Rc<Account>, AppError> {
    // A limited key naming an account outside its list learns nothing and costs no lookup;
    // for the accounts it may use, a failed lookup is the error it is.
    if let AccountName::Id(id) = name {
        grant.check(id)?;
    }
    let found = match directory::find(env, settings, name).await {
        // Several accounts share the appid: a limited key is not told so.
        Err(AppError::BadRequest(_)) if grant.is_scoped() => None,
        other => other?,
    };
    match found {
        Some(account) if grant.permits(&account.id) => Ok(account),
        Some(_) => Err(AppError::ForbiddenAccount),
        None if grant.is_scoped() => Err(AppError::ForbiddenAccount),
        None => Err(AppError::UnknownAccount),
    }
}

/// How the query names the account: `?account=<id>` or `?appid=<appid>`, at most once, 1 to
/// 64 of `A-Z a-z 0-9 _ -`, or two such joined by `.` (a WeCom corporation's
/// `<suite_id>.<corpid>`), checked before any lookup; neither means the default account.
pub fn account_name(pairs: &[(String, String)]) -> Result<AccountName<'_>, AppError> {
    let mut named = pairs.iter().filter(|(k, _)| k == "account" || k == "appid");
    match (named.next(), named.next()) {
        (None, _) => Ok(AccountName::Default),
        (Some((key, value)), None) if !is_account_name(value) => {
            Err(AppError::BadRequest(format!(
                "?{key}= must be 1 to 64 of A-Z a-z 0-9 _ - (a WeCom corporation: \
             <suite_id>.<corpid>)"
            )))
        }
        (Some((key, value)), None) if key == "account" => Ok(AccountName::Id(value)),
        (Some((_, value)), None) => Ok(AccountName::AppId(value)),
        (Some(_), Some(_)) => Err(AppError::BadRequest("name one account, once".into())),
    }
}
