//! The token calls of a WeCom service provider's objects: a suite's (with its latest suite
//! ticket, valid 30 minutes) and the provider's own.

use super::calls::Sending;
use super::platform::PlatformGrant;
use super::AccountCtx;
use crate::edge::adapters::runtime::now_secs;
use crate::edge::adapters::upstream;
use crate::error::{wechat_codes, AppError, UpstreamFailure};
use crate::policy::accounts::TokenApi;
use crate::policy::ledger::CredentialKind;
use crate::policy::wecom_provider::usable_suite_ticket;
use crate::wechat::api::Issued;
use crate::wechat::wecom_service as protocol;

impl AccountCtx {
    /// A suite without a ticket younger than 30 minutes calls nothing: WeCom would refuse it.
    pub(super) fn wecom_service_grant(&self) -> Result<Option<PlatformGrant>, AppError> {
        if self.account.api == TokenApi::WeComProvider {
            return Ok(Some(PlatformGrant::Provider));
        }
        let platform = self.state.platform.borrow();
        match usable_suite_ticket(&platform, now_secs()) {
            Some(ticket) => Ok(Some(PlatformGrant::SuiteTicket(ticket.to_owned()))),
            None => Err(AppError::NoSuiteTicket),
        }
    }

    /// `get_suite_token` or `get_provider_token`, with `call_upstream`'s retries. A suite
    /// ticket WeCom refuses (40085) is dropped: the next push brings one WeCom takes, and
    /// until then nothing is sent.
    pub(super) async fn call_wecom_service(
        &self,
        trigger: &'static str,
        grant: PlatformGrant,
    ) -> (Result<Issued, UpstreamFailure>, bool) {
        let base = &self.settings.wecom_api_base;
        let (request, parse): (_, fn(u16, &str, &[String]) -> _) = match &grant {
            PlatformGrant::SuiteTicket(ticket) => (
                protocol::suite_token_request(
                    base,
                    &self.account.appid,
                    &self.account.secret,
                    ticket,
                ),
                protocol::parse_suite_token,
            ),
            _ => (
                protocol::provider_token_request(base, &self.account.appid, &self.account.secret),
                protocol::parse_provider_token,
            ),
        };
        let outcome = self
            .call_upstream(
                CredentialKind::Token,
                trigger,
                Sending::Retried,
                |budget_ms| {
                    let request = &request;
                    async move {
                        let (status, body) =
                            upstream::platform_call(&self.settings, request, budget_ms).await?;
                        parse(status, &body, &request.sensitive)
                    }
                },
            )
            .await;
        if let (Err(UpstreamFailure::WeChat { errcode, .. }), PlatformGrant::SuiteTicket(sent)) =
            (&outcome.0, &grant)
        {
            let mut platform = self.state.platform.borrow_mut();
            let still_current = platform
                .verify_ticket
                .as_ref()
                .is_some_and(|t| &t.ticket == sent);
            if *errcode == wechat_codes::SUITE_TICKET_INVALID && still_current {
                platform.verify_ticket = None;
            }
        }
        outcome
    }
}
