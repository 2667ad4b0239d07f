//! What an account's object keeps about its credentials, in memory and in storage.
//!
//! Storage holds one key per credential (`cred:token`, `cred:jsapi`, `cred:wx_card`), one
//! for the account (`account`), and for the platform's objects one more (`platform`), each a
//! JSON string. An outcome writes both keys of its
//! credential in one `put_multiple`, so no eviction can leave half of it behind.

use super::flight::Flight;
use super::AccountCtx;
use crate::edge::adapters::faults;
use crate::edge::adapters::runtime;
use crate::error::AppError;
use crate::policy::ledger::{AccountLedger, CredentialKind, CredentialState, Usage};
use crate::policy::platform::PlatformState;
use crate::policy::ticket::{TicketKind, TicketRecord};
use crate::policy::token::{Credential, Issuance, TokenRecord};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use worker::js_sys::{Object, Reflect};
use worker::wasm_bindgen::JsValue;
use worker::Delay;

const ACCOUNT_KEY: &str = "account";
/// The platform's objects only: the verify ticket, or the refresh token (`PlatformState`).
pub(super) const PLATFORM_KEY: &str = "platform";
/// What the object last reported to the registry: kept, so that a reloaded object does not
/// report the same again.
pub(super) const REPORTED_KEY: &str = "reported";
/// The safety net's runs in a row, kept so that its delay keeps growing across evictions.
pub(super) const SAFETY_NET_KEY: &str = "safety_net_runs";

pub(super) fn storage_key(which: CredentialKind) -> String {
    format!("cred:{}", which.name())
}

/// Keeping a credential's KV entry in step with its record: one writer per key, writes at
/// least a second apart (KV's limit), and the latest record last.
#[derive(Default)]
pub(super) struct KvSync {
    /// The record changed (or readers found the entry stale) since the last write.
    pub(super) dirty: Cell<bool>,
    pub(super) running: Cell<bool>,
    pub(super) last_write_ms: Cell<u64>,
    /// Until when the entry we last wrote is fresh (0: not written by this instance).
    pub(super) fresh_until: Cell<u64>,
    /// The token (and its expiry) whose index entries were last written.
    pub(super) indexed: RefCell<Option<(String, u64)>>,
}

/// One credential in memory: what is stored, the call under way, the KV writer.
pub(super) struct Slot<R> {
    pub(super) state: RefCell<CredentialState<R>>,
    pub(super) flight: Flight<Result<R, AppError>>,
    pub(super) kv: KvSync,
}

impl<R: Clone> Default for Slot<R> {
    fn default() -> Self {
        Self {
            state: RefCell::default(),
            flight: Flight::default(),
            kv: KvSync::default(),
        }
    }
}

impl<R: Clone> Slot<R> {
    pub(super) fn record(&self) -> Option<R> {
        self.state.borrow().record.clone()
    }
}

/// The object's memory: a copy of what it stores, plus the calls and writes under way.
#[derive(Default)]
pub struct AccountState {
    pub(super) loaded: Cell<bool>,
    pub(super) ledger: RefCell<AccountLedger>,
    pub(super) token: Slot<TokenRecord>,
    pub(super) jsapi: Slot<TicketRecord>,
    pub(super) wx_card: Slot<TicketRecord>,
    pub(super) agent_config: Slot<TicketRecord>,
    /// Consecutive failed alarm runs, for the retry delay.
    pub(super) alarm_failures: Cell<u32>,
    /// Alarms set in a row for a due time already past (the safety net), for its delay.
    pub(super) safety_net_runs: Cell<u32>,
    /// The due time and summary last told to the registry (None: not told yet).
    pub(super) reported: RefCell<Option<(Option<u64>, String)>>,
    /// A report under way, and the due time of one asked for meanwhile.
    pub(super) reporting: Cell<bool>,
    pub(super) report_wanted: Cell<Option<Option<u64>>>,
    /// What the platform's component, an authorizer, a WeCom suite or a WeCom corporation
    /// keeps besides its credentials.
    pub(super) platform: RefCell<PlatformState>,
    /// A WeCom suite: the kept permanent codes (corpid, TimeStamp) a run is registering now.
    pub(super) registering: RefCell<Vec<(String, u64)>>,
    /// A WeCom corporation: `change_auth`s taken, so that an older read of its auth info
    /// never overwrites a newer one.
    pub(super) auth_info_asks: Cell<u64>,
    /// A WeCom suite: held while one of its corporations is registered or removed, so that a
    /// withdrawal and a newer authorization of the same corporation never interleave.
    pub(super) corp_changes: futures_util::lock::Mutex<()>,
    /// The account was erased or its registration replaced: whatever is still under way on
    /// this state writes nothing (storage, KV, alarm) from now on.
    pub(super) retired: Cell<bool>,
    /// The states this one replaced (and those they replaced before loading), while a call
    /// they started may still be under way: this one loads only once those calls ended, so
    /// that no second call to WeChat starts beside them.
    predecessors: RefCell<Vec<Rc<AccountState>>>,
}

impl AccountState {
    pub fn retire(&self) {
        self.retired.set(true);
    }

    /// A fresh state replacing `old` (retired): it loads once the calls of `old`, and of the
    /// states `old` was still waiting for, have ended.
    pub fn succeeding(old: Rc<AccountState>) -> Self {
        old.retire();
        let state = Self::default();
        let mut waits_for = old.predecessors.take();
        waits_for.push(old);
        *state.predecessors.borrow_mut() = waits_for;
        state
    }

    fn calls_in_flight(&self) -> bool {
        self.token.flight.in_flight()
            || TicketKind::ALL
                .iter()
                .any(|kind| self.ticket(*kind).flight.in_flight())
    }

    pub(super) fn ticket(&self, kind: TicketKind) -> &Slot<TicketRecord> {
        match kind {
            TicketKind::Jsapi => &self.jsapi,
            TicketKind::WxCard => &self.wx_card,
            TicketKind::AgentConfig => &self.agent_config,
        }
    }

    pub(super) fn usage(&self, which: CredentialKind) -> Usage {
        match which {
            CredentialKind::Token => self.token.state.borrow().usage.clone(),
            CredentialKind::Ticket(kind) => self.ticket(kind).state.borrow().usage.clone(),
        }
    }

    pub(super) fn kv_pending(&self, which: CredentialKind) -> bool {
        match which {
            CredentialKind::Token => self.token.state.borrow().kv_pending,
            CredentialKind::Ticket(kind) => self.ticket(kind).state.borrow().kv_pending,
        }
    }
}

/// Whether a read is worth a storage write of its own: the first in an hour.
pub(super) fn read_worth_storing(previous_read_at: u64, now: u64) -> bool {
    now >= previous_read_at + 3_600
}

fn json_of<T: Serialize>(value: &T) -> Result<JsValue, AppError> {
    serde_json::to_string(value)
        .map(|text| JsValue::from_str(&text))
        .map_err(|e| runtime::internal("encoding state", e))
}

impl AccountCtx {
    /// Reads the stored state once per object instance (input gates keep two loads from
    /// interleaving), then reconciles it with the configuration and with a call cut off by an
    /// eviction.
    pub async fn load(&self) -> Result<(), AppError> {
        if self.state.loaded.get() {
            return Ok(());
        }
        // A call ends within its upstream budget (retries included); a platform account's
        // may first wait for its component's: twice that, and a margin, is the backstop.
        let bound_ms = 2 * self.settings.upstream_timeout_ms + 5_000;
        let mut waited_ms = 0;
        while waited_ms < bound_ms
            && self
                .state
                .predecessors
                .borrow()
                .iter()
                .any(|old| old.calls_in_flight())
        {
            Delay::from(std::time::Duration::from_millis(50)).await;
            waited_ms += 50;
        }
        self.state.predecessors.borrow_mut().clear();
        let storage = self.object.storage();
        async fn get<T: DeserializeOwned>(
            storage: &worker::Storage,
            key: &str,
        ) -> Result<Option<T>, AppError> {
            let text: Option<String> = storage
                .get(key)
                .await
                .map_err(|e| runtime::internal("reading storage", e))?;
            // An unreadable value (an older layout) is as good as none: it is fetched anew.
            Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
        }
        let ledger: Option<AccountLedger> = get(&storage, ACCOUNT_KEY).await?;
        let token = get(&storage, &storage_key(CredentialKind::Token)).await?;
        // Only the kinds this account can have: no storage read for the others.
        let mut tickets = Vec::new();
        for kind in TicketKind::ALL {
            if TicketKind::parse(Some(kind.name()), self.account.kind).is_ok() {
                let key = storage_key(CredentialKind::Ticket(kind));
                tickets.push((kind, get(&storage, &key).await?));
            }
        }
        let platform: Option<PlatformState> = match self.account.api.keeps_platform_state() {
            true => get(&storage, PLATFORM_KEY).await?,
            false => None,
        };
        let reported = get(&storage, REPORTED_KEY).await?;
        let safety_net_runs: Option<u32> = get(&storage, SAFETY_NET_KEY).await?;
        if self.state.loaded.replace(true) {
            return Ok(());
        }
        *self.state.reported.borrow_mut() = reported;
        self.state.safety_net_runs.set(safety_net_runs.unwrap_or(0));
        *self.state.platform.borrow_mut() = platform.unwrap_or_default();
        let state = &self.state;
        *state.ledger.borrow_mut() = ledger.unwrap_or_default();
        *state.token.state.borrow_mut() = token.unwrap_or_default();
        for (kind, ticket) in tickets {
            *state.ticket(kind).state.borrow_mut() = ticket.unwrap_or_default();
        }
        self.reconcile().await
    }

    /// After a load: drop records fetched under another configuration of this id, and treat
    /// a token call that never recorded its outcome like a lost answer.
    async fn reconcile(&self) -> Result<(), AppError> {
        let issuer = self.account.issuer.as_str();
        let mut changed = Vec::new();
        fn drop_foreign<R: Credential>(state: &mut CredentialState<R>, issuer: &str) -> bool {
            let foreign = state
                .record
                .as_ref()
                .is_some_and(|r| r.issued_for() != issuer);
            if foreign {
                state.record = None;
                state.last_attempt = None;
            }
            foreign
        }
        if drop_foreign(&mut self.state.token.state.borrow_mut(), issuer) {
            changed.push(CredentialKind::Token);
        }
        for kind in TicketKind::ALL {
            if drop_foreign(&mut self.state.ticket(kind).state.borrow_mut(), issuer) {
                changed.push(CredentialKind::Ticket(kind));
            }
        }
        let interrupted = self.state.ledger.borrow_mut().token_call_sent.take();
        if let Some(sent) = interrupted {
            let how = Issuance::of(self.account.api, sent.forced);
            let mut token = self.state.token.state.borrow_mut();
            token.record = token
                .record
                .take()
                .map(|r| r.possibly_replaced(sent.at, how));
            self.state.token.kv.dirty.set(token.record.is_some());
            changed.push(CredentialKind::Token);
            runtime::log_event(json!({
                "event": "refresh_interrupted",
                "account": self.account.id,
                "sent_at": sent.at,
                "forced": sent.forced,
            }));
        }
        let id_missing = self.state.ledger.borrow().id != self.account.id;
        self.state.ledger.borrow_mut().id = self.account.id.clone();
        if !changed.is_empty() {
            runtime::log_event(json!({
                "event": "state_reconciled",
                "account": self.account.id,
                "credentials": changed.iter().map(|c| c.name()).collect::<Vec<_>>(),
            }));
        }
        match changed.first() {
            Some(_) => {
                for which in &changed {
                    self.persist(Some(*which)).await;
                }
                if interrupted.is_some() {
                    // Refresh the possibly replaced token (and write KV) without waiting for
                    // a reader or the cron.
                    self.schedule_alarm(0).await;
                }
            }
            None if id_missing => self.persist(None).await,
            None => {}
        }
        Ok(())
    }

    /// Writes the account's ledger, and `which`'s state with it, in one storage operation.
    /// A failure is logged: memory stays right, and the next write carries it.
    pub(super) async fn persist(&self, which: Option<CredentialKind>) {
        if self.state.retired.get() {
            return;
        }
        if let Err(e) = self.persist_checked(which).await {
            self.log_storage_error(&e.message());
        }
    }

    /// What WeChat or WeCom pushed (a ticket, a code, a withdrawal), stored before it is
    /// acknowledged: a failure is the caller's, who answers 5xx so that the push comes again.
    pub(super) async fn persist_push(&self, which: Option<CredentialKind>) -> Result<(), AppError> {
        faults::push_store(&self.env).map_err(|e| runtime::internal("storage", e))?;
        self.persist_checked(which).await
    }

    /// [`AccountCtx::persist`] for what must be stored before it goes on (a code out of
    /// storage before it is sent): the failure is the caller's.
    pub(super) async fn persist_checked(
        &self,
        which: Option<CredentialKind>,
    ) -> Result<(), AppError> {
        if self.state.retired.get() {
            return Err(AppError::UnknownAccount);
        }
        let values = Object::new();
        let mut entries = vec![(
            ACCOUNT_KEY.to_owned(),
            json_of(&*self.state.ledger.borrow()),
        )];
        // With every write, so that a new refresh token is stored with the token it came with.
        if self.account.api.keeps_platform_state() {
            entries.push((
                PLATFORM_KEY.to_owned(),
                json_of(&*self.state.platform.borrow()),
            ));
        }
        if let Some(which) = which {
            let value = match which {
                CredentialKind::Token => json_of(&*self.state.token.state.borrow()),
                CredentialKind::Ticket(kind) => json_of(&*self.state.ticket(kind).state.borrow()),
            };
            entries.push((storage_key(which), value));
        }
        for (key, value) in entries {
            let _ = Reflect::set(&values, &JsValue::from_str(&key), &value?);
        }
        self.object
            .storage()
            .put_multiple_raw(values)
            .await
            .map_err(|e| runtime::internal("writing the object's storage", e))
    }

    /// Sets the alarm `delay_ms` from now, unless it is set to go off sooner.
    pub(super) async fn schedule_alarm(&self, delay_ms: u64) {
        if self.state.retired.get() {
            return;
        }
        let storage = self.object.storage();
        let at = (runtime::now_millis() + delay_ms) as i64;
        let sooner = matches!(storage.get_alarm().await, Ok(Some(set)) if set <= at);
        if !sooner {
            // An offset from now (`set_alarm` takes a plain number as one).
            let offset = std::time::Duration::from_millis(delay_ms);
            if let Err(e) = storage.set_alarm(offset).await {
                self.log_storage_error(&e.to_string());
            }
        }
    }

    pub(super) fn log_storage_error(&self, message: &str) {
        runtime::log_error(json!({
            "event": "storage_write_failed",
            "account": self.account.id,
            "message": message,
        }));
    }
}
