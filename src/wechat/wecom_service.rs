//! A WeCom service provider's side of WeCom's API (企业微信服务商): the suite token (with the
//! latest suite ticket), the provider token, and the suite's pushes (指令回调) once
//! decrypted. Pure: requests to send and answers to read.
//!
//! These token answers carry `errcode` only on failure (WeCom: "因历史原因，该接口在调用失败时
//! 才返回errcode"): a missing one is success, as `api::parse_answer` reads any answer.

use crate::error::UpstreamFailure;
use crate::policy::platform::{Agent, AuthInfo};
use crate::wechat::api::{issued_from, percent_encode, HttpMethod, Issued};
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

/// A call made with the suite's token, in the URL (sensitive too).
fn with_suite_token(
    wecom_api_base: &str,
    endpoint: &str,
    suite_token: &str,
    body: Value,
    sensitive: &[&str],
) -> PlatformRequest {
    let mut request = post(wecom_api_base, endpoint, body, sensitive);
    request.url = format!(
        "{}?suite_access_token={}",
        request.url,
        percent_encode(suite_token)
    );
    request.sensitive.push(suite_token.to_owned());
    request
}

/// `v2/get_permanent_code`: a corporation's permanent code and corpid, for the single-use
/// `AuthCode` of its authorization.
pub fn permanent_code_request(
    wecom_api_base: &str,
    suite_token: &str,
    auth_code: &str,
) -> PlatformRequest {
    let body = json!({ "auth_code": auth_code });
    with_suite_token(
        wecom_api_base,
        "v2/get_permanent_code",
        suite_token,
        body,
        &[auth_code],
    )
}

/// A corporation's authorization, as `v2/get_permanent_code` answers it.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorized {
    pub corpid: String,
    pub permanent_code: String,
}

impl std::fmt::Debug for Authorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authorized({}, [permanent code])", self.corpid)
    }
}

pub fn parse_permanent_code(
    status: u16,
    body: &str,
    sensitive: &[String],
) -> Result<Authorized, UpstreamFailure> {
    let json = parse_answer(status, body, sensitive)?;
    let text = |value: &Value| value.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    match (
        text(&json["auth_corp_info"]["corpid"]),
        text(&json["permanent_code"]),
    ) {
        (Some(corpid), Some(permanent_code)) => Ok(Authorized {
            corpid,
            permanent_code,
        }),
        _ => Err(UpstreamFailure::BadResponse {
            detail: "permanent_code or auth_corp_info.corpid is missing".into(),
        }),
    }
}

/// A call about one corporation, made with the suite's token and its permanent code.
fn for_corporation(
    wecom_api_base: &str,
    endpoint: &str,
    suite_token: &str,
    corpid: &str,
    permanent_code: &str,
) -> PlatformRequest {
    let body = json!({ "auth_corpid": corpid, "permanent_code": permanent_code });
    with_suite_token(
        wecom_api_base,
        endpoint,
        suite_token,
        body,
        &[permanent_code],
    )
}

/// `get_corp_token`: a corporation's token, with the suite's token and its permanent code.
pub fn corp_token_request(
    wecom_api_base: &str,
    suite_token: &str,
    corpid: &str,
    permanent_code: &str,
) -> PlatformRequest {
    let endpoint = "get_corp_token";
    for_corporation(
        wecom_api_base,
        endpoint,
        suite_token,
        corpid,
        permanent_code,
    )
}

/// `v2/get_auth_info`: what a corporation authorized (its name, the suite's app in it), with
/// the suite's token and the corporation's permanent code.
pub fn auth_info_request(
    wecom_api_base: &str,
    suite_token: &str,
    corpid: &str,
    permanent_code: &str,
) -> PlatformRequest {
    let endpoint = "v2/get_auth_info";
    for_corporation(
        wecom_api_base,
        endpoint,
        suite_token,
        corpid,
        permanent_code,
    )
}

pub fn parse_auth_info(
    status: u16,
    body: &str,
    sensitive: &[String],
) -> Result<AuthInfo, UpstreamFailure> {
    let json = parse_answer(status, body, sensitive)?;
    let agents = json["auth_info"]["agent"]
        .as_array()
        .map(|agents| {
            agents
                .iter()
                .filter_map(|agent| {
                    Some(Agent {
                        agentid: agent["agentid"].as_u64()?,
                        name: agent["name"].as_str().unwrap_or_default().to_owned(),
                    })
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if agents.is_empty() {
        return Err(UpstreamFailure::BadResponse {
            detail: "auth_info.agent lists no application".into(),
        });
    }
    Ok(AuthInfo {
        corp_name: json["auth_corp_info"]["corp_name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        agents,
    })
}

/// Where each token call's answer has its token (its lifetime is in `expires_in`).
pub const SUITE_TOKEN_FIELD: &str = "suite_access_token";
pub const PROVIDER_TOKEN_FIELD: &str = "provider_access_token";
pub const CORP_TOKEN_FIELD: &str = "access_token";

/// A token call's answer: the token in `field`, or the failure, scrubbed of `sensitive`.
pub fn parse_token(
    status: u16,
    body: &str,
    sensitive: &[String],
    field: &str,
) -> Result<Issued, UpstreamFailure> {
    issued_from(&parse_answer(status, body, sensitive)?, field, "expires_in")
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

/// What a suite is told, once decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SuiteEvent {
    /// Every ten minutes: the ticket the suite token is fetched with, and WeCom's TimeStamp.
    Ticket { ticket: String, created_at: u64 },
    /// A corporation authorized the suite (`create_auth`), or a 代开发 app's permanent code
    /// was reset (`reset_permanent_code`): the single-use code to exchange.
    Authorized { code: String, created_at: u64 },
    /// A corporation withdrew its authorization (`cancel_auth`).
    Cancelled { corpid: String, created_at: u64 },
    /// A corporation changed what it authorized (`change_auth`): its auth info is read again.
    AuthChanged { corpid: String },
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
        "create_auth" | "reset_permanent_code" => SuiteEvent::Authorized {
            code: field("AuthCode").ok_or(PushError::Malformed("no AuthCode"))?,
            created_at,
        },
        "cancel_auth" => SuiteEvent::Cancelled {
            corpid: field("AuthCorpId").ok_or(PushError::Malformed("no AuthCorpId"))?,
            created_at,
        },
        "change_auth" => SuiteEvent::AuthChanged {
            corpid: field("AuthCorpId").ok_or(PushError::Malformed("no AuthCorpId"))?,
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
        let answer = r#"{"suite_access_token":"S","expires_in":7200}"#;
        let issued = parse_token(200, answer, &[], SUITE_TOKEN_FIELD).unwrap();
        assert_eq!((issued.value.as_str(), issued.expires_in), ("S", 7200));
        let refused = parse_token(
            200,
            r#"{"errcode":40085,"errmsg":"invalid suite_ticket T-1"}"#,
            &["T-1".into()],
            SUITE_TOKEN_FIELD,
        );
        match refused {
            Err(UpstreamFailure::WeChat { errcode, errmsg }) => {
                assert_eq!(errcode, 40085);
                assert!(!errmsg.contains("T-1"), "{errmsg}");
            }
            other => panic!("{other:?}"),
        }
        let answer = r#"{"provider_access_token":"P","expires_in":7200}"#;
        let provider = parse_token(200, answer, &[], PROVIDER_TOKEN_FIELD);
        assert_eq!(provider.unwrap().value, "P");
    }

    #[test]
    fn an_authorization_push_carries_its_code_and_a_cancellation_its_corpid() {
        let push = |info: &str, extra: &str| {
            format!(
                "<xml><SuiteId><![CDATA[wwsuite01]]></SuiteId><InfoType><![CDATA[{info}]]>\
                 </InfoType><TimeStamp>1403610513</TimeStamp>{extra}</xml>"
            )
        };
        let create = push("create_auth", "<AuthCode><![CDATA[CODE]]></AuthCode>");
        assert_eq!(
            parse_suite_event(&create, "wwsuite01"),
            Ok(SuiteEvent::Authorized {
                code: "CODE".into(),
                created_at: 1_403_610_513
            })
        );
        let cancel = push(
            "cancel_auth",
            "<AuthCorpId><![CDATA[wxCorpAbc]]></AuthCorpId>",
        );
        assert_eq!(
            parse_suite_event(&cancel, "wwsuite01"),
            Ok(SuiteEvent::Cancelled {
                corpid: "wxCorpAbc".into(),
                created_at: 1_403_610_513
            })
        );
        assert!(parse_suite_event(&push("create_auth", ""), "wwsuite01").is_err());
    }

    #[test]
    fn a_permanent_code_answer_names_the_corporation() {
        let answer = r#"{"errcode":0,"errmsg":"ok","permanent_code":"PC",
                         "auth_corp_info":{"corpid":"wxCorpAbc","corp_name":"n"}}"#;
        let authorized = parse_permanent_code(200, answer, &[]).unwrap();
        assert_eq!(authorized.corpid, "wxCorpAbc");
        assert!(!format!("{authorized:?}").contains("PC"));
        assert!(parse_permanent_code(200, r#"{"permanent_code":"PC"}"#, &[]).is_err());
        let request = corp_token_request("https://q", "S T", "wxCorpAbc", "PC");
        assert_eq!(
            request.url,
            "https://q/cgi-bin/service/get_corp_token?suite_access_token=S%20T"
        );
        assert_eq!(request.sensitive, ["PC", "S T"]);
    }

    #[test]
    fn an_auth_info_answer_lists_the_apps_and_a_change_names_the_corporation() {
        let answer = r#"{"errcode":0,"errmsg":"ok",
            "auth_corp_info":{"corpid":"wxCorpAbc","corp_name":"Acme"},
            "auth_info":{"agent":[{"agentid":1000002,"name":"Desk","privilege":{"level":1}}]}}"#;
        let info = parse_auth_info(200, answer, &[]).unwrap();
        assert_eq!(info.corp_name, "Acme");
        let desk = Agent {
            agentid: 1_000_002,
            name: "Desk".into(),
        };
        assert_eq!(info.agents, [desk]);
        let no_agent = r#"{"errcode":0,"auth_corp_info":{"corpid":"c"},"auth_info":{}}"#;
        assert!(parse_auth_info(200, no_agent, &[]).is_err());
        let request = auth_info_request("https://q", "S", "wxCorpAbc", "PC");
        assert_eq!(
            request.url,
            "https://q/cgi-bin/service/v2/get_auth_info?suite_access_token=S"
        );
        assert_eq!(request.sensitive, ["PC", "S"]);
        let change =
            "<xml><SuiteId><![CDATA[wwsuite01]]></SuiteId><InfoType><![CDATA[change_auth]]>\
             </InfoType><TimeStamp>1403610513</TimeStamp><AuthCorpId><![CDATA[wxCorpAbc]]>\
             </AuthCorpId></xml>";
        assert_eq!(
            parse_suite_event(change, "wwsuite01"),
            Ok(SuiteEvent::AuthChanged {
                corpid: "wxCorpAbc".into()
            })
        );
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
