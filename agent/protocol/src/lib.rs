//! The device protocol: JSON bodies of `/agent/v1/*`. The device listener's TLS client
//! certificate says which device is speaking; these bodies say what it reports.
//!
//! A crate of its own so that the agent, the policy renderings (`profiles`) and the server share
//! these types without the server depending on the agent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// An app installed on the phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledApp {
    /// Android package name or iOS bundle id.
    pub id: String,
    pub version: String,
}

/// The phone's screen lock as the phone reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PinState {
    pub set: bool,
    pub length: Option<u8>,
    pub numeric: Option<bool>,
    /// iPhones: Apple reports neither the passcode's length nor its kind, only whether it meets
    /// the installed profiles; what stands in for them. Never sent by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_profile: Option<PasscodeByProfile>,
}

/// An iPhone's evidence for its passcode: the MDM passcode profile it has installed and
/// whether it says its passcode meets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PasscodeByProfile {
    /// The `PayloadUUID` of the server's standard profile on the phone (it changes with the
    /// profile's content), from `ProfileList`; `None` when it is not installed.
    pub installed_profile: Option<String>,
    /// `PasscodeCompliantWithProfiles` from `SecurityInfo`; `None` until it answered.
    pub compliant_with_profiles: Option<bool>,
}

/// Everything a phone reports about itself at enrollment and check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFacts {
    /// `android` or `ios`.
    pub platform: String,
    pub model: String,
    pub os_version: String,
    pub serial: String,
    pub imei: String,
    pub iccid: Option<String>,
    /// E.164.
    pub phone_number: Option<String>,
    pub battery_percent: Option<u8>,
    pub storage_free_bytes: Option<u64>,
    pub storage_total_bytes: Option<u64>,
    #[serde(default)]
    pub installed_apps: Vec<InstalledApp>,
    #[serde(default)]
    pub pin: PinState,
    #[serde(default)]
    pub disk_encrypted: bool,
    pub mobile_data_bytes_this_month: Option<u64>,
    pub agent_version: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The secret from the enrollment token.
    pub token: String,
    /// The certificate signing request, DER, base64.
    pub csr: String,
    pub facts: DeviceFacts,
}

impl std::fmt::Debug for EnrollRequest {
    // The token is a secret: it stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub device_id: i64,
    /// The device's certificate followed by the issuing CA.
    pub certificate_pem: String,
    /// The issuing CA and the root.
    pub ca_chain_pem: String,
    pub checkin_interval_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    /// Identifies this report; the server echoes it back when it has stored it.
    pub report_id: String,
    /// When the phone made the report (it may arrive later).
    pub reported_at: DateTime<Utc>,
    pub facts: DeviceFacts,
    /// The hash of the policy document the phone applied last; the answer carries the policy
    /// only when the server's differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckinResponse {
    pub acknowledged: String,
    pub next_checkin_seconds: u64,
    pub server_time: DateTime<Utc>,
    /// Planned maintenance and disruptions in progress or coming up, for the phone to show.
    #[serde(default)]
    pub notices: Vec<DeviceNotice>,
    /// The phone's policy, when it differs from the one it reported having.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyUpdate>,
    /// Commands to carry out, in order. A command can arrive more than once (delivery is at
    /// least once); the phone answers a repeat from its record instead of acting again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<DeviceCommand>,
}

/// A command for the phone, with the id its answer goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCommand {
    pub id: i64,
    #[serde(flatten)]
    pub action: CommandAction,
}

/// What the phone is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandAction {
    /// Lock the screen now, showing the message and the support number.
    Lock {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone_number: Option<String>,
    },
    /// Erase the phone. The phone answers first, then erases, and must enroll again.
    Wipe,
    /// Lock into lost mode, showing the message and the number to call to the finder.
    LostModeOn {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone_number: Option<String>,
    },
    LostModeOff,
    /// `app` is the catalogue key; `identifier` the package name or bundle id on this phone.
    InstallApp {
        app: String,
        identifier: String,
    },
    RemoveApp {
        app: String,
        identifier: String,
    },
    /// Check in at once with fresh facts.
    RefreshInformation,
    Restart,
}

/// The phone's answer to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Done.
    Acknowledged,
    /// Tried and failed; `error` says why.
    Error,
    /// Cannot be done now (for example during a call); send it again later.
    NotNow,
}

/// `POST /agent/v1/commands/{id}/result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    pub status: CommandStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A policy document for the phone to apply: an [`AgentPolicy`] as JSON, with the hash of its
/// canonical form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyUpdate {
    pub hash: String,
    pub document: serde_json::Value,
}

impl PolicyUpdate {
    /// The document as the typed policy it is.
    pub fn policy(&self) -> Result<AgentPolicy, serde_json::Error> {
        AgentPolicy::deserialize(&self.document)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPin {
    pub min_length: u8,
    pub numeric_allowed: bool,
    pub max_failed_attempts: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRestrictions {
    pub camera: bool,
    pub screenshots: bool,
    pub cloud_backup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentApp {
    /// Package name or bundle id.
    pub id: String,
    pub min_version: Option<String>,
    pub settings: BTreeMap<String, String>,
}

/// The policy document the agent applies (Android and the Linux test agent); `profiles` renders
/// it from the effective policy. Fields serialise in this order, so equal policies give equal
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPolicy {
    pub pin: AgentPin,
    pub auto_lock_minutes: u8,
    pub min_os_version: Option<String>,
    pub restrictions: AgentRestrictions,
    pub apps: Vec<AgentApp>,
}

impl AgentPolicy {
    /// The document as JSON and the SHA-256 (hex) of its canonical form (keys sorted, no
    /// spaces), which names this version: the phone can work the hash out again from what it
    /// receives.
    pub fn to_json_and_hash(&self) -> (serde_json::Value, String) {
        let value = serde_json::to_value(self).unwrap_or_default();
        // serde_json keeps object keys sorted, so these bytes are the canonical form.
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let hash = hex::encode(Sha256::digest(&bytes));
        (value, hash)
    }
}

/// A maintenance window or disruption as a phone shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNotice {
    pub id: i64,
    /// `planned` or `disruption`.
    pub kind: String,
    pub title: String,
    /// `scheduled`, `rescheduled` or `in_progress`.
    pub status: String,
    pub starts_at: DateTime<Utc>,
    /// Absent while a disruption lasts.
    pub ends_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// A new certificate signing request, DER, base64.
    pub csr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewResponse {
    pub certificate_pem: String,
    pub ca_chain_pem: String,
}
