//! The account registry: one Durable Object (SQLite storage) holding every account registered
//! at runtime, its appsecret sealed, and every account's next due time (each object reports
//! its own), so that the cron can find missed alarms among thousands of accounts with one
//! indexed query; and the worker's client for it. The admin API writes here first, then KV
//! (which the edge reads, so that resolving an account costs no object call), then tells the
//! account's own object.

use crate::edge::faults;
use crate::edge::respond;
use crate::edge::runtime::{self, REGISTRY_BINDING};
use crate::error::AppError;
use crate::policy::accounts::AccountKind;
use crate::policy::registry::Registered;
use crate::policy::sealing::NONCE_BYTES;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, SqlStorage,
    SqlStorageValue, State,
};

/// The one registry object's name.
const REGISTRY_NAME: &str = "registry";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    /// Stores the entry (keeping its `created_at` if it replaces one); answers [`Stored`].
    Put {
        entry: Registered,
    },
    Get {
        id: String,
    },
    /// Registered accounts with ids after `after`, in id order (of one kind, if `kind`).
    List {
        after: String,
        limit: usize,
        #[serde(default)]
        kind: Option<String>,
    },
    /// Answers the removed entry, if there was one.
    Delete {
        id: String,
    },
    /// An account's next due time (None: nothing to wake for, such as a blocked secret) and
    /// its `/status` summary.
    Report {
        id: String,
        due_at: Option<u64>,
        summary: Value,
    },
    /// The `/status` listing's page: the summaries of `ids` (environment accounts, or a
    /// limited key's own), then, from `after`, up to `limit` registered accounts with theirs;
    /// answers [`StatusRows`].
    Statuses {
        ids: Vec<String>,
        after: Option<String>,
        limit: usize,
        /// The sealing key's id: count what is sealed under another.
        #[serde(default)]
        sealing_key: Option<String>,
    },
    /// How many runtime accounts each key seals (`[key id, count]`; `v1`: the first format).
    Census,
    /// Seals again, under the first key of `ACCOUNTS_ENCRYPTION_KEY`, up to `limit` secrets
    /// sealed under another; answers [`Resealed`].
    Reseal {
        limit: usize,
    },
    /// The cron's batch; answers [`Picked`].
    Pick {
        env_ids: Vec<String>,
        batch: usize,
        overdue_before: u64,
    },
}

/// The cron's batch: accounts whose alarm was missed, then the rotation's next ones.
#[derive(Serialize, Deserialize)]
pub struct Picked {
    pub overdue: Vec<String>,
    pub rotation: Vec<String>,
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

/// One account of a `/status` page: its registration (if registered) and its last summary.
#[derive(Clone, Serialize, Deserialize)]
pub struct StatusRow {
    pub id: String,
    /// `kind` and `api`, for a registered account.
    pub registered: Option<(String, String)>,
    pub summary: Option<Value>,
}

/// A `/status` page: the rows asked for by id (those that exist in the registry or have
/// reported), then the registered ones from `after`, and whether more follow.
#[derive(Serialize, Deserialize)]
pub struct StatusRows {
    pub by_id: Vec<StatusRow>,
    pub page: Vec<StatusRow>,
    pub more: bool,
    /// Runtime accounts sealed under another key than `sealing_key`.
    pub older_sealed: Option<u64>,
}

#[derive(Deserialize)]
struct SummaryRow {
    id: String,
    kind: Option<String>,
    api: Option<String>,
    summary: Option<String>,
}

impl From<SummaryRow> for StatusRow {
    fn from(row: SummaryRow) -> Self {
        Self {
            id: row.id,
            registered: row.kind.zip(row.api),
            summary: row
                .summary
                .and_then(|text| serde_json::from_str(&text).ok()),
        }
    }
}

/// What a reseal did: the entries it changed (for the edge's copies), and what is left.
#[derive(Serialize, Deserialize)]
pub struct Resealed {
    pub resealed: Vec<Registered>,
    /// Still sealed under another key after this batch.
    pub remaining: u64,
    /// Entries no key of `ACCOUNTS_ENCRYPTION_KEY` opens (their ids).
    pub unopenable: Vec<String>,
}

/// What a put did, read atomically with it.
#[derive(Serialize, Deserialize)]
pub struct Stored {
    pub entry: Registered,
    pub created: bool,
    /// The entry it replaced.
    pub previous: Option<Registered>,
    /// Every account registered with the entry's appid now (the edge's `?appid=` index).
    pub sharing_appid: Vec<String>,
    /// Every account still registered with the replaced entry's appid, if that differs.
    pub sharing_previous_appid: Option<Vec<String>>,
}

/// What a delete did: the removed entry, and who is still registered with its appid.
#[derive(Serialize, Deserialize)]
pub struct Deleted {
    pub entry: Registered,
    pub sharing_appid: Vec<String>,
}

pub async fn put(env: &Env, entry: Registered) -> Result<Stored, AppError> {
    ask(env, &Op::Put { entry }).await
}

pub async fn get(env: &Env, id: &str) -> Result<Option<Registered>, AppError> {
    ask(env, &Op::Get { id: id.to_owned() }).await
}

pub async fn list(env: &Env, after: &str, limit: usize) -> Result<Vec<Registered>, AppError> {
    let after = after.to_owned();
    ask(
        env,
        &Op::List {
            after,
            limit,
            kind: None,
        },
    )
    .await
}

/// Like [`list`], for one kind of account (the platform's authorizers).
pub async fn list_kind(
    env: &Env,
    kind: AccountKind,
    after: &str,
    limit: usize,
) -> Result<Vec<Registered>, AppError> {
    let (after, kind) = (after.to_owned(), Some(kind.name().to_owned()));
    ask(env, &Op::List { after, limit, kind }).await
}

pub async fn census(env: &Env) -> Result<Vec<(String, u64)>, AppError> {
    ask(env, &Op::Census).await
}

pub async fn reseal(env: &Env, limit: usize) -> Result<Resealed, AppError> {
    ask(env, &Op::Reseal { limit }).await
}

pub async fn delete(env: &Env, id: &str) -> Result<Option<Deleted>, AppError> {
    ask(env, &Op::Delete { id: id.to_owned() }).await
}

pub async fn report(
    env: &Env,
    id: &str,
    due_at: Option<u64>,
    summary: Value,
) -> Result<(), AppError> {
    let id = id.to_owned();
    let op = Op::Report {
        id,
        due_at,
        summary,
    };
    ask::<Value>(env, &op).await.map(drop)
}

/// One `/status` page in one registry call, whatever its size.
pub async fn statuses(
    env: &Env,
    ids: Vec<String>,
    (after, limit): (Option<String>, usize),
    sealing_key: Option<String>,
) -> Result<StatusRows, AppError> {
    let op = Op::Statuses {
        ids,
        after,
        limit,
        sealing_key,
    };
    ask(env, &op).await
}

/// Up to `batch` accounts for the cron: those due before `overdue_before` first (their alarm
/// did not fire), then the next of a rotation over all of them (`env_ids` and registered).
pub async fn pick(
    env: &Env,
    env_ids: Vec<String>,
    batch: usize,
    overdue_before: u64,
) -> Result<Picked, AppError> {
    let op = Op::Pick {
        env_ids,
        batch,
        overdue_before,
    };
    ask(env, &op).await
}

async fn ask<T: DeserializeOwned>(env: &Env, op: &Op) -> Result<T, AppError> {
    let failed = |e: worker::Error| runtime::internal("the account registry failed", e);
    let stub = env
        .durable_object(REGISTRY_BINDING)
        .and_then(|namespace| namespace.get_by_name(REGISTRY_NAME))
        .map_err(failed)?;
    let body = serde_json::to_value(op).map_err(|e| runtime::internal("encoding", e))?;
    faults::object_request(env, "registry", body["op"].as_str().unwrap_or_default());
    let body = body.to_string();
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init("https://account-registry/", &init).map_err(failed)?;
    let mut response = stub.fetch_with_request(request).await.map_err(failed)?;
    let answer: Value = response.json().await.map_err(failed)?;
    if response.status_code() != 200 {
        return Err(AppError::Relayed {
            status: response.status_code(),
            body: answer,
            retry_after_secs: None,
        });
    }
    serde_json::from_value(answer).map_err(|e| runtime::internal("unreadable registry answer", e))
}

#[durable_object]
pub struct AccountRegistry {
    state: State,
    env: Env,
    /// Whether this instance has created its tables (once per object life).
    schema_ready: std::cell::Cell<bool>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, appid TEXT NOT NULL, api TEXT NOT NULL,
    sealed_secret TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS accounts_by_appid ON accounts (appid, api);
    CREATE TABLE IF NOT EXISTS schedule (id TEXT PRIMARY KEY, due_at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS schedule_by_due ON schedule (due_at);
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS summaries (id TEXT PRIMARY KEY, summary TEXT NOT NULL)";

impl DurableObject for AccountRegistry {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            schema_ready: Default::default(),
        }
    }

    async fn fetch(&self, mut request: Request) -> worker::Result<Response> {
        let outcome = match request.json::<Op>().await {
            Ok(op) => self.handle(op),
            Err(e) => Err(runtime::internal("unreadable registry call", e)),
        };
        Ok(respond::result(outcome.map(|v| respond::json(200, &v))))
    }
}

impl AccountRegistry {
    fn handle(&self, op: Op) -> Result<Value, AppError> {
        let sql = self.state.storage().sql();
        let failed = |e: worker::Error| runtime::internal("the registry's storage failed", e);
        if !self.schema_ready.get() {
            sql.exec(SCHEMA, None).map_err(failed)?;
            self.schema_ready.set(true);
        }
        let one = |id: &str| -> Result<Option<Registered>, AppError> {
            let rows: Vec<Registered> = sql
                .exec("SELECT * FROM accounts WHERE id = ?", vec![id.into()])
                .and_then(|cursor| cursor.to_array())
                .map_err(failed)?;
            Ok(rows.into_iter().next())
        };
        match op {
            Op::Put { mut entry } => {
                // Two fetchers of one appid through one API invalidate each other's tokens
                // (WeCom apps of one corp share the corpid legitimately).
                let rival: Vec<Value> = sql
                    .exec(
                        "SELECT id FROM accounts WHERE appid = ? AND api = ? AND id != ? \
                         AND api != 'wecom'",
                        vec![
                            entry.appid.as_str().into(),
                            entry.api.as_str().into(),
                            entry.id.as_str().into(),
                        ],
                    )
                    .and_then(|cursor| cursor.to_array())
                    .map_err(failed)?;
                if let Some(rival) = rival.first() {
                    return Err(AppError::Conflict(format!(
                        "the account \"{}\" already fetches tokens for this appid through \
                         this API; two would invalidate each other's tokens",
                        rival["id"].as_str().unwrap_or_default()
                    )));
                }
                let existing = one(&entry.id)?;
                let authorizer = AccountKind::Authorizer.name();
                if let Some(existing) = &existing {
                    // An authorizer's refresh token lives in its object: an admin's write
                    // over it would orphan it (and the platform's over an admin's account
                    // is refused where it is made).
                    if existing.kind == authorizer && entry.kind != authorizer {
                        return Err(AppError::Conflict(format!(
                            "\"{}\" is an authorizer of the platform: withdraw its \
                             authorization instead",
                            entry.id
                        )));
                    }
                    entry.created_at = existing.created_at;
                }
                sql.exec(
                    "INSERT OR REPLACE INTO accounts \
                     (id, kind, appid, api, sealed_secret, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        entry.id.as_str().into(),
                        entry.kind.as_str().into(),
                        entry.appid.as_str().into(),
                        entry.api.as_str().into(),
                        entry.sealed_secret.as_str().into(),
                        (entry.created_at as i64).into(),
                        (entry.updated_at as i64).into(),
                    ],
                )
                .map_err(failed)?;
                let created = existing.is_none();
                let sharing_appid = sharing(&sql, &entry.appid)?;
                let sharing_previous_appid = match &existing {
                    Some(old) if old.appid != entry.appid => Some(sharing(&sql, &old.appid)?),
                    _ => None,
                };
                encode(&Stored {
                    entry,
                    created,
                    previous: existing,
                    sharing_appid,
                    sharing_previous_appid,
                })
            }
            Op::Get { id } => encode(&one(&id)?),
            Op::List { after, limit, kind } => {
                let (query, mut bindings) = match &kind {
                    None => (
                        "SELECT * FROM accounts WHERE id > ? ORDER BY id LIMIT ?",
                        vec![],
                    ),
                    Some(kind) => (
                        "SELECT * FROM accounts WHERE kind = ? AND id > ? ORDER BY id LIMIT ?",
                        vec![kind.as_str().into()],
                    ),
                };
                bindings.extend([after.as_str().into(), (limit as i64).into()]);
                let rows: Vec<Registered> = sql
                    .exec(query, bindings)
                    .and_then(|cursor| cursor.to_array())
                    .map_err(failed)?;
                encode(&rows)
            }
            Op::Delete { id } => {
                let existing = one(&id)?;
                sql.exec(
                    "DELETE FROM accounts WHERE id = ?",
                    vec![id.as_str().into()],
                )
                .map_err(failed)?;
                for table in ["schedule", "summaries"] {
                    sql.exec(
                        &format!("DELETE FROM {table} WHERE id = ?"),
                        vec![id.as_str().into()],
                    )
                    .map_err(failed)?;
                }
                let deleted = match existing {
                    Some(entry) => Some(Deleted {
                        sharing_appid: sharing(&sql, &entry.appid)?,
                        entry,
                    }),
                    None => None,
                };
                encode(&deleted)
            }
            Op::Report {
                id,
                due_at,
                summary,
            } => {
                sql.exec(
                    "INSERT OR REPLACE INTO summaries VALUES (?, ?)",
                    vec![id.as_str().into(), summary.to_string().into()],
                )
                .map_err(failed)?;
                match due_at {
                    Some(due_at) => sql.exec(
                        "INSERT OR REPLACE INTO schedule VALUES (?, ?)",
                        vec![id.as_str().into(), (due_at as i64).into()],
                    ),
                    None => sql.exec(
                        "DELETE FROM schedule WHERE id = ?",
                        vec![id.as_str().into()],
                    ),
                }
                .map_err(failed)?;
                encode(&Value::Null)
            }
            Op::Pick {
                env_ids,
                batch,
                overdue_before,
            } => encode(&self.pick(&sql, &env_ids, batch, overdue_before)?),
            Op::Census => {
                #[derive(Deserialize)]
                struct KeyCount {
                    key: String,
                    n: i64,
                }
                let rows: Vec<KeyCount> = sql
                    .exec(
                        "SELECT CASE WHEN sealed_secret LIKE 'v1:%' THEN 'v1' \
                         ELSE substr(sealed_secret, 4, 8) END AS key, COUNT(*) AS n \
                         FROM accounts WHERE kind != 'authorizer' GROUP BY key",
                        None,
                    )
                    .and_then(|cursor| cursor.to_array())
                    .map_err(failed)?;
                let census: Vec<(String, u64)> =
                    rows.into_iter().map(|r| (r.key, r.n as u64)).collect();
                encode(&census)
            }
            Op::Reseal { limit } => encode(&self.reseal(&sql, limit)?),
            Op::Statuses {
                ids,
                after,
                limit,
                sealing_key,
            } => {
                let rows = |query: &str, bindings| -> Result<Vec<StatusRow>, AppError> {
                    let rows: Vec<SummaryRow> = sql
                        .exec(query, bindings)
                        .and_then(|cursor| cursor.to_array())
                        .map_err(failed)?;
                    Ok(rows.into_iter().map(StatusRow::from).collect())
                };
                let mut by_id = Vec::new();
                for id in &ids {
                    by_id.extend(rows(
                        "SELECT ?1 AS id, a.kind, a.api, s.summary FROM (SELECT ?1 AS id) AS q \
                         LEFT JOIN accounts a ON a.id = q.id LEFT JOIN summaries s ON s.id = q.id \
                         WHERE a.id IS NOT NULL OR s.id IS NOT NULL",
                        vec![id.as_str().into()],
                    )?);
                }
                let (page, more) = match after {
                    None => (Vec::new(), false),
                    Some(after) => {
                        let mut page = rows(
                            "SELECT a.id, a.kind, a.api, s.summary FROM accounts a \
                             LEFT JOIN summaries s ON s.id = a.id WHERE a.id > ? \
                             ORDER BY a.id LIMIT ?",
                            vec![after.as_str().into(), (limit as i64 + 1).into()],
                        )?;
                        let more = page.len() > limit;
                        page.truncate(limit);
                        (page, more)
                    }
                };
                let older_sealed = match sealing_key {
                    None => None,
                    Some(key) => {
                        #[derive(Deserialize)]
                        struct Count {
                            n: i64,
                        }
                        let rows: Vec<Count> = sql
                            .exec(
                                "SELECT COUNT(*) AS n FROM accounts WHERE kind != 'authorizer' \
                                 AND sealed_secret NOT LIKE ?",
                                vec![format!("v2:{key}:%").into()],
                            )
                            .and_then(|cursor| cursor.to_array())
                            .map_err(failed)?;
                        rows.first().map(|c| c.n as u64)
                    }
                };
                encode(&StatusRows {
                    by_id,
                    page,
                    more,
                    older_sealed,
                })
            }
        }
    }

    /// Seals again under the sealing key up to `limit` secrets sealed under another, in one
    /// synchronous step (no admin write interleaves).
    fn reseal(&self, sql: &SqlStorage, limit: usize) -> Result<Resealed, AppError> {
        let failed = |e: worker::Error| runtime::internal("the registry's storage failed", e);
        let ring = runtime::key_ring(&self.env)?;
        let current = format!("v2:{}:%", ring.sealing_id());
        let older = "FROM accounts WHERE kind != 'authorizer' AND sealed_secret NOT LIKE ?";
        let entries: Vec<Registered> = sql
            .exec(
                &format!("SELECT * {older} ORDER BY id LIMIT ?"),
                vec![current.as_str().into(), (limit as i64).into()],
            )
            .and_then(|cursor| cursor.to_array())
            .map_err(failed)?;
        let (mut resealed, mut unopenable) = (Vec::new(), Vec::new());
        for mut entry in entries {
            let nonce = runtime::random_bytes::<NONCE_BYTES>();
            match ring.reseal(&entry.id, &entry.sealed_secret, nonce) {
                Ok(Some(sealed)) => {
                    sql.exec(
                        "UPDATE accounts SET sealed_secret = ? WHERE id = ?",
                        vec![sealed.as_str().into(), entry.id.as_str().into()],
                    )
                    .map_err(failed)?;
                    entry.sealed_secret = sealed;
                    resealed.push(entry);
                }
                Ok(None) => {}
                Err(_) => unopenable.push(entry.id),
            }
        }
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        let left: Vec<Count> = sql
            .exec(
                &format!("SELECT COUNT(*) AS n {older}"),
                vec![current.as_str().into()],
            )
            .and_then(|cursor| cursor.to_array())
            .map_err(failed)?;
        Ok(Resealed {
            resealed,
            remaining: left.first().map_or(0, |c| c.n as u64),
            unopenable,
        })
    }

    /// The cron's batch: accounts whose due time passed before `overdue_before` (a missed
    /// alarm) first, most overdue first; then the next accounts of a rotation over all of
    /// them (environment ids and registered ones, in id order), whose place is kept here.
    fn pick(
        &self,
        sql: &SqlStorage,
        env_ids: &[String],
        batch: usize,
        overdue_before: u64,
    ) -> Result<Picked, AppError> {
        let failed = |e: worker::Error| runtime::internal("the registry's storage failed", e);
        let ids = |query: &str, bindings: Vec<SqlStorageValue>| -> Result<Vec<String>, AppError> {
            let rows: Vec<IdRow> = sql
                .exec(query, bindings)
                .and_then(|cursor| cursor.to_array())
                .map_err(failed)?;
            Ok(rows.into_iter().map(|row| row.id).collect())
        };
        let known = |id: &str| -> Result<bool, AppError> {
            Ok(env_ids.iter().any(|e| e == id)
                || !ids("SELECT id FROM accounts WHERE id = ?", vec![id.into()])?.is_empty())
        };
        let mut overdue = Vec::new();
        let late = ids(
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
                sql.exec(
                    "DELETE FROM schedule WHERE id = ?",
                    vec![id.as_str().into()],
                )
                .map_err(failed)?;
            }
        }
        let cursor: String = ids(
            "SELECT value AS id FROM meta WHERE key = 'rotation'",
            vec![],
        )?
        .pop()
        .unwrap_or_default();
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
                let lapped =
                    after.is_empty() && !cursor.is_empty() && id.as_str() > cursor.as_str();
                if rotation.len() == room || lapped {
                    break;
                }
                if !overdue.contains(&id) && !rotation.contains(&id) {
                    rotation.push(id);
                }
            }
        }
        if let Some(last) = rotation.last() {
            sql.exec(
                "INSERT OR REPLACE INTO meta VALUES ('rotation', ?)",
                vec![last.as_str().into()],
            )
            .map_err(failed)?;
        }
        Ok(Picked { overdue, rotation })
    }
}

/// The ids registered with `appid`, in id order.
fn sharing(sql: &SqlStorage, appid: &str) -> Result<Vec<String>, AppError> {
    let rows: Vec<IdRow> = sql
        .exec(
            "SELECT id FROM accounts WHERE appid = ? ORDER BY id",
            vec![appid.into()],
        )
        .and_then(|cursor| cursor.to_array())
        .map_err(|e| runtime::internal("the registry's storage failed", e))?;
    Ok(rows.into_iter().map(|row| row.id).collect())
}

fn encode<T: Serialize>(value: &T) -> Result<Value, AppError> {
    serde_json::to_value(value).map_err(|e| runtime::internal("encoding", e))
}
