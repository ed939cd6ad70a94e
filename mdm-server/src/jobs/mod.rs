//! Background work of a server node.

pub mod checkin_times;
pub mod command_board;
pub mod commands;
pub mod compliance;
pub mod device_lookups;
pub mod notice_board;
pub mod notices;
pub mod policy_board;
