//! WeChat access_token central server (中控服务器) as a Cloudflare Worker.
//!
//! The map, from the bottom up: each layer may use the ones above it in this list, never one
//! below (`scripts/check-layers` checks it, and that no modules import each other in a cycle).
//!
//! - `error` (+ `error/wechat_codes`): the one error type, what each failure means over HTTP,
//!   and what WeChat's error codes mean. Uses nothing else of the crate.
//! - `policy/`: the domain rules (accounts, configuration, client keys and scopes, token and
//!   ticket records, freshness and the refresh decision, backoff, quota day, the object's
//!   ledger, `/status`, request rules, what the gateway forwards). Pure, unit-tested natively; may use `error`.
//! - `wechat/`: WeChat's protocol (token and ticket requests and answers, the JS-SDK signature).
//!   Pure; may use `error` and `policy`.
//! - `edge/`: the Workers glue, the only place with runtime types; may use everything above.
//!   Its rooms, bottom up: `adapters/` (the runtime's services), `objects/` (the Durable
//!   Objects and their clients), `routes/` (what each request gets); its doors, `router` and
//!   `cron`, use them all.

pub mod error;
pub mod policy;
pub mod wechat;

mod edge;

pub use edge::objects::account_object::AccountTokenObject;
pub use edge::objects::alert_outbox::AlertOutbox;
pub use edge::objects::registry::AccountRegistry;
