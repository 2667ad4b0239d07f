//! Client authentication: `Authorization: Bearer <client key>` against `CLIENT_KEYS`, whose
//! entries are `key` (every account) or `key@acct1+acct2` (only those accounts).

use crate::error::AppError;

const MIN_KEY_CHARS: usize = 16;

/// The business servers' keys. Never empty: with no key configured, [`ClientKeys::parse`]
/// refuses to build one, so every token request fails closed.
#[derive(Clone)]
pub struct ClientKeys(Vec<ClientKey>);

#[derive(Clone)]
struct ClientKey {
    key: String,
    /// None: every account.
    accounts: Option<Vec<String>>,
}

/// What an authenticated caller may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant<'a> {
    accounts: Option<&'a [String]>,
}

impl Grant<'_> {
    pub fn permits(&self, account_id: &str) -> bool {
        self.accounts
            .is_none_or(|ids| ids.iter().any(|id| id == account_id))
    }

    pub fn check(&self, account_id: &str) -> Result<(), AppError> {
        if self.permits(account_id) {
            Ok(())
        } else {
            Err(AppError::ForbiddenAccount)
        }
    }
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKeys({} keys)", self.0.len())
    }
}

impl ClientKeys {
    /// Parses `CLIENT_KEYS`. Errors name the entry's position, never the key.
    pub fn parse(value: Option<&str>) -> Result<Self, AppError> {
        let fail = |problem: String| AppError::Config {
            variable: "CLIENT_KEYS",
            problem,
        };
        let mut keys = Vec::new();
        let entries = value.unwrap_or_default().split(',').map(str::trim);
        for (index, entry) in entries.filter(|e| !e.is_empty()).enumerate() {
            let position = index + 1;
            let (key, accounts) = match entry.split_once('@') {
                None => (entry, None),
                Some((key, scope)) => {
                    let ids: Vec<String> =
                        scope.split('+').map(|id| id.trim().to_owned()).collect();
                    if ids.iter().any(String::is_empty) {
                        return Err(fail(format!(
                            "entry {position} has an empty account list after '@' (key@acct1+acct2)"
                        )));
                    }
                    (key.trim(), Some(ids))
                }
            };
            if key.chars().count() < MIN_KEY_CHARS {
                return Err(fail(format!(
                    "entry {position} is shorter than {MIN_KEY_CHARS} characters"
                )));
            }
            keys.push(ClientKey {
                key: key.to_owned(),
                accounts,
            });
        }
        if keys.is_empty() {
            return Err(fail(
                "lists no key, so every token request is refused; set it with `wrangler secret \
                 put CLIENT_KEYS`"
                    .into(),
            ));
        }
        Ok(Self(keys))
    }

    /// Accepts the request if its `Authorization` header carries one of the keys. Every key is
    /// compared in full, so the time taken says nothing about which key came close.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<Grant<'_>, AppError> {
        self.authorize_key(authorization.and_then(bearer_token))
    }

    /// As [`Self::authorize`], for a key that came some other way (the `secret` an SDK sends).
    pub fn authorize_key(&self, presented: Option<&str>) -> Result<Grant<'_>, AppError> {
        let presented = presented
            .filter(|key| !key.is_empty())
            .ok_or(AppError::Unauthorized)?;
        let mut matched = None;
        for candidate in &self.0 {
            if constant_time_eq(candidate.key.as_bytes(), presented.as_bytes()) {
                matched = matched.or(Some(candidate));
            }
        }
        matched
            .map(|key| Grant {
                accounts: key.accounts.as_deref(),
            })
            .ok_or(AppError::Unauthorized)
    }
}

pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Equality whose running time depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    let mut difference = (expected.len() ^ presented.len()) as u64;
    for (index, byte) in presented.iter().enumerate() {
        let other = expected.get(index).copied().unwrap_or(0);
        difference |= u64::from(other ^ byte);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &str = "first-key-0123456789";
    const SCOPED: &str = "scoped-key-0123456789";

    fn keys() -> ClientKeys {
        ClientKeys::parse(Some(&format!(" {ALL} , {SCOPED}@shop+hr ,"))).unwrap()
    }

    #[test]
    fn accepts_any_configured_key() {
        assert!(keys().authorize(Some(&format!("Bearer {ALL}"))).is_ok());
        assert!(keys().authorize(Some(&format!("bearer {SCOPED}"))).is_ok());
    }

    #[test]
    fn scoped_keys_reach_only_their_accounts() {
        let keys = keys();
        let all = keys.authorize(Some(&format!("Bearer {ALL}"))).unwrap();
        assert!(all.permits("shop") && all.permits("anything"));
        let scoped = keys.authorize(Some(&format!("Bearer {SCOPED}"))).unwrap();
        assert!(scoped.permits("shop") && scoped.permits("hr"));
        assert_eq!(scoped.check("wx-other"), Err(AppError::ForbiddenAccount));
        // The scope is not part of the key.
        assert!(keys
            .authorize(Some(&format!("Bearer {SCOPED}@shop+hr")))
            .is_err());
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
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn debug_never_prints_keys() {
        assert_eq!(format!("{:?}", keys()), "ClientKeys(2 keys)");
    }
}
