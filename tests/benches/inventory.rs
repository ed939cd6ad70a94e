//! Inventory benchmark: 100,000 phones in SQLite.
//!
//! - CSV import of 100,000 rows through the real import code, against a baseline of a bare
//!   multi-row INSERT of the same rows into a table of the same shape, in the same run.
//! - A filtered, paged inventory list over HTTP (p50 and p99 of 1,000 requests), against the
//!   baseline of `/healthz` over the same connection pool, in the same run.
//!
//! The demo catalogue (iPhone 16, Samsung Galaxy XCover7) and demo logins are used.
//!
//! Run with `cargo bench -p mdm-tests --bench inventory`. It prints figures; it asserts nothing
//! about time, because these machines are noisy.

use std::time::{Duration, Instant};

use mdm_server::clock::Clock;
use mdm_server::config::Config;
use mdm_server::server::{self, StartOptions};

const DEVICES: u32 = 100_000;
const REQUESTS: usize = 1_000;

fn imei(n: u32) -> String {
    let body = format!("35{n:012}");
    format!("{body}{}", mdm_server::domain::luhn::check_digit(&body))
}

fn delivery_csv() -> String {
    let mut text = String::from("serial,imei,platform,model,purchase_date,warranty_end,supplier\n");
    for i in 0..DEVICES {
        let (platform, model) = if i % 3 == 0 {
            ("android", "Samsung Galaxy XCover7")
        } else {
            ("ios", "iPhone 16")
        };
        text.push_str(&format!(
            "SN{i:08},{},{platform},{model},2026-01-15,2028-01-15,Telia Företag\n",
            imei(i)
        ));
    }
    text
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn time_requests(client: &reqwest::Client, urls: &[String], token: &str) -> Vec<Duration> {
    let mut times = Vec::with_capacity(urls.len());
    for url in urls {
        let started = Instant::now();
        let r = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.bytes().await.expect("body");
        times.push(started.elapsed());
    }
    times.sort();
    times
}

/// The baseline: the same rows inserted with one bare multi-row INSERT per 1,000 rows into a
/// table of the same shape, in one transaction, with no validation, audit or duplicate checks.
async fn baseline_insert(dir: &std::path::Path, csv: &str) -> Duration {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let options = SqliteConnectOptions::new()
        .filename(dir.join("baseline.sqlite3"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("baseline db");
    sqlx::query(
        "CREATE TABLE devices (id INTEGER PRIMARY KEY, serial TEXT NOT NULL UNIQUE, imei TEXT NOT NULL UNIQUE, \
         model_id INTEGER NOT NULL, status TEXT NOT NULL, provider_id INTEGER, purchase_date TEXT, warranty_end TEXT, \
         supplier TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create");
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let started = Instant::now();
    let mut tx = pool.begin().await.expect("begin");
    let now = chrono::Utc::now();
    for chunk in rows.chunks(1000) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO devices (serial, imei, model_id, status, provider_id, purchase_date, warranty_end, supplier, \
             created_at, updated_at) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r[0])
                .push_bind(r[1])
                .push_bind(1i64)
                .push_bind("in_stock")
                .push_bind(None::<i64>)
                .push_bind(r[4])
                .push_bind(r[5])
                .push_bind(r[6])
                .push_bind(now)
                .push_bind(now);
        });
        q.build().execute(&mut *tx).await.expect("insert");
    }
    tx.commit().await.expect("commit");
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_file = dir.path().join("mdm.toml");
    std::fs::write(
        &config_file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            dir.path().display()
        ),
    )
    .expect("config");
    let config = Config::load(Some(&config_file)).expect("config");
    let server = server::start(
        config,
        StartOptions {
            demo: true,
            clock: Clock::System,
        },
    )
    .await
    .expect("server");
    let state = server.state.clone();
    mdm_server::demo::seed(&state).await.expect("demo seed");
    let now = state.clock.now();
    let store = state.store.clone();

    let csv = delivery_csv();
    let baseline = baseline_insert(dir.path(), &csv).await;
    let csv_path = dir.path().join("delivery.csv");
    std::fs::write(&csv_path, &csv).expect("write csv");
    let started = Instant::now();
    let summary = mdm_server::import::import_csv(
        std::fs::File::open(&csv_path).expect("open"),
        store.as_ref(),
        now,
        mdm_server::domain::audit::AuditEvent::unattended("bench", "device.import"),
        &|_, _| {},
    )
    .await
    .expect("import");
    let import = started.elapsed();
    assert_eq!(summary.inserted, u64::from(DEVICES));

    // Spread the phones over the two demo providers and the lifecycle states.
    let providers = store.list_providers().await.expect("providers");
    let (norr, syd) = (providers[0].id, providers[1].id);
    let url = format!("sqlite://{}", dir.path().join("mdm.sqlite3").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("db");
    sqlx::raw_sql(&format!(
        "UPDATE devices SET provider_id = CASE id % 3 WHEN 0 THEN {norr} WHEN 1 THEN {syd} ELSE NULL END, \
         status = CASE id % 5 WHEN 0 THEN 'in_stock' WHEN 4 THEN 'in_repair' ELSE 'leased' END WHERE serial LIKE 'SN%'; \
         ANALYZE;"
    ))
    .execute(&pool)
    .await
    .expect("spread");

    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "email": "it-admin@kommun.example", "password": mdm_server::demo::DEMO_PASSWORD }))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["token"].as_str().expect("token").to_string();

    // A realistic mix: provider and status filters, platform, text search, deeper pages.
    let mut cursors = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..20 {
        let url = match &next {
            Some(c) => format!(
                "{base}/api/v1/devices?provider_id={norr}&status=leased&limit=50&cursor={c}"
            ),
            None => format!("{base}/api/v1/devices?provider_id={norr}&status=leased&limit=50"),
        };
        let page: serde_json::Value = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("json");
        next = page["next_cursor"].as_str().map(str::to_string);
        cursors.extend(next.clone());
    }
    let urls: Vec<String> = (0..REQUESTS)
        .map(|i| match i % 4 {
            0 => format!("{base}/api/v1/devices?provider_id={norr}&status=leased&limit=50"),
            1 => format!(
                "{base}/api/v1/devices?provider_id={syd}&platform=android&limit=50&cursor={}",
                cursors[i % cursors.len()]
            ),
            2 => format!("{base}/api/v1/devices?q=SN000{:03}&limit=50", i % 1000),
            _ => format!(
                "{base}/api/v1/devices?status=in_repair&limit=50&cursor={}",
                cursors[i % cursors.len()]
            ),
        })
        .collect();
    let health: Vec<String> = (0..REQUESTS).map(|_| format!("{base}/healthz")).collect();
    // Warm both paths before measuring.
    time_requests(&client, &urls[..50], &token).await;
    time_requests(&client, &health[..50], &token).await;
    let list = time_requests(&client, &urls, &token).await;
    let kinds = [
        "provider + status",
        "provider + platform, page",
        "serial prefix",
        "status, page",
    ];
    let mut per_kind = Vec::new();
    for (k, kind) in kinds.iter().enumerate() {
        let subset: Vec<String> = urls.iter().skip(k).step_by(4).cloned().collect();
        let times = time_requests(&client, &subset, &token).await;
        per_kind.push((kind, percentile(&times, 0.50), percentile(&times, 0.99)));
    }
    let baseline_http = time_requests(&client, &health, &token).await;

    let (p50, p99) = (percentile(&list, 0.50), percentile(&list, 0.99));
    let (b50, b99) = (
        percentile(&baseline_http, 0.50),
        percentile(&baseline_http, 0.99),
    );
    println!("inventory benchmark, {DEVICES} devices on SQLite");
    println!(
        "  import of {DEVICES} CSV rows:      {:>9.1} ms (target < 10000 ms)",
        ms(import)
    );
    println!(
        "  baseline bare INSERT of the rows: {:>9.1} ms",
        ms(baseline)
    );
    println!(
        "  import / baseline:                {:>9.2}x",
        import.as_secs_f64() / baseline.as_secs_f64()
    );
    println!("  filtered list p50:                {:>9.2} ms", ms(p50));
    println!(
        "  filtered list p99:                {:>9.2} ms (target < 20 ms)",
        ms(p99)
    );
    println!(
        "  baseline /healthz p50 / p99:      {:>9.2} ms / {:.2} ms",
        ms(b50),
        ms(b99)
    );
    println!(
        "  list p50 / healthz p50:           {:>9.2}x",
        p50.as_secs_f64() / b50.as_secs_f64()
    );
    println!(
        "  list p99 / healthz p99:           {:>9.2}x",
        p99.as_secs_f64() / b99.as_secs_f64()
    );
    for (kind, p50, p99) in per_kind {
        println!(
            "    {kind:<28} p50 {:>6.2} ms, p99 {:>6.2} ms",
            ms(p50),
            ms(p99)
        );
    }
    server.stop().await.expect("stop");
}
