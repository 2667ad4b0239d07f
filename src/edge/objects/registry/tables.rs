//! The registry's SQLite tables and every query on them. Synchronous: each function runs
//! whole inside one request to the object, so no other request interleaves with it.
//! Over 400 lines on purpose: every query on the tables is here, so that a schema change is
//! read in one file.

use super::{Deleted, Picked, Stored};
use crate::edge::adapters::runtime;
use crate::error::AppError;
use crate::policy::accounts::AccountKind;
use crate::policy::registry::Registered;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, appid TEXT NOT NULL, api TEXT NOT NULL,
    sealed_secret TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS accounts_by_appid ON accounts (appid, api);
    CREATE TABLE IF NOT EXISTS schedule (id TEXT PRIMARY KEY, due_at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS schedule_by_due ON schedule (due_at);
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS summaries (id TEXT PRIMARY KEY, summary TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS tombstones (id TEXT PRIMARY KEY, entry TEXT NOT NULL,
        deleted_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)";

/// Columns added since the first schema: each entry's version (KV carries it, so that a
/// copy that disagrees is found) and whether KV has the entry as it stands.
const ADDED_COLUMNS: [&str; 2] = [
    "ALTER TABLE accounts ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE accounts ADD COLUMN published INTEGER NOT NULL DEFAULT 1",
];

/// Creates what is missing (once per object life).
pub fn prepare(sql: &SqlStorage) -> Result<(), AppError> {
    sql.exec(SCHEMA, None).map_err(failed)?;
    for column in ADDED_COLUMNS {
        // Fails once the column exists: that is the point.
        let _ = sql.exec(column, None);
    }
    Ok(())
}

fn failed(e: worker::Error) -> AppError {
    runtime::internal("the registry's storage failed", e)
}

pub(super) fn rows<T: DeserializeOwned>(
    sql: &SqlStorage,
    query: &str,
    bindings: Vec<SqlStorageValue>,
) -> Result<Vec<T>, AppError> {
    sql.exec(query, bindings)
        .and_then(|cursor| cursor.to_array())
        .map_err(failed)
}

pub(super) fn exec(
    sql: &SqlStorage,
    query: &str,
    bindings: Vec<SqlStorageValue>,
) -> Result<(), AppError> {
    sql.exec(query, bindings).map(drop).map_err(failed)
}

pub(super) fn count(
    sql: &SqlStorage,
    query: &str,
    bindings: Vec<SqlStorageValue>,
) -> Result<u64, AppError> {
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let counted: Vec<Count> = rows(sql, query, bindings)?;
    Ok(counted.first().map_or(0, |c| c.n as u64))
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

fn ids(
    sql: &SqlStorage,
    query: &str,
    bindings: Vec<SqlStorageValue>,
) -> Result<Vec<String>, AppError> {
    let found: Vec<IdRow> = rows(sql, query, bindings)?;
    Ok(found.into_iter().map(|row| row.id).collect())
}

pub fn one(sql: &SqlStorage, id: &str) -> Result<Option<Registered>, AppError> {
    let found: Vec<Registered> = rows(sql, "SELECT * FROM accounts WHERE id = ?", vec![id.into()])?;
    Ok(found.into_iter().next())
}

/// The ids registered with `appid`, in id order (the edge's `?appid=` index).
pub fn sharing(sql: &SqlStorage, appid: &str) -> Result<Vec<String>, AppError> {
    ids(
        sql,
        "SELECT id FROM accounts WHERE appid = ? ORDER BY id",
        vec![appid.into()],
    )
}

/// Stores `entry` as the next version of its id, not yet published to KV.
pub fn put(sql: &SqlStorage, mut entry: Registered) -> Result<Stored, AppError> {
    // Two fetchers of one appid through one API invalidate each other's tokens (WeCom apps
    // of one corp share the corpid legitimately).
    let rival = ids(
        sql,
        "SELECT id FROM accounts WHERE appid = ? AND api = ? AND id != ? AND api != 'wecom'",
        vec![
            entry.appid.as_str().into(),
            entry.api.as_str().into(),
            entry.id.as_str().into(),
        ],
    )?;
    if let Some(rival) = rival.first() {
        return Err(AppError::Conflict(format!(
            "the account \"{rival}\" already fetches tokens for this appid through this API; \
             two would invalidate each other's tokens"
        )));
    }
    let existing = one(sql, &entry.id)?;
    let authorizer = AccountKind::Authorizer.name();
    if let Some(existing) = &existing {
        // An authorizer's refresh token lives in its object: an admin's write over it would
        // orphan it (the platform's over an admin's account is refused where it is made).
        if existing.kind == authorizer && entry.kind != authorizer {
            return Err(AppError::Conflict(format!(
                "\"{}\" is an authorizer of the platform: withdraw its authorization instead",
                entry.id
            )));
        }
        entry.created_at = existing.created_at;
    }
    entry.version = existing.as_ref().map_or(1, |e| e.version + 1);
    exec(
        sql,
        "INSERT OR REPLACE INTO accounts (id, kind, appid, api, sealed_secret, created_at, \
         updated_at, version, published) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
        vec![
            entry.id.as_str().into(),
            entry.kind.as_str().into(),
            entry.appid.as_str().into(),
            entry.api.as_str().into(),
            entry.sealed_secret.as_str().into(),
            (entry.created_at as i64).into(),
            (entry.updated_at as i64).into(),
            (entry.version as i64).into(),
        ],
    )?;
    // Registered again: what a removal left to finish is the new registration's to do (its
    // object erased before it is used), no longer the cron's.
    let revived = tombstone(sql, &entry.id)?.is_some();
    exec(
        sql,
        "DELETE FROM tombstones WHERE id = ?",
        vec![entry.id.as_str().into()],
    )?;
    let sharing_appid = sharing(sql, &entry.appid)?;
    let sharing_previous_appid = match &existing {
        Some(old) if old.appid != entry.appid => Some(sharing(sql, &old.appid)?),
        _ => None,
    };
    Ok(Stored {
        created: existing.is_none(),
        entry,
        previous: existing,
        sharing_appid,
        sharing_previous_appid,
        published: false,
        revived,
    })
}

/// KV has `id` as it stands at `version`.
pub fn mark_published(sql: &SqlStorage, id: &str, version: u64) -> Result<(), AppError> {
    exec(
        sql,
        "UPDATE accounts SET published = 1 WHERE id = ? AND version = ?",
        vec![id.into(), (version as i64).into()],
    )
}

/// Removes `id`, leaving a tombstone until its object is erased; a removal that failed half
/// way is found by its tombstone, to be finished.
pub fn delete(sql: &SqlStorage, id: &str, now: u64) -> Result<Option<Deleted>, AppError> {
    let entry = match one(sql, id)? {
        Some(entry) => {
            let text =
                serde_json::to_string(&entry).map_err(|e| runtime::internal("encoding", e))?;
            exec(
                sql,
                "INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?)",
                vec![id.into(), text.as_str().into(), (now as i64).into()],
            )?;
            for table in ["accounts", "schedule", "summaries"] {
                exec(
                    sql,
                    &format!("DELETE FROM {table} WHERE id = ?"),
                    vec![id.into()],
                )?;
            }
            entry
        }
        None => match tombstone(sql, id)? {
            Some((entry, _)) => entry,
            None => return Ok(None),
        },
    };
    let deleted_at = tombstone(sql, id)?.map_or(now, |(_, at)| at);
    Ok(Some(Deleted {
        sharing_appid: sharing(sql, &entry.appid)?,
        entry,
        deleted_at,
    }))
}

fn tombstone(sql: &SqlStorage, id: &str) -> Result<Option<(Registered, u64)>, AppError> {
    #[derive(Deserialize)]
    struct Row {
        entry: String,
        deleted_at: i64,
    }
    let found: Vec<Row> = rows(
        sql,
        "SELECT * FROM tombstones WHERE id = ?",
        vec![id.into()],
    )?;
    Ok(found.into_iter().next().and_then(|row| {
        let entry = serde_json::from_str(&row.entry).ok()?;
        Some((entry, row.deleted_at as u64))
    }))
}

/// The removal of `id` (deleted at `deleted_at`) is finished: its object is erased.
pub fn bury(sql: &SqlStorage, id: &str, deleted_at: u64) -> Result<(), AppError> {
    exec(
        sql,
        "DELETE FROM tombstones WHERE id = ? AND deleted_at = ?",
        vec![id.into(), (deleted_at as i64).into()],
    )
}

pub fn list(
    sql: &SqlStorage,
    after: &str,
    limit: usize,
    kind: Option<&str>,
) -> Result<Vec<Registered>, AppError> {
    let (query, mut bindings): (&str, Vec<SqlStorageValue>) = match kind {
        None => (
            "SELECT * FROM accounts WHERE id > ? ORDER BY id LIMIT ?",
            vec![],
        ),
        Some(kind) => (
            "SELECT * FROM accounts WHERE kind = ? AND id > ? ORDER BY id LIMIT ?",
            vec![kind.into()],
        ),
    };
    bindings.extend([after.into(), (limit as i64).into()]);
    rows(sql, query, bindings)
}

/// Entries KV does not have as they stand (a failed write), up to `limit`.
pub fn unpublished(sql: &SqlStorage, limit: usize) -> Result<Vec<Registered>, AppError> {
    rows(
        sql,
        "SELECT * FROM accounts WHERE published = 0 ORDER BY id LIMIT ?",
        vec![(limit as i64).into()],
    )
}

/// How many entries KV does not have as they stand.
pub fn count_unpublished(sql: &SqlStorage) -> Result<u64, AppError> {
    count(
        sql,
        "SELECT COUNT(*) AS n FROM accounts WHERE published = 0",
        vec![],
    )
}

/// The next `limit` entries of a rotation over all of them, for the cron to compare with
/// what KV holds.
pub fn next_to_verify(sql: &SqlStorage, limit: usize) -> Result<Vec<Registered>, AppError> {
    let cursor = meta(sql, "verify")?.unwrap_or_default();
    let mut entries: Vec<Registered> = rows(
        sql,
        "SELECT * FROM accounts WHERE id > ? ORDER BY id LIMIT ?",
        vec![cursor.as_str().into(), (limit as i64).into()],
    )?;
    if entries.len() < limit && !cursor.is_empty() {
        // One lap: from the start again.
        let more: Vec<Registered> = rows(
            sql,
            "SELECT * FROM accounts WHERE id <= ? ORDER BY id LIMIT ?",
            vec![
                cursor.as_str().into(),
                ((limit - entries.len()) as i64).into(),
            ],
        )?;
        entries.extend(more);
    }
    let last = entries.last().map_or(String::new(), |e| e.id.clone());
    set_meta(sql, "verify", &last)?;
    Ok(entries)
}

/// Removals left half done (their objects not yet erased), up to `limit`.
pub fn tombstones(sql: &SqlStorage, limit: usize) -> Result<Vec<(String, u64)>, AppError> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        deleted_at: i64,
    }
    let found: Vec<Row> = rows(
        sql,
        "SELECT id, deleted_at FROM tombstones ORDER BY deleted_at LIMIT ?",
        vec![(limit as i64).into()],
    )?;
    Ok(found
        .into_iter()
        .map(|r| (r.id, r.deleted_at as u64))
        .collect())
}

fn meta(sql: &SqlStorage, key: &str) -> Result<Option<String>, AppError> {
    Ok(ids(
        sql,
        "SELECT value AS id FROM meta WHERE key = ?",
        vec![key.into()],
    )?
    .pop())
}

fn set_meta(sql: &SqlStorage, key: &str, value: &str) -> Result<(), AppError> {
    exec(
        sql,
        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
        vec![key.into(), value.into()],
    )
}

/// The cron's batch: removals to finish (two subrequests each: the erase and the burial),
/// then accounts whose due time passed before `overdue_before` (a missed alarm), most
/// overdue first, then the next accounts of a rotation over all of them (environment ids and
/// registered ones, in id order), whose place is kept here. Within `batch` subrequests.
pub fn pick(
    sql: &SqlStorage,
    env_ids: &[String],
    batch: usize,
    overdue_before: u64,
) -> Result<Picked, AppError> {
    let erase = tombstones(sql, batch / 8)?;
    let batch = batch - 2 * erase.len();
    let known = |id: &str| -> Result<bool, AppError> {
        Ok(env_ids.iter().any(|e| e == id) || one(sql, id)?.is_some())
    };
    let mut overdue = Vec::new();
    let late = ids(
        sql,
        "SELECT id FROM schedule WHERE due_at < ? ORDER BY due_at LIMIT ?",
        vec![(overdue_before as i64).into(), (batch as i64 * 2).into()],
    )?;
    // At most half the batch: accounts that stay overdue (failing ones) never starve the
    // rotation.
    let overdue_cap = batch.div_ceil(2);
    for id in late {
        if overdue.len() == overdue_cap {
            break;
        }
        if known(&id)? {
            overdue.push(id);
        } else {
            // An account that left the environment: it has nothing to be late for.
            exec(
                sql,
                "DELETE FROM schedule WHERE id = ?",
                vec![id.as_str().into()],
            )?;
        }
    }
    let cursor = meta(sql, "rotation")?.unwrap_or_default();
    let mut sorted_env: Vec<&String> = env_ids.iter().collect();
    sorted_env.sort();
    let mut rotation = Vec::new();
    let room = batch - overdue.len();
    // From the cursor to the end, then from the start: one lap at most.
    for after in [cursor.as_str(), ""] {
        let wanted = room - rotation.len();
        if wanted == 0 {
            break;
        }
        let registered = ids(
            sql,
            "SELECT id FROM accounts WHERE id > ? ORDER BY id LIMIT ?",
            vec![after.into(), (wanted as i64 + batch as i64).into()],
        )?;
        let env_after = sorted_env
            .iter()
            .filter(|id| id.as_str() > after)
            .map(|id| (*id).clone());
        let mut merged: Vec<String> = registered.into_iter().chain(env_after).collect();
        merged.sort();
        merged.dedup();
        for id in merged {
            let lapped = after.is_empty() && !cursor.is_empty() && id.as_str() > cursor.as_str();
            if rotation.len() == room || lapped {
                break;
            }
            if !overdue.contains(&id) && !rotation.contains(&id) {
                rotation.push(id);
            }
        }
    }
    if let Some(last) = rotation.last() {
        set_meta(sql, "rotation", last)?;
    }
    Ok(Picked {
        overdue,
        rotation,
        erase,
        repaired: 0,
    })
}
