//! The edge cache in Workers KV: each account's token and tickets, and an index from an issued
//! token to its account (for the WeChat-compatible `getticket`). The Durable Object is the
//! source of truth and the only writer.
//!
//! Every entry carries `fresh_until`, at most `KV_MAX_AGE_SECS` ahead: past it readers ask the
//! object, which writes the entry again. So a KV write that was lost (an error, the one write
//! per second per key limit, the Free plan's daily cap) stops mattering within minutes,
//! whatever the record's own expiry.

use crate::edge::adapters::faults;
use crate::edge::adapters::runtime::KV_BINDING;
use crate::policy::fingerprint::token_index_id;
use crate::policy::ledger::CredentialKind;
use crate::policy::token::Credential;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use worker::Env;

/// KV refuses expirations less than 60 s ahead.
const KV_MIN_TTL_SECS: u64 = 60;

/// The one map from a credential to its KV key.
pub fn key(account_id: &str, which: CredentialKind) -> String {
    match which {
        CredentialKind::Token => format!("token:{account_id}"),
        CredentialKind::Ticket(kind) => format!("ticket:{account_id}:{}", kind.name()),
    }
}

fn index_key(token: &str) -> String {
    format!("tokenidx:{}", token_index_id(token))
}

#[derive(Serialize, Deserialize)]
struct Entry<R> {
    record: R,
    fresh_until: u64,
}

/// What the index says of an issued token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub account: String,
    /// The configuration it was issued under (`Account::issuer`).
    pub issuer: String,
    /// WeChat accepts it until then: its expiry, or the end of its grace once replaced.
    pub accepted_until: u64,
}

/// A cached record that may be served: valid, and issued under the account's current
/// configuration.
pub struct Cached<R> {
    pub record: R,
    /// Until when the object vouches for it (see [`Cached::is_fresh`]).
    pub fresh_until: u64,
}

impl<R> Cached<R> {
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.fresh_until
    }
}

/// The cached record, if valid and issued under `issuer`. None on a miss or any KV trouble
/// (the Durable Object then answers).
pub async fn read<R: Credential + DeserializeOwned>(
    env: &Env,
    key: &str,
    issuer: &str,
    now: u64,
) -> Option<Cached<R>> {
    let store = env.kv(KV_BINDING).ok()?;
    let entry: Entry<R> = store.get(key).json().await.ok().flatten()?;
    (entry.record.is_valid(now) && entry.record.issued_for() == issuer).then_some(Cached {
        record: entry.record,
        fresh_until: entry.fresh_until,
    })
}

/// Caches `record`, to be answered until `fresh_until`, and kept by KV until `keep_until`
/// (past it by the readers' stale window). KV's own expiration is only a clean-up: readers
/// check `fresh_until` and the record's expiry.
pub async fn write<R: Serialize>(
    env: &Env,
    key: &str,
    record: &R,
    (fresh_until, keep_until): (u64, u64),
    now: u64,
) -> worker::Result<()> {
    let entry = Entry {
        record,
        fresh_until,
    };
    put(env, key, &entry, keep_until, now).await
}

pub async fn read_index(env: &Env, token: &str) -> Option<IndexEntry> {
    let store = env.kv(KV_BINDING).ok()?;
    store.get(&index_key(token)).json().await.ok().flatten()
}

pub async fn write_index(
    env: &Env,
    token: &str,
    entry: &IndexEntry,
    now: u64,
) -> worker::Result<()> {
    put(env, &index_key(token), entry, entry.accepted_until, now).await
}

async fn put<T: Serialize>(
    env: &Env,
    key: &str,
    value: &T,
    until: u64,
    now: u64,
) -> worker::Result<()> {
    faults::kv_write(env, key)?;
    env.kv(KV_BINDING)?
        .put(key, serde_json::to_string(value)?)?
        .expiration(until.max(now + KV_MIN_TTL_SECS))
        .execute()
        .await?;
    Ok(())
}

/// Removes an account's credential entries, and the index entries of the tokens named, when
/// the account is deleted.
pub async fn erase(env: &Env, account_id: &str, tokens: &[&str]) -> worker::Result<()> {
    let store = env.kv(KV_BINDING)?;
    for which in CredentialKind::ALL {
        store.delete(&key(account_id, which)).await?;
    }
    for token in tokens {
        store.delete(&index_key(token)).await?;
    }
    Ok(())
}
