//! Check-in benchmark: `mdm-agent swarm` phones (1,000 and 10,000) checking in over mutual TLS
//! with keep-alive against one server, on SQLite and on PostgreSQL.
//!
//! The server runs as a separate process (this benchmark's own binary in server mode), so its
//! memory is its own. In the same run the same phones hit `/agent/v1/ping`, which the server
//! answers after the TLS handshake without touching the database: the ceiling. Figures are
//! printed as check-ins per second, p50 and p99, the ratio to the ceiling, and the server's
//! resident memory. Each phone's first check-in (policy delivered, first compliance record) is
//! measured apart from the check-ins that follow. The ceiling and the check-ins are then measured
//! in turns, three pairs by default, and the ratio printed is the median of the pairs' ratios, so
//! that a noisy moment on the machine spoils one pair, not the figure. Nothing is asserted about
//! time.
//!
//! Then 1,000 simulated iPhones enroll through SCEP and `Authenticate` (and answer the inventory
//! query the server sends a new phone) and send `Idle` to the
//! connect endpoint, each message signed (`Mdm-Signature` verified, the certificate checked
//! against the device CA, the identity looked up) over a connection that presents the phone's
//! certificate; their ceiling is the same ping over the same connections.
//!
//! `cargo bench -p mdm-tests --bench checkins` (PostgreSQL rows need `TEST_POSTGRES_URL`;
//! `BENCH_SIZES=1000` picks the fleet sizes, `BENCH_IPHONES=1000` the iPhones' (0: none),
//! `BENCH_BACKENDS=sqlite` the backends, `BENCH_PAIRS` the pairs of phases).

use futures::StreamExt;
use std::io::BufRead;
use std::time::Instant;

use agent::swarm::{enroll_all, rounds_of, Request};
use enrollment::DeviceCa;
use mdm_server::clock::Clock;
use mdm_server::config::Config;
use mdm_server::domain::audit::AuditEvent;
use mdm_server::domain::device::Platform;
use mdm_server::server::{self, StartOptions};

// The same allocator as the `mdm-server` binary, so the server process measures as it runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SERVER_ENV: &str = "BENCH_SERVER_CONFIG";
/// Requests a measured phase has at least: CPU time is read from `/proc` in 10 ms ticks, so a
/// phase must last seconds, not a fraction of one, for its figures to hold still.
const MIN_REQUESTS: usize = 30_000;
const MIN_ROUNDS: usize = 3;
/// The ceiling and the check-ins are measured this many times each, taking turns.
const PAIRS: usize = 3;

/// Rounds per phone for a fleet of `count`; `BENCH_ROUNDS` sets it (for profiling).
fn rounds(count: u32) -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| MIN_ROUNDS.max(MIN_REQUESTS.div_ceil(count.max(1) as usize)))
}

/// Pairs of measured phases (ceiling, then check-ins); `BENCH_PAIRS` sets it.
fn pairs() -> usize {
    std::env::var("BENCH_PAIRS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(PAIRS)
        .max(1)
}

fn event(action: &str) -> AuditEvent {
    AuditEvent::unattended("bench", action)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Server mode: run the server with the given configuration until killed.
async fn run_server(config_json: &str) {
    let config = Config::from_overrides(
        serde_json::from_str::<serde_json::Value>(config_json).expect("json"),
    )
    .expect("config");
    let running = server::start(
        config,
        StartOptions {
            demo: false,
            clock: Clock::System,
        },
    )
    .await
    .expect("server");
    println!("ready {}", running.device_addr);
    std::future::pending::<()>().await;
}

/// CPU seconds (user and system) a process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line (the state, field 3, is index 0 here),
    // counted in clock ticks of 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The processes whose CPU counts as the database's: PostgreSQL's backends serving the bench
/// database (SQLite runs inside the server, so its CPU is the server's).
#[derive(Clone)]
struct DatabaseProcesses {
    admin: Option<(sqlx::PgPool, String)>,
}

impl DatabaseProcesses {
    /// Drops the benchmark's database once its server has stopped, so that runs against a
    /// long-lived server leave nothing behind.
    async fn drop_database(&self) {
        if let Some((pool, name)) = &self.admin {
            let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(pool)
                .await;
            if let Err(e) = dropped {
                eprintln!("could not drop the benchmark database {name}: {e}");
            }
        }
    }

    async fn pids(&self) -> Vec<String> {
        let Some((pool, name)) = &self.admin else {
            return Vec::new();
        };
        sqlx::query_scalar::<_, i32>("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .fetch_all(pool)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|pid| pid.to_string())
            .collect()
    }
}

/// CPU used while `work` runs: by the server, by the swarm (this process), and by the
/// database's processes (a backend that starts meanwhile counts from zero).
async fn measured<T>(
    server: u32,
    database: &DatabaseProcesses,
    work: impl std::future::Future<Output = T>,
) -> (T, Cpu) {
    let server = server.to_string();
    let before: std::collections::HashMap<String, f64> = database
        .pids()
        .await
        .into_iter()
        .map(|pid| {
            let cpu = cpu_seconds(&pid);
            (pid, cpu)
        })
        .collect();
    let (s0, c0) = (cpu_seconds(&server), cpu_seconds("self"));
    let out = work.await;
    let (s1, c1) = (cpu_seconds(&server), cpu_seconds("self"));
    let database_cpu = database.admin.is_some().then_some(
        database
            .pids()
            .await
            .iter()
            .map(|pid| cpu_seconds(pid) - before.get(pid).copied().unwrap_or(0.0))
            .sum(),
    );
    let cpu = Cpu {
        server: s1 - s0,
        swarm: c1 - c0,
        database: database_cpu,
    };
    (out, cpu)
}

/// CPU seconds spent by each side of a measured phase.
#[derive(Default)]
struct Cpu {
    server: f64,
    swarm: f64,
    /// PostgreSQL's backends; none for SQLite, whose work is the server's.
    database: Option<f64>,
}

impl Cpu {
    fn add(&mut self, other: &Cpu) {
        self.server += other.server;
        self.swarm += other.swarm;
        self.database = match (self.database, other.database) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
    }

    /// Microseconds per request: server, swarm and database.
    fn per_request(&self, requests: usize) -> String {
        let per = |s: f64| s * 1e6 / requests.max(1) as f64;
        let database = match self.database {
            Some(cpu) => format!(" + {:.0} us database", per(cpu)),
            None => String::new(),
        };
        format!(
            "{:.0} us server + {:.0} us swarm{database}",
            per(self.server),
            per(self.swarm)
        )
    }
}

/// The measured phases of one kind, taken together.
#[derive(Default)]
struct Phase {
    reports: Vec<agent::swarm::SwarmReport>,
    cpu: Cpu,
}

impl Phase {
    /// Adds one measured phase and returns its own report.
    fn add(
        &mut self,
        (report, cpu): (agent::swarm::SwarmReport, Cpu),
    ) -> &agent::swarm::SwarmReport {
        self.cpu.add(&cpu);
        self.reports.push(report);
        self.reports.last().expect("just added")
    }

    /// All the phases as one: their requests over their time, their latencies together.
    fn report(&self) -> agent::swarm::SwarmReport {
        let mut latencies: Vec<std::time::Duration> = self
            .reports
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        latencies.sort();
        agent::swarm::SwarmReport {
            checkins: self.reports.iter().map(|r| r.checkins).sum(),
            failures: self.reports.iter().map(|r| r.failures).sum(),
            elapsed: self.reports.iter().map(|r| r.elapsed).sum(),
            latencies,
        }
    }
}

/// One measured phase's line: requests per second, p50 and p99, and a note in brackets.
fn phase(label: &str, report: &agent::swarm::SwarmReport, note: &str) {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "    {label:<9} {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({note})",
        report.per_second(),
        ms(report.percentile(0.5)),
        ms(report.percentile(0.99))
    );
}

/// The measured phases' line (`label`, `note`), the ceiling's, the CPU each request cost
/// (`short` names the measured one) and the ratio to the ceiling.
fn against_ceiling(
    (label, short, note): (&str, &str, &str),
    measured: &Phase,
    ceiling: &Phase,
    ratios: Vec<f64>,
) {
    let report = measured.report();
    phase(
        label,
        &report,
        &format!("{} failed; {note}", report.failures),
    );
    let ceiling_report = ceiling.report();
    phase(
        "ceiling",
        &ceiling_report,
        "ping after the TLS handshake, no database",
    );
    println!(
        "    CPU per request: {short} {}; ping {}",
        measured.cpu.per_request(report.checkins),
        ceiling.cpu.per_request(ceiling_report.checkins)
    );
    print_ratio(label, ratios);
}

/// The median of the pairs' ratios to the ceiling, each pair's beside it.
fn print_ratio(label: &str, mut ratios: Vec<f64>) {
    let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "    {label} / ceiling: {:.2} (target at least 0.5; median of the pairs {})",
        ratios[ratios.len() / 2],
        listed.join(", ")
    );
}

fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn database(backend: &str, dir: &std::path::Path) -> Option<(String, DatabaseProcesses)> {
    match backend {
        "sqlite" => Some((
            format!("sqlite://{}", dir.join("mdm.sqlite3").display()),
            DatabaseProcesses { admin: None },
        )),
        _ => {
            let admin = std::env::var("TEST_POSTGRES_URL").ok()?;
            let name = format!("mdm_bench_{}", rand::random::<u32>());
            let pool = sqlx::PgPool::connect(&admin).await.ok()?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .ok()?;
            let mut url = url::Url::parse(&admin).ok()?;
            url.set_path(&name);
            Some((
                url.to_string(),
                DatabaseProcesses {
                    admin: Some((pool, name)),
                },
            ))
        }
    }
}

/// A benchmark's server: its database, configuration, store and CA, `count` registered iPhones,
/// and (once started) its process.
struct Bench {
    _dir: tempfile::TempDir,
    database: DatabaseProcesses,
    config_json: String,
    store: std::sync::Arc<dyn mdm_server::store::Store>,
    ca: DeviceCa,
    device_url: String,
    registered: Vec<mdm_server::store::Device>,
    now: chrono::DateTime<chrono::Utc>,
}

impl Bench {
    /// The database and `count` registered phones, before the server runs; `None` when the
    /// backend cannot be reached.
    async fn prepare(backend: &str, count: u32) -> Option<Bench> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (database_url, database) = database(backend, dir.path()).await?;
        let device_port = free_port();
        let config_json = serde_json::json!({
            "listen": format!("127.0.0.1:{}", free_port()),
            "device_listen": format!("127.0.0.1:{device_port}"),
            "data_dir": dir.path(),
            "database_url": database_url,
            // Pushes never leave loopback (this benchmark does not measure them).
            "apple": { "push_url": "https://127.0.0.1:9", "push_attempts": 1 },
        })
        .to_string();
        let config = Config::from_overrides(
            serde_json::from_str::<serde_json::Value>(&config_json).expect("json"),
        )
        .expect("config");
        let store = server::open_store(&config).await.expect("store");
        let now = Clock::System.now();
        store
            .ensure_operator(&config.operator_name, now)
            .await
            .expect("operator");
        let ca = DeviceCa::load_or_create(&config.data_dir.join("ca"), &config.operator_name)
            .expect("ca");
        let model = store
            .create_model(Platform::Ios, "iPhone 16", None, now, event("model.create"))
            .await
            .expect("model");
        let registered = mdm_tests::import_iphones(store.as_ref(), model.id, "SW", 0, count).await;
        Some(Bench {
            _dir: dir,
            database,
            config_json,
            store,
            ca,
            device_url: format!("https://127.0.0.1:{device_port}"),
            registered,
            now,
        })
    }

    /// Stops the server and drops a PostgreSQL database; answers the server's resident and
    /// peak memory (KiB) just before.
    async fn stop(&self, mut child: std::process::Child) -> (u64, u64) {
        let memory = memory_kib(child.id());
        let _ = child.kill();
        let _ = child.wait();
        self.database.drop_database().await;
        memory
    }

    /// Runs the server as a child process of this benchmark's binary, ready to answer.
    fn start(&self) -> std::process::Child {
        let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .env(SERVER_ENV, &self.config_json)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("server process");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready");
        assert!(line.starts_with("ready"), "server did not start: {line}");
        child
    }
}

async fn run(backend: &str, count: u32) {
    // The fleet: registered phones and one enrollment token each, made before the server runs.
    let setup = Instant::now();
    let Some(mut bench) = Bench::prepare(backend, count).await else {
        println!("{backend:<8} {count:>6} phones: skipped (set TEST_POSTGRES_URL)");
        return;
    };
    let phones = mdm_tests::swarm_phones(
        bench.store.as_ref(),
        &bench.device_url,
        &bench.ca.root_fingerprint(),
        std::mem::take(&mut bench.registered),
        bench.now,
    )
    .await;
    let setup = setup.elapsed();
    let database_processes = bench.database.clone();

    let child = bench.start();
    let idle = memory_kib(child.id());

    let enrolling = Instant::now();
    let enrolled = enroll_all(phones, 64, &|| {}).await.expect("enroll");
    let enrolling = enrolling.elapsed();
    let after_enrolment = memory_kib(child.id());
    let concurrency = 128;
    // Warm every phone's connection, then measure.
    rounds_of(Request::Ping, &enrolled, 1, concurrency).await;
    // Each phone's first check-in after enrolment is of its own kind: the phone gets its policy
    // and its compliance is recorded for the first time (a write per phone). It happens once per
    // phone (and after each policy change), so it is measured on its own, and the figures that
    // follow are the check-ins phones make every interval for the rest of their lives.
    let first = rounds_of(Request::Checkin, &enrolled, 1, concurrency).await;
    let after_first = memory_kib(child.id());
    // The ceiling and the check-ins take turns, so that what the machine's neighbours do to
    // one pair of phases they do to both; the median of the pairs' ratios is the figure.
    let mut ceiling = Phase::default();
    let mut checkins = Phase::default();
    let mut ratios = Vec::new();
    let server = child.id();
    let measure = |kind| {
        measured(
            server,
            &database_processes,
            rounds_of(kind, &enrolled, rounds(count), concurrency),
        )
    };
    for _ in 0..pairs() {
        let ping = ceiling.add(measure(Request::Ping).await).per_second();
        let checkin = checkins.add(measure(Request::Checkin).await).per_second();
        ratios.push(checkin / ping);
    }
    let (rss, peak) = bench.stop(child).await;

    println!(
        "{backend:<8} {count:>6} phones: set-up {:.1} s, enrolment {:.1} s ({:.0}/s), {} pairs of phases, {} rounds each",
        setup.as_secs_f64(),
        enrolling.as_secs_f64(),
        f64::from(count) / enrolling.as_secs_f64(),
        ratios.len(),
        rounds(count)
    );
    phase(
        "first",
        &first,
        &format!(
            "{} failed; each phone's first check-in: policy sent, compliance recorded",
            first.failures
        ),
    );
    against_ceiling(
        (
            "check-ins",
            "check-in",
            "the check-ins of every interval after",
        ),
        &checkins,
        &ceiling,
        ratios,
    );
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!(
        "    server memory (target under 200 MB): {:.0} MB idle, {:.0} MB after enrolment, {:.0} MB after the first check-ins, {:.0} MB at the end, {:.0} MB peak",
        mb(idle.0),
        mb(after_enrolment.0),
        mb(after_first.0),
        mb(rss),
        mb(peak)
    );
}

/// iPhones: `count` simulated phones enroll through SCEP and `Authenticate`, then each sends
/// `Idle` (signed, over a connection presenting its certificate) against the ping ceiling.
async fn run_iphones(backend: &str, count: u32) {
    use mdm_tests::iphone::{SignedRequest, SimulatedIphone};
    let setup = Instant::now();
    let Some(mut bench) = Bench::prepare(backend, count).await else {
        println!("{backend:<8} {count:>6} iPhones: skipped (set TEST_POSTGRES_URL)");
        return;
    };
    let registered = std::mem::take(&mut bench.registered);
    let phones = mdm_tests::iphone_swarm::prepared(
        mdm_tests::iphone_swarm::Target {
            store: bench.store.as_ref(),
            device_url: &bench.device_url,
            root_der: bench.ca.root_der(),
            topic: "com.apple.mgmt.External.bench",
            now: bench.now,
        },
        registered,
    )
    .await;
    let setup = setup.elapsed();
    let database_processes = bench.database.clone();
    let child = bench.start();

    let enrolling = Instant::now();
    let enrolled: Vec<SimulatedIphone> = futures::stream::iter(phones)
        .map(|mut phone| async move {
            match phone.scep().await {
                enrollment::scep::CertRep::Success(_) => {}
                other => panic!("SCEP answered {other:?}"),
            }
            let (status, body) = phone.authenticate().await;
            assert!(status.is_success(), "Authenticate: {body}");
            // What the server gives a new phone: its standard profile and inventory questions.
            let done = phone.work().await;
            assert!(done.iter().any(|d| d == "DeviceInformation"), "{done:?}");
            phone
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let enrolling = enrolling.elapsed();
    let connections: Vec<(reqwest::Client, SignedRequest)> = enrolled
        .iter()
        .map(|p| (p.identity_client(), p.idle_request()))
        .collect();
    let ping_url = format!("{}/agent/v1/ping", bench.device_url);
    let round = |idle: bool| {
        let connections = &connections;
        let ping_url = &ping_url;
        async move {
            let started = Instant::now();
            let jobs = (0..rounds(count)).flat_map(|_| connections.iter());
            let outcomes: Vec<Option<std::time::Duration>> = futures::stream::iter(jobs)
                .map(|(client, request)| async move {
                    let t = Instant::now();
                    let sent = if idle {
                        client
                            .put(&request.url)
                            .header("Mdm-Signature", &request.signature)
                            .body(request.body.clone())
                            .send()
                            .await
                    } else {
                        client.post(ping_url).send().await
                    };
                    sent.ok()
                        .filter(|r| r.status().is_success())
                        .map(|_| t.elapsed())
                })
                .buffer_unordered(128)
                .collect()
                .await;
            let mut latencies: Vec<std::time::Duration> =
                outcomes.iter().flatten().copied().collect();
            latencies.sort();
            agent::swarm::SwarmReport {
                checkins: latencies.len(),
                failures: outcomes.len() - latencies.len(),
                elapsed: started.elapsed(),
                latencies,
            }
        }
    };
    // Warm every connection.
    round(false).await;
    let server = child.id();
    let (mut ceiling, mut idles, mut ratios) = (Phase::default(), Phase::default(), Vec::new());
    for _ in 0..pairs() {
        let ping = ceiling
            .add(measured(server, &database_processes, round(false)).await)
            .per_second();
        let idle = idles
            .add(measured(server, &database_processes, round(true)).await)
            .per_second();
        ratios.push(idle / ping);
    }
    let (rss, peak) = bench.stop(child).await;

    println!(
        "{backend:<8} {count:>6} iPhones: set-up {:.1} s, enrolment by SCEP, Authenticate and the inventory answer {:.1} s ({:.0}/s), {} pairs of phases, {} rounds each",
        setup.as_secs_f64(),
        enrolling.as_secs_f64(),
        f64::from(count) / enrolling.as_secs_f64(),
        ratios.len(),
        rounds(count)
    );
    against_ceiling(
        (
            "idle",
            "idle",
            "signed Idle on the connect endpoint: signature verified, identity looked up",
        ),
        &idles,
        &ceiling,
        ratios,
    );
    println!(
        "    server memory: {:.0} MB at the end, {:.0} MB peak",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(config) = std::env::var(SERVER_ENV) {
        runtime.block_on(run_server(&config));
        return;
    }
    let sizes: Vec<u32> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "check-in benchmark: at least {MIN_REQUESTS} requests ({MIN_ROUNDS} rounds or more per phone) in each measured phase, 128 in flight"
    );
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let iphones: u32 = std::env::var("BENCH_IPHONES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    for backend in backends.split(',').map(str::trim) {
        for &count in &sizes {
            runtime.block_on(run(backend, count));
        }
        if iphones > 0 {
            runtime.block_on(run_iphones(backend, iphones));
        }
    }
}
