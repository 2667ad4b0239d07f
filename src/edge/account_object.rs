//! The Durable Object that owns one account's credentials (named by the account id), and the
//! worker's client for it.
//!
//! The worker sends an [`ObjectCall`] as JSON. The object answers 200 with the [`Acquired`]
//! record (the worker builds the public answer), or with the public error response, which the
//! worker relays unchanged.

use crate::edge::directory;
use crate::edge::refresher::{self, AccountCtx, AccountState, Acquired};
use crate::edge::registry;
use crate::edge::respond;
use crate::edge::runtime::{self, OBJECT_BINDING};
use crate::error::AppError;
use crate::policy::accounts::Account;
use crate::policy::refresh::Trigger;
use crate::policy::ticket::{TicketKind, TicketRecord};
use crate::policy::token::TokenRecord;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;
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
    /// The account is deleted: erase its state, alarm and KV entries.
    Erase,
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

/// Tells the object its account's registration changed.
pub async fn forget(env: &Env, account_id: &str) -> Result<(), AppError> {
    decode(ask(env, account_id, Op::Forget).await?).await
}

pub async fn reset(env: &Env, account_id: &str) -> Result<(), AppError> {
    decode(ask(env, account_id, Op::Reset).await?).await
}

pub async fn erase(env: &Env, account_id: &str) -> Result<(), AppError> {
    decode(ask(env, account_id, Op::Erase).await?).await
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

fn encode<T: Serialize>(value: T) -> Result<Value, AppError> {
    serde_json::to_value(value).map_err(|e| runtime::internal("encoding", e))
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
    /// Replaced by a fresh one (read from storage again) when the registration changes.
    state: RefCell<Rc<AccountState>>,
    /// A runtime account's registration, opened, once read from the registry.
    registered: RefCell<Option<Rc<Account>>>,
}

impl DurableObject for AccountTokenObject {
    fn new(state: State, env: Env) -> Self {
        Self {
            object: Rc::new(state),
            env,
            state: RefCell::default(),
            registered: RefCell::default(),
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

    /// The account's own alarm: whatever falls due (or was cut off, or a KV write to retry),
    /// then set again for the next due time.
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
                    ctx.arm_due().await;
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
        let account = match settings.account(account_id) {
            Ok(account) => Rc::new(account.clone()),
            Err(_) => self.registered_account(account_id).await?,
        };
        let ctx = AccountCtx {
            state: self.state.borrow().clone(),
            object: self.object.clone(),
            env: self.env.clone(),
            settings,
            account,
        };
        ctx.load().await?;
        Ok(ctx)
    }

    /// A runtime account, from the registry (the truth) the first time.
    async fn registered_account(&self, account_id: &str) -> Result<Rc<Account>, AppError> {
        if let Some(account) = self.registered.borrow().clone() {
            return Ok(account);
        }
        let entry = registry::get(&self.env, account_id)
            .await?
            .ok_or(AppError::UnknownAccount)?;
        let account = Rc::new(directory::open(&self.env, &entry)?);
        *self.registered.borrow_mut() = Some(account.clone());
        Ok(account)
    }

    async fn handle(&self, call: ObjectCall) -> Result<Response, AppError> {
        // These two need no configuration of the account (for Erase, it is already gone).
        match call.op {
            Op::Forget | Op::Erase => {
                if let Op::Erase = call.op {
                    refresher::erase(&self.env, &self.object, &call.account).await?;
                }
                *self.registered.borrow_mut() = None;
                *self.state.borrow_mut() = Rc::default();
                return Ok(respond::json(200, &Value::Null));
            }
            _ => {}
        }
        let ctx = self.context(&call.account).await?;
        let answer: Result<Value, AppError> = match call.op {
            Op::Forget | Op::Erase => Ok(Value::Null),
            Op::Reset => {
                ctx.reset().await;
                Ok(Value::Null)
            }
            Op::Token { trigger } => ctx.token(&trigger).await.and_then(encode),
            Op::Ticket { kind, trigger } => ctx.ticket(kind, &trigger).await.and_then(encode),
            Op::Cron => Ok(ctx.cron().await),
            Op::Status => Ok(ctx.status()),
        };
        // Whatever the call did (a failure too), the alarm is set for when something next
        // falls due; after the answer, which need not wait for it.
        self.object.wait_until(async move { ctx.arm_due().await });
        Ok(respond::json(200, &answer?))
    }
}
