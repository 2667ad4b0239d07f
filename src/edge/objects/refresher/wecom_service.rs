//! The token calls of a WeCom service provider's objects: a suite's (with its latest suite
//! ticket, valid 30 minutes), the provider's own, and a corporation's (with its suite's token
//! and its permanent code); and the suite's exchange of the authorization codes pushed to it.

use super::calls::Sending;
use super::platform::PlatformGrant;
use super::{AccountCtx, Acquired};
use crate::edge::adapters::runtime::{self, log_event, now_secs};
use crate::edge::adapters::upstream;
use crate::edge::objects::object_client;
use crate::edge::objects::registry;
use crate::edge::objects::removal;
use crate::edge::objects::wecom_corps;
use crate::error::{wechat_codes, AppError, UpstreamFailure};
use crate::policy::accounts::{is_identifier, AccountKind, TokenApi};
use crate::policy::ledger::CredentialKind;
use crate::policy::platform::{AuthInfo, ExchangedCode};
use crate::policy::refresh::Trigger;
use crate::policy::sealing::NONCE_BYTES;
use crate::policy::wecom_provider::{
    admit_authorization, admit_withdrawal, corp_account_id, suite_of, take_auth_code,
    usable_suite_ticket,
};
use crate::wechat::api::Issued;
use crate::wechat::platform::PlatformRequest;
use crate::wechat::wecom_service as protocol;
use serde_json::{json, Value};

/// How long a corporation's auth info that could not be read waits before it is asked again.
const AUTH_INFO_RETRY_SECS: u64 = 600;

/// WeCom's "this suite_access_token is not (or no longer) valid".
fn suite_token_rejected(failure: &UpstreamFailure) -> bool {
    matches!(failure, UpstreamFailure::WeChat { errcode, .. }
        if wechat_codes::is_suite_token_rejected(*errcode))
}

impl AccountCtx {
    /// A suite without a ticket younger than 30 minutes calls nothing: WeCom would refuse it.
    /// A corporation calls with its suite's token.
    pub(super) async fn wecom_service_grant(&self) -> Result<Option<PlatformGrant>, AppError> {
        match self.account.api {
            TokenApi::WeComProvider => Ok(Some(PlatformGrant::Provider)),
            TokenApi::WeComCorp => {
                let suite_id = suite_of(&self.account.id)
                    .ok_or_else(|| AppError::Internal("a corporation without its suite".into()))?
                    .to_owned();
                let suite_token =
                    object_client::access_token(&self.env, &suite_id, Trigger::Read).await?;
                Ok(Some(PlatformGrant::Corp {
                    suite_id,
                    suite_token,
                }))
            }
            _ => {
                let platform = self.state.platform.borrow();
                match usable_suite_ticket(&platform, now_secs()) {
                    Some(ticket) => Ok(Some(PlatformGrant::SuiteTicket(ticket.to_owned()))),
                    None => Err(AppError::NoSuiteTicket),
                }
            }
        }
    }

    /// `get_suite_token`, `get_provider_token` or `get_corp_token`, with `call_upstream`'s
    /// retries. A suite ticket WeCom refuses (40085) is dropped: the next push brings one
    /// WeCom takes, and until then nothing is sent. A suite token WeCom refuses for a
    /// corporation's call is replaced once (for everyone), and the call sent again.
    pub(super) async fn call_wecom_service(
        &self,
        trigger: &'static str,
        grant: PlatformGrant,
    ) -> (Result<Issued, UpstreamFailure>, bool) {
        let base = &self.settings.wecom_api_base;
        let (appid, secret) = (&self.account.appid, &self.account.secret);
        match grant {
            PlatformGrant::SuiteTicket(ticket) => {
                let request = protocol::suite_token_request(base, appid, secret, &ticket);
                let outcome = self
                    .service_call(trigger, &request, protocol::SUITE_TOKEN_FIELD)
                    .await;
                if let Err(UpstreamFailure::WeChat { errcode, .. }) = &outcome.0 {
                    let mut platform = self.state.platform.borrow_mut();
                    let current = platform.verify_ticket.as_ref().map(|t| &t.ticket);
                    if *errcode == wechat_codes::SUITE_TICKET_INVALID && current == Some(&ticket) {
                        platform.verify_ticket = None;
                    }
                }
                outcome
            }
            PlatformGrant::Corp {
                suite_id,
                suite_token,
            } => {
                let call = |suite_token: String| async move {
                    let request = protocol::corp_token_request(base, &suite_token, appid, secret);
                    self.service_call(trigger, &request, protocol::CORP_TOKEN_FIELD)
                        .await
                };
                self.healing_suite_token(&suite_id, suite_token, |o| o.0.as_ref().err(), call)
                    .await
            }
            _ => {
                let request = protocol::provider_token_request(base, appid, secret);
                self.service_call(trigger, &request, protocol::PROVIDER_TOKEN_FIELD)
                    .await
            }
        }
    }

    /// A corporation's call made with its suite's token: a token WeCom refuses is replaced
    /// once (for everyone), and the call sent again.
    async fn healing_suite_token<R, Call, Sent>(
        &self,
        suite_id: &str,
        mut suite_token: String,
        failure_of: impl Fn(&R) -> Option<&UpstreamFailure>,
        call: Call,
    ) -> R
    where
        Call: Fn(String) -> Sent,
        Sent: std::future::Future<Output = R>,
    {
        let mut healed = false;
        loop {
            let outcome = call(suite_token.clone()).await;
            if healed || !failure_of(&outcome).is_some_and(suite_token_rejected) {
                return outcome;
            }
            healed = true;
            let stale = Trigger::Rejected {
                stale_token: suite_token.clone(),
            };
            match object_client::access_token(&self.env, suite_id, stale).await {
                Ok(fresh) if fresh != suite_token => suite_token = fresh,
                _ => return outcome,
            }
        }
    }

    /// A corporation: what it authorized (`v2/get_auth_info`: its name and the suite's app
    /// in it, whose `agentid` its calls name), read once it is registered and again after a
    /// `change_auth`. A read that fails is tried again by a later cron visit or alarm, at
    /// most every [`AUTH_INFO_RETRY_SECS`]; none while its permanent code is refused.
    pub(super) async fn refresh_auth_info(&self) {
        if self.account.api != TokenApi::WeComCorp || self.automatic_blocked() {
            return;
        }
        let now = now_secs();
        {
            let platform = self.state.platform.borrow();
            let wanted = platform.auth_info.is_none() || platform.auth_info_stale;
            let tried_lately = platform
                .auth_info_tried_at
                .is_some_and(|at| now < at + AUTH_INFO_RETRY_SECS);
            if !wanted || tried_lately {
                return;
            }
        }
        self.state.platform.borrow_mut().auth_info_tried_at = Some(now);
        let outcome = self.read_auth_info().await;
        if let Ok(info) = &outcome {
            let mut platform = self.state.platform.borrow_mut();
            platform.auth_info = Some(info.clone());
            platform.auth_info_stale = false;
        }
        self.persist(None).await;
        log_event(json!({
            "event": "wecom_auth_info",
            "account": self.account.id,
            "agents": outcome.as_ref().ok().map(|info| info.agents.len()),
            "outcome": outcome.as_ref().map_or_else(|e| e.code().to_owned(), |_| "ok".into()),
            "wechat_rid": outcome.as_ref().err().and_then(AppError::rid),
        }));
    }

    async fn read_auth_info(&self) -> Result<AuthInfo, AppError> {
        let Some(PlatformGrant::Corp {
            suite_id,
            suite_token,
        }) = self.wecom_service_grant().await?
        else {
            return Err(AppError::Internal("not a corporation".into()));
        };
        let base = &self.settings.wecom_api_base;
        let (corpid, permanent_code) = (&self.account.appid, &self.account.secret);
        let budget_ms = self.settings.upstream_timeout_ms;
        let call = |suite_token: String| async move {
            let request = protocol::auth_info_request(base, &suite_token, corpid, permanent_code);
            let (status, body) =
                upstream::platform_call(&self.settings, &request, budget_ms).await?;
            protocol::parse_auth_info(status, &body, &request.sensitive)
        };
        self.healing_suite_token(&suite_id, suite_token, |o| o.as_ref().err(), call)
            .await
            .map_err(AppError::Upstream)
    }

    /// A corporation's `change_auth`: its auth info is read again, after WeCom's `success`.
    /// The mark is stored first, so that a lost read is tried again.
    pub async fn auth_changed(&self) -> Result<(), AppError> {
        if self.account.api != TokenApi::WeComCorp {
            return Err(AppError::BadRequest("not a WeCom corporation".into()));
        }
        {
            let mut platform = self.state.platform.borrow_mut();
            platform.auth_info_stale = true;
            platform.auth_info_tried_at = None;
        }
        self.persist_push(None).await?;
        let ctx = self.clone();
        self.object
            .wait_until(async move { ctx.refresh_auth_info().await });
        Ok(())
    }

    async fn service_call(
        &self,
        trigger: &'static str,
        request: &PlatformRequest,
        field: &'static str,
    ) -> (Result<Issued, UpstreamFailure>, bool) {
        self.call_upstream(
            CredentialKind::Token,
            trigger,
            Sending::Retried,
            |budget_ms| async move {
                let (status, body) =
                    upstream::platform_call(&self.settings, request, budget_ms).await?;
                protocol::parse_token(status, &body, &request.sensitive, field)
            },
        )
        .await
    }

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
        let before = self.state.platform.borrow().clone();
        let taken = take_auth_code(&mut self.state.platform.borrow_mut(), &code, created_at);
        if !taken {
            log_event(
                json!({ "event": "wecom_auth_code_received", "suite": self.account.id, "stored": false }),
            );
            return Ok(());
        }
        if let Err(e) = self.persist_push(None).await {
            let mut platform = self.state.platform.borrow_mut();
            platform.auth_codes = before.auth_codes;
            platform.recent_codes = before.recent_codes;
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

    /// Exchanges each pending code once (`v2/get_permanent_code`), and registers the
    /// corporation it names. A code leaves storage just before it is sent: single-use, it is
    /// never sent twice, not even after an eviction mid-exchange; refused before WeCom read it
    /// (no suite token, or one WeCom rejects), it goes back. Waiting codes are tried again
    /// with the next ticket and by the cron.
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
                if suite_token_rejected(failure) {
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
                Err(failure) => Some(Err(AppError::Upstream(failure))),
            };
            // None: a cron's run registered the kept code first, and logged it.
            if let Some(outcome) = outcome {
                self.log_authorized(&outcome, false);
            }
        }
    }

    fn log_authorized(&self, outcome: &Result<String, AppError>, kept_before: bool) {
        log_event(json!({
            "event": "wecom_corp_authorized",
            "suite": self.account.id,
            "account": outcome.as_ref().ok(),
            "outcome": outcome.as_ref().map_or_else(|e| e.code().to_owned(), |_| "ok".into()),
            "wechat_rid": outcome.as_ref().err().and_then(AppError::rid),
            "kept_before": kept_before,
        }));
    }

    /// WeCom gives a permanent code once: it is kept, sealed, in the suite's storage until its
    /// corporation is registered, so that a registration that fails (the registry out of
    /// reach) is tried again by the cron rather than lost. None: as for [`Self::register_kept`].
    async fn keep_and_register(
        &self,
        authorized: protocol::Authorized,
        created_at: u64,
    ) -> Option<Result<String, AppError>> {
        if !is_identifier(&authorized.corpid) {
            return Some(Err(AppError::Upstream(UpstreamFailure::BadResponse {
                detail: "auth_corp_info.corpid is not letters, digits, '_' and '-'".into(),
            })));
        }
        let id = corp_account_id(&self.account.id, &authorized.corpid);
        let nonce = runtime::random_bytes::<NONCE_BYTES>();
        let ring = match runtime::key_ring(&self.env) {
            Ok(ring) => ring,
            Err(e) => return Some(Err(e)),
        };
        let sealed = ring.seal(&id, &authorized.permanent_code, nonce);
        self.state
            .platform
            .borrow_mut()
            .exchanged
            .push(ExchangedCode {
                corpid: authorized.corpid.clone(),
                sealed_permanent_code: sealed,
                created_at,
            });
        self.persist(None).await;
        self.register_kept(&authorized, created_at).await
    }

    /// The kept codes whose registration failed before, registered again (the cron's run).
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
                        None => continue, // registered meanwhile by the run that kept it
                    }
                }
                Err(e) => Err(e),
            };
            self.log_authorized(&outcome, true);
        }
    }

    /// Registers a kept code's corporation unless a withdrawal pushed after its authorization
    /// came first (the code waited for its exchange meanwhile); None if the code is no longer
    /// kept (another run registered it). The code leaves the suite's storage unless the
    /// failure is one a later try may not meet (5xx). One corporation at a time: a withdrawal
    /// of the same corporation waits until the registration is done, and the other way round.
    async fn register_kept(
        &self,
        authorized: &protocol::Authorized,
        created_at: u64,
    ) -> Option<Result<String, AppError>> {
        let outcome = {
            let _changing = self.state.corp_changes.lock().await;
            let corpid = &authorized.corpid;
            let is_this =
                |e: &ExchangedCode| (e.corpid.as_str(), e.created_at) == (corpid, created_at);
            if !self.state.platform.borrow().exchanged.iter().any(is_this) {
                return None;
            }
            let admitted =
                admit_authorization(&mut self.state.platform.borrow_mut(), corpid, created_at);
            let outcome = match admitted {
                true => {
                    self.persist(None).await;
                    let suite = &self.account.id;
                    wecom_corps::register(&self.env, &self.settings, suite, authorized).await
                }
                false => Err(AppError::Conflict(
                    "withdrawn after this authorization was pushed: not registered".into(),
                )),
            };
            if !outcome.as_ref().is_err_and(|e| e.status() >= 500) {
                let is_not_this = |e: &ExchangedCode| !is_this(e);
                self.state
                    .platform
                    .borrow_mut()
                    .exchanged
                    .retain(is_not_this);
            }
            self.persist(None).await;
            outcome
        };
        // Its first token, its auth info and its alarm, once the registration is done; a
        // failure is the corporation's to report.
        if let Ok(id) = &outcome {
            let _ = object_client::cron(&self.env, id).await;
        }
        Some(outcome)
    }

    /// A corporation's `cancel_auth` pushed at `created_at`, in WeCom's order: one older than
    /// the authorization acted on (a late retry) changes nothing; otherwise it is stored
    /// (before the answer: an authorization pushed before it never registers the corporation
    /// again) and the corporation's account, tokens and permanent code go. One already done is
    /// finished again (a removal that failed half-way); an account of that id an operator
    /// registered is left alone.
    pub async fn corp_withdrawn(&self, corpid: &str, created_at: u64) -> Result<Value, AppError> {
        let _changing = self.state.corp_changes.lock().await;
        let before = self.state.platform.borrow().corp_pushes.clone();
        if !admit_withdrawal(&mut self.state.platform.borrow_mut(), corpid, created_at) {
            return Ok(json!({ "in_order": false, "removed": false }));
        }
        if let Err(e) = self.persist_push(None).await {
            self.state.platform.borrow_mut().corp_pushes = before;
            return Err(e);
        }
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
