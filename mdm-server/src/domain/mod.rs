//! Pure rules of the product: identifiers, roles, lifecycles, policies.
//!
//! Nothing in here does I/O or knows about HTTP or SQL; the `domain_has_no_io_imports`
//! test below keeps it that way. Handlers parse and authorise, this layer decides, the
//! store persists.

pub mod account;
pub mod audit;
pub mod calendar;
pub mod command;
pub mod compliance;
pub mod contact;
pub mod device;
pub mod error;
pub mod facts;
pub mod lease;
pub mod lost_case;
pub mod luhn;
pub mod maintenance;
pub mod model;
pub mod notice_text;
pub mod organisation;
pub mod outbox;
pub mod phone_request;
pub mod role;
pub mod subscription;
pub mod warranty;
pub mod wipe_gate;
pub mod working_days;

pub use error::{DomainError, Refusal};
