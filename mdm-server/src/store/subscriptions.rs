//! Storage of SIM subscriptions: the cards, their status and which phone held which SIM when,
//! and what a phone's check-in says about its SIM (another card than recorded, data used).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::notices::NewDelivery;
use super::StoreResult;
use crate::domain::audit::AuditEvent;
use crate::domain::subscription::SimStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sim {
    pub id: i64,
    pub iccid: String,
    pub phone_number: String,
    pub carrier: String,
    pub plan: String,
    pub data_gb: i64,
    pub status: SimStatus,
    pub device_id: Option<i64>,
    pub reactivation_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewSim {
    pub iccid: String,
    pub phone_number: String,
    pub carrier: String,
    pub plan: String,
    pub data_gb: u32,
}

#[derive(Debug, Clone, Default)]
pub struct SimFilter {
    pub status: Option<SimStatus>,
    pub device_id: Option<i64>,
    /// Only SIMs whose re-activation was requested (a lost phone was found).
    pub reactivation_requested: bool,
    pub after_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPeriod {
    pub sim_id: i64,
    pub iccid: String,
    pub device_id: i64,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// The recorded SIM as a check-in with new facts judges it (read only then, so ordinary
/// check-ins do not pay for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOnFile {
    pub iccid: String,
    pub phone_number: String,
    pub data_gb: i64,
    /// The month (`YYYY-MM`) and share of the plan last reported.
    pub alert_month: Option<String>,
    pub alert_percent: Option<i64>,
}

/// What a check-in found out about a phone's SIM, to write.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub device_id: i64,
    /// `Some(Some(iccid))` flags another card than recorded; `Some(None)` clears the flag.
    pub mismatch: Option<Option<String>>,
    /// A data alert due: the month (`YYYY-MM`), the share of the plan, and the messages.
    pub data_alert: Option<(String, u32, Vec<NewDelivery>)>,
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    async fn create_sim(
        &self,
        sim: &NewSim,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Sim>;
    async fn sim(&self, id: i64) -> StoreResult<Sim>;
    async fn list_sims(&self, filter: &SimFilter) -> StoreResult<Vec<Sim>>;
    /// Moves the SIM's status as `domain::subscription::transition` allows; re-activation
    /// clears the request, termination takes the card out of its phone.
    async fn set_sim_status(
        &self,
        id: i64,
        to: SimStatus,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Sim>;
    /// Puts the SIM in a phone (`None`: takes it out). Refused when the phone has another SIM
    /// or the card is terminated.
    async fn place_sim(
        &self,
        id: i64,
        device_id: Option<i64>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Sim>;
    /// Which phones held the SIM, or which SIMs the phone held, oldest first.
    async fn sim_periods(
        &self,
        sim_id: Option<i64>,
        device_id: Option<i64>,
    ) -> StoreResult<Vec<SimPeriod>>;
    /// The phone's recorded SIM, if it has one, and the ICCID it was last flagged for.
    async fn sim_on_file(&self, device_id: i64)
        -> StoreResult<(Option<SimOnFile>, Option<String>)>;
    async fn record_sim_report(&self, report: &SimReport, now: DateTime<Utc>) -> StoreResult<()>;
}
