//! The operator's MDM push certificate: Apple issues it to the municipality, and the server
//! uses it to wake iPhones through Apple's push service. Its subject's UID is the push topic
//! every enrollment profile names. It is checked here (certificate and key belong together, it
//! is an MDM push certificate, it has not run out) and kept beside the CA's keys.

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::pem_to_der;

/// The UID attribute (RFC 4519) that carries the topic.
const UID: &str = "0.9.2342.19200300.100.1.1";
/// Every MDM push topic starts so.
pub const TOPIC_PREFIX: &str = "com.apple.mgmt.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushCertificateError {
    #[error("the certificate is not a PEM certificate")]
    NotACertificate,
    #[error("the key is not a PEM RSA private key (PKCS #1 or PKCS #8)")]
    NotAKey,
    #[error("the key does not belong to the certificate")]
    KeyMismatch,
    #[error("the certificate has no MDM push topic (a subject UID starting with {TOPIC_PREFIX}); is it the MDM push certificate from Apple's push certificates portal?")]
    NoTopic,
    #[error("the certificate ran out on {0}; renew it at Apple's push certificates portal")]
    Expired(String),
    #[error("the PKCS #12 file cannot be read: {0}")]
    Pkcs12(String),
}

/// A checked push certificate.
#[derive(Clone)]
pub struct PushCertificate {
    pub certificate_pem: String,
    pub(crate) key_pem: String,
    pub topic: String,
    pub subject: String,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for PushCertificate {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushCertificate")
            .field("topic", &self.topic)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl PushCertificate {
    /// The key, PEM, for the push client.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

fn rsa_key(pem: &str) -> Result<rsa::RsaPrivateKey, PushCertificateError> {
    rsa::RsaPrivateKey::from_pkcs8_pem(pem.trim())
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem.trim()))
        .map_err(|_| PushCertificateError::NotAKey)
}

/// Checks a PEM certificate and its PEM key as of `now`.
pub fn check_push_certificate(
    certificate_pem: &str,
    key_pem: &str,
    now: OffsetDateTime,
) -> Result<PushCertificate, PushCertificateError> {
    let checked = read_push_certificate(certificate_pem, key_pem)?;
    if checked.not_after <= now {
        return Err(PushCertificateError::Expired(
            checked.not_after.date().to_string(),
        ));
    }
    Ok(checked)
}

/// Reads a PEM certificate and its PEM key, whether or not it has run out.
pub(crate) fn read_push_certificate(
    certificate_pem: &str,
    key_pem: &str,
) -> Result<PushCertificate, PushCertificateError> {
    let der = pem_to_der(certificate_pem).ok_or(PushCertificateError::NotACertificate)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|_| PushCertificateError::NotACertificate)?;
    let key = rsa_key(key_pem)?;
    let public = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|_| PushCertificateError::NotAKey)?;
    if cert.public_key().raw != public.as_bytes() {
        return Err(PushCertificateError::KeyMismatch);
    }
    let topic = cert
        .subject()
        .iter_attributes()
        .find(|a| a.attr_type().to_id_string() == UID)
        .and_then(|a| a.as_str().ok())
        .filter(|t| t.starts_with(TOPIC_PREFIX))
        .ok_or(PushCertificateError::NoTopic)?
        .to_string();
    let not_after = cert.validity().not_after.to_datetime();
    Ok(PushCertificate {
        certificate_pem: pem_of(&der),
        key_pem: key_pem.trim().to_string() + "\n",
        topic,
        subject: cert.subject().to_string(),
        not_after,
    })
}

/// Reads a `.p12` file (certificate and key, as the Keychain exports them) and checks it.
pub fn check_push_pkcs12(
    der: &[u8],
    password: &str,
    now: OffsetDateTime,
) -> Result<PushCertificate, PushCertificateError> {
    use rsa::pkcs8::EncodePrivateKey;
    let failed = |e: &dyn std::fmt::Display| PushCertificateError::Pkcs12(e.to_string());
    let store = p12_keystore::KeyStore::from_pkcs12(der, password).map_err(|e| failed(&e))?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| failed(&"it holds no key with its certificate"))?;
    let cert = chain
        .chain()
        .first()
        .ok_or_else(|| failed(&"it holds no certificate"))?;
    let key = rsa::RsaPrivateKey::from_pkcs8_der(chain.key())
        .map_err(|_| PushCertificateError::NotAKey)?;
    let key_pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| failed(&e))?;
    check_push_certificate(&pem_of(cert.as_der()), &key_pem, now)
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};

    const TOPIC: &str = "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9";

    fn key() -> rsa::RsaPrivateKey {
        rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key")
    }

    /// A certificate shaped like Apple's: the topic in the subject's UID.
    fn certificate(key: &rsa::RsaPrivateKey, uid: &str, days: i64) -> String {
        let der = key.to_pkcs8_der().expect("pkcs8");
        let pair = rcgen::KeyPair::try_from(der.as_bytes()).expect("pair");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(
            rcgen::DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
            uid,
        );
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("APSP:{uid}"));
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(days);
        params.self_signed(&pair).expect("cert").pem()
    }

    #[test]
    fn a_matching_pem_pair_gives_its_topic_and_expiry() {
        let key = key();
        let pem = certificate(&key, TOPIC, 365);
        let checked = check_push_certificate(
            &pem,
            &key.to_pkcs8_pem(LineEnding::LF).expect("pem"),
            OffsetDateTime::now_utc(),
        )
        .expect("accepted");
        assert_eq!(checked.topic, TOPIC);
        assert!(checked.subject.contains("APSP:"));
        assert!(checked.not_after > OffsetDateTime::now_utc() + time::Duration::days(360));
    }

    #[test]
    fn a_key_of_another_certificate_an_expired_one_and_one_without_topic_are_refused() {
        let (a, b) = (key(), key());
        let now = OffsetDateTime::now_utc();
        let pem_b = b.to_pkcs8_pem(LineEnding::LF).expect("pem");
        assert_eq!(
            check_push_certificate(&certificate(&a, TOPIC, 365), &pem_b, now).expect_err("x"),
            PushCertificateError::KeyMismatch
        );
        assert!(matches!(
            check_push_certificate(&certificate(&b, TOPIC, -1), &pem_b, now),
            Err(PushCertificateError::Expired(_))
        ));
        assert_eq!(
            check_push_certificate(&certificate(&b, "se.kommun.web", 365), &pem_b, now)
                .expect_err("x"),
            PushCertificateError::NoTopic
        );
        assert_eq!(
            check_push_certificate("nonsense", &pem_b, now).expect_err("x"),
            PushCertificateError::NotACertificate
        );
    }

    #[test]
    fn a_kept_push_certificate_reads_back_from_one_private_file() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = crate::DeviceCa::load_or_create(dir.path(), "Testkommun").expect("ca");
        assert!(ca.push_certificate().expect("read").is_none());
        let key = key();
        let checked = check_push_certificate(
            &certificate(&key, TOPIC, 365),
            &key.to_pkcs8_pem(LineEnding::LF).expect("pem"),
            OffsetDateTime::now_utc(),
        )
        .expect("accepted");
        ca.keep_push_certificate(&checked).expect("kept");
        let back = ca.push_certificate().expect("read").expect("present");
        assert_eq!(back.topic, TOPIC);
        assert_eq!(back.key_pem(), checked.key_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("mdm-push.pem"))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_p12_with_its_password_is_read_and_a_wrong_password_refused() {
        let key = key();
        let pem = certificate(&key, TOPIC, 365);
        let cert =
            p12_keystore::Certificate::from_der(&pem_to_der(&pem).expect("der")).expect("cert");
        let chain = p12_keystore::PrivateKeyChain::new(
            key.to_pkcs8_der().expect("pkcs8").as_bytes(),
            [1u8; 20],
            vec![cert],
        );
        let mut store = p12_keystore::KeyStore::new();
        store.add_entry("push", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
        let p12 = store.writer("sekret").write().expect("p12");
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            check_push_pkcs12(&p12, "sekret", now).expect("read").topic,
            TOPIC
        );
        assert!(matches!(
            check_push_pkcs12(&p12, "wrong", now),
            Err(PushCertificateError::Pkcs12(_))
        ));
    }
}
