//! What each request gets: WeChat's own endpoints (`compat`), the API gateway (`gateway`), the
//! admin API (`admin`), the third-party platform (`platform`), `/status` and its page
//! (`status_listing`, also read for `/metrics`, `status_page`), and what the operator asks
//! WeChat (`diagnostics`). They never use each other; `access`, the one
//! authentication path, is theirs to share.

pub mod access;
pub mod admin;
pub mod compat;
pub mod diagnostics;
pub mod gateway;
pub mod platform;
pub mod status_listing;
pub mod status_page;
pub mod wecom_provider;
