//! The cron trigger: refresh every account whose token is inside the margin.
//!
//! Accounts are visited concurrently and each outcome is logged on its own, so one failing
//! account neither stops nor delays the others. The scheduled macro discards returned errors,
//! so every failure is logged here.

use crate::account_object;
use crate::runtime::{self, join_all, log_error, log_event};
use crate::token::Trigger;
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
    let visits = settings
        .accounts
        .iter()
        .map(|account| refresh_if_due(&env, &account.id));
    join_all(visits.collect()).await;
}

async fn refresh_if_due(env: &Env, account_id: &str) {
    match account_object::ask(env, account_id, Trigger::Cron).await {
        Ok(mut response) => {
            // Cron answers carry an outcome or an error, never a token.
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let fields = json!({
                "event": "cron",
                "account": account_id,
                "status": response.status_code(),
                "outcome": body.get("outcome").or(body.get("error")),
                "message": body.get("message"),
            });
            if response.status_code() == 200 {
                log_event(fields);
            } else {
                log_error(fields);
            }
        }
        Err(e) => log_error(
            json!({ "event": "cron", "account": account_id, "outcome": e.code(), "message": e.message() }),
        ),
    }
}
