//! The runtime's services, thinly wrapped: settings and logs (`runtime`), isolate memory
//! (`memo`), KV (`kv_cache`), outbound fetch (`upstream`), bodies (`request`, `streams`),
//! responses (`respond`), one webhook message (`webhooks`), counts no object sees (`tally`),
//! test-only faults (`faults`).

pub mod faults;
pub mod kv_cache;
pub mod memo;
pub mod request;
pub mod respond;
pub mod runtime;
pub mod streams;
pub mod tally;
pub mod upstream;
pub mod webhooks;
