//! Client authentication: `Authorization: Bearer <client key>` against `CLIENT_KEYS`.

use crate::error::AppError;

/// The business servers' keys. Never empty: with no key configured, `config::client_keys`
/// refuses to build one, so every token request fails closed.
#[derive(Clone)]
pub struct ClientKeys(Vec<String>);

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKeys({} keys)", self.0.len())
    }
}

impl ClientKeys {
    pub(crate) fn new(keys: Vec<String>) -> Self {
        debug_assert!(!keys.is_empty());
        Self(keys)
    }

    /// Accepts the request if its `Authorization` header carries one of the keys. Every key is
    /// compared in full, so the time taken says nothing about which key came close.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), AppError> {
        let presented = authorization
            .and_then(bearer_token)
            .ok_or(AppError::Unauthorized)?;
        let matched = self.0.iter().fold(false, |found, key| {
            found | constant_time_eq(key.as_bytes(), presented.as_bytes())
        });
        if matched {
            Ok(())
        } else {
            Err(AppError::Unauthorized)
        }
    }
}

fn bearer_token(header: &str) -> Option<&str> {
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

    fn keys() -> ClientKeys {
        ClientKeys::new(vec![
            "first-key-0123456789".into(),
            "second-key-0123456789".into(),
        ])
    }

    #[test]
    fn accepts_any_configured_key() {
        assert!(keys()
            .authorize(Some("Bearer first-key-0123456789"))
            .is_ok());
        assert!(keys()
            .authorize(Some("bearer second-key-0123456789"))
            .is_ok());
    }

    #[test]
    fn refuses_missing_malformed_and_wrong_keys() {
        for header in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic first-key-0123456789"),
            Some("Bearer first-key-012345678"),
            Some("Bearer first-key-01234567890"),
            Some("first-key-0123456789"),
        ] {
            assert_eq!(
                keys().authorize(header),
                Err(AppError::Unauthorized),
                "{header:?}"
            );
        }
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
