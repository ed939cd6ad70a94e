//! The municipal phone-fleet MDM server: library behind the `mdm-server` binary.
//!
//! Layers, outermost first: `cli` and `http` parse and authorise, `domain` decides, `store`
//! persists. `auth` holds the credential mechanics (Argon2id, TOTP, tokens).

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod http;
pub mod import;
pub mod jobs;
pub mod notify;
pub mod server;
pub mod store;
