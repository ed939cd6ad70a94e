//! CMS (RFC 5652) messages as SCEP and Apple's MDM protocol use them: signed data checked
//! against the certificate it carries, and enveloped data opened with an RSA key.
//!
//! RustCrypto's `cms` crate builds signed and enveloped data (we use its builders for signing)
//! but neither verifies a signature nor opens an envelope, and no maintained crate does; so the
//! checking and opening is written here, on `cms`'s types, with `rsa`, `cbc`, `aes` and `des`
//! doing the cryptography. Sealing is here too: the builder makes only AES envelopes, and old
//! SCEP clients, which the tests play, send 3DES and single DES.

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::ContentInfo;
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo,
    RecipientInfos,
};
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Decode, Encode, Tag, Tagged};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

pub const DES_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.7");
pub const DES_EDE3_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.3.7");
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmsError {
    #[error("the message is not CMS {expected}: {reason}")]
    Malformed {
        expected: &'static str,
        reason: String,
    },
    #[error("the signature does not verify: {0}")]
    BadSignature(String),
    #[error("{0} is not supported")]
    Unsupported(String),
    #[error("the envelope is not addressed to this server's certificate")]
    NotForUs,
    #[error("the envelope cannot be opened: {0}")]
    Undecryptable(String),
}

fn malformed(expected: &'static str) -> impl Fn(der::Error) -> CmsError {
    move |e| CmsError::Malformed {
        expected,
        reason: e.to_string(),
    }
}

/// The signed data inside a `ContentInfo`.
pub fn read_signed(der: &[u8]) -> Result<SignedData, CmsError> {
    let info = ContentInfo::from_der(der).map_err(malformed("signed data"))?;
    if info.content_type != const_oid::db::rfc5911::ID_SIGNED_DATA {
        return Err(CmsError::Malformed {
            expected: "signed data",
            reason: format!("content type {}", info.content_type),
        });
    }
    info.content
        .decode_as::<SignedData>()
        .map_err(malformed("signed data"))
}

/// The enveloped data inside a `ContentInfo`.
pub fn read_enveloped(der: &[u8]) -> Result<EnvelopedData, CmsError> {
    let info = ContentInfo::from_der(der).map_err(malformed("enveloped data"))?;
    if info.content_type != const_oid::db::rfc5911::ID_ENVELOPED_DATA {
        return Err(CmsError::Malformed {
            expected: "enveloped data",
            reason: format!("content type {}", info.content_type),
        });
    }
    info.content
        .decode_as::<EnvelopedData>()
        .or_else(|e| {
            folded_encrypted_content(info.content.value())
                .ok_or(e)
                .and_then(|der| EnvelopedData::from_der(&der))
        })
        .map_err(malformed("enveloped data"))
}

/// Go's PKCS #7 package (which Debian's `scepclient` and other SCEP clients use) sends the
/// encrypted content BER-style, as a constructed `[0]` holding OCTET STRING pieces; DER, and
/// RustCrypto's `cms`, want it primitive. This folds the pieces into one primitive `[0]` and
/// re-encodes the enveloped data (`enveloped`, without its outer header), or answers `None`
/// when the content is not of that shape. No crate converts BER to DER in general; this is the
/// one place real clients need it.
fn folded_encrypted_content(enveloped: &[u8]) -> Option<Vec<u8>> {
    use der::{Reader, SliceReader, TagNumber};
    let read_all = |bytes: &[u8]| -> Option<Vec<Any>> {
        let mut reader = SliceReader::new(bytes).ok()?;
        let mut items = Vec::new();
        while !reader.is_finished() {
            items.push(reader.decode::<Any>().ok()?);
        }
        Some(items)
    };
    let mut fields = read_all(enveloped)?;
    let content_info = fields.last_mut()?;
    let mut parts = read_all(content_info.value())?;
    let encrypted = parts.get_mut(2)?;
    let constructed = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N0,
    };
    if encrypted.tag() != constructed {
        return None;
    }
    let mut joined = Vec::new();
    for piece in read_all(encrypted.value())? {
        if piece.tag() != Tag::OctetString {
            return None;
        }
        joined.extend_from_slice(piece.value());
    }
    let primitive = Tag::ContextSpecific {
        constructed: false,
        number: TagNumber::N0,
    };
    *encrypted = Any::new(primitive, joined).ok()?;
    let sequence = |items: &[Any]| -> Option<Vec<u8>> {
        let mut body = Vec::new();
        for item in items {
            item.encode_to_vec(&mut body).ok()?;
        }
        Any::new(Tag::Sequence, body).ok()?.to_der().ok()
    };
    *content_info = Any::from_der(&sequence(&parts)?).ok()?;
    sequence(&fields)
}

/// The encapsulated content's bytes, if the signed data carries its content.
pub fn content(signed: &SignedData) -> Option<&[u8]> {
    signed
        .encap_content_info
        .econtent
        .as_ref()
        .map(|any| any.value())
}

/// The certificates the signed data carries.
pub fn certificates(signed: &SignedData) -> Vec<&Certificate> {
    signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            cms::cert::CertificateChoices::Certificate(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn signer_matches(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => {
            id.issuer == cert.tbs_certificate.issuer
                && id.serial_number == cert.tbs_certificate.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => cert
            .tbs_certificate
            .get::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
            .ok()
            .flatten()
            .is_some_and(|(_, own)| own.0 == ski.0),
    }
}

fn digest(algorithm: &ObjectIdentifier, data: &[u8]) -> Result<Vec<u8>, CmsError> {
    use sha2::Digest;
    Ok(match *algorithm {
        SHA1 => sha1::Sha1::digest(data).to_vec(),
        const_oid::db::rfc5912::ID_SHA_256 => sha2::Sha256::digest(data).to_vec(),
        const_oid::db::rfc5912::ID_SHA_512 => sha2::Sha512::digest(data).to_vec(),
        other => return Err(CmsError::Unsupported(format!("digest algorithm {other}"))),
    })
}

fn rsa_public_key(cert: &Certificate) -> Result<RsaPublicKey, CmsError> {
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(malformed("certificate"))?;
    RsaPublicKey::from_public_key_der(&spki)
        .map_err(|_| CmsError::Unsupported("a signer key that is not RSA".into()))
}

fn attribute(info: &SignerInfo, oid: ObjectIdentifier) -> Option<&Any> {
    info.signed_attrs
        .as_ref()?
        .iter()
        .find(|a| a.oid == oid)?
        .values
        .iter()
        .next()
}

/// A signed attribute's value as text (SCEP's PrintableString attributes).
pub fn text_attribute(info: &SignerInfo, oid: ObjectIdentifier) -> Option<String> {
    let value = attribute(info, oid)?;
    std::str::from_utf8(value.value()).ok().map(str::to_string)
}

/// A signed attribute's value as bytes (SCEP's nonces).
pub fn octets_attribute(info: &SignerInfo, oid: ObjectIdentifier) -> Option<Vec<u8>> {
    let value = attribute(info, oid)?;
    (value.tag() == Tag::OctetString).then(|| value.value().to_vec())
}

/// Checks the first signer's signature over `content` (the encapsulated content, or the body a
/// detached signature was made over) and returns that signer's certificate, taken from the
/// message itself. RSA with PKCS #1 v1.5 and SHA-1, SHA-256 or SHA-512, with or without signed
/// attributes: what iPhones and SCEP clients send. Whether the certificate is one to trust is
/// the caller's question.
pub fn verify_signer<'a>(
    signed: &'a SignedData,
    content: &[u8],
) -> Result<(&'a SignerInfo, &'a Certificate), CmsError> {
    let info = signed
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or_else(|| CmsError::BadSignature("the message has no signer".into()))?;
    let cert = certificates(signed)
        .into_iter()
        .find(|c| signer_matches(&info.sid, c))
        .ok_or_else(|| {
            CmsError::BadSignature("the signer's certificate is not in the message".into())
        })?;
    let algorithm = info.signature_algorithm.oid;
    if ![
        const_oid::db::rfc5912::RSA_ENCRYPTION,
        SHA1_WITH_RSA,
        const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
        const_oid::db::rfc5912::SHA_512_WITH_RSA_ENCRYPTION,
    ]
    .contains(&algorithm)
    {
        return Err(CmsError::Unsupported(format!(
            "signature algorithm {algorithm}"
        )));
    }
    let content_digest = digest(&info.digest_alg.oid, content)?;
    let signed_bytes = match &info.signed_attrs {
        Some(attrs) => {
            let stated = attribute(info, const_oid::db::rfc5911::ID_MESSAGE_DIGEST)
                .ok_or_else(|| CmsError::BadSignature("no message-digest attribute".into()))?;
            if stated.value() != content_digest.as_slice() {
                return Err(CmsError::BadSignature(
                    "the content does not match its message digest".into(),
                ));
            }
            // The signature covers the attributes' DER encoding as a SET OF.
            attrs.to_der().map_err(malformed("signed attributes"))?
        }
        None => content.to_vec(),
    };
    // ring checks the signature (several times faster than the `rsa` crate, and this runs on
    // every check-in an iPhone signs); the key is the certificate's PKCS #1 public key.
    use ring::signature;
    let scheme: &dyn signature::VerificationAlgorithm = match info.digest_alg.oid {
        SHA1 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        const_oid::db::rfc5912::ID_SHA_256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        const_oid::db::rfc5912::ID_SHA_512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        other => return Err(CmsError::Unsupported(format!("digest algorithm {other}"))),
    };
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != const_oid::db::rfc5912::RSA_ENCRYPTION {
        return Err(CmsError::Unsupported("a signer key that is not RSA".into()));
    }
    signature::UnparsedPublicKey::new(scheme, spki.subject_public_key.raw_bytes())
        .verify(&signed_bytes, info.signature.as_bytes())
        .map_err(|_| CmsError::BadSignature("the signature is not the signer's".into()))?;
    Ok((info, cert))
}

/// A certificate's DER bytes.
pub fn certificate_der(cert: &Certificate) -> Result<Vec<u8>, CmsError> {
    cert.to_der().map_err(malformed("certificate"))
}

/// The issuer and serial number that name `cert` in a message.
pub fn issuer_and_serial(cert: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    }
}

/// The content encryption an envelope uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    Aes128Cbc,
    Aes256Cbc,
    TripleDesCbc,
    DesCbc,
}

impl Cipher {
    fn oid(self) -> ObjectIdentifier {
        match self {
            Cipher::Aes128Cbc => const_oid::db::rfc5911::ID_AES_128_CBC,
            Cipher::Aes256Cbc => const_oid::db::rfc5911::ID_AES_256_CBC,
            Cipher::TripleDesCbc => DES_EDE3_CBC,
            Cipher::DesCbc => DES_CBC,
        }
    }

    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            Cipher::Aes128Cbc,
            Cipher::Aes256Cbc,
            Cipher::TripleDesCbc,
            Cipher::DesCbc,
        ]
        .into_iter()
        .find(|c| c.oid() == oid)
    }

    /// Key and IV lengths.
    fn sizes(self) -> (usize, usize) {
        match self {
            Cipher::Aes128Cbc => (16, 16),
            Cipher::Aes256Cbc => (32, 16),
            Cipher::TripleDesCbc => (24, 8),
            Cipher::DesCbc => (8, 8),
        }
    }

    fn run(self, encrypt: bool, key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        macro_rules! with {
            ($cipher:ty) => {
                if encrypt {
                    Some(
                        cbc::Encryptor::<$cipher>::new_from_slices(key, iv)
                            .ok()?
                            .encrypt_padded_vec_mut::<Pkcs7>(data),
                    )
                } else {
                    cbc::Decryptor::<$cipher>::new_from_slices(key, iv)
                        .ok()?
                        .decrypt_padded_vec_mut::<Pkcs7>(data)
                        .ok()
                }
            };
        }
        match self {
            Cipher::Aes128Cbc => with!(aes::Aes128),
            Cipher::Aes256Cbc => with!(aes::Aes256),
            Cipher::TripleDesCbc => with!(des::TdesEde3),
            Cipher::DesCbc => with!(des::Des),
        }
    }
}

/// Opens an envelope addressed (key transport, RSA) to `recipient` with its key; returns the
/// content and the cipher it was sealed with.
pub fn open(
    enveloped: &EnvelopedData,
    recipient: &Certificate,
    key: &RsaPrivateKey,
) -> Result<(Vec<u8>, Cipher), CmsError> {
    let ours = issuer_and_serial(recipient);
    let ktri = enveloped
        .recip_infos
        .0
        .iter()
        .find_map(|r| match r {
            RecipientInfo::Ktri(k) => match &k.rid {
                RecipientIdentifier::IssuerAndSerialNumber(id) if *id == ours => Some(k),
                _ => None,
            },
            _ => None,
        })
        .ok_or(CmsError::NotForUs)?;
    if ktri.key_enc_alg.oid != const_oid::db::rfc5912::RSA_ENCRYPTION {
        return Err(CmsError::Unsupported(format!(
            "key transport {}",
            ktri.key_enc_alg.oid
        )));
    }
    let algorithm = &enveloped.encrypted_content.content_enc_alg;
    let cipher = Cipher::from_oid(algorithm.oid)
        .ok_or_else(|| CmsError::Unsupported(format!("content encryption {}", algorithm.oid)))?;
    let iv = algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<OctetString>().ok())
        .ok_or_else(|| CmsError::Undecryptable("no initialisation vector".into()))?;
    let sealed = enveloped
        .encrypted_content
        .encrypted_content
        .as_ref()
        .ok_or_else(|| CmsError::Undecryptable("no encrypted content".into()))?;
    let content_key = key
        .decrypt(Pkcs1v15Encrypt, ktri.enc_key.as_bytes())
        .map_err(|_| CmsError::Undecryptable("the content key does not decrypt".into()))?;
    let (key_len, iv_len) = cipher.sizes();
    if content_key.len() != key_len || iv.as_bytes().len() != iv_len {
        return Err(CmsError::Undecryptable(
            "the content key or IV has the wrong length".into(),
        ));
    }
    let content = cipher
        .run(false, &content_key, iv.as_bytes(), sealed.as_bytes())
        .ok_or_else(|| CmsError::Undecryptable("the content does not decrypt".into()))?;
    Ok((content, cipher))
}

/// Seals `content` for `recipient` (RSA key transport, PKCS #1 v1.5) with `cipher`, as a DER
/// `ContentInfo`.
pub fn seal(content: &[u8], recipient: &Certificate, cipher: Cipher) -> Result<Vec<u8>, CmsError> {
    use rand::RngCore;
    let (key_len, iv_len) = cipher.sizes();
    let mut content_key = vec![0u8; key_len];
    let mut iv = vec![0u8; iv_len];
    rand::thread_rng().fill_bytes(&mut content_key);
    rand::thread_rng().fill_bytes(&mut iv);
    let sealed = cipher
        .run(true, &content_key, &iv, content)
        .ok_or_else(|| CmsError::Undecryptable("the content key does not fit".into()))?;
    let public = rsa_public_key(recipient)?;
    let encrypted_key = public
        .encrypt(&mut rand::thread_rng(), Pkcs1v15Encrypt, &content_key)
        .map_err(|e| CmsError::Undecryptable(e.to_string()))?;
    let der_err = malformed("enveloped data");
    let ktri = RecipientInfo::Ktri(KeyTransRecipientInfo {
        version: cms::content_info::CmsVersion::V0,
        rid: RecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(recipient)),
        key_enc_alg: AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        },
        enc_key: OctetString::new(encrypted_key).map_err(&der_err)?,
    });
    let mut recipients = SetOfVec::new();
    recipients.insert(ktri).map_err(&der_err)?;
    let enveloped = EnvelopedData {
        version: cms::content_info::CmsVersion::V0,
        originator_info: None,
        recip_infos: RecipientInfos(recipients),
        encrypted_content: EncryptedContentInfo {
            content_type: const_oid::db::rfc5911::ID_DATA,
            content_enc_alg: AlgorithmIdentifierOwned {
                oid: cipher.oid(),
                parameters: Some(
                    Any::encode_from(&OctetString::new(iv).map_err(&der_err)?).map_err(&der_err)?,
                ),
            },
            encrypted_content: Some(OctetString::new(sealed).map_err(&der_err)?),
        },
        unprotected_attrs: None,
    };
    ContentInfo {
        content_type: const_oid::db::rfc5911::ID_ENVELOPED_DATA,
        content: Any::encode_from(&enveloped).map_err(&der_err)?,
    }
    .to_der()
    .map_err(der_err)
}

/// Signs with an RSA key (PKCS #1 v1.5, SHA-256), the signer named by issuer and serial and its
/// certificate and `extra` certificates carried. `content` is carried inside (`Some`), or the
/// signature is detached over `detached` (the `Mdm-Signature` form). `attributes` are signed
/// along with content type and message digest.
pub fn sign(
    content: Content<'_>,
    signer: (&Certificate, &RsaPrivateKey),
    extra: &[Certificate],
    attributes: Vec<x509_cert::attr::Attribute>,
) -> Result<Vec<u8>, CmsError> {
    use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
    use cms::cert::CertificateChoices;
    use cms::signed_data::EncapsulatedContentInfo;
    use sha2::Digest;
    let build = |e: cms::builder::Error| CmsError::Malformed {
        expected: "signed data",
        reason: e.to_string(),
    };
    let der_err = malformed("signed data");
    let (econtent, detached_digest) = match content {
        Content::Inside(bytes) => (
            Some(Any::new(Tag::OctetString, bytes).map_err(&der_err)?),
            None,
        ),
        Content::Detached(bytes) => (None, Some(sha2::Sha256::digest(bytes).to_vec())),
    };
    let encapsulated = EncapsulatedContentInfo {
        econtent_type: const_oid::db::rfc5911::ID_DATA,
        econtent,
    };
    let sha256 = AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::ID_SHA_256,
        parameters: None,
    };
    let key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(signer.1.clone());
    let sid = SignerIdentifier::IssuerAndSerialNumber(issuer_and_serial(signer.0));
    let mut info = SignerInfoBuilder::new(
        &key,
        sid,
        sha256.clone(),
        &encapsulated,
        detached_digest.as_deref(),
    )
    .map_err(build)?;
    for attribute in attributes {
        info.add_signed_attribute(attribute).map_err(build)?;
    }
    let mut builder = SignedDataBuilder::new(&encapsulated);
    builder.add_digest_algorithm(sha256).map_err(build)?;
    for cert in std::iter::once(signer.0).chain(extra) {
        builder
            .add_certificate(CertificateChoices::Certificate(cert.clone()))
            .map_err(build)?;
    }
    builder
        .add_signer_info::<_, rsa::pkcs1v15::Signature>(info)
        .map_err(build)?;
    builder.build().map_err(build)?.to_der().map_err(der_err)
}

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    Inside(&'a [u8]),
    Detached(&'a [u8]),
}

/// A certificates-only signed data (no signer): how SCEP hands over certificates.
pub fn certificates_only(certs: &[Certificate]) -> Result<Vec<u8>, CmsError> {
    use cms::builder::SignedDataBuilder;
    use cms::cert::CertificateChoices;
    use cms::signed_data::EncapsulatedContentInfo;
    let build = |e: cms::builder::Error| CmsError::Malformed {
        expected: "signed data",
        reason: e.to_string(),
    };
    let encapsulated = EncapsulatedContentInfo {
        econtent_type: const_oid::db::rfc5911::ID_DATA,
        econtent: None,
    };
    let mut builder = SignedDataBuilder::new(&encapsulated);
    for cert in certs {
        builder
            .add_certificate(CertificateChoices::Certificate(cert.clone()))
            .map_err(build)?;
    }
    builder
        .build()
        .map_err(build)?
        .to_der()
        .map_err(malformed("signed data"))
}

/// A signed attribute with one value.
pub fn attribute_of(
    oid: ObjectIdentifier,
    tag: Tag,
    value: &[u8],
) -> Result<x509_cert::attr::Attribute, CmsError> {
    let der_err = malformed("attribute");
    let mut values = SetOfVec::new();
    values
        .insert(Any::new(tag, value).map_err(&der_err)?)
        .map_err(&der_err)?;
    Ok(x509_cert::attr::Attribute { oid, values })
}
