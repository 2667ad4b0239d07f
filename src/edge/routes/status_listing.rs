//! The `/status` listing: a page of accounts from the summaries their objects reported to the
//! registry, in one registry call whatever the page size (never a call per account). A key
//! limited to some accounts pages through its own list only, so no answer names, counts or
//! hints at another account.

use crate::edge::adapters::runtime;
use crate::edge::objects::registry::{self as registry_object, StatusRow, StatusRows};
use crate::error::AppError;
use crate::policy::accounts::Account;
use crate::policy::auth::Grant;
use crate::policy::config::Settings;
use crate::policy::registry::{self, Cursor};
use crate::policy::status;
use serde_json::Value;
use worker::Env;

/// One page of the listing.
pub struct Page {
    pub accounts: Vec<Value>,
    pub next_cursor: Option<String>,
    /// For a key that sees every account: how many runtime accounts are still sealed under
    /// an older key of `ACCOUNTS_ENCRYPTION_KEY` (None without runtime accounts' key).
    pub sealed_under_older_keys: Option<u64>,
}

/// One page from `cursor` (as the client sent it).
pub async fn page(
    env: &Env,
    settings: &Settings,
    grant: &Grant,
    cursor: Option<&str>,
    limit: usize,
    now: u64,
) -> Result<Page, AppError> {
    let (mut accounts, next, sealed_under_older_keys) = match grant.own_accounts() {
        Some(own) => {
            let offset = Cursor::parse_scoped(cursor)?;
            let (entries, next) = scoped_page(env, settings, &own, offset, limit).await?;
            (entries, next, None)
        }
        None => full_page(env, settings, cursor, limit).await?,
    };
    accounts.iter_mut().for_each(|e| status::as_of(e, now));
    Ok(Page {
        accounts,
        next_cursor: next.map(|c| c.encode()),
        sealed_under_older_keys,
    })
}

/// Every account: the environment's first, in their configured order, then registered ones.
async fn full_page(
    env: &Env,
    settings: &Settings,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Value>, Option<Cursor>, Option<u64>), AppError> {
    let cursor = Cursor::parse(cursor)?;
    let (env_part, next) = registry::env_page(&settings.accounts, &cursor, limit);
    let room = limit - env_part.len();
    let after = match &next {
        Some(Cursor::Runtime(after)) if room > 0 => Some(after.clone()),
        _ => None,
    };
    let ids = env_part.iter().map(|a| a.id.clone()).collect();
    // The sealing key, where runtime accounts have one.
    let sealing_key = runtime::key_ring(env)
        .ok()
        .map(|r| r.sealing_id().to_owned());
    let rows = registry_object::statuses(env, ids, (after.clone(), room), sealing_key).await?;
    let mut entries = env_entries(&env_part, &rows);
    let last = rows.page.last().map(|r| r.id.clone());
    entries.extend(rows.page.into_iter().filter_map(registered_entry));
    let next = match (after, rows.more, last) {
        (None, _, _) => next,
        (Some(_), true, Some(last)) => Some(Cursor::Runtime(last)),
        (Some(_), _, _) => None,
    };
    Ok((entries, next, rows.older_sealed))
}

/// Page `number` (from 0) of `per_page` accounts for `/metrics`, as of `now`, in one registry
/// call; for a key that sees every account, on the first page, with the server's counters.
pub async fn metrics_page(
    env: &Env,
    settings: &Settings,
    grant: &Grant,
    (number, per_page): (usize, usize),
    now: u64,
) -> Result<(Vec<Value>, Option<Vec<(String, u64)>>), AppError> {
    let offset = number.saturating_mul(per_page);
    let (mut entries, counters) = match grant.own_accounts() {
        Some(own) => {
            let (entries, _) = scoped_page(env, settings, &own, offset, per_page).await?;
            (entries, None)
        }
        None => {
            let (env_part, _) =
                registry::env_page(&settings.accounts, &Cursor::Env(offset), per_page);
            let skip = offset.saturating_sub(settings.accounts.len());
            let room = per_page - env_part.len();
            let ids = env_part.iter().map(|a| a.id.clone()).collect();
            // The server's counters are shown once, on the first page.
            let with_counters = number == 0;
            let rows = registry_object::metrics_rows(env, ids, skip, room, with_counters).await?;
            let mut entries = env_entries(&env_part, &rows);
            entries.extend(rows.page.into_iter().filter_map(registered_entry));
            (entries, with_counters.then_some(rows.counters))
        }
    };
    entries.iter_mut().for_each(|e| status::as_of(e, now));
    Ok((entries, counters))
}

/// The environment accounts' entries: each one's summary, or what is known before it reports.
fn env_entries(env_part: &[&Account], rows: &StatusRows) -> Vec<Value> {
    env_part
        .iter()
        .map(|account| {
            let summary = rows.by_id.iter().find(|r| r.id == account.id);
            summary.and_then(|r| r.summary.clone()).unwrap_or_else(|| {
                status::unreported(&account.id, account.kind.name(), account.api.name())
            })
        })
        .collect()
}

/// A limited key's own accounts, by id, those that exist.
async fn scoped_page(
    env: &Env,
    settings: &Settings,
    own: &[&str],
    offset: usize,
    limit: usize,
) -> Result<(Vec<Value>, Option<Cursor>), AppError> {
    let window: Vec<&str> = own.iter().skip(offset).take(limit).copied().collect();
    let ids = window.iter().map(|id| (*id).to_owned()).collect();
    let rows = registry_object::statuses(env, ids, (None, 0), None).await?;
    let mut entries = Vec::new();
    for id in &window {
        let row = rows.by_id.iter().find(|r| r.id == *id);
        match settings.account(id) {
            Ok(account) => entries.push(row.and_then(|r| r.summary.clone()).unwrap_or_else(|| {
                status::unreported(id, account.kind.name(), account.api.name())
            })),
            Err(_) => {
                if let Some(entry) = row.and_then(|r| registered_entry(r.clone())) {
                    entries.push(entry);
                }
            }
        }
    }
    let end = offset + window.len();
    let next = (end < own.len()).then_some(Cursor::Scoped(end));
    Ok((entries, next))
}

/// A registered account's entry: its summary, or what is known before it reports. None for a
/// row that is not registered (an account that left the environment).
fn registered_entry(row: StatusRow) -> Option<Value> {
    let (kind, api) = row.registered?;
    Some(
        row.summary
            .unwrap_or_else(|| status::unreported(&row.id, &kind, &api)),
    )
}
