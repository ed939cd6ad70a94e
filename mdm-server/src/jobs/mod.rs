//! Background work of a server node.

pub mod commands;
pub mod compliance;
pub mod inventory;
pub mod leasing;
pub mod notices;
pub mod push;

pub use crate::clock::{repeat, ClockGate};
