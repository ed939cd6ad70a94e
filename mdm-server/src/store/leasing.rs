//! Storage of leases, holders, phone requests and the evidence of wipes. Every change judges
//! the rows it reads with the domain's rules (`domain::lease`, `domain::wipe_gate`,
//! `domain::phone_request`) inside its own transaction, so two requests cannot both pass a check
//! that only one of them may.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::commands::CommandTemplate;
use super::notices::NewDelivery;
use super::StoreResult;
use crate::domain::audit::AuditEvent;
use crate::domain::lease::{LeaseEnd, LeaseTerms};
use crate::domain::phone_request::RequestState;
use crate::domain::role::Scope;
use crate::domain::wipe_gate::WipeEvidence;

#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: i64,
    pub device_id: i64,
    pub serial: String,
    pub provider_id: i64,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
    pub monthly_price_ore: i64,
    pub data_gb: i64,
    pub request_id: Option<i64>,
    pub replaces_lease_id: Option<i64>,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    /// The phone's holder now, for an open lease.
    pub holder_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewLease {
    pub device_id: i64,
    pub provider_id: i64,
    pub terms: LeaseTerms,
    pub holder_id: Option<i64>,
    /// The phone request this lease fulfils.
    pub request_id: Option<i64>,
    pub created_by: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct LeaseFilter {
    pub provider_id: Option<i64>,
    pub device_id: Option<i64>,
    pub open_only: bool,
    /// Open leases whose end date falls on or before this day.
    pub ending_by: Option<NaiveDate>,
    /// Leases with ids below this (newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderPeriod {
    pub lease_id: i64,
    pub account_id: i64,
    pub display_name: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualWipe {
    pub id: i64,
    pub device_id: i64,
    pub reason: String,
    pub recorded_by: i64,
    pub recorded_at: DateTime<Utc>,
    pub confirmed_by: Option<i64>,
    pub confirmed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneRequest {
    pub id: i64,
    pub provider_id: i64,
    pub quantity: i64,
    pub fulfilled: i64,
    pub model_id: Option<i64>,
    pub needed_by: Option<NaiveDate>,
    pub delivery_note: String,
    pub replaces_lease_id: Option<i64>,
    pub state: RequestState,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewPhoneRequest {
    pub provider_id: i64,
    pub quantity: u32,
    pub model_id: Option<i64>,
    pub needed_by: Option<NaiveDate>,
    pub delivery_note: String,
    pub due_at: DateTime<Utc>,
    pub created_by: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub provider_id: Option<i64>,
    pub state: Option<RequestState>,
    /// Only open requests whose deadline has passed at this time.
    pub overdue_at: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// Ends leases: returned by the provider, or all of a provider's at the end of its contract.
#[derive(Debug, Clone)]
pub struct LeaseEnding {
    pub how: LeaseEnd,
    /// The wipe queued for each phone.
    pub wipe: CommandTemplate,
}

#[async_trait]
pub trait LeasingStore: Send + Sync {
    /// Leases a phone; refused (`StoreError::Refused`) unless `domain::lease::may_lease` allows
    /// it. A lease against a request counts towards it.
    async fn lease_device(
        &self,
        lease: &NewLease,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Lease>;
    /// Hands the phone to a holder, or back to the provider's pool (`None`); refused unless the
    /// phone is still leased to `provider_id` (the provider the holder was checked against).
    async fn set_holder(
        &self,
        device_id: i64,
        provider_id: Option<i64>,
        holder: Option<i64>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Lease>;
    /// Ends the phone's open lease for `provider_id`: the holder is cleared, the phone waits for
    /// its wipe, which is queued in the same transaction. Returns the ended lease and the wipe.
    async fn end_lease(
        &self,
        device_id: i64,
        provider_id: i64,
        ending: &LeaseEnding,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<(Lease, i64)>;
    /// Ends every open lease of the provider as `ending` says, in one transaction; the phones
    /// whose lease ended.
    async fn end_provider_leases(
        &self,
        provider_id: i64,
        ending: &LeaseEnding,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Vec<i64>>;
    /// Providers whose contract ended before `today` and that still have open leases.
    async fn providers_past_contract(&self, today: NaiveDate) -> StoreResult<Vec<i64>>;
    async fn lease(&self, scope: Scope, id: i64) -> StoreResult<Lease>;
    async fn list_leases(&self, scope: Scope, filter: &LeaseFilter) -> StoreResult<Vec<Lease>>;
    async fn holder_history(&self, device_id: i64) -> StoreResult<Vec<HolderPeriod>>;
    /// What the records say about the phone's wipes since its last assignment.
    async fn wipe_evidence(&self, device_id: i64) -> StoreResult<WipeEvidence>;
    /// An operator admin records that the phone was wiped by hand; it counts once another
    /// confirms.
    async fn record_manual_wipe(
        &self,
        device_id: i64,
        reason: &str,
        by: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<ManualWipe>;
    /// A second operator admin confirms: the phone counts as wiped (identity revoked, queue
    /// purged, holder cleared), as when it acknowledges a wipe.
    async fn confirm_manual_wipe(
        &self,
        device_id: i64,
        by: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<ManualWipe>;
    async fn manual_wipes(&self, device_id: i64) -> StoreResult<Vec<ManualWipe>>;
    async fn create_request(
        &self,
        request: &NewPhoneRequest,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<PhoneRequest>;
    async fn request(&self, scope: Scope, id: i64) -> StoreResult<PhoneRequest>;
    async fn list_requests(
        &self,
        scope: Scope,
        filter: &RequestFilter,
    ) -> StoreResult<Vec<PhoneRequest>>;
    async fn cancel_request(
        &self,
        id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<PhoneRequest>;
    /// Puts reminders in the outbox, each about a phone or (the push certificate's) about none;
    /// one already there (same idempotency key) is not added again, so each reminder goes out once however often it is queued.
    async fn queue_reminders(
        &self,
        reminders: &[(Option<i64>, NewDelivery)],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}
