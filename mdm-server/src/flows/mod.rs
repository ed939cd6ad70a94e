//! Each multi-step flow once. Every front end (the JSON API, the device listener, and the Apple,
//! Android and console front ends to come), the command line and the jobs call these functions:
//! a front end parses and authorises, a flow runs the steps, the domain decides, the store
//! persists. A flow never renders an answer; it returns what happened or a [`FlowError`] that
//! each front end turns into its own kind of answer.
//!
//! - [`enrollment`]: a phone enrolls with a token, renews its certificate, and is identified by it;
//! - [`apple`]: an iPhone gets its certificate by SCEP and checks in through Apple's protocol;
//! - [`checkin`]: a phone reports its facts and gets its notices, policy and commands;
//! - [`commands`]: a person queues a command to a phone or to all of a provider's phones;
//! - [`command_result`]: a phone answers a command;
//! - [`compliance`]: providers are told of phones non-compliant past the grace period;
//! - [`leasing`]: a phone is leased, handed to a holder, returned; contracts end;
//! - [`loss`]: a lost or stolen phone is reported, found, written off or wiped when overdue;
//! - [`maintenance`]: planned maintenance, recurring windows and disruptions are announced;
//! - [`reminders`]: the service desk hears of ending warranties and leases;
//! - [`sim_report`]: what a check-in says about the phone's SIM;
//! - [`warranty`]: a replacement takes over a faulty phone's lease;
//! - [`notices`]: recurring windows' occurrences, and due notices expanded into messages;
//! - [`messages`]: who gets each outbox message, and the key that names it.

pub mod apple;
pub mod apple_connect;
pub mod checkin;
pub mod command_result;
pub mod commands;
pub mod compliance;
pub mod enrollment;
pub mod leasing;
pub mod loss;
pub mod maintenance;
pub mod messages;
pub mod notices;
pub mod reminders;
pub mod sim_report;
pub mod warranty;

use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::{DomainError, Refusal};
use crate::store::StoreError;

/// Why a flow did not run to its end. The front end turns it into its answer (an RFC 9457
/// problem on the API, a message on the console).
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The store refused or failed (not found, a conflict, a rule checked in the transaction).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Fields of the input break a rule; every one is listed.
    #[error("invalid input: {}", .0.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<InvalidField>),
    /// The flow refused on its own account; `kind` is the stable problem type.
    #[error("{}", .0.detail)]
    Rejected(Rejection),
}

/// One field that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: String,
    pub message: String,
}

/// What kind of refusal it is, which decides the status a front end answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionClass {
    /// The caller did not prove who it is (401).
    Unauthenticated,
    /// No such thing for this caller (404).
    NotFound,
    /// The state of things does not allow it (409).
    Conflict,
    /// It was possible once and no longer is (410).
    Gone,
    /// The input is well-formed but cannot be used (422).
    Unprocessable,
}

/// A refusal with its stable problem type, a title and a sentence for the person or phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub class: RejectionClass,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
}

impl FlowError {
    pub fn rejected(
        class: RejectionClass,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        FlowError::Rejected(Rejection {
            class,
            kind,
            title,
            detail: detail.into(),
        })
    }

    /// One field that breaks a rule.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        FlowError::Invalid(vec![InvalidField {
            field: field.into(),
            message: message.into(),
        }])
    }
}

impl From<DomainError> for FlowError {
    fn from(e: DomainError) -> Self {
        FlowError::invalid(e.field(), e.message())
    }
}

impl From<Refusal> for FlowError {
    fn from(r: Refusal) -> Self {
        FlowError::Store(StoreError::Refused(r))
    }
}

pub type FlowResult<T> = Result<T, FlowError>;

/// An audit event done by a phone (or by someone presenting itself as one).
pub fn device_event(
    device_id: Option<i64>,
    org_id: Option<i64>,
    source: std::net::IpAddr,
    action: &str,
    outcome: Outcome,
    details: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        actor_id: None,
        actor_label: device_id.map_or_else(|| "device".to_string(), |id| format!("device:{id}")),
        org_id,
        source: Some(source.to_string()),
        action: action.to_string(),
        target_kind: Some("device".to_string()),
        target_id: device_id.map(|id| id.to_string()),
        outcome,
        details: details.to_string(),
    }
}
