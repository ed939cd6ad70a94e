//! A fleet of simulated iPhones woken through the APNs stand-in, on SQLite and PostgreSQL. The
//! server runs in this process with the stand-in as its push endpoint (one HTTP/2 connection,
//! TLS with the push certificate); the iPhones are the swarm of `mdm_tests::iphone_swarm`.
//!
//! 1. Enrolment of the fleet (SCEP, `Authenticate`, `TokenUpdate`, the standard profile and the
//!    inventory questions of a new phone): phones per second.
//! 2. Pushes per second: the server's pusher waking every phone, against the stand-in's raw
//!    rate (the same number of pushes from one HTTP/2 client with the same certificate, as
//!    fast as the stand-in takes them) measured in the same run. Ratio = pusher / raw.
//! 3. A command to every phone (a provider fan-out) until every one has acknowledged: pushes,
//!    connects, answers. Baseline, in the same run: one round of `Idle` connects of the same
//!    phones with nothing to collect. Ratio = fan-out / that round.
//!
//! Idle connects per second against the device listener's ceiling, with the server's CPU per
//! connect, are measured with the server in a process of its own: `BENCH_IPHONES=10000 cargo
//! bench -p mdm-tests --bench checkins`.
//!
//! Nothing is asserted about time: figures are printed.
//!
//! `cargo bench -p mdm-tests --bench iphone_fleet` (PostgreSQL needs `TEST_POSTGRES_URL`;
//! `BENCH_BACKENDS=sqlite` picks the backends; `BENCH_IPHONE_FLEET` the fleet size, 10,000 by
//! default).

use futures::StreamExt;
use mdm_tests::apns::{ApnsStandIn, TOPIC};
use mdm_tests::iphone_swarm::{IphoneSwarm, Target};
use mdm_tests::{Backend, TestApp, ORG_A, POSTGRES_ENV};
use serde_json::json;
use std::time::{Duration, Instant};

fn size(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Waits until the stand-in has received `total` pushes; the time it took.
async fn pushes_reach(apns: &ApnsStandIn, total: usize, started: Instant) -> Duration {
    loop {
        if apns.received().len() >= total {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `count` pushes straight from one HTTP/2 client presenting the push certificate.
async fn raw_pushes(apns: &ApnsStandIn, identity_pem: &str, count: usize) -> Duration {
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .http2_prior_knowledge()
        .identity(reqwest::Identity::from_pem(identity_pem.as_bytes()).expect("identity"))
        .add_root_certificate(reqwest::Certificate::from_pem(apns.ca_pem.as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|n| {
            let client = client.clone();
            async move {
                let r = client
                    .post(format!("{}/3/device/{:064x}", apns.url, n))
                    .header("apns-push-type", "mdm")
                    .header("apns-topic", TOPIC)
                    .header("apns-priority", "10")
                    .header("apns-expiration", "0")
                    .json(&json!({ "mdm": "bench" }))
                    .send()
                    .await
                    .expect("push");
                assert_eq!(r.status().as_u16(), 200);
            }
        })
        .buffer_unordered(200)
        .collect::<Vec<()>>()
        .await;
    started.elapsed()
}

async fn run(backend: Backend, count: u32) {
    let name = format!("{backend:?}").to_lowercase();
    if backend == Backend::Postgres && std::env::var(POSTGRES_ENV).is_err() {
        println!("{name:<8} skipped (set {POSTGRES_ENV})");
        return;
    }
    println!("{name}, {count} iPhones:");
    let (certificate_pem, key_pem) = mdm_tests::iphone::push_certificate(TOPIC, 365);
    let apns = ApnsStandIn::start(&certificate_pem, TOPIC).await;
    // The pusher as fast as it goes: its own ceiling is what is measured.
    let config = apns.config_with(
        "push_rate_per_second = 1000000\npush_concurrency = 500\npush_coalesce_ms = 50\n",
    );
    let app = TestApp::spawn_configured(backend, &config, mdm_server::clock::Clock::System).await;
    let admin =
        mdm_tests::store_api_token(&app, mdm_server::domain::role::Role::OperatorAdmin).await;
    app.request(
        reqwest::Method::PUT,
        "/api/v1/push-certificate",
        Some(&admin),
        Some(json!({ "certificate_pem": certificate_pem, "key_pem": key_pem })),
    )
    .await
    .expect(reqwest::StatusCode::OK);
    let model = app
        .create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    let provider = app
        .create_provider(&admin, "Hemtjänst Stor AB", ORG_A)
        .await;

    let state = &app.server.state;
    let device_url = app.device_url();
    let started = Instant::now();
    let swarm = IphoneSwarm::enroll(
        Target {
            store: state.store.as_ref(),
            device_url: &device_url,
            root_der: state.ca.root_der(),
            topic: TOPIC,
            now: app.clock.now(),
        },
        model,
        Some(provider),
        "BF",
        count,
        32,
    )
    .await;
    let took = started.elapsed();
    println!(
        "  enrolment: {} iPhones in {:.1} s, {:.0} per second",
        swarm.len(),
        took.as_secs_f64(),
        swarm.len() as f64 / took.as_secs_f64()
    );
    // The enrolment's own pushes have come and gone.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let n = swarm.len();
    let raw = raw_pushes(&apns, &format!("{certificate_pem}{key_pem}"), n).await;
    let ids = state
        .store
        .apple_device_ids(Some(provider))
        .await
        .expect("iPhones");
    let before = apns.received().len();
    let started = Instant::now();
    state.command_board.wake(ids);
    let pusher = pushes_reach(&apns, before + n, started).await;
    let (raw_rate, pusher_rate) = (
        n as f64 / raw.as_secs_f64(),
        n as f64 / pusher.as_secs_f64(),
    );
    println!(
        "  pushes over one HTTP/2 connection: pusher {pusher_rate:.0}/s (lookup, rate limit, send, record) vs stand-in raw {raw_rate:.0}/s, ratio {:.2}; the pusher used {} connection(s) to the stand-in",
        pusher_rate / raw_rate,
        // The raw client's is the other one.
        apns.connections() - 1
    );

    // Baseline: every phone connects once with nothing to collect.
    let started = Instant::now();
    swarm.idle_round(128).await;
    let idle_round = started.elapsed();

    let answering = swarm.answer_pushes(&apns, 128);
    let started = Instant::now();
    let r = app
        .post(
            &format!("/api/v1/providers/{provider}/commands"),
            &admin,
            json!({ "kind": "restart" }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let batch = r.body["id"].as_i64().expect("batch");
    let acknowledged = loop {
        let r = app
            .get(&format!("/api/v1/command-batches/{batch}"), &admin)
            .await;
        let done = r.body["states"]["acknowledged"].as_i64().unwrap_or(0);
        if done as usize >= n || started.elapsed() > Duration::from_secs(1800) {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let fan_out = started.elapsed();
    answering.abort();
    println!(
        "  a command to all: {acknowledged} of {n} acknowledged in {:.1} s ({:.0} per second; push, connect, answer) vs one idle round of the same phones {:.1} s ({:.0} connects per second), ratio {:.2}",
        fan_out.as_secs_f64(),
        acknowledged as f64 / fan_out.as_secs_f64(),
        idle_round.as_secs_f64(),
        n as f64 / idle_round.as_secs_f64(),
        fan_out.as_secs_f64() / idle_round.as_secs_f64()
    );
}

fn main() {
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let count = size("BENCH_IPHONE_FLEET", 10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for backend in backends.split(',') {
        let backend = match backend.trim() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => panic!("unknown backend {other}"),
        };
        runtime.block_on(run(backend, count));
    }
}
