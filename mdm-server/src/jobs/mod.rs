//! Background work of a server node.

pub mod checkin_times;
pub mod device_lookups;
