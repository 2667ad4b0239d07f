//! The runtime account registry's rules: admin keys (`ADMIN_KEYS`), what a registered account
//! holds (its appsecret only sealed), how an account is shown to an admin, and the listing's
//! pages (environment accounts first, in their configured order, then registered ones by id).
//! Pure.

use crate::error::AppError;
use crate::policy::accounts::{Account, AccountKind, TokenApi};
use crate::policy::auth::digests_equal;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const MIN_ADMIN_KEY_CHARS: usize = 32;

/// How many accounts a page holds: `?limit=` from 1 to `max`, `default` if absent.
#[derive(Clone, Copy, Debug)]
pub struct PageSize {
    pub default: usize,
    pub max: usize,
}

/// The admin listing: one registry query a page.
pub const ADMIN_PAGE: PageSize = PageSize {
    default: 100,
    max: 1000,
};

/// `POST /admin/reseal`: each account sealed again is two KV writes (its copy and its appid's
/// index), well within KV's 1,000 operations per invocation.
pub const RESEAL_BATCH: PageSize = PageSize {
    default: 100,
    max: 200,
};

/// `/status`: a page is one registry call whatever its size (the summaries the accounts'
/// objects reported); the bound keeps an answer a size a page shows at once.
pub const STATUS_PAGE: PageSize = PageSize {
    default: 40,
    max: 100,
};

/// `ADMIN_KEYS`: the bearer keys of the admin API, kept as digests.
pub struct AdminKeys(Vec<[u8; 32]>);

impl std::fmt::Debug for AdminKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminKeys({} keys)", self.0.len())
    }
}

impl AdminKeys {
    /// None: the admin API is disabled. `is_client_key` tells whether a key is also in
    /// `CLIENT_KEYS`, which would let it read tokens. Errors name the entry's position, never
    /// the key.
    pub fn parse(
        value: Option<&str>,
        is_client_key: impl Fn(&str) -> bool,
    ) -> Result<Option<Self>, AppError> {
        let entries: Vec<&str> = value
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(None);
        }
        if let Some(index) = entries
            .iter()
            .position(|key| key.chars().count() < MIN_ADMIN_KEY_CHARS)
        {
            return Err(AppError::Config {
                variable: "ADMIN_KEYS",
                problem: format!(
                    "entry {} is shorter than {MIN_ADMIN_KEY_CHARS} characters",
                    index + 1
                ),
            });
        }
        if let Some(index) = entries.iter().position(|key| is_client_key(key)) {
            return Err(AppError::Config {
                variable: "ADMIN_KEYS",
                problem: format!(
                    "entry {} is also a client key (CLIENT_KEYS): keep the two apart",
                    index + 1
                ),
            });
        }
        let digests = entries
            .iter()
            .map(|key| Sha256::digest(key.as_bytes()).into())
            .collect();
        Ok(Some(Self(digests)))
    }

    /// Accepts one of the keys; every digest is compared in full.
    pub fn authorize(&self, presented: Option<&str>) -> Result<(), AppError> {
        let refused = AppError::AdminUnauthorized;
        let presented = presented.filter(|k| !k.is_empty()).ok_or(refused.clone())?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let matches = self.0.iter().fold(false, |any, candidate| {
            any | digests_equal(candidate, &digest)
        });
        matches.then_some(()).ok_or(refused)
    }
}

/// An account registered at runtime, as the registry stores it and KV carries it to the edge:
/// the appsecret only sealed (`policy::sealing`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub id: String,
    pub kind: String,
    pub appid: String,
    pub api: String,
    pub sealed_secret: String,
    pub created_at: u64,
    pub updated_at: u64,
    /// Counts the registry's writes of this id: KV's copy carries it, so that a copy that
    /// disagrees with the registry is found.
    #[serde(default)]
    pub version: u64,
}

impl Registered {
    /// `account` as registered at `now`, replacing an entry created at `created_at`, if any.
    pub fn new(
        account: &Account,
        sealed_secret: String,
        now: u64,
        created_at: Option<u64>,
    ) -> Self {
        Self {
            id: account.id.clone(),
            kind: account.kind.name().to_owned(),
            appid: account.appid.clone(),
            api: account.api.name().to_owned(),
            sealed_secret,
            created_at: created_at.unwrap_or(now),
            updated_at: now,
            version: 0,
        }
    }

    /// The account, with its opened secret.
    pub fn account(&self, secret: &str) -> Result<Account, AppError> {
        let kind = AccountKind::parse_stored(&self.kind);
        let api = TokenApi::parse_stored(&self.api);
        match (kind, api) {
            (Some(kind), Some(api)) => Ok(Account::new(&self.id, kind, &self.appid, secret, api)),
            _ => Err(AppError::Internal(format!(
                "the registered account \"{}\" is unreadable",
                self.id
            ))),
        }
    }

    /// What an admin sees: never the secret, sealed or not.
    pub fn public(&self) -> Value {
        json!({
            "id": self.id, "kind": self.kind, "appid": self.appid, "api": self.api,
            "source": "runtime", "created_at": self.created_at, "updated_at": self.updated_at,
        })
    }
}

/// An environment account as an admin sees it (read-only here).
pub fn env_public(account: &Account) -> Value {
    json!({
        "id": account.id, "kind": account.kind.name(), "appid": account.appid,
        "api": account.api.name(), "source": "env",
    })
}

/// `?limit=`, within `size`.
pub fn page_limit(value: Option<&str>, size: PageSize) -> Result<usize, AppError> {
    match value {
        None => Ok(size.default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=size.max).contains(n))
            .ok_or_else(|| AppError::BadRequest(format!("limit must be 1 to {}", size.max))),
    }
}

/// Where a listing goes on: at an offset into the environment accounts, after a registered
/// account's id, or (for a key limited to some accounts) at an offset into its own list.
/// Opaque to clients (base64url), and a cursor of one kind of listing is refused by the other:
/// a limited key's cursor names nothing but its own position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    Env(usize),
    Runtime(String),
    Scoped(usize),
}

impl Cursor {
    /// The cursor of a listing of every account (a limited key's is refused).
    pub fn parse(value: Option<&str>) -> Result<Self, AppError> {
        match Self::decode(value)? {
            Self::Scoped(_) => Err(bad_cursor()),
            cursor => Ok(cursor),
        }
    }

    fn decode(value: Option<&str>) -> Result<Self, AppError> {
        let bad = bad_cursor;
        let Some(text) = value.filter(|v| !v.is_empty()) else {
            return Ok(Self::Env(0));
        };
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let plain = String::from_utf8(bytes).map_err(|_| bad())?;
        match plain.split_at_checked(2) {
            Some(("e.", n)) => n.parse().map(Self::Env).map_err(|_| bad()),
            Some(("r.", id)) => Ok(Self::Runtime(id.to_owned())),
            Some(("s.", n)) => n.parse().map(Self::Scoped).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// Where a limited key's listing starts: its own list from the start, whatever cursor it
    /// names but its own kind (refused).
    pub fn parse_scoped(value: Option<&str>) -> Result<usize, AppError> {
        match Self::decode(value)? {
            Self::Env(0) if value.is_none_or(str::is_empty) => Ok(0),
            Self::Scoped(offset) => Ok(offset),
            _ => Err(bad_cursor()),
        }
    }

    pub fn encode(&self) -> String {
        let plain = match self {
            Self::Env(offset) => format!("e.{offset}"),
            Self::Runtime(after) => format!("r.{after}"),
            Self::Scoped(offset) => format!("s.{offset}"),
        };
        URL_SAFE_NO_PAD.encode(plain)
    }
}

fn bad_cursor() -> AppError {
    AppError::BadRequest("cursor is not one this server gave".into())
}

/// One page's environment part: the ids at `cursor` (up to `limit`), and where the page goes
/// on (more environment accounts, or the registered ones from the start).
pub fn env_page<'a>(
    env_accounts: &'a [Account],
    cursor: &Cursor,
    limit: usize,
) -> (Vec<&'a Account>, Option<Cursor>) {
    let Cursor::Env(offset) = cursor else {
        return (Vec::new(), Some(cursor.clone()));
    };
    let taken: Vec<&Account> = env_accounts.iter().skip(*offset).take(limit).collect();
    let next = if offset + taken.len() < env_accounts.len() {
        Cursor::Env(offset + taken.len())
    } else {
        Cursor::Runtime(String::new())
    };
    (taken, Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str) -> Account {
        Account::new(
            id,
            AccountKind::MiniProgram,
            &format!("wx{id}"),
            "s",
            TokenApi::Stable,
        )
    }

    #[test]
    fn admin_keys_are_long_and_checked_in_full() {
        let no_client = |_: &str| false;
        assert!(AdminKeys::parse(None, no_client).unwrap().is_none());
        assert!(AdminKeys::parse(Some(" , "), no_client).unwrap().is_none());
        let long = "a".repeat(32);
        let keys = AdminKeys::parse(Some(&format!("{long},{}", "b".repeat(40))), no_client)
            .unwrap()
            .unwrap();
        assert_eq!(keys.authorize(Some(&long)), Ok(()));
        assert_eq!(keys.authorize(Some(&"b".repeat(40))), Ok(()));
        for wrong in [None, Some(""), Some("a"), Some(&*"a".repeat(33))] {
            assert_eq!(keys.authorize(wrong), Err(AppError::AdminUnauthorized));
        }
        let shared = AdminKeys::parse(Some(&long), |k| k == long);
        assert!(
            matches!(shared, Err(AppError::Config { problem, .. }) if problem.contains("entry 1 is also"))
        );
        match AdminKeys::parse(Some(&format!("{long},short-key")), no_client) {
            Err(AppError::Config { problem, .. }) => {
                assert!(problem.contains("entry 2") && !problem.contains("short-key"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_registered_account_round_trips_and_shows_no_secret() {
        let registered = Registered::new(&account("shop"), "v1:sealed".into(), 100, None);
        assert_eq!((registered.created_at, registered.updated_at), (100, 100));
        let replaced = Registered::new(&account("shop"), "v1:other".into(), 200, Some(100));
        assert_eq!((replaced.created_at, replaced.updated_at), (100, 200));
        assert_eq!(registered.account("s").unwrap(), account("shop"));
        let shown = registered.public().to_string();
        assert!(!shown.contains("sealed") && shown.contains("\"source\":\"runtime\""));
    }

    #[test]
    fn pages_go_through_the_environment_then_the_registry() {
        let env = [account("a"), account("b"), account("c")];
        let (first, next) = env_page(&env, &Cursor::Env(0), 2);
        assert_eq!(first.len(), 2);
        assert_eq!(next, Some(Cursor::Env(2)));
        let (second, next) = env_page(&env, &Cursor::Env(2), 2);
        assert_eq!(second[0].id, "c");
        assert_eq!(next, Some(Cursor::Runtime(String::new())));
        let after = Cursor::Runtime("m".into());
        assert_eq!(env_page(&env, &after, 2), (Vec::new(), Some(after.clone())));
        for cursor in [
            Cursor::Env(7),
            Cursor::Runtime("shop-1".into()),
            Cursor::Scoped(3),
        ] {
            assert!(!cursor.encode().contains("shop"), "opaque");
            assert_eq!(Cursor::decode(Some(&cursor.encode())), Ok(cursor));
        }
        assert!(Cursor::parse(Some(&Cursor::Scoped(3).encode())).is_err());
        for bad in ["x.1", "r.shop", "e.1", "!!"] {
            assert!(Cursor::parse(Some(bad)).is_err());
        }
        assert_eq!(Cursor::parse_scoped(None), Ok(0));
        assert_eq!(
            Cursor::parse_scoped(Some(&Cursor::Scoped(4).encode())),
            Ok(4)
        );
        for other in [Cursor::Env(0), Cursor::Env(2), Cursor::Runtime("a".into())] {
            assert!(Cursor::parse_scoped(Some(&other.encode())).is_err());
        }
        assert_eq!(page_limit(None, ADMIN_PAGE), Ok(100));
        assert_eq!(page_limit(Some("1000"), ADMIN_PAGE), Ok(1000));
        assert!(page_limit(Some("0"), ADMIN_PAGE).is_err());
        assert!(page_limit(Some("1001"), ADMIN_PAGE).is_err());
        assert_eq!(page_limit(None, STATUS_PAGE), Ok(40));
        assert!(page_limit(Some("101"), STATUS_PAGE).is_err());
    }
}
