//! The worker's client for an account's Durable Object (`account_object`): each call is an
//! [`ObjectCall`] sent as JSON; the object answers 200 with the value, or with the public
//! error response, which comes back as [`AppError::Relayed`] and is passed on unchanged.
//! Apart from the object itself, so that the refresher (which the object runs) may call
//! another account's object, as an authorizer calls the platform's.

use crate::edge::adapters::faults;
use crate::edge::adapters::runtime::{self, OBJECT_BINDING};
use crate::edge::objects::object_call;
use crate::edge::objects::refresher::Acquired;
use crate::error::AppError;
use crate::policy::platform::AuthorizationPush;
use crate::policy::refresh::Trigger;
use crate::policy::ticket::{TicketKind, TicketRecord};
use crate::policy::token::TokenRecord;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use worker::{Env, Response};

#[derive(Serialize, Deserialize)]
pub(crate) struct ObjectCall {
    pub(crate) account: String,
    pub(crate) op: Op,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    Token {
        trigger: Trigger,
    },
    Ticket {
        kind: TicketKind,
        trigger: Trigger,
    },
    Cron,
    Status,
    /// The account's registration changed: read it again, and the stored state with it.
    Forget,
    /// Lift the quota pause and the credential block.
    Reset,
    /// Ask WeChat to clear the account's quotas (one of the month's 10), then lift the pause.
    ClearQuota,
    /// The account is deleted: erase its state, alarm and KV entries. An authorizer's
    /// withdrawal keeps its CreateTime, so that an older push never brings it back.
    Erase {
        #[serde(default)]
        withdrawn_at: Option<u64>,
    },
    /// A WeCom suite: a corporation's withdrawal, pushed at `created_at`, acted on in
    /// WeCom's order.
    CorpWithdrawn {
        corpid: String,
        created_at: u64,
    },
    /// A WeCom corporation: it changed what it authorized (`change_auth`).
    AuthChanged,
    /// An authorizer: whether a push of this CreateTime comes after what was acted on.
    Admits {
        push: AuthorizationPush,
        created_at: u64,
    },
    /// The platform's component: a verify ticket WeChat pushed, with its CreateTime.
    VerifyTicket {
        ticket: String,
        created_at: u64,
    },
    /// An authorizer: the code of its authorization (and the push's CreateTime), to exchange
    /// for its tokens.
    Authorize {
        code: String,
        created_at: u64,
    },
    /// An authorizer: its refresh token as WeChat's authorizer list shows it (an import).
    Adopt {
        refresh_token: String,
    },
}

pub async fn token(
    env: &Env,
    account_id: &str,
    trigger: Trigger,
) -> Result<Acquired<TokenRecord>, AppError> {
    decode(ask(env, account_id, Op::Token { trigger }).await?).await
}

/// The current access_token of another account's object (the platform's component, a WeCom
/// suite), for a call made with it.
pub async fn access_token(
    env: &Env,
    account_id: &str,
    trigger: Trigger,
) -> Result<String, AppError> {
    token(env, account_id, trigger)
        .await?
        .record()
        .map(|r| r.access_token)
        .ok_or_else(|| AppError::Internal(format!("{account_id} answered no token")))
}

/// Another account's token, replaced (once, for every caller) because `stale` was refused:
/// the new one, or None when its object kept `stale` or could not answer.
pub async fn replacement_token(env: &Env, account_id: &str, stale: &str) -> Option<String> {
    let trigger = Trigger::Rejected {
        stale_token: stale.to_owned(),
    };
    access_token(env, account_id, trigger)
        .await
        .ok()
        .filter(|fresh| fresh != stale)
}

pub async fn ticket(
    env: &Env,
    account_id: &str,
    kind: TicketKind,
    trigger: Trigger,
) -> Result<Acquired<TicketRecord>, AppError> {
    decode(ask(env, account_id, Op::Ticket { kind, trigger }).await?).await
}

/// The account's `/status` entry: fingerprints, never a credential.
pub async fn status(env: &Env, account_id: &str) -> Result<Value, AppError> {
    decode(ask(env, account_id, Op::Status).await?).await
}

/// The cron visit's summary: outcomes only, never a credential.
pub async fn cron(env: &Env, account_id: &str) -> Result<Value, AppError> {
    decode(ask(env, account_id, Op::Cron).await?).await
}

/// Tells the object its account's registration changed.
pub async fn forget(env: &Env, account_id: &str) -> Result<(), AppError> {
    decode(ask(env, account_id, Op::Forget).await?).await
}

pub async fn reset(env: &Env, account_id: &str) -> Result<(), AppError> {
    decode(ask(env, account_id, Op::Reset).await?).await
}

/// The account's clears left this month, after WeChat cleared its quotas.
pub async fn clear_quota(env: &Env, account_id: &str) -> Result<Value, AppError> {
    decode(ask(env, account_id, Op::ClearQuota).await?).await
}

pub async fn erase(env: &Env, account_id: &str, withdrawn_at: Option<u64>) -> Result<(), AppError> {
    decode(ask(env, account_id, Op::Erase { withdrawn_at }).await?).await
}

/// Whether an authorizer's push of `created_at` comes after what its object acted on.
pub async fn admits(
    env: &Env,
    authorizer: &str,
    push: AuthorizationPush,
    created_at: u64,
) -> Result<bool, AppError> {
    let op = Op::Admits { push, created_at };
    decode(ask(env, authorizer, op).await?).await
}

pub async fn adopt(env: &Env, authorizer: &str, refresh_token: String) -> Result<(), AppError> {
    decode(ask(env, authorizer, Op::Adopt { refresh_token }).await?).await
}

pub async fn verify_ticket(
    env: &Env,
    component_id: &str,
    ticket: String,
    created_at: u64,
) -> Result<(), AppError> {
    let op = Op::VerifyTicket { ticket, created_at };
    decode(ask(env, component_id, op).await?).await
}

/// Tells a suite's object that a corporation withdrew (`cancel_auth` of `created_at`); it
/// removes the corporation unless an authorization pushed after it stands:
/// `{in_order, removed}`.
pub async fn corp_withdrawn(
    env: &Env,
    suite_id: &str,
    corpid: &str,
    created_at: u64,
) -> Result<Value, AppError> {
    let op = Op::CorpWithdrawn {
        corpid: corpid.to_owned(),
        created_at,
    };
    decode(ask(env, suite_id, op).await?).await
}

/// Tells a corporation's object to read its auth info again (`change_auth`).
pub async fn auth_changed(env: &Env, corp_id: &str) -> Result<(), AppError> {
    decode(ask(env, corp_id, Op::AuthChanged).await?).await
}

pub async fn authorize(
    env: &Env,
    authorizer: &str,
    code: String,
    created_at: u64,
) -> Result<(), AppError> {
    let op = Op::Authorize { code, created_at };
    decode(ask(env, authorizer, op).await?).await
}

const ACCOUNT_OBJECT: &str = "the account's Durable Object";

async fn ask(env: &Env, account_id: &str, op: Op) -> Result<Response, AppError> {
    let failed = |e: worker::Error| runtime::internal(&format!("{ACCOUNT_OBJECT} failed"), e);
    let namespace = env.durable_object(OBJECT_BINDING).map_err(failed)?;
    let stub = namespace.get_by_name(account_id).map_err(failed)?;
    let call = ObjectCall {
        account: account_id.to_owned(),
        op,
    };
    let body = serde_json::to_value(&call).map_err(|e| runtime::internal("encoding", e))?;
    let op = &body["op"];
    let what = match op["trigger"]["trigger"].as_str() {
        Some(trigger) => format!("{}:{trigger}", op["op"].as_str().unwrap_or_default()),
        None => op["op"].as_str().unwrap_or_default().to_owned(),
    };
    faults::object_request(env, "account", &what);
    // Whatever the object does, its caller is answered within a bound: every request the
    // worker accepts is (a shared refresh that is lost, a runtime that never answers).
    object_call::post(
        &stub,
        ACCOUNT_OBJECT,
        &body.to_string(),
        object_budget_ms(env),
    )
    .await
}

/// How long a caller waits for an account's object: its calls to WeChat (each refresh within
/// `UPSTREAM_TIMEOUT_MS`, its retries included), a platform account's call to its component
/// and a look-up in the authorizer list fit in three such budgets; ten seconds more for its
/// storage and KV writes.
fn object_budget_ms(env: &Env) -> u64 {
    let upstream = runtime::settings(env).map_or(10_000, |s| s.upstream_timeout_ms);
    upstream * 3 + 10_000
}

/// The object's answer: the value on 200, else its error response as [`AppError::Relayed`].
async fn decode<T: DeserializeOwned>(mut response: Response) -> Result<T, AppError> {
    let unreadable = |e| runtime::internal("unreadable answer from the Durable Object", e);
    let status = response.status_code();
    if status == 200 {
        return response.json::<T>().await.map_err(unreadable);
    }
    let retry_after_secs = response
        .headers()
        .get("retry-after")
        .ok()
        .flatten()
        .and_then(|value| value.parse().ok());
    let body = response.json::<Value>().await.map_err(unreadable)?;
    Err(AppError::Relayed {
        status,
        body,
        retry_after_secs,
    })
}
