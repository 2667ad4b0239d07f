//! The token calls of a WeCom service provider's objects: a suite's (with its latest suite
//! ticket, valid 30 minutes), the provider's own, and a corporation's (with its suite's token
//! and its permanent code). A suite's corporations: `wecom_corps`; their auth info:
//! `wecom_auth_info`.

use super::calls::Sending;
use super::platform::PlatformGrant;
use super::AccountCtx;
use crate::edge::adapters::runtime::now_secs;
use crate::edge::adapters::upstream;
use crate::edge::objects::object_client;
use crate::error::{wechat_codes, AppError, UpstreamFailure};
use crate::policy::accounts::TokenApi;
use crate::policy::ledger::CredentialKind;
use crate::policy::refresh::Trigger;
use crate::policy::wecom_provider::{suite_of, usable_suite_ticket};
use crate::wechat::api::Issued;
use crate::wechat::platform::PlatformRequest;
use crate::wechat::wecom_service as protocol;

/// WeCom's "this suite_access_token is not (or no longer) valid".
pub(super) fn suite_token_rejected(failure: &UpstreamFailure) -> bool {
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
    pub(super) async fn healing_suite_token<R, Call, Sent>(
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
            match object_client::replacement_token(&self.env, suite_id, &suite_token).await {
                Some(fresh) => suite_token = fresh,
                None => return outcome,
            }
        }
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
}
