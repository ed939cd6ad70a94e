//! The device CA: a root that signs one issuing CA, which signs device certificates, the
//! server's own TLS certificate for the device listener, the certificate configuration profiles
//! are signed with, and the revocation list.
//!
//! Keys are ECDSA P-256, made on first start and kept in the data directory with mode 0600.
//! They never leave it; phones pin the root by its fingerprint.

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

use crate::csr::CheckedCsr;
use crate::fingerprint;
use crate::push_certificate::{read_push_certificate, PushCertificate};
use crate::scep::RegistrationAuthority;

/// Device certificates live a year; phones renew well before.
pub const DEVICE_CERT_DAYS: i64 = 365;
const ROOT_YEARS: i64 = 20;
const ISSUING_YEARS: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CA file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {path} is not usable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("signing failed: {0}")]
    Signing(#[from] rcgen::Error),
    #[error("making a key failed: {0}")]
    Key(String),
}

/// A certificate the CA issued, with what the server stores about it.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub der: Vec<u8>,
    pub pem: String,
    /// Lower-case hex of the serial number.
    pub serial: String,
    pub fingerprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

pub struct DeviceCa {
    dir: PathBuf,
    root_pem: String,
    root_der: Vec<u8>,
    issuing_pem: String,
    issuing_der: Vec<u8>,
    issuing: Issuer<'static, KeyPair>,
    /// The profile-signing certificate in use (see [`DeviceCa::profile_signer`]).
    profile_signer: std::sync::Mutex<Option<ProfileSigner>>,
    /// The SCEP registration authority in use, and the end of its certificate's validity.
    scep_ra: std::sync::Mutex<Option<(RegistrationAuthority, OffsetDateTime)>>,
}

/// The certificate configuration profiles are signed with, and its key.
#[derive(Clone)]
pub struct ProfileSigner {
    /// The certificate, then the issuing CA: what a signed profile carries.
    pub chain_pem: String,
    /// PKCS#8 DER.
    pub key_der: Vec<u8>,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for ProfileSigner {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileSigner")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A profile-signing certificate is replaced when it has less than this left: well before
/// phones would see a profile signed by an expired certificate.
pub const PROFILE_SIGNER_RENEW_DAYS: i64 = 30;
const PROFILE_SIGNER_PEM: &str = "profile-signing.pem";
const PROFILE_SIGNER_KEY: &str = "profile-signing.key";
const PUSH_PEM: &str = "mdm-push.pem";
const SCEP_RA_PEM: &str = "scep-ra.pem";
const SCEP_RA_KEY: &str = "scep-ra.key";
/// The SCEP RA's certificate lives two years and is replaced, like the profile signer, when it
/// has less than [`PROFILE_SIGNER_RENEW_DAYS`] left.
const SCEP_RA_DAYS: i64 = 730;
/// RSA, because SCEP clients encrypt their requests to this key; 2048 bits, as iPhones' own.
const SCEP_RA_BITS: usize = 2048;

impl std::fmt::Debug for DeviceCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCa")
            .field("root_fingerprint", &self.root_fingerprint())
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a private key readable by the owner only.
fn write_private(path: &Path, pem: &str) -> Result<(), CaError> {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(pem.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(io(path))
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and never shorter than 16 bytes
    SerialNumber::from_slice(&bytes)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Municipal phone-fleet MDM");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params(
    common_name: &str,
    years: i64,
    now: OffsetDateTime,
    path_len: u8,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(365 * years);
    params.serial_number = Some(random_serial());
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

impl DeviceCa {
    /// Loads the CA from `dir`, or makes it there on first start.
    pub fn load_or_create(dir: &Path, operator_name: &str) -> Result<Self, CaError> {
        // The CA's folder, and the data folder it is made in, are the server user's only.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io(dir))?;
        let paths = [
            dir.join("root.pem"),
            dir.join("root.key"),
            dir.join("issuing.pem"),
            dir.join("issuing.key"),
        ];
        if !paths.iter().any(|p| p.exists()) {
            Self::create(dir, operator_name)?;
        }
        let [root_pem_path, _, issuing_pem_path, issuing_key_path] = &paths;
        let root_pem = read(root_pem_path)?;
        let issuing_pem = read(issuing_pem_path)?;
        let issuing_key =
            KeyPair::from_pem(&read(issuing_key_path)?).map_err(|e| CaError::Corrupt {
                path: issuing_key_path.clone(),
                reason: e.to_string(),
            })?;
        let issuing =
            Issuer::from_ca_cert_pem(&issuing_pem, issuing_key).map_err(|e| CaError::Corrupt {
                path: issuing_pem_path.clone(),
                reason: e.to_string(),
            })?;
        let not_pem = |path: &PathBuf| CaError::Corrupt {
            path: path.clone(),
            reason: "not a PEM certificate".into(),
        };
        let root_der = pem_to_der(&root_pem).ok_or_else(|| not_pem(root_pem_path))?;
        let issuing_der = pem_to_der(&issuing_pem).ok_or_else(|| not_pem(issuing_pem_path))?;
        Ok(DeviceCa {
            dir: dir.to_path_buf(),
            root_pem,
            root_der,
            issuing_pem,
            issuing_der,
            issuing,
            profile_signer: std::sync::Mutex::new(None),
            scep_ra: std::sync::Mutex::new(None),
        })
    }

    fn create(dir: &Path, operator_name: &str) -> Result<(), CaError> {
        let now = OffsetDateTime::now_utc();
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let root_params = ca_params(
            &format!("{operator_name} device root CA"),
            ROOT_YEARS,
            now,
            1,
        );
        let root_cert = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, &root_key);
        let issuing_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let issuing_params = ca_params(
            &format!("{operator_name} device issuing CA"),
            ISSUING_YEARS,
            now,
            0,
        );
        let issuing_cert = issuing_params.signed_by(&issuing_key, &root_issuer)?;
        // Keys first: a half-made CA without its keys is refused at the next start instead of
        // being silently replaced.
        write_private(&dir.join("root.key"), &root_key.serialize_pem())?;
        write_private(&dir.join("issuing.key"), &issuing_key.serialize_pem())?;
        std::fs::write(dir.join("root.pem"), root_cert.pem()).map_err(io(dir))?;
        std::fs::write(dir.join("issuing.pem"), issuing_cert.pem()).map_err(io(dir))?;
        Ok(())
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The issuing CA and the root, as a client needs them to verify a device certificate.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.issuing_pem, self.root_pem)
    }

    pub fn issuing_pem(&self) -> &str {
        &self.issuing_pem
    }

    /// The issuing CA and the root, DER, in that order.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.issuing_der.clone(), self.root_der.clone()]
    }

    /// Whether the issuing CA signed this certificate (DER). Whether it is still live is the
    /// database's question.
    pub fn issued_here(&self, der: &[u8]) -> bool {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (Ok((_, cert)), Ok((_, issuing))) = (
            X509Certificate::from_der(der),
            X509Certificate::from_der(&self.issuing_der),
        ) else {
            return false;
        };
        cert.issuer() == issuing.subject()
            && cert.verify_signature(Some(issuing.public_key())).is_ok()
    }

    /// What a phone pins: the SHA-256 of the root certificate.
    pub fn root_fingerprint(&self) -> String {
        fingerprint(&self.root_der)
    }

    /// Signs a device certificate for a checked CSR. Everything but the public key comes from
    /// here: subject, one year of validity, no CA rights, digital signature and `clientAuth`.
    pub fn issue_device_certificate(
        &self,
        csr: &CheckedCsr,
        subject: &str,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, CaError> {
        // Only the key comes from the request: its subject, extensions and signature algorithm
        // are never parsed into the certificate.
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(subject);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(DEVICE_CERT_DAYS);
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        let cert = params.signed_by(&public_key, &self.issuing)?;
        Ok(IssuedCertificate {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            serial: hex::encode(serial.to_bytes()),
            fingerprint: fingerprint(cert.der()),
            not_before: params.not_before,
            not_after: params.not_after,
        })
    }

    /// A fresh TLS server certificate for the device listener, for these host names and
    /// addresses, with its key. Made at every start; phones pin the root, not this.
    pub fn issue_server_certificate(
        &self,
        hostnames: &[String],
    ) -> Result<(String, String), CaError> {
        let sans = hostnames
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => h.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        let (chain, key, _) = self.issue_service_leaf(
            hostnames.first().map_or("mdm", String::as_str),
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        Ok((chain, key.serialize_pem()))
    }

    /// A 90-day leaf for one of the server's own uses, with a new P-256 key: the chain (the
    /// leaf, then the issuing CA), the key and the end of its validity.
    fn issue_service_leaf(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(String, KeyPair, OffsetDateTime), CaError> {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(90);
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuing)?;
        Ok((
            format!("{}{}", cert.pem(), self.issuing_pem),
            key,
            params.not_after,
        ))
    }

    /// The certificate configuration profiles are signed with. It is kept in the CA's directory
    /// (key mode 0600) and used for every profile until it has less than
    /// [`PROFILE_SIGNER_RENEW_DAYS`] left; then a new one is issued and kept in its place. So
    /// every profile from this server names the same signer, and the CA does not issue a
    /// certificate per download. Several servers sharing the directory each keep using the one
    /// they hold until it is due.
    pub fn profile_signer(&self, name_: &str) -> Result<ProfileSigner, CaError> {
        self.profile_signer_at(name_, OffsetDateTime::now_utc())
    }

    fn profile_signer_at(
        &self,
        name_: &str,
        now: OffsetDateTime,
    ) -> Result<ProfileSigner, CaError> {
        let mut current = self
            .profile_signer
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = |signer: &ProfileSigner| {
            signer.not_after - now < Duration::days(PROFILE_SIGNER_RENEW_DAYS)
        };
        if let Some(signer) = current.as_ref().filter(|s| !due(s)) {
            return Ok(signer.clone());
        }
        let signer = match self.stored_profile_signer() {
            Some(stored) if !due(&stored) => stored,
            _ => self.new_profile_signer(name_)?,
        };
        *current = Some(signer.clone());
        Ok(signer)
    }

    /// The kept profile signer, if there is one this CA issued and its key matches.
    fn stored_profile_signer(&self) -> Option<ProfileSigner> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let chain_pem = read(&self.dir.join(PROFILE_SIGNER_PEM)).ok()?;
        let key = KeyPair::from_pem(&read(&self.dir.join(PROFILE_SIGNER_KEY)).ok()?).ok()?;
        if !chain_pem.ends_with(&self.issuing_pem) {
            return None;
        }
        let der = pem_to_der(&chain_pem)?;
        let (_, cert) = X509Certificate::from_der(&der).ok()?;
        // A crash between writing the two files leaves a key that is not the certificate's.
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return None;
        }
        Some(ProfileSigner {
            not_after: cert.validity().not_after.to_datetime(),
            chain_pem,
            key_der: key.serialize_der(),
        })
    }

    /// Issues a profile signer and keeps it, each file written aside and then renamed over the
    /// old one.
    fn new_profile_signer(&self, name_: &str) -> Result<ProfileSigner, CaError> {
        // S/MIME signing is what CMS verifiers (openssl cms -verify) check signed data for.
        let (chain_pem, key, not_after) =
            self.issue_service_leaf(name_, Vec::new(), ExtendedKeyUsagePurpose::EmailProtection)?;
        self.keep(PROFILE_SIGNER_KEY, &key.serialize_pem(), true)?;
        self.keep(PROFILE_SIGNER_PEM, &chain_pem, false)?;
        Ok(ProfileSigner {
            chain_pem,
            key_der: key.serialize_der(),
            not_after,
        })
    }

    /// Writes a file of the CA's directory aside and renames it over the old one.
    fn keep(&self, file: &str, text: &str, private: bool) -> Result<(), CaError> {
        let path = self.dir.join(file);
        let aside = self.dir.join(format!("{file}.new"));
        let _ = std::fs::remove_file(&aside);
        if private {
            write_private(&aside, text)?;
        } else {
            std::fs::write(&aside, text).map_err(io(&aside))?;
        }
        std::fs::rename(&aside, &path).map_err(io(&path))
    }

    /// Keeps the operator's MDM push certificate in the CA's directory, certificate and key in
    /// one file of mode 0600 written aside and renamed, so that a crash never leaves a key
    /// beside the wrong certificate; it takes the place of the one before.
    pub fn keep_push_certificate(&self, push: &PushCertificate) -> Result<(), CaError> {
        let both = format!("{}{}", push.certificate_pem, push.key_pem());
        self.keep(PUSH_PEM, &both, true)
    }

    /// The operator's MDM push certificate, if one was uploaded (even if it has run out: the
    /// caller says so).
    pub fn push_certificate(&self) -> Result<Option<PushCertificate>, CaError> {
        const END: &str = "-----END CERTIFICATE-----";
        let path = self.dir.join(PUSH_PEM);
        if !path.exists() {
            return Ok(None);
        }
        let both = read(&path)?;
        let split = both.find(END).map_or(0, |i| i + END.len());
        let (cert, key) = both.split_at(split);
        read_push_certificate(cert, key)
            .map(Some)
            .map_err(|e| CaError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    /// The SCEP registration authority: an RSA key and a certificate from the issuing CA,
    /// kept in the CA's directory (key mode 0600) and replaced like the profile signer when
    /// it runs short. Made on first use: RSA key generation takes a moment.
    pub fn scep_ra(&self) -> Result<RegistrationAuthority, CaError> {
        let now = OffsetDateTime::now_utc();
        let mut current = self.scep_ra.lock().unwrap_or_else(|p| p.into_inner());
        let due =
            |not_after: OffsetDateTime| not_after - now < Duration::days(PROFILE_SIGNER_RENEW_DAYS);
        if let Some((ra, _)) = current.as_ref().filter(|(_, end)| !due(*end)) {
            return Ok(ra.clone());
        }
        let kept = match self.stored_scep_ra() {
            Some(stored) if !due(stored.1) => stored,
            _ => self.new_scep_ra(now)?,
        };
        *current = Some(kept.clone());
        Ok(kept.0)
    }

    fn stored_scep_ra(&self) -> Option<(RegistrationAuthority, OffsetDateTime)> {
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
        use x509_cert::der::{DecodePem, Encode};
        let pem = read(&self.dir.join(SCEP_RA_PEM)).ok()?;
        let key =
            rsa::RsaPrivateKey::from_pkcs8_pem(&read(&self.dir.join(SCEP_RA_KEY)).ok()?).ok()?;
        let certificate = x509_cert::Certificate::from_pem(pem.as_bytes()).ok()?;
        let spki = certificate
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .ok()?;
        // A crash between writing the two files leaves a key that is not the certificate's.
        if spki != key.to_public_key().to_public_key_der().ok()?.as_bytes() {
            return None;
        }
        let (_, not_after) = certificate_validity(&pem)?;
        let not_after = OffsetDateTime::from_unix_timestamp(not_after).ok()?;
        Some((RegistrationAuthority { certificate, key }, not_after))
    }

    fn new_scep_ra(
        &self,
        now: OffsetDateTime,
    ) -> Result<(RegistrationAuthority, OffsetDateTime), CaError> {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        use x509_cert::der::Decode;
        let failed = |e: &dyn std::fmt::Display| CaError::Key(e.to_string());
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), SCEP_RA_BITS)
            .map_err(|e| failed(&e))?;
        let spki = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| failed(&e))?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki.as_bytes())?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("SCEP registration authority");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(SCEP_RA_DAYS);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.signed_by(&public_key, &self.issuing)?;
        let key_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| failed(&e))?;
        self.keep(SCEP_RA_KEY, &key_pem, true)?;
        self.keep(SCEP_RA_PEM, &cert.pem(), false)?;
        let certificate = x509_cert::Certificate::from_der(cert.der()).map_err(|e| failed(&e))?;
        Ok((RegistrationAuthority { certificate, key }, params.not_after))
    }

    /// The revocation list: serials (hex) with the time each was revoked.
    pub fn revocation_list(
        &self,
        revoked: &[(String, OffsetDateTime)],
        number: u64,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, CaError> {
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::days(1),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .filter_map(|(serial, at)| {
                    Some(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(&hex::decode(serial).ok()?),
                        revocation_time: *at,
                        reason_code: Some(RevocationReason::CessationOfOperation),
                        invalidity_date: None,
                    })
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuing)?.der().to_vec())
    }
}

/// The DER bytes of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = pem[start..].find("-----END CERTIFICATE-----")? + start;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The validity (not before, not after; seconds since the epoch) of the first certificate in a
/// PEM text.
pub fn certificate_validity(pem: &str) -> Option<(i64, i64)> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = pem_to_der(pem)?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    Some((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csr::check_csr;
    use x509_parser::prelude::*;

    fn ca() -> (tempfile::TempDir, DeviceCa) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = DeviceCa::load_or_create(&dir.path().join("ca"), "Testkommun").expect("ca");
        (dir, ca)
    }

    #[test]
    fn one_profile_signer_serves_every_profile_and_outlives_a_restart() {
        let (dir, ca) = ca();
        let first = ca
            .profile_signer("Testkommun profile signing")
            .expect("signer");
        let again = ca
            .profile_signer("Testkommun profile signing")
            .expect("signer");
        assert_eq!(first.chain_pem, again.chain_pem);
        assert!(first.chain_pem.ends_with(ca.issuing_pem()));
        let left = first.not_after - OffsetDateTime::now_utc();
        assert!(
            left > Duration::days(89) && left <= Duration::days(90),
            "{left}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca").join(PROFILE_SIGNER_KEY))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let restarted =
            DeviceCa::load_or_create(&dir.path().join("ca"), "Testkommun").expect("reload");
        let after = restarted
            .profile_signer("Testkommun profile signing")
            .expect("signer");
        assert_eq!(first.chain_pem, after.chain_pem);
        assert_eq!(first.key_der, after.key_der);
    }

    #[test]
    fn a_profile_signer_is_replaced_only_near_its_end_and_the_new_one_is_kept() {
        let (dir, ca) = ca();
        let old = ca.profile_signer("signing").expect("signer");
        let not_due = old.not_after - Duration::days(PROFILE_SIGNER_RENEW_DAYS + 1);
        let same = ca.profile_signer_at("signing", not_due).expect("signer");
        assert_eq!(old.chain_pem, same.chain_pem);
        let due = old.not_after - Duration::days(PROFILE_SIGNER_RENEW_DAYS - 1);
        let new = ca.profile_signer_at("signing", due).expect("replacement");
        assert_ne!(old.chain_pem, new.chain_pem);
        assert_ne!(old.key_der, new.key_der);
        let restarted =
            DeviceCa::load_or_create(&dir.path().join("ca"), "Testkommun").expect("reload");
        let kept = restarted.profile_signer("signing").expect("signer");
        assert_eq!(kept.chain_pem, new.chain_pem);
        assert_eq!(kept.key_der, new.key_der);
    }

    #[test]
    fn a_kept_profile_signer_whose_key_is_not_its_own_is_replaced() {
        let (dir, ca) = ca();
        let old = ca.profile_signer("signing").expect("signer");
        let stranger = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        std::fs::write(
            dir.path().join("ca").join(PROFILE_SIGNER_KEY),
            stranger.serialize_pem(),
        )
        .expect("overwrite key");
        let restarted =
            DeviceCa::load_or_create(&dir.path().join("ca"), "Testkommun").expect("reload");
        let new = restarted.profile_signer("signing").expect("signer");
        assert_ne!(old.chain_pem, new.chain_pem);
        assert_ne!(new.key_der, stranger.serialize_der());
        let again = DeviceCa::load_or_create(&dir.path().join("ca"), "Testkommun")
            .expect("reload")
            .profile_signer("signing")
            .expect("signer");
        assert_eq!(again.chain_pem, new.chain_pem);
    }

    #[test]
    fn the_ca_is_made_once_with_private_keys_for_the_owner_only() {
        let (dir, first) = ca();
        let again = DeviceCa::load_or_create(&dir.path().join("ca"), "Testkommun").expect("reload");
        assert_eq!(first.root_fingerprint(), again.root_fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in ["root.key", "issuing.key"] {
                let mode = std::fs::metadata(dir.path().join("ca").join(key))
                    .expect("meta")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
            }
        }
    }

    #[test]
    fn a_half_made_ca_is_refused_rather_than_replaced() {
        let (dir, _) = ca();
        std::fs::remove_file(dir.path().join("ca/issuing.key")).expect("remove");
        assert!(DeviceCa::load_or_create(&dir.path().join("ca"), "Testkommun").is_err());
    }

    #[test]
    fn a_csr_asking_to_be_a_ca_gets_a_one_year_client_leaf() {
        let (_dir, ca) = ca();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut wants = CertificateParams::new(vec!["evil.example".into()]).expect("params");
        wants.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        wants.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let csr = check_csr(wants.serialize_request(&key).expect("csr").der()).expect("checked");
        let now = OffsetDateTime::now_utc();
        let issued = ca
            .issue_device_certificate(&csr, "device:7", now)
            .expect("issued");
        let (_, cert) = X509Certificate::from_der(&issued.der).expect("parse");
        assert!(!cert.is_ca());
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert!(
            (365 * 86400..=366 * 86400).contains(&lifetime),
            "{lifetime}"
        );
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("present")
            .value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(
            cert.subject_alternative_name().expect("san").is_none(),
            "no names from the CSR"
        );
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .and_then(|c| c.as_str().ok()),
            Some("device:7")
        );
        assert_eq!(issued.fingerprint, crate::fingerprint(&issued.der));
    }

    #[test]
    fn the_revocation_list_names_the_revoked_serials() {
        let (_dir, ca) = ca();
        let now = OffsetDateTime::now_utc();
        let der = ca
            .revocation_list(&[("0a0b0c".into(), now)], 3, now)
            .expect("crl");
        let (_, crl) = CertificateRevocationList::from_der(&der).expect("parse");
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial_as_string())
            .collect();
        assert_eq!(serials, vec!["0a:0b:0c"]);
    }
}
