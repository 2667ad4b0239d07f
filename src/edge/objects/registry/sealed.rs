//! What each key of `ACCOUNTS_ENCRYPTION_KEY` seals, and sealing again under the first one.

use super::tables::{count, exec, rows};
use super::Resealed;
use crate::edge::adapters::runtime;
use crate::error::AppError;
use crate::policy::registry::Registered;
use crate::policy::sealing::{KeyRing, NONCE_BYTES, UNOPENED_V1};
use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue};

/// How many v1 secrets (which name no key) a census tries to open, to find out whether the
/// keys still open them.
const V1_SAMPLE: usize = 200;

/// How many runtime accounts each key seals (`v1`: the first format, which names none; of
/// those, the first [`V1_SAMPLE`] are tried with `ring`, and the ones it does not open are
/// counted under [`UNOPENED_V1`]).
pub fn census(sql: &SqlStorage, ring: &KeyRing) -> Result<Vec<(String, u64)>, AppError> {
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
    let mut census: Vec<(String, u64)> = counted.into_iter().map(|r| (r.key, r.n as u64)).collect();
    let first_format: Vec<Registered> = rows(
        sql,
        "SELECT * FROM accounts WHERE kind != 'authorizer' AND sealed_secret LIKE 'v1:%' \
         ORDER BY id LIMIT ?",
        vec![(V1_SAMPLE as i64).into()],
    )?;
    let unopened = first_format
        .iter()
        .filter(|e| ring.open(&e.id, &e.sealed_secret).is_err())
        .count();
    if unopened > 0 {
        census.push((UNOPENED_V1.into(), unopened as u64));
    }
    Ok(census)
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
    // All of them, in id order, until `limit` are sealed again: ones no key opens are passed
    // over, so that they never stop the others.
    let entries: Vec<Registered> = rows(
        sql,
        &format!("SELECT * {OLDER_SEALED} ORDER BY id"),
        vec![sealed_by(current)],
    )?;
    let (mut resealed, mut unopenable) = (Vec::new(), Vec::new());
    for mut entry in entries {
        if resealed.len() == limit {
            break;
        }
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
        edge_pending: 0,
    })
}
