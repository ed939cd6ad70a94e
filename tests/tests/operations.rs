//! Running the server: health, readiness, metrics, the API document, backup and restore, demo
//! mode.

use mdm_tests::{backend_tests, imei, Backend, TestApp, ORG_A, STRONG_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::json;

backend_tests!(
    health_readiness_and_metrics_are_served,
    demo_mode_refuses_an_installation_with_real_accounts,
    demo_mode_seeds_phones_and_logs_in_without_a_second_factor,
    backup_is_refused_or_taken_as_the_backend_allows_and_secrets_on_disk_are_the_server_users_only,
);

async fn health_readiness_and_metrics_are_served(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let get = |path: &'static str| app.http.get(format!("{}{path}", app.base)).send();
    assert_eq!(
        get("/healthz").await.expect("healthz").status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/readyz").await.expect("readyz").status(),
        StatusCode::OK
    );
    app.request(Method::GET, "/api/v1/devices", None, None)
        .await;
    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "mdm_http_requests_total{method=\"GET\",route=\"/api/v1/devices\",status=\"401\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("mdm_http_request_duration_seconds_bucket"));
}

async fn demo_mode_refuses_an_installation_with_real_accounts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.bootstrap_admin().await;
    let err = mdm_server::demo::check_installation(&app.server.state)
        .await
        .expect_err("real accounts must keep their second factor");
    assert!(format!("{err}").contains("holds real data"), "{err}");
}

async fn demo_mode_seeds_phones_and_logs_in_without_a_second_factor(backend: Backend) {
    let app = TestApp::spawn_with(backend, true).await;
    mdm_server::demo::check_installation(&app.server.state)
        .await
        .expect("an empty installation may become a demo");
    let logins = mdm_server::demo::seed(&app.server.state)
        .await
        .expect("seed");
    assert_eq!(logins.len(), 6);
    // Seeding twice adds nothing.
    mdm_server::demo::seed(&app.server.state)
        .await
        .expect("seed again");
    mdm_server::demo::check_installation(&app.server.state)
        .await
        .expect("a demo installation stays one");
    assert_eq!(app.count("devices").await, 20);
    assert_eq!(app.count("accounts").await, 6);
    let r = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": "admin@norr.example", "password": mdm_server::demo::DEMO_PASSWORD })),
        )
        .await;
    r.expect(StatusCode::OK);
    let token = r.body["token"].as_str().expect("token");
    let devices = app.get("/api/v1/devices?limit=100", token).await;
    let items = devices.body["items"].as_array().expect("items");
    assert!(
        !items.is_empty() && items.len() < 20,
        "a provider sees only its own phones"
    );
    let admin = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": "it-admin@kommun.example", "password": mdm_server::demo::DEMO_PASSWORD })),
        )
        .await;
    let all = app
        .get(
            "/api/v1/devices?limit=100",
            admin.body["token"].as_str().expect("token"),
        )
        .await;
    let items = all.body["items"].as_array().expect("items");
    let statuses: std::collections::HashSet<&str> = items
        .iter()
        .map(|d| d["status"].as_str().expect("s"))
        .collect();
    assert!(
        statuses.len() >= 4,
        "phones in different states: {statuses:?}"
    );
    assert!(items
        .iter()
        .any(|d| d["flags"] == json!(["unsupported_model"])));
    let banner = mdm_server::demo::banner(&logins, app.server.addr);
    assert!(banner.contains("DEMO MODE"));
}

async fn backup_is_refused_or_taken_as_the_backend_allows_and_secrets_on_disk_are_the_server_users_only(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let norr = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    app.create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    app.register_device(&admin, "BACKUP01", &imei(1), Some(norr))
        .await;
    let backup = app.dir.path().join("backup.sqlite3");
    let result = app.cli(&["backup", backup.to_str().expect("path")]).await;
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    };
    assert_eq!(mode(&app.dir.path().join("ca")), 0o700, "the CA's folder");
    match backend {
        Backend::Postgres => {
            let message = format!(
                "{:#}",
                result.expect_err("PostgreSQL is backed up with its own tools")
            );
            assert!(message.contains("pg_dump"), "{message}");
            return;
        }
        Backend::Sqlite => result.expect("online backup while the server runs"),
    }
    // Password hashes and TOTP secrets: the database, its WAL and the backup are private.
    for file in ["mdm.sqlite3", "mdm.sqlite3-wal", "mdm.sqlite3-shm"] {
        assert_eq!(mode(&app.dir.path().join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&backup), 0o600, "the backup");
    // Changes after the backup are not in it.
    app.register_device(&admin, "AFTER001", &imei(2), Some(norr))
        .await;
    let err = app
        .cli(&["backup", backup.to_str().expect("path")])
        .await
        .expect_err("no overwrite");
    assert!(format!("{err}").contains("already exists"));

    // Restore: the backup file becomes the database of a new installation, and the device CA
    // folder (backed up once) comes along; without it the server refuses to start.
    let restored_dir = tempfile::tempdir().expect("tempdir");
    let restored_db = restored_dir.path().join("mdm.sqlite3");
    std::fs::copy(&backup, &restored_db).expect("copy backup");
    let url = format!("sqlite://{}", restored_db.display());
    let without_ca = mdm_server::config::Config::from_overrides(json!({
        "listen": "127.0.0.1:0",
        "device_listen": "127.0.0.1:0",
        "data_dir": restored_dir.path(),
        "database_url": url,
    }))
    .expect("config");
    let err = mdm_server::server::build_state(without_ca, Default::default())
        .await
        .expect_err("the phones' CA is missing");
    assert!(format!("{err}").contains("DATA_DIR/ca"), "{err}");
    std::fs::remove_dir_all(restored_dir.path().join("ca")).expect("remove the new CA");
    std::fs::create_dir(restored_dir.path().join("ca")).expect("ca dir");
    for file in ["root.pem", "root.key", "issuing.pem", "issuing.key"] {
        std::fs::copy(
            app.dir.path().join("ca").join(file),
            restored_dir.path().join("ca").join(file),
        )
        .expect("copy CA");
    }
    let restored = TestApp::spawn_on(Backend::Sqlite, restored_dir, url, false).await;
    restored
        .cli(&["audit", "verify"])
        .await
        .expect("the restored trail verifies");
    // The original server's clock ran ahead while logging in; codes are never accepted twice.
    restored.clock.advance(chrono::Duration::minutes(10));
    let code = restored.totp_code(&app_admin_totp(&app).await);
    let login = restored
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": "it-chef@kommun.example", "password": STRONG_PASSWORD, "totp_code": code })),
        )
        .await;
    login.expect(StatusCode::OK);
    let token = login.body["token"].as_str().expect("token");
    let devices = restored.get("/api/v1/devices", token).await;
    let serials: Vec<&str> = devices.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["serial"].as_str().expect("s"))
        .collect();
    assert_eq!(serials, vec!["BACKUP01"]);
}

/// The bootstrap admin's TOTP URI, rebuilt from the stored secret (the test plays the person
/// whose authenticator app holds it).
async fn app_admin_totp(app: &TestApp) -> String {
    let account = app
        .server
        .state
        .store
        .account_by_email("it-chef@kommun.example")
        .await
        .expect("account");
    let secret = account.totp_secret.expect("secret");
    mdm_server::auth::Totp::new(&secret, &account.email, "MDM")
        .expect("totp")
        .provisioning_uri()
}

#[tokio::test]
async fn openapi_document_matches_the_committed_snapshot() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let served: serde_json::Value = app
        .http
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let text = serde_json::to_string_pretty(&served).expect("pretty") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &text).expect("write snapshot");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "the API contract changed: review the difference and run `UPDATE_OPENAPI=1 cargo test -p mdm-tests openapi` to accept it"
    );
    for path in [
        "/api/v1/auth/login",
        "/api/v1/devices",
        "/api/v1/devices/{id}",
        "/api/v1/providers",
        "/api/v1/users",
        "/api/v1/audit",
    ] {
        assert!(served["paths"][path].is_object(), "{path} is documented");
    }
}
