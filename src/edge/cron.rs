//! The cron trigger: refresh every account's token, and the tickets it uses, inside the margin.
//!
//! Accounts are visited concurrently and each outcome is logged on its own, so one failing
//! account neither stops nor delays the others. The scheduled macro discards returned errors,
//! so every failure is logged here.

use crate::edge::account_object;
use crate::edge::registry;
use crate::edge::runtime::{self, log_error, log_event};
use crate::policy::registry::MAX_PAGE;
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
    let mut ids: Vec<String> = settings.accounts.iter().map(|a| a.id.clone()).collect();
    let mut after = String::new();
    loop {
        let page = match registry::list(&env, &after, MAX_PAGE).await {
            Ok(page) => page,
            Err(e) => {
                log_error(json!({ "event": "cron", "outcome": e.code(), "message": e.message() }));
                break;
            }
        };
        let full = page.len() == MAX_PAGE;
        after = page.last().map(|e| e.id.clone()).unwrap_or_default();
        ids.extend(page.into_iter().map(|e| e.id));
        if !full {
            break;
        }
    }
    join_all(ids.iter().map(|id| visit(&env, id))).await;
}

async fn visit(env: &Env, account_id: &str) {
    let summary = account_object::cron(env, account_id).await.unwrap_or_else(|e| {
        json!({ "token": { "status": e.status(), "outcome": e.code(), "message": e.message() } })
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
        "tickets": tickets,
    });
    let any_ticket_failed = tickets.as_object().is_some_and(|t| t.values().any(failed));
    if failed(token) || any_ticket_failed {
        log_error(fields);
    } else {
        log_event(fields);
    }
}
