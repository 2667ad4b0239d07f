//! The edge cache: each account's token (and tickets) in Workers KV, read on every request.
//! The Durable Object is the source of truth and the only writer.

use crate::jssdk::TicketKind;
use crate::runtime::KV_BINDING;
use serde::{de::DeserializeOwned, Serialize};
use worker::Env;

/// KV refuses expirations less than 60 s ahead; a record that close to its end is not cached.
const KV_MIN_TTL_SECS: u64 = 60;

pub fn token_key(account_id: &str) -> String {
    format!("token:{account_id}")
}

pub fn ticket_key(account_id: &str, kind: TicketKind) -> String {
    format!("ticket:{account_id}:{}", kind.name())
}

/// The cached record, or None on a miss or any KV trouble (the Durable Object then answers).
pub async fn read<T: DeserializeOwned>(env: &Env, key: &str) -> Option<T> {
    let store = env.kv(KV_BINDING).ok()?;
    store.get(key).json::<T>().await.ok().flatten()
}

/// Caches `record` until `expires_at`. KV's own expiration is only a clean-up: readers still
/// check the record's expiry, since KV may serve a value up to a minute past its expiration.
pub async fn write<T: Serialize>(
    env: &Env,
    key: &str,
    record: &T,
    expires_at: u64,
    now: u64,
) -> worker::Result<()> {
    let store = env.kv(KV_BINDING)?;
    if expires_at < now + KV_MIN_TTL_SECS {
        // Too short-lived to cache, but the entry it replaces must not be served any more.
        store.delete(key).await?;
        return Ok(());
    }
    store
        .put(key, serde_json::to_string(record)?)?
        .expiration(expires_at)
        .execute()
        .await?;
    Ok(())
}
