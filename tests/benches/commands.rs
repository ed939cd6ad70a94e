//! Command queue benchmark, on SQLite and on PostgreSQL, through the real API:
//!
//! 1. One request queues a command to every phone of a provider with 100,000 enrolled phones.
//!    Baseline, in the same database in the same run: copying the same 100,000 device rows into
//!    a scratch table with one plain `INSERT … SELECT` (no indexes, no API), the floor any
//!    fan-out stands on. Ratio = fan-out / floor. The target is under 2 s on SQLite.
//! 2. 10,000 simulated phones (real TLS, each its own key, a new connection per check-in as
//!    phones on a 15-minute interval make, shared with the answers to its commands) enrolled with one provider: a policy
//!    change reaches all of them and a command to all of them is carried out and answered.
//!    Baseline: one round of check-ins of the same phones with nothing to deliver. Ratios =
//!    time until all have the policy / the command answered, over that round.
//!
//! Nothing is asserted about time: figures are printed. The server runs in this process.
//!
//! `cargo bench -p mdm-tests --bench commands` (PostgreSQL needs `TEST_POSTGRES_URL`;
//! `BENCH_BACKENDS=sqlite` picks the backends; `BENCH_FAN_OUT` and `BENCH_SWARM` change the
//! fleet sizes).

use mdm_tests::{Backend, TestApp, ORG_A, ORG_B, POSTGRES_ENV};
use serde_json::json;
use std::time::{Duration, Instant};

fn size(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn provider(app: &TestApp, admin: &str, name: &str, org: &str) -> i64 {
    app.create_provider(admin, name, org).await
}

async fn fan_out(
    app: &TestApp,
    admin: &str,
    provider: i64,
    body: serde_json::Value,
) -> (Duration, i64, i64) {
    let started = Instant::now();
    let r = app
        .post(
            &format!("/api/v1/providers/{provider}/commands"),
            admin,
            body,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    (
        took,
        r.body["queued"].as_i64().expect("queued"),
        r.body["id"].as_i64().expect("batch"),
    )
}

async fn queue_to_many(app: &TestApp, admin: &str, model: i64, count: u32) {
    let provider = provider(app, admin, "Hemtjänst Stor AB", ORG_A).await;
    let store = app.server.state.store.clone();
    let setup = Instant::now();
    mdm_tests::import_placed_iphones(store.as_ref(), model, "FAN", 0, count, Some(provider)).await;
    // Enrolled as far as the queue is concerned (certificates are not needed to queue).
    app.execute_sql(&format!(
        "UPDATE devices SET enrolled_at = created_at WHERE provider_id = {provider}"
    ))
    .await;
    let setup = setup.elapsed();

    let floor_started = Instant::now();
    app.execute_sql(&format!(
        "CREATE TABLE bench_floor AS SELECT id, provider_id, platform, status, created_at \
         FROM devices WHERE provider_id = {provider} AND enrolled_at IS NOT NULL"
    ))
    .await;
    let floor = floor_started.elapsed();
    let (took, queued, _) = fan_out(
        app,
        admin,
        provider,
        json!({ "kind": "refresh_information" }),
    )
    .await;
    assert_eq!(queued, i64::from(count));
    println!(
        "  queue one command to {count} phones: {:.3} s (floor, plain INSERT…SELECT of the same rows: {:.3} s; ratio {:.2}; target under 2 s: {}) [setup {:.1} s]",
        took.as_secs_f64(),
        floor.as_secs_f64(),
        took.as_secs_f64() / floor.as_secs_f64().max(f64::EPSILON),
        if took < Duration::from_secs(2) { "met" } else { "not met" },
        setup.as_secs_f64(),
    );
}

async fn deliver_to_swarm(app: &TestApp, admin: &str, model: i64, count: u32) {
    let provider = provider(app, admin, "Omsorg Svärm AB", ORG_B).await;
    let enrolling = Instant::now();
    // Each check-in on a connection of its own (shared only with the answers to its commands),
    // as phones that check in every quarter of an hour do; 10,000 open connections would not
    // fit this process's descriptor limit either.
    let swarm = mdm_tests::enrolled_swarm(
        app,
        model,
        provider,
        "SWM",
        count,
        agent::client::Connections::Brief,
    )
    .await;
    let enrolling = enrolling.elapsed();
    let concurrency = 64;
    // Every phone takes the current policy once, then a round with nothing to deliver.
    agent::swarm::checkin_rounds(&swarm, 1, concurrency).await;
    let plain = agent::swarm::checkin_rounds(&swarm, 1, concurrency).await;
    assert_eq!(plain.failures, 0);
    let plain = plain.elapsed;

    let changed = Instant::now();
    let r = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/policy",
            Some(admin),
            Some(json!({ "auto_lock_minutes": 3 })),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let hashes = |swarm: &[agent::swarm::EnrolledPhone]| {
        swarm
            .iter()
            .map(|p| {
                p.policy_hash
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            })
            .collect::<std::collections::HashSet<_>>()
    };
    let before = hashes(&swarm);
    let mut rounds = 0;
    loop {
        rounds += 1;
        agent::swarm::checkin_rounds(&swarm, 1, concurrency).await;
        let now = hashes(&swarm);
        if now.len() == 1 && now != before {
            break;
        }
        assert!(rounds < 10, "the policy change did not reach every phone");
    }
    let policy_time = changed.elapsed();

    let (queued_in, queued, batch) = fan_out(
        app,
        admin,
        provider,
        json!({ "kind": "lock", "message": "Bench" }),
    )
    .await;
    let commanded = Instant::now() - queued_in;
    let mut rounds_c = 0;
    loop {
        rounds_c += 1;
        agent::swarm::checkin_rounds(&swarm, 1, concurrency).await;
        let progress = app
            .get(&format!("/api/v1/command-batches/{batch}"), admin)
            .await;
        if progress.body["states"]["acknowledged"].as_i64() == Some(queued) {
            break;
        }
        assert!(
            rounds_c < 10,
            "the command was not answered by every phone: {}",
            progress.text
        );
    }
    let command_time = commanded.elapsed();
    println!(
        "  {count} phones (enrolled in {:.1} s), one check-in round with nothing to deliver: {:.2} s",
        enrolling.as_secs_f64(),
        plain.as_secs_f64()
    );
    println!(
        "  policy change until every phone has it: {:.2} s in {rounds} round(s) (ratio to the plain round {:.2})",
        policy_time.as_secs_f64(),
        policy_time.as_secs_f64() / plain.as_secs_f64().max(f64::EPSILON)
    );
    println!(
        "  command to every phone until all acknowledged: {:.2} s in {rounds_c} round(s) (queued in {:.3} s; ratio to the plain round {:.2})",
        command_time.as_secs_f64(),
        queued_in.as_secs_f64(),
        command_time.as_secs_f64() / plain.as_secs_f64().max(f64::EPSILON)
    );
}

async fn run(backend: Backend) {
    let name = format!("{backend:?}").to_lowercase();
    if backend == Backend::Postgres && std::env::var(POSTGRES_ENV).is_err() {
        println!("{name:<8} skipped (set {POSTGRES_ENV})");
        return;
    }
    println!("{name}:");
    let app = TestApp::spawn(backend).await;
    let admin =
        mdm_tests::store_api_token(&app, mdm_server::domain::role::Role::OperatorAdmin).await;
    let model = app
        .create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    queue_to_many(&app, &admin, model, size("BENCH_FAN_OUT", 100_000)).await;
    deliver_to_swarm(&app, &admin, model, size("BENCH_SWARM", 10_000)).await;
}

fn main() {
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
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
        runtime.block_on(run(backend));
    }
}
