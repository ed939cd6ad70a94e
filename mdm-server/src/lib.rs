//! The municipal phone-fleet MDM server: library behind the `mdm-server` binary.
//!
//! Floors, outermost first: `cli`, `http` and `jobs` parse, authorise or schedule and call a
//! flow; `flows` runs each multi-step flow once; `state` is what a node holds (the store, the
//! configuration and the in-memory boards); `domain` decides, `store` persists, `notify` sends.
//! `auth` holds the credential mechanics (Argon2id, TOTP, tokens).

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod flows;
pub mod http;
pub mod import;
pub mod jobs;
pub mod notify;
pub mod server;
pub mod state;
pub mod store;
