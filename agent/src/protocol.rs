//! The device protocol: JSON bodies of `/agent/v1/*`. The device listener's TLS client
//! certificate says which device is speaking; these bodies say what it reports.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An app installed on the phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledApp {
    /// Android package name or iOS bundle id.
    pub id: String,
    pub version: String,
}

/// The phone's screen lock as the phone reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PinState {
    pub set: bool,
    pub length: Option<u8>,
    pub numeric: Option<bool>,
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

/// A policy document for the phone to apply (its shape is `profiles::agent::AgentPolicy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyUpdate {
    pub hash: String,
    pub document: serde_json::Value,
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
