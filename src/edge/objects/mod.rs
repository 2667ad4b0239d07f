//! The Durable Objects and what reaches them: an account's object (`account_object`, at work
//! in `refresher/`), the registry of runtime accounts (`registry`), the alert outbox
//! (`alert_outbox`); their clients (`object_client`, `object_call`), the read-through from
//! memory and KV (`reader`), which account a request names (`directory`), and removals.

pub mod account_object;
pub mod alert_outbox;
pub mod directory;
pub mod object_call;
pub mod object_client;
pub mod reader;
mod refresher;
pub mod registry;
pub mod removal;
pub mod wecom_corps;
