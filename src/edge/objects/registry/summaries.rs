//! The accounts' `/status` summaries and due times, as their objects report them, and the
//! listing's pages read from them.

use super::sealed::{sealed_by, OLDER_SEALED};
use super::tables::{count, exec, rows};
use super::{StatusRow, StatusRows};
use crate::error::AppError;
use serde::Deserialize;
use serde_json::Value;
use worker::SqlStorage;

pub fn report(
    sql: &SqlStorage,
    id: &str,
    due_at: Option<u64>,
    summary: &Value,
) -> Result<(), AppError> {
    exec(
        sql,
        "INSERT OR REPLACE INTO summaries VALUES (?, ?)",
        vec![id.into(), summary.to_string().into()],
    )?;
    match due_at {
        Some(due_at) => exec(
            sql,
            "INSERT OR REPLACE INTO schedule VALUES (?, ?)",
            vec![id.into(), (due_at as i64).into()],
        ),
        None => exec(sql, "DELETE FROM schedule WHERE id = ?", vec![id.into()]),
    }
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

/// A `/status` page (see `Op::Statuses`).
pub fn statuses(
    sql: &SqlStorage,
    ids: &[String],
    (after, skip, limit): (Option<&str>, usize, usize),
    sealing_key: Option<&str>,
) -> Result<StatusRows, AppError> {
    let summaries = |query: &str, bindings| -> Result<Vec<StatusRow>, AppError> {
        let found: Vec<SummaryRow> = rows(sql, query, bindings)?;
        Ok(found.into_iter().map(StatusRow::from).collect())
    };
    let mut by_id = Vec::new();
    for id in ids {
        by_id.extend(summaries(
            "SELECT ?1 AS id, a.kind, a.api, s.summary FROM (SELECT ?1 AS id) AS q \
             LEFT JOIN accounts a ON a.id = q.id LEFT JOIN summaries s ON s.id = q.id \
             WHERE a.id IS NOT NULL OR s.id IS NOT NULL",
            vec![id.as_str().into()],
        )?);
    }
    let (page, more) = match after {
        None => (Vec::new(), false),
        Some(after) => {
            let mut page = summaries(
                "SELECT a.id, a.kind, a.api, s.summary FROM accounts a \
                 LEFT JOIN summaries s ON s.id = a.id WHERE a.id > ? ORDER BY a.id \
                 LIMIT ? OFFSET ?",
                vec![
                    after.into(),
                    (limit as i64 + 1).into(),
                    (skip as i64).into(),
                ],
            )?;
            let more = page.len() > limit;
            page.truncate(limit);
            (page, more)
        }
    };
    let older_sealed = match sealing_key {
        Some(key) => Some(count(
            sql,
            &format!("SELECT COUNT(*) AS n {OLDER_SEALED}"),
            vec![sealed_by(key)],
        )?),
        None => None,
    };
    Ok(StatusRows {
        by_id,
        page,
        more,
        older_sealed,
        counters: Vec::new(),
    })
}

#[derive(Deserialize)]
struct CounterRow {
    name: String,
    value: i64,
}

/// The server's counters, by name.
pub fn counters(sql: &SqlStorage) -> Result<Vec<(String, u64)>, AppError> {
    let found: Vec<CounterRow> = rows(
        sql,
        "SELECT name, value FROM counters ORDER BY name",
        vec![],
    )?;
    Ok(found
        .into_iter()
        .map(|row| (row.name, row.value.max(0) as u64))
        .collect())
}

pub fn add_counts(sql: &SqlStorage, counts: &[(String, u64)]) -> Result<(), AppError> {
    for (name, amount) in counts {
        exec(
            sql,
            "INSERT INTO counters VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = value + ?2",
            vec![name.as_str().into(), (*amount as i64).into()],
        )?;
    }
    Ok(())
}
