//! Talking to the server: enrollment (the phone makes its key, sends a CSR, keeps the
//! certificate), check-ins and renewal over mutual TLS, trusting only the pinned CA.

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use chrono::Utc;
use enrollment::ca::pem_to_der;
use enrollment::{fingerprint, EnrollmentInvite};
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use std::time::Duration;

use crate::phone::Answer;
use crate::protocol::{
    CheckinRequest, CheckinResponse, CommandAction, CommandResult, DeviceCommand, DeviceFacts,
    EnrollRequest, EnrollResponse, RenewRequest, RenewResponse,
};
use crate::state::{Enrollment, StateDir};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A server's refusal: the HTTP status and the problem document's `type` and `detail`.
#[derive(Debug, thiserror::Error)]
#[error("the server refused ({status}): {detail}")]
pub struct Refused {
    pub status: u16,
    pub problem_type: String,
    pub detail: String,
}

impl Refused {
    /// A refusal about the report itself (4xx other than 401, 403, 408 and 429): sending the
    /// same report again cannot succeed.
    pub fn is_final_for_report(&self) -> bool {
        (400..500).contains(&self.status) && ![401, 403, 408, 429].contains(&self.status)
    }

    /// The server no longer accepts this phone's identity (revoked, expired, or the phone was
    /// wiped and enrolled again elsewhere): nothing but a new enrollment helps.
    pub fn is_identity_refused(&self) -> bool {
        self.status == 401
    }
}

async fn refused(response: reqwest::Response) -> anyhow::Error {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    anyhow!(Refused {
        status,
        problem_type: body["type"].as_str().unwrap_or_default().to_string(),
        detail: body["detail"].as_str().unwrap_or("no detail").to_string(),
    })
}

/// The last certificate in a PEM chain: the root.
fn last_certificate(pem: &str) -> Option<Vec<u8>> {
    let at = pem.rfind("-----BEGIN CERTIFICATE-----")?;
    pem_to_der(&pem[at..])
}

/// Fetches the server's CA chain over an unverified connection and accepts it only if its root
/// has the fingerprint the token carries. No secret travels on that connection.
async fn pinned_chain(invite: &EnrollmentInvite) -> anyhow::Result<String> {
    let insecure = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .timeout(TIMEOUT)
        .build()?;
    let chain = insecure
        .get(format!("{}/agent/v1/ca", invite.url))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", invite.url))?
        .error_for_status()?
        .text()
        .await?;
    let root =
        last_certificate(&chain).ok_or_else(|| anyhow!("the server sent no CA certificate"))?;
    if fingerprint(&root) != invite.ca {
        bail!("the server's CA does not match the enrollment token; refusing to enroll with it");
    }
    Ok(chain)
}

/// How a phone's connections to the server live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// Kept open between requests (90 s idle): a phone that talks to the server often.
    KeepAlive,
    /// Kept only for a moment (2 s), so that a check-in and the answers to its commands share
    /// one, and the next check-in opens a new one: what a phone checking in every quarter of an
    /// hour does.
    Brief,
}

fn client_trusting(
    chain_pem: &str,
    identity: Option<reqwest::Identity>,
    connections: Connections,
) -> anyhow::Result<reqwest::Client> {
    let root = last_certificate(chain_pem)
        .ok_or_else(|| anyhow!("no CA certificate in the state directory"))?;
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&root)?)
        .timeout(TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90));
    if connections == Connections::Brief {
        builder = builder.pool_idle_timeout(Duration::from_secs(2));
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    Ok(builder.build()?)
}

/// A new P-256 key and a CSR for it. The key stays with the caller.
pub fn new_key_and_csr(name: &str) -> anyhow::Result<(KeyPair, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let csr = CertificateParams::new(vec![name.to_string()])?.serialize_request(&key)?;
    Ok((
        key,
        base64::engine::general_purpose::STANDARD.encode(csr.der()),
    ))
}

/// A phone's connection to the server after enrollment: its identity and the pinned CA.
#[derive(Debug, Clone)]
pub struct DeviceClient {
    pub server_url: String,
    http: reqwest::Client,
}

impl DeviceClient {
    /// `identity_pem` is the private key followed by the certificate chain.
    pub fn new(server_url: &str, identity_pem: &str, ca_chain_pem: &str) -> anyhow::Result<Self> {
        Self::with_connections(
            server_url,
            identity_pem,
            ca_chain_pem,
            Connections::KeepAlive,
        )
    }

    pub fn with_connections(
        server_url: &str,
        identity_pem: &str,
        ca_chain_pem: &str,
        connections: Connections,
    ) -> anyhow::Result<Self> {
        let identity = reqwest::Identity::from_pem(identity_pem.as_bytes())?;
        Ok(DeviceClient {
            server_url: server_url.trim_end_matches('/').to_string(),
            http: client_trusting(ca_chain_pem, Some(identity), connections)?,
        })
    }

    pub fn from_state(state: &StateDir) -> anyhow::Result<Self> {
        let enrollment = state
            .enrollment()?
            .ok_or_else(|| anyhow!("not enrolled: run `mdm-agent enroll` first"))?;
        Self::new(
            &enrollment.server_url,
            &state.identity_pem()?,
            &state.ca_chain()?,
        )
    }

    /// Posts to a device route; a refusal comes back as [`Refused`].
    async fn post(
        &self,
        route: &str,
        body: Option<&impl serde::Serialize>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self.http.post(format!("{}{route}", self.server_url));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server_url))?;
        if !response.status().is_success() {
            return Err(refused(response).await);
        }
        Ok(response)
    }

    pub async fn checkin(&self, report: &CheckinRequest) -> anyhow::Result<CheckinResponse> {
        Ok(self
            .post("/agent/v1/checkin", Some(report))
            .await?
            .json()
            .await?)
    }

    /// Reports how a command went.
    pub async fn command_result(&self, id: i64, result: &CommandResult) -> anyhow::Result<()> {
        self.post(&format!("/agent/v1/commands/{id}/result"), Some(result))
            .await
            .map(|_| ())
    }

    /// Whether the server accepts this device's certificate at the TLS level (no database).
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.post("/agent/v1/ping", None::<&()>).await.map(|_| ())
    }

    pub async fn renew(&self, csr: String) -> anyhow::Result<RenewResponse> {
        Ok(self
            .post("/agent/v1/renew", Some(&RenewRequest { csr }))
            .await?
            .json()
            .await?)
    }
}

/// Enrolls with an enrollment token: pins the CA, makes a key, sends the CSR and the facts.
/// Returns the server's answer and the private key (PEM).
pub async fn enroll_with(
    invite: &EnrollmentInvite,
    facts: &DeviceFacts,
) -> anyhow::Result<(EnrollResponse, String)> {
    let chain = pinned_chain(invite).await?;
    let http = client_trusting(&chain, None, Connections::Brief)?;
    let (key, csr) = new_key_and_csr(&facts.serial)?;
    let response = http
        .post(format!("{}/agent/v1/enroll", invite.url))
        .json(&EnrollRequest {
            token: invite.secret.clone(),
            csr,
            facts: facts.clone(),
        })
        .send()
        .await
        .with_context(|| format!("cannot reach {}", invite.url))?;
    if !response.status().is_success() {
        return Err(refused(response).await);
    }
    Ok((response.json().await?, key.serialize_pem()))
}

/// Enrolls and keeps the identity in the state directory.
pub async fn enroll(
    state: &StateDir,
    token: &str,
    facts: &DeviceFacts,
) -> anyhow::Result<Enrollment> {
    let invite = EnrollmentInvite::decode(token)?;
    let (response, key_pem) = enroll_with(&invite, facts).await?;
    state.save_identity(&key_pem, &response.certificate_pem, &response.ca_chain_pem)?;
    let enrollment = Enrollment {
        server_url: invite.url.clone(),
        ca_fingerprint: invite.ca.clone(),
        device_id: response.device_id,
        checkin_interval_seconds: response.checkin_interval_seconds,
    };
    state.save_enrollment(&enrollment)?;
    Ok(enrollment)
}

/// A new report of the current facts.
pub fn report(facts: &DeviceFacts) -> CheckinRequest {
    let mut id = [0u8; 12];
    rand::Rng::fill(&mut rand::thread_rng(), &mut id);
    CheckinRequest {
        report_id: hex::encode(id),
        reported_at: Utc::now(),
        facts: facts.clone(),
        policy_hash: None,
    }
}

/// One check-in: the current facts (as commands have changed them) are queued, then every
/// unacknowledged report is delivered in order, then the commands in the answer are carried
/// out and answered. Reports stay queued when the server cannot be reached.
///
/// After a wipe the state directory is empty and the phone must enroll again.
pub async fn checkin_once(
    state: &StateDir,
    facts: &DeviceFacts,
) -> anyhow::Result<CheckinResponse> {
    let answer = deliver_reports(state, &state.phone()?.facts(facts)).await?;
    let client = DeviceClient::from_state(state)?;
    let done = carry_out(state, &client, facts, &answer.commands).await?;
    if done.refresh && !done.wiped {
        // Asked for fresh information: report again at once.
        let fresh = report(&state.phone()?.facts(facts));
        client.checkin(&fresh).await?;
    }
    Ok(answer)
}

/// What carrying out a check-in's commands led to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    pub wiped: bool,
    pub refresh: bool,
}

/// A refusal that answering again cannot change: the server knows the command's outcome
/// already, or never sent it.
fn answer_settled(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>()
        .is_some_and(|r| matches!(r.status, 404 | 409))
}

/// Carries out commands in order and reports each answer. A command seen before (delivery is
/// at least once) is answered from the log without acting again. Answers the server has not
/// stored yet (the network failed) go first. A wipe is answered, then the state directory is
/// erased.
pub async fn carry_out(
    state: &StateDir,
    client: &DeviceClient,
    base: &DeviceFacts,
    commands: &[DeviceCommand],
) -> anyhow::Result<Carried> {
    let mut log = state.answers()?;
    for command in commands {
        if let Some(known) = log.answers.get_mut(&command.id) {
            // A repeat: answer again from the log.
            known.reported = false;
            continue;
        }
        let mut phone = state.phone()?;
        let result = phone.execute(base, &command.action);
        state.save_phone(&phone)?;
        let wipe = command.action == CommandAction::Wipe;
        log.remember(
            command.id,
            Answer {
                result,
                wipe,
                reported: false,
            },
        );
        state.save_answers(&log)?;
        if wipe {
            // Nothing after a wipe runs: the phone is about to be erased.
            break;
        }
    }
    let mut carried = Carried {
        refresh: commands
            .iter()
            .any(|c| c.action == CommandAction::RefreshInformation),
        ..Carried::default()
    };
    // A wipe's answer goes last: after it the phone is erased.
    let mut todo = log.unreported();
    todo.sort_by_key(|(_, answer)| answer.wipe);
    for (id, answer) in todo {
        match client.command_result(id, &answer.result).await {
            Ok(()) => {}
            Err(e) if answer_settled(&e) => {}
            Err(e) => {
                state.save_answers(&log)?;
                return Err(e);
            }
        }
        if let Some(a) = log.answers.get_mut(&id) {
            a.reported = true;
        }
        state.save_answers(&log)?;
        if answer.wipe && answer.result.status == crate::protocol::CommandStatus::Acknowledged {
            state.erase()?;
            carried.wiped = true;
            return Ok(carried);
        }
    }
    Ok(carried)
}

/// Queues the current facts and delivers every unacknowledged report in order. The answer is
/// the last one, carrying the commands of every answer: the server marks a command sent when an
/// answer hands it out, so a command in an earlier answer of the backlog is not handed out
/// again by a later one. When a report after the first fails, what the answers so far handed
/// out is still carried out, and the rest of the backlog waits for the next check-in.
async fn deliver_reports(state: &StateDir, facts: &DeviceFacts) -> anyhow::Result<CheckinResponse> {
    state.enqueue(&report(facts))?;
    let client = DeviceClient::from_state(state)?;
    let mut merged: Option<CheckinResponse> = None;
    for (path, mut report) in state.pending()? {
        // The policy held now, not when the report was queued.
        // An unreadable policy file means the phone has none; the server sends it again.
        report.policy_hash = state.policy().ok().flatten().map(|p| p.hash);
        let answer = match client.checkin(&report).await {
            Ok(answer) => answer,
            Err(e) => {
                // The server read the report and will never take it (it contradicts the
                // record, is malformed or too large): set it aside so it cannot block the
                // reports after it.
                if e.downcast_ref::<Refused>()
                    .is_some_and(Refused::is_final_for_report)
                {
                    state.set_aside(&path)?;
                }
                match merged {
                    None => return Err(e),
                    Some(answer) => {
                        tracing::warn!(error = %e, "a queued report was not delivered; it goes with the next check-in");
                        return Ok(answer);
                    }
                }
            }
        };
        if let Some(policy) = &answer.policy {
            state.save_policy(policy)?;
        }
        if answer.acknowledged == report.report_id {
            state.acknowledge(&path)?;
        }
        merged = Some(match merged {
            None => answer,
            Some(earlier) => with_earlier_commands(earlier, answer),
        });
    }
    merged.ok_or_else(|| anyhow!("nothing was sent"))
}

/// `later` with the commands of `earlier` before its own, each command once.
fn with_earlier_commands(earlier: CheckinResponse, mut later: CheckinResponse) -> CheckinResponse {
    let mut commands = earlier.commands;
    for command in later.commands {
        if !commands.iter().any(|c| c.id == command.id) {
            commands.push(command);
        }
    }
    later.commands = commands;
    later.policy = later.policy.or(earlier.policy);
    later
}

/// Renews the certificate with a new key: the old certificate stops working once the server
/// has issued the new one.
pub async fn renew(state: &StateDir) -> anyhow::Result<()> {
    let client = DeviceClient::from_state(state)?;
    let enrollment = state.enrollment()?.ok_or_else(|| anyhow!("not enrolled"))?;
    let (key, csr) = new_key_and_csr(&format!("device {}", enrollment.device_id))?;
    let renewed = client.renew(csr).await?;
    state.save_identity(
        &key.serialize_pem(),
        &renewed.certificate_pem,
        &renewed.ca_chain_pem,
    )
}

/// Whether the certificate in the state directory is due for renewal at `now` (seconds).
pub fn renewal_due(state: &StateDir, now: i64) -> anyhow::Result<bool> {
    let pem = state.identity_pem()?;
    let (not_before, not_after) = enrollment::ca::certificate_validity(&pem)
        .ok_or_else(|| anyhow!("no certificate in the state directory"))?;
    Ok(crate::schedule::should_renew(not_before, not_after, now))
}
