//! The policy model and its renderings, with no HTTP and no database: the effective policy of
//! a phone merged from the operator's, the provider's and the device's layers
//! ([`policy`]), the agent's JSON document ([`agent`]), the Apple configuration profile
//! ([`apple`]) and the Apple MDM command payloads ([`apple_commands`]); and the iPhone's side
//! of Apple's protocol: its check-in messages, read within bounds ([`apple_checkin`]).

pub mod agent;
pub mod apple;
pub mod apple_checkin;
pub mod apple_commands;
pub mod apps;
pub mod policy;
pub mod version;

/// A policy that cannot be rendered for a phone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the app '{0}' is not in the catalogue")]
    UnknownApp(String),
}
