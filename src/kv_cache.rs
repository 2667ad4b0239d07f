//! The edge cache: each account's token record in Workers KV, read on every `GET /token`.
//! The Durable Object is the source of truth and the only writer.

use crate::runtime::KV_BINDING;
use crate::token::TokenRecord;
use worker::Env;

/// KV refuses expirations less than 60 s ahead; a token that close to its end is not cached.
const KV_MIN_TTL_SECS: u64 = 60;

fn key(account_id: &str) -> String {
    format!("token:{account_id}")
}

/// The cached record, or None on a miss or any KV trouble (the Durable Object then answers).
pub async fn read(env: &Env, account_id: &str) -> Option<TokenRecord> {
    let store = env.kv(KV_BINDING).ok()?;
    store
        .get(&key(account_id))
        .json::<TokenRecord>()
        .await
        .ok()
        .flatten()
}

/// Caches `record` until it expires. KV's own expiration is only a clean-up: readers still
/// check `expires_at`, since KV may serve a value up to a minute past its expiration.
pub async fn write(
    env: &Env,
    account_id: &str,
    record: &TokenRecord,
    now: u64,
) -> worker::Result<()> {
    let store = env.kv(KV_BINDING)?;
    if record.expires_at < now + KV_MIN_TTL_SECS {
        // Too short-lived to cache, but the entry it replaces must not be served any more.
        store.delete(&key(account_id)).await?;
        return Ok(());
    }
    store
        .put(&key(account_id), serde_json::to_string(record)?)?
        .expiration(record.expires_at)
        .execute()
        .await?;
    Ok(())
}
