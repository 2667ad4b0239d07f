//! Which account a request names: one from the environment (`WECHAT_ACCOUNTS`), else one
//! registered at runtime, found through KV (`account:<id>`, and `account-appid:<appid>` for
//! an SDK that names the appid) and kept in isolate memory briefly, so that a hot request
//! costs no Durable Object call. The registry object is the truth; the admin API writes KV
//! after it.

use crate::edge::adapters::memo;
use crate::edge::adapters::runtime::{self, now_millis, KV_BINDING};
use crate::edge::objects::registry::{self as registry_object, appid_key, descriptor_key};
use crate::error::AppError;
use crate::policy::accounts::{Account, AccountKind};
use crate::policy::config::{AccountName, Settings};
use crate::policy::registry::{self, Cursor, Registered};
use std::rc::Rc;
use worker::Env;

/// How long an isolate trusts what it read of a registered account (or of its absence).
const DESCRIPTOR_MEMO_MS: u64 = 30_000;

fn memo_key(id: &str) -> String {
    format!("registered:{id}")
}

/// The account `name` names, if there is one.
pub async fn find(
    env: &Env,
    settings: &Settings,
    name: AccountName<'_>,
) -> Result<Option<Rc<Account>>, AppError> {
    if let Some(account) = settings.find(name)? {
        return Ok(Some(Rc::new(account.clone())));
    }
    match name {
        AccountName::Default => Ok(None),
        AccountName::Id(id) => registered(env, id).await,
        AccountName::AppId(appid) => {
            let mut found = Vec::new();
            for id in sharing_appid(env, appid).await? {
                // An index entry the registry has not yet rewritten (a failed write that the
                // cron repairs) may name an account whose appid changed: not this appid's.
                if let Some(account) = registered(env, &id).await?.filter(|a| a.appid == appid) {
                    found.push(account);
                }
            }
            match found.len() {
                0 => Ok(registered(env, appid).await?.filter(|a| a.appid == appid)),
                1 => Ok(found.pop()),
                _ => Err(AppError::BadRequest(
                    "several accounts share that appid (WeCom apps of one corp, or one app \
                     through two APIs): name one with ?account=<id>"
                        .into(),
                )),
            }
        }
    }
}

/// The account with this id, from the environment or registered.
pub async fn by_id(env: &Env, settings: &Settings, id: &str) -> Result<Rc<Account>, AppError> {
    find(env, settings, AccountName::Id(id))
        .await?
        .ok_or(AppError::UnknownAccount)
}

/// A registered account, through isolate memory and KV.
async fn registered(env: &Env, id: &str) -> Result<Option<Rc<Account>>, AppError> {
    let now_ms = now_millis();
    if let Some(known) = memo::recall::<Option<Rc<Account>>>(&memo_key(id), now_ms) {
        return Ok(known);
    }
    let kv = env.kv(KV_BINDING).map_err(|e| runtime::internal("KV", e))?;
    let entry = kv
        .get(&descriptor_key(id))
        .json::<Registered>()
        .await
        .map_err(|e| runtime::internal("reading a registered account from KV", e))?;
    let account = match entry {
        Some(entry) => Some(Rc::new(open(env, &entry)?)),
        None => None,
    };
    memo::remember(
        &memo_key(id),
        account.clone(),
        Some(now_ms + DESCRIPTOR_MEMO_MS),
    );
    Ok(account)
}

/// The account a registry entry describes, its secret opened (an authorizer has none: its
/// refresh token stays in its object).
pub fn open(env: &Env, entry: &Registered) -> Result<Account, AppError> {
    if entry.kind == AccountKind::Authorizer.name() {
        return entry.account("");
    }
    let secret = runtime::key_ring(env)?.open(&entry.id, &entry.sealed_secret)?;
    entry.account(&secret)
}

/// The registered ids KV lists under an appid (an older entry holds one id, not a list).
async fn sharing_appid(env: &Env, appid: &str) -> Result<Vec<String>, AppError> {
    let kv = env.kv(KV_BINDING).map_err(|e| runtime::internal("KV", e))?;
    let text = kv.get(&appid_key(appid)).text().await.ok().flatten();
    Ok(match text {
        None => Vec::new(),
        Some(text) => serde_json::from_str(&text).unwrap_or_else(|_| vec![text]),
    })
}

/// This isolate forgets what it remembered of a registered account (written again), or
/// remembers that it is gone (removed): at once here, within KV's propagation elsewhere.
pub fn forget_registered(id: &str, gone: bool) {
    match gone {
        false => memo::forget(&memo_key(id)),
        true => memo::remember::<Option<Rc<Account>>>(
            &memo_key(id),
            None,
            Some(now_millis() + DESCRIPTOR_MEMO_MS),
        ),
    }
}

/// Refuses a deployment whose `ACCOUNTS_ENCRYPTION_KEY` no longer lists a key that still
/// seals runtime accounts (checked once per isolate, every ten minutes): every route answers
/// `config_error` naming how many, before any of them breaks on a read. A registry that cannot
/// answer does not stop the routes that need it not: the check is logged and tried again in a
/// minute.
pub async fn check_sealing_keys(env: &Env) -> Result<(), AppError> {
    let sealing = memo::once("config:sealing", || {
        let value = runtime::lookup(env)("ACCOUNTS_ENCRYPTION_KEY");
        Rc::new(value.is_some_and(|v| !v.trim().is_empty()))
    });
    if !*sealing {
        return Ok(());
    }
    let now_ms = now_millis();
    if let Some(checked) = memo::recall::<Result<(), AppError>>(SEALING_CHECK_KEY, now_ms) {
        return checked;
    }
    let ring = runtime::key_ring(env)?;
    let (checked, again_ms) = match registry_object::census(env).await {
        Ok(census) => (ring.check_census(&census), SEALING_CHECK_MS),
        Err(e) => {
            runtime::log_error(serde_json::json!({
                "event": "sealing_check_failed", "message": e.message(),
            }));
            (Ok(()), SEALING_RETRY_MS)
        }
    };
    memo::remember(SEALING_CHECK_KEY, checked.clone(), Some(now_ms + again_ms));
    checked
}

const SEALING_RETRY_MS: u64 = 60_000;

const SEALING_CHECK_KEY: &str = "config:sealing_census";
const SEALING_CHECK_MS: u64 = 600_000;

/// One account in a listing.
pub enum Listed {
    Env(Account),
    Registered(Registered),
}

impl Listed {
    /// What an admin sees of it: never a secret.
    pub fn public(&self) -> serde_json::Value {
        match self {
            Self::Env(account) => registry::env_public(account),
            Self::Registered(entry) => entry.public(),
        }
    }
}

/// One page of every account (environment ones first), from `cursor`, and the next cursor.
pub async fn page(
    env: &Env,
    settings: &Settings,
    cursor: &Cursor,
    limit: usize,
) -> Result<(Vec<Listed>, Option<Cursor>), AppError> {
    let (env_part, next) = registry::env_page(&settings.accounts, cursor, limit);
    let mut listed: Vec<Listed> = env_part.into_iter().cloned().map(Listed::Env).collect();
    let room = limit - listed.len();
    let next = match next {
        Some(Cursor::Runtime(after)) if room > 0 => {
            // One more than fits tells whether another page follows.
            let mut entries = registry_object::list(env, &after, room + 1).await?;
            let more = entries.len() > room;
            entries.truncate(room);
            let last = entries.last().map(|e| e.id.clone());
            listed.extend(entries.into_iter().map(Listed::Registered));
            match (more, last) {
                (true, Some(last)) => Some(Cursor::Runtime(last)),
                _ => None,
            }
        }
        other => other,
    };
    Ok((listed, next))
}
