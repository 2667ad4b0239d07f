//! Registering a corporation that authorized a WeCom suite: an account of kind `wecom_corp`
//! (id `<suite_id>.<corpid>`), its permanent code sealed in the registry as an appsecret is.

use crate::edge::adapters::runtime::{self, now_secs};
use crate::edge::objects::directory;
use crate::edge::objects::object_client;
use crate::edge::objects::reader;
use crate::edge::objects::registry;
use crate::error::AppError;
use crate::policy::config::Settings;
use crate::policy::registry::Registered;
use crate::policy::sealing::NONCE_BYTES;
use crate::policy::wecom_provider::corp_account;
use crate::wechat::wecom_service::Authorized;
use worker::Env;

/// Registers (or, with a new permanent code, re-registers) the corporation; its id. Its
/// corpid is one the suite's object checked.
pub async fn register(
    env: &Env,
    settings: &Settings,
    suite_id: &str,
    authorized: &Authorized,
) -> Result<String, AppError> {
    let account = corp_account(suite_id, &authorized.corpid, &authorized.permanent_code);
    if settings.accounts.iter().any(|a| a.id == account.id) {
        return Err(AppError::Conflict(format!(
            "the corporation {} is also an account of the environment",
            account.id
        )));
    }
    if let Some(other) = registry::get(env, &account.id).await? {
        if other.kind != account.kind.name() {
            return Err(AppError::Conflict(format!(
                "{} is an account registered through the admin API",
                account.id
            )));
        }
    }
    let nonce = runtime::random_bytes::<NONCE_BYTES>();
    let sealed = runtime::key_ring(env)?.seal(&account.id, &account.secret, nonce);
    let stored = registry::put(env, Registered::new(&account, sealed, now_secs(), None)).await?;
    directory::forget_registered(&account.id, false);
    if stored.revived {
        // A removal left half done: the removed corporation's state goes first.
        object_client::erase(env, &account.id, None).await?;
    } else if !stored.created {
        // A new permanent code: the object reloads its account.
        reader::forget_account(&account.id);
        object_client::forget(env, &account.id).await?;
    }
    Ok(account.id)
}
