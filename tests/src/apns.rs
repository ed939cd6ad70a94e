//! A stand-in for Apple's push service: HTTP/2 only, over TLS that demands the operator's push
//! certificate as client certificate, checking every header an MDM push must carry and
//! answering as APNs does (`200` with an `apns-id`, or a status with `{"reason": "…"}`). It
//! keeps what it received, can be told to answer a token with errors or not at all, and tells
//! subscribers (a swarm of simulated iPhones) which token was pushed.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// How the stand-in answers one push.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A status and APNs' reason.
    Status(u16, &'static str),
    /// No answer at all (the push times out at the server).
    Hang,
}

/// A push as the stand-in received it (including those it refused).
#[derive(Debug, Clone)]
pub struct ReceivedPush {
    /// The device token from the path, hex.
    pub token: String,
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
    /// The status the stand-in answered (0 when it did not).
    pub answered: u16,
}

#[derive(Debug, Default)]
struct Inner {
    received: Vec<ReceivedPush>,
    /// Answers waiting for a token, used in order; then `200`.
    scripted: HashMap<String, VecDeque<Answer>>,
    /// The topic pushes must carry (the push certificate's).
    topic: String,
}

#[derive(Debug, Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    pushed: tokio::sync::broadcast::Sender<String>,
    connections: Arc<AtomicUsize>,
}

#[derive(Debug)]
pub struct ApnsStandIn {
    /// `https://127.0.0.1:port`.
    pub url: String,
    /// The CA of its TLS certificate, for the server's `apple.push_ca_file`.
    pub ca_pem: String,
    /// Holds the CA file the configuration names.
    dir: tempfile::TempDir,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApnsStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts exactly the push certificate it was given, and checks that the client holds its key
/// (the handshake signature), as APNs does with the certificate Apple issued.
#[derive(Debug)]
struct PushCertificateOnly {
    accepted: Vec<u8>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PushCertificateOnly {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.accepted.as_slice() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the operator's push certificate".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ApnsStandIn {
    /// Listens on loopback for pushes made with `push_certificate_pem` on `topic`.
    pub async fn start(push_certificate_pem: &str, topic: &str) -> ApnsStandIn {
        let certificate = x509_cert::Certificate::load_pem_chain(push_certificate_pem.as_bytes())
            .expect("push certificate PEM")
            .remove(0);
        let accepted = x509_cert::der::Encode::to_der(&certificate).expect("der");
        let (ca_pem, server_config) = server_tls(accepted);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                topic: topic.to_string(),
                ..Inner::default()
            })),
            pushed: tokio::sync::broadcast::channel(65_536).0,
            connections: Arc::new(AtomicUsize::new(0)),
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, shared) = (acceptor.clone(), serving.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&shared, request).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .max_concurrent_streams(1000)
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        ApnsStandIn {
            url: format!("https://{addr}"),
            ca_pem,
            dir: tempfile::tempdir().expect("tempdir"),
            shared,
            task,
        }
    }

    /// The `[apple]` configuration that points a server at this stand-in, with short waits.
    pub fn config(&self) -> String {
        self.config_with("push_coalesce_ms = 300\npush_retry_base_ms = 100\npush_attempts = 4\n")
    }

    /// The `[apple]` table naming this stand-in, with `settings` (lines of the table) added.
    pub fn config_with(&self, settings: &str) -> String {
        let ca = self.dir.path().join("apns-ca.pem");
        std::fs::write(&ca, &self.ca_pem).expect("write CA");
        format!(
            "[apple]\npush_url = \"{}\"\npush_ca_file = \"{}\"\npush_timeout_seconds = 2\n{settings}",
            self.url,
            ca.display()
        )
    }

    /// The next pushes to `token` are answered with `answers`, in order.
    pub fn script(&self, token: &str, answers: impl IntoIterator<Item = Answer>) {
        self.lock()
            .scripted
            .entry(token.to_string())
            .or_default()
            .extend(answers);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every push received so far.
    pub fn received(&self) -> Vec<ReceivedPush> {
        self.lock().received.clone()
    }

    /// The pushes received for `token`.
    pub fn received_for(&self, token: &str) -> Vec<ReceivedPush> {
        self.received()
            .into_iter()
            .filter(|p| p.token == token)
            .collect()
    }

    /// Waits (up to 20 s) until `n` pushes for `token` have been received; returns them.
    pub async fn wait_for(&self, token: &str, n: usize) -> Vec<ReceivedPush> {
        for _ in 0..400 {
            let got = self.received_for(token);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{n} pushes for {token} expected, got {:?}",
            self.received_for(token)
        );
    }

    /// The TLS connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Tokens as they are pushed (and answered `200`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.shared.pushed.subscribe()
    }
}

/// A CA and a certificate for 127.0.0.1 it issued; the server's TLS configuration (HTTP/2 only,
/// client certificate required).
fn server_tls(accepted: Vec<u8>) -> (String, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "APNs stand-in CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let cert = params.signed_by(&key, &issuer).expect("leaf");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PushCertificateOnly {
        accepted,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server TLS");
    config.alpn_protocols = vec![b"h2".to_vec()];
    (ca_cert.pem(), config)
}

/// APNs' checks of an MDM push, in its order, with its reasons.
fn check(
    inner: &Inner,
    token: &str,
    headers: &HashMap<String, String>,
    body: &serde_json::Value,
) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).map(String::as_str);
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("BadDeviceToken");
    }
    match header("apns-topic") {
        None => return Err("MissingTopic"),
        Some(t) if t != inner.topic => return Err("DeviceTokenNotForTopic"),
        Some(_) => {}
    }
    if header("apns-push-type") != Some("mdm") {
        return Err("InvalidPushType");
    }
    if !matches!(header("apns-priority"), Some("5" | "10")) {
        return Err("BadPriority");
    }
    if header("apns-expiration")
        .and_then(|e| e.parse::<i64>().ok())
        .is_none()
    {
        return Err("BadExpirationDate");
    }
    let only_magic = body.as_object().is_some_and(|o| {
        o.len() == 1
            && o.get("mdm")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|m| !m.is_empty())
    });
    if !only_magic {
        return Err("PayloadEmpty");
    }
    Ok(())
}

async fn answer(shared: &Shared, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: u16, reason: Option<&str>| {
        let body = reason.map_or_else(String::new, |r| {
            serde_json::json!({ "reason": r }).to_string()
        });
        Response::builder()
            .status(status)
            .header("apns-id", "A5B6C7D8-0000-4000-8000-000000000000")
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let headers: HashMap<String, String> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let Some(token) = path.strip_prefix("/3/device/") else {
        return reply(404, Some("BadPath"));
    };
    if method != hyper::Method::POST {
        return reply(405, Some("MethodNotAllowed"));
    }
    let token = token.to_string();
    let (status, reason, hang) = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (status, reason, hang) = match check(&inner, &token, &headers, &body) {
            Err(reason) => (400, Some(reason), false),
            Ok(()) => match inner.scripted.get_mut(&token).and_then(VecDeque::pop_front) {
                None => (200, None, false),
                Some(Answer::Status(status, reason)) => (status, Some(reason), false),
                Some(Answer::Hang) => (0, None, true),
            },
        };
        inner.received.push(ReceivedPush {
            token: token.clone(),
            headers,
            body,
            answered: status,
        });
        (status, reason, hang)
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if status == 200 {
        let _ = shared.pushed.send(token);
    }
    reply(status, reason)
}

/// The push topic of the tests' push certificate.
pub const TOPIC: &str = "com.apple.mgmt.External.0a6b1c5e-7d2f-4e8a-9b3c-4d5e6f708192";

/// A fleet whose server pushes to a stand-in that accepts exactly this push certificate.
#[derive(Debug)]
pub struct Pushed {
    pub kit: crate::Fleet,
    pub apns: ApnsStandIn,
}

pub async fn pushed_fleet(backend: crate::Backend, certificate_days: i64) -> Pushed {
    pushed_fleet_with(backend, certificate_days, None).await
}

/// The same with these `[apple]` settings instead of the tests' usual ones.
pub async fn pushed_fleet_with(
    backend: crate::Backend,
    certificate_days: i64,
    settings: Option<&str>,
) -> Pushed {
    let (certificate_pem, key_pem) = crate::iphone::push_certificate(TOPIC, certificate_days);
    let apns = ApnsStandIn::start(&certificate_pem, TOPIC).await;
    let config = settings.map_or_else(|| apns.config(), |s| apns.config_with(s));
    let kit = crate::Fleet::start(backend, &config, &chrono::Utc::now().to_rfc3339()).await;
    kit.app
        .request(
            reqwest::Method::PUT,
            "/api/v1/push-certificate",
            Some(&kit.admin),
            Some(serde_json::json!({ "certificate_pem": certificate_pem, "key_pem": key_pem })),
        )
        .await
        .expect(reqwest::StatusCode::OK);
    Pushed { kit, apns }
}

/// A registered, enrolled iPhone whose enrollment's push (for the inventory query) has come and
/// gone.
pub async fn enrolled(p: &Pushed, serial: &str, n: u32) -> (i64, crate::iphone::SimulatedIphone) {
    let kit = &p.kit;
    let id = kit
        .app
        .register_device(&kit.admin, serial, &crate::imei(n), Some(kit.provider_a))
        .await;
    let token = kit
        .app
        .post(
            "/api/v1/enrollment-tokens",
            &kit.admin,
            serde_json::json!({ "device_id": id, "channel": "apple_mdm" }),
        )
        .await;
    token.expect(reqwest::StatusCode::CREATED);
    let mut phone = crate::iphone::SimulatedIphone::new(serial, Some(&crate::imei(n)));
    phone
        .enroll(token.body["token"].as_str().expect("token"))
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    (id, phone)
}
