//! WeChat's protocol: what its token and ticket APIs take and answer (`api`), what its error
//! codes mean (`errcodes`), and the JS-SDK's tickets and page signature (`jssdk`). Pure: no
//! `worker` types; it may use the domain policy and the error type, never the edge.

pub mod api;
pub mod errcodes;
pub mod jssdk;
