//! Storage of maintenance windows, disruptions, their notices and the outbox.
//!
//! A notice is a row with the time it is due; when due, the scheduler expands it into one
//! outbox row per recipient and channel, in one transaction, keyed so that expanding twice
//! adds nothing. Delivery workers claim outbox rows with leases, so two nodes never hold the
//! same row at once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::audit::AuditEvent;
use crate::domain::maintenance::{
    Channel, NoticeKind, NoticePolicy, WindowKind, WindowStatus, WindowTimes,
};

/// Which providers a window concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    All,
    Providers(Vec<i64>),
}

impl Targets {
    pub fn includes(&self, provider_id: i64) -> bool {
        match self {
            Targets::All => true,
            Targets::Providers(ids) => ids.contains(&provider_id),
        }
    }
}

/// What a window or a series describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowText {
    pub title: String,
    pub description: String,
    pub systems: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NewWindow {
    pub kind: WindowKind,
    pub series_id: Option<i64>,
    pub text: WindowText,
    pub targets: Targets,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub outside_preferred: bool,
    pub created_by: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub id: i64,
    pub kind: WindowKind,
    pub series_id: Option<i64>,
    pub text: WindowText,
    pub targets: Targets,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub outside_preferred: bool,
    /// Counts changes of time, for calendar clients (iCalendar SEQUENCE).
    pub revision: i64,
    pub rescheduled_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Window {
    pub fn times(&self) -> WindowTimes {
        WindowTimes {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            rescheduled: self.rescheduled_at.is_some(),
            cancelled: self.cancelled_at.is_some(),
        }
    }

    pub fn status_at(&self, now: DateTime<Utc>) -> WindowStatus {
        self.times().status_at(now)
    }
}

/// A notice to schedule: what, and when it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotice {
    pub kind: NoticeKind,
    pub message: Option<String>,
    pub due_at: DateTime<Utc>,
}

impl NewNotice {
    pub fn at(kind: NoticeKind, due_at: DateTime<Utc>) -> Self {
        NewNotice {
            kind,
            message: None,
            due_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeState {
    Scheduled,
    Expanded,
    /// Dropped because its window moved, was cancelled or closed.
    Void,
}

impl NoticeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Scheduled => "scheduled",
            NoticeState::Expanded => "expanded",
            NoticeState::Void => "void",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scheduled" => Some(NoticeState::Scheduled),
            "expanded" => Some(NoticeState::Expanded),
            "void" => Some(NoticeState::Void),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: i64,
    pub window_id: i64,
    pub kind: NoticeKind,
    pub message: Option<String>,
    pub due_at: DateTime<Utc>,
    pub state: NoticeState,
    pub expanded_at: Option<DateTime<Utc>>,
    /// Expanded well after it was due (the server was down).
    pub late: bool,
}

#[derive(Debug, Clone)]
pub struct NewSeries {
    pub text: WindowText,
    pub targets: Targets,
    pub cron: String,
    pub duration_minutes: u32,
    pub outside_preferred: bool,
    /// The first occurrence to announce.
    pub next_start_at: DateTime<Utc>,
    pub created_by: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub id: i64,
    pub text: WindowText,
    pub targets: Targets,
    pub cron: String,
    pub duration_minutes: u32,
    pub outside_preferred: bool,
    /// The next occurrence not yet announced; `None` when the expression stopped firing.
    pub next_start_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One message to one recipient over one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub channel: Channel,
    /// An e-mail address, an E.164 number or a webhook URL.
    pub recipient: String,
    pub provider_id: Option<i64>,
    pub subject: String,
    pub body: String,
    /// Unique per notice, channel and recipient: expanding a notice twice adds nothing, and
    /// receivers can drop a message they already have.
    pub idempotency_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Sent,
    /// Gave up after the last retry; listed for the operator.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "sent" => Some(DeliveryState::Sent),
            "dead" => Some(DeliveryState::Dead),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    /// `notice` (maintenance and disruptions) or `compliance` (a phone past its grace period).
    pub topic: String,
    /// The notice, the window and the kind of notice, for a notice's message.
    pub notice_id: Option<i64>,
    /// The phone, for a compliance alert.
    pub device_id: Option<i64>,
    pub window_id: Option<i64>,
    pub notice_kind: Option<NoticeKind>,
    pub idempotency_key: String,
    pub channel: Channel,
    pub recipient: String,
    pub provider_id: Option<i64>,
    pub subject: String,
    pub body: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub late: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub attempted_at: DateTime<Utc>,
    pub node: String,
    pub sent: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub window_id: Option<i64>,
    /// Deliveries before this id (newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct WindowFilter {
    /// Only windows that concern this provider.
    pub provider_id: Option<i64>,
    pub kind: Option<WindowKind>,
    /// Only windows that end (or are open) at or after this time.
    pub ending_after: Option<DateTime<Utc>>,
    /// Windows before this id (newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub window_id: i64,
    pub provider_id: i64,
    pub account_id: i64,
    pub account_email: String,
    pub acknowledged_at: DateTime<Utc>,
}

/// A change to a window's life: what to set and which notices to send.
#[derive(Debug, Clone)]
pub enum WindowChange {
    Reschedule {
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        outside_preferred: bool,
    },
    Cancel,
    /// A disruption is over.
    Close,
    /// Only new notices (a disruption update).
    Notify,
}

#[async_trait]
pub trait NoticeStore: Send + Sync {
    /// The operator's notice policy, if one was ever set.
    async fn notice_policy(&self, org_id: i64) -> StoreResult<Option<NoticePolicy>>;
    async fn set_notice_policy(
        &self,
        org_id: i64,
        policy: &NoticePolicy,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;

    /// Stores the window and its first notices in one transaction.
    async fn create_window(
        &self,
        window: &NewWindow,
        notices: &[NewNotice],
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Window>;
    async fn window(&self, id: i64) -> StoreResult<Window>;
    async fn list_windows(&self, filter: &WindowFilter) -> StoreResult<Vec<Window>>;
    /// Applies the change, drops the window's scheduled timetable notices when its times move
    /// or it ends, and schedules `notices`, in one transaction. `Conflict` if the window was
    /// already cancelled or closed.
    async fn change_window(
        &self,
        id: i64,
        change: &WindowChange,
        notices: &[NewNotice],
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Window>;
    async fn window_notices(&self, window_id: i64) -> StoreResult<Vec<Notice>>;

    async fn create_series(
        &self,
        series: &NewSeries,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Series>;
    async fn series(&self, id: i64) -> StoreResult<Series>;
    async fn list_series(&self) -> StoreResult<Vec<Series>>;
    async fn cancel_series(
        &self,
        id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Series>;
    /// Live series whose next occurrence starts at or before `until`.
    async fn due_series(&self, until: DateTime<Utc>) -> StoreResult<Vec<Series>>;
    /// Creates the occurrence starting at the series' `next_start_at` (which must still be
    /// `expected`) with its notices and moves the series on to `following`. Returns `None` when
    /// another node got there first, or when `window` is `None` (an occurrence that ended while
    /// the server was down is skipped, not announced after the fact).
    async fn materialise_occurrence(
        &self,
        series_id: i64,
        expected: DateTime<Utc>,
        window: Option<&NewWindow>,
        notices: &[NewNotice],
        following: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Window>>;

    /// Scheduled notices due at `now`, oldest first.
    async fn due_notices(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Notice>>;
    /// Marks the notice expanded and writes its outbox rows and any `then` notices, in one
    /// transaction; `false` (and nothing written) if it was no longer scheduled.
    async fn expand_notice(
        &self,
        notice_id: i64,
        deliveries: &[NewDelivery],
        then: &[NewNotice],
        late: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Leases up to `limit` pending deliveries due at `now` to `node` until `lease_until`,
    /// counting an attempt for each.
    async fn claim_deliveries(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
    /// Records an attempt; `Ok` marks the delivery sent, `Err` schedules a retry at `retry_at`,
    /// or dead-letters it when that is `None`. Ignored if `node` no longer holds the lease.
    async fn finish_delivery(
        &self,
        id: i64,
        node: &str,
        outcome: Result<(), String>,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn list_deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<Delivery>>;
    async fn delivery(&self, id: i64) -> StoreResult<Delivery>;
    async fn delivery_attempts(&self, id: i64) -> StoreResult<Vec<DeliveryAttempt>>;
    /// Puts a dead-lettered delivery back in the queue; `Conflict` if it is not dead.
    async fn retry_delivery(
        &self,
        id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Delivery>;

    /// Deletes messages sent (or dead-lettered) before `before`, with their attempts, and
    /// records how many in the audit trail; returns how many.
    async fn prune_deliveries(&self, before: DateTime<Utc>, now: DateTime<Utc>)
        -> StoreResult<u64>;

    async fn acknowledge_window(
        &self,
        window_id: i64,
        provider_id: i64,
        account_id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    async fn acknowledgements(&self, window_id: i64) -> StoreResult<Vec<Acknowledgement>>;

    /// Replaces the provider's calendar feed secret (by its hash).
    async fn set_calendar_feed(
        &self,
        provider_id: i64,
        token_hash: &str,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    /// The provider whose feed this secret opens.
    async fn calendar_feed_provider(&self, token_hash: &str) -> StoreResult<i64>;
}
