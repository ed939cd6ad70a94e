//! A simulated iPhone: it does what an iPhone does with an enrollment profile, over the real
//! device listener. It downloads the signed profile from the token's address, trusts the root
//! payload, gets its certificate by SCEP (RSA 2048, a `PKCSReq` sealed for the RA), then signs
//! each check-in with an `Mdm-Signature` header as the MDM payload's `SignMessage` asks.
//!
//! Also here: a push certificate shaped like the one Apple's portal gives (the topic in the
//! subject's UID), since Apple's portal cannot be reached from a test.

use base64::Engine;
use der::{Decode, Encode};
use plist::{Dictionary, Value};
use reqwest::StatusCode;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;
use x509_cert::Certificate;

use enrollment::envelope::{self, Content};
use enrollment::scep::{self, CertRep, Cipher};
use profiles::apple_checkin::{to_plist, Authenticate, CheckOut, CheckinMessage, TokenUpdate};

/// What the enrollment profile told the phone.
#[derive(Debug, Clone)]
pub struct InstalledProfile {
    pub root_der: Vec<u8>,
    pub scep_url: String,
    pub challenge: String,
    pub checkin_url: String,
    pub server_url: String,
    pub topic: String,
    /// The whole profile, for checks on its keys.
    pub profile: Dictionary,
}

/// A command as the connect endpoint hands it to the phone.
#[derive(Debug, Clone)]
pub struct ReceivedCommand {
    pub uuid: String,
    pub request_type: String,
    pub command: Dictionary,
}

impl ReceivedCommand {
    /// The command in an answer's body; `None` for an empty body.
    fn read(status: StatusCode, body: &str) -> Option<ReceivedCommand> {
        if status != StatusCode::OK || body.trim().is_empty() {
            return None;
        }
        let top: Dictionary = plist::from_bytes(body.as_bytes()).expect("a command plist");
        let command = top
            .get("Command")
            .and_then(Value::as_dictionary)
            .expect("Command")
            .clone();
        Some(ReceivedCommand {
            uuid: string(&top, "CommandUUID"),
            request_type: string(&command, "RequestType"),
            command,
        })
    }
}

/// A message as a phone PUTs it: where, what, and its `Mdm-Signature`.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub url: String,
    pub body: Vec<u8>,
    pub signature: String,
}

/// An iPhone as the server sees it: hardware facts and its keys.
pub struct SimulatedIphone {
    pub udid: String,
    pub serial: String,
    pub imei: Option<String>,
    pub product_name: String,
    pub os_version: String,
    /// The SIM it holds, as an inventory answer gives it.
    pub iccid: Option<String>,
    /// Whether it is supervised (set up through Apple Configurator or Apple Business Manager).
    pub supervised: bool,
    pub key: RsaPrivateKey,
    pub profile: Option<InstalledProfile>,
    /// The certificate SCEP issued, DER.
    pub identity: Option<Vec<u8>>,
    /// What its `TokenUpdate` gives the server to push it with.
    pub push_token: [u8; 32],
    pub push_magic: String,
    /// The passcode the person set, if any (iOS tells a server only whether it meets the
    /// installed profiles).
    pub passcode: Option<String>,
    /// Configuration profiles installed through MDM: identifier, `PayloadUUID`, and the
    /// passcode's least length the profile requires.
    pub profiles: Vec<(String, String, Option<u64>)>,
    /// Installed apps: bundle id and version.
    pub apps: Vec<(String, String)>,
    /// The managed settings (`Configuration`) each app was installed with, by bundle id.
    pub app_settings: std::collections::HashMap<String, Dictionary>,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for SimulatedIphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedIphone")
            .field("udid", &self.udid)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// A fresh RSA 2048 key, as an iPhone makes for the SCEP payload.
pub fn rsa_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa key")
}

/// A push certificate and its key, PEM, for `topic`, running out in `days`: what an operator
/// downloads from Apple's push certificates portal (the topic in the subject's UID).
pub fn push_certificate(topic: &str, days: i64) -> (String, String) {
    let key = rsa_key();
    let pkcs8 = key.to_pkcs8_der().expect("pkcs8");
    let pair = rcgen::KeyPair::try_from(pkcs8.as_bytes()).expect("pair");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(
        rcgen::DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
        topic,
    );
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("APSP:{topic}"));
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let cert = params.self_signed(&pair).expect("cert").pem();
    let key_pem = key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
    (cert, key_pem)
}

/// A `.p12` holding `cert_pem` and `key_pem`, as the Keychain exports them.
pub fn pkcs12(cert_pem: &str, key_pem: &str, password: &str) -> Vec<u8> {
    use rsa::pkcs8::DecodePrivateKey;
    let der = x509_cert::Certificate::load_pem_chain(cert_pem.as_bytes())
        .expect("pem")
        .remove(0)
        .to_der()
        .expect("der");
    let key = RsaPrivateKey::from_pkcs8_pem(key_pem).expect("key");
    let chain = p12_keystore::PrivateKeyChain::new(
        key.to_pkcs8_der().expect("pkcs8").as_bytes(),
        [7u8; 20],
        vec![p12_keystore::Certificate::from_der(&der).expect("cert")],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("push", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    store.writer(password).write().expect("p12")
}

fn data(dict: &Dictionary, key: &str) -> Vec<u8> {
    dict.get(key)
        .and_then(Value::as_data)
        .unwrap_or_else(|| panic!("{key} is data"))
        .to_vec()
}

fn string(dict: &Dictionary, key: &str) -> String {
    dict.get(key)
        .and_then(Value::as_string)
        .unwrap_or_else(|| panic!("{key} is a string"))
        .to_string()
}

/// The status a phone with nothing to report sends to the connect URL.
fn idle_body(udid: &str) -> Vec<u8> {
    let mut status = Dictionary::new();
    status.insert("UDID".into(), udid.into());
    status.insert("Status".into(), "Idle".into());
    let mut body = Vec::new();
    plist::to_writer_xml(&mut body, &Value::Dictionary(status)).expect("plist");
    body
}

/// The payloads of a signed profile, by `PayloadType`.
pub fn read_signed_profile(bytes: &[u8]) -> Dictionary {
    let signed = envelope::read_signed(bytes).expect("signed profile");
    let content = envelope::content(&signed).expect("profile inside");
    plist::from_bytes(content).expect("profile plist")
}

fn payload<'a>(profile: &'a Dictionary, kind: &str) -> &'a Dictionary {
    profile
        .get("PayloadContent")
        .and_then(Value::as_array)
        .expect("payloads")
        .iter()
        .filter_map(Value::as_dictionary)
        .find(|p| p.get("PayloadType").and_then(Value::as_string) == Some(kind))
        .unwrap_or_else(|| panic!("a {kind} payload"))
}

impl SimulatedIphone {
    /// An iPhone SE (3rd generation) with this serial and IMEI.
    pub fn new(serial: &str, imei: Option<&str>) -> SimulatedIphone {
        Self::with_key(serial, imei, rsa_key())
    }

    /// The same with a key made beforehand (a benchmark's thousand phones share a few keys:
    /// making RSA keys would take longer than everything measured).
    pub fn with_key(serial: &str, imei: Option<&str>, key: RsaPrivateKey) -> SimulatedIphone {
        SimulatedIphone {
            udid: format!("00008110-{:016X}", rand::random::<u64>()),
            serial: serial.to_string(),
            imei: imei.map(str::to_string),
            product_name: "iPhone14,6".into(),
            os_version: "18.1".into(),
            iccid: None,
            supervised: false,
            key,
            profile: None,
            identity: None,
            push_token: rand::random(),
            push_magic: format!("{:X}", rand::random::<u64>()),
            passcode: Some("482915".into()),
            profiles: Vec::new(),
            apps: Vec::new(),
            app_settings: Default::default(),
            http: None,
        }
    }

    /// Its push token as pushes name it (lower-case hex).
    pub fn push_token_hex(&self) -> String {
        self.push_token.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Opens the token's address and installs the profile it gets: afterwards the phone trusts
    /// the profile's root. Answers the download's status and body when it fails.
    pub async fn install_profile(&mut self, address: &str) -> Result<(), (StatusCode, String)> {
        let response = reqwest::Client::new()
            .get(address)
            .send()
            .await
            .expect("profile download");
        let status = response.status();
        let kind = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        let body = response.bytes().await.expect("body");
        if !status.is_success() {
            return Err((status, String::from_utf8_lossy(&body).into_owned()));
        }
        assert_eq!(kind, "application/x-apple-aspen-config");
        self.install_enrollment_profile(&body);
        Ok(())
    }

    /// Installs a signed enrollment profile (checking its signature): afterwards the phone
    /// trusts the profile's root and knows where to get its certificate and check in.
    pub fn install_enrollment_profile(&mut self, signed: &[u8]) {
        let profile = read_signed_profile(signed);
        let root = payload(&profile, "com.apple.security.root");
        let scep = payload(&profile, "com.apple.security.scep");
        let scep_content = scep
            .get("PayloadContent")
            .and_then(Value::as_dictionary)
            .expect("scep content");
        let mdm = payload(&profile, "com.apple.mdm");
        let installed = InstalledProfile {
            root_der: data(root, "PayloadContent"),
            scep_url: string(scep_content, "URL"),
            challenge: string(scep_content, "Challenge"),
            checkin_url: string(mdm, "CheckInURL"),
            server_url: string(mdm, "ServerURL"),
            topic: string(mdm, "Topic"),
            profile: profile.clone(),
        };
        self.trust(&installed.root_der);
        self.profile = Some(installed);
    }

    /// Takes the profile's settings as installed, without downloading it (a benchmark makes its
    /// tokens in the store, with no API listener to download from).
    pub fn install(&mut self, profile: InstalledProfile) {
        self.trust(&profile.root_der);
        self.profile = Some(profile);
    }

    /// A connection that also presents the phone's identity as its TLS client certificate, as
    /// iPhones do once SCEP has given them one.
    pub fn identity_client(&self) -> reqwest::Client {
        let cert = Certificate::from_der(self.identity.as_ref().expect("an identity"))
            .expect("identity")
            .to_der()
            .expect("der");
        let body = base64::engine::general_purpose::STANDARD.encode(cert);
        let pem = format!(
            "{}-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n",
            *self.key.to_pkcs8_pem(LineEnding::LF).expect("key")
        );
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_der(&self.installed().root_der).expect("root"),
            )
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"))
            .build()
            .expect("client")
    }

    /// The connect URL, an `Idle` body and its `Mdm-Signature`: what the phone sends each time
    /// it is woken with nothing queued (the same bytes every time).
    pub fn idle_request(&self) -> SignedRequest {
        let body = idle_body(&self.udid);
        SignedRequest {
            url: self.installed().server_url.clone(),
            signature: self.signature(&body),
            body,
        }
    }

    /// Trusts this root for TLS to the device listener, as the profile's root payload makes
    /// the phone do.
    pub fn trust(&mut self, root_der: &[u8]) {
        self.http = Some(
            reqwest::Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_der(root_der).expect("root"))
                .build()
                .expect("client"),
        );
    }

    /// Closes its connections to the server, as an iPhone does when its session ends (a fleet
    /// of phones holding theirs open would hold a descriptor each on both sides).
    pub fn hang_up(&mut self) {
        if let Some(root) = self.profile.as_ref().map(|p| p.root_der.clone()) {
            self.trust(&root);
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.http.as_ref().expect("the profile is installed")
    }

    fn installed(&self) -> &InstalledProfile {
        self.profile.as_ref().expect("the profile is installed")
    }

    /// The RA's certificate, from `GetCACert`: as an iPhone picks it, the certificate that is
    /// no CA and may encipher keys (the certificates come as a set, in no order).
    pub async fn registration_authority(&self) -> Certificate {
        let url = format!("{}?operation=GetCACert", self.installed().scep_url);
        let response = self.http().get(url).send().await.expect("GetCACert");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.bytes().await.expect("body");
        let signed = envelope::read_signed(&body).expect("certificates");
        envelope::certificates(&signed)
            .into_iter()
            .find(|c| {
                let der = c.to_der().expect("der");
                let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("certificate");
                !parsed.is_ca()
                    && parsed
                        .key_usage()
                        .ok()
                        .flatten()
                        .is_some_and(|u| u.value.key_encipherment())
            })
            .cloned()
            .expect("an RA certificate")
    }

    /// Asks for a certificate by SCEP with `challenge`; on SUCCESS the phone keeps it.
    pub async fn scep_with(&mut self, challenge: &str) -> CertRep {
        let ra = self.registration_authority().await;
        let (requester, csr) =
            scep::client_request(&self.key, &self.udid, challenge).expect("request");
        let message = scep::pkcs_req(
            &csr,
            (&requester, &self.key),
            &ra,
            Cipher::Aes128Cbc,
            &format!("{:032x}", rand::random::<u128>()),
        )
        .expect("pkcs req");
        let url = format!("{}?operation=PKIOperation", self.installed().scep_url);
        let response = self
            .http()
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-pki-message")
            .body(message)
            .send()
            .await
            .expect("PKIOperation");
        assert_eq!(response.status(), StatusCode::OK, "a CertRep");
        let body = response.bytes().await.expect("body");
        let answer =
            scep::read_cert_rep(&body, &ra, (&requester, &self.key)).expect("readable CertRep");
        if let CertRep::Success(certs) = &answer {
            self.identity = Some(certs[0].clone());
        }
        answer
    }

    /// SCEP with the profile's challenge.
    pub async fn scep(&mut self) -> CertRep {
        let challenge = self.installed().challenge.clone();
        self.scep_with(&challenge).await
    }

    /// The `Mdm-Signature` header for `body`: a detached CMS signature by the phone's identity.
    pub fn signature(&self, body: &[u8]) -> String {
        let der = self.identity.as_ref().expect("an identity");
        let cert = Certificate::from_der(der).expect("identity");
        let signed = envelope::sign(Content::Detached(body), (&cert, &self.key), &[], Vec::new())
            .expect("signature");
        base64::engine::general_purpose::STANDARD.encode(signed)
    }

    /// PUTs `body` to `url`, signed; answers the status and body.
    pub async fn put_signed(&self, url: &str, body: Vec<u8>) -> (StatusCode, String) {
        let signature = self.signature(&body);
        self.put_with(url, body, Some(signature)).await
    }

    /// PUTs `body` to `url` with this `Mdm-Signature` header, or none.
    pub async fn put_with(
        &self,
        url: &str,
        body: Vec<u8>,
        signature: Option<String>,
    ) -> (StatusCode, String) {
        let mut request = self.http().put(url).header(
            reqwest::header::CONTENT_TYPE,
            "application/x-apple-aspen-mdm-checkin",
        );
        if let Some(signature) = signature {
            request = request.header("Mdm-Signature", signature);
        }
        let response = request.body(body).send().await.expect("put");
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }

    /// The `Authenticate` message this phone sends.
    pub fn authenticate_message(&self) -> Vec<u8> {
        to_plist(&CheckinMessage::Authenticate(Authenticate {
            udid: self.udid.clone(),
            topic: self.installed().topic.clone(),
            serial_number: Some(self.serial.clone()),
            imei: self.imei.clone(),
            meid: None,
            model: Some("iPhone".into()),
            model_name: Some("iPhone".into()),
            product_name: Some(self.product_name.clone()),
            os_version: Some(self.os_version.clone()),
            build_version: Some("22B83".into()),
            device_name: Some("iPhone".into()),
        }))
    }

    pub async fn authenticate(&self) -> (StatusCode, String) {
        let url = self.installed().checkin_url.clone();
        self.put_signed(&url, self.authenticate_message()).await
    }

    pub async fn token_update(&self) -> (StatusCode, String) {
        let message = to_plist(&CheckinMessage::TokenUpdate(TokenUpdate {
            udid: self.udid.clone(),
            topic: self.installed().topic.clone(),
            token: self.push_token.to_vec().into(),
            push_magic: self.push_magic.clone(),
            awaiting_configuration: Some(false),
        }));
        let url = self.installed().checkin_url.clone();
        self.put_signed(&url, message).await
    }

    pub async fn check_out(&self) -> (StatusCode, String) {
        let message = to_plist(&CheckinMessage::CheckOut(CheckOut {
            udid: self.udid.clone(),
            topic: self.installed().topic.clone(),
        }));
        let url = self.installed().checkin_url.clone();
        self.put_signed(&url, message).await
    }

    /// The phone asks for work with `Status` `Idle`.
    pub async fn idle(&self) -> (StatusCode, String) {
        let url = self.installed().server_url.clone();
        self.put_signed(&url, idle_body(&self.udid)).await
    }

    /// Answers command `uuid` with `status` (`Acknowledged`, `Error`, `NotNow`, …) and, for an
    /// error, a chain of one link with `description`; returns the server's status and the next
    /// command, if it sent one.
    pub async fn answer(
        &self,
        uuid: &str,
        status: &str,
        description: Option<&str>,
    ) -> (StatusCode, Option<ReceivedCommand>) {
        let mut extra = Dictionary::new();
        if let Some(text) = description {
            let mut link = Dictionary::new();
            link.insert("ErrorCode".into(), 12021.into());
            link.insert("ErrorDomain".into(), "MCMDMErrorDomain".into());
            link.insert("USEnglishDescription".into(), text.into());
            extra.insert(
                "ErrorChain".into(),
                Value::Array(vec![Value::Dictionary(link)]),
            );
        }
        self.respond(uuid, status, extra).await
    }

    /// PUTs an answer to command `uuid` with these keys besides `UDID`, `Status` and
    /// `CommandUUID`; returns the server's status and the next command, if any.
    pub async fn respond(
        &self,
        uuid: &str,
        status: &str,
        extra: Dictionary,
    ) -> (StatusCode, Option<ReceivedCommand>) {
        let mut message = extra;
        message.insert("UDID".into(), self.udid.clone().into());
        message.insert("Status".into(), status.into());
        message.insert("CommandUUID".into(), uuid.into());
        let mut body = Vec::new();
        plist::to_writer_xml(&mut body, &Value::Dictionary(message)).expect("plist");
        let url = self.installed().server_url.clone();
        let (status, text) = self.put_signed(&url, body).await;
        (status, ReceivedCommand::read(status, &text))
    }

    /// Whether the passcode meets every installed profile, as iOS works it out.
    pub fn passcode_meets_profiles(&self) -> bool {
        let least = self.profiles.iter().filter_map(|(_, _, l)| *l).max();
        match (&self.passcode, least) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(code), Some(least)) => code.chars().count() as u64 >= least,
        }
    }

    /// Answers `command` as an iPhone does: installs a profile (checking its signature), tells
    /// its security, profiles, apps and inventory, and acknowledges the rest; returns the next
    /// command, if any.
    pub async fn carry_out(
        &mut self,
        command: &ReceivedCommand,
    ) -> (StatusCode, Option<ReceivedCommand>) {
        let mut extra = Dictionary::new();
        match command.request_type.as_str() {
            "DeviceInformation" => return self.answer_information(&command.uuid).await,
            "InstallProfile" => {
                let payload = command
                    .command
                    .get("Payload")
                    .and_then(Value::as_data)
                    .expect("Payload");
                let profile = read_signed_profile(payload);
                let identifier = string(&profile, "PayloadIdentifier");
                let least = profile
                    .get("PayloadContent")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_dictionary)
                    .filter_map(|p| p.get("minLength").and_then(Value::as_unsigned_integer))
                    .max();
                self.profiles.retain(|(id, _, _)| *id != identifier);
                self.profiles
                    .push((identifier, string(&profile, "PayloadUUID"), least));
            }
            "SecurityInfo" => {
                let mut info = Dictionary::new();
                info.insert("HardwareEncryptionCaps".into(), 3.into());
                info.insert(
                    "PasscodePresent".into(),
                    Value::Boolean(self.passcode.is_some()),
                );
                let meets = self.passcode_meets_profiles();
                info.insert("PasscodeCompliant".into(), Value::Boolean(meets));
                info.insert(
                    "PasscodeCompliantWithProfiles".into(),
                    Value::Boolean(meets),
                );
                extra.insert("SecurityInfo".into(), Value::Dictionary(info));
            }
            "ProfileList" => {
                let list = self
                    .profiles
                    .iter()
                    .map(|(identifier, uuid, _)| {
                        let mut p = Dictionary::new();
                        p.insert("PayloadIdentifier".into(), identifier.clone().into());
                        p.insert("PayloadUUID".into(), uuid.clone().into());
                        p.insert("PayloadVersion".into(), 1.into());
                        p.insert("IsManaged".into(), Value::Boolean(true));
                        Value::Dictionary(p)
                    })
                    .collect();
                extra.insert("ProfileList".into(), Value::Array(list));
            }
            "InstallApplication" => {
                let id = match command.command.get("Identifier").and_then(Value::as_string) {
                    Some(bundle) => bundle.to_string(),
                    None => format!(
                        "store:{}",
                        command.command["iTunesStoreID"]
                            .as_signed_integer()
                            .unwrap_or_default()
                    ),
                };
                if let Some(settings) = command
                    .command
                    .get("Configuration")
                    .and_then(Value::as_dictionary)
                {
                    self.app_settings.insert(id.clone(), settings.clone());
                }
                self.apps.retain(|(app, _)| *app != id);
                self.apps.push((id, "1.0".into()));
            }
            "EraseDevice" => {
                let answered = self.respond(&command.uuid, "Acknowledged", extra).await;
                self.erase(&command.command).await;
                return answered;
            }
            "InstalledApplicationList" => {
                let list = self
                    .apps
                    .iter()
                    .map(|(id, version)| {
                        let mut a = Dictionary::new();
                        a.insert("Identifier".into(), id.clone().into());
                        a.insert("ShortVersion".into(), version.clone().into());
                        a.insert("Version".into(), "1".into());
                        a.insert("Name".into(), id.clone().into());
                        Value::Dictionary(a)
                    })
                    .collect();
                extra.insert("InstalledApplicationList".into(), Value::Array(list));
            }
            _ => {}
        }
        self.respond(&command.uuid, "Acknowledged", extra).await
    }

    /// What an erase does to the phone: everything managed is gone, with a new key for a new
    /// identity. With Return to Service it sets itself up and enrolls again from the profile
    /// it was given (and answers what the server sends a new phone); without, it waits on the
    /// setup screen for a person.
    pub async fn erase(&mut self, command: &Dictionary) {
        self.profiles.clear();
        self.apps.clear();
        self.app_settings.clear();
        self.passcode = None;
        self.identity = None;
        self.http = None;
        self.profile = None;
        self.push_token = rand::random();
        self.key = rsa_key();
        let enrollment = command
            .get("ReturnToService")
            .and_then(Value::as_dictionary)
            .filter(|r| r.get("Enabled").and_then(Value::as_boolean) == Some(true))
            .and_then(|r| r.get("MDMProfileData").and_then(Value::as_data))
            .map(<[u8]>::to_vec);
        let Some(enrollment) = enrollment else {
            return;
        };
        // Return to Service sets a passcode only as the profile asks; the person sets theirs.
        self.passcode = Some("482915".into());
        self.install_enrollment_profile(&enrollment);
        match self.scep().await {
            CertRep::Success(_) => {}
            other => panic!("SCEP after Return to Service answered {other:?}"),
        }
        let (status, body) = self.authenticate().await;
        assert_eq!(status, StatusCode::OK, "Authenticate: {body}");
        let (status, body) = self.token_update().await;
        assert_eq!(status, StatusCode::OK, "TokenUpdate: {body}");
        Box::pin(self.work()).await;
    }

    /// Connects and carries out whatever the server hands out until it has nothing more;
    /// returns the request types in the order they came.
    pub async fn work(&mut self) -> Vec<String> {
        let mut done = Vec::new();
        let (status, mut next) = self.next_command().await;
        assert_eq!(status, StatusCode::OK);
        while let Some(command) = next {
            done.push(command.request_type.clone());
            assert!(
                done.len() < 50,
                "the server keeps handing out work: {done:?}"
            );
            let (status, after) = self.carry_out(&command).await;
            assert_eq!(status, StatusCode::OK, "answering {}", command.request_type);
            next = after;
        }
        done
    }

    /// Answers a `DeviceInformation` command with this phone's inventory, as iPhones write it
    /// (IMEI and ICCID in groups, battery as a fraction, capacities in GB); returns the next
    /// command, if any.
    pub async fn answer_information(&self, uuid: &str) -> (StatusCode, Option<ReceivedCommand>) {
        let mut responses = Dictionary::new();
        responses.insert("OSVersion".into(), self.os_version.clone().into());
        responses.insert("ProductName".into(), self.product_name.clone().into());
        responses.insert("SerialNumber".into(), self.serial.clone().into());
        if let Some(imei) = &self.imei {
            let grouped = format!(
                "{} {} {} {}",
                &imei[..2],
                &imei[2..8],
                &imei[8..14],
                &imei[14..]
            );
            responses.insert("IMEI".into(), grouped.into());
        }
        if let Some(iccid) = &self.iccid {
            responses.insert("ICCID".into(), iccid.clone().into());
        }
        responses.insert("BatteryLevel".into(), Value::Real(0.87));
        responses.insert("AvailableDeviceCapacity".into(), Value::Real(41.5));
        responses.insert("DeviceCapacity".into(), Value::Real(64.0));
        responses.insert("IsSupervised".into(), Value::Boolean(self.supervised));
        let mut extra = Dictionary::new();
        extra.insert("RequestType".into(), "DeviceInformation".into());
        extra.insert("QueryResponses".into(), Value::Dictionary(responses));
        self.respond(uuid, "Acknowledged", extra).await
    }

    /// Asks for work (`Idle`); returns the server's status and the command it sent, if any.
    pub async fn next_command(&self) -> (StatusCode, Option<ReceivedCommand>) {
        let (status, text) = self.idle().await;
        (status, ReceivedCommand::read(status, &text))
    }

    /// Installs the profile at `address`, gets a certificate, authenticates and sends its push
    /// token: what a person's tap on "Install" sets off. Panics on any refusal.
    pub async fn enroll(&mut self, address: &str) {
        self.install_profile(address).await.expect("profile");
        self.enroll_installed().await;
    }

    /// With the enrollment profile installed: gets a certificate, authenticates, sends its
    /// push token and carries out what the server gives a new phone. Panics on any refusal.
    pub async fn enroll_installed(&mut self) {
        match self.scep().await {
            CertRep::Success(_) => {}
            other => panic!("SCEP answered {other:?}"),
        }
        let (status, body) = self.authenticate().await;
        assert_eq!(status, StatusCode::OK, "Authenticate: {body}");
        let (status, body) = self.token_update().await;
        assert_eq!(status, StatusCode::OK, "TokenUpdate: {body}");
        // The server sends a new phone its standard profile and asks for its inventory.
        let done = self.work().await;
        for wanted in [
            "InstallProfile",
            "DeviceInformation",
            "SecurityInfo",
            "ProfileList",
            "InstalledApplicationList",
        ] {
            assert!(done.iter().any(|d| d == wanted), "{wanted} in {done:?}");
        }
    }

    /// The identity's SHA-256 fingerprint, lower-case hex.
    pub fn fingerprint(&self) -> String {
        enrollment::fingerprint(self.identity.as_ref().expect("an identity"))
    }
}
