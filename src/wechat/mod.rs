//! WeChat's protocol: what its token and ticket APIs take and answer (`api`) and the JS-SDK's
//! page signature (`jssdk`); what its error codes mean lives with the error type
//! (`error::wechat_codes`). Pure: no runtime types; it may use the domain policy and the error
//! type, never the edge.

pub mod api;
pub mod jssdk;
pub mod openapi;
pub mod platform;
pub mod push;
pub mod wecom_service;
