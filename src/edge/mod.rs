//! The edge: everything that touches the Workers runtime, in three rooms and two doors. Each
//! room may use the ones below it, never one above (`scripts/check-layers` checks it):
//!
//! - `adapters/`: the runtime's services, thinly wrapped (settings and logs, isolate memory,
//!   KV, outbound fetch, bodies and streams, responses, webhooks, test faults).
//! - `objects/`: the Durable Objects (an account's, the registry, the alert outbox), their
//!   state, and the clients that reach them (the read-through, the account directory).
//! - `routes/`: what each request gets (the token routes' WeChat-compatible twins, the
//!   gateway, the admin API, the platform, `/status` and its page); route modules never use
//!   each other, only `access`, the one authentication path.
//! - The doors: `router` (every HTTP request) and `cron` (the scheduled watchdog).
//!
//! It uses the policy and the protocol; nothing below uses it.

mod adapters;
mod cron;
pub mod objects;
mod router;
mod routes;
