//! WeChat access_token central server (中控服务器) as a Cloudflare Worker.
//!
//! The map, from the bottom up (imports point one way: down this list):
//!
//! - `error`: the one error type and what each failure means over HTTP; uses only
//!   `wechat::errcodes` (a leaf) to explain WeChat's codes.
//! - `policy/`: the domain rules (accounts, configuration, client keys, freshness and the refresh
//!   decision, backoff, quota day, `/status`, request rules). Pure, unit-tested natively.
//! - `wechat/`: WeChat's protocol (requests, answers, error codes, JS-SDK signature). Pure; may use
//!   `policy`.
//! - `edge/`: the Workers glue (routes, the Durable Object and its refresher, KV, upstream calls,
//!   cron, runtime adapters, responses). The only place with `worker` types.

pub mod error;
pub mod policy;
pub mod wechat;

mod edge;

pub use edge::account_object::AccountTokenObject;
