//! The Durable Object that owns one account's credentials (named by the account id). The
//! worker reaches it through `object_client`; it answers 200 with the [`Acquired`] record (the
//! worker builds the public answer), or with the public error response, which the worker
//! relays unchanged.

use crate::edge::adapters::respond;
use crate::edge::adapters::runtime;
use crate::edge::objects::alert_outbox;
use crate::edge::objects::directory;
use crate::edge::objects::object_client::{ObjectCall, Op};
use crate::edge::objects::refresher::{self, AccountCtx, AccountState};
use crate::edge::objects::registry;
use crate::error::AppError;
use crate::policy::accounts::Account;
use crate::policy::alerts::{LoadFailure, Notice, Transition};
use crate::policy::backoff::automatic_wait_secs;
use serde::Serialize;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

#[durable_object]
pub struct AccountTokenObject {
    object: Rc<State>,
    env: Env,
    /// Replaced by a fresh one (read from storage again) when the registration changes.
    state: RefCell<Rc<AccountState>>,
    /// A runtime account's registration, opened, once read from the registry.
    registered: RefCell<Option<Rc<Account>>>,
    /// Whether a failed load is on record (None: not looked at yet in this object's life).
    load_failed: Cell<Option<bool>>,
    /// Counts the registration's changes (Forget, Erase) in this object's life.
    generation: Cell<u64>,
}

impl DurableObject for AccountTokenObject {
    fn new(state: State, env: Env) -> Self {
        Self {
            object: Rc::new(state),
            env,
            state: RefCell::default(),
            registered: RefCell::default(),
            load_failed: Cell::default(),
            generation: Cell::default(),
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
        let stored: Option<String> = self.object.storage().get(ACCOUNT_ID_KEY).await?;
        let id = stored
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|ledger| ledger["id"].as_str().map(str::to_owned));
        match id {
            Some(id) => match self.context(&id).await {
                Ok(ctx) => {
                    self.load_recovered(&id).await;
                    ctx.alarm().await;
                    ctx.arm_due().await;
                    ctx.check_alerts().await;
                }
                Err(e) => self.load_failed(&id, &e).await,
            },
            None => runtime::log_error(serde_json::json!({
                "event": "alarm", "outcome": "no_account", "message": "the object has no stored account id",
            })),
        }
        Response::empty()
    }
}

/// Where the object's ledger, with its account's id, is stored (`refresher::state`).
const ACCOUNT_ID_KEY: &str = "account";
/// Where the object keeps a failed load (see [`LoadFailure`]).
const LOAD_FAILURE_KEY: &str = "load_failure";
/// The first retry of a failed load; it doubles up to the automatic refreshes' cap.
const LOAD_RETRY_MIN_SECS: u64 = 30;

fn encode<T: Serialize>(value: T) -> Result<Value, AppError> {
    serde_json::to_value(value).map_err(|e| runtime::internal("encoding", e))
}

impl AccountTokenObject {
    async fn context(&self, account_id: &str) -> Result<AccountCtx, AppError> {
        // The state as the call found it: if the registration changes while the registry is
        // read below, this call goes on with the retired state (which writes nothing and
        // starts no call), never with the new state and the old registration.
        let state = self.state.borrow().clone();
        let settings = runtime::settings(&self.env)?;
        let account = match settings.account(account_id) {
            Ok(account) => Rc::new(account.clone()),
            Err(_) => self.registered_account(account_id).await?,
        };
        let ctx = AccountCtx {
            state,
            object: self.object.clone(),
            env: self.env.clone(),
            settings,
            account,
        };
        ctx.load().await?;
        Ok(ctx)
    }

    /// The account's configuration, the registry or the encryption key failed it: the
    /// operators hear of it (at once, then every `ALERT_REPEAT_SECS`), and the alarm comes
    /// back with a growing delay, so that the object never goes quiet. A deleted account has
    /// nothing to come back for.
    async fn load_failed(&self, id: &str, error: &AppError) {
        runtime::log_error(json!({
            "event": "load_failed", "account": id, "outcome": error.code(),
            "message": error.message(),
        }));
        if matches!(error, AppError::UnknownAccount) {
            return;
        }
        let storage = self.object.storage();
        let stored: Option<String> = storage.get(LOAD_FAILURE_KEY).await.ok().flatten();
        let mut record: LoadFailure = stored
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let alerts = runtime::alert_settings(&self.env).ok();
        let repeat_secs = alerts
            .as_deref()
            .and_then(Option::as_ref)
            .map(|a| a.repeat_secs);
        let previously_alerted = record.alerted_at;
        let transition = record.failed(runtime::now_secs(), repeat_secs.unwrap_or(3600));
        let mut delivered = true;
        if let (Some(transition), Some(Some(_))) = (transition, alerts.as_deref()) {
            let notice = Notice::config_error(id, transition, record.since, &error.message());
            delivered = self.hand_over(id, notice).await;
        }
        if !delivered {
            // Not handed over: the next failed load tries again.
            record.alerted_at = previously_alerted;
        }
        let text = serde_json::to_string(&record).unwrap_or_default();
        if let Err(e) = storage.put(LOAD_FAILURE_KEY, text).await {
            runtime::log_error(json!({ "event": "storage_write_failed", "account": id,
                "message": e.to_string() }));
        }
        // The alarm names no account: an object whose very first load failed keeps the id,
        // so that its alarm knows what to load.
        let ledger: Option<String> = storage.get(ACCOUNT_ID_KEY).await.ok().flatten();
        if ledger.is_none() {
            let _ = storage
                .put(ACCOUNT_ID_KEY, json!({ "id": id }).to_string())
                .await;
        }
        self.load_failed.set(Some(true));
        let wait = automatic_wait_secs(record.failures_in_a_row, LOAD_RETRY_MIN_SECS);
        if let Err(e) = storage.set_alarm(Duration::from_secs(wait)).await {
            runtime::log_error(json!({ "event": "storage_write_failed", "account": id,
                "message": e.to_string() }));
        }
    }

    /// Hands a load alert to the outbox; whether it took it (a failure is logged).
    async fn hand_over(&self, id: &str, notice: Notice) -> bool {
        match alert_outbox::enqueue(&self.env, &[notice]).await {
            Ok(()) => true,
            Err(e) => {
                runtime::log_error(json!({ "event": "alert_enqueue_failed", "account": id,
                    "message": e.message() }));
                false
            }
        }
    }

    /// The object loads again: a failure on record recovers (and says so if it alerted).
    async fn load_recovered(&self, id: &str) {
        if self.load_failed.get() == Some(false) {
            return;
        }
        let storage = self.object.storage();
        let stored: Option<String> = storage.get(LOAD_FAILURE_KEY).await.ok().flatten();
        self.load_failed.set(Some(false));
        let Some(record) = stored.and_then(|t| serde_json::from_str::<LoadFailure>(&t).ok()) else {
            return;
        };
        let _ = storage.delete(LOAD_FAILURE_KEY).await;
        if record.alerted_at.is_some() {
            let notice = Notice::config_error(id, Transition::Recovered, record.since, "");
            self.hand_over(id, notice).await;
        }
    }

    /// A runtime account, from the registry (the truth) the first time; kept only if the
    /// registration did not change while it was read.
    async fn registered_account(&self, account_id: &str) -> Result<Rc<Account>, AppError> {
        if let Some(account) = self.registered.borrow().clone() {
            return Ok(account);
        }
        let generation = self.generation.get();
        let entry = registry::get(&self.env, account_id)
            .await?
            .ok_or(AppError::UnknownAccount)?;
        let account = Rc::new(directory::open(&self.env, &entry)?);
        if self.generation.get() == generation {
            *self.registered.borrow_mut() = Some(account.clone());
        }
        Ok(account)
    }

    async fn handle(&self, call: ObjectCall) -> Result<Response, AppError> {
        // These need no configuration of the account (for Erase, it is already gone).
        match call.op {
            Op::Forget | Op::Erase { .. } => {
                // Work still under way on the old state (a refresh, a KV write, an alarm
                // set) writes nothing back from now on; the next call loads afresh, whether
                // the erase below succeeds or not.
                let old = self.state.borrow().clone();
                *self.state.borrow_mut() = Rc::new(AccountState::succeeding(old));
                *self.registered.borrow_mut() = None;
                self.generation.set(self.generation.get() + 1);
                self.load_failed.set(None);
                if let Op::Erase { withdrawn_at } = call.op {
                    let id = &call.account;
                    refresher::erase(&self.env, &self.object, id, withdrawn_at).await?;
                }
                return Ok(respond::json(200, &Value::Null));
            }
            Op::Admits { push, created_at } => {
                let admitted = refresher::admits(&self.object, push, created_at).await?;
                return Ok(respond::json(200, &Value::Bool(admitted)));
            }
            _ => {}
        }
        let ctx = match self.context(&call.account).await {
            Ok(ctx) => ctx,
            Err(e) => {
                // The cron's visit of an object that cannot load keeps it from going quiet.
                if matches!(call.op, Op::Cron) {
                    self.load_failed(&call.account, &e).await;
                }
                return Err(e);
            }
        };
        self.load_recovered(&call.account).await;
        let answer: Result<Value, AppError> = match call.op {
            Op::Forget | Op::Erase { .. } | Op::Admits { .. } => Ok(Value::Null),
            Op::Reset => {
                ctx.reset().await;
                Ok(Value::Null)
            }
            Op::ClearQuota => ctx.clear_quota().await,
            Op::Token { trigger } => ctx.token(&trigger).await.and_then(encode),
            Op::Ticket { kind, trigger } => ctx.ticket(kind, &trigger).await.and_then(encode),
            Op::Cron => Ok(ctx.cron().await),
            Op::VerifyTicket { ticket, created_at } => ctx
                .receive_verify_ticket(ticket, created_at)
                .await
                .map(|()| Value::Null),
            Op::Authorize { code, created_at } => {
                ctx.authorize(code, created_at).await.map(|()| Value::Null)
            }
            Op::Adopt { refresh_token } => ctx.adopt(refresh_token).await.map(|()| Value::Null),
            Op::CorpWithdrawn { corpid, created_at } => {
                ctx.corp_withdrawn(&corpid, created_at).await
            }
            Op::AuthChanged => ctx.auth_changed().await.map(|()| Value::Null),
            Op::Status => Ok(ctx.status()),
        };
        // Whatever the call did (a failure too), the alarm is set for when something next
        // falls due, and the alerts checked; after the answer, which need not wait for them.
        self.object.wait_until(async move {
            ctx.arm_due().await;
            ctx.check_alerts().await;
        });
        Ok(respond::json(200, &answer?))
    }
}
