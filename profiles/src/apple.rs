//! Apple configuration profiles (`.mobileconfig`): the passcode and restrictions payloads of a
//! policy as a property list, with only the keys, types and ranges Apple's schemas allow.
//!
//! Apps and their managed settings reach iPhones through MDM commands (`InstallApplication`
//! with a `Configuration` dictionary), not through a profile payload.

use plist::{Dictionary, Value};
use sha2::{Digest, Sha256};

use crate::policy::EffectivePolicy;

/// What names the profile on the phone.
#[derive(Debug, Clone, Copy)]
pub struct ProfileIdentity<'a> {
    /// Reverse-DNS identifier, stable across versions so a new one replaces the old
    /// (`se.kommun.mdm.standard`).
    pub identifier: &'a str,
    pub organisation: &'a str,
    pub display_name: &'a str,
}

/// A UUID (in Apple's upper-case form) that follows from `seed`, so the same content always
/// gets the same UUID and changed content a new one.
fn uuid_from(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let h = hex::encode_upper(&d[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn payload(kind: &str, identifier: String, name: &str, mut keys: Dictionary) -> Dictionary {
    let seed = format!("{identifier}:{}", content_seed(&keys));
    keys.insert("PayloadType".into(), Value::from(kind));
    keys.insert("PayloadIdentifier".into(), Value::from(identifier));
    keys.insert("PayloadUUID".into(), Value::from(uuid_from(&seed)));
    keys.insert("PayloadVersion".into(), Value::from(1u64));
    keys.insert("PayloadDisplayName".into(), Value::from(name));
    keys
}

fn content_seed(keys: &Dictionary) -> String {
    let mut bytes = Vec::new();
    // Writing a dictionary to memory cannot fail.
    let _ = plist::to_writer_xml(&mut bytes, &Value::Dictionary(keys.clone()));
    hex::encode(Sha256::digest(&bytes))
}

/// The configuration profile of `policy`.
pub fn configuration_profile(policy: &EffectivePolicy, id: ProfileIdentity<'_>) -> Dictionary {
    let mut passcode = Dictionary::new();
    passcode.insert("forcePIN".into(), Value::from(true));
    // Repeated or sequential digits (1111, 1234) are refused.
    passcode.insert("allowSimple".into(), Value::from(false));
    passcode.insert(
        "requireAlphanumeric".into(),
        Value::from(!policy.pin_numeric_allowed.value),
    );
    passcode.insert(
        "minLength".into(),
        Value::from(u64::from(policy.pin_min_length.value)),
    );
    passcode.insert(
        "maxFailedAttempts".into(),
        Value::from(u64::from(policy.pin_max_failed_attempts.value)),
    );
    passcode.insert(
        "maxInactivity".into(),
        Value::from(u64::from(policy.auto_lock_minutes.value)),
    );
    let mut restrictions = Dictionary::new();
    restrictions.insert("allowCamera".into(), Value::from(policy.allow_camera.value));
    restrictions.insert(
        "allowScreenShot".into(),
        Value::from(policy.allow_screenshots.value),
    );
    restrictions.insert(
        "allowCloudBackup".into(),
        Value::from(policy.allow_cloud_backup.value),
    );
    let content = vec![
        Value::Dictionary(payload(
            "com.apple.mobiledevice.passwordpolicy",
            format!("{}.passcode", id.identifier),
            "Lösenkod",
            passcode,
        )),
        Value::Dictionary(payload(
            "com.apple.applicationaccess",
            format!("{}.restrictions", id.identifier),
            "Begränsningar",
            restrictions,
        )),
    ];
    let mut top = Dictionary::new();
    top.insert("PayloadContent".into(), Value::Array(content));
    top.insert(
        "PayloadDescription".into(),
        Value::from(
            "Kommunens standardinställningar för tjänstetelefoner: lösenkod och begränsningar.",
        ),
    );
    top.insert("PayloadOrganization".into(), Value::from(id.organisation));
    top.insert("PayloadRemovalDisallowed".into(), Value::from(true));
    payload(
        "Configuration",
        id.identifier.to_string(),
        id.display_name,
        top,
    )
}

/// The identifier of the standard profile every managed iPhone carries: a new version
/// replaces the old one, and `ProfileList` finds it by this.
pub const STANDARD_PROFILE: &str = "se.kommun.mdm.standard";

/// The standard profile of `policy` for the operator `organisation`: what the API serves and
/// what `InstallProfile` sends. Its `PayloadUUID` changes with its content.
pub fn standard_profile(policy: &EffectivePolicy, organisation: &str) -> Dictionary {
    configuration_profile(
        policy,
        ProfileIdentity {
            identifier: STANDARD_PROFILE,
            organisation,
            display_name: "Tjänstetelefon",
        },
    )
}

/// A profile's `PayloadUUID`.
pub fn profile_uuid(profile: &Dictionary) -> &str {
    profile
        .get("PayloadUUID")
        .and_then(Value::as_string)
        .unwrap_or_default()
}

/// What an iPhone's enrollment profile carries: the root it must trust, where and how it gets
/// its identity by SCEP, and where its MDM check-ins go.
#[derive(Debug, Clone, Copy)]
pub struct Enrollment<'a> {
    pub id: ProfileIdentity<'a>,
    /// The device CA's root, DER: the phone trusts the device listener through it.
    pub root_der: &'a [u8],
    pub scep_url: &'a str,
    /// The single-use challenge SCEP checks: the enrollment token's secret.
    pub challenge: &'a str,
    /// The common name the phone puts in its request (the server decides the certificate's).
    pub subject: &'a str,
    pub server_url: &'a str,
    pub checkin_url: &'a str,
    /// The operator's push topic, from its MDM push certificate.
    pub topic: &'a str,
}

/// Every right the MDM payload can grant (Apple's `AccessRights` bits 1 to 4096).
const ALL_ACCESS_RIGHTS: u64 = 8191;
/// 1 (signing) + 4 (encryption): the SCEP key both signs MDM messages and decrypts.
const SCEP_KEY_USAGE: u64 = 5;
/// iPhones make 1024-bit keys unless told otherwise; the server refuses less than 2048.
const SCEP_KEY_BITS: u64 = 2048;

/// The enrollment profile an iPhone installs to be managed: the root certificate, the SCEP
/// payload and the MDM payload that names the SCEP identity.
pub fn enrollment_profile(e: Enrollment<'_>) -> Dictionary {
    let mut root = Dictionary::new();
    root.insert("PayloadContent".into(), Value::Data(e.root_der.to_vec()));
    root.insert("PayloadCertificateFileName".into(), Value::from("root.cer"));
    let root = payload(
        "com.apple.security.root",
        format!("{}.root", e.id.identifier),
        "Kommunens rotcertifikat",
        root,
    );
    let pair = |oid: &str, value: &str| {
        Value::Array(vec![Value::Array(vec![
            Value::from(oid),
            Value::from(value),
        ])])
    };
    let mut scep_content = Dictionary::new();
    scep_content.insert("URL".into(), Value::from(e.scep_url));
    scep_content.insert("Name".into(), Value::from(e.id.organisation));
    scep_content.insert(
        "Subject".into(),
        Value::Array(vec![pair("O", e.id.organisation), pair("CN", e.subject)]),
    );
    scep_content.insert("Challenge".into(), Value::from(e.challenge));
    scep_content.insert("Keysize".into(), Value::from(SCEP_KEY_BITS));
    scep_content.insert("Key Type".into(), Value::from("RSA"));
    scep_content.insert("Key Usage".into(), Value::from(SCEP_KEY_USAGE));
    scep_content.insert("Retries".into(), Value::from(3u64));
    scep_content.insert("RetryDelay".into(), Value::from(10u64));
    let mut scep = Dictionary::new();
    scep.insert("PayloadContent".into(), Value::Dictionary(scep_content));
    let scep = payload(
        "com.apple.security.scep",
        format!("{}.scep", e.id.identifier),
        "Enhetsidentitet",
        scep,
    );
    let mut mdm = Dictionary::new();
    mdm.insert(
        "IdentityCertificateUUID".into(),
        scep["PayloadUUID"].clone(),
    );
    mdm.insert("Topic".into(), Value::from(e.topic));
    mdm.insert("ServerURL".into(), Value::from(e.server_url));
    mdm.insert("CheckInURL".into(), Value::from(e.checkin_url));
    mdm.insert("SignMessage".into(), Value::from(true));
    mdm.insert("AccessRights".into(), Value::from(ALL_ACCESS_RIGHTS));
    mdm.insert("CheckOutWhenRemoved".into(), Value::from(true));
    let mdm = payload(
        "com.apple.mdm",
        format!("{}.mdm", e.id.identifier),
        "Mobilenhetshantering",
        mdm,
    );
    let mut top = Dictionary::new();
    top.insert(
        "PayloadContent".into(),
        Value::Array(vec![
            Value::Dictionary(root),
            Value::Dictionary(scep),
            Value::Dictionary(mdm),
        ]),
    );
    top.insert(
        "PayloadDescription".into(),
        Value::from("Registrerar telefonen i kommunens enhetshantering."),
    );
    top.insert("PayloadOrganization".into(), Value::from(e.id.organisation));
    payload(
        "Configuration",
        e.id.identifier.to_string(),
        e.id.display_name,
        top,
    )
}

/// The profile as XML property-list bytes, as a `.mobileconfig` file holds it before signing.
pub fn to_xml(profile: &Dictionary) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = plist::to_writer_xml(&mut bytes, &Value::Dictionary(profile.clone()));
    bytes
}

/// Why a profile could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("signing the profile: {0}")]
pub struct SignError(String);

fn sign_error(e: impl std::fmt::Display) -> SignError {
    SignError(e.to_string())
}

/// The profile signed as CMS SignedData (DER), the form iPhones install and
/// `openssl cms -verify` checks: the profile inside, one ECDSA P-256 SHA-256 signature, and the
/// signing certificate followed by the rest of `chain_pem` so a phone can build the path to the
/// root it trusts.
pub fn sign(xml: &[u8], chain_pem: &str, key_pkcs8_der: &[u8]) -> Result<Vec<u8>, SignError> {
    use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
    use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
    use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
    use der::asn1::OctetStringRef;
    use der::{Any, Encode, Tag};
    use p256::pkcs8::DecodePrivateKey;
    use x509_cert::spki::AlgorithmIdentifierOwned;

    let chain = x509_cert::Certificate::load_pem_chain(chain_pem.as_bytes()).map_err(sign_error)?;
    let signer_cert = chain
        .first()
        .ok_or_else(|| SignError("no signing certificate".into()))?;
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(key_pkcs8_der).map_err(sign_error)?;
    let content = EncapsulatedContentInfo {
        econtent_type: const_oid::db::rfc5911::ID_DATA,
        econtent: Some(
            Any::new(
                Tag::OctetString,
                OctetStringRef::new(xml).map_err(sign_error)?.as_bytes(),
            )
            .map_err(sign_error)?,
        ),
    };
    let sha256 = AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::ID_SHA_256,
        parameters: None,
    };
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: signer_cert.tbs_certificate.issuer.clone(),
        serial_number: signer_cert.tbs_certificate.serial_number.clone(),
    });
    let signer =
        SignerInfoBuilder::new(&key, sid, sha256.clone(), &content, None).map_err(sign_error)?;
    let mut builder = SignedDataBuilder::new(&content);
    builder.add_digest_algorithm(sha256).map_err(sign_error)?;
    for cert in &chain {
        builder
            .add_certificate(CertificateChoices::Certificate(cert.clone()))
            .map_err(sign_error)?;
    }
    builder
        .add_signer_info::<p256::ecdsa::SigningKey, p256::ecdsa::DerSignature>(signer)
        .map_err(sign_error)?;
    builder
        .build()
        .map_err(sign_error)?
        .to_der()
        .map_err(sign_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{effective, PolicyLayer, Source};

    const ID: ProfileIdentity<'static> = ProfileIdentity {
        identifier: "se.kommun.mdm.standard",
        organisation: "Kommunens IT",
        display_name: "Standardtelefon",
    };

    #[test]
    fn the_profile_carries_the_pin_rules_and_parses_back() {
        let layer: PolicyLayer = serde_json::from_value(serde_json::json!({
            "pin_min_length": 6, "pin_max_failed_attempts": 8, "auto_lock_minutes": 2, "allow_camera": false
        }))
        .expect("layer");
        let p = effective(&[(Source::Operator, &layer)]);
        let xml = to_xml(&configuration_profile(&p, ID));
        let back: Dictionary = plist::from_bytes(&xml).expect("a property list");
        assert_eq!(back["PayloadType"].as_string(), Some("Configuration"));
        let content = back["PayloadContent"].as_array().expect("content");
        let passcode = content[0].as_dictionary().expect("payload");
        assert_eq!(passcode["minLength"].as_unsigned_integer(), Some(6));
        assert_eq!(passcode["maxFailedAttempts"].as_unsigned_integer(), Some(8));
        assert_eq!(passcode["maxInactivity"].as_unsigned_integer(), Some(2));
        assert_eq!(passcode["requireAlphanumeric"].as_boolean(), Some(false));
        let restrictions = content[1].as_dictionary().expect("payload");
        assert_eq!(restrictions["allowCamera"].as_boolean(), Some(false));
    }

    #[test]
    fn uuids_follow_the_content() {
        let p = effective(&[]);
        let a = configuration_profile(&p, ID);
        let same = configuration_profile(&p, ID);
        assert_eq!(a["PayloadUUID"], same["PayloadUUID"]);
        let layer: PolicyLayer =
            serde_json::from_value(serde_json::json!({ "pin_min_length": 8 })).expect("layer");
        let b = configuration_profile(&effective(&[(Source::Operator, &layer)]), ID);
        assert_ne!(a["PayloadUUID"], b["PayloadUUID"]);
        let uuid = a["PayloadUUID"].as_string().expect("uuid");
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.matches('-').count(), 4);
    }
}
