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

#[cfg(test)]
mod boundary {
    /// The domain layer must stay free of web and database code so that every rule can be
    /// unit-tested without a server.
    #[test]
    fn domain_has_no_io_imports() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain");
        let forbidden = [
            "axum", "sqlx", "tokio", "reqwest", "tower", "std::fs", "std::net",
        ];
        for entry in std::fs::read_dir(&dir).expect("domain dir") {
            let path = entry.expect("entry").path();
            if path.file_name().and_then(|n| n.to_str()) == Some("mod.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for word in forbidden {
                assert!(
                    !text.contains(&format!("use {word}")) && !text.contains(&format!("{word}::")),
                    "{} uses {word}",
                    path.display()
                );
            }
        }
    }
}
