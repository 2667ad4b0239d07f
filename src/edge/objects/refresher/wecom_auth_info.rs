//! What a WeCom corporation authorized (`v2/get_auth_info`): its name and the suite's app in
//! it, whose `agentid` `wx.agentConfig` and its message calls name. Read by the corporation's
//! object once it is registered, again with each new permanent code, and after a
//! `change_auth`; kept in its storage.

use super::platform::PlatformGrant;
use super::AccountCtx;
use crate::edge::adapters::runtime::{log_event, now_secs};
use crate::edge::adapters::upstream;
use crate::error::{outcome_code, AppError};
use crate::policy::accounts::TokenApi;
use crate::policy::fingerprint::fingerprint;
use crate::policy::platform::AuthInfo;
use crate::wechat::wecom_service as protocol;
use serde_json::json;

/// How long a corporation's auth info that could not be read waits before it is asked again.
const AUTH_INFO_RETRY_SECS: u64 = 600;

impl AccountCtx {
    /// Reads the auth info if it is missing, marked stale, or read with another permanent
    /// code. A read that fails is tried again by a later cron visit or alarm, at most every
    /// [`AUTH_INFO_RETRY_SECS`]; none while the permanent code is refused. A read overtaken by
    /// a newer `change_auth` writes nothing and is made again at once.
    pub(super) async fn refresh_auth_info(&self) {
        if self.account.api != TokenApi::WeComCorp || self.automatic_blocked() {
            return;
        }
        let code = fingerprint(&self.account.secret);
        let now = now_secs();
        {
            let platform = self.state.platform.borrow();
            let wanted = platform.auth_info.is_none()
                || platform.auth_info_stale
                || platform.auth_info_code.as_deref() != Some(code.as_str());
            let tried_lately = platform
                .auth_info_tried_at
                .is_some_and(|at| now < at + AUTH_INFO_RETRY_SECS);
            if !wanted || tried_lately {
                return;
            }
        }
        self.state.platform.borrow_mut().auth_info_tried_at = Some(now);
        // Bounded: each further round is one more `change_auth` pushed during the read.
        for _ in 0..3 {
            let asked = self.state.auth_info_asks.get();
            let outcome = self.read_auth_info().await;
            let overtaken = self.state.auth_info_asks.get() != asked;
            if let (Ok(info), false) = (&outcome, overtaken) {
                let mut platform = self.state.platform.borrow_mut();
                platform.auth_info = Some(info.clone());
                platform.auth_info_code = Some(code.clone());
                platform.auth_info_stale = false;
                // Only failed reads wait before the next.
                platform.auth_info_tried_at = None;
            }
            self.persist(None).await;
            log_event(json!({
                "event": "wecom_auth_info",
                "account": self.account.id,
                "agents": outcome.as_ref().ok().map(|info| info.agents.len()),
                "outcome": outcome_code(&outcome),
                "overtaken": overtaken,
                "wechat_rid": outcome.as_ref().err().and_then(AppError::rid),
            }));
            if !overtaken {
                break;
            }
        }
        // Read after the call that asked for it was answered: /status learns of it now.
        self.arm_due().await;
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
        // Marked, and a read under way told it is overtaken, before anything awaits. A mark
        // whose write fails stays in memory (one more read, no harm): WeCom pushes again.
        {
            let mut platform = self.state.platform.borrow_mut();
            platform.auth_info_stale = true;
            platform.auth_info_tried_at = None;
        }
        self.state
            .auth_info_asks
            .set(self.state.auth_info_asks.get() + 1);
        self.persist_push(None).await?;
        let ctx = self.clone();
        self.object
            .wait_until(async move { ctx.refresh_auth_info().await });
        Ok(())
    }
}
