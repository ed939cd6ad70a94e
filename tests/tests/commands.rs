//! The command queue end to end: municipal IT queues commands over the API, real agents fetch
//! them at check-in over mutual TLS, carry them out on their simulated phones and answer.
//! Every test runs on SQLite and PostgreSQL.

use agent::client::{report, Refused};
use agent::protocol::{CommandResult, CommandStatus, DeviceCommand};
use chrono::Duration;
use mdm_tests::{backend_tests, imei, AgentPhone, Backend, Fleet};
use reqwest::StatusCode;
use serde_json::{json, Value};

backend_tests!(
    lock_install_and_wipe_each_go_from_queued_to_sent_to_acknowledged_and_the_wiped_phone_is_refused,
    a_command_to_every_phone_of_a_provider_reaches_a_thousand_swarm_phones_and_each_acknowledges_once,
    bad_commands_and_commands_for_phones_in_the_wrong_state_are_refused_and_nothing_is_queued,
    a_result_for_a_command_the_phone_never_got_is_refused_and_a_repeated_result_changes_nothing,
    a_phone_that_says_not_now_gets_the_command_again_later_and_unanswered_commands_expire,
    enrolling_again_purges_what_was_queued_for_the_old_identity,
    only_commands_not_yet_sent_can_be_cancelled_and_providers_see_only_their_own_phones_commands,
    finished_commands_are_deleted_after_the_retention_period,
    a_lock_queued_after_a_failed_check_in_is_carried_out_at_the_next_check_in_with_the_backlog,
);

/// The fleet of the tests here, with the Phoniro app in the catalogue.
async fn kit(backend: Backend) -> Fleet {
    let kit = Fleet::start(backend, "", "2026-11-23T09:00:00Z").await;
    kit.catalogue_phoniro().await;
    kit
}

/// Registers a phone for `provider` and enrolls it with a real agent.
async fn enrolled_phone(kit: &Fleet, serial: &str, n: u32, provider: i64) -> AgentPhone {
    kit.enrolled_iphone(serial, n, Some(provider)).await
}

async fn send(kit: &Fleet, device: i64, body: Value) -> Value {
    let r = kit
        .app
        .post(
            &format!("/api/v1/devices/{device}/commands"),
            &kit.admin,
            body,
        )
        .await;
    r.expect(StatusCode::CREATED);
    assert_eq!(r.body["state"], "queued");
    r.body
}

async fn command(kit: &Fleet, id: &Value) -> Value {
    let r = kit
        .app
        .get(&format!("/api/v1/commands/{id}"), &kit.admin)
        .await;
    r.expect(StatusCode::OK);
    r.body
}

async fn a_lock_queued_after_a_failed_check_in_is_carried_out_at_the_next_check_in_with_the_backlog(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let phone = enrolled_phone(&kit, "BACKLOG1", 1, kit.provider_a).await;
    let Fleet { app, admin, .. } = kit;
    // The server is down for one check-in: the report waits on the phone.
    let (app, missed) = app
        .restart_after(agent::client::checkin_once(&phone.state(), &phone.facts()))
        .await;
    assert!(missed.is_err(), "the server was down");
    assert_eq!(phone.state().pending().expect("pending").len(), 1);

    // A lock queued after the restart goes out with the answer to the older report; the answer
    // to the newer one no longer carries it, and the phone still carries it out.
    let lock = app
        .post(
            &format!("/api/v1/devices/{}/commands", phone.id),
            &admin,
            json!({ "kind": "lock", "message": "Ring IT-supporten" }),
        )
        .await;
    lock.expect(StatusCode::CREATED);
    phone.check_in().await;
    assert!(phone.state().pending().expect("pending").is_empty());
    let answered = app
        .get(&format!("/api/v1/commands/{}", lock.body["id"]), &admin)
        .await;
    assert_eq!(answered.body["state"], "acknowledged", "{}", answered.text);
    let screen = phone.state().phone().expect("phone").lock_screen;
    assert_eq!(
        screen.and_then(|s| s.message).as_deref(),
        Some("Ring IT-supporten")
    );
}

/// Checks in without carrying anything out: the commands as the phone received them.
async fn fetch(phone: &AgentPhone) -> Vec<DeviceCommand> {
    phone
        .client()
        .checkin(&report(&phone.facts()))
        .await
        .expect("check-in")
        .commands
}

fn answer(status: CommandStatus) -> CommandResult {
    CommandResult {
        status,
        error: None,
    }
}

fn refusal(e: &anyhow::Error) -> (u16, String) {
    let r = e.downcast_ref::<Refused>().expect("a refusal");
    (r.status, r.problem_type.clone())
}

async fn lock_install_and_wipe_each_go_from_queued_to_sent_to_acknowledged_and_the_wiped_phone_is_refused(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let phone = enrolled_phone(&kit, "PHONEA01", 1, kit.provider_a).await;

    // Lock: queued, then sent with the check-in answer, then acknowledged by the phone.
    let lock = send(
        &kit,
        phone.id,
        json!({ "kind": "lock", "message": "Ring IT-supporten", "phone_number": "+46 8 123 456 78" }),
    )
    .await;
    assert_eq!(lock["priority"], "high");
    let received = fetch(&phone).await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        serde_json::to_value(&received[0]).expect("json"),
        json!({ "id": lock["id"], "kind": "lock", "message": "Ring IT-supporten", "phone_number": "+46812345678" })
    );
    let sent = command(&kit, &lock["id"]).await;
    assert_eq!(sent["state"], "sent");
    assert_eq!(sent["attempts"], 1);
    let id = lock["id"].as_i64().expect("id");
    phone
        .client()
        .command_result(id, &answer(CommandStatus::Acknowledged))
        .await
        .expect("answer");
    let done = command(&kit, &lock["id"]).await;
    assert_eq!(done["state"], "acknowledged");
    assert!(done["finished_at"].is_string());

    // Install: the agent carries it out and the app shows in the next report.
    let install = send(
        &kit,
        phone.id,
        json!({ "kind": "install_app", "app": "phoniro" }),
    )
    .await;
    assert_eq!(install["payload"]["identifier"], "se.phoniro.ios");
    phone.check_in().await;
    let installed = command(&kit, &install["id"]).await;
    assert_eq!(installed["state"], "acknowledged");
    assert_eq!(installed["attempts"], 1, "sent once");
    assert!(installed["sent_at"].is_string());
    phone.check_in().await;
    let device = kit
        .app
        .get(&format!("/api/v1/devices/{}", phone.id), &kit.admin)
        .await;
    let apps = device.body["reported"]["installed_apps"].to_string();
    assert!(apps.contains("se.phoniro.ios"), "{apps}");

    // Wipe, with a restart queued behind it: the phone answers the wipe and erases itself; the
    // restart it never ran is purged with the old identity.
    let wipe = send(&kit, phone.id, json!({ "kind": "wipe" })).await;
    let restart = send(&kit, phone.id, json!({ "kind": "restart" })).await;
    let old_identity = phone.client();
    phone.check_in().await;
    let wiped = command(&kit, &wipe["id"]).await;
    assert_eq!(wiped["state"], "acknowledged");
    assert_eq!(wiped["attempts"], 1, "sent once");
    assert!(wiped["sent_at"].is_string());
    let purged = command(&kit, &restart["id"]).await;
    assert_eq!(purged["state"], "cancelled");
    assert_eq!(purged["result"], "purged: the phone was wiped");
    assert!(phone.state().enrollment().expect("state").is_none());
    assert!(
        phone.state().identity_pem().is_err(),
        "the key survived the wipe"
    );
    let err = old_identity
        .checkin(&report(&phone.facts()))
        .await
        .expect_err("the wiped phone's identity must be refused");
    assert_eq!(
        refusal(&err),
        (401, "/problems/device-identity-refused".into())
    );
    let pending = kit
        .app
        .get(
            &format!("/api/v1/devices/{}/commands?state=queued", phone.id),
            &kit.admin,
        )
        .await;
    assert_eq!(pending.body, json!([]));
    assert_eq!(
        kit.app
            .count(&format!(
                "commands WHERE device_id = {} AND state IN ('queued', 'sent', 'not_now')",
                phone.id
            ))
            .await,
        0
    );
    let device = kit
        .app
        .get(&format!("/api/v1/devices/{}", phone.id), &kit.admin)
        .await;
    assert!(device.body["enrolled_at"].is_null(), "{}", device.text);
    // Not enrolled any more: nothing can be queued for it until it enrolls again.
    kit.app
        .post(
            &format!("/api/v1/devices/{}/commands", phone.id),
            &kit.admin,
            json!({ "kind": "restart" }),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "device-not-commandable");
}

async fn a_command_to_every_phone_of_a_provider_reaches_a_thousand_swarm_phones_and_each_acknowledges_once(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let swarm = mdm_tests::enrolled_swarm(
        &kit.app,
        kit.model,
        kit.provider_a,
        "SWARM",
        1000,
        agent::client::Connections::KeepAlive,
    )
    .await;
    assert_eq!(swarm.len(), 1000);
    // Not part of it: a phone of provider A that never enrolled, and provider B's phone.
    kit.app
        .register_device(&kit.admin, "NEVERENROLLED", &imei(7), Some(kit.provider_a))
        .await;
    let other = enrolled_phone(&kit, "PHONEB01", 8, kit.provider_b).await;

    let batch = kit
        .app
        .post(
            &format!("/api/v1/providers/{}/commands", kit.provider_a),
            &kit.admin,
            json!({ "kind": "lock", "message": "Uppdatering pågår" }),
        )
        .await;
    batch.expect(StatusCode::CREATED);
    assert_eq!(batch.body["queued"], 1000);
    let batch_path = format!("/api/v1/command-batches/{}", batch.body["id"]);

    // Two rounds of check-ins: the first carries the command to every phone, the second must
    // carry nothing (each phone answered at once).
    for _ in 0..2 {
        let round = agent::swarm::checkin_rounds(&swarm, 1, 32).await;
        assert_eq!(round.failures, 0);
    }
    let executed: Vec<usize> = swarm.iter().map(|p| p.executed()).collect();
    assert!(
        executed.iter().all(|&n| n == 1),
        "some phone ran the command other than once"
    );
    let progress = kit.app.get(&batch_path, &kit.admin).await;
    progress.expect(StatusCode::OK);
    assert_eq!(progress.body["states"], json!({ "acknowledged": 1000 }));
    assert_eq!(
        kit.app
            .count("audit_log WHERE action = 'device.command_result'")
            .await,
        1000
    );
    assert!(fetch(&other).await.is_empty());
    let failed = kit
        .app
        .get(&format!("{batch_path}/commands?state=error"), &kit.admin)
        .await;
    assert_eq!(failed.body, json!([]));
}

async fn bad_commands_and_commands_for_phones_in_the_wrong_state_are_refused_and_nothing_is_queued(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let app = &kit.app;
    let phone = enrolled_phone(&kit, "PHONEA01", 1, kit.provider_a).await;
    let unenrolled = app
        .register_device(&kit.admin, "PHONEA02", &imei(2), Some(kit.provider_a))
        .await;
    let path = format!("/api/v1/devices/{}/commands", phone.id);
    for (body, field) in [
        (json!({ "kind": "selfdestruct" }), "kind"),
        (
            json!({ "kind": "lock", "message": "x".repeat(201) }),
            "message",
        ),
        (
            json!({ "kind": "lock", "phone_number": "08-123 45" }),
            "phone_number",
        ),
        (json!({ "kind": "lost_mode_on" }), "message"),
        (json!({ "kind": "install_app" }), "app"),
        (json!({ "kind": "install_app", "app": "okänd" }), "app"),
        (json!({ "kind": "restart", "app": "phoniro" }), "app"),
        (
            json!({ "kind": "restart", "priority": "urgent" }),
            "priority",
        ),
        (
            json!({ "kind": "restart", "expires_in_hours": 0 }),
            "expires_in_hours",
        ),
    ] {
        let r = app.post(&path, &kit.admin, body.clone()).await;
        r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
        assert_eq!(r.body["errors"][0]["field"], field, "{body}: {}", r.text);
    }
    let unknown = app
        .post(
            &path,
            &kit.admin,
            json!({ "kind": "restart", "colour": "red" }),
        )
        .await;
    unknown.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(
        unknown.body["errors"][0]["field"], "colour",
        "{}",
        unknown.text
    );
    // The wrong phone state: a wipe of a phone that never enrolled.
    let r = app
        .post(
            &format!("/api/v1/devices/{unenrolled}/commands"),
            &kit.admin,
            json!({ "kind": "wipe" }),
        )
        .await;
    r.expect_problem(StatusCode::CONFLICT, "device-not-commandable");
    assert!(r.body["detail"]
        .as_str()
        .expect("detail")
        .contains("not enrolled"));
    app.post(
        "/api/v1/devices/999999/commands",
        &kit.admin,
        json!({ "kind": "restart" }),
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    // A wipe is never sent to a whole provider, and a provider must exist.
    let fan_out = format!("/api/v1/providers/{}/commands", kit.provider_a);
    app.post(&fan_out, &kit.admin, json!({ "kind": "wipe" }))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    app.post(
        "/api/v1/providers/999999/commands",
        &kit.admin,
        json!({ "kind": "restart" }),
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    // Operator staff may lock but not wipe or fan out; a provider's admin sends nothing.
    let staff = app
        .create_user(
            &kit.admin,
            app.server.state.operator_id,
            "staff@kommun.example",
            "operator_staff",
        )
        .await;
    let staff = app.first_login(&staff).await;
    app.post(&path, &staff, json!({ "kind": "wipe" }))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    app.post(&fan_out, &staff, json!({ "kind": "restart" }))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    let provider_admin = app
        .create_user(
            &kit.admin,
            kit.provider_a,
            "it@norr.example",
            "provider_admin",
        )
        .await;
    let provider_admin = app.first_login(&provider_admin).await;
    app.post(&path, &provider_admin, json!({ "kind": "lock" }))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(app.count("commands").await, 0);
    assert_eq!(app.count("command_batches").await, 0);
    // Staff may lock.
    app.post(&path, &staff, json!({ "kind": "lock" }))
        .await
        .expect(StatusCode::CREATED);
}

async fn a_result_for_a_command_the_phone_never_got_is_refused_and_a_repeated_result_changes_nothing(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let phone = enrolled_phone(&kit, "PHONEA01", 1, kit.provider_a).await;
    let other = enrolled_phone(&kit, "PHONEB01", 2, kit.provider_b).await;
    let restart = send(&kit, phone.id, json!({ "kind": "restart" })).await;
    let id = restart["id"].as_i64().expect("id");
    let client = phone.client();
    let ack = answer(CommandStatus::Acknowledged);

    let err = client.command_result(id, &ack).await.expect_err("not sent");
    assert_eq!(refusal(&err), (409, "/problems/command-not-sent".into()));
    let err = client
        .command_result(999_999, &ack)
        .await
        .expect_err("unknown");
    assert_eq!(refusal(&err), (404, "/problems/command-unknown".into()));
    // Another phone cannot answer for this one.
    let err = other
        .client()
        .command_result(id, &ack)
        .await
        .expect_err("not its command");
    assert_eq!(refusal(&err), (404, "/problems/command-unknown".into()));
    assert_eq!(command(&kit, &restart["id"]).await["state"], "queued");

    assert_eq!(fetch(&phone).await.len(), 1);
    client.command_result(id, &ack).await.expect("answer");
    // The reply was lost and the phone answers again: accepted, nothing changes.
    client.command_result(id, &ack).await.expect("repeat");
    let err = client
        .command_result(
            id,
            &CommandResult {
                status: CommandStatus::Error,
                error: Some("late".into()),
            },
        )
        .await
        .expect_err("a different answer");
    assert_eq!(
        refusal(&err),
        (409, "/problems/command-result-conflict".into())
    );
    let done = command(&kit, &restart["id"]).await;
    assert_eq!(done["state"], "acknowledged");
    assert_eq!(done["attempts"], 1);
    assert!(done["result"].is_null());
    assert_eq!(
        kit.app
            .count("audit_log WHERE action = 'device.command_result'")
            .await,
        1
    );

    // An error answer keeps the phone's text.
    let remove = send(
        &kit,
        phone.id,
        json!({ "kind": "remove_app", "app": "phoniro" }),
    )
    .await;
    phone.check_in().await;
    let failed = command(&kit, &remove["id"]).await;
    assert_eq!(failed["state"], "error");
    assert_eq!(failed["result"], "se.phoniro.ios is not installed");
}

async fn a_phone_that_says_not_now_gets_the_command_again_later_and_unanswered_commands_expire(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let phone = enrolled_phone(&kit, "PHONEA01", 1, kit.provider_a).await;
    let restart = send(&kit, phone.id, json!({ "kind": "restart" })).await;
    let id = restart["id"].as_i64().expect("id");
    assert_eq!(fetch(&phone).await.len(), 1);
    phone
        .client()
        .command_result(id, &answer(CommandStatus::NotNow))
        .await
        .expect("not now");
    assert_eq!(command(&kit, &restart["id"]).await["state"], "not_now");
    // Not again at once; again after the five-minute pause.
    assert!(fetch(&phone).await.is_empty());
    kit.app.clock.advance(Duration::minutes(6));
    let again = fetch(&phone).await;
    assert_eq!(again.iter().map(|c| c.id).collect::<Vec<_>>(), vec![id]);
    phone
        .client()
        .command_result(id, &answer(CommandStatus::Acknowledged))
        .await
        .expect("done");
    let done = command(&kit, &restart["id"]).await;
    assert_eq!(
        (done["state"].clone(), done["attempts"].clone()),
        (json!("acknowledged"), json!(2))
    );

    // A sent command without an answer goes out again after five minutes (at least once).
    let lock = send(&kit, phone.id, json!({ "kind": "lock" })).await;
    assert_eq!(fetch(&phone).await.len(), 1);
    assert!(fetch(&phone).await.is_empty());
    kit.app.clock.advance(Duration::minutes(6));
    assert_eq!(fetch(&phone).await.len(), 1);
    assert_eq!(command(&kit, &lock["id"]).await["attempts"], 2);

    // Commands that wait past their expiry end as expired: at check-in, and for a phone that
    // never checks in, by the sweep.
    let short = send(
        &kit,
        phone.id,
        json!({ "kind": "refresh_information", "expires_in_hours": 1 }),
    )
    .await;
    kit.app.clock.advance(Duration::hours(2));
    let lock_again = fetch(&phone).await;
    assert!(lock_again
        .iter()
        .all(|c| c.id != short["id"].as_i64().expect("id")));
    assert_eq!(command(&kit, &short["id"]).await["state"], "expired");
    let never = send(
        &kit,
        phone.id,
        json!({ "kind": "restart", "expires_in_hours": 1 }),
    )
    .await;
    kit.app.clock.advance(Duration::hours(2));
    let path = format!("/api/v1/commands/{}", never["id"]);
    let mut state = String::new();
    for _ in 0..200 {
        state = kit.app.get(&path, &kit.admin).await.body["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if state == "expired" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(state, "expired");
}

async fn enrolling_again_purges_what_was_queued_for_the_old_identity(backend: Backend) {
    let kit = kit(backend).await;
    let phone = enrolled_phone(&kit, "PHONEA01", 1, kit.provider_a).await;
    let queued = send(&kit, phone.id, json!({ "kind": "restart" })).await;
    let sent = send(&kit, phone.id, json!({ "kind": "lock" })).await;
    // Both go out and stay unanswered; a third waits in the queue.
    assert_eq!(fetch(&phone).await.len(), 2);
    let later = send(&kit, phone.id, json!({ "kind": "refresh_information" })).await;
    kit.enroll(&phone).await;
    for c in [&queued, &sent, &later] {
        let now = command(&kit, &c["id"]).await;
        assert_eq!(now["state"], "cancelled", "{now}");
        assert_eq!(now["result"], "purged: the phone enrolled again");
    }
    // The new identity starts with an empty queue, and takes new commands.
    assert!(fetch(&phone).await.is_empty());
    send(&kit, phone.id, json!({ "kind": "restart" })).await;
    assert_eq!(fetch(&phone).await.len(), 1);
}

async fn only_commands_not_yet_sent_can_be_cancelled_and_providers_see_only_their_own_phones_commands(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let app = &kit.app;
    let phone = enrolled_phone(&kit, "PHONEA01", 1, kit.provider_a).await;
    let other = enrolled_phone(&kit, "PHONEB01", 2, kit.provider_b).await;
    let restart = send(&kit, phone.id, json!({ "kind": "restart" })).await;
    let cancel = |c: &Value| format!("/api/v1/commands/{}/cancel", c["id"]);
    let r = app.post(&cancel(&restart), &kit.admin, json!({})).await;
    r.expect(StatusCode::OK);
    assert_eq!(r.body["state"], "cancelled");
    assert_eq!(r.body["result"], "cancelled by the operator");
    app.post(&cancel(&restart), &kit.admin, json!({}))
        .await
        .expect_problem(StatusCode::CONFLICT, "command-not-cancellable");
    assert!(
        fetch(&phone).await.is_empty(),
        "a cancelled command went out"
    );
    let lock = send(&kit, phone.id, json!({ "kind": "lock" })).await;
    assert_eq!(fetch(&phone).await.len(), 1);
    app.post(&cancel(&lock), &kit.admin, json!({}))
        .await
        .expect_problem(StatusCode::CONFLICT, "command-not-cancellable");

    let theirs = send(&kit, other.id, json!({ "kind": "restart" })).await;
    let login = app
        .create_user(
            &kit.admin,
            kit.provider_a,
            "it@norr.example",
            "provider_admin",
        )
        .await;
    let provider_admin = app.first_login(&login).await;
    let own = app
        .get(
            &format!("/api/v1/devices/{}/commands", phone.id),
            &provider_admin,
        )
        .await;
    own.expect(StatusCode::OK);
    assert_eq!(own.body.as_array().map(Vec::len), Some(2));
    app.get(
        &format!("/api/v1/devices/{}/commands", other.id),
        &provider_admin,
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    app.get(
        &format!("/api/v1/commands/{}", theirs["id"]),
        &provider_admin,
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    app.post(&cancel(&theirs), &provider_admin, json!({}))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(command(&kit, &theirs["id"]).await["state"], "queued");
}

async fn finished_commands_are_deleted_after_the_retention_period(backend: Backend) {
    let kit = kit(backend).await;
    let phone = enrolled_phone(&kit, "PHONEA01", 1, kit.provider_a).await;
    let done = send(&kit, phone.id, json!({ "kind": "restart" })).await;
    phone.check_in().await;
    assert_eq!(command(&kit, &done["id"]).await["state"], "acknowledged");
    let waiting = send(
        &kit,
        phone.id,
        json!({ "kind": "lock", "expires_in_hours": 2160 }),
    )
    .await;
    kit.app.clock.advance(Duration::days(89));
    // Within the 90 days: kept. After them: deleted.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    command(&kit, &done["id"]).await;
    kit.app.clock.advance(Duration::days(2));
    let path = format!("/api/v1/commands/{}", done["id"]);
    let mut status = StatusCode::OK;
    for _ in 0..200 {
        status = kit.app.get(&path, &kit.admin).await.status;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the finished command was kept"
    );
    // The lock waited its whole 90 days for a phone that never came: it has just expired, and
    // is kept for the retention period from now.
    assert_eq!(command(&kit, &waiting["id"]).await["state"], "expired");
}
