//! What each key of `ACCOUNTS_ENCRYPTION_KEY` seals, and sealing again under the first one.

use super::tables::{count, exec, rows};
use super::Resealed;
use crate::edge::runtime;
use crate::error::AppError;
use crate::policy::registry::Registered;
use crate::policy::sealing::{KeyRing, NONCE_BYTES};
use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue};

/// How many runtime accounts each key seals (`v1`: the first format, which names none).
pub fn census(sql: &SqlStorage) -> Result<Vec<(String, u64)>, AppError> {
    #[derive(Deserialize)]
    struct KeyCount {
        key: String,
        n: i64,
    }
    let counted: Vec<KeyCount> = rows(
        sql,
        "SELECT CASE WHEN sealed_secret LIKE 'v1:%' THEN 'v1' \
         ELSE substr(sealed_secret, 4, 8) END AS key, COUNT(*) AS n \
         FROM accounts WHERE kind != 'authorizer' GROUP BY key",
        vec![],
    )?;
    Ok(counted.into_iter().map(|r| (r.key, r.n as u64)).collect())
}

pub(super) const OLDER_SEALED: &str =
    "FROM accounts WHERE kind != 'authorizer' AND sealed_secret NOT LIKE ?";

pub(super) fn sealed_by(key: &str) -> SqlStorageValue {
    format!("v2:{key}:%").into()
}

/// Seals again under `ring`'s sealing key up to `limit` secrets sealed under another; the
/// entries changed are to be published again.
pub fn reseal(sql: &SqlStorage, ring: &KeyRing, limit: usize) -> Result<Resealed, AppError> {
    let current = ring.sealing_id();
    let entries: Vec<Registered> = rows(
        sql,
        &format!("SELECT * {OLDER_SEALED} ORDER BY id LIMIT ?"),
        vec![sealed_by(current), (limit as i64).into()],
    )?;
    let (mut resealed, mut unopenable) = (Vec::new(), Vec::new());
    for mut entry in entries {
        let nonce = runtime::random_bytes::<NONCE_BYTES>();
        match ring.reseal(&entry.id, &entry.sealed_secret, nonce) {
            Ok(Some(sealed)) => {
                entry.sealed_secret = sealed;
                entry.version += 1;
                exec(
                    sql,
                    "UPDATE accounts SET sealed_secret = ?, version = ?, published = 0 \
                     WHERE id = ?",
                    vec![
                        entry.sealed_secret.as_str().into(),
                        (entry.version as i64).into(),
                        entry.id.as_str().into(),
                    ],
                )?;
                resealed.push(entry);
            }
            Ok(None) => {}
            Err(_) => unopenable.push(entry.id),
        }
    }
    let remaining = count(
        sql,
        &format!("SELECT COUNT(*) AS n {OLDER_SEALED}"),
        vec![sealed_by(current)],
    )?;
    Ok(Resealed {
        resealed,
        remaining,
        unopenable,
    })
}
