//! Notice benchmark: an unplanned disruption to 300 providers with 3 IT contacts each, by e-mail
//! and SMS, on SQLite and on PostgreSQL. It times the API request until every message has been
//! handed to a local SMTP server and SMS gateway stand-in (900 e-mails and 900 SMS).
//!
//! The baseline, measured in the same run against the same SMTP server and gateway, hands the
//! same 1,800 messages over directly (lettre and reqwest with the same concurrency, no database):
//! the cost of the transport alone. The ratio is baseline time / server time (1.0 would mean the
//! outbox adds nothing). Nothing is asserted about time.
//!
//! `cargo bench -p mdm-tests --bench notices` (PostgreSQL needs `TEST_POSTGRES_URL`;
//! `BENCH_BACKENDS=sqlite` picks the backends).

use chrono::Utc;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mdm_server::clock::Clock;
use mdm_server::domain::audit::AuditEvent;
use mdm_server::domain::contact::ItContact;
use mdm_server::domain::organisation::{ContractPeriod, OrgNumber};
use mdm_server::domain::role::Role;
use mdm_server::store::NewProvider;
use mdm_tests::sinks::{GatewayStandIn, SmtpSink, SMS_PASSWORD, SMS_USER};
use mdm_tests::{Backend, TestApp, POSTGRES_ENV};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const PROVIDERS: u32 = 300;
const CONTACTS: u32 = 3;
/// The server's default number of deliveries in flight; the baseline uses the same.
const CONCURRENCY: usize = 16;

fn event(action: &str) -> AuditEvent {
    AuditEvent::unattended("bench", action)
}

/// A valid organisation number for `n` (Luhn check digit over the ten digits).
fn org_number(n: u32) -> OrgNumber {
    // The third digit is at least 2 for a legal entity.
    let body = format!("55{:07}", 2_000_000 + n);
    let digit = mdm_server::domain::luhn::check_digit(&body);
    OrgNumber::parse(&format!("{}-{}{digit}", &body[..6], &body[6..])).expect("org number")
}

async fn run(backend: Backend) {
    let name = format!("{backend:?}").to_lowercase();
    if backend == Backend::Postgres && std::env::var(POSTGRES_ENV).is_err() {
        println!("{name:<8} skipped (set {POSTGRES_ENV})");
        return;
    }
    let smtp = SmtpSink::start();
    let gateway = GatewayStandIn::start().await;
    let config = format!(
        "[notifications]\nsmtp_url = \"{}\"\nmail_from = \"it@kommun.example\"\n{}",
        smtp.url(),
        gateway.config()
    );
    let app = TestApp::spawn_configured(backend, &config, Clock::System).await;
    let store = app.server.state.store.clone();
    let now = Utc::now();
    let setup = Instant::now();
    for p in 0..PROVIDERS {
        let contacts = (0..CONTACTS)
            .map(|c| {
                ItContact::parse(
                    &format!("Kontakt {c}"),
                    &format!("it{c}@utforare{p}.example"),
                    &format!("+4670{:07}", p * 10 + c),
                )
                .expect("contact")
            })
            .collect();
        store
            .create_provider(
                &NewProvider {
                    name: format!("Utförare {p}"),
                    org_number: org_number(p),
                    contract: ContractPeriod::new("2024-01-01".parse().expect("date"), None)
                        .expect("contract"),
                    it_contacts: contacts,
                },
                now,
                event("provider.create"),
            )
            .await
            .expect("provider");
    }
    let token = mdm_tests::store_api_token(&app, Role::OperatorStaff).await;
    let setup = setup.elapsed();
    let messages = (PROVIDERS * CONTACTS) as usize;

    let baseline_before = baseline(&smtp, &gateway, messages).await;
    let (mails_before, sms_before) = (smtp.received().len(), gateway.accepted().len());

    let started = Instant::now();
    let r = app
        .post(
            "/api/v1/disruptions",
            &token,
            serde_json::json!({ "title": "Nyckelappen når inte servern", "systems": ["Nyckelappen"] }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let answered = started.elapsed();
    smtp.wait_for(mails_before + messages, Duration::from_secs(600))
        .await;
    gateway
        .wait_for_accepted(sms_before + messages, Duration::from_secs(600))
        .await;
    let server_time = started.elapsed();

    let baseline_after = baseline(&smtp, &gateway, messages).await;
    let baseline_time = (baseline_before + baseline_after) / 2;
    let total = 2 * messages;
    println!(
        "{name:<8} {PROVIDERS} providers x {CONTACTS} contacts, e-mail + SMS = {total} messages \
         (setup {:.1} s)\n         request answered in {} ms; all handed over in {:.2} s \
         ({:.0} messages/s)\n         baseline (direct hand-over, same transports): {:.2} s \
         ({:.2} s before, {:.2} s after)\n         ratio baseline/server: {:.2}",
        setup.as_secs_f64(),
        answered.as_millis(),
        server_time.as_secs_f64(),
        total as f64 / server_time.as_secs_f64(),
        baseline_time.as_secs_f64(),
        baseline_before.as_secs_f64(),
        baseline_after.as_secs_f64(),
        baseline_time.as_secs_f64() / server_time.as_secs_f64(),
    );
    app.server.stop().await.expect("stop");
}

/// Hands `n` e-mails and `n` SMS straight to the SMTP server and the gateway, `CONCURRENCY` at
/// a time, as the outbox workers do but without a database.
async fn baseline(smtp: &SmtpSink, gateway: &GatewayStandIn, n: usize) -> Duration {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp.addr.port())
        .build();
    let http = reqwest::Client::new();
    let sms_url = format!("http://{}/a1/sms", gateway.addr);
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (transport, http, sms_url) = (transport.clone(), http.clone(), sms_url.clone());
        let (mail_permits, sms_permits) = (permits.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = mail_permits.acquire_owned().await;
            let mail = Message::builder()
                .from("it@kommun.example".parse().expect("from"))
                .to(format!("baseline{i}@utforare.example").parse().expect("to"))
                .subject("Driftstörning: Nyckelappen når inte servern")
                .body("Vi har en driftstörning som påverkar era tjänster.".to_string())
                .expect("message");
            transport.send(mail).await.expect("baseline e-mail");
        });
        tasks.spawn(async move {
            let _permit = sms_permits.acquire_owned().await;
            let r = http
                .post(&sms_url)
                .basic_auth(SMS_USER, Some(SMS_PASSWORD))
                .form(&[
                    ("from", "Kommunen"),
                    ("to", "+46700000000"),
                    ("message", "Driftstörning"),
                ])
                .send()
                .await
                .expect("baseline SMS");
            assert!(r.status().is_success());
        });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    runtime.block_on(async {
        for backend in backends.split(',') {
            match backend.trim() {
                "sqlite" => run(Backend::Sqlite).await,
                "postgres" => run(Backend::Postgres).await,
                other => println!("unknown backend {other}"),
            }
        }
    });
}
