//! A WeCom suite's corporations, in its object: the authorization codes pushed to it, each
//! exchanged once for a permanent code (`v2/get_permanent_code`), the permanent code kept
//! (sealed) until its corporation is registered, and withdrawals, all in WeCom's order and one
//! corporation change at a time.

use super::{AccountCtx, Acquired};
use crate::edge::adapters::runtime::{self, log_event};
use crate::edge::adapters::upstream;
use crate::edge::objects::object_client;
use crate::edge::objects::registry;
use crate::edge::objects::removal;
use crate::edge::objects::wecom_corps;
use crate::error::{outcome_code, AppError, UpstreamFailure};
use crate::policy::accounts::{is_identifier, AccountKind};
use crate::policy::fingerprint::fingerprint;
use crate::policy::platform::ExchangedCode;
use crate::policy::refresh::Trigger;
use crate::policy::sealing::NONCE_BYTES;
use crate::policy::wecom_provider::{
    admit_authorization, admit_withdrawal, corp_account_id, take_auth_code,
};
use crate::wechat::wecom_service as protocol;
use serde_json::{json, Value};

impl AccountCtx {
    /// A suite's object: the code of a corporation's authorization (or of a 代开发 app's
    /// reset permanent code), stored before WeCom hears `success` (a failed write leaves no
    /// trace, so that WeCom's retry is taken afresh), then exchanged in the background.
    /// WeCom's retry of a push already stored changes nothing.
    pub(super) async fn receive_auth_code(
        &self,
        code: String,
        created_at: u64,
    ) -> Result<(), AppError> {
        // Sealing the permanent code needs the key: without it the code waits, unsent.
        runtime::key_ring(&self.env)?;
        let taken = take_auth_code(&mut self.state.platform.borrow_mut(), &code, created_at);
        if !taken {
            log_event(
                json!({ "event": "wecom_auth_code_received", "suite": self.account.id, "stored": false }),
            );
            return Ok(());
        }
        if let Err(e) = self.persist_push(None).await {
            // Undone unless a run took the code for its exchange meanwhile (then it is spent,
            // and WeCom's retry must find it known).
            let mut platform = self.state.platform.borrow_mut();
            if platform
                .auth_codes
                .iter()
                .any(|pending| pending.code == code)
            {
                let seen = fingerprint(&code);
                platform.auth_codes.retain(|pending| pending.code != code);
                platform.recent_codes.retain(|recent| *recent != seen);
            }
            return Err(e);
        }
        log_event(
            json!({ "event": "wecom_auth_code_received", "suite": self.account.id, "stored": true }),
        );
        let ctx = self.clone();
        self.object
            .wait_until(async move { ctx.exchange_auth_codes().await });
        Ok(())
    }

    /// Registers the kept codes a failed registration left, then exchanges each pending code
    /// once (`v2/get_permanent_code`) and registers the corporation it names. A code leaves
    /// storage just before it is sent: single-use, it is never sent twice, not even after an
    /// eviction mid-exchange; refused before WeCom read it (no suite token, or one WeCom
    /// rejects), it goes back. Waiting codes are tried again with the next ticket and by the
    /// cron.
    pub(super) async fn exchange_auth_codes(&self) {
        self.register_kept_codes().await;
        let mut healed = false;
        loop {
            if self.state.platform.borrow().auth_codes.is_empty() {
                return;
            }
            let suite_token = match self.token(&Trigger::Read).await.map(Acquired::record) {
                Ok(Some(record)) => record.access_token,
                Ok(None) | Err(_) => {
                    log_event(json!({
                        "event": "wecom_auth_codes_waiting", "suite": self.account.id,
                        "pending": self.state.platform.borrow().auth_codes.len(),
                    }));
                    return;
                }
            };
            // Another run (the cron's, a push's) may have taken the last one meanwhile.
            let code = {
                let mut platform = self.state.platform.borrow_mut();
                match platform.auth_codes.is_empty() {
                    true => return,
                    false => platform.auth_codes.remove(0),
                }
            };
            if self.persist_checked(None).await.is_err() {
                self.state.platform.borrow_mut().auth_codes.insert(0, code);
                return;
            }
            let answer = self.send_code(&suite_token, &code.code).await;
            if let Err(failure) = &answer {
                if super::wecom_service::suite_token_rejected(failure) {
                    // WeCom refused the suite's token before looking at the code: it goes
                    // back, and the token is replaced once for this run.
                    self.state.platform.borrow_mut().auth_codes.insert(0, code);
                    if healed || self.persist_checked(None).await.is_err() {
                        return;
                    }
                    healed = true;
                    let stale = Trigger::Rejected {
                        stale_token: suite_token,
                    };
                    let _ = self.token(&stale).await;
                    continue;
                }
            }
            let outcome = match answer {
                Ok(authorized) => self.keep_and_register(authorized, code.created_at).await,
                Err(failure) => Err(AppError::Upstream(failure)),
            };
            self.log_authorized(&outcome, false);
        }
    }

    fn log_authorized(&self, outcome: &Result<String, AppError>, kept_before: bool) {
        log_event(json!({
            "event": "wecom_corp_authorized",
            "suite": self.account.id,
            "account": outcome.as_ref().ok(),
            "outcome": outcome_code(outcome),
            "wechat_rid": outcome.as_ref().err().and_then(AppError::rid),
            "kept_before": kept_before,
        }));
    }

    /// WeCom gives a permanent code once: it is kept, sealed, in the suite's storage until its
    /// corporation is registered, so that a registration that fails (the registry out of
    /// reach) is tried again by the cron rather than lost.
    async fn keep_and_register(
        &self,
        authorized: protocol::Authorized,
        created_at: u64,
    ) -> Result<String, AppError> {
        if !is_identifier(&authorized.corpid) {
            return Err(AppError::Upstream(UpstreamFailure::BadResponse {
                detail: "auth_corp_info.corpid is not letters, digits, '_' and '-'".into(),
            }));
        }
        let id = corp_account_id(&self.account.id, &authorized.corpid);
        let nonce = runtime::random_bytes::<NONCE_BYTES>();
        let sealed = runtime::key_ring(&self.env)?.seal(&id, &authorized.permanent_code, nonce);
        let kept = (authorized.corpid.clone(), created_at);
        // This run registers it: a retry of the kept codes leaves it alone.
        self.state.registering.borrow_mut().push(kept.clone());
        self.state
            .platform
            .borrow_mut()
            .exchanged
            .push(ExchangedCode {
                corpid: authorized.corpid.clone(),
                sealed_permanent_code: sealed,
                created_at,
            });
        if let Err(e) = self.persist_checked(None).await {
            // Registered at once all the same: only a failure of that too loses the code.
            log_event(json!({
                "event": "wecom_permanent_code_not_kept", "account": id, "outcome": e.code(),
            }));
        }
        let outcome = self.register_kept(&authorized, created_at).await;
        self.state.registering.borrow_mut().retain(|r| *r != kept);
        // None: a withdrawal dropped the kept code while this run waited for the lock.
        outcome.unwrap_or_else(|| {
            Err(AppError::Conflict(
                "withdrawn before it was registered".into(),
            ))
        })
    }

    /// The kept codes a failed registration left, registered again (at the start of each
    /// exchange: the cron's, a ticket's, a code's), except those a run is registering now.
    async fn register_kept_codes(&self) {
        let kept = self.state.platform.borrow().exchanged.clone();
        if kept.is_empty() {
            return;
        }
        let ring = match runtime::key_ring(&self.env) {
            Ok(ring) => ring,
            Err(e) => return self.log_authorized(&Err(e), true),
        };
        for entry in kept {
            let key = (entry.corpid.clone(), entry.created_at);
            if self.state.registering.borrow().contains(&key) {
                continue;
            }
            let id = corp_account_id(&self.account.id, &entry.corpid);
            let outcome = match ring.open(&id, &entry.sealed_permanent_code) {
                Ok(permanent_code) => {
                    let corpid = entry.corpid.clone();
                    let authorized = protocol::Authorized {
                        corpid,
                        permanent_code,
                    };
                    match self.register_kept(&authorized, entry.created_at).await {
                        Some(outcome) => outcome,
                        None => continue, // another retry registered it meanwhile
                    }
                }
                Err(e) => Err(e),
            };
            self.log_authorized(&outcome, true);
        }
    }

    /// Registers a kept code's corporation unless a withdrawal pushed after its authorization
    /// came first (the code waited for its exchange meanwhile); None if the code is no longer
    /// kept. The code is kept after a 5xx (tried again), dropped after anything else. One
    /// corporation change at a time: a withdrawal waits until the registration is done, and
    /// the other way round.
    async fn register_kept(
        &self,
        authorized: &protocol::Authorized,
        created_at: u64,
    ) -> Option<Result<String, AppError>> {
        let registered = {
            let _changing = self.state.corp_changes.lock().await;
            let corpid = &authorized.corpid;
            let is_this =
                |e: &ExchangedCode| (e.corpid.as_str(), e.created_at) == (corpid, created_at);
            if !self.state.platform.borrow().exchanged.iter().any(is_this) {
                return None;
            }
            let admitted =
                admit_authorization(&mut self.state.platform.borrow_mut(), corpid, created_at);
            let registered = match admitted {
                true => {
                    self.persist(None).await;
                    let suite = &self.account.id;
                    wecom_corps::register(&self.env, &self.settings, suite, authorized).await
                }
                false => Err(AppError::Conflict(
                    "withdrawn after this authorization was pushed: not registered".into(),
                )),
            };
            if !registered.as_ref().is_err_and(|e| e.status() >= 500) {
                let is_not_this = |e: &ExchangedCode| !is_this(e);
                let mut platform = self.state.platform.borrow_mut();
                platform.exchanged.retain(is_not_this);
            }
            self.persist(None).await;
            registered
        };
        // Once the lock is released: its first token, its auth info (read again with each new
        // permanent code) and its alarm. A failure is the corporation's to report.
        if let Ok(id) = &registered {
            let _ = object_client::cron(&self.env, id).await;
        }
        Some(registered)
    }

    /// A corporation's `cancel_auth` pushed at `created_at`, in WeCom's order: one older than
    /// the authorization acted on (a late retry) changes nothing; otherwise it is stored
    /// (before the answer: an authorization pushed before it never registers the corporation
    /// again) and the corporation's account, tokens and permanent code go, a kept one too. One
    /// already done is finished again (a removal that failed half-way); an account of that id
    /// an operator registered is left alone.
    pub async fn corp_withdrawn(&self, corpid: &str, created_at: u64) -> Result<Value, AppError> {
        let _changing = self.state.corp_changes.lock().await;
        let before = self
            .state
            .platform
            .borrow()
            .corp_pushes
            .get(corpid)
            .copied();
        if !admit_withdrawal(&mut self.state.platform.borrow_mut(), corpid, created_at) {
            return Ok(json!({ "in_order": false, "removed": false }));
        }
        if let Err(e) = self.persist_push(None).await {
            let mut platform = self.state.platform.borrow_mut();
            match before {
                Some(pushes) => platform.corp_pushes.insert(corpid.to_owned(), pushes),
                None => platform.corp_pushes.remove(corpid),
            };
            return Err(e);
        }
        // Kept codes pushed before the withdrawal will never register: they go now (so does
        // one of the same second already acted on, whose registration failed).
        let acted_on = before.and_then(|p| p.authorized_at);
        let moot = |e: &ExchangedCode| {
            e.corpid == corpid
                && (e.created_at < created_at
                    || (e.created_at == created_at && acted_on == Some(created_at)))
        };
        self.state
            .platform
            .borrow_mut()
            .exchanged
            .retain(|e| !moot(e));
        self.persist(None).await;
        let id = corp_account_id(&self.account.id, corpid);
        let operators = registry::get(&self.env, &id)
            .await?
            .is_some_and(|e| e.kind != AccountKind::WeComCorp.name());
        let removed = !operators && removal::remove(&self.env, &id, None).await?.is_some();
        Ok(json!({ "in_order": true, "removed": removed }))
    }

    async fn send_code(
        &self,
        suite_token: &str,
        code: &str,
    ) -> Result<protocol::Authorized, UpstreamFailure> {
        let base = &self.settings.wecom_api_base;
        let request = protocol::permanent_code_request(base, suite_token, code);
        let budget_ms = self.settings.upstream_timeout_ms;
        let (status, body) = upstream::platform_call(&self.settings, &request, budget_ms).await?;
        protocol::parse_permanent_code(status, &body, &request.sensitive)
    }
}
