//! The device agent.
//!
//! - [`protocol`]: what travels between a device and the server (the `agent-protocol` crate,
//!   which the server uses too);
//! - [`schedule`]: when to check in next (interval, jitter, backoff), pure rules;
//! - with the `client` feature: the phone's description file, its state directory, the HTTP
//!   client that enrolls and checks in over mutual TLS, the simulated phone that carries out
//!   commands, and the swarm of simulated phones.
//!
//! The protocol and schedule have no platform I/O, so an Android app can embed them.

pub use agent_protocol as protocol;
pub mod schedule;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod device_file;
#[cfg(feature = "client")]
pub mod phone;
#[cfg(feature = "client")]
pub mod state;
#[cfg(feature = "client")]
pub mod swarm;

/// This agent's version, reported at every check-in.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
