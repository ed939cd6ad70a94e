//! Storage: traits cut by capability, and one implementation per database backend.
//!
//! Every method that changes something takes the [`AuditEvent`] describing the change and
//! writes it in the same transaction, so the trail never misses a change and never records one
//! that did not happen.
//!
//! The capability traits are a grouping for readers, not seams for substitution: flows and jobs
//! take the whole [`Store`], and every test, unit tests included, runs against a real SQLite or
//! PostgreSQL store (a fresh one is cheap), so no test double stands in for the database. Each
//! capability's entities live in its file beside its trait (`commands.rs`, `leasing.rs`, …);
//! those of the organisations, accounts, devices and identities are in this file.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashMap;

use crate::domain::account::{FailureOutcome, LoginThrottle};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::contact::ItContact;
use crate::domain::device::{DeviceStatus, Imei, Platform, Serial};
use crate::domain::organisation::{ContractPeriod, OrgKind, OrgNumber};
use crate::domain::role::{Role, Scope};
pub use apple::AppleStore;
pub use commands::CommandStore;
pub use compliance::ComplianceStore;
pub use leasing::LeasingStore;
pub use lost_cases::LostCaseStore;
pub use notices::NoticeStore;
pub use policies::PolicyStore;
pub use subscriptions::SubscriptionStore;
pub use warranty::WarrantyStore;

pub mod apple;
pub mod commands;
pub mod compliance;
pub mod leasing;
pub mod lost_cases;
pub mod notices;
pub mod policies;
pub mod postgres;
pub mod sqlite;
pub mod subscriptions;
pub mod warranty;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule refused the write; the text names what was duplicated.
    #[error("{0}")]
    Conflict(String),
    /// The backend cannot do this; the text says what to do instead.
    #[error("{0}")]
    Unsupported(String),
    /// A domain rule refused the change, judged on the rows inside the transaction.
    #[error("{0}")]
    Refused(crate::domain::Refusal),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// A query answering many requests at once failed; each of them gets its text.
    #[error("database error: {0}")]
    Batch(String),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<crate::domain::Refusal> for StoreError {
    fn from(r: crate::domain::Refusal) -> Self {
        StoreError::Refused(r)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                let text = format!("{} {}", db.message(), db.constraint().unwrap_or_default());
                StoreError::Conflict(duplicate_description(&text).to_string())
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::Conflict("it refers to a record that does not exist".to_string())
            }
            _ => StoreError::Database(e),
        }
    }
}

/// Names what a unique violation was about, from the backend's message or constraint name.
fn duplicate_description(text: &str) -> &'static str {
    const KNOWN: [(&str, &str); 6] = [
        (
            "serial",
            "a device with this serial number is already registered",
        ),
        ("imei", "a device with this IMEI is already registered"),
        (
            "email",
            "an account with this e-mail address already exists",
        ),
        (
            "org_number",
            "an organisation with this organisation number already exists",
        ),
        (
            "device_models",
            "a model with this platform and name already exists",
        ),
        ("one_operator", "there is already an operator organisation"),
    ];
    KNOWN
        .iter()
        .find(|(needle, _)| text.contains(needle))
        .map_or("a record with these values already exists", |(_, what)| {
            what
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub id: i64,
    pub kind: OrgKind,
    pub name: String,
    pub org_number: Option<String>,
    pub contract: Option<ContractPeriod>,
    pub it_contacts: Vec<ItContact>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewProvider {
    pub name: String,
    pub org_number: OrgNumber,
    pub contract: ContractPeriod,
    pub it_contacts: Vec<ItContact>,
}

/// A change to a provider; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProviderChange {
    pub name: Option<String>,
    pub contract: Option<ContractPeriod>,
    pub it_contacts: Option<Vec<ItContact>>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub org_id: i64,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub active: bool,
    pub must_change_password: bool,
    pub password_hash: String,
    pub totp_secret: Option<String>,
    pub totp_last_step: Option<i64>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for Account {
    // The password hash and the TOTP secret stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct NewAccount {
    pub org_id: i64,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub password_hash: String,
    pub must_change_password: bool,
    pub totp_secret: Option<String>,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("org_id", &self.org_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A change to an account. A changed role or a deactivation ends the account's sessions and
/// tokens in the same transaction.
#[derive(Debug, Clone, Default)]
pub struct AccountChange {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Session,
    ApiToken,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Session => "session",
            SessionKind::ApiToken => "api_token",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub account_id: i64,
    pub kind: SessionKind,
    pub name: Option<String>,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A live session or token with everything the request needs to authorise.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub session_id: i64,
    pub kind: SessionKind,
    pub expires_at: DateTime<Utc>,
    pub account: Account,
    pub org_kind: OrgKind,
    pub contract: Option<ContractPeriod>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceModel {
    pub id: i64,
    pub platform: Platform,
    pub name: String,
    pub recommended_since: Option<NaiveDate>,
}

impl DeviceModel {
    /// The catalogue entry for a platform and a model name as people type it (case ignored);
    /// otherwise a sentence for the person saying it is not in the catalogue.
    pub fn find_in<'a>(
        models: &'a [DeviceModel],
        platform: Platform,
        name: &str,
    ) -> Result<&'a DeviceModel, String> {
        models
            .iter()
            .find(|m| m.platform == platform && m.name.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                format!(
                    "'{}' is not an {} model in the catalogue; add it first",
                    name.trim(),
                    platform.as_str()
                )
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: i64,
    pub serial: String,
    pub imei: String,
    pub model_id: i64,
    pub model_name: String,
    pub platform: Platform,
    pub status: DeviceStatus,
    pub provider_id: Option<i64>,
    pub purchase_date: Option<NaiveDate>,
    pub warranty_end: Option<NaiveDate>,
    pub supplier: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub last_checkin_at: Option<DateTime<Utc>>,
    /// The facts the device last reported, as JSON.
    pub facts: Option<String>,
    /// The provider user holding the phone; `None` while it is in stock or the provider's pool.
    pub holder_id: Option<i64>,
    /// An ICCID the phone reported that is not its recorded SIM's.
    pub iccid_mismatch: Option<String>,
}

impl Device {
    /// The facts the phone last reported, if it has reported any.
    pub fn reported_facts(&self) -> Option<agent_protocol::DeviceFacts> {
        serde_json::from_str(self.facts.as_deref()?).ok()
    }
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub serial: Serial,
    pub imei: Imei,
    pub model_id: i64,
    /// The model's platform.
    pub platform: Platform,
    pub provider_id: Option<i64>,
    pub purchase_date: Option<NaiveDate>,
    pub warranty_end: Option<NaiveDate>,
    pub supplier: Option<String>,
}

/// A change to a device record; the outer `Option` says whether to change the field.
#[derive(Debug, Clone, Default)]
pub struct DeviceChange {
    pub model_id: Option<i64>,
    pub purchase_date: Option<Option<NaiveDate>>,
    pub warranty_end: Option<Option<NaiveDate>>,
    pub supplier: Option<Option<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub scope: Option<i64>,
    pub status: Option<DeviceStatus>,
    pub provider_id: Option<i64>,
    pub model_id: Option<i64>,
    pub platform: Option<Platform>,
    /// The beginning of a serial number or IMEI.
    pub text: Option<String>,
    /// Only phones that reported another SIM than the one recorded for them.
    pub sim_mismatch: bool,
    /// Devices after this id (the cursor).
    pub after_id: Option<i64>,
    pub limit: u32,
}

/// The result of an import: how many rows were new and how many were already registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    pub inserted: u64,
    pub already_present: u64,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub scope: Option<i64>,
    /// Entries before this sequence number (newest first).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait OrganisationStore: Send + Sync {
    /// The single operator organisation, created on first use with the configured name.
    async fn ensure_operator(&self, name: &str, now: DateTime<Utc>) -> StoreResult<Organisation>;
    async fn create_provider(
        &self,
        p: &NewProvider,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Organisation>;
    async fn organisation(&self, id: i64) -> StoreResult<Organisation>;
    async fn list_providers(&self) -> StoreResult<Vec<Organisation>>;
    async fn update_provider(
        &self,
        id: i64,
        change: &ProviderChange,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Organisation>;
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_account(
        &self,
        a: &NewAccount,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Account>;
    async fn account(&self, id: i64) -> StoreResult<Account>;
    async fn account_by_email(&self, email: &str) -> StoreResult<Account>;
    async fn list_accounts(&self, scope: Scope) -> StoreResult<Vec<Account>>;
    async fn update_account(
        &self,
        id: i64,
        change: &AccountChange,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Account>;
    /// Sets a new password, clears `must_change_password` and ends every other session.
    async fn set_password(
        &self,
        id: i64,
        password_hash: &str,
        keep_session: Option<i64>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    /// When the login key (see `auth::login_key`) is locked until, if it ever was.
    async fn login_lock(&self, key: &str) -> StoreResult<Option<DateTime<Utc>>>;
    /// Counts one more failed login for the key, atomically, and locks it when the throttle
    /// says so.
    async fn record_login_failure(
        &self,
        key: &str,
        throttle: &LoginThrottle,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<FailureOutcome>;
    /// Clears the key's failures, remembers the TOTP step used (no replays) and opens a session.
    async fn record_login_success(
        &self,
        id: i64,
        key: &str,
        totp_step: Option<i64>,
        session: &NewSession,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<i64>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_token(
        &self,
        s: &NewSession,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<i64>;
    /// The live session for this token hash, or `NotFound` if none is live at `now`.
    async fn session_by_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<SessionContext>;
    async fn list_tokens(&self, account_id: i64, now: DateTime<Utc>)
        -> StoreResult<Vec<TokenInfo>>;
    async fn revoke_session(
        &self,
        account_id: i64,
        session_id: i64,
        kind: SessionKind,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
}

#[async_trait]
pub trait ModelStore: Send + Sync {
    async fn create_model(
        &self,
        platform: Platform,
        name: &str,
        recommended_since: Option<NaiveDate>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<DeviceModel>;
    async fn list_models(&self) -> StoreResult<Vec<DeviceModel>>;
    async fn set_model_recommended(
        &self,
        id: i64,
        recommended_since: Option<NaiveDate>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<DeviceModel>;
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    async fn create_device(
        &self,
        d: &NewDevice,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Device>;
    /// The device if it exists and lies inside `scope`; `NotFound` otherwise.
    async fn device(&self, scope: Scope, id: i64) -> StoreResult<Device>;
    async fn list_devices(&self, filter: &DeviceFilter) -> StoreResult<Vec<Device>>;
    /// Corrects a device's record (never its provider: that moves with leases); `audit` has
    /// one event per organisation the change concerns.
    async fn update_device(
        &self,
        id: i64,
        change: &DeviceChange,
        now: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> StoreResult<Device>;
    /// The device with this serial number (upper-case), whoever holds it.
    async fn device_by_serial(&self, serial: &str) -> StoreResult<Device>;
    /// Serials of these that are already registered, with their IMEIs.
    async fn registered_serials(&self, serials: &[String]) -> StoreResult<Vec<(String, String)>>;
    /// IMEIs of these that are registered, with their serials.
    async fn registered_imeis(&self, imeis: &[String]) -> StoreResult<Vec<(String, String)>>;
    /// Inserts all new devices in one transaction; those whose serial exists with the same IMEI
    /// are left alone, and one registered with another IMEI fails the whole import.
    /// `progress` hears how many rows are written so far.
    async fn import_devices(
        &self,
        devices: &[NewDevice],
        now: DateTime<Utc>,
        audit: AuditEvent,
        progress: &(dyn Fn(u64) + Sync),
    ) -> StoreResult<ImportSummary>;
    /// For demo data: put a device into a lifecycle status directly.
    async fn set_device_status(
        &self,
        id: i64,
        status: DeviceStatus,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
}

#[derive(Debug, Clone)]
pub struct NewEnrollmentToken {
    pub token_hash: String,
    pub device_id: Option<i64>,
    pub provider_id: Option<i64>,
    pub channel: crate::domain::device::Channel,
    pub created_by: Option<i64>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    pub id: i64,
    pub device_id: Option<i64>,
    pub provider_id: Option<i64>,
    /// Which way the phone enrolls with it: the agent's enroll call, or SCEP and Apple's MDM
    /// check-in.
    pub channel: crate::domain::device::Channel,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub used_by: Option<i64>,
}

/// A certificate the device CA issued to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// Lower-case hex.
    pub serial: String,
    pub device_id: i64,
    pub fingerprint: String,
    pub key_kind: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
}

impl DeviceIdentity {
    /// Whether it still proves who the phone is (`domain::device::identity_is_live`).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        crate::domain::device::identity_is_live(self.revoked_at, self.not_after, now)
    }
}

/// Reported facts as stored: canonical JSON and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedFacts {
    pub json: String,
    pub hash: String,
}

/// A device speaking with a live certificate: what a check-in needs, and nothing more, because
/// it is read on every request of every device.
#[derive(Debug, Clone)]
pub struct DeviceSession {
    /// The serial number (hex) of the certificate presented.
    pub certificate_serial: String,
    pub device_id: i64,
    pub serial: String,
    pub imei: String,
    pub platform: Platform,
    pub provider_id: Option<i64>,
    pub model_id: i64,
    /// The hash of the facts the device last reported.
    pub facts_hash: Option<String>,
    pub status: DeviceStatus,
}

#[async_trait]
pub trait EnrollmentStore: Send + Sync {
    async fn create_enrollment_token(
        &self,
        token: &NewEnrollmentToken,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<i64>;
    /// Newest first; only tokens for devices or pools of `scope` when given.
    async fn list_enrollment_tokens(&self, limit: u32) -> StoreResult<Vec<EnrollmentToken>>;
    async fn enrollment_token(&self, token_hash: &str) -> StoreResult<EnrollmentToken>;
    /// In one transaction: uses the token (it must still be unused and unexpired at `now`,
    /// else `Conflict`), revokes the device's earlier identities, stores the new one and the
    /// reported facts, and marks the device enrolled.
    async fn enroll_device(
        &self,
        token_id: i64,
        identity: &DeviceIdentity,
        facts: &ReportedFacts,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    /// The devices behind live (not revoked, not expired) certificates, by certificate
    /// fingerprint, in one query; a fingerprint with no live certificate is absent.
    async fn device_sessions(
        &self,
        fingerprints: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<HashMap<String, DeviceSession>>;
    /// Every identity the device has had, newest first.
    async fn device_identities(&self, device_id: i64) -> StoreResult<Vec<DeviceIdentity>>;
    /// Replaces a live identity with a new one: the old is revoked in the same transaction.
    async fn renew_identity(
        &self,
        old_serial: &str,
        new: &DeviceIdentity,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    /// Revokes every live identity of the device; returns how many.
    async fn revoke_device_identities(
        &self,
        device_id: i64,
        reason: &str,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<u64>;
    /// The devices holding a certificate that is neither revoked nor expired at `now`.
    async fn live_identity_devices(&self, now: DateTime<Utc>) -> StoreResult<Vec<i64>>;
    /// Revoked certificates that have not expired yet, for the revocation list.
    async fn revoked_identities(
        &self,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, DateTime<Utc>)>>;
    /// Writes many devices' check-in times in one transaction (never moving a time backwards).
    async fn touch_checkins(&self, batch: &[(i64, DateTime<Utc>)]) -> StoreResult<()>;
    /// Notes a check-in; `facts` only when they changed since the last report.
    async fn record_checkin(
        &self,
        device_id: i64,
        facts: Option<&ReportedFacts>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an event on its own, for events that change nothing else (reads, refusals).
    async fn append_audit(&self, event: AuditEvent, now: DateTime<Utc>) -> StoreResult<()>;
    async fn list_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;
    /// Every entry in ascending order, in pages, for verification and export.
    async fn audit_page(
        &self,
        scope: Option<i64>,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>>;
    async fn audit_head(&self) -> StoreResult<(i64, String)>;
}

#[async_trait]
pub trait Maintenance: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
    async fn migrate(&self) -> StoreResult<()>;
    /// A consistent copy of the database while it is in use, where the backend can make one.
    async fn backup_to(&self, path: &std::path::Path) -> StoreResult<()>;
    fn backend_name(&self) -> &'static str;
    /// A fact about the installation, such as `demo`.
    async fn installation_fact(&self, key: &str) -> StoreResult<Option<String>>;
    async fn set_installation_fact(&self, key: &str, value: &str) -> StoreResult<()>;
}

/// Everything the server needs from storage.
pub trait Store:
    OrganisationStore
    + AccountStore
    + SessionStore
    + ModelStore
    + DeviceStore
    + EnrollmentStore
    + AuditStore
    + NoticeStore
    + PolicyStore
    + CommandStore
    + ComplianceStore
    + LeasingStore
    + LostCaseStore
    + SubscriptionStore
    + WarrantyStore
    + AppleStore
    + Maintenance
{
}

impl<T> Store for T where
    T: OrganisationStore
        + AccountStore
        + SessionStore
        + ModelStore
        + DeviceStore
        + EnrollmentStore
        + AuditStore
        + NoticeStore
        + PolicyStore
        + CommandStore
        + ComplianceStore
        + LeasingStore
        + LostCaseStore
        + SubscriptionStore
        + WarrantyStore
        + AppleStore
        + Maintenance
{
}

/// Opens the store the URL names: `sqlite://path` or `postgres://...`.
pub async fn open(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(postgres::PgStore::connect(url).await?))
    } else {
        Ok(std::sync::Arc::new(
            sqlite::SqliteStore::connect(url).await?,
        ))
    }
}
