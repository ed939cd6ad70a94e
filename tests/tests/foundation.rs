//! The foundation end to end: bootstrap, login with TOTP, providers, accounts, tenant isolation,
//! contract end, audit trail, CSV import, bad input. Every test runs on SQLite and PostgreSQL.

use mdm_tests::{backend_tests, imei, Backend, TestApp, ORG_A, ORG_B, STRONG_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::json;

backend_tests!(
    bootstrap_login_create_provider_and_its_admin_sees_only_its_own_devices,
    provider_people_get_404_for_every_resource_of_another_organisation,
    editing_a_stored_audit_row_is_named_by_audit_verify,
    ending_a_contract_cuts_off_the_providers_live_session_and_login,
    csv_import_by_cli_and_api_is_idempotent_and_a_file_with_bad_rows_imports_nothing_and_names_them,
    wrong_second_factor_is_refused_and_repeated_failures_lock_the_account,
    parallel_wrong_passwords_cannot_outrun_the_lock,
    a_used_one_time_code_cannot_log_in_again,
    deactivation_and_role_change_end_sessions_at_once,
    bad_input_gets_problem_responses_and_nothing_is_written,
    a_one_time_password_allows_nothing_but_changing_it,
    api_tokens_act_for_their_owner_until_revoked,
    device_list_filters_and_pages_with_a_cursor,
    devices_of_unsupported_models_are_flagged,
    provider_admins_read_only_their_own_audit_trail_and_reads_are_recorded,
    provider_admin_manages_its_own_staff_but_no_one_else,
);

async fn bootstrap_login_create_provider_and_its_admin_sees_only_its_own_devices(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let me = app.get("/api/v1/me", &admin).await;
    me.expect(StatusCode::OK);
    assert_eq!(me.body["role"], "operator_admin");

    let norr = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    let syd = app.create_provider(&admin, "Omsorg Syd AB", ORG_B).await;
    app.create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    let own = app
        .register_device(&admin, "NORR0001", &imei(1), Some(norr))
        .await;
    app.register_device(&admin, "SYD00001", &imei(2), Some(syd))
        .await;
    app.register_device(&admin, "STOCK001", &imei(3), None)
        .await;

    let padmin = app
        .create_user(&admin, norr, "it@norr.example", "provider_admin")
        .await;
    let ptoken = app.first_login(&padmin).await;
    let list = app.get("/api/v1/devices", &ptoken).await;
    list.expect(StatusCode::OK);
    let ids: Vec<i64> = list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, vec![own]);
    let providers = app.get("/api/v1/providers", &ptoken).await;
    assert_eq!(providers.body.as_array().expect("list").len(), 1);
    assert_eq!(providers.body[0]["id"], norr);
    // The operator sees all three.
    let all = app.get("/api/v1/devices", &admin).await;
    assert_eq!(all.body["items"].as_array().expect("items").len(), 3);
}

async fn provider_people_get_404_for_every_resource_of_another_organisation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let norr = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    let syd = app.create_provider(&admin, "Omsorg Syd AB", ORG_B).await;
    app.create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    let syd_device = app
        .register_device(&admin, "SYD00001", &imei(2), Some(syd))
        .await;
    let syd_admin = app
        .create_user(&admin, syd, "it@syd.example", "provider_admin")
        .await;
    let syd_token = app.first_login(&syd_admin).await;
    let token_id = app
        .post("/api/v1/me/tokens", &syd_token, json!({ "name": "script" }))
        .await
        .body["id"]
        .as_i64()
        .expect("token id");

    let norr_admin = app
        .create_user(&admin, norr, "it@norr.example", "provider_admin")
        .await;
    let norr_user = app
        .create_user(&admin, norr, "personal@norr.example", "provider_user")
        .await;
    let missing = 999_999;
    let syd_user = syd_admin_id(&app, &admin).await;
    for who in [&norr_admin, &norr_user] {
        let token = app.first_login(who).await;
        let attempts = [
            (Method::GET, "/api/v1/devices/{}", syd_device, None),
            (
                Method::PATCH,
                "/api/v1/devices/{}",
                syd_device,
                Some(json!({ "supplier": "x" })),
            ),
            (Method::GET, "/api/v1/providers/{}", syd, None),
            (
                Method::PATCH,
                "/api/v1/providers/{}",
                syd,
                Some(json!({ "it_contacts": [] })),
            ),
            (Method::GET, "/api/v1/users/{}", syd_user, None),
            (
                Method::PATCH,
                "/api/v1/users/{}",
                syd_user,
                Some(json!({ "active": false })),
            ),
            (Method::DELETE, "/api/v1/me/tokens/{}", token_id, None),
            (
                Method::POST,
                "/api/v1/users",
                syd,
                Some(
                    json!({ "email": "x@syd.example", "display_name": "X", "role": "provider_user" }),
                ),
            ),
        ];
        for (method, template, id, body) in attempts {
            // The same request for Syd's resource and for an id that exists nowhere.
            let request = |id: i64| {
                let path = template.replace("{}", &id.to_string());
                let body = body.clone().map(|mut b| {
                    if template == "/api/v1/users" {
                        b["organisation_id"] = json!(id);
                    }
                    b
                });
                let (app, method, token) = (&app, method.clone(), token.clone());
                async move { app.request(method, &path, Some(&token), body).await }
            };
            let other = request(id).await;
            other.expect_problem(StatusCode::NOT_FOUND, "not-found");
            let nonexistent = request(missing).await;
            assert_eq!(nonexistent.status, other.status, "{method} {template}");
            assert_eq!(nonexistent.body, other.body, "{method} {template}");
        }
        let filtered = app
            .get(&format!("/api/v1/devices?provider_id={syd}"), &token)
            .await;
        filtered.expect(StatusCode::OK);
        assert_eq!(filtered.body["items"], json!([]));
    }
    // The lists show nothing of Syd's either.
    let norr_token = app
        .login(&norr_admin.email, STRONG_PASSWORD, &norr_admin.totp_uri)
        .await
        .body["token"]
        .as_str()
        .expect("token")
        .to_string();
    let users = app.get("/api/v1/users", &norr_token).await;
    assert!(!users.text.contains("syd.example"), "{}", users.text);
    let providers = app.get("/api/v1/providers", &norr_token).await;
    assert_eq!(providers.body.as_array().map(Vec::len), Some(1));
    assert!(!providers.text.contains("Omsorg Syd"));
    // Every refused attempt is in the trail for follow-up.
    let trail = app.get("/api/v1/audit?limit=500", &admin).await;
    let refused = trail.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == "access.refused" && e["outcome"] == "denied")
        .count();
    assert_eq!(
        refused, 32,
        "8 attempts on Syd and 8 on missing ids, by two people"
    );
    // Nothing of Syd's was changed.
    let device = app
        .get(&format!("/api/v1/devices/{syd_device}"), &admin)
        .await;
    assert_eq!(device.body["supplier"], serde_json::Value::Null);
    app.get("/api/v1/me/tokens", &syd_token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/me/tokens", &syd_token)
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

async fn syd_admin_id(app: &TestApp, admin: &str) -> i64 {
    let users = app.get("/api/v1/users", admin).await;
    users
        .body
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == "it@syd.example")
        .expect("syd admin")["id"]
        .as_i64()
        .expect("id")
}

async fn editing_a_stored_audit_row_is_named_by_audit_verify(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    app.create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    app.cli(&["audit", "verify"])
        .await
        .expect("an untouched trail verifies");
    let entries = app.count("audit_log").await;
    assert!(
        entries >= 4,
        "bootstrap, login, password change and provider were audited"
    );
    let target = 3;
    // An attacker with database access first has to get past the append-only trigger.
    let drop_trigger = match backend {
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update",
        Backend::Postgres => "DROP TRIGGER audit_log_no_change ON audit_log",
    };
    app.execute_sql(drop_trigger).await;
    app.execute_sql(&format!(
        "UPDATE audit_log SET actor_label = 'someone-else@kommun.example' WHERE seq = {target}"
    ))
    .await;
    let err = app
        .cli(&["audit", "verify"])
        .await
        .expect_err("the edit is detected");
    let message = format!("{err:#}");
    assert!(message.contains(&format!("entry {target}:")), "{message}");
    assert!(message.contains("changed"), "{message}");
}

async fn ending_a_contract_cuts_off_the_providers_live_session_and_login(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let norr = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    let padmin = app
        .create_user(&admin, norr, "it@norr.example", "provider_admin")
        .await;
    let token = app.first_login(&padmin).await;
    app.get("/api/v1/devices", &token)
        .await
        .expect(StatusCode::OK);

    let yesterday = app.clock.today(chrono_tz::Europe::Stockholm) - chrono::Duration::days(1);
    let r = app
        .patch(
            &format!("/api/v1/providers/{norr}"),
            &admin,
            json!({ "contract_end": yesterday.to_string() }),
        )
        .await;
    r.expect(StatusCode::OK);
    assert_eq!(r.body["contract_active"], false);

    app.get("/api/v1/devices", &token)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "contract-ended");
    let again = app
        .login(&padmin.email, STRONG_PASSWORD, &padmin.totp_uri)
        .await;
    again.expect_problem(StatusCode::UNAUTHORIZED, "contract-ended");
    // Reopening the contract lets them back in.
    app.patch(
        &format!("/api/v1/providers/{norr}"),
        &admin,
        json!({ "contract_end": null }),
    )
    .await
    .expect(StatusCode::OK);
    app.get("/api/v1/devices", &token)
        .await
        .expect(StatusCode::OK);
}

fn delivery(rows: &[String]) -> String {
    let mut text = String::from("serial,imei,platform,model,purchase_date,warranty_end,supplier\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    text
}

async fn csv_import_by_cli_and_api_is_idempotent_and_a_file_with_bad_rows_imports_nothing_and_names_them(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    app.create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    app.create_model(&admin, "android", "Galaxy XCover7", Some("2024-02-01"))
        .await;
    let rows: Vec<String> = (1..=30)
        .map(|i| {
            let (platform, model) = if i % 2 == 0 {
                ("ios", "iPhone 16")
            } else {
                ("android", "Galaxy XCover7")
            };
            format!(
                "SN{i:06},{},{platform},{model},2026-01-15,2028-01-15,Telia Företag",
                imei(i)
            )
        })
        .collect();
    let file = app.dir.path().join("delivery.csv");
    std::fs::write(&file, delivery(&rows)).expect("write csv");
    let path = file.to_str().expect("path");

    app.cli(&["devices", "import", path])
        .await
        .expect("valid file imports");
    assert_eq!(app.count("devices").await, 30);
    app.cli(&["devices", "import", path])
        .await
        .expect("re-import succeeds");
    assert_eq!(
        app.count("devices").await,
        30,
        "re-import adds no duplicates"
    );

    let mut bad = (31..=40)
        .map(|i| format!("SN{i:06},{},ios,iPhone 16,,,", imei(i)))
        .collect::<Vec<_>>();
    bad[2] = format!("SN000033,{}9,ios,iPhone 16,,,", &imei(33)[..14]); // line 4: wrong check digit
    bad[6] = format!("SN000037,{},ios,Nokia 3310,,,", imei(37)); // line 8: unknown model
    std::fs::write(&file, delivery(&bad)).expect("write csv");
    let audit_before = app.count("audit_log").await;
    let err = app
        .cli(&["devices", "import", path])
        .await
        .expect_err("bad rows refuse the file");
    assert!(format!("{err}").contains("2 rows have errors"), "{err}");
    assert_eq!(
        app.count("devices").await,
        30,
        "nothing from the bad file was imported"
    );
    assert_eq!(app.count("audit_log").await, audit_before);

    // The API takes the same file, by the same rules: the bad rows by line, nothing imported.
    let upload = |text: String, content_type: &'static str| {
        let request = app
            .http
            .post(format!(
                "{}/api/v1/devices/import?file_name=leverans.csv",
                app.base
            ))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(text);
        async move { mdm_tests::Response::of(request.send().await.expect("send")).await }
    };
    let refused = upload(delivery(&bad), "text/csv").await;
    refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-rows");
    assert_eq!(refused.body["rows"][0]["line"], 4, "{}", refused.text);
    assert_eq!(refused.body["rows"][1]["line"], 8);
    assert!(refused.body["detail"]
        .as_str()
        .is_some_and(|d| d.starts_with("2 rows have errors")));
    assert_eq!(app.count("devices").await, 30);
    upload(delivery(&rows), "application/json")
        .await
        .expect_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    upload("serial;imei\n".into(), "text/csv")
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid-csv");
    let good: Vec<String> = (41..=45)
        .map(|i| format!("SN{i:06},{},ios,iPhone 16,,,", imei(i)))
        .chain(rows.iter().take(2).cloned())
        .collect();
    let imported = upload(delivery(&good), "text/csv; charset=utf-8").await;
    imported.expect(StatusCode::OK);
    assert_eq!(imported.body["inserted"], 5);
    assert_eq!(imported.body["already_present"], 2);
    assert_eq!(app.count("devices").await, 35);
    assert_eq!(
        app.count("audit_log WHERE action = 'device.import' AND actor_id IS NOT NULL")
            .await,
        1
    );

    // The rows are named with their line numbers and reasons.
    let store = app.server.state.store.clone();
    let text = delivery(&bad);
    let models = store.list_models().await.expect("models");
    match mdm_server::import::validate(text.as_bytes(), &models, store.as_ref(), &|_| {}).await {
        Err(mdm_server::import::ImportError::Rows(errors)) => {
            let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
            assert_eq!(lines, vec![4, 8]);
            assert!(errors[0].reason.contains("check digit"), "{:?}", errors[0]);
            assert!(errors[1].reason.contains("Nokia 3310"), "{:?}", errors[1]);
        }
        other => panic!("expected row errors, got {other:?}"),
    }
}

async fn wrong_second_factor_is_refused_and_repeated_failures_lock_the_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (login, _) = app.bootstrap_admin().await;
    let wrong_code = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(
                json!({ "email": login.email, "password": STRONG_PASSWORD, "totp_code": "000000" }),
            ),
        )
        .await;
    wrong_code.expect_problem(StatusCode::UNAUTHORIZED, "login-failed");
    let no_code = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": login.email, "password": STRONG_PASSWORD })),
        )
        .await;
    no_code.expect_problem(StatusCode::UNAUTHORIZED, "login-failed");
    for _ in 0..3 {
        app.login(&login.email, "wrong-password-entirely", &login.totp_uri)
            .await
            .expect_problem(StatusCode::UNAUTHORIZED, "login-failed");
    }
    // Five failures in a row: even the right password and code are refused for now.
    let locked = app
        .login(&login.email, STRONG_PASSWORD, &login.totp_uri)
        .await;
    locked.expect_problem(StatusCode::TOO_MANY_REQUESTS, "account-locked");
    assert!(locked.headers.contains_key("retry-after"));
    app.clock.advance(chrono::Duration::minutes(16));
    app.login(&login.email, STRONG_PASSWORD, &login.totp_uri)
        .await
        .expect(StatusCode::OK);
    // An unknown address gets the same answers, including the lock, so addresses cannot be probed.
    for _ in 0..5 {
        app.login("nobody@kommun.example", STRONG_PASSWORD, &login.totp_uri)
            .await
            .expect_problem(StatusCode::UNAUTHORIZED, "login-failed");
    }
    app.login("nobody@kommun.example", STRONG_PASSWORD, &login.totp_uri)
        .await
        .expect_problem(StatusCode::TOO_MANY_REQUESTS, "account-locked");
}

async fn parallel_wrong_passwords_cannot_outrun_the_lock(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (login, _) = app.bootstrap_admin().await;
    let attempts = (0..12).map(|_| {
        app.request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": login.email, "password": "wrong-password-entirely", "totp_code": "000000" })),
        )
    });
    let answers = futures::future::join_all(attempts).await;
    assert!(
        answers
            .iter()
            .all(|r| r.status == StatusCode::UNAUTHORIZED
                || r.status == StatusCode::TOO_MANY_REQUESTS)
    );
    let right = app
        .login(&login.email, STRONG_PASSWORD, &login.totp_uri)
        .await;
    right.expect_problem(StatusCode::TOO_MANY_REQUESTS, "account-locked");
}

async fn a_used_one_time_code_cannot_log_in_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (login, _) = app.bootstrap_admin().await;
    let code = app.totp_code(&login.totp_uri);
    let body = json!({ "email": login.email, "password": STRONG_PASSWORD, "totp_code": code });
    app.request(Method::POST, "/api/v1/auth/login", None, Some(body.clone()))
        .await
        .expect(StatusCode::OK);
    let replay = app
        .request(Method::POST, "/api/v1/auth/login", None, Some(body))
        .await;
    replay.expect_problem(StatusCode::UNAUTHORIZED, "login-failed");
}

async fn deactivation_and_role_change_end_sessions_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let operator_org = app.get("/api/v1/me", &admin).await.body["organisation_id"]
        .as_i64()
        .expect("org");
    let staff = app
        .create_user(
            &admin,
            operator_org,
            "servicedesk@kommun.example",
            "operator_admin",
        )
        .await;
    let staff_token = app.first_login(&staff).await;
    app.get("/api/v1/users", &staff_token)
        .await
        .expect(StatusCode::OK);
    app.patch(
        &format!("/api/v1/users/{}", staff.id),
        &admin,
        json!({ "role": "operator_staff" }),
    )
    .await
    .expect(StatusCode::OK);
    app.get("/api/v1/devices", &staff_token)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");

    let new_token = app
        .login(&staff.email, STRONG_PASSWORD, &staff.totp_uri)
        .await
        .body["token"]
        .as_str()
        .expect("token")
        .to_string();
    app.get("/api/v1/users", &new_token)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    app.patch(
        &format!("/api/v1/users/{}", staff.id),
        &admin,
        json!({ "active": false }),
    )
    .await
    .expect(StatusCode::OK);
    app.get("/api/v1/devices", &new_token)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let r = app
        .login(&staff.email, STRONG_PASSWORD, &staff.totp_uri)
        .await;
    r.expect_problem(StatusCode::FORBIDDEN, "account-deactivated");
    // Nobody deactivates themselves by mistake.
    let own = app.get("/api/v1/me", &admin).await.body["id"]
        .as_i64()
        .expect("id");
    app.patch(
        &format!("/api/v1/users/{own}"),
        &admin,
        json!({ "active": false }),
    )
    .await
    .expect_problem(StatusCode::CONFLICT, "own-account");
}

async fn bad_input_gets_problem_responses_and_nothing_is_written(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let norr = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    app.create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    app.register_device(&admin, "NORR0001", &imei(1), Some(norr))
        .await;
    let before = row_counts(&app).await;

    let raw = app
        .http
        .post(format!("{}/api/v1/providers", app.base))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        raw.json::<serde_json::Value>().await.expect("json")["type"],
        "/problems/malformed-json"
    );

    // A body of the wrong shape names the field and what it must be, in words, not the JSON
    // parser's ("expected a string", "line 1 column 30").
    let wrong = app
        .post(
            "/api/v1/devices",
            &admin,
            json!({ "platform": "ios", "model": 16, "serial": "X", "imei": "1" }),
        )
        .await;
    wrong.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(wrong.body["errors"][0]["field"], "model", "{}", wrong.text);
    assert_eq!(
        wrong.body["errors"][0]["message"],
        "must be text, not the number 16"
    );
    assert!(!wrong.text.contains("line 1"), "{}", wrong.text);
    let missing = app
        .post("/api/v1/devices", &admin, json!({ "platform": "ios" }))
        .await;
    missing.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(missing.body["errors"][0]["message"], "is required");
    let query = app.get("/api/v1/devices?limit=many", &admin).await;
    query.expect_problem(StatusCode::BAD_REQUEST, "invalid-query");
    assert_eq!(query.body["errors"][0]["field"], "limit", "{}", query.text);
    // A method an address does not take is a problem document too, not an empty 405.
    app.request(
        reqwest::Method::DELETE,
        "/api/v1/devices",
        Some(&admin),
        None,
    )
    .await
    .expect_problem(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    let huge = "x".repeat(70_000);
    app.post(
        "/api/v1/providers",
        &admin,
        json!({ "name": huge, "org_number": ORG_B, "contract_start": "2026-01-01" }),
    )
    .await
    .expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large");

    let r = app
        .post("/api/v1/devices", &admin, json!({ "platform": "ios", "model": "iPhone 16", "serial": "NEW00001", "imei": "490154203237519" }))
        .await;
    r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(r.body["errors"][0]["field"], "imei");
    assert!(r.text.contains("check digit"));

    let r = app
        .post(
            "/api/v1/providers",
            &admin,
            json!({ "name": "Fel AB", "org_number": "556036-0794", "contract_start": "2026-01-01",
                    "it_contacts": [{ "name": "A", "email": "a@fel.example", "mobile": "+46701234567" },
                                    { "name": "B", "email": "not-an-address", "mobile": "0701234567" }] }),
        )
        .await;
    r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("f"))
        .collect();
    assert_eq!(
        fields,
        vec![
            "org_number",
            "it_contacts[1].email",
            "it_contacts[1].mobile"
        ],
        "every bad field is reported at once, where it is in the list"
    );

    let r = app
        .post("/api/v1/users", &admin, json!({ "organisation_id": norr, "email": "x@norr.example", "display_name": "X", "role": "superuser" }))
        .await;
    r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert!(r.text.contains("unknown role 'superuser'"));

    let r = app
        .post("/api/v1/devices", &admin, json!({ "platform": "ios", "model": "iPhone 16", "serial": "norr0001", "imei": imei(9) }))
        .await;
    r.expect_problem(StatusCode::CONFLICT, "conflict");
    assert!(r.text.contains("serial number"), "{}", r.text);

    let r = app
        .post(
            "/api/v1/providers",
            &admin,
            json!({ "name": "Dubblett AB", "org_number": ORG_A, "contract_start": "2026-01-01" }),
        )
        .await;
    r.expect_problem(StatusCode::CONFLICT, "conflict");

    let r = app
        .post(
            "/api/v1/users",
            &admin,
            json!({ "organisation_id": norr, "email": "IT-Chef@kommun.example", "display_name": "Twin", "role": "provider_user" }),
        )
        .await;
    r.expect_problem(StatusCode::CONFLICT, "conflict");
    assert!(r.text.contains("e-mail address"), "{}", r.text);

    let r = app
        .post(
            "/api/v1/devices",
            &admin,
            json!({ "platform": "ios", "model": "iPhone 16", "serial": "NEW00002", "imei": imei(10),
                    "supplier": "Telia\u{0}", "purchase_date": "1850-01-01" }),
        )
        .await;
    r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert!(
        r.text.contains("control characters") && r.text.contains("plausible"),
        "{}",
        r.text
    );
    app.get("/api/v1/devices?q=SN%00", &admin)
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");

    let r = app
        .request(Method::POST, "/api/v1/devices", Some(&admin), None)
        .await;
    r.expect_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    app.get("/api/v1/devices?cursor=bogus", &admin)
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    app.get("/api/v1/devices?status=gone", &admin)
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    app.get("/api/v1/devices/not-a-number", &admin)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
    app.get("/api/v1/nothing-here", &admin)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
    app.request(Method::GET, "/api/v1/devices", None, None)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");

    assert_eq!(
        row_counts(&app).await,
        before,
        "no bad request wrote anything"
    );
}

/// Rows of every table a request could write to. Refused requests are recorded in the audit
/// trail on purpose (`access.refused`), so those entries are not counted.
async fn row_counts(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "organisations",
        "accounts",
        "devices",
        "it_contacts",
        "sessions",
        "device_models",
    ] {
        counts.push(app.count(table).await);
    }
    counts.push(
        app.count("audit_log WHERE action <> 'access.refused'")
            .await,
    );
    counts
}

async fn a_one_time_password_allows_nothing_but_changing_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let norr = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    let user = app
        .create_user(&admin, norr, "personal@norr.example", "provider_user")
        .await;
    let r = app
        .login(&user.email, &user.one_time_password, &user.totp_uri)
        .await;
    r.expect(StatusCode::OK);
    assert!(
        r.body["notice"]
            .as_str()
            .is_some_and(|n| n.contains("logged")),
        "people are told they are logged"
    );
    let token = r.body["token"].as_str().expect("token").to_string();
    app.get("/api/v1/devices", &token)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "password-change-required");
    let weak = app
        .post(
            "/api/v1/me/password",
            &token,
            json!({ "current_password": user.one_time_password, "new_password": "password123" }),
        )
        .await;
    weak.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(
        weak.body["errors"][0]["field"], "new_password",
        "{}",
        weak.text
    );
    app.post(
        "/api/v1/me/password",
        &token,
        json!({ "current_password": user.one_time_password, "new_password": STRONG_PASSWORD }),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.get("/api/v1/devices", &token)
        .await
        .expect(StatusCode::OK);
    // The one-time password is gone.
    app.login(&user.email, &user.one_time_password, &user.totp_uri)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "login-failed");
}

async fn api_tokens_act_for_their_owner_until_revoked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let created = app
        .post(
            "/api/v1/me/tokens",
            &admin,
            json!({ "name": "inventory export", "expires_in_days": 30 }),
        )
        .await;
    created.expect(StatusCode::CREATED);
    let token = created.body["token"].as_str().expect("token").to_string();
    let id = created.body["id"].as_i64().expect("id");
    // A token cannot mint a longer-lived one.
    app.post(
        "/api/v1/me/tokens",
        &token,
        json!({ "name": "forever", "expires_in_days": 365 }),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    app.get("/api/v1/devices", &token)
        .await
        .expect(StatusCode::OK);
    let listed = app.get("/api/v1/me/tokens", &admin).await;
    assert_eq!(listed.body[0]["name"], "inventory export");
    assert!(
        !listed.text.contains(&token),
        "the secret is never shown again"
    );
    app.request(
        Method::DELETE,
        &format!("/api/v1/me/tokens/{id}"),
        Some(&admin),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.get("/api/v1/devices", &token)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.post(
        "/api/v1/me/tokens",
        &admin,
        json!({ "name": "forever", "expires_in_days": 5000 }),
    )
    .await
    .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    // Logging out ends the session.
    app.request(Method::POST, "/api/v1/auth/logout", Some(&admin), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    app.get("/api/v1/me", &admin)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

async fn device_list_filters_and_pages_with_a_cursor(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let norr = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    app.create_model(&admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    app.create_model(&admin, "android", "Galaxy XCover7", Some("2024-02-01"))
        .await;
    for i in 1..=12u32 {
        let provider = (i % 3 == 0).then_some(norr);
        app.register_device(&admin, &format!("PAGE{i:04}"), &imei(100 + i), provider)
            .await;
    }
    app.post("/api/v1/devices", &admin, json!({ "platform": "android", "model": "Galaxy XCover7", "serial": "ANDR0001", "imei": imei(500) }))
        .await
        .expect(StatusCode::CREATED);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/devices?limit=5&cursor={c}"),
            None => "/api/v1/devices?limit=5".to_string(),
        };
        let page = app.get(&path, &admin).await;
        page.expect(StatusCode::OK);
        seen.extend(
            page.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|d| d["serial"].as_str().expect("s").to_string()),
        );
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 13);
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 13, "no device twice across pages");

    let count = |body: &serde_json::Value| body["items"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count(
            &app.get(&format!("/api/v1/devices?provider_id={norr}"), &admin)
                .await
                .body
        ),
        4
    );
    assert_eq!(
        count(
            &app.get("/api/v1/devices?platform=android", &admin)
                .await
                .body
        ),
        1
    );
    assert_eq!(
        count(
            &app.get("/api/v1/devices?status=in_stock", &admin)
                .await
                .body
        ),
        13
    );
    assert_eq!(
        count(&app.get("/api/v1/devices?status=lost", &admin).await.body),
        0
    );
    assert_eq!(
        count(&app.get("/api/v1/devices?q=page001", &admin).await.body),
        3,
        "serial prefix search ignores case"
    );
    let start = &imei(107)[..14];
    assert_eq!(
        count(
            &app.get(&format!("/api/v1/devices?q={start}"), &admin)
                .await
                .body
        ),
        1,
        "IMEI prefix search"
    );
    assert_eq!(
        count(&app.get("/api/v1/devices?q=%25", &admin).await.body),
        0,
        "wildcards are literal"
    );
}

async fn devices_of_unsupported_models_are_flagged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    for (name, since) in [
        ("iPhone 13", "2021-09-24"),
        ("iPhone 14", "2022-09-16"),
        ("iPhone 15", "2023-09-22"),
    ] {
        app.create_model(&admin, "ios", name, Some(since)).await;
    }
    let sixteen = app.create_model(&admin, "ios", "iPhone 16", None).await;
    let old = app
        .post("/api/v1/devices", &admin, json!({ "platform": "ios", "model": "iPhone 13", "serial": "OLD00001", "imei": imei(1) }))
        .await;
    assert_eq!(
        old.body["flags"],
        json!([]),
        "three generations are supported"
    );
    let old_id = old.body["id"].as_i64().expect("id");
    // A new recommendation pushes the oldest out of support.
    app.patch(
        &format!("/api/v1/models/{sixteen}"),
        &admin,
        json!({ "recommended_since": "2024-09-20" }),
    )
    .await
    .expect(StatusCode::OK);
    let flagged = app.get(&format!("/api/v1/devices/{old_id}"), &admin).await;
    assert_eq!(flagged.body["flags"], json!(["unsupported_model"]));
    let models = app.get("/api/v1/models", &admin).await;
    let supported: Vec<&str> = models
        .body
        .as_array()
        .expect("models")
        .iter()
        .filter(|m| m["supported"] == true)
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    assert_eq!(supported, vec!["iPhone 14", "iPhone 15", "iPhone 16"]);
}

async fn provider_admins_read_only_their_own_audit_trail_and_reads_are_recorded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let norr = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    let syd = app.create_provider(&admin, "Omsorg Syd AB", ORG_B).await;
    let padmin = app
        .create_user(&admin, norr, "it@norr.example", "provider_admin")
        .await;
    app.create_user(&admin, syd, "it@syd.example", "provider_admin")
        .await;
    let ptoken = app.first_login(&padmin).await;
    app.get("/api/v1/users", &ptoken)
        .await
        .expect(StatusCode::OK);

    let trail = app.get("/api/v1/audit?limit=500", &ptoken).await;
    trail.expect(StatusCode::OK);
    let items = trail.body["items"].as_array().expect("items");
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|e| e["organisation_id"] == norr),
        "only Norr's entries: {}",
        trail.text
    );
    assert!(
        items.iter().any(|e| e["action"] == "account.list"),
        "reading the user list was recorded"
    );
    assert!(items
        .iter()
        .any(|e| e["action"] == "auth.login" && e["source"] == "127.0.0.1"));

    let all = app.get("/api/v1/audit?limit=500", &admin).await;
    let orgs: std::collections::HashSet<String> = all.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["organisation_id"].to_string())
        .collect();
    assert!(orgs.contains(&syd.to_string()) && orgs.contains(&norr.to_string()));

    // Attacker-chosen text in the trail cannot become a spreadsheet formula.
    app.request(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({ "email": "=HYPERLINK(\"http://evil.example\")", "password": "x" })),
    )
    .await
    .expect_problem(StatusCode::UNAUTHORIZED, "login-failed");
    let operator_csv = app
        .http
        .get(format!("{}/api/v1/audit/export.csv", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    assert!(operator_csv.contains("'=HYPERLINK"), "{operator_csv}");
    assert!(!operator_csv.contains(",=HYPERLINK"));
    let csv = app
        .http
        .get(format!("{}/api/v1/audit/export.csv", app.base))
        .bearer_auth(&ptoken)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(csv.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/csv"));
    let text = csv.text().await.expect("text");
    // A byte-order mark first, so a spreadsheet reads the UTF-8 (å, ä, ö) as such.
    let text = text.strip_prefix('\u{feff}').expect("a byte-order mark");
    assert!(text.starts_with("seq,at,actor_id,actor,organisation_id"));
    let swedish = app
        .http
        .get(format!(
            "{}/api/v1/audit/export.csv?separator=semicolon",
            app.base
        ))
        .bearer_auth(&ptoken)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    assert!(swedish.starts_with("\u{feff}seq;at;actor_id;actor;organisation_id"));
    assert!(text.contains("it@norr.example"));
    assert!(
        !text.contains("it@syd.example"),
        "no other organisation's entries in the export"
    );

    let user = app
        .create_user(&ptoken, norr, "personal@norr.example", "provider_user")
        .await;
    let utoken = app.first_login(&user).await;
    app.get("/api/v1/audit", &utoken)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
}

async fn provider_admin_manages_its_own_staff_but_no_one_else(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.bootstrap_admin().await;
    let norr = app
        .create_provider(&admin, "Hemtjänst Norr AB", ORG_A)
        .await;
    let padmin = app
        .create_user(&admin, norr, "it@norr.example", "provider_admin")
        .await;
    let ptoken = app.first_login(&padmin).await;
    let staff = app
        .create_user(&ptoken, norr, "personal@norr.example", "provider_user")
        .await;
    let staff_token = app.first_login(&staff).await;
    // Nobody at a provider can be an operator: the role field is at fault, for the provider's
    // admin and for the operator admin alike (who may create accounts anywhere).
    for (token, org) in [(&ptoken, None), (&admin, Some(norr))] {
        let refused = app
            .post(
                "/api/v1/users",
                token,
                json!({ "email": "boss@norr.example", "display_name": "B", "role": "operator_admin",
                        "organisation_id": org }),
            )
            .await;
        refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
        assert_eq!(
            refused.body["errors"][0]["field"], "role",
            "{}",
            refused.text
        );
    }
    let operator_org = app.get("/api/v1/me", &admin).await.body["organisation_id"].clone();
    app.post(
        "/api/v1/users",
        &admin,
        json!({ "email": "hemtjanst@kommun.example", "display_name": "H", "role": "provider_user",
                "organisation_id": operator_org }),
    )
    .await
    .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    app.patch(
        &format!("/api/v1/users/{}", staff.id),
        &ptoken,
        json!({ "role": "operator_staff" }),
    )
    .await
    .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    // Staff who leave lose access.
    app.patch(
        &format!("/api/v1/users/{}", staff.id),
        &ptoken,
        json!({ "active": false }),
    )
    .await
    .expect(StatusCode::OK);
    app.get("/api/v1/devices", &staff_token)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    // Provider users manage nobody and cannot register devices.
    let other = app
        .create_user(&ptoken, norr, "personal2@norr.example", "provider_user")
        .await;
    let other_token = app.first_login(&other).await;
    app.get("/api/v1/users", &other_token)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    app.post(
        "/api/v1/devices",
        &other_token,
        json!({ "platform": "ios", "model": "x", "serial": "ABCD1", "imei": imei(1) }),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN, "forbidden");
}
