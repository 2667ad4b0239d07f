//! The third-party platform's side of WeChat's API (开放平台): the component token, an
//! authorizer's token and its refresh token, the authorization code exchange, pre-auth codes
//! and the authorization page, the push of a new verify ticket, and the authorizer list. Pure:
//! requests to send and answers to read.
//!
//! Every request here carries a secret (the appsecret, the verify ticket, the component token
//! or a refresh token) in its URL or body: each says which, so that `upstream` scrubs them all
//! from any error text.

use crate::error::UpstreamFailure;
use crate::wechat::api::{self, issued_from, percent_encode, HttpMethod, Issued};
use serde_json::{json, Value};

/// A POST to the platform API: its URL, its JSON body, and the secrets it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformRequest {
    pub method: HttpMethod,
    pub url: String,
    pub body: String,
    pub sensitive: Vec<String>,
}

fn post(
    api_base: &str,
    endpoint: &str,
    component_token: Option<&str>,
    body: Value,
    sensitive: &[&str],
) -> PlatformRequest {
    let query = component_token
        .map(|token| format!("?component_access_token={}", percent_encode(token)))
        .unwrap_or_default();
    PlatformRequest {
        method: HttpMethod::Post,
        url: format!("{api_base}/cgi-bin/component/{endpoint}{query}"),
        body: body.to_string(),
        sensitive: sensitive.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// A platform answer as JSON, or its failure, WeChat's message scrubbed of every secret the
/// request carried.
pub fn parse_answer(
    status: u16,
    body: &str,
    sensitive: &[String],
) -> Result<Value, UpstreamFailure> {
    api::parse_answer(status, body, "").map_err(|failure| match failure {
        UpstreamFailure::WeChat { errcode, errmsg } => UpstreamFailure::WeChat {
            errcode,
            errmsg: sensitive
                .iter()
                .fold(errmsg, |text, secret| api::scrub(&text, secret)),
        },
        other => other,
    })
}

/// `api_component_token`: the component token, for the latest verify ticket.
pub fn component_token_request(
    api_base: &str,
    appid: &str,
    secret: &str,
    verify_ticket: &str,
) -> PlatformRequest {
    let body = json!({
        "component_appid": appid,
        "component_appsecret": secret,
        "component_verify_ticket": verify_ticket,
    });
    post(
        api_base,
        "api_component_token",
        None,
        body,
        &[secret, verify_ticket],
    )
}

pub fn parse_component_token(
    status: u16,
    body: &str,
    sensitive: &[String],
) -> Result<Issued, UpstreamFailure> {
    let json = parse_answer(status, body, sensitive)?;
    issued_from(&json, "component_access_token", "expires_in")
}

/// What an authorizer's token is fetched with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizerGrant<'a> {
    /// `api_authorizer_token`: the stored refresh token.
    RefreshToken(&'a str),
    /// `api_query_auth`: the code of an authorization event (single-use).
    AuthorizationCode(&'a str),
}

/// The request for an authorizer's token, through the component token.
pub fn authorizer_token_request(
    api_base: &str,
    component_appid: &str,
    component_token: &str,
    authorizer_appid: &str,
    grant: AuthorizerGrant,
) -> PlatformRequest {
    match grant {
        AuthorizerGrant::RefreshToken(refresh_token) => post(
            api_base,
            "api_authorizer_token",
            Some(component_token),
            json!({
                "component_appid": component_appid,
                "authorizer_appid": authorizer_appid,
                "authorizer_refresh_token": refresh_token,
            }),
            &[component_token, refresh_token],
        ),
        AuthorizerGrant::AuthorizationCode(code) => post(
            api_base,
            "api_query_auth",
            Some(component_token),
            json!({ "component_appid": component_appid, "authorization_code": code }),
            &[component_token, code],
        ),
    }
}

/// The authorizer's token with its refresh token (a new one replaces the stored one). The
/// code exchange nests it in `authorization_info`, for the appid it names.
pub fn parse_authorizer_token(
    status: u16,
    body: &str,
    sensitive: &[String],
    grant: AuthorizerGrant,
    authorizer_appid: &str,
) -> Result<Issued, UpstreamFailure> {
    let json = parse_answer(status, body, sensitive)?;
    let info = match grant {
        AuthorizerGrant::RefreshToken(_) => &json,
        AuthorizerGrant::AuthorizationCode(_) => {
            let info = &json["authorization_info"];
            if info["authorizer_appid"].as_str() != Some(authorizer_appid) {
                return Err(UpstreamFailure::BadResponse {
                    detail: "the authorization code is for another authorizer".into(),
                });
            }
            info
        }
    };
    let mut issued = issued_from(info, "authorizer_access_token", "expires_in")?;
    issued.refresh_token = info["authorizer_refresh_token"]
        .as_str()
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if matches!(grant, AuthorizerGrant::AuthorizationCode(_)) && issued.refresh_token.is_none() {
        return Err(UpstreamFailure::BadResponse {
            detail: "authorizer_refresh_token is missing".into(),
        });
    }
    Ok(issued)
}

/// `api_start_push_ticket`: asks WeChat to push a verify ticket now.
pub fn start_push_request(api_base: &str, appid: &str, secret: &str) -> PlatformRequest {
    let body = json!({ "component_appid": appid, "component_secret": secret });
    post(api_base, "api_start_push_ticket", None, body, &[secret])
}

/// `api_create_preauthcode`.
pub fn pre_auth_code_request(
    api_base: &str,
    component_appid: &str,
    component_token: &str,
) -> PlatformRequest {
    let body = json!({ "component_appid": component_appid });
    post(
        api_base,
        "api_create_preauthcode",
        Some(component_token),
        body,
        &[component_token],
    )
}

pub fn parse_pre_auth_code(
    status: u16,
    body: &str,
    sensitive: &[String],
) -> Result<Issued, UpstreamFailure> {
    issued_from(
        &parse_answer(status, body, sensitive)?,
        "pre_auth_code",
        "expires_in",
    )
}

/// The page an account's administrator opens to authorize the platform: the PC page, or the
/// one for WeChat on a phone.
pub fn authorization_url(
    component_appid: &str,
    pre_auth_code: &str,
    redirect_uri: &str,
    auth_type: u8,
    mobile: bool,
) -> String {
    let query = format!(
        "component_appid={}&pre_auth_code={}&redirect_uri={}&auth_type={auth_type}",
        percent_encode(component_appid),
        percent_encode(pre_auth_code),
        percent_encode(redirect_uri),
    );
    match mobile {
        false => format!("https://mp.weixin.qq.com/cgi-bin/componentloginpage?{query}"),
        true => format!(
            "https://mp.weixin.qq.com/safe/bindcomponent?action=bindcomponent&no_scan=1&{query}\
             #wechat_redirect"
        ),
    }
}

/// One page of `api_get_authorizer_list` (at most 500 a page, WeChat's limit).
pub fn authorizer_list_request(
    api_base: &str,
    component_appid: &str,
    component_token: &str,
    offset: usize,
) -> PlatformRequest {
    let body = json!({ "component_appid": component_appid, "offset": offset, "count": 500 });
    post(
        api_base,
        "api_get_authorizer_list",
        Some(component_token),
        body,
        &[component_token],
    )
}

/// One row of the list: the authorizer's appid and its current refresh token (None where a
/// row lacks one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedAuthorizer {
    pub appid: String,
    pub refresh_token: Option<String>,
}

/// A page of the list, row by row (a row without an appid as None, so that offsets count
/// every row), and the total number of authorizers.
pub fn authorizer_list_page(
    status: u16,
    body: &str,
    sensitive: &[String],
) -> Result<(Vec<Option<ListedAuthorizer>>, usize), UpstreamFailure> {
    let json = parse_answer(status, body, sensitive)?;
    let rows = json["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let total = json["total_count"].as_u64().unwrap_or(0) as usize;
    let listed = rows
        .iter()
        .map(|row| {
            Some(ListedAuthorizer {
                appid: row["authorizer_appid"].as_str()?.to_owned(),
                refresh_token: row["refresh_token"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned),
            })
        })
        .collect();
    Ok((listed, total))
}

/// A page of the list: the refresh token of `authorizer_appid` if it is on it, how many rows
/// the page had, and the total number of authorizers.
pub fn find_in_authorizer_list(
    status: u16,
    body: &str,
    sensitive: &[String],
    authorizer_appid: &str,
) -> Result<(Option<String>, usize, usize), UpstreamFailure> {
    let (listed, total) = authorizer_list_page(status, body, sensitive)?;
    let rows = listed.len();
    let found = listed
        .into_iter()
        .flatten()
        .find(|row| row.appid == authorizer_appid)
        .and_then(|row| row.refresh_token);
    Ok((found, rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_every_secret_they_carry() {
        let request = component_token_request("https://api", "wxc", "s3cret", "ticket@@@1");
        assert_eq!(
            request.url,
            "https://api/cgi-bin/component/api_component_token"
        );
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["component_verify_ticket"], "ticket@@@1");
        assert_eq!(request.sensitive, vec!["s3cret", "ticket@@@1"]);
        let grant = AuthorizerGrant::RefreshToken("refresh@@@1");
        let request = authorizer_token_request("https://api", "wxc", "CT+1", "wxa", grant);
        assert_eq!(
            request.url,
            "https://api/cgi-bin/component/api_authorizer_token?component_access_token=CT%2B1"
        );
        assert_eq!(request.sensitive, vec!["CT+1", "refresh@@@1"]);
    }

    #[test]
    fn authorizer_answers_carry_their_refresh_token() {
        let answer = r#"{"authorizer_access_token":"AT","expires_in":7200,"authorizer_refresh_token":"RT2"}"#;
        let grant = AuthorizerGrant::RefreshToken("RT1");
        let issued = parse_authorizer_token(200, answer, &[], grant, "wxa").unwrap();
        assert_eq!(
            (issued.value.as_str(), issued.refresh_token.as_deref()),
            ("AT", Some("RT2"))
        );
        let exchange = r#"{"authorization_info":{"authorizer_appid":"wxa","authorizer_access_token":"AT","expires_in":7200,"authorizer_refresh_token":"RT"}}"#;
        let code = AuthorizerGrant::AuthorizationCode("code");
        assert!(parse_authorizer_token(200, exchange, &[], code, "wxa").is_ok());
        assert!(parse_authorizer_token(200, exchange, &[], code, "wxother").is_err());
        let refused = r#"{"errcode":61023,"errmsg":"refresh_token is invalid"}"#;
        assert!(matches!(
            parse_authorizer_token(200, refused, &[], grant, "wxa"),
            Err(UpstreamFailure::WeChat { errcode: 61023, .. })
        ));
    }

    #[test]
    fn wechats_message_is_scrubbed_of_the_requests_secrets() {
        let echoed = r#"{"errcode":61006,"errmsg":"ticket ticket@@@1 invalid"}"#;
        let sensitive = vec!["ticket@@@1".to_owned()];
        match parse_component_token(200, echoed, &sensitive) {
            Err(UpstreamFailure::WeChat { errmsg, .. }) => assert!(!errmsg.contains("ticket@@@1")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_authorization_pages() {
        let pc = authorization_url("wxc", "pre@@@1", "https://shop.example/cb?x=1", 3, false);
        assert_eq!(
            pc,
            "https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=wxc&\
             pre_auth_code=pre%40%40%401&redirect_uri=https%3A%2F%2Fshop.example%2Fcb%3Fx%3D1&\
             auth_type=3"
        );
        let phone = authorization_url("wxc", "p", "https://a.example/", 1, true);
        assert!(phone.starts_with("https://mp.weixin.qq.com/safe/bindcomponent?action="));
        assert!(phone.ends_with("&auth_type=1#wechat_redirect"));
    }

    #[test]
    fn the_list_finds_one_authorizer() {
        let page = r#"{"total_count":2,"list":[{"authorizer_appid":"wxa","refresh_token":"RA"},{"authorizer_appid":"wxb","refresh_token":"RB"}]}"#;
        assert_eq!(
            find_in_authorizer_list(200, page, &[], "wxb").unwrap(),
            (Some("RB".into()), 2, 2)
        );
        assert_eq!(
            find_in_authorizer_list(200, page, &[], "wxz").unwrap().0,
            None
        );
    }
}
