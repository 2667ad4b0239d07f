//! The token calls of the platform's objects: the component's (with the latest verify ticket)
//! and an authorizer's (with the component token and its refresh token, or the code of a new
//! authorization), and what they need around them: asking WeChat to push a ticket again,
//! healing a rejected component token, and recovering a refresh token from the authorizer
//! list once before telling the operator the account must authorize again.
//!
//! Over 400 lines: the component's and an authorizer's grants share the healing of the
//! component token, the missing-grant records and the hourly list lookup.

use super::calls::Sending;
use super::AccountCtx;
use crate::edge::adapters::runtime::{log_event, now_secs};
use crate::edge::adapters::upstream;
use crate::edge::objects::object_client;
use crate::error::{outcome_code, wechat_codes, AppError, UpstreamFailure};
use crate::policy::accounts::TokenApi;
use crate::policy::fingerprint::fingerprint;
use crate::policy::ledger::CredentialKind;
use crate::policy::platform::VerifyTicket;
use crate::policy::refresh::Trigger;
use crate::wechat::api::Issued;
use crate::wechat::platform::{self as protocol, AuthorizerGrant};
use serde_json::json;

/// What a platform account's token call is made with.
pub(super) enum PlatformGrant {
    /// The component: its latest verify ticket.
    VerifyTicket(String),
    /// A WeCom suite: its latest suite ticket.
    SuiteTicket(String),
    /// The WeCom service provider: its configuration is all it needs.
    Provider,
    /// A WeCom corporation: its suite's token (its permanent code is its secret).
    Corp {
        suite_id: String,
        suite_token: String,
    },
    /// An authorizer: the component's token, and its refresh token or an authorization code.
    Authorizer {
        component_id: String,
        component_token: String,
        refresh_token: Option<String>,
        code: Option<String>,
    },
}

impl PlatformGrant {
    /// The authorization code the call exchanges, if it is one.
    pub(super) fn code(&self) -> Option<&str> {
        match self {
            Self::Authorizer {
                code: Some(code), ..
            } => Some(code),
            _ => None,
        }
    }
}

impl AccountCtx {
    /// What the token call needs besides the configuration, for the platform's accounts (None
    /// for the others). Nothing to call with is an answer at once, with no call to WeChat.
    pub(super) async fn platform_grant(&self) -> Result<Option<PlatformGrant>, AppError> {
        match self.account.api {
            TokenApi::Component => {
                let ticket = self
                    .state
                    .platform
                    .borrow()
                    .usable_ticket(now_secs())
                    .map(str::to_owned);
                match ticket {
                    Some(ticket) => Ok(Some(PlatformGrant::VerifyTicket(ticket))),
                    None => {
                        self.request_push().await;
                        Err(AppError::NoVerifyTicket)
                    }
                }
            }
            TokenApi::Authorizer => {
                let component_id = self.component_appid()?.to_owned();
                let component_token =
                    object_client::access_token(&self.env, &component_id, Trigger::Read).await?;
                // A code is single-use: taken out of what is stored before it is sent (the
                // token call's marker is stored next, with it gone), so that not even an
                // eviction mid-exchange sends it twice.
                let (mut refresh_token, code) = {
                    let mut platform = self.state.platform.borrow_mut();
                    (
                        platform.refresh_token.clone(),
                        platform.authorization_code.take(),
                    )
                };
                // Looked up at most hourly: an authorizer that lost its refresh token would
                // otherwise page through the list on every read.
                let lookup_due = self.state.platform.borrow().refresh_lookup_due(now_secs());
                if refresh_token.is_none() && code.is_none() && lookup_due {
                    refresh_token = self.recover_refresh_token(&component_token).await;
                }
                if refresh_token.is_none() && code.is_none() {
                    return Err(AppError::NoRefreshToken);
                }
                Ok(Some(PlatformGrant::Authorizer {
                    component_id,
                    component_token,
                    refresh_token,
                    code,
                }))
            }
            TokenApi::WeComSuite | TokenApi::WeComProvider | TokenApi::WeComCorp => {
                self.wecom_service_grant().await
            }
            _ => Ok(None),
        }
    }

    /// The platform account's token call (with `call_upstream`'s retries), healing what the
    /// platform allows: a rejected component token (refreshed once, the call sent again),
    /// and a refused refresh token (looked up once in the authorizer list).
    pub(super) async fn call_platform(
        &self,
        trigger: &'static str,
        grant: PlatformGrant,
    ) -> (Result<Issued, UpstreamFailure>, bool) {
        match grant {
            PlatformGrant::SuiteTicket(_)
            | PlatformGrant::Provider
            | PlatformGrant::Corp { .. } => self.call_wecom_service(trigger, grant).await,
            PlatformGrant::VerifyTicket(ticket) => {
                let component = &self.account;
                let request = protocol::component_token_request(
                    &self.settings.api_base,
                    &component.appid,
                    &component.secret,
                    &ticket,
                );
                let outcome = self
                    .call_upstream(
                        CredentialKind::Token,
                        trigger,
                        Sending::Retried,
                        |budget_ms| {
                            let request = &request;
                            async move {
                                let (status, body) =
                                    upstream::platform_call(&self.settings, request, budget_ms)
                                        .await?;
                                protocol::parse_component_token(status, &body, &request.sensitive)
                            }
                        },
                    )
                    .await;
                if let Err(UpstreamFailure::WeChat { errcode, .. }) = &outcome.0 {
                    if matches!(
                        *errcode,
                        wechat_codes::VERIFY_TICKET_EXPIRED | wechat_codes::VERIFY_TICKET_INVALID
                    ) {
                        self.request_push().await;
                    }
                }
                outcome
            }
            PlatformGrant::Authorizer {
                component_id,
                mut component_token,
                mut refresh_token,
                code,
            } => {
                // A pending code is single-use: exchanged once, whatever WeChat answers (a
                // newer one pushed meanwhile waits for its own turn).
                if let Some(code) = code {
                    let grant = AuthorizerGrant::AuthorizationCode(&code);
                    let outcome = self.authorizer_call(trigger, &component_token, grant).await;
                    if outcome.0.is_ok() {
                        self.state.platform.borrow_mut().authorized_at = Some(now_secs());
                    }
                    // A failed exchange falls back to the refresh token, if there is one.
                    if outcome.0.is_ok() || refresh_token.is_none() {
                        return self.keep_refresh_token(outcome);
                    }
                }
                let mut healed = false;
                let mut recovered = false;
                // After a failed exchange, `refresh_token` is the one stored before.
                while let Some(current) = refresh_token.clone() {
                    let grant = AuthorizerGrant::RefreshToken(&current);
                    let outcome = self.authorizer_call(trigger, &component_token, grant).await;
                    let errcode = match &outcome.0 {
                        Err(UpstreamFailure::WeChat { errcode, .. }) => Some(*errcode),
                        _ => None,
                    };
                    match errcode {
                        Some(code) if wechat_codes::is_token_rejected(code) && !healed => {
                            healed = true;
                            let env = &self.env;
                            match object_client::replacement_token(
                                env,
                                &component_id,
                                &component_token,
                            )
                            .await
                            {
                                Some(fresh) => component_token = fresh,
                                None => return outcome,
                            }
                        }
                        // At most hourly, however many clients read a dead authorizer.
                        Some(wechat_codes::REFRESH_TOKEN_INVALID)
                            if !recovered
                                && self.state.platform.borrow().refresh_lookup_due(now_secs()) =>
                        {
                            recovered = true;
                            match self.recover_refresh_token(&component_token).await {
                                Some(listed) if Some(&listed) != refresh_token.as_ref() => {
                                    refresh_token = Some(listed);
                                }
                                _ => return outcome,
                            }
                        }
                        _ => return self.keep_refresh_token(outcome),
                    }
                }
                unreachable!("the loop returns while a refresh token is known")
            }
        }
    }

    async fn authorizer_call(
        &self,
        trigger: &'static str,
        component_token: &str,
        grant: AuthorizerGrant<'_>,
    ) -> (Result<Issued, UpstreamFailure>, bool) {
        let component_appid = self.component_appid().unwrap_or_default();
        let request = protocol::authorizer_token_request(
            &self.settings.api_base,
            component_appid,
            component_token,
            &self.account.appid,
            grant,
        );
        // A code is single-use: never sent twice, even after a lost answer.
        let sending = match grant {
            AuthorizerGrant::AuthorizationCode(_) => Sending::Once,
            AuthorizerGrant::RefreshToken(_) => Sending::Retried,
        };
        self.call_upstream(CredentialKind::Token, trigger, sending, |budget_ms| {
            let request = &request;
            async move {
                let (status, body) =
                    upstream::platform_call(&self.settings, request, budget_ms).await?;
                let sensitive = &request.sensitive;
                protocol::parse_authorizer_token(
                    status,
                    &body,
                    sensitive,
                    grant,
                    &self.account.appid,
                )
            }
        })
        .await
    }

    /// A refresh token in WeChat's answer replaces the stored one (stored with the token).
    fn keep_refresh_token(
        &self,
        outcome: (Result<Issued, UpstreamFailure>, bool),
    ) -> (Result<Issued, UpstreamFailure>, bool) {
        if let Ok(Issued {
            refresh_token: Some(fresh),
            ..
        }) = &outcome.0
        {
            self.state.platform.borrow_mut().refresh_token = Some(fresh.clone());
        }
        outcome
    }

    /// The authorizer's refresh token as `api_get_authorizer_list` shows it (stored if found),
    /// page by page.
    async fn recover_refresh_token(&self, component_token: &str) -> Option<String> {
        let component_appid = self.component_appid().ok()?.to_owned();
        self.state.platform.borrow_mut().refresh_lookup_at = Some(now_secs());
        let mut offset = 0;
        let found = loop {
            let request = protocol::authorizer_list_request(
                &self.settings.api_base,
                &component_appid,
                component_token,
                offset,
            );
            let budget_ms = self.settings.upstream_timeout_ms;
            let answer = upstream::platform_call(&self.settings, &request, budget_ms).await;
            let page = answer.and_then(|(status, body)| {
                let sensitive = &request.sensitive;
                protocol::find_in_authorizer_list(status, &body, sensitive, &self.account.appid)
            });
            match page {
                Ok((Some(found), _, _)) => break Some(found),
                Ok((None, rows, total)) if rows > 0 && offset + rows < total => offset += rows,
                _ => break None,
            }
        };
        log_event(json!({
            "event": "authorizer_refresh_token_lookup",
            "account": self.account.id,
            "found": found.is_some(),
        }));
        if let Some(found) = &found {
            self.state.platform.borrow_mut().refresh_token = Some(found.clone());
        }
        self.persist(None).await;
        found
    }

    /// Asks WeChat to push a verify ticket now, at most once an hour.
    async fn request_push(&self) {
        let now = now_secs();
        if !self.state.platform.borrow().push_request_due(now) {
            return;
        }
        self.state.platform.borrow_mut().push_requested_at = Some(now);
        self.persist(None).await;
        let component = &self.account;
        let request = protocol::start_push_request(
            &self.settings.api_base,
            &component.appid,
            &component.secret,
        );
        let budget_ms = self.settings.upstream_timeout_ms;
        let outcome = upstream::platform_call(&self.settings, &request, budget_ms)
            .await
            .and_then(|(status, body)| {
                crate::wechat::api::parse_answer(status, &body, "").map(drop)
            });
        log_event(json!({
            "event": "verify_ticket_push_requested",
            "account": self.account.id,
            "outcome": outcome.as_ref().map_or_else(|e| AppError::Upstream(e.clone()).code().to_owned(), |_| "ok".into()),
            "wechat_rid": outcome.as_ref().err().and_then(UpstreamFailure::rid),
        }));
    }

    /// The component's object: a verify ticket WeChat pushed (`created_at`: its CreateTime),
    /// stored before WeChat hears `success`; an older one than the stored one (a replay) is
    /// ignored. Without a token yet, one is fetched with it at once.
    pub async fn receive_verify_ticket(
        &self,
        ticket: String,
        created_at: u64,
    ) -> Result<(), AppError> {
        let now = now_secs();
        // A CreateTime from the future (a wrong clock) counts as now.
        let created_at = if created_at == 0 || created_at > now {
            now
        } else {
            created_at
        };
        let before = self.state.platform.borrow().verify_ticket.clone();
        let newer = {
            let mut platform = self.state.platform.borrow_mut();
            // The same ticket again is a retry or a replay: it changes nothing (its window
            // counts from when it first arrived).
            let newer = platform.verify_ticket.as_ref().is_none_or(|stored| {
                created_at > stored.created_at
                    || (created_at == stored.created_at && ticket != stored.ticket)
            });
            if newer {
                platform.verify_ticket = Some(VerifyTicket {
                    ticket,
                    received_at: now,
                    created_at,
                });
            }
            newer
        };
        let event = match self.account.api {
            TokenApi::WeComSuite => "suite_ticket_received",
            _ => "verify_ticket_received",
        };
        let log = |stored: bool| {
            log_event(json!({ "event": event, "account": self.account.id, "stored": stored }));
        };
        if !newer {
            log(false);
            return Ok(());
        }
        // A failure for want of a ticket is over: the token is fetched at once, not after
        // the backoff it earned.
        {
            let mut token = self.state.token.state.borrow_mut();
            let ticket_refused = token.last_attempt.as_ref().is_some_and(|a| {
                matches!(&a.failure, Some(UpstreamFailure::WeChat { errcode, .. })
                    if matches!(*errcode, wechat_codes::VERIFY_TICKET_EXPIRED
                        | wechat_codes::VERIFY_TICKET_INVALID
                        | wechat_codes::SUITE_TICKET_INVALID))
            });
            if ticket_refused {
                token.last_attempt = None;
            }
        }
        if let Err(e) = self.persist_push(Some(CredentialKind::Token)).await {
            // Not stored: the push's retry is taken afresh.
            self.state.platform.borrow_mut().verify_ticket = before;
            return Err(e);
        }
        log(true);
        let usable = self
            .state
            .token
            .record()
            .is_some_and(|r| r.expires_at > now);
        let ctx = self.clone();
        self.object.wait_until(async move {
            if !usable {
                let _ = ctx.token(&Trigger::Background).await;
            }
            // A suite's codes that waited for a ticket.
            ctx.exchange_auth_codes().await;
        });
        Ok(())
    }

    /// An authorizer's object: the code of a new (or changed) authorization, stored before
    /// WeChat hears `success`, then exchanged in the background for its token and refresh
    /// token.
    pub async fn authorize(&self, code: String, created_at: u64) -> Result<(), AppError> {
        if self.account.api == TokenApi::WeComSuite {
            return self.receive_auth_code(code, created_at).await;
        }
        let code_fingerprint = fingerprint(&code);
        let before = {
            let platform = self.state.platform.borrow();
            (
                platform.authorization_code.clone(),
                platform.last_code_fingerprint.clone(),
                platform.authorization_pushed_at,
            )
        };
        {
            let mut platform = self.state.platform.borrow_mut();
            // WeChat's retry of a push already stored: its code is taken, or spent.
            if platform.last_code_fingerprint.as_deref() == Some(code_fingerprint.as_str()) {
                return Ok(());
            }
            platform.authorization_code = Some(code.clone());
            platform.last_code_fingerprint = Some(code_fingerprint);
            platform.authorization_pushed_at = Some(created_at);
        }
        // Not stored: WeChat's retry is taken afresh.
        if let Err(e) = self.persist_push(None).await {
            // Undone unless a refresh took the code meanwhile (then it is spent, and WeChat's
            // retry must find it known).
            let mut platform = self.state.platform.borrow_mut();
            if platform.authorization_code.as_deref() == Some(code.as_str()) {
                (
                    platform.authorization_code,
                    platform.last_code_fingerprint,
                    platform.authorization_pushed_at,
                ) = before;
            }
            return Err(e);
        }
        let ctx = self.clone();
        self.object.wait_until(async move {
            // A refresh already under way does not carry this code: then once more.
            for _ in 0..2 {
                let exchanged = ctx.refresh_token("authorization", false).await;
                ctx.sync_kv(CredentialKind::Token).await;
                let pending = ctx.state.platform.borrow().authorization_code.clone();
                if pending.as_deref() != Some(code.as_str()) {
                    log_event(json!({
                        "event": "authorizer_authorized",
                        "account": ctx.account.id,
                        "outcome": outcome_code(&exchanged),
                        "wechat_rid": exchanged.as_ref().err().and_then(AppError::rid),
                    }));
                    return;
                }
            }
        });
        Ok(())
    }

    /// An authorizer imported from WeChat's authorizer list (it authorized before this
    /// deployment): the refresh token the list shows replaces the stored one, and its first
    /// token is fetched in the background.
    pub async fn adopt(&self, refresh_token: String) -> Result<(), AppError> {
        let changed = {
            let mut platform = self.state.platform.borrow_mut();
            let changed = platform.refresh_token.as_deref() != Some(refresh_token.as_str());
            platform.refresh_token = Some(refresh_token);
            changed
        };
        if !changed {
            return Ok(());
        }
        // A refused refresh token stopped automatic refreshes; this one has not been refused.
        self.state.ledger.borrow_mut().blocked_config = None;
        self.persist_checked(None).await?;
        let ctx = self.clone();
        self.object.wait_until(async move {
            let _ = ctx.token(&Trigger::Background).await;
        });
        Ok(())
    }

    /// The platform's appid, which an authorizer's calls name.
    fn component_appid(&self) -> Result<&str, AppError> {
        Ok(self.settings.component_account()?.appid.as_str())
    }

    /// What `/status` shows of the platform's objects: the verify ticket's age, or when the
    /// authorizer authorized and whether a refresh token is kept. Never the values.
    pub(super) fn platform_status(&self, entry: &mut serde_json::Value) {
        let platform = self.state.platform.borrow();
        match self.account.api {
            TokenApi::Component | TokenApi::WeComSuite => {
                // Its age is added when read (`status::as_of`): the summary changes only
                // with a new ticket.
                let name = match self.account.api {
                    TokenApi::Component => "verify_ticket",
                    _ => "suite_ticket",
                };
                entry[name] = json!(platform.verify_ticket.as_ref().map(|t| json!({
                    "received_at": t.received_at,
                    "created_at": t.issued_at(),
                })));
            }
            TokenApi::Authorizer => {
                entry["authorized_at"] = json!(platform.authorized_at);
                entry["refresh_token_stored"] = json!(platform.refresh_token.is_some());
            }
            // WeCom refused this permanent code (40084): automatic refreshes wait for a new one.
            TokenApi::WeComCorp => {
                let state = if self.automatic_blocked() {
                    "refused"
                } else {
                    "kept"
                };
                entry["permanent_code"] = json!(state);
                // What it authorized: the `agentid` of the suite's app in it, its name.
                let info = platform.auth_info.as_ref();
                entry["corp_name"] = json!(info.map(|i| &i.corp_name));
                entry["agents"] = json!(info.map(|i| &i.agents));
            }
            _ => {}
        }
    }
}
