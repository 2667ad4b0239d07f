//! What the admin API asks of an account's object: lift its pauses, or erase it.

use super::AccountCtx;
use crate::edge::kv_cache;
use crate::edge::runtime;
use crate::error::AppError;
use crate::policy::ledger::CredentialKind;
use serde_json::json;

impl AccountCtx {
    /// Clears the quota pause (WeChat's 45009, after its `clear_quota`) and the credential
    /// block (a secret WeChat refused, since unfrozen), so automatic refreshes resume.
    pub async fn reset(&self) {
        self.state.ledger.borrow_mut().blocked_config = None;
        self.state.token.state.borrow_mut().usage.quota_error_at = None;
        for kind in crate::policy::ticket::TicketKind::ALL {
            self.state
                .ticket(kind)
                .state
                .borrow_mut()
                .usage
                .quota_error_at = None;
        }
        for which in CredentialKind::ALL {
            self.persist(Some(which)).await;
        }
        runtime::log_event(json!({ "event": "account_reset", "account": self.account.id }));
    }

    /// Removes everything the object and KV hold for the account: its credentials, its
    /// counts, its alarm, and the index entries of its tokens.
    pub async fn erase(&self) -> Result<(), AppError> {
        let tokens: Vec<String> = {
            let token = self.state.token.state.borrow();
            let record = token.record.as_ref();
            record
                .map(|r| r.access_token.clone())
                .into_iter()
                .chain(record.and_then(|r| r.previous.as_ref().map(|p| p.access_token.clone())))
                .collect()
        };
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        kv_cache::erase(&self.env, &self.account.id, &tokens)
            .await
            .map_err(|e| runtime::internal("erasing the account's KV entries", e))?;
        let storage = self.object.storage();
        let failed = |e| runtime::internal("erasing the account's storage", e);
        storage.delete_alarm().await.map_err(failed)?;
        storage.delete_all().await.map_err(failed)?;
        runtime::log_event(json!({ "event": "account_erased", "account": self.account.id }));
        Ok(())
    }
}
