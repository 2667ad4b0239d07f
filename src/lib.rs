//! WeChat access_token central server (中控服务器) as a Cloudflare Worker.
//!
//! Pure policy, unit-tested on the host: `config`, `auth`, `token`, `wechat`, `error`,
//! `singleflight`. Worker glue, one concern each: `router` (HTTP), `account_object` (the
//! Durable Object that owns an account's token), `upstream` (the call to WeChat), `kv_cache`,
//! `cron`, `respond`, `runtime` (env, clock, logs).

pub mod accounts;
pub mod api;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod error;
pub mod fingerprint;
pub mod jssdk;
pub mod quota;
pub mod singleflight;
pub mod status;
pub mod token;
pub mod wechat;

mod access;
mod account_object;
mod body;
mod compat;
mod cron;
mod faults;
mod kv_cache;
mod memo;
mod reader;
mod refresher;
mod respond;
mod router;
mod runtime;
mod upstream;

pub use account_object::AccountTokenObject;
