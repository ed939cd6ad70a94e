//! Storage of lost and stolen cases: the report and what it sets off (the phone marked lost, the
//! lost-mode lock, the SIM's block request, the service desk's message), the timeline, the
//! automatic wipe, and the end of a case.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::commands::CommandTemplate;
use super::leasing::NewPhoneRequest;
use super::notices::NewDelivery;
use super::StoreResult;
use crate::domain::audit::AuditEvent;
use crate::domain::lost_case::{LossReport, LostState};
use crate::domain::role::Scope;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostCase {
    pub id: i64,
    pub device_id: i64,
    pub serial: String,
    pub provider_id: Option<i64>,
    /// `lost` or `stolen`.
    pub kind: String,
    pub discovered_at: DateTime<Utc>,
    pub reported_at: DateTime<Utc>,
    pub reported_by: Option<i64>,
    pub circumstances: String,
    pub police_report: Option<String>,
    /// Reported more than 48 hours after the loss was discovered.
    pub late: bool,
    pub state: LostState,
    pub lock_command_id: Option<i64>,
    pub wipe_command_id: Option<i64>,
    pub replacement_request_id: Option<i64>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostCaseEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub actor_id: Option<i64>,
    /// JSON.
    pub details: String,
}

#[derive(Debug, Clone)]
pub struct NewLostCase {
    pub device_id: i64,
    pub report: LossReport,
    pub reported_by: Option<i64>,
    /// The lost-mode lock, queued at top priority.
    pub lock: CommandTemplate,
    /// The service desk's messages about the report.
    pub notify: Vec<NewDelivery>,
}

#[derive(Debug, Clone, Default)]
pub struct LostCaseFilter {
    pub provider_id: Option<i64>,
    pub open_only: bool,
    pub late_only: bool,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// How a case ends.
#[derive(Debug, Clone)]
pub enum CaseEnd {
    /// The phone is back: lost mode is turned off and the SIM's re-activation requested.
    Found { unlock: CommandTemplate },
    /// The phone is gone: its identity is revoked, it is retired, its lease ends and a
    /// replacement is requested for the provider.
    WrittenOff { replacement: NewPhoneRequest },
}

#[async_trait]
pub trait LostCaseStore: Send + Sync {
    /// Opens the case; refused while the phone has an open case or is retired.
    async fn report_loss(
        &self,
        case: &NewLostCase,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<LostCase>;
    async fn lost_case(&self, scope: Scope, id: i64) -> StoreResult<LostCase>;
    async fn lost_case_events(&self, id: i64) -> StoreResult<Vec<LostCaseEvent>>;
    /// Newest first, within `scope`.
    async fn list_lost_cases(
        &self,
        scope: Scope,
        filter: &LostCaseFilter,
    ) -> StoreResult<Vec<LostCase>>;
    async fn resolve_lost_case(
        &self,
        id: i64,
        end: &CaseEnd,
        by: Option<i64>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<LostCase>;
    /// Open cases without a wipe, reported at or before `reported_by`.
    async fn lost_cases_to_escalate(
        &self,
        reported_by: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<LostCase>>;
    /// Queues the automatic wipe of an open case that has none yet; `None` when another node
    /// got there first or the case has ended.
    async fn escalate_lost_case(
        &self,
        id: i64,
        wipe: &CommandTemplate,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Option<i64>>;
    /// A person's note on the case's timeline (`note`, with the text), open or ended.
    async fn add_lost_case_note(
        &self,
        id: i64,
        actor_id: i64,
        text: &str,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    /// Notes `kind` with `details` on the timeline of the phone's open case, if it has one.
    /// Whether it was noted.
    async fn note_on_open_case(
        &self,
        device_id: i64,
        kind: &str,
        details: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Notes on the timeline of the phone's open case, if it has one, that it checked in
    /// (time and network facts only), at most once per `quiet` period. Whether it was noted.
    async fn note_lost_checkin(
        &self,
        device_id: i64,
        details: &serde_json::Value,
        quiet: chrono::Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
}
