//! The read-through shared by tokens and tickets: this isolate's memory, then KV, then the
//! account's Durable Object.

use crate::edge::adapters::kv_cache;
use crate::edge::adapters::memo;
use crate::edge::adapters::runtime::{self, log_error, now_millis};
use crate::edge::objects::directory;
use crate::edge::objects::object_client;
use crate::edge::objects::refresher::Acquired;
use crate::error::AppError;
use crate::policy::accounts::Account;
use crate::policy::config::Settings;
use crate::policy::ledger::CredentialKind;
use crate::policy::refresh::Trigger;
use crate::policy::ticket::{TicketKind, TicketRecord};
use crate::policy::token::{Credential, TokenRecord};
use serde::de::DeserializeOwned;
use serde_json::json;
use worker::{Context, Env};

/// One isolate asks the object for a background refresh of a credential at most this often.
const BACKGROUND_ASK_SPACING_MS: u64 = 5_000;
/// A token or a ticket, as the read-through below fetches it.
pub trait Readable: Credential + DeserializeOwned + 'static {
    type Kind: Copy + 'static;
    fn credential(kind: Self::Kind) -> CredentialKind;
    async fn ask(
        env: &Env,
        account_id: &str,
        kind: Self::Kind,
        trigger: Trigger,
    ) -> Result<Acquired<Self>, AppError>;
}

impl Readable for TokenRecord {
    type Kind = ();
    fn credential((): ()) -> CredentialKind {
        CredentialKind::Token
    }
    async fn ask(
        env: &Env,
        account_id: &str,
        (): (),
        trigger: Trigger,
    ) -> Result<Acquired<Self>, AppError> {
        object_client::token(env, account_id, trigger).await
    }
}

impl Readable for TicketRecord {
    type Kind = TicketKind;
    fn credential(kind: TicketKind) -> CredentialKind {
        CredentialKind::Ticket(kind)
    }
    async fn ask(
        env: &Env,
        account_id: &str,
        kind: TicketKind,
        trigger: Trigger,
    ) -> Result<Acquired<Self>, AppError> {
        object_client::ticket(env, account_id, kind, trigger).await
    }
}

/// Served from this isolate's memory or from KV when the record there may be served; a record
/// inside the margin is still served at once while the Durable Object refreshes it in the
/// background. A miss goes to the object.
pub async fn read<R: Readable>(
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    account: &Account,
    kind: R::Kind,
) -> Result<R, AppError> {
    let now_ms = now_millis();
    let now = now_ms / 1000;
    let key = kv_cache::key(&account.id, R::credential(kind));
    if let Some(remembered) = memo::recall::<R>(&key, now_ms) {
        return Ok(remembered);
    }
    let margin_secs = settings.refresh.margin_secs;
    let cached = kv_cache::read::<R>(env, &key, &account.issuer, now)
        .await
        .filter(|c| now < c.fresh_until + settings.kv_stale_answer_secs());
    let Some(cached) = cached else {
        // Whatever the object does may replace the token (a ticket fetch that WeChat answers
        // with 40001 does): this isolate must not keep answering with the old one.
        forget(&kv_cache::key(&account.id, CredentialKind::Token));
        let acquired = R::ask(env, &account.id, kind, Trigger::Read).await?;
        let record = acquired
            .record()
            .ok_or_else(|| runtime::internal("policy", "a read got nothing"))?;
        remember(&key, &record, now_ms, margin_secs);
        return Ok(record);
    };
    let stale = !cached.is_fresh(now);
    let cached = cached.record;
    if (stale || cached.is_due(now, margin_secs)) && first_ask(&key, now_ms) {
        let (env, id) = (env.clone(), account.id.clone());
        ctx.wait_until(async move {
            if let Err(e) = R::ask(&env, &id, kind, Trigger::Background).await {
                log_error(json!({
                    "event": "background_refresh_failed", "account": id, "message": e.message(),
                    "wechat_rid": e.rid(),
                }));
            }
        });
    }
    remember_unless_dropped(&key, &cached, now_ms, margin_secs);
    Ok(cached)
}

/// A passive refresh by the account's object. Readers in this isolate see its outcome at once.
pub async fn refresh(
    env: &Env,
    settings: &Settings,
    account: &Account,
    trigger: Trigger,
) -> Result<TokenRecord, AppError> {
    let key = kv_cache::key(&account.id, CredentialKind::Token);
    forget(&key);
    let acquired = object_client::token(env, &account.id, trigger).await?;
    let record = acquired
        .record()
        .ok_or_else(|| runtime::internal("policy", "a refresh got nothing"))?;
    remember(&key, &record, now_millis(), settings.refresh.margin_secs);
    Ok(record)
}

/// A call made with an account's current token, and what healing did to it.
pub enum Healed<T> {
    /// The first answer: WeChat took the token, or it was not sent again.
    First(T),
    /// WeChat refused the token; the answer sent with its successor.
    Resent(T),
    /// WeChat refused the token and no successor came (`why`); the first answer.
    Refused { first: T, why: AppError },
}

/// Sends `send` with `account`'s current token. When `rejected` says WeChat refused that
/// token, a refresh naming it (`trigger`, shared by every caller that saw the same token)
/// replaces it, and, if `resend`, the call goes once more with the successor. The only error
/// is the first read's; what the sends answered is the caller's to judge.
pub async fn with_healing<T, F, Fut>(
    (env, ctx, settings): (&Env, &Context, &Settings),
    account: &Account,
    trigger: impl FnOnce(String) -> Trigger,
    resend: bool,
    rejected: impl Fn(&T) -> bool,
    send: F,
) -> Result<Healed<T>, AppError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let token = read::<TokenRecord>(env, ctx, settings, account, ())
        .await?
        .access_token;
    let first = send(token.clone()).await;
    if !rejected(&first) {
        return Ok(Healed::First(first));
    }
    match refresh(env, settings, account, trigger(token.clone())).await {
        Ok(fresh) if resend && fresh.access_token != token => {
            Ok(Healed::Resent(send(fresh.access_token).await))
        }
        Ok(_) => Ok(Healed::First(first)),
        Err(why) => Ok(Healed::Refused { first, why }),
    }
}

/// Whether this isolate should ask for a background refresh of `key` now: once per few
/// seconds, not once per request while a credential is due.
fn first_ask(key: &str, now_ms: u64) -> bool {
    let asked = format!("asked:{key}");
    if memo::recall::<()>(&asked, now_ms).is_some() {
        return false;
    }
    memo::remember(&asked, (), Some(now_ms + BACKGROUND_ASK_SPACING_MS));
    true
}

/// Drops this isolate's copies of an account's credentials (it was deleted or replaced).
pub fn forget_account(account_id: &str) {
    for which in CredentialKind::ALL {
        forget(&kv_cache::key(account_id, which));
    }
}

/// Drops this isolate's copy of `key` before something that may replace it, and notes when:
/// a read that started earlier must not put the old record back.
fn forget(key: &str) {
    memo::forget(key);
    memo::remember(&format!("dropped:{key}"), now_millis(), None);
}

fn remember_unless_dropped<R: Credential + 'static>(
    key: &str,
    record: &R,
    read_started_ms: u64,
    margin_secs: u64,
) {
    let dropped_at = memo::recall::<u64>(&format!("dropped:{key}"), read_started_ms);
    if dropped_at.is_none_or(|at| at < read_started_ms) {
        remember(key, record, read_started_ms, margin_secs);
    }
}

/// Keeps `record` in this isolate's memory for a moment, never into its margin (where every
/// read must see it and ask for a refresh).
fn remember<R: Credential + 'static>(key: &str, record: &R, now_ms: u64, margin_secs: u64) {
    let due_at_ms = record.expires_at().saturating_sub(margin_secs) * 1000;
    let until_ms = (now_ms + memo::RECORD_MEMO_MS).min(due_at_ms);
    if until_ms > now_ms {
        memo::remember(key, record.clone(), Some(until_ms));
    }
}

/// The account whose token `presented` is, by the index the objects write to KV (one read,
/// whatever the number of accounts). With a single account and none registered at runtime
/// (no admin API, no platform whose authorizers register), a token the index does not know
/// (yet) is compared with that account's token as readers get it: memory and KV first, its
/// object only when KV has nothing fresh, and then at most once a second per isolate (the
/// record is remembered).
pub async fn recognize(
    env: &Env,
    ctx: &Context,
    settings: &Settings,
    presented: &str,
) -> Result<Option<String>, AppError> {
    let now_ms = now_millis();
    let now = now_ms / 1000;
    // A token recognized a moment ago is this isolate's to remember (a pass-through call
    // then costs no KV read), never past the end of its acceptance.
    let memo_key = format!("recognized:{presented}");
    if let Some(account) = memo::recall::<String>(&memo_key, now_ms) {
        // Unless a refresh in this isolate has retired it since.
        let record_key = kv_cache::key(&account, CredentialKind::Token);
        let record = memo::recall::<TokenRecord>(&record_key, now_ms);
        let retired = record.is_some_and(|r| r.retired(presented, now));
        return Ok((!retired).then_some(account));
    }
    if let Some(entry) = kv_cache::read_index(env, presented).await {
        let account = directory::by_id(env, settings, &entry.account)
            .await
            .ok()
            .filter(|account| account.issuer == entry.issuer);
        let Some(account) = account.filter(|_| now < entry.accepted_until) else {
            return Ok(None);
        };
        // The account's record is written before the index entries of its tokens: if it
        // already says this token's acceptance is over (a forced stable_token call), the
        // entry, not yet rewritten, is out of date. The read is the one the caller's call
        // makes next (this isolate then remembers the record).
        let record = read::<TokenRecord>(env, ctx, settings, &account, ()).await?;
        let recognized = (!record.retired(presented, now)).then_some(entry.account);
        if let Some(account) = &recognized {
            let until_ms = (now_ms + memo::RECORD_MEMO_MS).min(entry.accepted_until * 1000);
            memo::remember(&memo_key, account.clone(), Some(until_ms));
        }
        return Ok(recognized);
    }
    // One account, and none can be registered at runtime: the token can only be its.
    let [only] = settings.accounts.as_slice() else {
        return Ok(None);
    };
    if runtime::admin_keys(env)?.is_some() || settings.component.is_some() {
        return Ok(None);
    }
    let current = read::<TokenRecord>(env, ctx, settings, only, ()).await?;
    Ok(current.accepts(presented, now).then(|| only.id.clone()))
}
