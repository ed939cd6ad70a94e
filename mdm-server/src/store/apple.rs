//! Storage of iPhones reached through Apple's MDM protocol: the certificates SCEP issued that
//! wait for the phone's first check-in, and what each enrolled iPhone told us (UDID, push token,
//! topic). Identities themselves are the same rows as every phone's.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{DeviceIdentity, EnrollmentToken, ReportedFacts, StoreResult};
use crate::domain::audit::AuditEvent;

/// A certificate SCEP issued against an enrollment token, waiting for the phone's
/// `Authenticate` to tie it to a device record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEnrollment {
    pub fingerprint: String,
    /// Lower-case hex.
    pub certificate_serial: String,
    pub token_id: i64,
    pub key_kind: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// An enrolled iPhone's MDM details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppleDevice {
    pub device_id: i64,
    pub udid: String,
    pub topic: Option<String>,
    /// The APNs device token, as the phone sent it.
    pub push_token: Option<Vec<u8>>,
    pub push_magic: Option<String>,
    pub enrolled_at: DateTime<Utc>,
    pub token_updated_at: Option<DateTime<Utc>>,
    pub checked_out_at: Option<DateTime<Utc>>,
    /// Whether it is supervised, once its inventory answer said so.
    pub supervised: Option<bool>,
    /// When APNs last took a push for it.
    pub pushed_at: Option<DateTime<Utc>>,
    /// When APNs said its push token is no longer valid, and APNs' reason: it cannot be woken
    /// until it sends a new token.
    pub push_dead: Option<(DateTime<Utc>, String)>,
}

/// Where a push for an iPhone goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    pub device_id: i64,
    /// The APNs device token, lower-case hex as it goes in the push's path.
    pub push_token: String,
    pub push_magic: String,
    pub topic: String,
}

/// What a `TokenUpdate` brings.
#[derive(Debug, Clone)]
pub struct PushDetails {
    pub topic: String,
    pub push_token: Vec<u8>,
    pub push_magic: String,
}

#[async_trait]
pub trait AppleStore: Send + Sync {
    /// In one transaction: uses the token (it must still be unused and unexpired at `now`,
    /// else `Conflict`) and keeps the certificate SCEP issued against it.
    async fn claim_token_for_scep(
        &self,
        pending: &PendingEnrollment,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    /// The pending certificate with this fingerprint and the token it was issued against.
    async fn pending_enrollment(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<(PendingEnrollment, EnrollmentToken)>>;
    /// In one transaction: the pending certificate (it must still be waiting, else
    /// `Conflict`) becomes the device's one live identity as any phone's enrollment does,
    /// the token is marked as used by that device, and the iPhone's UDID is kept (`Conflict`
    /// if another device record has it).
    async fn complete_apple_enrollment(
        &self,
        identity: &DeviceIdentity,
        facts: &ReportedFacts,
        udid: &str,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    /// Drops a pending certificate that will never become an identity, with the audit entry
    /// that says why.
    async fn drop_pending_enrollment(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    /// Deletes pending certificates issued before `before` whose phone never authenticated
    /// (the person gave up half-way); returns how many.
    async fn sweep_pending_enrollments(&self, before: DateTime<Utc>) -> StoreResult<u64>;
    async fn apple_device(&self, device_id: i64) -> StoreResult<Option<AppleDevice>>;
    /// Keeps whether the iPhone is supervised, as its inventory answer says.
    async fn set_apple_supervised(&self, device_id: i64, supervised: bool) -> StoreResult<()>;
    /// How many iPhones are enrolled through Apple's protocol and not checked out.
    async fn enrolled_apple_devices(&self) -> StoreResult<u64>;
    /// How the phone's last wipe went out (`return_to_service`, `erase_only`).
    async fn note_wipe_delivery(&self, device_id: i64, how: &str) -> StoreResult<()>;
    async fn wipe_delivery(&self, device_id: i64) -> StoreResult<Option<String>>;
    /// Enrolled iPhones (not checked out) with no inventory refresh queued since `since` nor
    /// one still waiting (a phone that is off does not pile them up); at most `limit`.
    async fn apple_devices_due_inventory(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<i64>>;
    /// The enrolled iPhones (not checked out), only those placed with `provider_id` when given.
    async fn apple_device_ids(&self, provider_id: Option<i64>) -> StoreResult<Vec<i64>>;
    /// Where to push the phones among `device_ids` that can be woken: enrolled through Apple's
    /// protocol, not checked out, with a token APNs has not refused.
    async fn push_targets(&self, device_ids: &[i64]) -> StoreResult<Vec<PushTarget>>;
    /// iPhones that can be woken, not heard from since `silent_since` and not pushed since then
    /// either; at most `limit`.
    async fn silent_apple_devices(
        &self,
        silent_since: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<i64>>;
    /// APNs took a push for each of these phones at `now`.
    async fn note_pushed(&self, device_ids: &[i64], now: DateTime<Utc>) -> StoreResult<()>;
    /// APNs refused the phone's token for good; ignored if the phone has since sent another
    /// token. Whether it was marked.
    async fn mark_push_token_dead(
        &self,
        device_id: i64,
        push_token: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Keeps what a `TokenUpdate` brought (a new token is live again).
    async fn update_apple_push(
        &self,
        device_id: i64,
        push: &PushDetails,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The phone's MDM profile was removed: its live identities are revoked, it counts as not
    /// enrolled and its push token is forgotten; returns how many identities were revoked.
    async fn check_out_apple_device(
        &self,
        device_id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<u64>;
}
