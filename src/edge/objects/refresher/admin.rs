//! What the admin API asks of an account's object: lift its pauses, clear its quotas with
//! WeChat, or erase it.

use super::state::{storage_key, PLATFORM_KEY};
use super::AccountCtx;
use crate::edge::adapters::faults;
use crate::edge::adapters::kv_cache;
use crate::edge::adapters::runtime;
use crate::edge::adapters::upstream;
use crate::error::{outcome_code, wechat_codes, AppError, UpstreamFailure};
use crate::policy::accounts::TokenApi;
use crate::policy::ledger::{CredentialKind, CredentialState, Usage};
use crate::policy::platform::{AuthorizationPush, PlatformState};
use crate::policy::quota;
use crate::policy::token::TokenRecord;
use crate::wechat::openapi;
use serde_json::{json, Value};
use worker::{Env, State};

impl AccountCtx {
    /// Clears the quota pause (WeChat's 45009, after its `clear_quota`) and the credential
    /// block (a secret WeChat refused, since unfrozen), so automatic refreshes resume.
    pub async fn reset(&self) {
        let now = runtime::now_secs();
        self.state.ledger.borrow_mut().blocked_config = None;
        let lift = |usage: &mut Usage| {
            usage.quota_error_at = None;
            // Our own count of today's calls pauses too: WeChat's count starts again.
            usage.calls.reset(now);
        };
        lift(&mut self.state.token.state.borrow_mut().usage);
        for kind in crate::policy::ticket::TicketKind::ALL {
            lift(&mut self.state.ticket(kind).state.borrow_mut().usage);
        }
        for which in CredentialKind::ALL {
            self.persist(Some(which)).await;
        }
        runtime::log_event(json!({ "event": "account_reset", "account": self.account.id }));
    }

    /// Asks WeChat to clear the account's quotas with its appsecret (one of the month's 10,
    /// counted here, so that the 11th is refused without a call), then lifts the pause as
    /// [`reset`](Self::reset) does. Answers the clears left this month.
    pub async fn clear_quota(&self) -> Result<Value, AppError> {
        let now = runtime::now_secs();
        let component = match self.account.api {
            TokenApi::Authorizer => Some(self.settings.component_account()?),
            _ => None,
        };
        // Never a WeCom secret to WeChat.
        if self.account.kind.is_wecom() {
            return Err(AppError::BadRequest(
                "WeCom has no quota clear; WeCom's limits reset on their own".into(),
            ));
        }
        let taken = self.state.ledger.borrow_mut().quota_clears.take(now);
        if let Err(retry_after_secs) = taken {
            return Err(AppError::ClearQuotaMonthlyLimit { retry_after_secs });
        }
        // Stored before WeChat is asked: a clear WeChat made counts even if this object is
        // evicted before its answer.
        self.persist(None).await;
        let request =
            openapi::clear_quota_request(&self.settings.api_base, &self.account, component);
        let budget = self.settings.upstream_timeout_ms;
        let outcome = upstream::platform_call(&self.settings, &request, budget).await;
        let secret = request.sensitive.first().map_or("", String::as_str);
        let outcome =
            outcome.and_then(|(status, body)| openapi::parse_cleared(status, &body, secret));
        let now = runtime::now_secs();
        let rid = outcome
            .as_ref()
            .err()
            .and_then(|f| f.rid().map(str::to_owned));
        let result = match outcome {
            Ok(()) => Ok(()),
            Err(UpstreamFailure::WeChat { errcode, .. })
                if errcode == wechat_codes::CLEAR_QUOTA_MONTHLY_LIMIT =>
            {
                self.state.ledger.borrow_mut().quota_clears.used_up(now);
                let retry_after_secs = quota::next_beijing_month(now) - now;
                Err(AppError::ClearQuotaMonthlyLimit { retry_after_secs })
            }
            Err(failure) => {
                self.state.ledger.borrow_mut().quota_clears.give_back(now);
                Err(AppError::Upstream(failure))
            }
        };
        let left = self.state.ledger.borrow().quota_clears.left(now);
        runtime::log_event(json!({
            "event": "quota_clear", "account": self.account.id,
            "outcome": outcome_code(&result),
            "clears_left_this_month": left, "wechat_rid": rid,
        }));
        match result {
            Ok(()) => {
                // The watched quotas are asked again at once: a low one has recovered.
                self.state.ledger.borrow_mut().watch.ask_again();
                self.reset().await;
            }
            Err(e) => {
                self.persist(None).await;
                return Err(e);
            }
        }
        Ok(json!({ "account": self.account.id, "cleared": true, "clears_left_this_month": left }))
    }
}

/// Removes everything an account's object and KV hold for it: its credentials, its counts, its
/// alarm, and the index entries of its tokens. Needs no configuration of the account (it is
/// already gone from the registry), only what the object stored. An authorizer's withdrawal
/// (`withdrawn_at`, its CreateTime) leaves the order of its pushes behind, nothing else.
/// Idempotent: a retry finishes what a failed one left.
pub async fn erase(
    env: &Env,
    object: &State,
    account_id: &str,
    withdrawn_at: Option<u64>,
) -> Result<(), AppError> {
    let storage = object.storage();
    let failed = |e| runtime::internal("erasing the account's state", e);
    faults::erase(env).map_err(failed)?;
    // A withdrawal older than an authorization this object took (even one taken while the
    // erase below waits for KV) erases nothing.
    let superseded = |platform: &PlatformState| match withdrawn_at {
        Some(at) => !platform.admits(AuthorizationPush::Withdrawn, at),
        None => false,
    };
    let newer = || AppError::Conflict("a newer authorization stands".into());
    let platform = stored_platform(object).await?;
    if superseded(&platform) {
        return Err(newer());
    }
    let stored: Option<String> = storage
        .get(&storage_key(CredentialKind::Token))
        .await
        .map_err(failed)?;
    let token =
        stored.and_then(|text| serde_json::from_str::<CredentialState<TokenRecord>>(&text).ok());
    let record = token.and_then(|state| state.record);
    let tokens: Vec<&str> = record
        .iter()
        .flat_map(|r| {
            std::iter::once(r.access_token.as_str())
                .chain(r.previous.as_ref().map(|p| p.access_token.as_str()))
        })
        .collect();
    kv_cache::erase(env, account_id, &tokens)
        .await
        .map_err(failed)?;
    storage.delete_alarm().await.map_err(failed)?;
    // Checked again with nothing awaited between the check and the deletion.
    let platform = stored_platform(object).await?;
    if superseded(&platform) {
        return Err(newer());
    }
    storage.delete_all().await.map_err(failed)?;
    if let Some(created_at) = withdrawn_at {
        let left = serde_json::to_string(&platform.withdrawn(created_at))
            .map_err(|e| runtime::internal("encoding", e))?;
        storage.put(PLATFORM_KEY, left).await.map_err(failed)?;
    }
    runtime::log_event(json!({ "event": "account_erased", "account": account_id }));
    Ok(())
}

/// Whether an authorizer's push of `created_at` comes after what its object acted on (read
/// from storage: it needs no configuration, and an erased authorizer has none).
pub async fn admits(
    object: &State,
    push: AuthorizationPush,
    created_at: u64,
) -> Result<bool, AppError> {
    Ok(stored_platform(object).await?.admits(push, created_at))
}

async fn stored_platform(object: &State) -> Result<PlatformState, AppError> {
    let stored: Option<String> = object
        .storage()
        .get(PLATFORM_KEY)
        .await
        .map_err(|e| runtime::internal("reading storage", e))?;
    Ok(stored
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default())
}
