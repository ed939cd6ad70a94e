//! Device identity: the server's device CA, enrollment tokens, CSR checks and signing, SCEP,
//! the CMS messages iPhones sign, and certificate revocation lists. No HTTP and no database here: the server calls in with bytes
//! and stores what comes out.

pub mod ca;
pub mod csr;
pub mod envelope;
pub mod push_certificate;
pub mod scep;
pub mod token;

pub use ca::{DeviceCa, IssuedCertificate};
pub use csr::{check_csr, CheckedCsr, CsrError};
pub use token::{EnrollmentInvite, TokenError};

/// The SHA-256 fingerprint of a DER certificate, lower-case hex: how the server finds a device
/// by the certificate it presented, and how a phone pins the CA.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(der))
}
