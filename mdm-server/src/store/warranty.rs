//! Storage of warranty cases: the fault, the moves opened → sent to supplier → repaired |
//! replaced | rejected → closed with what each does to the phone, and the swap that moves a
//! lease and its holder to a replacement phone.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::leasing::Lease;
use super::StoreResult;
use crate::domain::audit::AuditEvent;
use crate::domain::warranty::WarrantyState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarrantyCase {
    pub id: i64,
    pub device_id: i64,
    pub serial: String,
    pub fault: String,
    pub under_warranty: bool,
    pub state: WarrantyState,
    pub supplier_reference: Option<String>,
    pub replacement_device_id: Option<i64>,
    pub opened_by: Option<i64>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarrantyEvent {
    pub at: DateTime<Utc>,
    pub actor_id: Option<i64>,
    pub from_state: Option<String>,
    pub to_state: String,
    pub note: Option<String>,
}

/// A phone whose warranty ends soon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarrantyEnding {
    pub device_id: i64,
    pub serial: String,
    pub provider_id: Option<i64>,
    pub warranty_end: NaiveDate,
}

#[derive(Debug, Clone)]
pub struct NewWarrantyCase {
    pub device_id: i64,
    pub fault: String,
    pub under_warranty: bool,
    pub opened_by: Option<i64>,
}

/// A move of a case, with what the person wrote.
#[derive(Debug, Clone)]
pub struct WarrantyMove {
    pub to: WarrantyState,
    pub supplier_reference: Option<String>,
    pub note: Option<String>,
    pub by: Option<i64>,
}

#[async_trait]
pub trait WarrantyStore: Send + Sync {
    /// Opens a case; refused while the phone has an open one.
    async fn open_warranty_case(
        &self,
        case: &NewWarrantyCase,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<WarrantyCase>;
    async fn warranty_case(&self, id: i64) -> StoreResult<WarrantyCase>;
    async fn warranty_events(&self, id: i64) -> StoreResult<Vec<WarrantyEvent>>;
    /// Newest first.
    async fn list_warranty_cases(
        &self,
        open_only: bool,
        device_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<WarrantyCase>>;
    /// Moves the case as `domain::warranty::check_transition` allows, and the phone with it.
    async fn move_warranty_case(
        &self,
        id: i64,
        step: &WarrantyMove,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<WarrantyCase>;
    /// The replacement phone takes over the faulty phone's lease (its terms, from `today`) and
    /// holder.
    async fn swap_warranty_phone(
        &self,
        id: i64,
        replacement: i64,
        by: Option<i64>,
        today: NaiveDate,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<(WarrantyCase, Lease)>;
    /// Phones in service whose warranty ends from `from` to `to`, soonest first.
    async fn warranties_ending(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        limit: u32,
    ) -> StoreResult<Vec<WarrantyEnding>>;
}
