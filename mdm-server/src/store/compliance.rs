//! Storage of compliance as evaluated at check-in: each phone's current standing and its
//! history, and the phones non-compliant past the grace period.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::audit::AuditEvent;
use crate::domain::compliance::Assessment;
use crate::store::notices::NewDelivery;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceRecord {
    pub device_id: i64,
    pub provider_id: Option<i64>,
    pub status: String,
    /// JSON: `[{"code": ..., "message": ...}]`.
    pub reasons: String,
    /// When the phone got this status.
    pub since: DateTime<Utc>,
    pub evaluated_at: DateTime<Utc>,
    /// When its provider was told it has been non-compliant past the grace period.
    pub alerted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceChange {
    pub at: DateTime<Utc>,
    pub status: String,
    pub reasons: String,
}

#[async_trait]
pub trait ComplianceStore: Send + Sync {
    /// Records an assessment; a history entry only when status or reasons changed (the domain
    /// decides, `domain::compliance::change`). Returns whether anything changed.
    async fn record_compliance(
        &self,
        device_id: i64,
        assessment: &Assessment,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    async fn compliance_record(&self, device_id: i64) -> StoreResult<Option<ComplianceRecord>>;
    /// Newest first.
    async fn compliance_history(
        &self,
        device_id: i64,
        limit: u32,
    ) -> StoreResult<Vec<ComplianceChange>>;
    /// Phones non-compliant since before `since_before` whose provider has not been told yet.
    async fn overdue_compliance(
        &self,
        since_before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ComplianceRecord>>;
    /// Tells the provider: in one transaction, marks the phone alerted and puts the messages in
    /// the outbox, unless its status changed meanwhile (`since` must still match) or another
    /// node was first. Returns whether it was marked.
    async fn alert_compliance(
        &self,
        device_id: i64,
        since: DateTime<Utc>,
        messages: &[NewDelivery],
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<bool>;
}
