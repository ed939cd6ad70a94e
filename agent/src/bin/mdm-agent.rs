//! `mdm-agent`: enroll this machine as a phone, check in, show status, or run a swarm.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent::client::{checkin_once, enroll, renew, renewal_due};
use agent::device_file::DeviceDescription;
use agent::schedule::{backoff, next_checkin};
use agent::state::StateDir;
use agent::swarm::{checkin_rounds, enroll_all, parse_swarm_file};

#[derive(Debug, Parser)]
#[command(
    name = "mdm-agent",
    version,
    about = "The municipal MDM's device agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll with an enrollment token (the text of the QR code).
    Enroll {
        #[arg(long)]
        token: String,
        #[arg(long)]
        state_dir: PathBuf,
        /// The device description file (TOML) with this phone's facts.
        #[arg(long)]
        device: PathBuf,
    },
    /// Check in at the server's interval until stopped; renews the certificate when due.
    Run {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        device: PathBuf,
        /// Check in once and exit (non-zero if the server could not be reached).
        #[arg(long)]
        once: bool,
    },
    /// Show the enrollment and what waits to be delivered.
    Status {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Renew the device certificate now.
    Renew {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Run many simulated phones: enroll them all, then check each in a number of times.
    Swarm {
        /// One phone a line: token,serial,imei,platform,model.
        #[arg(long)]
        phones: PathBuf,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MDM_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Cli::parse())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Enroll {
            token,
            state_dir,
            device,
        } => {
            let facts = DeviceDescription::load(&device)?.facts();
            let state = StateDir::open(&state_dir)?;
            let enrollment = enroll(&state, &token, &facts).await?;
            println!(
                "enrolled as device {} with {}",
                enrollment.device_id, enrollment.server_url
            );
            Ok(())
        }
        Command::Run {
            state_dir,
            device,
            once,
        } => {
            let state = StateDir::open(&state_dir)?;
            let mut failures = 0u32;
            loop {
                let facts = DeviceDescription::load(&device)?.facts();
                let wait = match checkin_once(&state, &facts).await {
                    Ok(answer) => {
                        failures = 0;
                        if let Some(policy) = &answer.policy {
                            println!("policy {} applied", policy.hash);
                        }
                        for command in &answer.commands {
                            println!("command {}: {:?}", command.id, command.action);
                        }
                        if state.enrollment()?.is_none() {
                            println!("this phone was wiped by municipal IT; enroll it again");
                            return Ok(());
                        }
                        if let Some(lock) = state.phone()?.lock_screen {
                            println!(
                                "{}: {} {}",
                                if lock.lost_mode {
                                    "lost mode"
                                } else {
                                    "locked"
                                },
                                lock.message.unwrap_or_default(),
                                lock.phone_number.unwrap_or_default()
                            );
                        }
                        // The phone's screen shows these; here they go to the terminal.
                        for notice in &answer.notices {
                            let ends = notice.ends_at.map_or_else(
                                || "until further notice".to_string(),
                                |t| t.to_rfc3339(),
                            );
                            println!(
                                "notice: [{}] {} ({}) {} - {ends}",
                                notice.kind,
                                notice.title,
                                notice.status,
                                notice.starts_at.to_rfc3339()
                            );
                        }
                        // A failed renewal is tried again at the next check-in; the certificate
                        // still has most of a third of its year left.
                        match renewal_due(&state, chrono::Utc::now().timestamp()) {
                            Ok(true) => match renew(&state).await {
                                Ok(()) => tracing::info!("certificate renewed"),
                                Err(e) => {
                                    tracing::warn!(error = %e, "certificate renewal failed; will retry")
                                }
                            },
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read the certificate's validity")
                            }
                        }
                        if once {
                            println!(
                                "checked in; next check-in in {} s",
                                answer.next_checkin_seconds
                            );
                            return Ok(());
                        }
                        next_checkin(
                            Duration::from_secs(answer.next_checkin_seconds),
                            rand::random(),
                        )
                    }
                    Err(e) if once => return Err(e),
                    Err(e)
                        if e.downcast_ref::<agent::client::Refused>()
                            .is_some_and(agent::client::Refused::is_identity_refused) =>
                    {
                        return Err(e.context(
                            "the server no longer accepts this phone's identity (revoked or expired): \
                             enroll it again with a new token; its unsent reports are kept",
                        ));
                    }
                    Err(e) => {
                        failures += 1;
                        let wait = backoff(failures, rand::random());
                        tracing::warn!(error = %e, retry_in = ?wait, "check-in failed; reports are kept");
                        wait
                    }
                };
                tokio::time::sleep(wait).await;
            }
        }
        Command::Status { state_dir } => {
            let state = StateDir::open(&state_dir)?;
            match state.enrollment()? {
                None => println!("not enrolled"),
                Some(e) => {
                    println!("device {} at {}", e.device_id, e.server_url);
                    println!("CA fingerprint {}", e.ca_fingerprint);
                    if let Some((_, not_after)) =
                        enrollment::ca::certificate_validity(&state.identity_pem()?)
                    {
                        let until =
                            chrono::DateTime::from_timestamp(not_after, 0).unwrap_or_default();
                        println!("certificate valid until {until}");
                    }
                }
            }
            println!(
                "{} report(s) waiting to be delivered",
                state.pending()?.len()
            );
            Ok(())
        }
        Command::Renew { state_dir } => {
            renew(&StateDir::open(&state_dir)?).await?;
            println!("certificate renewed");
            Ok(())
        }
        Command::Swarm {
            phones,
            rounds,
            concurrency,
        } => {
            let text = std::fs::read_to_string(&phones)
                .with_context(|| format!("cannot read {}", phones.display()))?;
            let phones = parse_swarm_file(&text)?;
            let bar = indicatif::ProgressBar::new(phones.len() as u64);
            bar.set_message("enrolling");
            let tick = || bar.inc(1);
            let enrolled = enroll_all(phones, concurrency, &tick).await?;
            bar.finish_and_clear();
            println!("{} phones enrolled", enrolled.len());
            let report = checkin_rounds(&enrolled, rounds, concurrency).await;
            println!(
                "{} check-ins ({} failed) in {:.1} s: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
                report.checkins,
                report.failures,
                report.elapsed.as_secs_f64(),
                report.per_second(),
                report.percentile(0.5).as_secs_f64() * 1000.0,
                report.percentile(0.99).as_secs_f64() * 1000.0
            );
            Ok(())
        }
    }
}
