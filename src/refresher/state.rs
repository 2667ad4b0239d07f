//! What an account's object keeps about each credential, in memory and in storage.

use super::Core;
use crate::error::AppError;
use crate::jssdk::{TicketKind, TicketRecord};
use crate::kv_cache;
use crate::quota::DailyCount;
use crate::runtime;
use crate::singleflight::SingleFlight;
use crate::status::ErrorRecord;
use crate::token::{AttemptRecord, ForceLog, TokenRecord};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::cell::{Cell, RefCell};

pub(super) const FORCED_KEY: &str = "forced";
pub(super) const LAST_ERROR_KEY: &str = "last_error";
/// The configuration (fingerprint) WeChat last refused the credentials of.
pub(super) const BLOCKED_CONFIG_KEY: &str = "blocked_config";

/// The account's credentials: the access_token and the two kinds of ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Which {
    Token,
    Ticket(TicketKind),
}

impl Which {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Ticket(kind) => kind.name(),
        }
    }

    pub(super) fn record_key(self) -> String {
        match self {
            Self::Token => "token".into(),
            Self::Ticket(kind) => format!("ticket:{}", kind.name()),
        }
    }

    pub(super) fn attempt_key(self) -> String {
        match self {
            Self::Token => "last_attempt".into(),
            Self::Ticket(kind) => format!("ticket_attempt:{}", kind.name()),
        }
    }

    pub(super) fn usage_key(self) -> String {
        format!("usage:{}", self.name())
    }

    pub(super) fn kv_key(self, account_id: &str) -> String {
        match self {
            Self::Token => kv_cache::token_key(account_id),
            Self::Ticket(kind) => kv_cache::ticket_key(account_id, kind),
        }
    }
}

/// Calls to WeChat for one credential today, and when WeChat last said its quota was used up.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Usage {
    pub(super) calls: DailyCount,
    pub(super) quota_error_at: Option<u64>,
}

/// One credential's in-memory state, a copy of what the object stores.
pub(super) struct Slot<R> {
    pub(super) record: RefCell<Option<R>>,
    pub(super) last_attempt: RefCell<Option<AttemptRecord>>,
    pub(super) usage: RefCell<Usage>,
    pub(super) kv_written_at: Cell<u64>,
    pub(super) flight: SingleFlight<Result<R, AppError>>,
}

impl<R: Clone> Default for Slot<R> {
    fn default() -> Self {
        Self {
            record: RefCell::default(),
            last_attempt: RefCell::default(),
            usage: RefCell::default(),
            kv_written_at: Cell::default(),
            flight: SingleFlight::default(),
        }
    }
}

#[derive(Default)]
pub struct Shared {
    pub(super) loaded: Cell<bool>,
    pub(super) token: Slot<TokenRecord>,
    pub(super) forced: RefCell<ForceLog>,
    pub(super) jsapi: Slot<TicketRecord>,
    pub(super) wx_card: Slot<TicketRecord>,
    pub(super) last_error: RefCell<Option<ErrorRecord>>,
    pub(super) blocked_config: RefCell<Option<String>>,
}

impl Shared {
    pub(super) fn ticket(&self, kind: TicketKind) -> &Slot<TicketRecord> {
        match kind {
            TicketKind::Jsapi => &self.jsapi,
            TicketKind::WxCard => &self.wx_card,
        }
    }

    pub(super) fn usage(&self, which: Which) -> &RefCell<Usage> {
        match which {
            Which::Token => &self.token.usage,
            Which::Ticket(kind) => &self.ticket(kind).usage,
        }
    }
}

impl Core {
    /// Reads the stored state once per object instance. Storage reads do not interleave with
    /// other requests (input gates), so two loads cannot race.
    pub async fn load(&self) -> Result<(), AppError> {
        let shared = &self.shared;
        if shared.loaded.get() {
            return Ok(());
        }
        let storage = self.state.storage();
        async fn get<T: DeserializeOwned>(
            storage: &worker::Storage,
            key: &str,
        ) -> Result<Option<T>, AppError> {
            storage
                .get(key)
                .await
                .map_err(|e| runtime::internal("reading storage", e))
        }
        let token = get(&storage, &Which::Token.record_key()).await?;
        let token_attempt = get(&storage, &Which::Token.attempt_key()).await?;
        let token_usage = get(&storage, &Which::Token.usage_key()).await?;
        let forced = get(&storage, FORCED_KEY).await?;
        let last_error = get(&storage, LAST_ERROR_KEY).await?;
        let blocked_config = get(&storage, BLOCKED_CONFIG_KEY).await?;
        let mut tickets = Vec::new();
        for kind in TicketKind::ALL {
            let which = Which::Ticket(kind);
            let record = get(&storage, &which.record_key()).await?;
            let attempt = get(&storage, &which.attempt_key()).await?;
            tickets.push((
                kind,
                record,
                attempt,
                get(&storage, &which.usage_key()).await?,
            ));
        }
        if !shared.loaded.replace(true) {
            *shared.token.record.borrow_mut() = token;
            *shared.token.last_attempt.borrow_mut() = token_attempt;
            *shared.token.usage.borrow_mut() = token_usage.unwrap_or_default();
            *shared.forced.borrow_mut() = forced.unwrap_or_default();
            *shared.last_error.borrow_mut() = last_error;
            *shared.blocked_config.borrow_mut() = blocked_config;
            for (kind, record, attempt, usage) in tickets {
                let slot = shared.ticket(kind);
                *slot.record.borrow_mut() = record;
                *slot.last_attempt.borrow_mut() = attempt;
                *slot.usage.borrow_mut() = usage.unwrap_or_default();
            }
        }
        Ok(())
    }
}
