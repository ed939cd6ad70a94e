//! The standard phone over the API: the operator's policy, provider and device overrides, the
//! app catalogue and each phone's effective policy with the source of every setting. Every test
//! runs on SQLite and PostgreSQL.

use mdm_tests::{backend_tests, imei, Backend, TestApp, ORG_A, ORG_B};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

backend_tests!(
    a_provider_override_of_auto_lock_wins_over_the_default_and_a_device_override_over_the_provider,
    policies_out_of_range_or_naming_unknown_apps_are_refused_and_nothing_changes,
    the_effective_policy_names_each_app_by_its_id_on_the_phones_platform,
    a_phone_with_a_three_digit_pin_is_non_compliant_until_it_reports_four_digits,
    a_phone_receives_its_policy_at_the_next_check_in_and_again_only_when_it_changes,
    the_mobileconfig_parses_verifies_with_openssl_against_our_ca_and_carries_the_policy,
    phones_using_a_per_provider_app_beyond_the_included_licences_are_billable,
    only_the_operator_admin_sets_policy_providers_see_only_their_own_and_android_phones_get_no_apple_profile,
    compliance_is_recorded_at_check_in_with_history_and_a_phone_non_compliant_past_the_grace_period_is_reported_once,
);

struct Fleet {
    app: TestApp,
    admin: String,
    provider_a: i64,
    provider_b: i64,
    phone_a: i64,
    phone_b: i64,
}

async fn fleet(backend: Backend) -> Fleet {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let provider_a = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    let provider_b = app.create_provider(&admin, "Omsorg Syd AB", ORG_B).await;
    app.create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    let phone_a = app
        .register_device(&admin, "PHONEA01", &imei(1), Some(provider_a))
        .await;
    let phone_b = app
        .register_device(&admin, "PHONEB01", &imei(2), Some(provider_b))
        .await;
    Fleet {
        app,
        admin,
        provider_a,
        provider_b,
        phone_a,
        phone_b,
    }
}

async fn put(app: &TestApp, path: &str, token: &str, body: Value) -> mdm_tests::Response {
    app.request(Method::PUT, path, Some(token), Some(body))
        .await
}

async fn effective(app: &TestApp, token: &str, device: i64) -> Value {
    let r = app
        .get(&format!("/api/v1/devices/{device}/effective-policy"), token)
        .await;
    r.expect(StatusCode::OK);
    r.body
}

async fn a_provider_override_of_auto_lock_wins_over_the_default_and_a_device_override_over_the_provider(
    backend: Backend,
) {
    let f = fleet(backend).await;
    let (app, admin) = (&f.app, f.admin.as_str());
    put(
        app,
        "/api/v1/policy",
        admin,
        json!({ "auto_lock_minutes": 5, "pin_min_length": 6 }),
    )
    .await
    .expect(StatusCode::OK);
    put(
        app,
        &format!("/api/v1/providers/{}/policy", f.provider_a),
        admin,
        json!({ "auto_lock_minutes": 2 }),
    )
    .await
    .expect(StatusCode::OK);
    let a = effective(app, admin, f.phone_a).await;
    assert_eq!(a["policy"]["auto_lock_minutes"]["value"], 2);
    assert_eq!(
        a["policy"]["auto_lock_minutes"]["source"],
        json!({ "level": "provider", "id": f.provider_a })
    );
    assert_eq!(a["policy"]["pin_min_length"]["value"], 6);
    assert_eq!(
        a["policy"]["pin_min_length"]["source"],
        json!({ "level": "operator" })
    );
    assert_eq!(
        a["policy"]["pin_max_failed_attempts"]["source"],
        json!({ "level": "built_in" })
    );
    // The other provider's phone has the operator's value.
    let b = effective(app, admin, f.phone_b).await;
    assert_eq!(b["policy"]["auto_lock_minutes"]["value"], 5);
    // A device override wins over the provider's.
    let device_path = format!("/api/v1/devices/{}/policy", f.phone_a);
    put(app, &device_path, admin, json!({ "auto_lock_minutes": 1 }))
        .await
        .expect(StatusCode::OK);
    let a = effective(app, admin, f.phone_a).await;
    assert_eq!(a["policy"]["auto_lock_minutes"]["value"], 1);
    assert_eq!(
        a["policy"]["auto_lock_minutes"]["source"],
        json!({ "level": "device", "id": f.phone_a })
    );
    assert_eq!(a["agent_document"]["auto_lock_minutes"], 1);
    let hash_with_override = a["agent_document_hash"].clone();
    // Removing it brings the provider's back, and the document's hash changes with it.
    app.request(Method::DELETE, &device_path, Some(admin), None)
        .await
        .expect(StatusCode::OK);
    let a = effective(app, admin, f.phone_a).await;
    assert_eq!(a["policy"]["auto_lock_minutes"]["value"], 2);
    assert_ne!(a["agent_document_hash"], hash_with_override);
    // The provider's admin sees its own phone's policy, not another provider's phone.
    let login = app
        .create_user(admin, f.provider_a, "it@norr.example", "provider_admin")
        .await;
    let provider_admin = app.first_login(&login).await;
    assert_eq!(
        effective(app, &provider_admin, f.phone_a).await["policy"]["auto_lock_minutes"]["value"],
        2
    );
    app.get(
        &format!("/api/v1/devices/{}/effective-policy", f.phone_b),
        &provider_admin,
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not-found");
    // Only the operator admin sets policy.
    put(
        app,
        &device_path,
        &provider_admin,
        json!({ "auto_lock_minutes": 15 }),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN, "forbidden");
}

async fn policies_out_of_range_or_naming_unknown_apps_are_refused_and_nothing_changes(
    backend: Backend,
) {
    let f = fleet(backend).await;
    let (app, admin) = (&f.app, f.admin.as_str());
    put(app, "/api/v1/policy", admin, json!({ "pin_min_length": 6 }))
        .await
        .expect(StatusCode::OK);
    let before = app.get("/api/v1/policy", admin).await.body;
    for (body, field) in [
        (json!({ "pin_min_length": 17 }), "pin_min_length"),
        (json!({ "pin_min_length": 3 }), "pin_min_length"),
        (
            json!({ "pin_max_failed_attempts": 1 }),
            "pin_max_failed_attempts",
        ),
        (
            json!({ "pin_max_failed_attempts": 12 }),
            "pin_max_failed_attempts",
        ),
        (json!({ "auto_lock_minutes": 16 }), "auto_lock_minutes"),
        (json!({ "min_os_ios": "arton" }), "min_os_ios"),
        (
            json!({ "required_apps": [{ "app": "okand" }] }),
            "required_apps.app",
        ),
    ] {
        let r = put(app, "/api/v1/policy", admin, body.clone()).await;
        r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
        assert_eq!(r.body["errors"][0]["field"], field, "{body}: {}", r.text);
    }
    let r = put(app, "/api/v1/policy", admin, json!({ "pin": 4 })).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(app.get("/api/v1/policy", admin).await.body, before);
    put(app, "/api/v1/providers/999999/policy", admin, json!({}))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
    put(
        app,
        "/api/v1/apps/Fel nyckel",
        admin,
        json!({ "name": "x", "android_package": "se.x" }),
    )
    .await
    .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    put(app, "/api/v1/apps/tom", admin, json!({ "name": "Tom" }))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(app.count("apps").await, 0);
}

async fn the_effective_policy_names_each_app_by_its_id_on_the_phones_platform(backend: Backend) {
    let f = fleet(backend).await;
    let (app, admin) = (&f.app, f.admin.as_str());
    put(
        app,
        "/api/v1/apps/phoniro",
        admin,
        json!({ "name": "Phoniro Care", "android_package": "se.phoniro.app", "ios_bundle_id": "se.phoniro.ios", "app_store_id": 1_234_567_890 }),
    )
    .await
    .expect(StatusCode::OK);
    put(
        app,
        "/api/v1/apps/journal",
        admin,
        json!({ "name": "Journalen", "android_package": "se.kommun.journal" }),
    )
    .await
    .expect(StatusCode::OK);
    put(
        app,
        "/api/v1/policy",
        admin,
        json!({ "required_apps": [{ "app": "phoniro", "min_version": "5.2", "settings": { "tenant": "norr" } }] }),
    )
    .await
    .expect(StatusCode::OK);
    let e = effective(app, admin, f.phone_a).await;
    assert_eq!(e["agent_document"]["apps"][0]["id"], "se.phoniro.ios");
    assert_eq!(e["agent_document"]["apps"][0]["settings"]["tenant"], "norr");
    assert_eq!(e["agent_document"]["pin"]["min_length"], 4);
    assert!(e["agent_document_hash"]
        .as_str()
        .is_some_and(|h| h.len() == 64));
    // An app the iPhone cannot have is left out of its document; the PIN rules still go.
    put(
        app,
        &format!("/api/v1/devices/{}/policy", f.phone_a),
        admin,
        json!({ "required_apps": [{ "app": "journal" }] }),
    )
    .await
    .expect(StatusCode::OK);
    let e = effective(app, admin, f.phone_a).await;
    assert_eq!(e["agent_document"]["apps"], json!([]), "{e}");
    assert_eq!(e["agent_document"]["pin"]["min_length"], 4);
    let apps = app.get("/api/v1/apps", admin).await;
    assert_eq!(apps.body.as_array().map(Vec::len), Some(2));
}

async fn a_phone_with_a_three_digit_pin_is_non_compliant_until_it_reports_four_digits(
    backend: Backend,
) {
    use agent::client::{checkin_once, enroll};
    use agent::device_file::DeviceDescription;
    use agent::state::StateDir;

    let f = fleet(backend).await;
    let (app, admin) = (&f.app, f.admin.as_str());
    let compliance = format!("/api/v1/devices/{}/compliance", f.phone_a);
    let before = app.get(&compliance, admin).await;
    before.expect(StatusCode::OK);
    assert_eq!(before.body["status"], "unknown");
    put(app, "/api/v1/policy", admin, json!({ "min_os_ios": "17" }))
        .await
        .expect(StatusCode::OK);
    // The phone as its description file says: an iPhone with a three-digit PIN.
    let dir = tempfile::tempdir().expect("tempdir");
    let description = dir.path().join("phone.toml");
    let write =
        |pin: u8| mdm_tests::write_iphone_description(&description, "PHONEA01", &imei(1), pin);
    write(3);
    let token = app
        .post(
            "/api/v1/enrollment-tokens",
            admin,
            json!({ "device_id": f.phone_a }),
        )
        .await;
    token.expect(StatusCode::CREATED);
    let state = StateDir::open(&dir.path().join("state")).expect("state");
    let facts = DeviceDescription::load(&description)
        .expect("description")
        .facts();
    enroll(&state, token.body["token"].as_str().expect("token"), &facts)
        .await
        .expect("enroll");
    checkin_once(&state, &facts).await.expect("check-in");
    let r = app.get(&compliance, admin).await;
    assert_eq!(r.body["status"], "non_compliant", "{}", r.text);
    assert_eq!(
        r.body["reasons"],
        json!([{ "code": "pin_too_short", "message": "PIN is 3 digits; policy requires 4" }])
    );
    let summary = app.get("/api/v1/compliance/summary", admin).await;
    summary.expect(StatusCode::OK);
    assert_eq!(
        summary.body,
        json!([
            { "provider_id": f.provider_a, "devices": 1, "compliant": 0, "non_compliant": 1, "unknown": 0,
              "reasons": { "pin_too_short": 1 } },
            { "provider_id": f.provider_b, "devices": 1, "compliant": 0, "non_compliant": 0, "unknown": 1,
              "reasons": {} },
        ])
    );
    write(4);
    let facts = DeviceDescription::load(&description)
        .expect("description")
        .facts();
    checkin_once(&state, &facts).await.expect("check-in");
    let r = app.get(&compliance, admin).await;
    assert_eq!(r.body["status"], "compliant", "{}", r.text);
    assert_eq!(r.body["reasons"], json!([]));
    // A provider's admin sees its own provider only.
    let login = app
        .create_user(admin, f.provider_a, "it@norr.example", "provider_admin")
        .await;
    let provider_admin = app.first_login(&login).await;
    let own = app.get("/api/v1/compliance/summary", &provider_admin).await;
    assert_eq!(
        own.body,
        json!([{ "provider_id": f.provider_a, "devices": 1, "compliant": 1, "non_compliant": 0,
                 "unknown": 0, "reasons": {} }])
    );
    // A higher minimum OS makes the same phone non-compliant at once.
    put(app, "/api/v1/policy", admin, json!({ "min_os_ios": "19" }))
        .await
        .expect(StatusCode::OK);
    let r = app.get(&compliance, admin).await;
    assert_eq!(
        r.body["reasons"][0]["message"],
        "OS 18.1 is below the minimum 19"
    );
}

async fn a_phone_receives_its_policy_at_the_next_check_in_and_again_only_when_it_changes(
    backend: Backend,
) {
    use agent::client::{checkin_once, enroll};
    use agent::state::StateDir;
    use agent::swarm::simulated_facts;

    let f = fleet(backend).await;
    let (app, admin) = (&f.app, f.admin.as_str());
    put(
        app,
        "/api/v1/policy",
        admin,
        json!({ "auto_lock_minutes": 5 }),
    )
    .await
    .expect(StatusCode::OK);
    let token = app
        .post(
            "/api/v1/enrollment-tokens",
            admin,
            json!({ "device_id": f.phone_a }),
        )
        .await;
    token.expect(StatusCode::CREATED);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(dir.path()).expect("state");
    let facts = simulated_facts("PHONEA01", &imei(1), "ios", "iPhone 16");
    enroll(&state, token.body["token"].as_str().expect("token"), &facts)
        .await
        .expect("enroll");
    let first = checkin_once(&state, &facts).await.expect("check-in");
    let policy = first
        .policy
        .expect("the policy comes with the first check-in");
    assert_eq!(policy.document["auto_lock_minutes"], 5);
    let expected = effective(app, admin, f.phone_a).await["agent_document_hash"].clone();
    assert_eq!(json!(policy.hash), expected);
    // The hash is the SHA-256 of the document's canonical JSON, so the phone can check it.
    assert_eq!(
        policy.hash,
        mdm_server::auth::hash_token(&serde_json::to_string(&policy.document).expect("json"))
    );
    assert_eq!(
        state.policy().expect("read").map(|p| p.hash),
        Some(policy.hash.clone())
    );
    // Unchanged: not sent again.
    let second = checkin_once(&state, &facts).await.expect("check-in");
    assert!(second.policy.is_none());
    // The provider's override reaches the phone at its next check-in.
    put(
        app,
        &format!("/api/v1/providers/{}/policy", f.provider_a),
        admin,
        json!({ "auto_lock_minutes": 2 }),
    )
    .await
    .expect(StatusCode::OK);
    let third = checkin_once(&state, &facts).await.expect("check-in");
    let changed = third.policy.expect("the changed policy");
    assert_eq!(changed.document["auto_lock_minutes"], 2);
    assert_ne!(changed.hash, policy.hash);
    assert_eq!(
        state.policy().expect("read").map(|p| p.hash),
        Some(changed.hash)
    );
}

async fn the_mobileconfig_parses_verifies_with_openssl_against_our_ca_and_carries_the_policy(
    backend: Backend,
) {
    let f = fleet(backend).await;
    let (app, admin) = (&f.app, f.admin.as_str());
    put(
        app,
        "/api/v1/policy",
        admin,
        json!({ "pin_min_length": 6, "auto_lock_minutes": 2 }),
    )
    .await
    .expect(StatusCode::OK);
    let download = || {
        app.http
            .get(format!(
                "{}/api/v1/devices/{}/profile.mobileconfig",
                app.base, f.phone_a
            ))
            .bearer_auth(admin)
            .send()
    };
    let r = download().await.expect("download");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-apple-aspen-config")
    );
    let signed = r.bytes().await.expect("body");
    let dir = tempfile::tempdir().expect("tempdir");
    let (profile, root, content) = (
        dir.path().join("device.mobileconfig"),
        dir.path().join("root.pem"),
        dir.path().join("content.plist"),
    );
    std::fs::write(&profile, &signed).expect("write");
    std::fs::write(&root, app.server.state.ca.root_pem()).expect("write");
    let verified = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(&profile)
        .arg("-CAfile")
        .arg(&root)
        .arg("-out")
        .arg(&content)
        .output()
        .expect("run openssl (scripts/test installs it)");
    assert!(
        verified.status.success(),
        "openssl cms -verify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let dict: plist::Dictionary =
        plist::from_file(&content).expect("the content is a property list");
    assert_eq!(dict["PayloadType"].as_string(), Some("Configuration"));
    let passcode = dict["PayloadContent"].as_array().expect("content")[0]
        .as_dictionary()
        .expect("payload");
    assert_eq!(passcode["minLength"].as_unsigned_integer(), Some(6));
    assert_eq!(passcode["maxInactivity"].as_unsigned_integer(), Some(2));
    // Signed by another CA it does not verify.
    let other = tempfile::tempdir().expect("tempdir");
    let stranger = enrollment::DeviceCa::load_or_create(other.path(), "Annan kommun").expect("ca");
    std::fs::write(&root, stranger.root_pem()).expect("write");
    let refused = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(&profile)
        .arg("-CAfile")
        .arg(&root)
        .arg("-out")
        .arg(&content)
        .output()
        .expect("run openssl");
    assert!(!refused.status.success());

    // Every download is signed by the one kept profile-signing certificate, not a new one each.
    std::fs::write(&root, app.server.state.ca.root_pem()).expect("write");
    let signer_of = |profile: &std::path::Path, name: &str| {
        let out = dir.path().join(name);
        let verified = std::process::Command::new("openssl")
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
            .arg(profile)
            .arg("-CAfile")
            .arg(&root)
            .arg("-signer")
            .arg(&out)
            .arg("-out")
            .arg(dir.path().join("ignored.plist"))
            .output()
            .expect("run openssl");
        assert!(verified.status.success());
        std::fs::read_to_string(out).expect("signer certificate")
    };
    let second = download()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    let second_profile = dir.path().join("second.mobileconfig");
    std::fs::write(&second_profile, &second).expect("write");
    let first_signer = signer_of(&profile, "first-signer.pem");
    assert_eq!(
        first_signer,
        signer_of(&second_profile, "second-signer.pem")
    );
    let kept = std::fs::read_to_string(app.dir.path().join("ca/profile-signing.pem"))
        .expect("the kept profile-signing certificate");
    assert!(kept.starts_with(first_signer.trim_end()), "{kept}");
}

async fn phones_using_a_per_provider_app_beyond_the_included_licences_are_billable(
    backend: Backend,
) {
    use agent::client::{checkin_once, enroll};
    use agent::protocol::InstalledApp;
    use agent::state::StateDir;
    use agent::swarm::simulated_facts;

    let f = fleet(backend).await;
    let (app, admin) = (&f.app, f.admin.as_str());
    put(
        app,
        "/api/v1/apps/dokumentation",
        admin,
        json!({ "name": "Dokumentationsappen", "ios_bundle_id": "se.kommun.dok", "included_licences": 2 }),
    )
    .await
    .expect(StatusCode::OK);
    let mut phones = vec![(f.phone_a, "PHONEA01".to_string(), 1)];
    for n in 2..=3u32 {
        let serial = format!("PHONEA0{n}");
        let id = app
            .register_device(admin, &serial, &imei(10 + n), Some(f.provider_a))
            .await;
        phones.push((id, serial, 10 + n));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for (id, serial, n) in &phones {
        let token = app
            .post(
                "/api/v1/enrollment-tokens",
                admin,
                json!({ "device_id": id }),
            )
            .await;
        token.expect(StatusCode::CREATED);
        let state = StateDir::open(&dir.path().join(serial)).expect("state");
        let mut facts = simulated_facts(serial, &imei(*n), "ios", "iPhone 16");
        facts.installed_apps.push(InstalledApp {
            id: "se.kommun.dok".into(),
            version: "2.0".into(),
        });
        enroll(&state, token.body["token"].as_str().expect("token"), &facts)
            .await
            .expect("enroll");
        checkin_once(&state, &facts).await.expect("check-in");
    }
    let r = app.get("/api/v1/apps/dokumentation/licences", admin).await;
    r.expect(StatusCode::OK);
    assert_eq!(
        r.body,
        json!([
            { "provider_id": f.provider_a, "in_use": 3, "included": 2, "billable": 1 },
            { "provider_id": f.provider_b, "in_use": 0, "included": 2, "billable": 0 },
        ])
    );
    put(
        app,
        "/api/v1/apps/phoniro",
        admin,
        json!({ "name": "Phoniro", "ios_bundle_id": "se.phoniro" }),
    )
    .await
    .expect(StatusCode::OK);
    app.get("/api/v1/apps/phoniro/licences", admin)
        .await
        .expect_problem(StatusCode::CONFLICT, "not-licensed");
    app.get("/api/v1/apps/okand/licences", admin)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
}

async fn only_the_operator_admin_sets_policy_providers_see_only_their_own_and_android_phones_get_no_apple_profile(
    backend: Backend,
) {
    let f = fleet(backend).await;
    let (app, admin) = (&f.app, f.admin.as_str());
    let operator = app
        .create_user(
            admin,
            app.server.state.operator_id,
            "servicedesk@kommun.example",
            "operator_staff",
        )
        .await;
    let staff = app.first_login(&operator).await;
    let provider = app
        .create_user(admin, f.provider_a, "it@norr.example", "provider_admin")
        .await;
    let provider_admin = app.first_login(&provider).await;
    // Operator staff read the policy but do not change it or the catalogue.
    app.get("/api/v1/policy", &staff)
        .await
        .expect(StatusCode::OK);
    for (method, path, body) in [
        (
            Method::PUT,
            "/api/v1/policy".to_string(),
            Some(json!({ "auto_lock_minutes": 1 })),
        ),
        (
            Method::PUT,
            format!("/api/v1/providers/{}/policy", f.provider_a),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/devices/{}/policy", f.phone_a),
            None,
        ),
        (
            Method::PUT,
            "/api/v1/apps/x".to_string(),
            Some(json!({ "name": "X", "android_package": "se.x" })),
        ),
    ] {
        app.request(method, &path, Some(&staff), body)
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    }
    // A provider's admin reads its own provider's override, not another's, and not the
    // operator's layer or licence accounting.
    app.get(
        &format!("/api/v1/providers/{}/policy", f.provider_a),
        &provider_admin,
    )
    .await
    .expect(StatusCode::OK);
    app.get(
        &format!("/api/v1/providers/{}/policy", f.provider_b),
        &provider_admin,
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not-found");
    app.get(
        &format!("/api/v1/devices/{}/policy", f.phone_b),
        &provider_admin,
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not-found");
    app.get("/api/v1/policy", &provider_admin)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    app.get("/api/v1/apps/x/licences", &provider_admin)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    app.get(
        &format!("/api/v1/devices/{}/profile.mobileconfig", f.phone_b),
        &provider_admin,
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not-found");
    // An Android phone gets no Apple profile: it would mean nothing to it.
    app.create_model(admin, "android", "Galaxy XCover7", Some("2024-02-01"))
        .await;
    let android = app
        .post(
            "/api/v1/devices",
            admin,
            json!({ "platform": "android", "model": "Galaxy XCover7", "serial": "R58N12ABCDE", "imei": imei(3) }),
        )
        .await;
    android.expect(StatusCode::CREATED);
    app.get(
        &format!(
            "/api/v1/devices/{}/profile.mobileconfig",
            android.body["id"]
        ),
        admin,
    )
    .await
    .expect_problem(StatusCode::CONFLICT, "wrong-platform");
    assert_eq!(app.count("policy_layers").await, 0, "nothing was stored");
}

/// Compliance is recorded when a check-in brings new facts, with every change in the history;
/// a phone non-compliant for longer than the grace period (72 hours) is reported once, by
/// e-mail through the outbox, to its provider's IT contacts.
async fn compliance_is_recorded_at_check_in_with_history_and_a_phone_non_compliant_past_the_grace_period_is_reported_once(
    backend: Backend,
) {
    use agent::client::{checkin_once, enroll};
    use agent::device_file::DeviceDescription;
    use agent::state::StateDir;
    use chrono::Duration;
    use mdm_server::clock::Clock;
    use mdm_tests::sinks::SmtpSink;

    let smtp = SmtpSink::start();
    let config = format!(
        "[notifications]\nsmtp_url = \"{}\"\nmail_from = \"it@kommun.example\"\n",
        smtp.url()
    );
    let clock = Clock::fixed("2026-11-23T09:00:00Z".parse().expect("time"));
    let app = TestApp::spawn_configured(backend, &config, clock).await;
    let admin = app.admin_api_token().await;
    let provider = app
        .post(
            "/api/v1/providers",
            &admin,
            json!({ "name": "Hemtjänst Norr AB", "org_number": ORG_A, "contract_start": "2024-01-01",
                    "it_contacts": [{ "name": "Anna", "email": "anna@norr.example", "mobile": "+46701234567" }] }),
        )
        .await;
    provider.expect(StatusCode::CREATED);
    let provider = provider.body["id"].as_i64().expect("id");
    app.create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    let phone = app
        .register_device(&admin, "PHONEA01", &imei(1), Some(provider))
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let description = dir.path().join("phone.toml");
    let write =
        |pin: u8| mdm_tests::write_iphone_description(&description, "PHONEA01", &imei(1), pin);
    let facts = || {
        DeviceDescription::load(&description)
            .expect("description")
            .facts()
    };
    write(3);
    let enrollment = app
        .post(
            "/api/v1/enrollment-tokens",
            &admin,
            json!({ "device_id": phone }),
        )
        .await;
    enrollment.expect(StatusCode::CREATED);
    let state = StateDir::open(&dir.path().join("state")).expect("state");
    enroll(
        &state,
        enrollment.body["token"].as_str().expect("token"),
        &facts(),
    )
    .await
    .expect("enroll");
    checkin_once(&state, &facts()).await.expect("check-in");

    let history_path = format!("/api/v1/devices/{phone}/compliance/history");
    let history = app.get(&history_path, &admin).await;
    history.expect(StatusCode::OK);
    assert_eq!(
        history.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        history.text
    );
    assert_eq!(history.body[0]["status"], "non_compliant");
    assert_eq!(history.body[0]["reasons"][0]["code"], "pin_too_short");
    let compliance = app
        .get(&format!("/api/v1/devices/{phone}/compliance"), &admin)
        .await;
    assert_eq!(compliance.body["since"], history.body[0]["at"]);

    // Within the grace period: no message. Past it: one, to the provider's IT contact.
    app.clock.advance(Duration::hours(71));
    checkin_once(&state, &facts()).await.expect("check-in");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        smtp.received().is_empty(),
        "told before the grace period ended"
    );
    app.clock.advance(Duration::hours(2));
    let mails = smtp.wait_for(1, std::time::Duration::from_secs(20)).await;
    assert_eq!(mails[0].to, vec!["anna@norr.example".to_string()]);
    assert_eq!(
        mails[0].subject,
        "Telefon PHONEA01 följer inte kommunens krav"
    );
    assert!(
        mails[0].body.contains("PIN is 3 digits; policy requires 4"),
        "{}",
        mails[0].body
    );
    // The message is in the outbox like any notice, and marked sent before the clock moves on.
    let mut sent = Value::Null;
    for _ in 0..100 {
        let outbox = app.get("/api/v1/deliveries", &admin).await;
        sent = outbox.body[0].clone();
        if sent["state"] == "sent" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sent["state"], "sent", "{sent}");
    assert_eq!(sent["topic"], "compliance");
    assert_eq!(sent["device_id"], phone);
    assert!(sent["notice_id"].is_null());
    let compliance = app
        .get(&format!("/api/v1/devices/{phone}/compliance"), &admin)
        .await;
    assert!(
        compliance.body["provider_alerted_at"].is_string(),
        "{}",
        compliance.text
    );

    // Still non-compliant days later: not told again.
    app.clock.advance(Duration::days(5));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(smtp.received().len(), 1);

    // Fixed: compliant, a second history entry, and no alert standing.
    write(4);
    checkin_once(&state, &facts()).await.expect("check-in");
    let history = app.get(&history_path, &admin).await;
    let statuses: Vec<&str> = history
        .body
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(statuses, ["compliant", "non_compliant"]);
    let compliance = app
        .get(&format!("/api/v1/devices/{phone}/compliance"), &admin)
        .await;
    assert_eq!(compliance.body["status"], "compliant");
    assert!(compliance.body["provider_alerted_at"].is_null());
}
