//! The edge: everything that touches the Workers runtime. The HTTP entry (`router`, with the
//! one authentication path in `access`, request bodies and queries in `request`, responses in
//! `respond`, the gateway's bodies in `streams`), the read-through from isolate memory (`memo`)
//! and KV (`kv_cache`) to the account's Durable Object (`account_object`), which refreshes
//! through `refresher` and calls WeChat through `upstream`; the WeChat-compatible endpoints
//! (`compat`), the API gateway (`gateway`), the cron, runtime adapters (`runtime`) and
//! test-only fault injection (`faults`). It uses the policy and the protocol; nothing below
//! uses it.

mod access;
pub mod account_object;
mod admin;
pub mod alert_outbox;
mod compat;
mod cron;
mod directory;
mod faults;
mod gateway;
mod kv_cache;
mod memo;
mod object_call;
mod object_client;
mod platform;
mod reader;
mod refresher;
pub mod registry;
mod request;
mod respond;
mod router;
mod runtime;
mod status_listing;
mod status_page;
mod streams;
mod upstream;
mod webhooks;
