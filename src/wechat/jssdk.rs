//! The JS-SDK's page signature for `wx.config`. Pure.

use crate::error::AppError;
use serde_json::{json, Value};

/// The page URL to sign: http(s) only, without its `#fragment` (WeChat signs without it).
pub fn page_url(value: Option<&str>) -> Result<&str, AppError> {
    let url = value.map(str::trim).unwrap_or_default();
    let url = url.split('#').next().unwrap_or_default();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(url),
        _ => Err(AppError::BadRequest(
            "url must be the page's full http:// or https:// address".into(),
        )),
    }
}

/// WeChat's JS-SDK signature: SHA-1 of the four fields in this (sorted) order.
pub fn signature(jsapi_ticket: &str, noncestr: &str, timestamp: u64, url: &str) -> String {
    let text =
        format!("jsapi_ticket={jsapi_ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}");
    sha1_smol::Sha1::from(text).digest().to_string()
}

/// The `GET /jssdk/signature` answer, ready for `wx.config`.
pub fn signature_answer(
    appid: &str,
    jsapi_ticket: &str,
    noncestr: &str,
    timestamp: u64,
    url: &str,
) -> Value {
    json!({
        "appId": appid,
        "timestamp": timestamp,
        "nonceStr": noncestr,
        "signature": signature(jsapi_ticket, noncestr, timestamp, url),
        "url": url,
    })
}

/// A nonce of `[A-Za-z0-9]` from random bytes.
pub fn nonce_from(random: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_wechats_published_example() {
        // The worked example in WeChat's JS-SDK documentation (appendix 1).
        let ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";
        let signature = signature(
            ticket,
            "Wm3WZYTPz0wzccnW",
            1414587457,
            "http://mp.weixin.qq.com?params=value",
        );
        assert_eq!(signature, "0f9de62fce790f9a083d5c99e95740ceb90c27ed");
    }

    #[test]
    fn page_urls() {
        assert_eq!(
            page_url(Some("https://a.example/p?q=1#frag")),
            Ok("https://a.example/p?q=1")
        );
        assert_eq!(page_url(Some("http://a.example")), Ok("http://a.example"));
        for bad in [
            None,
            Some(""),
            Some("a.example/p"),
            Some("ftp://a.example"),
            Some("https://"),
            Some("https:///x"),
            Some("javascript:alert(1)"),
        ] {
            assert!(
                matches!(page_url(bad), Err(AppError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn nonces_use_letters_and_digits() {
        assert_eq!(nonce_from(&[0, 61, 62, 255]), "A9AH");
    }
}
