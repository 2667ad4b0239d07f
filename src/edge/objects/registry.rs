//! The account registry: one Durable Object (SQLite storage) holding every account registered
//! at runtime, its appsecret sealed, and every account's next due time and `/status` summary
//! (each object reports its own), so that the cron finds missed alarms among thousands of
//! accounts with one indexed query and `/status` reads a page in one call; and the worker's
//! client for it. It is the truth for registrations and alone writes their copies in KV (which
//! the edge reads, so that resolving an account costs no object call), in order; the admin
//! API then tells the account's own object.

mod object;
mod sealed;
mod summaries;
mod tables;

pub use object::{appid_key, descriptor_key, AccountRegistry};

use crate::edge::adapters::faults;
use crate::edge::adapters::runtime::{self, REGISTRY_BINDING};
use crate::edge::objects::object_call;
use crate::error::AppError;
use crate::policy::accounts::AccountKind;
use crate::policy::registry::Registered;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use worker::Env;

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
    /// Removes an account (its KV copies too), leaving a tombstone until its object is
    /// erased; answers [`Deleted`] (also for a removal left half done), or null.
    Delete {
        id: String,
    },
    /// The removal of `id` at `deleted_at` is finished: its object is erased.
    Bury {
        id: String,
        deleted_at: u64,
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
        /// Registered accounts to pass over before the page (`/metrics?page=`).
        #[serde(default)]
        skip: usize,
        /// Add the server's counters (`/metrics`).
        #[serde(default)]
        with_counters: bool,
    },
    /// Adds to the server's counters (`[name, amount]`), such as the gateway's calls by
    /// status class that isolates tallied.
    Count {
        counts: Vec<(String, u64)>,
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

/// The cron's batch: removals to finish, accounts whose alarm was missed, then the
/// rotation's next ones; and how many KV copies the registry wrote again on the way.
#[derive(Serialize, Deserialize)]
pub struct Picked {
    pub overdue: Vec<String>,
    pub rotation: Vec<String>,
    /// Removed accounts whose object is still to be erased, with when they were removed.
    #[serde(default)]
    pub erase: Vec<(String, u64)>,
    #[serde(default)]
    pub repaired: usize,
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
    /// The server's counters, when asked for.
    #[serde(default)]
    pub counters: Vec<(String, u64)>,
}

/// What a reseal did: the entries it changed (for the edge's copies), and what is left.
#[derive(Serialize, Deserialize)]
pub struct Resealed {
    pub resealed: Vec<Registered>,
    /// Still sealed under another key after this batch.
    pub remaining: u64,
    /// Entries no key of `ACCOUNTS_ENCRYPTION_KEY` opens (their ids).
    pub unopenable: Vec<String>,
    /// Entries whose copy in KV is not written yet (a failed write: the cron writes it).
    #[serde(default)]
    pub edge_pending: u64,
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
    /// Whether KV has it now (if not, the cron writes it within a run or two).
    #[serde(default)]
    pub published: bool,
    /// It replaces a removal left half done: its object still holds the removed account's
    /// state, to be erased before use.
    #[serde(default)]
    pub revived: bool,
}

/// What a delete did: the removed entry, who is still registered with its appid, and when
/// it was removed (its tombstone's time, for the burial).
#[derive(Serialize, Deserialize)]
pub struct Deleted {
    pub entry: Registered,
    pub sharing_appid: Vec<String>,
    pub deleted_at: u64,
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

pub async fn bury(env: &Env, id: &str, deleted_at: u64) -> Result<(), AppError> {
    let op = Op::Bury {
        id: id.to_owned(),
        deleted_at,
    };
    ask::<Value>(env, &op).await.map(drop)
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
        skip: 0,
        with_counters: false,
    };
    ask(env, &op).await
}

/// A `/metrics` page in one registry call: the summaries of `ids` (environment accounts),
/// then up to `limit` registered accounts after the first `skip`, and, if asked, the server's
/// counters.
pub async fn metrics_rows(
    env: &Env,
    ids: Vec<String>,
    skip: usize,
    limit: usize,
    with_counters: bool,
) -> Result<StatusRows, AppError> {
    let op = Op::Statuses {
        ids,
        after: Some(String::new()),
        limit,
        sealing_key: None,
        skip,
        with_counters,
    };
    ask(env, &op).await
}

/// Adds `counts` to the server's counters.
pub async fn count(env: &Env, counts: Vec<(String, u64)>) -> Result<(), AppError> {
    ask::<Value>(env, &Op::Count { counts }).await.map(drop)
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

/// How long a caller waits for the registry: its table, and the KV writes of an account or
/// two. A reseal writes up to `RESEAL_BATCH` entries under the write lock, so it, and what
/// takes that lock after it (a write, the cron's pick and repairs), waits longer: a write
/// answered "no answer" would still land.
const REGISTRY_BUDGET_MS: u64 = 15_000;
const WRITE_BUDGET_MS: u64 = 60_000;
const REGISTRY: &str = "the account registry";

async fn ask<T: DeserializeOwned>(env: &Env, op: &Op) -> Result<T, AppError> {
    let failed = |e: worker::Error| runtime::internal(&format!("{REGISTRY} failed"), e);
    let stub = env
        .durable_object(REGISTRY_BINDING)
        .and_then(|namespace| namespace.get_by_name(REGISTRY_NAME))
        .map_err(failed)?;
    let body = serde_json::to_value(op).map_err(|e| runtime::internal("encoding", e))?;
    faults::object_request(env, "registry", body["op"].as_str().unwrap_or_default());
    let budget_ms = match op {
        Op::Reseal { .. } | Op::Put { .. } | Op::Delete { .. } | Op::Pick { .. } => WRITE_BUDGET_MS,
        _ => REGISTRY_BUDGET_MS,
    };
    let mut response = object_call::post(&stub, REGISTRY, &body.to_string(), budget_ms).await?;
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
