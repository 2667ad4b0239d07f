//! JS-SDK tickets and the page signature. Pure.

use crate::accounts::AccountKind;
use crate::error::AppError;
use crate::token::Credential;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketKind {
    /// For `wx.config` on web pages.
    Jsapi,
    /// For card and coupon JS APIs.
    WxCard,
}

impl TicketKind {
    pub const ALL: [TicketKind; 2] = [Self::Jsapi, Self::WxCard];

    pub fn name(self) -> &'static str {
        match self {
            Self::Jsapi => "jsapi",
            Self::WxCard => "wx_card",
        }
    }

    /// `?type=` of `/ticket`. WeCom has no card tickets.
    pub fn parse(value: Option<&str>, kind: AccountKind) -> Result<Self, AppError> {
        let ticket = match value {
            Some("jsapi") => Self::Jsapi,
            Some("wx_card") => Self::WxCard,
            _ => return Err(AppError::BadRequest("type must be jsapi or wx_card".into())),
        };
        match kind {
            AccountKind::WeCom if ticket == Self::WxCard => Err(AppError::BadRequest(
                "WeCom accounts have no wx_card ticket".into(),
            )),
            AccountKind::MiniProgram => Err(AppError::BadRequest(
                "mini programs have no JS-SDK tickets (jsapi and wx_card are for web pages in \
                 WeChat, through an official account)"
                    .into(),
            )),
            _ => Ok(ticket),
        }
    }
}

/// A ticket as stored in the account's Durable Object and in KV.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    pub ticket: String,
    pub expires_at: u64,
    pub refreshed_at: u64,
    /// `Account::config_fingerprint` of the configuration that fetched it.
    #[serde(default)]
    pub issued_for: String,
}

impl Credential for TicketRecord {
    fn value(&self) -> &str {
        &self.ticket
    }
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
    fn issued_for(&self) -> &str {
        &self.issued_for
    }
}

impl TicketRecord {
    pub fn issued(ticket: String, expires_in: u64, requested_at: u64, issued_for: &str) -> Self {
        Self {
            ticket,
            expires_at: requested_at + expires_in,
            refreshed_at: requested_at,
            issued_for: issued_for.to_owned(),
        }
    }

    /// The `GET /ticket` answer.
    pub fn answer(&self, kind: TicketKind, account_id: &str, now: u64) -> Value {
        json!({
            "ticket": self.ticket,
            "expires_in": self.remaining_secs(now),
            "expires_at": self.expires_at,
            "type": kind.name(),
            "account": account_id,
        })
    }
}

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
    fn ticket_kinds() {
        assert_eq!(
            TicketKind::parse(Some("jsapi"), AccountKind::WeCom),
            Ok(TicketKind::Jsapi)
        );
        assert_eq!(
            TicketKind::parse(Some("wx_card"), AccountKind::OfficialAccount),
            Ok(TicketKind::WxCard)
        );
        assert!(TicketKind::parse(Some("wx_card"), AccountKind::WeCom).is_err());
        assert!(TicketKind::parse(Some("card"), AccountKind::OfficialAccount).is_err());
        assert!(TicketKind::parse(None, AccountKind::OfficialAccount).is_err());
        for kind in ["jsapi", "wx_card"] {
            assert!(TicketKind::parse(Some(kind), AccountKind::MiniProgram).is_err());
        }
    }

    #[test]
    fn answers() {
        let record = TicketRecord::issued("T".into(), 7200, 1000, "cfg");
        let answer = record.answer(TicketKind::WxCard, "main", 1200);
        assert_eq!(
            answer,
            json!({"ticket": "T", "expires_in": 7000, "expires_at": 8200, "type": "wx_card", "account": "main"})
        );
        let nonce = nonce_from(&[0, 61, 62, 255]);
        assert_eq!(nonce, "A9AH");
    }
}
