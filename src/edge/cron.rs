//! The cron trigger, a watchdog now that each account's object sets its own alarm: every run
//! visits at most `CRON_BATCH` accounts, first those whose due time passed without their alarm
//! firing (the registry keeps every account's due time), then the next few of a rotation over
//! all of them, so every account is looked at now and then whatever happens to its alarm.
//!
//! Accounts are visited concurrently and each outcome is logged on its own, so one failing
//! account neither stops nor delays the others. The scheduled macro discards returned errors,
//! so every failure is logged here.

use crate::edge::adapters::runtime::{self, log_error, log_event, now_secs};
use crate::edge::objects::object_client;
use crate::edge::objects::registry::{self, Picked};
use crate::policy::schedule::overdue_after_secs;
use futures_util::future::join_all;
use serde_json::{json, Value};
use worker::{event, Env, ScheduleContext, ScheduledEvent};

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    console_error_panic_hook::set_once();
    let settings = match runtime::settings(&env) {
        Ok(settings) => settings,
        Err(e) => {
            log_error(json!({ "event": "cron", "outcome": e.code(), "message": e.message() }));
            return;
        }
    };
    let env_ids: Vec<String> = settings.accounts.iter().map(|a| a.id.clone()).collect();
    let batch = settings.cron_batch;
    let overdue_after = overdue_after_secs(settings.refresh.margin_secs);
    let overdue_before = now_secs().saturating_sub(overdue_after);
    let picked = match registry::pick(&env, env_ids.clone(), batch, overdue_before).await {
        Ok(picked) => picked,
        Err(e) => {
            // Without the registry, the environment accounts at least.
            log_error(json!({ "event": "cron_run", "outcome": e.code(), "message": e.message() }));
            let rotation = env_ids.into_iter().take(batch).collect();
            Picked {
                overdue: Vec::new(),
                rotation,
                erase: Vec::new(),
                repaired: 0,
            }
        }
    };
    let ids: Vec<&String> = picked.overdue.iter().chain(&picked.rotation).collect();
    log_event(json!({
        "event": "cron_run",
        "batch": batch,
        "overdue": picked.overdue,
        "rotation": picked.rotation.len(),
        "erased": picked.erase.len(),
        "kv_repaired": picked.repaired,
        // The registry, one call per account, two per removal to finish.
        "subrequests": 1 + ids.len() + 2 * picked.erase.len(),
    }));
    let erasures = join_all(
        picked
            .erase
            .iter()
            .map(|(id, at)| finish_removal(&env, id, *at)),
    );
    let visits = join_all(ids.into_iter().map(|id| visit(&env, id)));
    futures_util::future::join(erasures, visits).await;
}

/// A removal left half done (its object not erased): erased now, then buried.
async fn finish_removal(env: &Env, account_id: &str, deleted_at: u64) {
    let outcome = match object_client::erase(env, account_id, None).await {
        Ok(()) => registry::bury(env, account_id, deleted_at).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => log_event(json!({ "event": "cron", "account": account_id, "outcome": "erased" })),
        Err(e) => log_error(json!({
            "event": "cron", "account": account_id, "outcome": e.code(), "message": e.message(),
        })),
    }
}

async fn visit(env: &Env, account_id: &str) {
    let summary = object_client::cron(env, account_id)
        .await
        .unwrap_or_else(|e| {
            json!({ "token": {
            "status": e.status(), "outcome": e.code(), "message": e.message(),
            "wechat_rid": e.rid(),
        } })
        });
    let token = &summary["token"];
    let tickets = summary.get("tickets").cloned().unwrap_or(json!({}));
    let failed = |outcome: &Value| outcome["status"] != json!(200);
    let fields = json!({
        "event": "cron",
        "account": account_id,
        "status": token["status"],
        "outcome": token["outcome"],
        "message": token.get("message"),
        "wechat_rid": token.get("wechat_rid"),
        "tickets": tickets,
    });
    let any_ticket_failed = tickets.as_object().is_some_and(|t| t.values().any(failed));
    if failed(token) || any_ticket_failed {
        log_error(fields);
    } else {
        log_event(fields);
    }
}
