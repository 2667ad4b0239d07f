//! A WeCom service provider's side of WeCom's API (企业微信服务商): the suite token (with the
//! latest suite ticket), the provider token, and the suite's pushes (指令回调) once
//! decrypted. Pure: requests to send and answers to read.
//!
//! These token answers carry `errcode` only on failure (WeCom: "因历史原因，该接口在调用失败时
//! 才返回errcode"): a missing one is success, as `api::parse_answer` reads any answer.

use crate::error::UpstreamFailure;
use crate::wechat::api::{issued_from, HttpMethod, Issued};
use crate::wechat::platform::{parse_answer, PlatformRequest};
use crate::wechat::push::{FlatXml, PushError};
use serde_json::{json, Value};

fn post(wecom_api_base: &str, endpoint: &str, body: Value, sensitive: &[&str]) -> PlatformRequest {
    PlatformRequest {
        method: HttpMethod::Post,
        url: format!("{wecom_api_base}/cgi-bin/service/{endpoint}"),
        body: body.to_string(),
        sensitive: sensitive.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// `get_suite_token`: the suite's token, for the latest suite ticket.
pub fn suite_token_request(
    wecom_api_base: &str,
    suite_id: &str,
    suite_secret: &str,
    suite_ticket: &str,
) -> PlatformRequest {
    let body = json!({
        "suite_id": suite_id,
        "suite_secret": suite_secret,
        "suite_ticket": suite_ticket,
    });
    post(
        wecom_api_base,
        "get_suite_token",
        body,
        &[suite_secret, suite_ticket],
    )
}

pub fn parse_suite_token(
    status: u16,
    body: &str,
    sensitive: &[String],
) -> Result<Issued, UpstreamFailure> {
    issued_from(
        &parse_answer(status, body, sensitive)?,
        "suite_access_token",
        "expires_in",
    )
}

/// `get_provider_token`: the provider's own token, for its corpid and secret.
pub fn provider_token_request(
    wecom_api_base: &str,
    corpid: &str,
    provider_secret: &str,
) -> PlatformRequest {
    let body = json!({ "corpid": corpid, "provider_secret": provider_secret });
    post(
        wecom_api_base,
        "get_provider_token",
        body,
        &[provider_secret],
    )
}

pub fn parse_provider_token(
    status: u16,
    body: &str,
    sensitive: &[String],
) -> Result<Issued, UpstreamFailure> {
    issued_from(
        &parse_answer(status, body, sensitive)?,
        "provider_access_token",
        "expires_in",
    )
}

/// What a suite is told, once decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SuiteEvent {
    /// Every ten minutes: the ticket the suite token is fetched with, and WeCom's TimeStamp.
    Ticket { ticket: String, created_at: u64 },
    /// Anything else (authorizations and the like): acknowledged, not acted on here.
    Other { info_type: String },
}

/// Reads a decrypted push for `suite_id`: its `SuiteId` must be that suite's.
pub fn parse_suite_event(message: &str, suite_id: &str) -> Result<SuiteEvent, PushError> {
    let xml = FlatXml::parse(message)?;
    let field = |name| xml.get(name).filter(|v| !v.is_empty()).map(str::to_owned);
    let info_type = field("InfoType").ok_or(PushError::Malformed("no InfoType"))?;
    if field("SuiteId").as_deref() != Some(suite_id) {
        return Err(PushError::Undecryptable(
            "sent for another suite than the one its URL names",
        ));
    }
    let created_at = field("TimeStamp").and_then(|t| t.parse().ok()).unwrap_or(0);
    Ok(match info_type.as_str() {
        "suite_ticket" => SuiteEvent::Ticket {
            ticket: field("SuiteTicket").ok_or(PushError::Malformed("no SuiteTicket"))?,
            created_at,
        },
        _ => SuiteEvent::Other { info_type },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket_push(suite_id: &str) -> String {
        format!(
            "<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId><InfoType> <![CDATA[suite_ticket]]>\
             </InfoType><TimeStamp>1403610513</TimeStamp><SuiteTicket><![CDATA[T-1]]>\
             </SuiteTicket></xml>"
        )
    }

    #[test]
    fn a_ticket_push_is_read_for_its_own_suite_only() {
        assert_eq!(
            parse_suite_event(&ticket_push("wwsuite01"), "wwsuite01"),
            Ok(SuiteEvent::Ticket {
                ticket: "T-1".into(),
                created_at: 1_403_610_513
            })
        );
        assert!(matches!(
            parse_suite_event(&ticket_push("wwother"), "wwsuite01"),
            Err(PushError::Undecryptable(_))
        ));
        let no_ticket = ticket_push("wwsuite01").replace("<![CDATA[T-1]]>", "");
        assert_eq!(
            parse_suite_event(&no_ticket, "wwsuite01"),
            Err(PushError::Malformed("no SuiteTicket"))
        );
    }

    #[test]
    fn a_token_answer_without_errcode_is_a_success_and_one_with_it_a_failure() {
        let issued =
            parse_suite_token(200, r#"{"suite_access_token":"S","expires_in":7200}"#, &[]).unwrap();
        assert_eq!((issued.value.as_str(), issued.expires_in), ("S", 7200));
        let refused = parse_suite_token(
            200,
            r#"{"errcode":40085,"errmsg":"invalid suite_ticket T-1"}"#,
            &["T-1".into()],
        );
        match refused {
            Err(UpstreamFailure::WeChat { errcode, errmsg }) => {
                assert_eq!(errcode, 40085);
                assert!(!errmsg.contains("T-1"), "{errmsg}");
            }
            other => panic!("{other:?}"),
        }
        let provider = parse_provider_token(
            200,
            r#"{"provider_access_token":"P","expires_in":7200}"#,
            &[],
        );
        assert_eq!(provider.unwrap().value, "P");
    }

    #[test]
    fn token_requests_name_their_endpoint_and_carry_their_secrets_as_sensitive() {
        let suite = suite_token_request("https://qyapi", "wwsuite01", "sec", "tick");
        assert_eq!(suite.url, "https://qyapi/cgi-bin/service/get_suite_token");
        let body: Value = serde_json::from_str(&suite.body).unwrap();
        assert_eq!(body["suite_ticket"], "tick");
        assert_eq!(suite.sensitive, ["sec", "tick"]);
        let provider = provider_token_request("https://qyapi", "wwcorp", "psec");
        assert_eq!(
            provider.url,
            "https://qyapi/cgi-bin/service/get_provider_token"
        );
        assert_eq!(provider.sensitive, ["psec"]);
    }
}
