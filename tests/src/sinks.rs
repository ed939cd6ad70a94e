//! Stand-ins for what notices are delivered to: a real SMTP server on loopback
//! (mailin's SMTP state machine behind a thread per connection), and an HTTP server that speaks the SMS gateway's wire format (46elks: a
//! form POST with basic authentication) and receives webhooks. Each keeps what it received.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A message as the SMTP server received it, parsed.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub body: String,
}

#[derive(Clone, Default)]
struct MailHandler {
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    current: Vec<u8>,
    from: String,
    to: Vec<String>,
}

impl mailin::Handler for MailHandler {
    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin::Response {
        self.from = from.to_string();
        self.to = to.to_vec();
        self.current.clear();
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin::Response {
        let parsed = mail_parser::MessageParser::default().parse(&self.current);
        let Some(message) = parsed else {
            return mailin::response::TRANSACTION_FAILED;
        };
        let mail = ReceivedMail {
            from: self.from.clone(),
            to: self.to.clone(),
            subject: message.subject().unwrap_or_default().to_string(),
            message_id: message.message_id().unwrap_or_default().to_string(),
            body: message
                .body_text(0)
                .map(|b| b.to_string())
                .unwrap_or_default(),
        };
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(mail);
        mailin::response::OK
    }
}

/// One SMTP conversation: lines in, the state machine's replies out, until it closes.
fn serve_smtp(stream: std::net::TcpStream, mut session: mailin::Session<MailHandler>) {
    use std::io::{BufRead, Write};
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = std::io::BufReader::new(stream);
    let mut writer = std::io::BufWriter::new(write_half);
    let reply = |writer: &mut std::io::BufWriter<std::net::TcpStream>, res: &mailin::Response| {
        res.write_to(writer).and_then(|()| writer.flush()).is_ok()
    };
    if !reply(&mut writer, &session.greeting()) {
        return;
    }
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let res = session.process(&line);
        match res.action {
            mailin::Action::Reply => {
                if !reply(&mut writer, &res) {
                    return;
                }
            }
            mailin::Action::Close | mailin::Action::UpgradeTls => {
                reply(&mut writer, &res);
                return;
            }
            mailin::Action::NoReply => {}
        }
    }
}

/// A real SMTP server on a free loopback port. Its threads live as long as the test process.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind SMTP sink");
        let addr = listener.local_addr().expect("address");
        let handler = MailHandler::default();
        let received = handler.received.clone();
        // mailin parses SMTP and runs its state machine; the loop around it is ours because
        // mailin-embedded, its ready-made server, compiles rustls with its default crypto
        // provider (aws-lc-rs) beside the ring that everything else uses.
        let session_builder = mailin::SessionBuilder::new("smtp-sink.test");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let session = session_builder.build(addr.ip(), handler.clone());
                std::thread::spawn(move || serve_smtp(stream, session));
            }
        });
        SmtpSink { addr, received }
    }

    /// `smtp_url` for the server's configuration.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until at least `n` messages have arrived (or panics after `within`), then returns
    /// all of them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<ReceivedMail> {
        wait_until(
            within,
            || self.received().len() >= n,
            || format!("{} of {n} e-mails arrived", self.received().len()),
        )
        .await;
        self.received()
    }
}

/// An SMS the gateway was asked to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSms {
    pub from: String,
    pub to: String,
    pub message: String,
    pub idempotency_key: Option<String>,
    /// The status the stand-in answered.
    pub answered: u16,
}

/// A webhook request as received.
#[derive(Debug, Clone)]
pub struct ReceivedHook {
    pub headers: HeaderMap,
    pub body: String,
}

#[derive(Default)]
struct GatewayState {
    sms: Mutex<Vec<ReceivedSms>>,
    hooks: Mutex<Vec<ReceivedHook>>,
    /// Statuses to answer before answering 200 again.
    failures: Mutex<VecDeque<u16>>,
}

pub const SMS_USER: &str = "u0123456789abcdef";
pub const SMS_PASSWORD: &str = "gateway-secret";

/// The SMS gateway (at `/a1/sms`) and webhook receiver (at `/hook`) on a free loopback port.
#[derive(Clone)]
pub struct GatewayStandIn {
    pub addr: SocketAddr,
    state: Arc<GatewayState>,
}

impl std::fmt::Debug for GatewayStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayStandIn")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl GatewayStandIn {
    pub async fn start() -> GatewayStandIn {
        let state = Arc::new(GatewayState::default());
        let app = Router::new()
            .route("/a1/sms", post(sms))
            .route("/hook", post(hook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GatewayStandIn { addr, state }
    }

    /// Answers these statuses to the next SMS requests, then 200 again.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(statuses);
    }

    /// The `[notifications]` lines that point a server at this stand-in.
    pub fn config(&self) -> String {
        format!(
            "sms_gateway_url = \"http://{}/a1/sms\"\nsms_username = \"{SMS_USER}\"\n\
             sms_password = \"{SMS_PASSWORD}\"\nsms_sender = \"Kommunen\"\n",
            self.addr
        )
    }

    /// Every SMS request, including those answered with an error.
    pub fn requests(&self) -> Vec<ReceivedSms> {
        self.state
            .sms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The SMS the gateway accepted.
    pub fn accepted(&self) -> Vec<ReceivedSms> {
        self.requests()
            .into_iter()
            .filter(|s| s.answered == 200)
            .collect()
    }

    pub fn hooks(&self) -> Vec<ReceivedHook> {
        self.state
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub async fn wait_for_accepted(&self, n: usize, within: Duration) -> Vec<ReceivedSms> {
        wait_until(
            within,
            || self.accepted().len() >= n,
            || format!("{} of {n} SMS accepted", self.accepted().len()),
        )
        .await;
        self.accepted()
    }
}

async fn sms(
    State(state): State<Arc<GatewayState>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SMS_USER}:{SMS_PASSWORD}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            "API access requires Basic HTTP authentication".into(),
        );
    }
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
    let (Some(from), Some(to), Some(message)) =
        (form.get("from"), form.get("to"), form.get("message"))
    else {
        return (
            StatusCode::BAD_REQUEST,
            "Missing key from, to or message".into(),
        );
    };
    let answered = state
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop_front()
        .unwrap_or(200);
    state
        .sms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(ReceivedSms {
            from: from.clone(),
            to: to.clone(),
            message: message.clone(),
            idempotency_key: headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            answered,
        });
    let status = StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_success() {
        let reply = serde_json::json!({
            "status": "created", "direction": "outgoing", "from": from, "to": to,
            "message": message, "id": format!("s{}", rand::random::<u64>()), "parts": 1, "cost": 5200,
            "created": chrono::Utc::now().to_rfc3339(),
        });
        (status, reply.to_string())
    } else {
        (status, "Internal error".into())
    }
}

async fn hook(
    State(state): State<Arc<GatewayState>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    state
        .hooks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(ReceivedHook { headers, body });
    StatusCode::NO_CONTENT
}

/// Polls `done` every 20 ms until it holds; panics with `progress()` after `within`.
pub async fn wait_until(
    within: Duration,
    mut done: impl FnMut() -> bool,
    progress: impl Fn() -> String,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        if tokio::time::Instant::now() > deadline {
            panic!("gave up waiting after {within:?}: {}", progress());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
