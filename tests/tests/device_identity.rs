//! Device identity end to end over real TLS on loopback: enrollment tokens, CSR signing, mutual
//! TLS check-ins, revocation, renewal, and an agent that keeps its reports while the server is
//! down. Every test runs on SQLite and PostgreSQL.

use agent::client::{checkin_once, enroll, renew, DeviceClient, Refused};
use agent::protocol::{DeviceFacts, EnrollRequest, InstalledApp};
use agent::state::StateDir;
use agent::swarm::simulated_facts;
use base64::Engine;
use mdm_tests::{backend_tests, imei, import_iphones, Backend, TestApp, ORG_A, ORG_B};
use reqwest::{Method, StatusCode};
use serde_json::json;
use x509_parser::prelude::{FromDer, X509Certificate};

backend_tests!(
    a_second_node_with_another_ca_is_refused_at_start,
    a_phone_enrolls_checks_in_and_its_facts_show_in_the_inventory,
    a_token_works_once_and_not_after_it_expires,
    a_csr_asking_to_be_a_ca_gets_a_one_year_client_leaf,
    a_client_certificate_from_another_ca_is_refused_at_the_handshake,
    a_revoked_identity_is_refused_on_the_very_next_check_in_and_the_agent_stops_asking_to_enroll_again,
    the_agent_keeps_its_report_while_the_server_is_down,
    renewal_gives_a_new_certificate_and_retires_the_old_one,
    bad_enrollments_and_contradicting_facts_are_refused_and_audited,
    a_pool_token_enrolls_only_phones_placed_with_that_provider,
    providers_see_their_own_device_identities_only,
    phones_checking_in_together_are_each_answered_as_themselves,
    check_in_times_of_many_phones_land_together_and_never_move_back,
);

/// An operator admin, a provider, the iPhone 16 model and one registered phone placed there.
async fn setup(backend: Backend) -> (TestApp, String, i64, i64) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let provider = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    app.create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    let device = app
        .register_device(&admin, "PHONE001", &imei(1), Some(provider))
        .await;
    (app, admin, provider, device)
}

fn facts_for(serial: &str, n: u32) -> DeviceFacts {
    simulated_facts(serial, &imei(n), "ios", "iPhone 16")
}

async fn token_for(app: &TestApp, admin: &str, body: serde_json::Value) -> String {
    let r = app.post("/api/v1/enrollment-tokens", admin, body).await;
    r.expect(StatusCode::CREATED);
    r.body["token"].as_str().expect("token").to_string()
}

/// The set-up's phone, enrolled by the agent with a token made for it: the state directory
/// (kept while the returned directory lives) and the facts the phone reports.
async fn enrolled_phone(
    app: &TestApp,
    admin: &str,
    device: i64,
) -> (tempfile::TempDir, StateDir, DeviceFacts) {
    let token = token_for(app, admin, json!({ "device_id": device })).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(dir.path()).expect("state");
    let facts = facts_for("PHONE001", 1);
    enroll(&state, &token, &facts).await.expect("enroll");
    (dir, state, facts)
}

fn refusal(err: &anyhow::Error) -> (u16, String) {
    let refused = err
        .downcast_ref::<Refused>()
        .unwrap_or_else(|| panic!("not a refusal: {err:#}"));
    (refused.status, refused.problem_type.clone())
}

async fn a_second_node_with_another_ca_is_refused_at_start(backend: Backend) {
    let (app, _, _, _) = setup(backend).await;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let config = mdm_server::config::Config::from_overrides(json!({
        "listen": "127.0.0.1:0",
        "device_listen": "127.0.0.1:0",
        "data_dir": other_dir.path(),
        "database_url": app.database_url,
    }))
    .expect("config");
    let err = mdm_server::server::build_state(config, Default::default())
        .await
        .expect_err("another CA");
    assert!(format!("{err}").contains("copy DATA_DIR/ca"), "{err}");
}

async fn a_phone_enrolls_checks_in_and_its_facts_show_in_the_inventory(backend: Backend) {
    let (app, admin, _, device) = setup(backend).await;
    let created = app
        .post(
            "/api/v1/enrollment-tokens",
            &admin,
            json!({ "device_id": device }),
        )
        .await;
    created.expect(StatusCode::CREATED);
    let token = created.body["token"].as_str().expect("token");
    assert!(created.body["qr_svg"]
        .as_str()
        .is_some_and(|s| s.contains("<svg")));
    let png = base64::engine::general_purpose::STANDARD
        .decode(created.body["qr_png_base64"].as_str().expect("png"))
        .expect("base64");
    assert_eq!(&png[..4], b"\x89PNG");
    let invite = enrollment::EnrollmentInvite::decode(token).expect("invite");
    assert_eq!(invite.url, app.device_url());
    assert_eq!(invite.ca, app.server.state.ca.root_fingerprint());

    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(state_dir.path()).expect("state");
    let mut facts = facts_for("PHONE001", 1);
    let enrolled = enroll(&state, token, &facts).await.expect("enroll");
    assert_eq!(enrolled.device_id, device);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state_dir.path().join("identity.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the device key is private");
    }
    facts.installed_apps.push(InstalledApp {
        id: "se.phoniro.app".into(),
        version: "5.2.1".into(),
    });
    facts.os_version = "18.2".into();
    checkin_once(&state, &facts).await.expect("check-in");
    assert!(
        state.pending().expect("pending").is_empty(),
        "the report was acknowledged"
    );

    let view = app.get(&format!("/api/v1/devices/{device}"), &admin).await;
    view.expect(StatusCode::OK);
    assert_eq!(view.body["reported"]["os_version"], "18.2");
    let apps = view.body["reported"]["installed_apps"]
        .as_array()
        .expect("apps");
    assert!(apps.iter().any(|a| a["id"] == "se.phoniro.app"));
    assert!(view.body["last_checkin_at"].is_string());
    let identity = app
        .get(&format!("/api/v1/devices/{device}/identity"), &admin)
        .await;
    identity.expect(StatusCode::OK);
    assert_eq!(identity.body["certificate"]["key"], "p256");
    assert!(identity.body["certificate"]["fingerprint"]
        .as_str()
        .is_some_and(|f| f.len() == 64));

    // Unchanged facts are not rewritten: only the check-in time moves, in the next batch.
    let before = app.count("audit_log").await;
    let first_seen = view.body["last_checkin_at"].clone();
    app.clock.advance(chrono::Duration::minutes(15));
    checkin_once(&state, &facts).await.expect("second check-in");
    assert_eq!(
        app.count("audit_log").await,
        before,
        "check-ins are not audited one by one"
    );
    let store = app.server.state.store.clone();
    app.server
        .state
        .checkin_times
        .flush(store.as_ref())
        .await
        .expect("flush");
    let later = app.get(&format!("/api/v1/devices/{device}"), &admin).await;
    assert_ne!(later.body["last_checkin_at"], first_seen, "the time moved");
    assert_eq!(later.body["reported"], view.body["reported"]);
}

async fn a_token_works_once_and_not_after_it_expires(backend: Backend) {
    let (app, admin, _, device) = setup(backend).await;
    let token = token_for(&app, &admin, json!({ "device_id": device })).await;
    let first = tempfile::tempdir().expect("tempdir");
    enroll(
        &StateDir::open(first.path()).expect("state"),
        &token,
        &facts_for("PHONE001", 1),
    )
    .await
    .expect("first use");
    let second = tempfile::tempdir().expect("tempdir");
    let err = enroll(
        &StateDir::open(second.path()).expect("state"),
        &token,
        &facts_for("PHONE001", 1),
    )
    .await
    .expect_err("second use");
    assert_eq!(
        refusal(&err),
        (409, "/problems/enrollment-token-used".into())
    );

    let expiring = token_for(
        &app,
        &admin,
        json!({ "device_id": device, "expires_in_days": 1 }),
    )
    .await;
    // Sessions last hours; an API token outlives the jump in time below.
    let script = app
        .post("/api/v1/me/tokens", &admin, json!({ "name": "test" }))
        .await
        .body["token"]
        .as_str()
        .expect("token")
        .to_string();
    app.clock.advance(chrono::Duration::days(2));
    let third = tempfile::tempdir().expect("tempdir");
    let err = enroll(
        &StateDir::open(third.path()).expect("state"),
        &expiring,
        &facts_for("PHONE001", 1),
    )
    .await
    .expect_err("expired");
    assert_eq!(
        refusal(&err),
        (410, "/problems/enrollment-token-expired".into())
    );

    let mut invite = enrollment::EnrollmentInvite::decode(&token).expect("invite");
    invite.secret = "made-up".into();
    let err = enroll(
        &StateDir::open(third.path()).expect("state"),
        &invite.encode(),
        &facts_for("PHONE001", 1),
    )
    .await
    .expect_err("unknown");
    assert_eq!(
        refusal(&err),
        (401, "/problems/enrollment-token-unknown".into())
    );

    // A token that pins another CA is refused by the phone before it sends anything.
    let mut wrong_ca = enrollment::EnrollmentInvite::decode(&token).expect("invite");
    wrong_ca.ca = "00".repeat(32);
    let err = enroll(
        &StateDir::open(third.path()).expect("state"),
        &wrong_ca.encode(),
        &facts_for("PHONE001", 1),
    )
    .await
    .expect_err("pinned CA differs");
    assert!(format!("{err:#}").contains("does not match"), "{err:#}");

    let tokens = app.get("/api/v1/enrollment-tokens", &script).await;
    let statuses: Vec<&str> = tokens
        .body
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t["status"].as_str().expect("s"))
        .collect();
    assert_eq!(statuses, vec!["expired", "used"]);
}

/// A client for the device listener that trusts the server's CA and presents no certificate.
async fn anonymous_device_client(app: &TestApp) -> reqwest::Client {
    let chain = reqwest::get(format!(
        "{}/agent/v1/ca",
        app.device_url().replace("https", "http")
    ))
    .await
    .ok();
    assert!(
        chain.is_none() || chain.is_some_and(|r| !r.status().is_success()),
        "the device listener speaks TLS only"
    );
    let root = app.server.state.ca.root_pem().to_string();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).expect("root"))
        .build()
        .expect("client")
}

async fn a_csr_asking_to_be_a_ca_gets_a_one_year_client_leaf(backend: Backend) {
    let (app, admin, _, device) = setup(backend).await;
    let token = token_for(&app, &admin, json!({ "device_id": device })).await;
    let invite = enrollment::EnrollmentInvite::decode(&token).expect("invite");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut wants =
        rcgen::CertificateParams::new(vec!["mdm.kommun.example".into()]).expect("params");
    wants.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // An extension the CA does not know, which must not break signing or reach the leaf.
    wants
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[2, 5, 29, 14],
            vec![0x04, 0x02, 0xab, 0xcd],
        ));
    let csr = wants.serialize_request(&key).expect("csr");
    let client = anonymous_device_client(&app).await;
    let answer = client
        .post(format!("{}/agent/v1/enroll", invite.url))
        .json(&EnrollRequest {
            token: invite.secret.clone(),
            csr: base64::engine::general_purpose::STANDARD.encode(csr.der()),
            facts: facts_for("PHONE001", 1),
        })
        .send()
        .await
        .expect("enroll");
    assert_eq!(answer.status(), StatusCode::CREATED);
    let body: serde_json::Value = answer.json().await.expect("json");
    let pem = body["certificate_pem"].as_str().expect("pem");
    let der = enrollment::ca::pem_to_der(pem).expect("der");
    let (_, cert) = X509Certificate::from_der(&der).expect("x509");
    assert!(!cert.is_ca(), "not a CA");
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        (365 * 86_400..=366 * 86_400).contains(&life),
        "one year, not ten: {life}"
    );
    let eku = cert
        .extended_key_usage()
        .expect("eku")
        .expect("present")
        .value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any);
    assert!(
        cert.subject_alternative_name().expect("san").is_none(),
        "nothing taken from the CSR"
    );
    assert!(cert
        .extensions()
        .iter()
        .all(|e| e.oid.to_id_string() != "2.5.29.14" || e.value != [0x04, 0x02, 0xab, 0xcd]));
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw(),
        "the leaf carries exactly the CSR's key"
    );
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .expect("issuer");
    assert!(issuer.contains("issuing CA"), "{issuer}");
}

async fn a_client_certificate_from_another_ca_is_refused_at_the_handshake(backend: Backend) {
    let (app, admin, _, device) = setup(backend).await;
    // A CA of the attacker's own, and a client certificate from it.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf");
    let identity = format!("{}{}", leaf_key.serialize_pem(), cert.pem());
    let client = DeviceClient::new(
        &app.device_url(),
        &identity,
        &app.server.state.ca.chain_pem(),
    )
    .expect("client");
    let err = client
        .checkin(&agent::client::report(&facts_for("PHONE001", 1)))
        .await
        .expect_err("refused");
    assert!(
        err.downcast_ref::<Refused>().is_none(),
        "refused in the TLS handshake, not by an HTTP answer: {err:#}"
    );
    assert!(
        format!("{err:#}").contains("error sending request"),
        "{err:#}"
    );
    // The control: the same kind of client with the server's own certificate gets in.
    let token = token_for(&app, &admin, json!({ "device_id": device })).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(dir.path()).expect("state");
    enroll(&state, &token, &facts_for("PHONE001", 1))
        .await
        .expect("enroll");
    let genuine = DeviceClient::new(
        &app.device_url(),
        &state.identity_pem().expect("identity"),
        &app.server.state.ca.chain_pem(),
    )
    .expect("client");
    genuine
        .checkin(&agent::client::report(&facts_for("PHONE001", 1)))
        .await
        .expect("accepted");
}

async fn a_revoked_identity_is_refused_on_the_very_next_check_in_and_the_agent_stops_asking_to_enroll_again(
    backend: Backend,
) {
    let (app, admin, _, device) = setup(backend).await;
    let (_dir, state, facts) = enrolled_phone(&app, &admin, device).await;
    checkin_once(&state, &facts).await.expect("check-in");
    let serial = app
        .get(&format!("/api/v1/devices/{device}/identity"), &admin)
        .await
        .body["certificate"]["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    let r = app
        .post(
            &format!("/api/v1/devices/{device}/identity/revoke"),
            &admin,
            json!({ "reason": "lost" }),
        )
        .await;
    r.expect(StatusCode::OK);
    assert_eq!(r.body["revoked"], 1);
    let err = checkin_once(&state, &facts).await.expect_err("revoked");
    assert_eq!(
        refusal(&err),
        (401, "/problems/device-identity-refused".into())
    );
    assert_eq!(
        state.pending().expect("pending").len(),
        1,
        "the refused report is kept"
    );

    // The agent running on the phone stops at the refusal instead of retrying it for ever, and
    // says what must happen.
    let device_file = _dir.path().join("phone.toml");
    std::fs::write(
        &device_file,
        format!(
            "serial = \"PHONE001\"\nimei = \"{}\"\nplatform = \"ios\"\nmodel = \"iPhone 16\"\nos_version = \"18.1\"\n",
            imei(1)
        ),
    )
    .expect("description");
    let run = tokio::process::Command::new(mdm_tests::agent_binary())
        .args(["run", "--state-dir"])
        .arg(state.path())
        .arg("--device")
        .arg(&device_file)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("the agent stops by itself")
        .expect("run mdm-agent");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("enroll it again"), "{stderr}");

    let trail = app.get("/api/v1/audit?limit=100", &admin).await;
    let actions: Vec<&str> = trail.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].as_str().expect("a"))
        .collect();
    assert!(
        actions.contains(&"device.revoke_identity") && actions.contains(&"device.refused"),
        "{actions:?}"
    );
    let identity = app
        .get(&format!("/api/v1/devices/{device}/identity"), &admin)
        .await;
    assert!(identity.body["certificate"].is_null());
    assert_eq!(identity.body["history"][0]["revoke_reason"], "lost");

    // The revocation list names the certificate.
    let crl = anonymous_device_client(&app)
        .await
        .get(format!("{}/agent/v1/crl", app.device_url()))
        .send()
        .await
        .expect("crl")
        .bytes()
        .await
        .expect("bytes");
    let (_, list) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&crl).expect("crl");
    let listed: Vec<String> = list
        .iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string().replace(':', ""))
        .collect();
    assert!(listed.contains(&serial), "{listed:?} lacks {serial}");
}

async fn the_agent_keeps_its_report_while_the_server_is_down(backend: Backend) {
    let (app, admin, _, device) = setup(backend).await;
    let (dir, state, mut facts) = enrolled_phone(&app, &admin, device).await;
    checkin_once(&state, &facts).await.expect("check-in");

    facts.installed_apps.push(InstalledApp {
        id: "se.digitalnyckel.app".into(),
        version: "2.0".into(),
    });
    let (app, while_down) = app
        .restart_after(async {
            let err = checkin_once(&state, &facts)
                .await
                .expect_err("server is down");
            assert!(err.downcast_ref::<Refused>().is_none());
            state.pending().expect("pending").len()
        })
        .await;
    assert_eq!(while_down, 1, "the report waited on disk");
    // A restarted agent (a fresh state handle) delivers it.
    let state = StateDir::open(dir.path()).expect("state");
    facts.battery_percent = Some(55);
    checkin_once(&state, &facts).await.expect("server is back");
    assert!(state.pending().expect("pending").is_empty());
    // Sessions live in the database, so the operator's login survived the restart too.
    let view = app.get(&format!("/api/v1/devices/{device}"), &admin).await;
    let apps = view.body["reported"]["installed_apps"]
        .as_array()
        .expect("apps");
    assert!(
        apps.iter().any(|a| a["id"] == "se.digitalnyckel.app"),
        "{}",
        view.text
    );
    assert_eq!(view.body["reported"]["battery_percent"], 55);
}

async fn renewal_gives_a_new_certificate_and_retires_the_old_one(backend: Backend) {
    let (app, admin, _, device) = setup(backend).await;
    let (_dir, state, facts) = enrolled_phone(&app, &admin, device).await;
    let old_identity = state.identity_pem().expect("identity");
    renew(&state).await.expect("renew");
    assert_ne!(state.identity_pem().expect("identity"), old_identity);
    checkin_once(&state, &facts)
        .await
        .expect("the new certificate works");
    let old = DeviceClient::new(
        &app.device_url(),
        &old_identity,
        &state.ca_chain().expect("ca"),
    )
    .expect("client");
    let err = old
        .checkin(&agent::client::report(&facts))
        .await
        .expect_err("old certificate");
    assert_eq!(
        refusal(&err),
        (401, "/problems/device-identity-refused".into())
    );
    let identity = app
        .get(&format!("/api/v1/devices/{device}/identity"), &admin)
        .await;
    assert_eq!(identity.body["history"].as_array().map(Vec::len), Some(2));
    assert_eq!(identity.body["history"][1]["revoke_reason"], "renewed");
}

async fn bad_enrollments_and_contradicting_facts_are_refused_and_audited(backend: Backend) {
    let (app, admin, _, device) = setup(backend).await;
    let token = token_for(&app, &admin, json!({ "device_id": device })).await;
    let invite = enrollment::EnrollmentInvite::decode(&token).expect("invite");
    let client = anonymous_device_client(&app).await;
    let send = |csr: String, facts: DeviceFacts| {
        let client = client.clone();
        let url = format!("{}/agent/v1/enroll", invite.url);
        let body = EnrollRequest {
            token: invite.secret.clone(),
            csr,
            facts,
        };
        async move {
            let r = client.post(url).json(&body).send().await.expect("send");
            let status = r.status();
            let body: serde_json::Value = r.json().await.expect("json");
            (
                status,
                body["type"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    let good_csr = || {
        let key = rcgen::KeyPair::generate().expect("key");
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("p")
            .serialize_request(&key)
            .expect("csr");
        base64::engine::general_purpose::STANDARD.encode(csr.der())
    };
    let weak = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/rsa1024.csr.der"
    ))
    .expect("fixture");
    let cases = [
        (
            send("bm90IGEgY3Ny".into(), facts_for("PHONE001", 1)).await,
            (422, "invalid-csr"),
        ),
        (
            send(
                base64::engine::general_purpose::STANDARD.encode(&weak),
                facts_for("PHONE001", 1),
            )
            .await,
            (422, "weak-key"),
        ),
        (
            send(good_csr(), facts_for("OTHER001", 1)).await,
            (409, "facts-contradict-record"),
        ),
        (
            send(good_csr(), facts_for("PHONE001", 2)).await,
            (409, "facts-contradict-record"),
        ),
    ];
    for ((status, kind), (want_status, want_kind)) in cases {
        assert_eq!(
            (status.as_u16(), kind.as_str()),
            (want_status, format!("/problems/{want_kind}").as_str())
        );
    }
    let mut bad_facts = facts_for("PHONE001", 1);
    bad_facts.battery_percent = Some(250);
    assert_eq!(send(good_csr(), bad_facts).await.1, "/problems/validation");
    // None of that used the token or enrolled anything.
    let tokens = app.get("/api/v1/enrollment-tokens", &admin).await;
    assert_eq!(tokens.body[0]["status"], "unused");
    assert!(app
        .get(&format!("/api/v1/devices/{device}/identity"), &admin)
        .await
        .body["certificate"]
        .is_null());

    // After enrolling, a check-in claiming another IMEI is refused and recorded.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(dir.path()).expect("state");
    enroll(&state, &token, &facts_for("PHONE001", 1))
        .await
        .expect("enroll");
    let err = checkin_once(&state, &facts_for("PHONE001", 7))
        .await
        .expect_err("other IMEI");
    assert!(
        state.pending().expect("pending").is_empty(),
        "the refused report is set aside"
    );
    checkin_once(&state, &facts_for("PHONE001", 1))
        .await
        .expect("the next true report is delivered");
    assert_eq!(
        refusal(&err),
        (409, "/problems/facts-contradict-record".into())
    );
    let trail = app.get("/api/v1/audit?limit=200", &admin).await;
    let denied = trail.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| {
            e["outcome"] == "denied"
                && e["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("device."))
        })
        .count();
    assert_eq!(denied, 3, "two contradicting enrollments and the check-in");
    // An oversized report is refused before it is read.
    let identity = state.identity_pem().expect("identity");
    let device_client =
        DeviceClient::new(&app.device_url(), &identity, &state.ca_chain().expect("ca"))
            .expect("client");
    let mut huge = agent::client::report(&facts_for("PHONE001", 1));
    huge.facts.installed_apps = (0..3000)
        .map(|i| InstalledApp {
            id: format!("app.{i:040}"),
            version: "1".into(),
        })
        .collect();
    let err = device_client.checkin(&huge).await.expect_err("too large");
    // The server answers 413 as soon as the limit is passed and closes the connection; over
    // HTTP/1.1 the phone may still be writing the body and see the closed connection instead.
    match err.downcast_ref::<Refused>() {
        Some(refused) => assert_eq!(
            (refused.status, refused.problem_type.as_str()),
            (413, "/problems/body-too-large")
        ),
        None => assert!(
            format!("{err:#}").contains("error sending request"),
            "{err:#}"
        ),
    }
    let view = app.get(&format!("/api/v1/devices/{device}"), &admin).await;
    assert_eq!(
        view.body["reported"]["installed_apps"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "nothing of the oversized report was stored"
    );
}

async fn a_pool_token_enrolls_only_phones_placed_with_that_provider(backend: Backend) {
    let (app, admin, provider, _) = setup(backend).await;
    let other = app.create_provider(&admin, "Omsorg Syd AB", ORG_B).await;
    app.register_device(&admin, "PHONE002", &imei(2), Some(provider))
        .await;
    app.register_device(&admin, "PHONE003", &imei(3), Some(other))
        .await;
    let pool = token_for(&app, &admin, json!({ "provider_id": provider })).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let err = enroll(
        &StateDir::open(dir.path()).expect("state"),
        &pool,
        &facts_for("PHONE003", 3),
    )
    .await
    .expect_err("another provider's phone");
    assert_eq!(
        refusal(&err),
        (409, "/problems/facts-contradict-record".into())
    );
    let enrolled = enroll(
        &StateDir::open(dir.path()).expect("state"),
        &pool,
        &facts_for("PHONE002", 2),
    )
    .await
    .expect("the provider's phone");
    // Nobody can take over an enrolled phone with a pool token and its printed serial and IMEI.
    let again = token_for(&app, &admin, json!({ "provider_id": provider })).await;
    let thief = tempfile::tempdir().expect("tempdir");
    let err = enroll(
        &StateDir::open(thief.path()).expect("state"),
        &again,
        &facts_for("PHONE002", 2),
    )
    .await
    .expect_err("already enrolled");
    assert_eq!(
        refusal(&err),
        (409, "/problems/facts-contradict-record".into())
    );
    let view = app
        .get(&format!("/api/v1/devices/{}", enrolled.device_id), &admin)
        .await;
    assert_eq!(view.body["serial"], "PHONE002");
    app.post(
        "/api/v1/enrollment-tokens",
        &admin,
        json!({ "provider_id": provider, "device_id": 1 }),
    )
    .await
    .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
}

async fn providers_see_their_own_device_identities_only(backend: Backend) {
    let (app, admin, provider, device) = setup(backend).await;
    let other = app.create_provider(&admin, "Omsorg Syd AB", ORG_B).await;
    let foreign = app
        .register_device(&admin, "PHONE009", &imei(9), Some(other))
        .await;
    let padmin = app
        .create_user(&admin, provider, "it@norr.example", "provider_admin")
        .await;
    let token = app.first_login(&padmin).await;
    app.get(&format!("/api/v1/devices/{device}/identity"), &token)
        .await
        .expect(StatusCode::OK);
    app.get(&format!("/api/v1/devices/{foreign}/identity"), &token)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
    app.post(
        &format!("/api/v1/devices/{foreign}/identity/revoke"),
        &token,
        json!({ "reason": "x" }),
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not-found");
    app.post(
        &format!("/api/v1/devices/{device}/identity/revoke"),
        &token,
        json!({ "reason": "x" }),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    app.post(
        "/api/v1/enrollment-tokens",
        &token,
        json!({ "device_id": device }),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    app.request(Method::GET, "/api/v1/enrollment-tokens", Some(&token), None)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
}

/// Certificate checks of requests that arrive together go to the database in one query; each
/// phone must still be answered as itself, and a revoked phone among them refused.
async fn phones_checking_in_together_are_each_answered_as_themselves(backend: Backend) {
    let (app, admin, provider, _) = setup(backend).await;
    let mut phones = Vec::new();
    let mut ids = Vec::new();
    for n in 0..40u32 {
        let serial = format!("CROWD{n:03}");
        let id = app
            .register_device(&admin, &serial, &imei(100 + n), Some(provider))
            .await;
        let token = token_for(&app, &admin, json!({ "device_id": id })).await;
        ids.push(id);
        phones.push(agent::swarm::SwarmPhone {
            token,
            facts: facts_for(&serial, 100 + n),
        });
    }
    let enrolled = agent::swarm::enroll_all(phones, 8, &|| {})
        .await
        .expect("enroll");
    let revoked = ids[17];
    app.post(
        &format!("/api/v1/devices/{revoked}/identity/revoke"),
        &admin,
        json!({ "reason": "stolen" }),
    )
    .await
    .expect(StatusCode::OK);

    // Every phone reports its own number as its battery level, so that mixed-up answers show.
    // (Enrollment finishes in any order; the serial says which phone is which.)
    let number =
        |facts: &DeviceFacts| -> usize { facts.serial["CROWD".len()..].parse().expect("number") };
    let answers = futures::future::join_all(enrolled.iter().map(|phone| {
        let mut facts = phone.facts.clone();
        facts.battery_percent = Some(u8::try_from(number(&facts)).expect("small"));
        async move {
            let answer = phone.client.checkin(&agent::client::report(&facts)).await;
            (number(&facts), answer)
        }
    }))
    .await;
    for (n, answer) in &answers {
        let n = *n;
        match answer {
            Ok(_) => assert_ne!(n, 17, "the revoked phone was let in"),
            Err(e) => {
                assert_eq!(n, 17, "phone {n} was refused: {e:#}");
                assert_eq!(
                    refusal(e),
                    (401, "/problems/device-identity-refused".into())
                );
            }
        }
    }
    // Each phone's own report (not a neighbour's) is on its record.
    for (n, id) in ids.iter().enumerate() {
        let device = app.get(&format!("/api/v1/devices/{id}"), &admin).await;
        let reported = &device.body["reported"];
        assert_eq!(reported["serial"], format!("CROWD{n:03}"));
        let expected = if n == 17 { 80 } else { n };
        assert_eq!(reported["battery_percent"], expected, "phone {n}");
    }
}

/// The batched write of check-in times: more phones than one statement takes, every phone gets
/// its own time, and a time older than the stored one leaves the stored one alone.
async fn check_in_times_of_many_phones_land_together_and_never_move_back(backend: Backend) {
    use mdm_server::store::DeviceFilter;

    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let model_id = app.create_model(&admin, "ios", "iPhone 16", None).await;
    let store = app.server.state.store.clone();
    // Whole seconds, which both backends store exactly.
    let now = chrono::DateTime::from_timestamp(app.clock.now().timestamp(), 0).expect("time");
    let count = 700;
    let ids: Vec<i64> = import_iphones(store.as_ref(), model_id, "BATCH", 10_000, count)
        .await
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids.len(), count as usize);

    // Each phone its own second, so a mixed-up pairing of ids and times would show.
    let first: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, &id)| (id, now + chrono::Duration::seconds(n as i64)))
        .collect();
    store.touch_checkins(&first).await.expect("first batch");
    // Then the first phone reports an older time (it must not win) and the second a newer one.
    let older = now - chrono::Duration::hours(1);
    let newer = now + chrono::Duration::days(1);
    store
        .touch_checkins(&[(ids[0], older), (ids[1], newer)])
        .await
        .expect("second batch");

    let stored: std::collections::HashMap<i64, _> = store
        .list_devices(&DeviceFilter {
            limit: count + 1,
            ..Default::default()
        })
        .await
        .expect("devices")
        .into_iter()
        .map(|d| (d.id, d.last_checkin_at))
        .collect();
    for (n, &(id, at)) in first.iter().enumerate() {
        let expected = if n == 1 { newer } else { at };
        assert_eq!(stored[&id], Some(expected), "phone {n}");
    }
}

/// The server keeps the certificate lookup's database connections between requests. When
/// PostgreSQL cuts every connection (a restart, a failover, an administrator), the next
/// check-in and the next operator request must still be answered, on fresh connections, and not
/// fail once for each dead connection the server held. PostgreSQL only: SQLite's connections
/// live inside the server's process, and nothing outside can cut them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_postgresql_cuts_every_connection_the_next_check_in_and_api_request_are_answered() {
    if !mdm_tests::postgres_or_skip("after_postgresql_cuts_every_connection") {
        return;
    }
    let (app, admin, _, device) = setup(Backend::Postgres).await;
    let (_dir, state, facts) = enrolled_phone(&app, &admin, device).await;
    checkin_once(&state, &facts).await.expect("check-in");
    app.get(&format!("/api/v1/devices/{device}"), &admin)
        .await
        .expect(StatusCode::OK);

    let outsider = sqlx::PgPool::connect(&app.database_url)
        .await
        .expect("connection");
    let cut: i64 = sqlx::query_scalar(
        // The fence (`OFFSET 0`) keeps this connection out of the terminated ones.
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM ( \
         SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() OFFSET 0) AS others",
    )
    .fetch_one(&outsider)
    .await
    .expect("terminate");
    outsider.close().await;
    assert!(cut >= 1, "the server held no connection to cut");

    checkin_once(&state, &facts)
        .await
        .expect("the first check-in after the cut");
    app.get(&format!("/api/v1/devices/{device}"), &admin)
        .await
        .expect(StatusCode::OK);
    checkin_once(&state, &facts)
        .await
        .expect("the second check-in after the cut");
}
