//! JS-SDK tickets: which kinds an account has, and the record kept of one (like a token's,
//! through the `Credential` trait). Pure.

use crate::error::AppError;
use crate::policy::accounts::AccountKind;
use crate::policy::token::Credential;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketKind {
    /// For `wx.config` on web pages.
    Jsapi,
    /// For card and coupon JS APIs.
    WxCard,
    /// WeCom: an application's ticket, for `wx.agentConfig`.
    AgentConfig,
}

/// WeCom lets a corporation fetch 400 jsapi tickets an hour, and an application 100
/// agent_config tickets: ticket calls of WeCom accounts are at least this far apart (100 an
/// hour), whatever `MIN_REFRESH_INTERVAL_SECS` says.
pub const WECOM_TICKET_MIN_INTERVAL_SECS: u64 = 36;

impl TicketKind {
    pub const ALL: [TicketKind; 3] = [Self::Jsapi, Self::WxCard, Self::AgentConfig];

    pub fn name(self) -> &'static str {
        match self {
            Self::Jsapi => "jsapi",
            Self::WxCard => "wx_card",
            Self::AgentConfig => "agent_config",
        }
    }

    /// The least time between two calls for this ticket of an account of `kind`.
    pub fn min_interval_secs(kind: AccountKind, configured: u64) -> u64 {
        match kind {
            AccountKind::WeCom | AccountKind::WeComCorp => {
                configured.max(WECOM_TICKET_MIN_INTERVAL_SECS)
            }
            _ => configured,
        }
    }

    /// `?type=` of `/ticket`. WeCom has no card tickets; only WeCom has agent_config ones.
    pub fn parse(value: Option<&str>, kind: AccountKind) -> Result<Self, AppError> {
        let ticket = match value {
            Some("jsapi") => Self::Jsapi,
            Some("wx_card") => Self::WxCard,
            Some("agent_config") => Self::AgentConfig,
            _ => {
                return Err(AppError::BadRequest(
                    "type must be jsapi, wx_card or agent_config (WeCom)".into(),
                ))
            }
        };
        let wecom = matches!(kind, AccountKind::WeCom | AccountKind::WeComCorp);
        match kind {
            _ if ticket == Self::AgentConfig && !wecom => Err(AppError::BadRequest(
                "agent_config tickets are WeCom applications' (wx.agentConfig)".into(),
            )),
            AccountKind::WeCom | AccountKind::WeComCorp if ticket == Self::WxCard => Err(
                AppError::BadRequest("WeCom accounts have no wx_card ticket".into()),
            ),
            AccountKind::Component => Err(AppError::BadRequest(
                "the platform's component has no JS-SDK tickets (its authorizers have)".into(),
            )),
            AccountKind::WeComSuite | AccountKind::WeComProvider => Err(AppError::BadRequest(
                "a WeCom suite or provider has no JS-SDK tickets (corporations' apps have)".into(),
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
    /// `Account::issuer` of the configuration that fetched it.
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

/// The cron keeps refreshing a ticket that someone read within the last day.
pub const TICKET_IDLE_SECS: u64 = 86_400;

/// Whether a ticket last read at `last_read_at` is still worth refreshing ahead of time.
pub fn ticket_in_use(last_read_at: u64, now: u64) -> bool {
    now < last_read_at + TICKET_IDLE_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            TicketKind::parse(Some("agent_config"), AccountKind::WeComCorp),
            Ok(TicketKind::AgentConfig)
        );
        assert!(TicketKind::parse(Some("agent_config"), AccountKind::OfficialAccount).is_err());
        assert_eq!(TicketKind::min_interval_secs(AccountKind::WeCom, 0), 36);
        assert_eq!(
            TicketKind::min_interval_secs(AccountKind::WeComCorp, 60),
            60
        );
        assert_eq!(
            TicketKind::min_interval_secs(AccountKind::OfficialAccount, 0),
            0
        );
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
    }

    #[test]
    fn a_ticket_unread_for_a_day_is_idle() {
        assert!(ticket_in_use(
            1_700_000_000,
            1_700_000_000 + TICKET_IDLE_SECS - 1
        ));
        assert!(!ticket_in_use(
            1_700_000_000,
            1_700_000_000 + TICKET_IDLE_SECS
        ));
        assert!(
            !ticket_in_use(0, 1_700_000_000),
            "never read since the object loaded it"
        );
    }
}
