//! Client authentication: `Authorization: Bearer <client key>` against `CLIENT_KEYS`. Each
//! entry is a key with optional scopes: `key@acct1+acct2` (only those accounts),
//! `key:route1+route2` (only those routes), or both, `key@acct1:signature`.

use crate::error::AppError;
use sha2::{Digest, Sha256};
use std::rc::Rc;

const MIN_KEY_CHARS: usize = 16;

/// What a key can be limited to besides accounts: the API's groups of routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/token`, `/token/refresh` and the WeChat-compatible token endpoints.
    Token,
    /// `/ticket` (and compat `getticket`, which the access_token itself authorizes).
    Ticket,
    /// `/jssdk/signature`: the one route a key in a browser should have.
    Signature,
    Status,
    /// The API gateway.
    Gateway,
    /// The third-party platform's own routes: pre-auth codes and the authorizer list (its
    /// component token is a token: `Token`).
    Component,
    /// `/quota`: an API's daily quota, as WeChat counts it.
    Quota,
    /// `/diagnostics/rid`: WeChat's record of a failed call.
    Diagnostics,
    /// `/metrics`, for Prometheus.
    Metrics,
    /// `/wecom/suites/{suite_id}/token`: a WeCom suite's suite_access_token.
    WeComSuite,
    /// `/wecom/provider/token`: the WeCom service provider's provider_access_token.
    WeComProvider,
}

impl Route {
    const ALL: [Route; 11] = [
        Self::Token,
        Self::Ticket,
        Self::Signature,
        Self::Status,
        Self::Gateway,
        Self::Component,
        Self::Quota,
        Self::Diagnostics,
        Self::Metrics,
        Self::WeComSuite,
        Self::WeComProvider,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Ticket => "ticket",
            Self::Signature => "signature",
            Self::Status => "status",
            Self::Gateway => "gateway",
            Self::Component => "component",
            Self::Quota => "quota",
            Self::Diagnostics => "diagnostics",
            Self::Metrics => "metrics",
            Self::WeComSuite => "wecom_suite",
            Self::WeComProvider => "wecom_provider",
        }
    }
}

/// The business servers' keys. Never empty: with no key configured, [`ClientKeys::parse`]
/// refuses to build one, so every request fails closed.
#[derive(Clone)]
pub struct ClientKeys(Vec<ClientKey>);

#[derive(Clone)]
struct ClientKey {
    /// SHA-256 of the key: compared in constant time, and the key itself is not kept.
    digest: [u8; 32],
    /// None: every account.
    accounts: Option<Rc<[String]>>,
    /// None: every route.
    routes: Option<Rc<[Route]>>,
}

/// What an authenticated caller may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    accounts: Option<Rc<[String]>>,
    routes: Option<Rc<[Route]>>,
}

impl Grant {
    /// What an admin key may read where a route takes one too: every account.
    pub fn admin() -> Self {
        Self {
            accounts: None,
            routes: None,
        }
    }

    /// Limited to some accounts: then an account it may not read and one that does not exist
    /// get the same answer.
    pub fn is_scoped(&self) -> bool {
        self.accounts.is_some()
    }

    /// The accounts a limited key may use, sorted, once each (None: every account).
    pub fn own_accounts(&self) -> Option<Vec<&str>> {
        let mut ids: Vec<&str> = self
            .accounts
            .as_deref()?
            .iter()
            .map(String::as_str)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Some(ids)
    }

    pub fn permits(&self, account_id: &str) -> bool {
        self.accounts
            .as_deref()
            .is_none_or(|ids| ids.iter().any(|id| id == account_id))
    }

    pub fn check(&self, account_id: &str) -> Result<(), AppError> {
        if self.permits(account_id) {
            Ok(())
        } else {
            Err(AppError::ForbiddenAccount)
        }
    }

    pub fn check_route(&self, route: Route) -> Result<(), AppError> {
        if self
            .routes
            .as_deref()
            .is_none_or(|routes| routes.contains(&route))
        {
            Ok(())
        } else {
            Err(AppError::ForbiddenRoute)
        }
    }
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKeys({} keys)", self.0.len())
    }
}

fn config_error(problem: String) -> AppError {
    AppError::Config {
        variable: "CLIENT_KEYS",
        problem,
    }
}

impl ClientKeys {
    /// Parses `CLIENT_KEYS`. Errors name the entry's position, never the key.
    pub fn parse(value: Option<&str>) -> Result<Self, AppError> {
        let mut keys = Vec::new();
        let entries = value.unwrap_or_default().split(',').map(str::trim);
        for (index, entry) in entries.filter(|e| !e.is_empty()).enumerate() {
            keys.push(parse_entry(index + 1, entry)?);
        }
        if keys.is_empty() {
            return Err(config_error(
                "lists no key, so every request is refused; set it with `wrangler secret put \
                 CLIENT_KEYS`"
                    .into(),
            ));
        }
        Ok(Self(keys))
    }

    /// A configuration error if a key is scoped to an account id that `exists` does not know
    /// (a typo would give a key that is refused forever).
    pub fn check_scopes(&self, exists: impl Fn(&str) -> bool) -> Result<(), AppError> {
        for (index, key) in self.0.iter().enumerate() {
            let ids: &[String] = key.accounts.as_deref().unwrap_or_default();
            if let Some(unknown) = ids.iter().find(|id| !exists(id)) {
                return Err(config_error(format!(
                    "entry {} is scoped to the account \"{unknown}\", which is not configured",
                    index + 1
                )));
            }
        }
        Ok(())
    }

    /// Accepts the request if its `Authorization` header carries one of the keys.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<Grant, AppError> {
        self.authorize_key(authorization.and_then(bearer_token))
    }

    /// As [`Self::authorize`], for a key that came some other way (the `secret` an SDK sends).
    /// Every key's digest is compared in full, so the time taken says nothing about which key
    /// came close, nor how long the keys are.
    pub fn authorize_key(&self, presented: Option<&str>) -> Result<Grant, AppError> {
        let presented = presented
            .filter(|key| !key.is_empty())
            .ok_or(AppError::Unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut matched = None;
        for candidate in &self.0 {
            if digests_equal(&candidate.digest, &digest) {
                matched = matched.or(Some(candidate));
            }
        }
        matched
            .map(|key| Grant {
                accounts: key.accounts.clone(),
                routes: key.routes.clone(),
            })
            .ok_or(AppError::Unauthorized)
    }
}

/// `key`, `key@acct1+acct2`, `key:route1+route2` or `key@acct1+acct2:route1+route2`.
fn parse_entry(position: usize, entry: &str) -> Result<ClientKey, AppError> {
    let (rest, routes) = match entry.rsplit_once(':') {
        Some((rest, routes)) => (rest, Some(routes)),
        None => (entry, None),
    };
    let (key, accounts) = match rest.split_once('@') {
        Some((key, accounts)) => (key.trim(), Some(accounts)),
        None => (rest.trim(), None),
    };
    let list = |text: &str, what: &str| -> Result<Vec<String>, AppError> {
        let items: Vec<String> = text.split('+').map(|i| i.trim().to_owned()).collect();
        if items.iter().any(String::is_empty) {
            return Err(config_error(format!(
                "entry {position} has an empty {what} list (key@acct1+acct2:route1+route2)"
            )));
        }
        Ok(items)
    };
    let accounts = accounts
        .map(|a| list(a, "account").map(Rc::from))
        .transpose()?;
    let routes = match routes {
        None => None,
        Some(text) => {
            let mut routes = Vec::new();
            for name in list(text, "route")? {
                let route = Route::ALL
                    .into_iter()
                    .find(|r| r.name() == name)
                    .ok_or_else(|| {
                        config_error(format!(
                            "entry {position} names an unknown route (token, ticket, signature, \
                             status, gateway or component)"
                        ))
                    })?;
                routes.push(route);
            }
            Some(routes.into())
        }
    };
    if key.chars().count() < MIN_KEY_CHARS {
        return Err(config_error(format!(
            "entry {position} is shorter than {MIN_KEY_CHARS} characters"
        )));
    }
    Ok(ClientKey {
        digest: Sha256::digest(key.as_bytes()).into(),
        accounts,
        routes,
    })
}

pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Equality of two digests in constant time (`subtle`, which the optimizer cannot turn into
/// an early exit): the time taken says nothing of where they differ.
pub(crate) fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &str = "first-key-0123456789";
    const SCOPED: &str = "scoped-key-0123456789";
    const SIGNER: &str = "signer-key-0123456789";

    fn keys() -> ClientKeys {
        ClientKeys::parse(Some(&format!(
            " {ALL} , {SCOPED}@shop+hr , {SIGNER}@shop:signature+status,"
        )))
        .unwrap()
    }

    #[test]
    fn accepts_any_configured_key() {
        assert!(keys().authorize(Some(&format!("Bearer {ALL}"))).is_ok());
        assert!(keys().authorize(Some(&format!("bearer {SCOPED}"))).is_ok());
        assert!(keys().authorize(Some(&format!("Bearer {SIGNER}"))).is_ok());
    }

    #[test]
    fn scoped_keys_reach_only_their_accounts() {
        let keys = keys();
        let all = keys.authorize(Some(&format!("Bearer {ALL}"))).unwrap();
        assert!(all.permits("shop") && all.permits("anything") && !all.is_scoped());
        let scoped = keys.authorize(Some(&format!("Bearer {SCOPED}"))).unwrap();
        assert!(scoped.permits("shop") && scoped.permits("hr") && scoped.is_scoped());
        assert_eq!(scoped.check("wx-other"), Err(AppError::ForbiddenAccount));
        assert_eq!(scoped.check_route(Route::Token), Ok(()));
        // The scope is not part of the key.
        assert!(keys
            .authorize(Some(&format!("Bearer {SCOPED}@shop+hr")))
            .is_err());
    }

    #[test]
    fn route_scopes() {
        let keys = keys();
        let signer = keys.authorize(Some(&format!("Bearer {SIGNER}"))).unwrap();
        assert_eq!(signer.check_route(Route::Signature), Ok(()));
        assert_eq!(signer.check_route(Route::Status), Ok(()));
        for route in [Route::Token, Route::Ticket, Route::Gateway] {
            assert_eq!(signer.check_route(route), Err(AppError::ForbiddenRoute));
        }
        assert!(signer.permits("shop") && !signer.permits("hr"));
        let unscoped_accounts = ClientKeys::parse(Some(&format!("{ALL}:ticket"))).unwrap();
        let grant = unscoped_accounts.authorize_key(Some(ALL)).unwrap();
        assert!(grant.permits("any") && grant.check_route(Route::Ticket).is_ok());
        assert_eq!(
            grant.check_route(Route::Token),
            Err(AppError::ForbiddenRoute)
        );
    }

    #[test]
    fn refuses_missing_malformed_and_wrong_keys() {
        for header in [
            None,
            Some(String::new()),
            Some("Bearer".into()),
            Some("Bearer ".into()),
            Some(format!("Basic {ALL}")),
            Some(format!("Bearer {}", &ALL[1..])),
            Some(format!("Bearer {ALL}0")),
            Some(ALL.to_owned()),
            Some(format!("Bearer {SIGNER}:signature")),
        ] {
            assert_eq!(
                keys().authorize(header.as_deref()),
                Err(AppError::Unauthorized),
                "{header:?}"
            );
        }
    }

    fn problem(value: Option<&str>) -> String {
        match ClientKeys::parse(value) {
            Err(AppError::Config {
                variable: "CLIENT_KEYS",
                problem,
            }) => problem,
            other => panic!("expected a CLIENT_KEYS error, got {other:?}"),
        }
    }

    #[test]
    fn configuration_errors_name_the_position_not_the_key() {
        assert!(problem(None).contains("no key"));
        assert!(problem(Some(" , ,")).contains("no key"));
        let short = problem(Some(&format!("{ALL},short-key")));
        assert!(short.contains("entry 2 is shorter than 16"), "{short}");
        assert!(!short.contains("short-key"));
        assert!(problem(Some(&format!("{ALL}@"))).contains("entry 1 has an empty account list"));
        assert!(problem(Some(&format!("{ALL}@a++b"))).contains("empty account list"));
        assert!(problem(Some(&format!("{ALL}:"))).contains("entry 1 has an empty route list"));
        let unknown = problem(Some(&format!("{ALL}@a:tokens")));
        assert!(
            unknown.contains("entry 1 names an unknown route"),
            "{unknown}"
        );
        assert!(!unknown.contains(ALL));
    }

    #[test]
    fn scopes_must_name_configured_accounts() {
        let keys = keys();
        assert_eq!(keys.check_scopes(|id| ["shop", "hr"].contains(&id)), Ok(()));
        match keys.check_scopes(|id| id == "shop") {
            Err(AppError::Config { problem, .. }) => {
                assert!(
                    problem.contains("entry 2") && problem.contains("\"hr\""),
                    "{problem}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn digests_equal_is_equality() {
        let digest = |s: &str| -> [u8; 32] { Sha256::digest(s.as_bytes()).into() };
        assert!(digests_equal(&digest("abc"), &digest("abc")));
        assert!(!digests_equal(&digest("abc"), &digest("abd")));
        assert!(!digests_equal(&digest("abc"), &digest("ab")));
    }

    #[test]
    fn debug_never_prints_keys() {
        assert_eq!(format!("{:?}", keys()), "ClientKeys(3 keys)");
    }
}
