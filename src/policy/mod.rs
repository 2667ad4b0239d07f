//! The domain policy: accounts and configuration, client keys, token and ticket freshness and
//! the refresh decision, backoff, WeChat's quota day, what `/status` shows, and the request
//! rules of the HTTP API, the runtime account registry and its sealed secrets. Pure: no `worker` types, every rule unit-tested natively with an
//! explicit "now"; it uses only the error type and (for explanations) WeChat's error codes.

pub mod accounts;
pub mod alerts;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod counters;
pub mod fingerprint;
pub mod gateway;
pub mod ledger;
pub mod metrics;
pub mod outbox;
pub mod platform;
pub mod quota;
pub mod refresh;
pub mod registry;
pub mod requests;
pub mod schedule;
pub mod sealing;
pub mod status;
pub mod test_switches;
pub mod ticket;
pub mod token;
pub mod watch;
pub mod webhook;
pub mod wecom_provider;
