//! The Durable Object that owns one account's token: the source of truth (in its storage), and
//! the only place WeChat is called from, one call at a time.
//!
//! The worker sends it an [`ObjectCall`] as JSON; it answers with the final HTTP response
//! (token, cron outcome or error), which the worker passes through unchanged.

use crate::accounts::{Account, TokenApi};
use crate::config::Settings;
use crate::error::{AppError, UpstreamFailure};
use crate::kv_cache;
use crate::respond;
use crate::runtime::{self, log_error, log_event, now_millis, now_secs, OBJECT_BINDING};
use crate::singleflight::SingleFlight;
use crate::token::{decide, AttemptRecord, Decision, ForceLog, Observed, TokenRecord, Trigger};
use crate::upstream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, State, Storage,
};

const TOKEN_KEY: &str = "token";
const LAST_ATTEMPT_KEY: &str = "last_attempt";
const FORCED_KEY: &str = "forced";
/// Re-cache a served token in KV at most this often (KV allows one write per key per second,
/// and a burst of edge misses should not become a burst of writes).
const KV_RECACHE_SECS: u64 = 60;

/// What the worker asks an account's object.
#[derive(Serialize, Deserialize)]
struct ObjectCall {
    account: String,
    #[serde(flatten)]
    trigger: Trigger,
}

/// Asks the account's Durable Object; the answer is the response to give the client.
pub async fn ask(env: &Env, account_id: &str, trigger: Trigger) -> Result<Response, AppError> {
    let failed = |e: worker::Error| runtime::internal("the account's Durable Object failed", e);
    let namespace = env.durable_object(OBJECT_BINDING).map_err(failed)?;
    let stub = namespace.get_by_name(account_id).map_err(failed)?;
    let call = ObjectCall {
        account: account_id.to_owned(),
        trigger,
    };
    let body = serde_json::to_string(&call).map_err(|e| runtime::internal("encoding", e))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init("https://account-object/", &init).map_err(failed)?;
    stub.fetch_with_request(request).await.map_err(failed)
}

#[durable_object]
pub struct AccountTokenObject {
    state: State,
    env: Env,
    shared: Rc<Shared>,
}

/// In-memory copy of the stored state, shared with background refreshes.
#[derive(Default)]
struct Shared {
    loaded: Cell<bool>,
    record: RefCell<Option<TokenRecord>>,
    last_attempt: RefCell<Option<AttemptRecord>>,
    forced: RefCell<ForceLog>,
    kv_written_at: Cell<u64>,
    flight: SingleFlight<Result<TokenRecord, UpstreamFailure>>,
}

impl DurableObject for AccountTokenObject {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            shared: Rc::default(),
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
}

impl AccountTokenObject {
    async fn handle(&self, call: ObjectCall) -> Result<Response, AppError> {
        let settings = runtime::settings(&self.env)?;
        let account = settings.account(Some(&call.account))?.clone();
        let trigger = call.trigger;
        self.shared.load(&self.state.storage()).await?;
        let answer = |record: &TokenRecord| {
            respond::json(200, &record.answer(&account.id, &account.appid, now_secs()))
        };

        // A passive refresh that joined a call already under way can get back the very token
        // it reported (stable_token hands out the current token unless forced): decide again.
        let mut rounds = 0;
        loop {
            rounds += 1;
            let now = now_secs();
            let record = self.shared.record.borrow().clone();
            let last_attempt = self.shared.last_attempt.borrow().clone();
            let forced = self.shared.forced.borrow().clone();
            let observed = Observed {
                record: record.as_ref(),
                last_attempt: last_attempt.as_ref(),
                in_flight: self.shared.flight.in_flight(),
                forced: (account.api == TokenApi::Stable)
                    .then_some((&forced, settings.stable_force)),
            };
            let decision = decide(&trigger, &observed, now, settings.refresh);
            if decision != Decision::Serve {
                log_event(json!({
                    "event": "refresh_decision",
                    "account": account.id,
                    "trigger": trigger.name(),
                    "decision": format!("{decision:?}"),
                }));
            }

            let current = || {
                record
                    .clone()
                    .ok_or_else(|| runtime::internal("policy", "no token"))
            };
            return match decision {
                Decision::Serve => {
                    let current = current()?;
                    if trigger == Trigger::Read {
                        self.recache(&account, &current, now);
                    }
                    Ok(answer(&current))
                }
                Decision::ServeAndRefresh => {
                    let current = current()?;
                    // The outcome is logged and stored by the refresh itself.
                    let background = refresh(
                        self.handles(),
                        settings.clone(),
                        account.clone(),
                        trigger.name(),
                        false,
                    );
                    self.state.wait_until(async move {
                        let _ = background.await;
                    });
                    Ok(answer(&current))
                }
                Decision::Refresh { force } => {
                    let handles = self.handles();
                    let fresh = refresh(
                        handles,
                        settings.clone(),
                        account.clone(),
                        trigger.name(),
                        force,
                    )
                    .await?;
                    let got_back_the_stale_token = matches!(
                        &trigger,
                        Trigger::Passive { stale_token: Some(stale) } if *stale == fresh.access_token
                    );
                    if got_back_the_stale_token && !force && rounds < 2 {
                        continue;
                    }
                    Ok(match trigger {
                        Trigger::Cron | Trigger::Background => respond::json(
                            200,
                            &json!({ "outcome": "refreshed", "expires_at": fresh.expires_at }),
                        ),
                        Trigger::Read | Trigger::Passive { .. } => answer(&fresh),
                    })
                }
                Decision::Skip => Ok(respond::json(200, &json!({ "outcome": "skipped" }))),
                Decision::TooSoon {
                    retry_after_secs,
                    reason,
                } => Err(AppError::RefreshTooSoon {
                    retry_after_secs,
                    reason,
                }),
                Decision::Unavailable { retry_after_secs } => Err(AppError::NoValidToken {
                    last_failure: last_attempt.and_then(|attempt| attempt.failure),
                    retry_after_secs,
                }),
            };
        }
    }

    fn handles(&self) -> Handles {
        Handles {
            shared: self.shared.clone(),
            storage: self.state.storage(),
            env: self.env.clone(),
        }
    }

    /// The worker only asks for a read on a KV miss: put the token back for the next readers.
    fn recache(&self, account: &Account, record: &TokenRecord, now: u64) {
        if now < self.shared.kv_written_at.get() + KV_RECACHE_SECS {
            return;
        }
        self.shared.kv_written_at.set(now);
        let (env, id, record) = (self.env.clone(), account.id.clone(), record.clone());
        self.state.wait_until(async move {
            if let Err(e) = kv_cache::write(&env, &id, &record, now).await {
                log_error(
                    json!({ "event": "kv_write_failed", "account": id, "message": e.to_string() }),
                );
            }
        });
    }
}

/// What a refresh needs, owned, so that it can outlive the request that started it.
struct Handles {
    shared: Rc<Shared>,
    storage: Storage,
    env: Env,
}

/// Calls WeChat, or joins the call already under way.
async fn refresh(
    handles: Handles,
    settings: Settings,
    account: Account,
    trigger: &'static str,
    force: bool,
) -> Result<TokenRecord, UpstreamFailure> {
    let flight = &handles.shared.flight;
    flight
        .run(|| call_wechat(&handles, &settings, &account, trigger, force))
        .await
}

async fn call_wechat(
    handles: &Handles,
    settings: &Settings,
    account: &Account,
    trigger: &'static str,
    force: bool,
) -> Result<TokenRecord, UpstreamFailure> {
    let shared = &handles.shared;
    let started_at = now_secs();
    let started_ms = now_millis();
    if force {
        // Counted when sent: WeChat counts the attempt, whatever it answers.
        shared.forced.borrow_mut().record(started_at);
        let forced = shared.forced.borrow().clone();
        if let Err(e) = handles.storage.put(FORCED_KEY, &forced).await {
            log_storage_error(account, e);
        }
    }
    let outcome = upstream::fetch_token(settings, account, force)
        .await
        .map(|issued| TokenRecord::issued(issued.access_token, issued.expires_in, started_at));
    let failure = outcome.as_ref().err().cloned();

    log_event(json!({
        "event": "upstream_call",
        "account": account.id,
        "api": account.api.name(),
        "force": force,
        "trigger": trigger,
        "outcome": match &failure { None => "ok", Some(f) => AppError::Upstream(f.clone()).code() },
        "wechat_errcode": match &failure { Some(UpstreamFailure::WeChat { errcode, .. }) => json!(errcode), _ => json!(null) },
        "duration_ms": now_millis().saturating_sub(started_ms),
    }));

    let attempt = AttemptRecord {
        at: started_at,
        failure,
    };
    *shared.last_attempt.borrow_mut() = Some(attempt.clone());
    if let Ok(record) = &outcome {
        *shared.record.borrow_mut() = Some(record.clone());
    }

    // Durable first (the Durable Object is the truth), then the edge cache. Awaited, so that
    // whoever gets the new token from us also finds it in KV on their next read.
    let persisted = match &outcome {
        Ok(record) => handles.storage.put(TOKEN_KEY, record).await,
        Err(_) => Ok(()),
    };
    if let Err(e) = persisted.and(handles.storage.put(LAST_ATTEMPT_KEY, &attempt).await) {
        log_storage_error(account, e);
    }
    if let Ok(record) = &outcome {
        let now = now_secs();
        match kv_cache::write(&handles.env, &account.id, record, now).await {
            Ok(()) => shared.kv_written_at.set(now),
            Err(e) => log_error(
                json!({ "event": "kv_write_failed", "account": account.id, "message": e.to_string() }),
            ),
        }
    }
    outcome
}

fn log_storage_error(account: &Account, error: worker::Error) {
    log_error(
        json!({ "event": "storage_write_failed", "account": account.id, "message": error.to_string() }),
    );
}

impl Shared {
    /// Reads the stored state once per object instance. Storage reads do not interleave with
    /// other requests (input gates), so two loads cannot race.
    async fn load(&self, storage: &Storage) -> Result<(), AppError> {
        if self.loaded.get() {
            return Ok(());
        }
        let failed = |e| runtime::internal("reading the account's storage", e);
        let record = storage
            .get::<TokenRecord>(TOKEN_KEY)
            .await
            .map_err(failed)?;
        let last_attempt = storage
            .get::<AttemptRecord>(LAST_ATTEMPT_KEY)
            .await
            .map_err(failed)?;
        let forced = storage.get::<ForceLog>(FORCED_KEY).await.map_err(failed)?;
        if !self.loaded.replace(true) {
            *self.record.borrow_mut() = record;
            *self.last_attempt.borrow_mut() = last_attempt;
            *self.forced.borrow_mut() = forced.unwrap_or_default();
        }
        Ok(())
    }
}
