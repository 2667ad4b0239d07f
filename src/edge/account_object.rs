//! The Durable Object that owns one account's credentials (named by the account id), and the
//! worker's client for it.
//!
//! The worker sends an [`ObjectCall`] as JSON. The object answers 200 with the [`Acquired`]
//! record (the worker builds the public answer), or with the public error response, which the
//! worker relays unchanged.

use crate::edge::refresher::{AccountCtx, AccountState, Acquired};
use crate::edge::respond;
use crate::edge::runtime::{self, OBJECT_BINDING};
use crate::error::AppError;
use crate::policy::refresh::Trigger;
use crate::policy::ticket::{TicketKind, TicketRecord};
use crate::policy::token::TokenRecord;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State};

#[derive(Serialize, Deserialize)]
struct ObjectCall {
    account: String,
    op: Op,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Token { trigger: Trigger },
    Ticket { kind: TicketKind, trigger: Trigger },
    Cron,
    Status,
}

pub async fn token(
    env: &Env,
    account_id: &str,
    trigger: Trigger,
) -> Result<Acquired<TokenRecord>, AppError> {
    decode(ask(env, account_id, Op::Token { trigger }).await?).await
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

async fn ask(env: &Env, account_id: &str, op: Op) -> Result<Response, AppError> {
    let failed = |e: worker::Error| runtime::internal("the account's Durable Object failed", e);
    let namespace = env.durable_object(OBJECT_BINDING).map_err(failed)?;
    let stub = namespace.get_by_name(account_id).map_err(failed)?;
    let call = ObjectCall {
        account: account_id.to_owned(),
        op,
    };
    let body = serde_json::to_string(&call).map_err(|e| runtime::internal("encoding", e))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init("https://account-object/", &init).map_err(failed)?;
    stub.fetch_with_request(request).await.map_err(failed)
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

#[durable_object]
pub struct AccountTokenObject {
    object: Rc<State>,
    env: Env,
    state: Rc<AccountState>,
}

impl DurableObject for AccountTokenObject {
    fn new(state: State, env: Env) -> Self {
        Self {
            object: Rc::new(state),
            env,
            state: Rc::default(),
        }
    }

    async fn fetch(&self, mut request: Request) -> worker::Result<Response> {
        let call = match request.json::<ObjectCall>().await {
            Ok(call) => call,
            Err(e) => {
                return Ok(respond::error(&runtime::internal(
                    "unreadable object call",
                    e,
                )))
            }
        };
        Ok(respond::result(self.handle(call).await))
    }

    /// Retries of failed KV writes, and the refresh after a call cut off by an eviction.
    async fn alarm(&self) -> worker::Result<Response> {
        // The alarm names no account: the object stored its id on its first load.
        let stored: Option<String> = self.object.storage().get("account").await?;
        let id = stored
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|ledger| ledger["id"].as_str().map(str::to_owned));
        match id {
            Some(id) => match self.context(&id).await {
                Ok(ctx) => {
                    ctx.alarm().await;
                }
                Err(e) => runtime::log_error(serde_json::json!({
                    "event": "alarm", "account": id, "outcome": e.code(), "message": e.message(),
                })),
            },
            None => runtime::log_error(serde_json::json!({
                "event": "alarm", "outcome": "no_account", "message": "the object has no stored account id",
            })),
        }
        Response::empty()
    }
}

impl AccountTokenObject {
    async fn context(&self, account_id: &str) -> Result<AccountCtx, AppError> {
        let settings = runtime::settings(&self.env)?;
        let account = settings.account(account_id)?.clone();
        let ctx = AccountCtx {
            state: self.state.clone(),
            object: self.object.clone(),
            env: self.env.clone(),
            settings,
            account: Rc::new(account),
        };
        ctx.load().await?;
        Ok(ctx)
    }

    async fn handle(&self, call: ObjectCall) -> Result<Response, AppError> {
        let ctx = self.context(&call.account).await?;
        let answer = match call.op {
            Op::Token { trigger } => serde_json::to_value(ctx.token(&trigger).await?),
            Op::Ticket { kind, trigger } => serde_json::to_value(ctx.ticket(kind, &trigger).await?),
            Op::Cron => Ok(ctx.cron().await),
            Op::Status => Ok(ctx.status()),
        };
        Ok(respond::json(
            200,
            &answer.map_err(|e| runtime::internal("encoding", e))?,
        ))
    }
}
