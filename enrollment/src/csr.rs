//! Checking a certificate signing request before anything is signed: it must parse, its
//! signature must verify with the key it carries, and that key must be strong enough. Whatever
//! the CSR asks for (subject, validity, CA rights, key usages) is ignored; the CA decides those.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// The largest CSR accepted: an RSA-4096 request is about 1.7 KB.
pub const MAX_CSR_BYTES: usize = 16 * 1024;
pub const MIN_RSA_BITS: usize = 2048;
const SECP256R1: &str = "1.2.840.10045.3.1.7";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the certificate signing request is larger than {MAX_CSR_BYTES} bytes")]
    TooLarge,
    #[error("the certificate signing request cannot be parsed: {0}")]
    Malformed(String),
    #[error("the certificate signing request is not signed by the key it carries")]
    BadSignature,
    #[error("the key is too weak: {0}; use ECDSA P-256 or RSA of at least {MIN_RSA_BITS} bits")]
    WeakKey(String),
}

/// A request that passed the checks, with the key it carries.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    /// The request's SubjectPublicKeyInfo, DER: the only part of it that reaches a certificate.
    pub(crate) spki_der: Vec<u8>,
    /// `p256` or `rsa-<bits>`, for the audit trail.
    pub key_kind: String,
    /// The request's challenge password (SCEP puts the enrollment secret there).
    pub challenge: Option<String>,
}

impl CheckedCsr {
    /// Whether the request carries this key (SubjectPublicKeyInfo DER).
    pub fn has_key(&self, spki_der: &[u8]) -> bool {
        self.spki_der == spki_der
    }

    pub fn is_rsa(&self) -> bool {
        self.key_kind.starts_with("rsa-")
    }
}

pub fn check_csr(der: &[u8]) -> Result<CheckedCsr, CsrError> {
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge);
    }
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(
            "trailing bytes after the request".into(),
        ));
    }
    let spki = &csr.certification_request_info.subject_pki;
    let key_kind = match spki.parsed() {
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            if curve.as_deref() != Some(SECP256R1) {
                return Err(CsrError::WeakKey(format!(
                    "elliptic curve {} is not P-256",
                    curve.unwrap_or_else(|| "unknown".into())
                )));
            }
            "p256".to_string()
        }
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if bits < MIN_RSA_BITS {
                return Err(CsrError::WeakKey(format!("RSA key of {bits} bits")));
            }
            format!("rsa-{bits}")
        }
        Ok(_) => return Err(CsrError::WeakKey("unsupported key type".into())),
        Err(e) => return Err(CsrError::Malformed(e.to_string())),
    };
    // The key is judged first: a weak key is refused as weak even where the signature library
    // would not verify it at all.
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    let challenge = csr
        .certification_request_info
        .iter_attributes()
        .find_map(|a| match a.parsed_attribute() {
            ParsedCriAttribute::ChallengePassword(p) => Some(p.0.clone()),
            _ => None,
        });
    Ok(CheckedCsr {
        spki_der: spki.raw.to_vec(),
        key_kind,
        challenge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};

    fn csr_with(key: &KeyPair) -> Vec<u8> {
        CertificateParams::new(vec!["phone".into()])
            .expect("params")
            .serialize_request(key)
            .expect("csr")
            .der()
            .to_vec()
    }

    #[test]
    fn a_p256_request_passes() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        assert_eq!(check_csr(&csr_with(&key)).expect("ok").key_kind, "p256");
    }

    #[test]
    fn other_curves_are_refused() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("key");
        assert!(matches!(
            check_csr(&csr_with(&key)),
            Err(CsrError::WeakKey(_))
        ));
    }

    #[test]
    fn a_tampered_request_fails_its_signature() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut der = csr_with(&key);
        // Flip a byte inside the subject name ("phone").
        let at = der
            .windows(5)
            .position(|w| w == b"phone")
            .expect("subject in der");
        der[at] = b'P';
        assert_eq!(
            check_csr(&der).expect_err("tampered"),
            CsrError::BadSignature
        );
    }

    #[test]
    fn garbage_and_oversized_input_are_refused() {
        assert!(matches!(
            check_csr(b"not a csr"),
            Err(CsrError::Malformed(_))
        ));
        assert_eq!(
            check_csr(&vec![0u8; MAX_CSR_BYTES + 1]).expect_err("big"),
            CsrError::TooLarge
        );
    }
}
