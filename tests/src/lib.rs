//! The end-to-end test kit: a real server on a real socket over a fresh real database per test,
//! on SQLite or PostgreSQL, and a small client that speaks to it over HTTP.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;

use mdm_server::clock::Clock;
use mdm_server::config::Config;
use mdm_server::server::{self, RunningServer, StartOptions};

pub mod apns;
pub mod iphone;
pub mod iphone_swarm;
pub mod sinks;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs the same test body once per backend: `backend_tests!(name, ...)` makes
/// `sqlite::name` and `postgres::name` from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::postgres_or_skip(stringify!($name)) {
                        super::$name($crate::Backend::Postgres).await
                    }
                }
            )+
        }
    };
}

/// The PostgreSQL server the suite uses; `scripts/test` starts a throwaway one and sets this.
pub const POSTGRES_ENV: &str = "TEST_POSTGRES_URL";
/// Set by `scripts/test`: a PostgreSQL test without a server fails instead of being skipped.
pub const REQUIRE_POSTGRES_ENV: &str = "TEST_REQUIRE_POSTGRES";

/// Whether a PostgreSQL test can run. Without a server (a plain `cargo test` on a newcomer's
/// machine) the test says it was skipped and how to run it, and passes; under `scripts/test`,
/// which sets [`REQUIRE_POSTGRES_ENV`], a missing server fails it.
pub fn postgres_or_skip(test: &str) -> bool {
    if std::env::var_os(POSTGRES_ENV).is_some() {
        return true;
    }
    assert!(
        std::env::var_os(REQUIRE_POSTGRES_ENV).is_none(),
        "{test}: {POSTGRES_ENV} is not set, and {REQUIRE_POSTGRES_ENV} says PostgreSQL must run"
    );
    eprintln!(
        "skipped on PostgreSQL: {test} ({POSTGRES_ENV} is not set; scripts/test runs it, or \
         scripts/with-postgres cargo test)"
    );
    false
}

/// A fresh, empty database for one test, and the URL to reach it.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("mdm.sqlite3").display()),
        Backend::Postgres => {
            let admin_url = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
                panic!(
                    "{POSTGRES_ENV} is not set: run the suite with scripts/test, which starts a PostgreSQL \
                     server on loopback, or point {POSTGRES_ENV} at one (postgres://user@127.0.0.1:5432/postgres)"
                )
            });
            let name = format!("mdm_test_{}", rand::random::<u64>());
            let pool = sqlx::PgPool::connect(&admin_url)
                .await
                .expect("connect to the test PostgreSQL server");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .expect("create test database");
            pool.close().await;
            let mut url = url::Url::parse(&admin_url).expect("postgres url");
            url.set_path(&name);
            url.to_string()
        }
    }
}

/// A server started for one test, its data directory, its configuration file and its clock.
#[derive(Debug)]
pub struct TestApp {
    pub server: RunningServer,
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Clock,
    pub database_url: String,
    pub config_file: PathBuf,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    /// Configuration lines added to the file (kept across restarts).
    pub extra_config: String,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, false).await
    }

    pub async fn spawn_with(backend: Backend, demo: bool) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(backend, dir.path()).await;
        Self::spawn_on(backend, dir, database_url, demo).await
    }

    /// Starts a server on an existing database (for restore tests).
    pub async fn spawn_on(
        backend: Backend,
        dir: tempfile::TempDir,
        database_url: String,
        demo: bool,
    ) -> TestApp {
        let clock = Clock::fixed(Utc::now());
        Self::spawn_at(
            backend,
            dir,
            database_url,
            demo,
            ("127.0.0.1:0", "127.0.0.1:0"),
            clock,
            String::new(),
        )
        .await
    }

    /// A server with these configuration lines added (such as a `[notifications]` table) and
    /// this clock.
    pub async fn spawn_configured(backend: Backend, extra_config: &str, clock: Clock) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database(backend, dir.path()).await;
        Self::spawn_at(
            backend,
            dir,
            database_url,
            false,
            ("127.0.0.1:0", "127.0.0.1:0"),
            clock,
            extra_config.to_string(),
        )
        .await
    }

    async fn spawn_at(
        backend: Backend,
        dir: tempfile::TempDir,
        database_url: String,
        demo: bool,
        (listen, device_listen): (&str, &str),
        clock: Clock,
        extra_config: String,
    ) -> TestApp {
        let config_file = dir.path().join("mdm.toml");
        // Pushes never leave loopback: a server not pointed at a stand-in pushes to a closed port.
        let apple = if extra_config.contains("[apple]") {
            ""
        } else {
            "[apple]\npush_url = \"https://127.0.0.1:9\"\npush_attempts = 1\n"
        };
        let toml = format!(
            "listen = \"{listen}\"\ndevice_listen = \"{device_listen}\"\ndata_dir = \"{}\"\n\
             database_url = \"{}\"\nmax_body_bytes = 65536\n{extra_config}\n{apple}",
            dir.path().display(),
            database_url
        );
        std::fs::write(&config_file, toml).expect("write config");
        let config = Config::load(Some(&config_file)).expect("config");
        let server = server::start(
            config,
            StartOptions {
                demo,
                clock: clock.clone(),
            },
        )
        .await
        .expect("server starts");
        let base = format!("http://{}", server.addr);
        TestApp {
            server,
            base,
            http: reqwest::Client::new(),
            clock,
            database_url,
            config_file,
            dir,
            backend,
            extra_config,
        }
    }

    /// The device listener's URL, as enrollment tokens carry it.
    pub fn device_url(&self) -> String {
        self.server.state.device_url.clone()
    }

    /// Stops the server, runs `while_down`, and starts it again on the same addresses, data
    /// directory and database.
    pub async fn restart_after<T>(
        self,
        while_down: impl std::future::Future<Output = T>,
    ) -> (TestApp, T) {
        let (addr, device_addr) = (
            self.server.addr.to_string(),
            self.server.device_addr.to_string(),
        );
        let TestApp {
            server,
            dir,
            database_url,
            backend,
            clock,
            extra_config,
            ..
        } = self;
        server.stop().await.expect("server stops");
        let out = while_down.await;
        let app = Self::spawn_at(
            backend,
            dir,
            database_url,
            false,
            (&addr, &device_addr),
            clock,
            extra_config,
        )
        .await;
        (app, out)
    }

    /// Runs an `mdm-server` command line against this server's configuration.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<()> {
        use clap::Parser;
        let mut argv = vec![
            "mdm-server",
            "--config",
            self.config_file.to_str().expect("utf-8 path"),
        ];
        argv.extend_from_slice(args);
        let cli = mdm_server::cli::Cli::try_parse_from(argv)?;
        mdm_server::cli::run(cli).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Response::of(req.send().await.expect("request reaches the server")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// A TOTP code for the account, at the server's clock after moving it past the last step
    /// used (codes cannot be replayed).
    pub fn totp_code(&self, totp_uri: &str) -> String {
        self.clock.advance(chrono::Duration::seconds(31));
        let totp = totp_rs::TOTP::from_url_unchecked(totp_uri).expect("otpauth uri");
        totp.generate(u64::try_from(self.clock.now().timestamp()).expect("time"))
    }

    pub async fn login(&self, email: &str, password: &str, totp_uri: &str) -> Response {
        let code = self.totp_code(totp_uri);
        self.request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": email, "password": password, "totp_code": code })),
        )
        .await
    }

    /// Logs in with a one-time password, changes it and returns a working session token.
    pub async fn first_login(&self, account: &NewLogin) -> String {
        let r = self
            .login(
                &account.email,
                &account.one_time_password,
                &account.totp_uri,
            )
            .await;
        r.expect(StatusCode::OK);
        let token = r.body["token"].as_str().expect("token").to_string();
        assert_eq!(r.body["must_change_password"], true);
        let r = self
            .post(
                "/api/v1/me/password",
                &token,
                json!({ "current_password": account.one_time_password, "new_password": STRONG_PASSWORD }),
            )
            .await;
        r.expect(StatusCode::NO_CONTENT);
        token
    }

    /// Bootstraps the first operator admin through the CLI, as municipal IT does on day one,
    /// and logs in.
    pub async fn bootstrap_admin(&self) -> (NewLogin, String) {
        let email = "it-chef@kommun.example";
        let before = self.count("accounts").await;
        let (one_time_password, totp_uri) = capture_create_user(self, email).await;
        assert_eq!(self.count("accounts").await, before + 1);
        let login = NewLogin {
            id: 0,
            email: email.to_string(),
            one_time_password,
            totp_uri,
        };
        let token = self.first_login(&login).await;
        (login, token)
    }

    /// An API token of a new operator admin: it outlives the 8-hour session while tests move
    /// the clock on by days.
    pub async fn admin_api_token(&self) -> String {
        let (_, session) = self.bootstrap_admin().await;
        let token = self
            .post(
                "/api/v1/me/tokens",
                &session,
                json!({ "name": "tests", "expires_in_days": 365 }),
            )
            .await;
        token.expect(StatusCode::CREATED);
        token.body["token"].as_str().expect("token").to_string()
    }

    /// Creates a provider through the API and returns its id.
    pub async fn create_provider(&self, token: &str, name: &str, org_number: &str) -> i64 {
        let r = self
            .post(
                "/api/v1/providers",
                token,
                json!({
                    "name": name,
                    "org_number": org_number,
                    "contract_start": "2024-01-01",
                    "it_contacts": [{ "name": "Kim Kontakt", "email": format!("it@{}.example", org_number.replace('-', "")), "mobile": "+46701234567" }]
                }),
            )
            .await;
        r.expect(StatusCode::CREATED);
        r.body["id"].as_i64().expect("id")
    }

    /// Creates an account through the API and returns its first credentials.
    pub async fn create_user(&self, token: &str, org_id: i64, email: &str, role: &str) -> NewLogin {
        let r = self
            .post(
                "/api/v1/users",
                token,
                json!({ "organisation_id": org_id, "email": email, "display_name": "Test Person", "role": role }),
            )
            .await;
        r.expect(StatusCode::CREATED);
        NewLogin {
            id: r.body["user"]["id"].as_i64().expect("id"),
            email: email.to_string(),
            one_time_password: r.body["one_time_password"]
                .as_str()
                .expect("otp")
                .to_string(),
            totp_uri: r.body["totp_uri"].as_str().expect("uri").to_string(),
        }
    }

    /// Adds a model to the catalogue and returns its id.
    pub async fn create_model(
        &self,
        token: &str,
        platform: &str,
        name: &str,
        since: Option<&str>,
    ) -> i64 {
        let r = self
            .post(
                "/api/v1/models",
                token,
                json!({ "platform": platform, "name": name, "recommended_since": since }),
            )
            .await;
        r.expect(StatusCode::CREATED);
        r.body["id"].as_i64().expect("id")
    }

    /// Registers a phone and returns its id.
    pub async fn register_device(
        &self,
        token: &str,
        serial: &str,
        imei: &str,
        provider_id: Option<i64>,
    ) -> i64 {
        let r = self
            .post(
                "/api/v1/devices",
                token,
                json!({ "platform": "ios", "model": "iPhone 16", "serial": serial, "imei": imei, "provider_id": provider_id }),
            )
            .await;
        r.expect(StatusCode::CREATED);
        r.body["id"].as_i64().expect("id")
    }

    /// Direct database access, for tests that play an attacker with access to the files.
    pub async fn execute_sql(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url)
                    .await
                    .expect("sqlite");
                sqlx::raw_sql(sql).execute(&pool).await.expect("sql");
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url)
                    .await
                    .expect("postgres");
                sqlx::raw_sql(sql).execute(&pool).await.expect("sql");
                pool.close().await;
            }
        }
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url)
                    .await
                    .expect("sqlite");
                let n = sqlx::query_scalar(&sql)
                    .fetch_one(&pool)
                    .await
                    .expect("count");
                pool.close().await;
                n
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url)
                    .await
                    .expect("postgres");
                let n = sqlx::query_scalar(&sql)
                    .fetch_one(&pool)
                    .await
                    .expect("count");
                pool.close().await;
                n
            }
        }
    }
}

/// A password that passes the strength rule.
pub const STRONG_PASSWORD: &str = "kanelbulle-Fjällräv-ösregn-42";

/// Valid organisation numbers (check digits correct, legal entities).
pub const ORG_A: &str = "556036-0793";
pub const ORG_B: &str = "556703-7485";

/// A valid IMEI for a small number.
pub fn imei(n: u32) -> String {
    let body = format!("35{n:012}");
    format!("{body}{}", mdm_server::domain::luhn::check_digit(&body))
}

/// Registers `count` unplaced iPhones of `model_id` straight through the store, faster than the
/// API for fleets (serials `{prefix}{n:08}`, IMEIs `imei(first_imei + n)`), and returns them as
/// stored.
pub async fn import_iphones(
    store: &dyn mdm_server::store::Store,
    model_id: i64,
    prefix: &str,
    first_imei: u32,
    count: u32,
) -> Vec<mdm_server::store::Device> {
    import_placed_iphones(store, model_id, prefix, first_imei, count, None).await
}

/// Like [`import_iphones`], placed with `provider_id`; returns only the phones imported.
pub async fn import_placed_iphones(
    store: &dyn mdm_server::store::Store,
    model_id: i64,
    prefix: &str,
    first_imei: u32,
    count: u32,
    provider_id: Option<i64>,
) -> Vec<mdm_server::store::Device> {
    use mdm_server::domain::audit::AuditEvent;
    use mdm_server::domain::device::{Imei, Platform, Serial};
    use mdm_server::store::{DeviceFilter, NewDevice};

    let devices: Vec<NewDevice> = (0..count)
        .map(|n| NewDevice {
            serial: Serial::parse(&format!("{prefix}{n:08}")).expect("serial"),
            imei: Imei::parse(&imei(first_imei + n)).expect("imei"),
            model_id,
            platform: Platform::Ios,
            provider_id,
            purchase_date: None,
            warranty_end: None,
            supplier: None,
        })
        .collect();
    store
        .import_devices(
            &devices,
            Utc::now(),
            AuditEvent::unattended("test", "device.import"),
            &|_| {},
        )
        .await
        .expect("import");
    let mut devices = Vec::with_capacity(count as usize);
    let mut after = None;
    loop {
        let page = store
            .list_devices(&DeviceFilter {
                limit: 1000,
                after_id: after,
                ..Default::default()
            })
            .await
            .expect("devices");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        devices.extend(page.into_iter().filter(|d| d.serial.starts_with(prefix)));
    }
    devices
}

/// An enrollment token (valid a day) for `device_id` on `channel` with `secret`, made straight
/// through the store.
pub async fn store_enrollment_token(
    store: &dyn mdm_server::store::Store,
    device_id: i64,
    secret: &str,
    channel: mdm_server::domain::device::Channel,
    now: chrono::DateTime<Utc>,
) {
    use mdm_server::domain::audit::AuditEvent;
    let token = mdm_server::store::NewEnrollmentToken {
        token_hash: mdm_server::auth::hash_token(secret),
        device_id: Some(device_id),
        provider_id: None,
        created_by: None,
        expires_at: now + chrono::Duration::days(1),
        channel,
    };
    store
        .create_enrollment_token(
            &token,
            now,
            AuditEvent::unattended("test", "enrollment_token.create"),
        )
        .await
        .expect("token");
}

/// An enrollment token (valid a day) for each of `devices`, made straight through the store,
/// as simulated iPhones that present the devices' identifiers to `device_url`.
pub async fn swarm_phones(
    store: &dyn mdm_server::store::Store,
    device_url: &str,
    root_fingerprint: &str,
    devices: Vec<mdm_server::store::Device>,
    now: chrono::DateTime<Utc>,
) -> Vec<agent::swarm::SwarmPhone> {
    use mdm_server::domain::device::Channel;
    let mut phones = Vec::with_capacity(devices.len());
    for device in devices {
        let invite = enrollment::EnrollmentInvite::new(device_url, root_fingerprint);
        store_enrollment_token(store, device.id, &invite.secret, Channel::Agent, now).await;
        phones.push(agent::swarm::SwarmPhone {
            token: invite.encode(),
            facts: agent::swarm::simulated_facts(&device.serial, &device.imei, "ios", "iPhone 16"),
        });
    }
    phones
}

/// `count` iPhones of `model_id` placed with `provider_id`, each with an enrollment token made
/// through the store and enrolled as a simulated phone on the app's device listener.
pub async fn enrolled_swarm(
    app: &TestApp,
    model_id: i64,
    provider_id: i64,
    prefix: &str,
    count: u32,
    connections: agent::client::Connections,
) -> Vec<agent::swarm::EnrolledPhone> {
    let state = &app.server.state;
    let store = state.store.as_ref();
    let devices =
        import_placed_iphones(store, model_id, prefix, 500_000, count, Some(provider_id)).await;
    let phones = swarm_phones(
        store,
        &app.device_url(),
        &state.ca.root_fingerprint(),
        devices,
        app.clock.now(),
    )
    .await;
    agent::swarm::enroll_all_with(phones, 16, connections, &|| {})
        .await
        .expect("enroll the swarm")
}

/// An account of `role` in the operator organisation and an API token for it, made straight
/// through the store (no CLI binary needed: benchmarks run from the release build).
pub async fn store_api_token(app: &TestApp, role: mdm_server::domain::role::Role) -> String {
    use mdm_server::auth::{generate_token, hash_password};
    use mdm_server::domain::audit::AuditEvent;
    use mdm_server::store::{NewAccount, NewSession, SessionKind};

    let store = &app.server.state.store;
    let now = app.clock.now();
    let account = store
        .create_account(
            &NewAccount {
                org_id: app.server.state.operator_id,
                email: format!("{}@kommun.example", role.as_str()),
                display_name: "Bench".into(),
                role,
                password_hash: hash_password("not-used-for-login-in-the-bench"),
                must_change_password: false,
                totp_secret: None,
            },
            now,
            AuditEvent::unattended("bench", "account.create"),
        )
        .await
        .expect("account");
    let (token, token_hash) = generate_token();
    store
        .create_token(
            &NewSession {
                account_id: account.id,
                kind: SessionKind::ApiToken,
                name: Some("bench".into()),
                token_hash,
                expires_at: now + chrono::Duration::days(1),
            },
            now,
            AuditEvent::unattended("bench", "token.create"),
        )
        .await
        .expect("token");
    token
}

/// Writes the description file of an iPhone (iOS 18.1) with a numeric PIN of `pin` digits, for
/// a real agent to play.
pub fn write_iphone_description(path: &std::path::Path, serial: &str, imei: &str, pin: u8) {
    std::fs::write(
        path,
        format!(
            "serial = \"{serial}\"\nimei = \"{imei}\"\nplatform = \"ios\"\nmodel = \"iPhone 16\"\n\
             os_version = \"18.1\"\n\n[pin]\nset = true\nlength = {pin}\nnumeric = true\n"
        ),
    )
    .expect("write the device description");
}

/// A server on a fixed clock with an operator admin's API token (it outlives sessions while the
/// clock moves) and two providers, A and B, and the iPhone 16 model: where most end-to-end
/// tests of phones start.
#[derive(Debug)]
pub struct Fleet {
    pub app: TestApp,
    pub admin: String,
    pub provider_a: i64,
    pub provider_b: i64,
    /// The iPhone 16, recommended since 2024-09-20.
    pub model: i64,
}

impl Fleet {
    /// Queues a command for `device` through the API as the operator admin; its id.
    pub async fn queue_command(&self, device: i64, body: Value) -> i64 {
        let r = self
            .app
            .post(
                &format!("/api/v1/devices/{device}/commands"),
                &self.admin,
                body,
            )
            .await;
        r.expect(StatusCode::CREATED);
        r.body["id"].as_i64().expect("id")
    }

    /// A command as the API shows it.
    pub async fn command(&self, id: i64) -> Value {
        let r = self
            .app
            .get(&format!("/api/v1/commands/{id}"), &self.admin)
            .await;
        r.expect(StatusCode::OK);
        r.body
    }

    /// Leases the phone to provider A and returns it five minutes later (on the fleet's
    /// clock); the wipe the return queued.
    pub async fn lease_and_return(&self, device: i64) -> i64 {
        self.app
            .post(
                "/api/v1/leases",
                &self.admin,
                json!({ "device_id": device, "provider_id": self.provider_a, "monthly_price_sek": 249.5, "ends_on": "2029-11-30" }),
            )
            .await
            .expect(StatusCode::CREATED);
        self.app.clock.advance(chrono::Duration::minutes(5));
        let returned = self
            .app
            .post(
                &format!("/api/v1/devices/{device}/return"),
                &self.admin,
                json!({}),
            )
            .await;
        returned.expect(StatusCode::OK);
        returned.body["wipe_command_id"].as_i64().expect("wipe")
    }

    /// The phone's commands as the API lists them.
    pub async fn device_commands(&self, device: i64) -> Vec<Value> {
        let r = self
            .app
            .get(&format!("/api/v1/devices/{device}/commands"), &self.admin)
            .await;
        r.expect(StatusCode::OK);
        r.body.as_array().expect("commands").clone()
    }

    /// Puts the Phoniro care app (Android and iOS) in the catalogue under `phoniro`.
    pub async fn catalogue_phoniro(&self) {
        self.app
            .request(
                Method::PUT,
                "/api/v1/apps/phoniro",
                Some(&self.admin),
                Some(json!({ "name": "Phoniro Care", "android_package": "se.phoniro.app", "ios_bundle_id": "se.phoniro.ios" })),
            )
            .await
            .expect(StatusCode::OK);
    }

    /// A phone's identity view (certificate, history, channel, Apple MDM details).
    pub async fn identity(&self, device: i64) -> Value {
        let r = self
            .app
            .get(&format!("/api/v1/devices/{device}/identity"), &self.admin)
            .await;
        r.expect(StatusCode::OK);
        r.body
    }

    /// A fleet on `backend` with `config` (extra TOML) whose clock stands at `at` (RFC 3339).
    pub async fn start(backend: Backend, config: &str, at: &str) -> Fleet {
        let clock = Clock::fixed(at.parse().expect("time"));
        let app = TestApp::spawn_configured(backend, config, clock).await;
        let admin = app.admin_api_token().await;
        let provider_a = app
            .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
            .await;
        let provider_b = app.create_provider(&admin, "Omsorg Syd AB", ORG_B).await;
        let model = app
            .create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
            .await;
        Fleet {
            app,
            admin,
            provider_a,
            provider_b,
            model,
        }
    }

    /// A new enrollment token for `device_id`.
    pub async fn enrollment_token(&self, device_id: i64) -> String {
        let token = self
            .app
            .post(
                "/api/v1/enrollment-tokens",
                &self.admin,
                json!({ "device_id": device_id }),
            )
            .await;
        token.expect(StatusCode::CREATED);
        token.body["token"].as_str().expect("token").to_string()
    }

    /// Registers an iPhone (placed with `provider`, or in stock) and enrolls the real agent on it.
    pub async fn enrolled_iphone(&self, serial: &str, n: u32, provider: Option<i64>) -> AgentPhone {
        let id = self
            .app
            .register_device(&self.admin, serial, &imei(n), provider)
            .await;
        let phone = AgentPhone::new(id);
        phone.describe(serial, n, None, 1);
        self.enroll(&phone).await;
        phone
    }

    /// Enrolls (or enrolls again) the agent on `phone` with a new token.
    pub async fn enroll(&self, phone: &AgentPhone) {
        let token = self.enrollment_token(phone.id).await;
        agent::client::enroll(&phone.state(), &token, &phone.facts())
            .await
            .expect("enroll");
    }
}

/// A phone played by the real agent: its description file and its state directory.
#[derive(Debug)]
pub struct AgentPhone {
    pub id: i64,
    pub dir: tempfile::TempDir,
}

/// Bytes in a gigabyte, as phones count their mobile data.
pub const GB: u64 = 1_000_000_000;

impl AgentPhone {
    pub fn new(id: i64) -> AgentPhone {
        AgentPhone {
            id,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn description(&self) -> PathBuf {
        self.dir.path().join("phone.toml")
    }

    pub fn state(&self) -> agent::state::StateDir {
        agent::state::StateDir::open(&self.dir.path().join("state")).expect("state")
    }

    pub fn facts(&self) -> agent::protocol::DeviceFacts {
        agent::device_file::DeviceDescription::load(&self.description())
            .expect("description")
            .facts()
    }

    pub fn client(&self) -> agent::client::DeviceClient {
        agent::client::DeviceClient::from_state(&self.state()).expect("client")
    }

    /// Describes the phone as an iPhone 16 with a six-digit PIN, its SIM, and the mobile data
    /// it used this month.
    pub fn describe(&self, serial: &str, n: u32, iccid: Option<&str>, data_gb: u64) {
        let iccid = iccid.map_or(String::new(), |i| format!("iccid = \"{i}\"\n"));
        std::fs::write(
            self.description(),
            format!(
                "serial = \"{serial}\"\nimei = \"{}\"\nplatform = \"ios\"\nmodel = \"iPhone 16\"\n\
                 os_version = \"18.1\"\n{iccid}mobile_data_bytes_this_month = {}\n\n\
                 [pin]\nset = true\nlength = 6\nnumeric = true\n",
                imei(n),
                data_gb * GB
            ),
        )
        .expect("write the description");
    }

    /// Checks in once and carries out what the server sent.
    pub async fn check_in(&self) {
        agent::client::checkin_once(&self.state(), &self.facts())
            .await
            .expect("check-in");
    }
}

/// The first credentials of a new account.
#[derive(Debug, Clone)]
pub struct NewLogin {
    pub id: i64,
    pub email: String,
    pub one_time_password: String,
    pub totp_uri: String,
}

/// Runs `mdm-server admin create-user` as a child process and reads what it printed.
async fn capture_create_user(app: &TestApp, email: &str) -> (String, String) {
    let output = tokio::process::Command::new(server_binary())
        .args(["--config", app.config_file.to_str().expect("utf-8")])
        .args([
            "admin",
            "create-user",
            "--email",
            email,
            "--name",
            "Iris Chef",
            "--role",
            "operator_admin",
        ])
        .output()
        .await
        .expect("run mdm-server");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "create-user failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' in: {stdout}"))
            .trim()
            .to_string()
    };
    (
        field("one-time password:"),
        field("TOTP enrolment URI (scan or paste into an authenticator app):"),
    )
}

/// The `mdm-server` binary next to this test binary. `cargo test --workspace` builds it,
/// because the `mdm-server` package has integration tests of its own binary.
pub fn server_binary() -> PathBuf {
    binary("mdm-server")
}

/// The `mdm-agent` binary next to this test binary (built for the agent's own CLI tests).
pub fn agent_binary() -> PathBuf {
    binary("mdm-agent")
}

fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (scripts/test does)",
        bin.display()
    );
    bin
}

/// A response read whole: status, headers and the JSON body (or `Null`).
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Response {
    /// Reads a response of a request the test built itself.
    pub async fn of(r: reqwest::Response) -> Response {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }

    #[track_caller]
    pub fn expect(&self, status: StatusCode) {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
    }

    /// Asserts a problem response with this status and `type`.
    #[track_caller]
    pub fn expect_problem(&self, status: StatusCode, slug: &str) {
        self.expect(status);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(
            self.body["type"],
            format!("/problems/{slug}"),
            "{}",
            self.text
        );
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
}
