//! Many simulated phones in one process, each with its own key and certificate, for load tests
//! and demos.

use futures::stream::{self, StreamExt};
use std::time::{Duration, Instant};

use crate::client::{enroll_with, report, Connections, DeviceClient};
use crate::phone::PhoneState;
use crate::protocol::{CommandResult, DeviceCommand, DeviceFacts, InstalledApp, PinState};
use crate::AGENT_VERSION;
use enrollment::EnrollmentInvite;
use std::collections::BTreeMap;

/// One simulated phone: its enrollment token and the identifiers registered for it.
#[derive(Clone)]
pub struct SwarmPhone {
    pub token: String,
    pub facts: DeviceFacts,
}

impl std::fmt::Debug for SwarmPhone {
    // The token is a secret: it stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmPhone")
            .field("serial", &self.facts.serial)
            .finish_non_exhaustive()
    }
}

/// Reads the swarm file: one phone a line, `token,serial,imei,platform,model`.
pub fn parse_swarm_file(text: &str) -> anyhow::Result<Vec<SwarmPhone>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, line)| {
            let parts: Vec<&str> = line.split(',').map(str::trim).collect();
            let [token, serial, imei, platform, model] = parts[..] else {
                anyhow::bail!("line {}: expected token,serial,imei,platform,model", i + 1);
            };
            Ok(SwarmPhone {
                token: token.to_string(),
                facts: simulated_facts(serial, imei, platform, model),
            })
        })
        .collect()
}

/// A plausible phone with the given identifiers.
pub fn simulated_facts(serial: &str, imei: &str, platform: &str, model: &str) -> DeviceFacts {
    DeviceFacts {
        platform: platform.to_string(),
        model: model.to_string(),
        os_version: if platform == "ios" {
            "18.1".into()
        } else {
            "14".into()
        },
        serial: serial.to_string(),
        imei: imei.to_string(),
        iccid: None,
        phone_number: None,
        battery_percent: Some(80),
        storage_free_bytes: Some(40_000_000_000),
        storage_total_bytes: Some(128_000_000_000),
        installed_apps: vec![InstalledApp {
            id: "se.kommun.tidsregistrering".into(),
            version: "3.4.0".into(),
        }],
        pin: PinState {
            set: true,
            length: Some(6),
            numeric: Some(true),
            by_profile: None,
        },
        disk_encrypted: true,
        mobile_data_bytes_this_month: Some(1_500_000_000),
        agent_version: AGENT_VERSION.to_string(),
    }
}

/// An enrolled simulated phone.
#[derive(Debug, Clone)]
pub struct EnrolledPhone {
    pub client: DeviceClient,
    pub facts: DeviceFacts,
    /// The hash of the policy this phone was sent last.
    pub policy_hash: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// What commands did to this phone, and the answers it gave, by command id.
    pub commands: std::sync::Arc<std::sync::Mutex<SwarmCommands>>,
}

/// A simulated phone's commands: its state and its answers (kept in memory).
#[derive(Debug, Default)]
pub struct SwarmCommands {
    pub phone: PhoneState,
    pub answers: BTreeMap<i64, CommandResult>,
    /// Commands carried out (a repeat is answered from `answers` and not counted).
    pub executed: usize,
}

impl EnrolledPhone {
    fn lock_commands(&self) -> std::sync::MutexGuard<'_, SwarmCommands> {
        self.commands.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Carries out the commands of a check-in answer and reports each answer.
    pub async fn answer_commands(&self, commands: &[DeviceCommand]) -> anyhow::Result<()> {
        for command in commands {
            let result = {
                let mut state = self.lock_commands();
                match state.answers.get(&command.id) {
                    Some(known) => known.clone(),
                    None => {
                        let result = state.phone.execute(&self.facts, &command.action);
                        state.answers.insert(command.id, result.clone());
                        state.executed += 1;
                        result
                    }
                }
            };
            self.client.command_result(command.id, &result).await?;
        }
        Ok(())
    }

    /// How many commands this phone has carried out.
    pub fn executed(&self) -> usize {
        self.lock_commands().executed
    }
}

/// Enrolls every phone, `concurrency` at a time; `progress` hears each one done.
pub async fn enroll_all(
    phones: Vec<SwarmPhone>,
    concurrency: usize,
    progress: &(dyn Fn() + Sync),
) -> anyhow::Result<Vec<EnrolledPhone>> {
    enroll_all_with(phones, concurrency, Connections::KeepAlive, progress).await
}

/// Like [`enroll_all`], with the phones' connections living as `connections` says.
pub async fn enroll_all_with(
    phones: Vec<SwarmPhone>,
    concurrency: usize,
    connections: Connections,
    progress: &(dyn Fn() + Sync),
) -> anyhow::Result<Vec<EnrolledPhone>> {
    let results: Vec<anyhow::Result<EnrolledPhone>> = stream::iter(phones)
        .map(|phone| async move {
            let invite = EnrollmentInvite::decode(&phone.token)?;
            let (answer, key_pem) = enroll_with(&invite, &phone.facts).await?;
            let identity = format!("{key_pem}{}", answer.certificate_pem);
            let client = DeviceClient::with_connections(
                &invite.url,
                &identity,
                &answer.ca_chain_pem,
                connections,
            )?;
            progress();
            Ok(EnrolledPhone {
                client,
                facts: phone.facts,
                policy_hash: Default::default(),
                commands: Default::default(),
            })
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// What a round of check-ins measured.
#[derive(Debug, Clone)]
pub struct SwarmReport {
    pub checkins: usize,
    pub failures: usize,
    pub elapsed: Duration,
    /// Sorted.
    pub latencies: Vec<Duration>,
}

impl SwarmReport {
    pub fn per_second(&self) -> f64 {
        self.checkins as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index]
    }
}

/// What each simulated phone sends in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A full check-in: certificate looked up, facts checked and stored.
    Checkin,
    /// A ping the TLS layer answers alone: the ceiling for check-ins.
    Ping,
}

/// Every phone checks in `rounds` times, `concurrency` requests in flight at once.
pub async fn checkin_rounds(
    phones: &[EnrolledPhone],
    rounds: usize,
    concurrency: usize,
) -> SwarmReport {
    rounds_of(Request::Checkin, phones, rounds, concurrency).await
}

/// Every phone sends `rounds` requests of one kind, `concurrency` in flight at once.
pub async fn rounds_of(
    kind: Request,
    phones: &[EnrolledPhone],
    rounds: usize,
    concurrency: usize,
) -> SwarmReport {
    let started = Instant::now();
    let jobs = (0..rounds).flat_map(|_| phones.iter());
    let outcomes: Vec<Option<Duration>> = stream::iter(jobs)
        .map(|phone| async move {
            let t = Instant::now();
            let outcome = match kind {
                Request::Checkin => {
                    let mut request = report(&phone.facts);
                    request.policy_hash = phone
                        .policy_hash
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    match phone.client.checkin(&request).await {
                        Ok(answer) => {
                            if let Some(policy) = answer.policy {
                                *phone.policy_hash.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(policy.hash);
                            }
                            phone.answer_commands(&answer.commands).await
                        }
                        Err(e) => Err(e),
                    }
                }
                Request::Ping => phone.client.ping().await,
            };
            outcome.ok().map(|()| t.elapsed())
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut latencies: Vec<Duration> = outcomes.iter().flatten().copied().collect();
    latencies.sort();
    SwarmReport {
        checkins: latencies.len(),
        failures: outcomes.len() - latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}
