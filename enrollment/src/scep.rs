//! SCEP (RFC 8894): how an iPhone, or any SCEP client, gets its device certificate.
//!
//! The server's side reads a `PKIOperation` message (signed data around an envelope around the
//! CSR), and answers a `CertRep`: SUCCESS with the issued certificate sealed for the requester,
//! or FAILURE with a `failInfo`. The client's side (building a `PKCSReq`, reading a `CertRep`)
//! is here too, for the simulated iPhone and the tests.
//!
//! No maintained crate speaks SCEP, so this layer is written here on the CMS parts in
//! [`crate::envelope`].

use const_oid::ObjectIdentifier;
use der::{Decode, Encode, Tag};
use rsa::RsaPrivateKey;
use x509_cert::Certificate;

pub use crate::envelope::Cipher;
use crate::envelope::{self, attribute_of, CmsError, Content};

const MESSAGE_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.2");
const PKI_STATUS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.3");
const FAIL_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.4");
const SENDER_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.5");
const RECIPIENT_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.6");
const TRANSACTION_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.7");

/// The largest `PKIOperation` message accepted: a PKCSReq with an RSA-4096 key is under 5 KB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What the server can do, as `GetCACaps` lists it (one per line).
pub const CA_CAPS: &[&str] = &[
    "POSTPKIOperation",
    "SHA-256",
    "SHA-512",
    "AES",
    "DES3",
    "SCEPStandard",
    "Renewal",
];

/// The message types this server reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    CertRep,
    RenewalReq,
    PkcsReq,
    CertPoll,
    GetCert,
    GetCrl,
}

impl MessageType {
    fn code(self) -> &'static str {
        match self {
            MessageType::CertRep => "3",
            MessageType::RenewalReq => "17",
            MessageType::PkcsReq => "19",
            MessageType::CertPoll => "20",
            MessageType::GetCert => "21",
            MessageType::GetCrl => "22",
        }
    }

    fn parse(code: &str) -> Option<Self> {
        [
            MessageType::CertRep,
            MessageType::RenewalReq,
            MessageType::PkcsReq,
            MessageType::CertPoll,
            MessageType::GetCert,
            MessageType::GetCrl,
        ]
        .into_iter()
        .find(|t| t.code() == code.trim())
    }
}

/// Why a request failed, as a `CertRep` FAILURE says it (RFC 8894 §3.2.1.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailInfo {
    /// Unrecognised or unsupported algorithm.
    BadAlg,
    /// Integrity check (signature) failed.
    BadMessageCheck,
    /// Transaction not permitted or supported (a wrong challenge, a refused CSR).
    BadRequest,
    BadTime,
    BadCertId,
}

impl FailInfo {
    fn code(self) -> &'static str {
        match self {
            FailInfo::BadAlg => "0",
            FailInfo::BadMessageCheck => "1",
            FailInfo::BadRequest => "2",
            FailInfo::BadTime => "3",
            FailInfo::BadCertId => "4",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailInfo::BadAlg => "badAlg",
            FailInfo::BadMessageCheck => "badMessageCheck",
            FailInfo::BadRequest => "badRequest",
            FailInfo::BadTime => "badTime",
            FailInfo::BadCertId => "badCertId",
        }
    }
}

impl From<&CmsError> for FailInfo {
    fn from(e: &CmsError) -> Self {
        match e {
            CmsError::Unsupported(_) => FailInfo::BadAlg,
            _ => FailInfo::BadMessageCheck,
        }
    }
}

/// A message that cannot be answered with a `CertRep` at all (it is not SCEP, or lacks the
/// attributes a reply must echo): the HTTP layer answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScepError {
    #[error("the SCEP message is larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Cms(#[from] CmsError),
    #[error("the SCEP message lacks its {0} attribute")]
    MissingAttribute(&'static str),
}

/// The registration authority: the RSA certificate and key SCEP clients encrypt requests to
/// and replies are signed with.
#[derive(Clone)]
pub struct RegistrationAuthority {
    pub certificate: Certificate,
    pub key: RsaPrivateKey,
}

impl std::fmt::Debug for RegistrationAuthority {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationAuthority")
            .field(
                "subject",
                &self.certificate.tbs_certificate.subject.to_string(),
            )
            .finish_non_exhaustive()
    }
}

/// A `PKIOperation` message as read: who sent it and what a reply must echo. Its signature is
/// checked and its envelope opened by [`ScepRequest::open`].
#[derive(Debug, Clone)]
pub struct ScepRequest {
    pub message_type: Option<MessageType>,
    pub transaction_id: String,
    pub sender_nonce: Vec<u8>,
    signed: cms::signed_data::SignedData,
    /// The requester's certificate (self-signed for a first request): replies are sealed for
    /// it.
    signer: Option<Certificate>,
}

/// What an opened request carries.
#[derive(Debug, Clone)]
pub struct OpenedRequest {
    /// The PKCS #10 request, DER.
    pub csr_der: Vec<u8>,
    /// The requester's certificate, DER: for a first request a self-signed one with the CSR's
    /// key; for a renewal the certificate being renewed.
    pub signer_der: Vec<u8>,
    /// The requester's key, SubjectPublicKeyInfo DER.
    pub signer_spki_der: Vec<u8>,
    pub cipher: Cipher,
}

/// Reads a `PKIOperation` message far enough to answer it.
pub fn read_request(der: &[u8]) -> Result<ScepRequest, ScepError> {
    if der.len() > MAX_MESSAGE_BYTES {
        return Err(ScepError::TooLarge);
    }
    let signed = envelope::read_signed(der)?;
    let info =
        signed
            .signer_infos
            .0
            .iter()
            .next()
            .ok_or(ScepError::Cms(CmsError::BadSignature(
                "the message has no signer".into(),
            )))?;
    let transaction_id = envelope::text_attribute(info, TRANSACTION_ID)
        .ok_or(ScepError::MissingAttribute("transactionID"))?;
    let sender_nonce = envelope::octets_attribute(info, SENDER_NONCE)
        .ok_or(ScepError::MissingAttribute("senderNonce"))?;
    let message_type = envelope::text_attribute(info, MESSAGE_TYPE)
        .ok_or(ScepError::MissingAttribute("messageType"))?;
    let signer = envelope::certificates(&signed)
        .into_iter()
        .find(|c| match &info.sid {
            cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(id) => {
                *id == envelope::issuer_and_serial(c)
            }
            cms::signed_data::SignerIdentifier::SubjectKeyIdentifier(_) => false,
        })
        .cloned();
    Ok(ScepRequest {
        message_type: MessageType::parse(&message_type),
        transaction_id,
        sender_nonce,
        signed: signed.clone(),
        signer,
    })
}

impl ScepRequest {
    /// Checks the signature and opens the envelope with the RA's key; a refusal says its
    /// `failInfo` and why, for the audit trail.
    pub fn open(&self, ra: &RegistrationAuthority) -> Result<OpenedRequest, (FailInfo, CmsError)> {
        let failed = |e: CmsError| (FailInfo::from(&e), e);
        let inner = envelope::content(&self.signed).ok_or_else(|| {
            failed(CmsError::BadSignature(
                "the message carries no content".into(),
            ))
        })?;
        let (_, signer) = envelope::verify_signer(&self.signed, inner).map_err(failed)?;
        let enveloped = envelope::read_enveloped(inner).map_err(failed)?;
        let (csr_der, cipher) =
            envelope::open(&enveloped, &ra.certificate, &ra.key).map_err(failed)?;
        let der = |e: der::Error| {
            failed(CmsError::Malformed {
                expected: "certificate",
                reason: e.to_string(),
            })
        };
        Ok(OpenedRequest {
            csr_der,
            signer_der: signer.to_der().map_err(der)?,
            signer_spki_der: signer
                .tbs_certificate
                .subject_public_key_info
                .to_der()
                .map_err(der)?,
            cipher,
        })
    }

    fn reply_attributes(&self, status: &str) -> Result<Vec<x509_cert::attr::Attribute>, CmsError> {
        use rand::RngCore;
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        Ok(vec![
            attribute_of(
                MESSAGE_TYPE,
                Tag::PrintableString,
                MessageType::CertRep.code().as_bytes(),
            )?,
            attribute_of(PKI_STATUS, Tag::PrintableString, status.as_bytes())?,
            attribute_of(
                TRANSACTION_ID,
                Tag::PrintableString,
                self.transaction_id.as_bytes(),
            )?,
            attribute_of(RECIPIENT_NONCE, Tag::OctetString, &self.sender_nonce)?,
            attribute_of(SENDER_NONCE, Tag::OctetString, &nonce)?,
        ])
    }

    /// A `CertRep` SUCCESS: `issued` (DER) in a certificates-only message sealed for the
    /// requester with AES (whatever the request used), signed by the RA.
    pub fn success(&self, ra: &RegistrationAuthority, issued: &[u8]) -> Result<Vec<u8>, CmsError> {
        let requester = self.signer.as_ref().ok_or(CmsError::BadSignature(
            "the requester's certificate is not in the message".into(),
        ))?;
        let issued = Certificate::from_der(issued).map_err(|e| CmsError::Malformed {
            expected: "certificate",
            reason: e.to_string(),
        })?;
        let degenerate = envelope::certificates_only(&[issued])?;
        let sealed = envelope::seal(&degenerate, requester, Cipher::Aes256Cbc)?;
        envelope::sign(
            Content::Inside(&sealed),
            (&ra.certificate, &ra.key),
            &[],
            self.reply_attributes("0")?,
        )
    }

    /// A `CertRep` FAILURE with `why`, signed by the RA; its content is empty.
    pub fn failure(&self, ra: &RegistrationAuthority, why: FailInfo) -> Result<Vec<u8>, CmsError> {
        let mut attributes = self.reply_attributes("2")?;
        attributes.push(attribute_of(
            FAIL_INFO,
            Tag::PrintableString,
            why.code().as_bytes(),
        )?);
        envelope::sign(
            Content::Inside(&[]),
            (&ra.certificate, &ra.key),
            &[],
            attributes,
        )
    }
}

/// The answer to `GetCACert`: the RA certificate and the CA chain as a certificates-only
/// message (`application/x-x509-ca-ra-cert`).
pub fn ca_certificates(
    ra: &RegistrationAuthority,
    chain_der: &[Vec<u8>],
) -> Result<Vec<u8>, CmsError> {
    let mut certs = vec![ra.certificate.clone()];
    for der in chain_der {
        certs.push(Certificate::from_der(der).map_err(|e| CmsError::Malformed {
            expected: "certificate",
            reason: e.to_string(),
        })?);
    }
    envelope::certificates_only(&certs)
}

// ---- The client's side: what a phone sends and how it reads the answer. ----

/// A `PKCSReq`: `csr_der` sealed for the RA with `cipher`, signed by the requester's
/// (self-signed) certificate and key.
pub fn pkcs_req(
    csr_der: &[u8],
    requester: (&Certificate, &RsaPrivateKey),
    ra: &Certificate,
    cipher: Cipher,
    transaction_id: &str,
) -> Result<Vec<u8>, CmsError> {
    use rand::RngCore;
    let sealed = envelope::seal(csr_der, ra, cipher)?;
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    envelope::sign(
        Content::Inside(&sealed),
        requester,
        &[],
        vec![
            attribute_of(
                MESSAGE_TYPE,
                Tag::PrintableString,
                MessageType::PkcsReq.code().as_bytes(),
            )?,
            attribute_of(
                TRANSACTION_ID,
                Tag::PrintableString,
                transaction_id.as_bytes(),
            )?,
            attribute_of(SENDER_NONCE, Tag::OctetString, &nonce)?,
        ],
    )
}

/// What a `CertRep` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRep {
    /// The issued certificates, DER, the requester's first.
    Success(Vec<Vec<u8>>),
    /// The `failInfo` code.
    Failure(String),
    Pending,
}

/// Reads a `CertRep` signed by `ra` and opens its envelope with the requester's key.
pub fn read_cert_rep(
    der: &[u8],
    ra: &Certificate,
    requester: (&Certificate, &RsaPrivateKey),
) -> Result<CertRep, CmsError> {
    let signed = envelope::read_signed(der)?;
    let inner = envelope::content(&signed).unwrap_or(&[]);
    let (info, signer) = envelope::verify_signer(&signed, inner)?;
    if signer != ra {
        return Err(CmsError::BadSignature("not signed by the RA".into()));
    }
    let status = envelope::text_attribute(info, PKI_STATUS).unwrap_or_default();
    match status.as_str() {
        "0" => {
            let enveloped = envelope::read_enveloped(inner)?;
            let (degenerate, _) = envelope::open(&enveloped, requester.0, requester.1)?;
            let certs = envelope::read_signed(&degenerate)?;
            let list = envelope::certificates(&certs)
                .into_iter()
                .map(|c| c.to_der())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CmsError::Malformed {
                    expected: "certificate",
                    reason: e.to_string(),
                })?;
            Ok(CertRep::Success(list))
        }
        "2" => Ok(CertRep::Failure(
            envelope::text_attribute(info, FAIL_INFO).unwrap_or_default(),
        )),
        _ => Ok(CertRep::Pending),
    }
}

/// A new requester as an iPhone makes one for SCEP: a self-signed certificate for `key` (it
/// signs the request) and a CSR for the same key carrying `challenge`.
pub fn client_request(
    key: &RsaPrivateKey,
    common_name: &str,
    challenge: &str,
) -> Result<(Certificate, Vec<u8>), CmsError> {
    use rsa::pkcs8::EncodePrivateKey;
    let failed = |e: &dyn std::fmt::Display| CmsError::Malformed {
        expected: "request",
        reason: e.to_string(),
    };
    let pkcs8 = key.to_pkcs8_der().map_err(|e| failed(&e))?;
    let pair = rcgen::KeyPair::try_from(pkcs8.as_bytes()).map_err(|e| failed(&e))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let self_signed = params.self_signed(&pair).map_err(|e| failed(&e))?;
    // The attribute's values: a SET of one UTF8String.
    let password = der::asn1::Utf8StringRef::new(challenge)
        .and_then(|s| {
            let mut set = der::asn1::SetOfVec::new();
            set.insert(s)?;
            set.to_der()
        })
        .map_err(|e| failed(&e))?;
    let csr = params
        .serialize_request_with_attributes(
            &pair,
            vec![rcgen::Attribute {
                oid: &[1, 2, 840, 113549, 1, 9, 7],
                values: password,
            }],
        )
        .map_err(|e| failed(&e))?;
    let cert = Certificate::from_der(self_signed.der()).map_err(|e| failed(&e))?;
    Ok((cert, csr.der().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{check_csr, DeviceCa};

    struct Setup {
        _dir: tempfile::TempDir,
        ca: DeviceCa,
        ra: RegistrationAuthority,
        key: RsaPrivateKey,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().expect("dir");
        let ca = DeviceCa::load_or_create(dir.path(), "Test").expect("ca");
        let ra = ca.scep_ra().expect("ra");
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key");
        Setup {
            _dir: dir,
            ca,
            ra,
            key,
        }
    }

    /// The server's half: read, open, check, issue, answer.
    fn serve(s: &Setup, message: &[u8]) -> Vec<u8> {
        let request = read_request(message).expect("readable");
        let opened = match request.open(&s.ra) {
            Ok(o) => o,
            Err((why, _)) => return request.failure(&s.ra, why).expect("failure reply"),
        };
        let csr = check_csr(&opened.csr_der).expect("csr");
        if csr.challenge.as_deref() != Some("the-secret") || !csr.has_key(&opened.signer_spki_der) {
            return request
                .failure(&s.ra, FailInfo::BadRequest)
                .expect("failure reply");
        }
        let issued =
            s.ca.issue_device_certificate(&csr, "device", time::OffsetDateTime::now_utc())
                .expect("issued");
        request.success(&s.ra, &issued.der).expect("success reply")
    }

    /// `sealed` with its encrypted content split into two OCTET STRINGs inside a constructed
    /// `[0]`, as Go's PKCS #7 package encodes it.
    fn in_ber_pieces(sealed: &[u8]) -> Vec<u8> {
        use der::{Any, TagNumber};
        let info = cms::content_info::ContentInfo::from_der(sealed).expect("info");
        let mut fields: Vec<Any> =
            Vec::from_der(&info.content.to_der().expect("der")).expect("fields");
        let mut parts: Vec<Any> = Vec::from_der(&fields[2].to_der().expect("der")).expect("parts");
        let bytes = parts[2].value().to_vec();
        let (a, b) = bytes.split_at(bytes.len() / 2);
        let mut pieces = Any::new(Tag::OctetString, a)
            .expect("a")
            .to_der()
            .expect("a");
        pieces.extend(
            Any::new(Tag::OctetString, b)
                .expect("b")
                .to_der()
                .expect("b"),
        );
        let constructed = Tag::ContextSpecific {
            constructed: true,
            number: TagNumber::N0,
        };
        parts[2] = Any::new(constructed, pieces).expect("pieces");
        fields[2] = Any::from_der(&parts.to_der().expect("parts")).expect("any");
        let rebuilt = cms::content_info::ContentInfo {
            content_type: info.content_type,
            content: Any::from_der(&fields.to_der().expect("fields")).expect("any"),
        };
        rebuilt.to_der().expect("der")
    }

    #[test]
    fn an_envelope_whose_content_comes_in_ber_pieces_as_go_clients_send_it_is_opened() {
        let s = setup();
        let sealed =
            envelope::seal(b"the csr", &s.ra.certificate, Cipher::TripleDesCbc).expect("sealed");
        let ber = in_ber_pieces(&sealed);
        assert_ne!(ber, sealed);
        let enveloped = envelope::read_enveloped(&ber).expect("read");
        let (content, cipher) =
            envelope::open(&enveloped, &s.ra.certificate, &s.ra.key).expect("opened");
        assert_eq!(content, b"the csr");
        assert_eq!(cipher, Cipher::TripleDesCbc);
    }

    #[test]
    fn a_request_in_every_envelope_clients_send_gets_its_certificate() {
        let s = setup();
        let (me, csr) = client_request(&s.key, "iphone", "the-secret").expect("request");
        for cipher in [
            Cipher::Aes128Cbc,
            Cipher::Aes256Cbc,
            Cipher::TripleDesCbc,
            Cipher::DesCbc,
        ] {
            let message =
                pkcs_req(&csr, (&me, &s.key), &s.ra.certificate, cipher, "tx-1").expect("req");
            let reply = serve(&s, &message);
            match read_cert_rep(&reply, &s.ra.certificate, (&me, &s.key)).expect("reply") {
                CertRep::Success(certs) => {
                    let issued = Certificate::from_der(&certs[0]).expect("cert");
                    assert_eq!(
                        issued.tbs_certificate.subject_public_key_info,
                        me.tbs_certificate.subject_public_key_info,
                        "{cipher:?}"
                    );
                    assert!(s.ca.issued_here(&certs[0]));
                }
                other => panic!("{cipher:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_wrong_challenge_is_answered_with_bad_request() {
        let s = setup();
        let (me, csr) = client_request(&s.key, "iphone", "guessed").expect("request");
        let message = pkcs_req(
            &csr,
            (&me, &s.key),
            &s.ra.certificate,
            Cipher::Aes128Cbc,
            "t",
        )
        .expect("req");
        let reply = serve(&s, &message);
        assert_eq!(
            read_cert_rep(&reply, &s.ra.certificate, (&me, &s.key)).expect("reply"),
            CertRep::Failure("2".into())
        );
    }

    #[test]
    fn an_envelope_for_another_recipient_fails_the_message_check() {
        let s = setup();
        let other = setup();
        let (me, csr) = client_request(&s.key, "iphone", "the-secret").expect("request");
        let message = pkcs_req(
            &csr,
            (&me, &s.key),
            &other.ra.certificate,
            Cipher::Aes128Cbc,
            "t",
        )
        .expect("req");
        let request = read_request(&message).expect("readable");
        assert_eq!(
            request.open(&s.ra).expect_err("not ours").0,
            FailInfo::BadMessageCheck
        );
    }

    #[test]
    fn a_request_signed_by_another_key_than_its_csr_is_caught() {
        let s = setup();
        let (me, _) = client_request(&s.key, "iphone", "the-secret").expect("request");
        let (_, other_csr) = client_request(&setup().key, "x", "the-secret").expect("request");
        let message = pkcs_req(
            &other_csr,
            (&me, &s.key),
            &s.ra.certificate,
            Cipher::Aes128Cbc,
            "t",
        )
        .expect("req");
        let reply = serve(&s, &message);
        assert_eq!(
            read_cert_rep(&reply, &s.ra.certificate, (&me, &s.key)).expect("reply"),
            CertRep::Failure("2".into())
        );
    }

    #[test]
    fn a_tampered_request_fails_its_signature() {
        let s = setup();
        let (me, csr) = client_request(&s.key, "iphone", "the-secret").expect("request");
        let mut message = pkcs_req(
            &csr,
            (&me, &s.key),
            &s.ra.certificate,
            Cipher::Aes128Cbc,
            "t",
        )
        .expect("req");
        // The last bytes are the signature.
        let n = message.len();
        message[n - 3] ^= 0xff;
        let request = read_request(&message).expect("readable");
        assert_eq!(
            request.open(&s.ra).expect_err("tampered").0,
            FailInfo::BadMessageCheck
        );
    }

    #[test]
    fn garbage_is_not_a_scep_message() {
        assert!(read_request(b"hello").is_err());
        assert_eq!(
            read_request(&vec![0u8; MAX_MESSAGE_BYTES + 1]).expect_err("big"),
            ScepError::TooLarge
        );
    }

    #[test]
    fn the_ra_is_kept_and_loaded_again() {
        let s = setup();
        let again = DeviceCa::load_or_create(s._dir.path(), "Test").expect("ca");
        assert_eq!(again.scep_ra().expect("ra").certificate, s.ra.certificate);
    }
}
