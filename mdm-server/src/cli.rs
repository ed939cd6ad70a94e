//! The command line: serve, migrate, bootstrap accounts, import devices, verify the audit
//! trail, back up. Every command reads the same configuration as the server.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::auth::new_credentials;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::audit::{AuditEvent, ChainVerifier};
use crate::domain::contact::Email;
use crate::domain::organisation::{parse_name, OrgKind};
use crate::domain::role::Role;
use crate::import::{import_csv, ImportError, ImportPhase};
use crate::server::{self, StartOptions};
use crate::store::NewAccount;

#[derive(Debug, Parser)]
#[command(
    name = "mdm-server",
    version,
    about = "Municipal phone-fleet MDM server"
)]
pub struct Cli {
    /// A TOML configuration file; MDM_* environment variables override it.
    #[arg(long, global = true, env = "MDM_CONFIG_FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (migrations are applied first).
    Serve {
        /// Demo mode: demo data and printed logins, no second factor. Never for real use.
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manage the device inventory.
    Devices {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Work with the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write a consistent copy of the SQLite database to FILE while the server runs.
    Backup { file: PathBuf },
    /// The operator's MDM push certificate from Apple's push certificates portal.
    PushCertificate {
        #[command(subcommand)]
        command: PushCertificateCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PushCertificateCommand {
    /// Show the push certificate's topic, subject and expiry.
    Show,
    /// Check and keep a push certificate: a PEM certificate with its PEM key, or a .p12 file.
    Upload {
        /// The PEM certificate (with --key).
        #[arg(long, requires = "key", conflicts_with = "p12")]
        cert: Option<PathBuf>,
        /// The PEM private key of --cert.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// A .p12 file holding certificate and key.
        #[arg(long, required_unless_present = "cert")]
        p12: Option<PathBuf>,
        /// The .p12 file's password (read from the environment so it stays out of `ps`).
        #[arg(
            long,
            env = "MDM_PUSH_P12_PASSWORD",
            hide_env_values = true,
            default_value = ""
        )]
        password: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an account and print its one-time password and TOTP enrolment URI.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// operator_admin, operator_staff, provider_admin or provider_user.
        #[arg(long, default_value = "operator_admin")]
        role: String,
        /// The provider's id, for provider roles.
        #[arg(long)]
        provider_id: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Import a supplier's delivery list (CSV with the columns
    /// serial,imei,platform,model,purchase_date,warranty_end,supplier).
    Import { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain and name the first broken entry.
    Verify,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An event done from this machine's command line.
fn cli_event(
    action: &str,
    target_kind: &str,
    org_id: Option<i64>,
    details: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        org_id,
        source: Some("local".into()),
        target_kind: Some(target_kind.into()),
        details: details.to_string(),
        ..AuditEvent::unattended("cli", action)
    }
}

/// Runs one command. Output goes to stdout; errors come back to `main`, which prints them and
/// exits non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { demo } => serve(config, demo).await,
        Command::Migrate => {
            let store = server::open_store(&config).await?;
            println!("migrations applied ({})", store.backend_name());
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::CreateUser {
                    email,
                    name,
                    role,
                    provider_id,
                },
        } => create_user(config, &email, &name, &role, provider_id).await,
        Command::Devices {
            command: DeviceCommand::Import { file },
        } => import_devices(config, &file).await,
        Command::Audit {
            command: AuditCommand::Verify,
        } => verify_audit(config).await,
        Command::Backup { file } => backup(config, &file).await,
        Command::PushCertificate { command } => push_certificate(config, command).await,
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MDM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour codes only for a person at a terminal, never into a file or a journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    init_logging(config.log_json);
    let listen = config.listen;
    let (api, devices, device_url) = server::bind(&config).await?;
    let device_addr = devices.local_addr()?;
    let options = StartOptions {
        demo,
        clock: Clock::System,
    };
    let state = server::build_state_for(config, options, device_url).await?;
    if demo {
        crate::demo::check_installation(&state).await?;
        let logins = crate::demo::seed(&state).await?;
        print!("{}", crate::demo::banner(&logins, listen));
    }
    tracing::info!(
        address = %listen,
        devices = %device_addr,
        backend = state.store.backend_name(),
        ca = %state.ca.root_fingerprint(),
        demo,
        "mdm-server listening"
    );
    server::run_until_interrupted(state, api, devices).await
}

async fn create_user(
    config: Config,
    email: &str,
    name: &str,
    role: &str,
    provider_id: Option<i64>,
) -> anyhow::Result<()> {
    let email = Email::parse(email)?;
    let name = parse_name("name", name)?;
    let role = Role::parse(role)?;
    let store = server::open_store(&config).await?;
    let now = Clock::System.now();
    let operator = store.ensure_operator(&config.operator_name, now).await?;
    let org = match (role.is_operator(), provider_id) {
        (true, None) => operator,
        (true, Some(_)) => bail!("operator roles belong to the operator; leave out --provider-id"),
        (false, None) => bail!("provider roles need --provider-id"),
        (false, Some(id)) => {
            let org = store
                .organisation(id)
                .await
                .with_context(|| format!("no provider with id {id}"))?;
            if org.kind != OrgKind::Provider {
                bail!("organisation {id} is not a provider");
            }
            org
        }
    };
    let issued = new_credentials(email.as_str(), &config.operator_name);
    let account = NewAccount {
        org_id: org.id,
        email: email.to_string(),
        display_name: name,
        role,
        password_hash: crate::auth::hash_password(&issued.one_time_password),
        must_change_password: true,
        totp_secret: Some(issued.totp_secret),
    };
    let event = cli_event(
        "account.create",
        "account",
        Some(org.id),
        serde_json::json!({ "email": account.email, "role": role.as_str() }),
    );
    let created = store.create_account(&account, now, event).await?;
    println!(
        "created account {} ({}) in {}",
        created.email,
        role.as_str(),
        org.name
    );
    println!("one-time password: {}", issued.one_time_password);
    println!(
        "TOTP enrolment URI (scan or paste into an authenticator app): {}",
        issued.totp_uri
    );
    println!("The password must be changed at first login.");
    Ok(())
}

async fn push_certificate(config: Config, command: PushCertificateCommand) -> anyhow::Result<()> {
    use crate::flows::apple::{upload_push_certificate, PushUpload};
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let ca =
        ::enrollment::DeviceCa::load_or_create(&config.data_dir.join("ca"), &config.operator_name)?;
    let kept = match command {
        PushCertificateCommand::Show => ca
            .push_certificate()?
            .context("no MDM push certificate has been uploaded")?,
        PushCertificateCommand::Upload {
            cert,
            key,
            p12,
            password,
        } => {
            let upload = match (cert, key, p12) {
                (Some(cert), Some(key), None) => PushUpload::Pem {
                    certificate: String::from_utf8_lossy(&read(&cert)?).into_owned(),
                    key: String::from_utf8_lossy(&read(&key)?).into_owned(),
                },
                (None, None, Some(p12)) => PushUpload::Pkcs12 {
                    der: read(&p12)?,
                    password,
                },
                _ => bail!("give either --cert with --key, or --p12"),
            };
            let store = server::open_store(&config).await?;
            let event = cli_event(
                "push_certificate.upload",
                "push_certificate",
                None,
                serde_json::Value::Null,
            );
            upload_push_certificate(&ca, store.as_ref(), &upload, Clock::System.now(), event)
                .await?
        }
    };
    println!("topic: {}", kept.topic);
    println!("subject: {}", kept.subject);
    println!("runs out: {}", kept.not_after.date());
    Ok(())
}

async fn import_devices(config: Config, file: &std::path::Path) -> anyhow::Result<()> {
    let reader =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let rows = std::fs::read_to_string(file)
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0);
    let store = server::open_store(&config).await?;
    let bar = indicatif::ProgressBar::new(rows as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} rows")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |phase: ImportPhase, n: u64| {
        bar.set_message(match phase {
            ImportPhase::Checking => "checking",
            ImportPhase::Writing => "writing",
        });
        bar.set_position(n);
    };
    let event = cli_event(
        "device.import",
        "device",
        None,
        serde_json::json!({ "file": file.display().to_string() }),
    );
    let result = import_csv(
        reader,
        store.as_ref(),
        Clock::System.now(),
        event,
        &progress,
    )
    .await;
    bar.finish_and_clear();
    match result {
        Ok(summary) => {
            println!(
                "imported {} new device(s); {} already registered",
                summary.inserted, summary.already_present
            );
            Ok(())
        }
        Err(ImportError::Rows(errors)) => {
            for e in &errors {
                eprintln!("line {}: {}", e.line, e.reason);
            }
            bail!(
                "{}; nothing was imported",
                crate::import::rows_at_fault(&errors)
            )
        }
        Err(e) => Err(e.into()),
    }
}

async fn verify_audit(config: Config) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut verifier = ChainVerifier::default();
    let mut after = 0;
    // Entries written after the head was read belong to the next verification.
    while after < head_seq {
        let page = store.audit_page(None, after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in page.iter().filter(|e| e.seq <= head_seq) {
            if let Err(broken) = verifier.check(entry) {
                bail!(
                    "audit trail broken at entry {}: {}",
                    broken.seq,
                    broken.reason
                );
            }
        }
    }
    match verifier.finish(head_seq, &head_hash) {
        Ok(count) => {
            println!("audit trail intact: {count} entries verified");
            Ok(())
        }
        Err(broken) => bail!(
            "audit trail broken at entry {}: {}",
            broken.seq,
            broken.reason
        ),
    }
}

async fn backup(config: Config, file: &std::path::Path) -> anyhow::Result<()> {
    if file.exists() {
        bail!("{} already exists; choose a new file name", file.display());
    }
    let store = crate::store::open(&config.database_url()).await?;
    store.backup_to(file).await?;
    println!("backup written to {}", file.display());
    Ok(())
}
