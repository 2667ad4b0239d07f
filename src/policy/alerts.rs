//! Alerts to the operators' chat: the conditions an account's object watches, when each one
//! alerts (once when it starts, again at most every `ALERT_REPEAT_SECS` while it lasts, once
//! when it clears), and the message in each webhook's format. Pure.

use crate::error::{wechat_codes, AppError, UpstreamFailure};
use crate::policy::webhook::{self, AlertFormat, Hook};
use crate::policy::wecom_provider::SUITE_TICKET_STALE_SECS;
use serde::{Deserialize, Serialize};

/// A verify ticket older than this is an alert: WeChat pushes one every ten minutes.
pub const VERIFY_TICKET_STALE_SECS: u64 = 3600;
const DEFAULT_AFTER_SECS: u64 = 600;
const DEFAULT_REPEAT_SECS: u64 = 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// No valid token can be served: clients get errors.
    NoValidToken,
    /// Refreshes have failed for longer than `ALERT_AFTER_SECS`; a token is still served.
    RefreshFailing,
    /// The daily quota is used up: automatic refreshes wait for midnight Beijing time.
    QuotaPaused,
    /// WeChat refused the credentials: no automatic refresh until they change.
    CredentialsRefused,
    /// WeChat refused the egress IP.
    IpRefused,
    /// The platform: no verify ticket for over an hour.
    VerifyTicketStale,
    /// The account's object cannot load (a setting, the encryption key, the registry): it
    /// refreshes nothing until that is fixed.
    ConfigError,
    /// A watched API's daily quota is running low (`QUOTA_LOW_PERCENT`).
    QuotaLow,
    /// A WeCom suite: no suite ticket for over 20 minutes (two pushes missed; it works 30).
    SuiteTicketStale,
}

impl Condition {
    const ALL: [Condition; 9] = [
        Self::NoValidToken,
        Self::RefreshFailing,
        Self::QuotaPaused,
        Self::CredentialsRefused,
        Self::IpRefused,
        Self::VerifyTicketStale,
        Self::ConfigError,
        Self::QuotaLow,
        Self::SuiteTicketStale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::NoValidToken => "no_valid_token",
            Self::RefreshFailing => "refresh_failing",
            Self::QuotaPaused => "quota_paused",
            Self::CredentialsRefused => "credentials_refused",
            Self::IpRefused => "ip_refused",
            Self::VerifyTicketStale => "verify_ticket_stale",
            Self::ConfigError => "config_error",
            Self::QuotaLow => "quota_low",
            Self::SuiteTicketStale => "suite_ticket_stale",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::NoValidToken => "no valid token can be served",
            Self::RefreshFailing => "token refreshes are failing",
            Self::QuotaPaused => "the daily quota is used up: refreshes paused",
            Self::CredentialsRefused => "WeChat refused the credentials",
            Self::IpRefused => "WeChat refused the egress IP",
            Self::VerifyTicketStale => "no component_verify_ticket for over an hour",
            Self::ConfigError => "its object cannot load its configuration: nothing is refreshed",
            Self::QuotaLow => "a watched API's daily quota is running low",
            Self::SuiteTicketStale => "no suite_ticket for over 20 minutes",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// What the object knows of its account's token when it checks.
#[derive(Clone, Debug, Default)]
pub struct Observation<'a> {
    pub token_valid: bool,
    /// When the stored token expired, if it has (a pause or a block lets it run out with no
    /// failed call).
    pub token_expired_at: Option<u64>,
    /// When the current run of failed refreshes began (None: the last one succeeded).
    pub failing_since: Option<u64>,
    pub last_failure: Option<&'a UpstreamFailure>,
    pub paused: bool,
    pub blocked: bool,
    /// The platform's component only: when its latest verify ticket was created (Some(None):
    /// none has come).
    pub verify_ticket_created_at: Option<Option<u64>>,
    /// A WeCom suite only: when its latest suite ticket was created, likewise.
    pub suite_ticket_created_at: Option<Option<u64>>,
    /// Since when a watched API's quota has been low (`policy::watch`).
    pub quota_low_since: Option<u64>,
}

/// The conditions that hold now, with when each began (as far as the object can tell).
pub fn active_conditions(seen: &Observation, now: u64, after_secs: u64) -> Vec<(Condition, u64)> {
    let mut active = Vec::new();
    let failing = seen.failing_since;
    let errcode = match seen.last_failure {
        Some(UpstreamFailure::WeChat { errcode, .. }) => Some(*errcode),
        _ => None,
    };
    // A fresh account that has not fetched yet is no alert; one whose token ran out, or
    // whose refreshes fail with none left, is.
    match (seen.token_valid, failing.or(seen.token_expired_at)) {
        (false, Some(since)) => active.push((Condition::NoValidToken, since)),
        (true, _) => {
            if let Some(since) = failing.filter(|since| now >= since + after_secs) {
                active.push((Condition::RefreshFailing, since));
            }
        }
        (false, None) => {}
    }
    // Like failing refreshes, after `after_secs`: one node of an egress failover that is not
    // whitelisted is no alert until it lasts.
    if let Some(since) = failing.filter(|since| now >= since + after_secs) {
        if errcode.is_some_and(wechat_codes::is_ip_whitelist_error) {
            active.push((Condition::IpRefused, since));
        }
    }
    if seen.paused {
        active.push((Condition::QuotaPaused, failing.unwrap_or(now)));
    }
    if seen.blocked {
        active.push((Condition::CredentialsRefused, failing.unwrap_or(now)));
    }
    if let Some(since) = seen.quota_low_since {
        active.push((Condition::QuotaLow, since));
    }
    let pushed_tickets = [
        (
            seen.verify_ticket_created_at,
            Condition::VerifyTicketStale,
            VERIFY_TICKET_STALE_SECS,
        ),
        (
            seen.suite_ticket_created_at,
            Condition::SuiteTicketStale,
            SUITE_TICKET_STALE_SECS,
        ),
    ];
    for (created_at, condition, stale_secs) in pushed_tickets {
        match created_at {
            None => {}
            Some(Some(at)) if now < at + stale_secs => {}
            Some(Some(at)) => active.push((condition, at)),
            Some(None) => active.push((condition, now)),
        }
    }
    active
}

/// One condition under alert, as the object keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alerting {
    pub condition: String,
    pub since: u64,
    pub last_sent_at: u64,
}

/// The conditions under alert, kept in the account's ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertLedger {
    pub alerting: Vec<Alerting>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Started,
    Repeated,
    Recovered,
}

impl Transition {
    pub fn name(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Repeated => "repeated",
            Self::Recovered => "recovered",
        }
    }
}

/// An alert to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub condition: Condition,
    pub transition: Transition,
    pub since: u64,
}

impl AlertLedger {
    /// Brings the ledger to `active` at `now`: what to send (a start, a repeat after
    /// `repeat_secs`, a recovery).
    pub fn step(&mut self, active: &[(Condition, u64)], now: u64, repeat_secs: u64) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let holds = |condition: Condition| active.iter().any(|(c, _)| *c == condition);
        self.alerting.retain(|entry| {
            let still = active.iter().any(|(c, _)| c.name() == entry.condition);
            if !still {
                let condition = Condition::parse(&entry.condition);
                // Failing refreshes that became "no valid token" did not recover: dropped
                // without a word, the worse alert says it.
                let superseded =
                    condition == Some(Condition::RefreshFailing) && holds(Condition::NoValidToken);
                if let Some(condition) = condition.filter(|_| !superseded) {
                    alerts.push(Alert {
                        condition,
                        transition: Transition::Recovered,
                        since: entry.since,
                    });
                }
            }
            still
        });
        for (condition, since) in active {
            match self
                .alerting
                .iter_mut()
                .find(|e| e.condition == condition.name())
            {
                Some(entry) if now >= entry.last_sent_at + repeat_secs => {
                    entry.last_sent_at = now;
                    alerts.push(Alert {
                        condition: *condition,
                        transition: Transition::Repeated,
                        since: entry.since,
                    });
                }
                Some(_) => {}
                None => {
                    self.alerting.push(Alerting {
                        condition: condition.name().into(),
                        since: *since,
                        last_sent_at: now,
                    });
                    alerts.push(Alert {
                        condition: *condition,
                        transition: Transition::Started,
                        since: *since,
                    });
                }
            }
        }
        alerts
    }

    /// When an alert under way is due to repeat.
    pub fn next_repeat(&self, repeat_secs: u64) -> Option<u64> {
        self.alerting
            .iter()
            .map(|entry| entry.last_sent_at + repeat_secs)
            .min()
    }
}

/// An account's object that cannot load (its configuration, the registry, the encryption
/// key): kept in the object's own storage, since nothing else of the account can be read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadFailure {
    pub since: u64,
    pub failures_in_a_row: u32,
    pub alerted_at: Option<u64>,
}

impl LoadFailure {
    /// Notes one more failed load at `now`: the alert to send, if one is due (at once, then
    /// again every `repeat_secs`).
    pub fn failed(&mut self, now: u64, repeat_secs: u64) -> Option<Transition> {
        if self.failures_in_a_row == 0 {
            self.since = now;
        }
        self.failures_in_a_row += 1;
        let transition = match self.alerted_at {
            None => Transition::Started,
            Some(at) if now >= at + repeat_secs => Transition::Repeated,
            Some(_) => return None,
        };
        self.alerted_at = Some(now);
        Some(transition)
    }
}

/// When the object should look again for a condition that will start by then: the token's
/// expiry, or failing refreshes reaching `after_secs`.
pub fn next_start(
    seen: &Observation,
    expires_at: Option<u64>,
    now: u64,
    after_secs: u64,
) -> Option<u64> {
    let expiry = expires_at.filter(|at| *at > now).map(|at| at + 1);
    let failing = seen
        .failing_since
        .map(|since| since + after_secs)
        .filter(|at| *at > now);
    expiry.into_iter().chain(failing).min()
}

/// `ALERT_WEBHOOK_URL` (with `ALERT_WEBHOOK_SECRET`), `ALERT_FORMAT`, `ALERT_AFTER_SECS`,
/// `ALERT_REPEAT_SECS`.
#[derive(Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// Each webhook with its format and secret: never logged.
    pub hooks: Vec<Hook>,
    pub after_secs: u64,
    pub repeat_secs: u64,
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlertSettings({} webhooks)", self.hooks.len())
    }
}

/// What `ALERT_*` say, before they are checked.
#[derive(Default)]
pub struct AlertVariables<'a> {
    pub urls: Option<&'a str>,
    pub format: Option<&'a str>,
    pub secret: Option<&'a str>,
    pub after_secs: Option<u64>,
    pub repeat_secs: Option<u64>,
}

/// The alert settings, or None without `ALERT_WEBHOOK_URL`. Errors name the variable and the
/// entry's position, never a URL or a secret.
pub fn parse_settings(vars: AlertVariables) -> Result<Option<AlertSettings>, AppError> {
    let format = match vars.format {
        None => None,
        Some(name) => Some(AlertFormat::parse(name).ok_or(AppError::Config {
            variable: "ALERT_FORMAT",
            problem: "must be wecom, feishu, dingtalk, slack or json".into(),
        })?),
    };
    let hooks = webhook::parse_hooks(vars.urls.unwrap_or_default(), format, vars.secret)?;
    if hooks.is_empty() {
        return Ok(None);
    }
    Ok(Some(AlertSettings {
        hooks,
        after_secs: vars.after_secs.unwrap_or(DEFAULT_AFTER_SECS),
        repeat_secs: vars.repeat_secs.unwrap_or(DEFAULT_REPEAT_SECS),
    }))
}

mod message;
pub use message::{payload, text, utc, Notice};

#[cfg(test)]
mod tests;
