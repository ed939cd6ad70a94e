//! Waking iPhones through Apple's push service, against a stand-in that speaks APNs' HTTP/2
//! wire format over TLS with the push certificate as client certificate: a command is followed
//! by one push per phone however many commands a burst holds, APNs' answers are acted on (a
//! dead token, tries again while busy, a refusal not tried again), and nothing is pushed with a
//! push certificate that has run out, while the commands wait for the phone. Both backends.

use std::time::Duration;

use mdm_tests::apns::{enrolled, pushed_fleet, pushed_fleet_with, Answer};
use mdm_tests::iphone::SimulatedIphone;
use mdm_tests::{backend_tests, Backend, Fleet};
use reqwest::StatusCode;
use serde_json::json;

backend_tests!(
    a_burst_of_commands_is_one_push_over_one_connection_with_apns_headers_and_the_iphone_collects_every_command,
    apns_busy_answers_are_tried_again_a_refusal_is_not_and_unregistered_marks_the_token_dead_until_the_next_token_update,
    with_the_push_certificate_run_out_nothing_is_pushed_and_the_commands_wait_for_the_phone,
    lock_install_and_wipe_go_queued_pushed_sent_acknowledged_and_after_return_to_service_the_iphone_enrolls_again_by_itself,
    an_iphone_older_than_ios_17_gets_a_plain_erase_and_the_history_says_it_must_be_enrolled_by_hand,
    an_iphone_is_asked_for_its_inventory_again_after_the_configured_interval_and_woken_for_it,
    a_fan_out_to_a_thousand_iphones_pushes_each_once_and_every_one_acknowledges_exactly_once,
    an_iphone_silent_longer_than_configured_is_pushed_once_for_the_period,
);

use mdm_tests::apns::TOPIC;

/// Longer than the server's coalescing wait and a round of pushes.
async fn quiet() {
    tokio::time::sleep(Duration::from_millis(1200)).await;
}

async fn a_burst_of_commands_is_one_push_over_one_connection_with_apns_headers_and_the_iphone_collects_every_command(
    backend: Backend,
) {
    let p = pushed_fleet(backend, 365).await;
    let (device, phone) = enrolled(&p, "F2LXK0PUSH01", 1).await;
    let token = phone.push_token_hex();
    let before = p.apns.received_for(&token).len();

    let commands = [
        p.kit
            .queue_command(
                device,
                json!({ "kind": "lock", "message": "Ring IT-supporten" }),
            )
            .await,
        p.kit
            .queue_command(device, json!({ "kind": "refresh_information" }))
            .await,
        p.kit
            .queue_command(device, json!({ "kind": "restart" }))
            .await,
    ];
    let pushes = p.apns.wait_for(&token, before + 1).await;
    quiet().await;
    assert_eq!(
        p.apns.received_for(&token).len(),
        before + 1,
        "one push for the burst"
    );

    let push = pushes.last().expect("a push");
    assert_eq!(push.answered, 200);
    assert_eq!(push.headers["apns-topic"], TOPIC);
    assert_eq!(push.headers["apns-push-type"], "mdm");
    assert_eq!(push.headers["apns-priority"], "10");
    let expires: i64 = push.headers["apns-expiration"].parse().expect("unix time");
    assert!(expires > p.kit.app.clock.now().timestamp());
    assert_eq!(push.body, json!({ "mdm": phone.push_magic }));
    assert_eq!(
        p.apns.connections(),
        1,
        "every push on one multiplexed connection"
    );
    let seen = p.kit.identity(device).await["apple_mdm"].clone();
    assert_eq!(seen["can_be_woken"], true);
    assert!(seen["pushed_at"].is_string(), "{seen}");

    // The push said "connect": the phone collects the three commands in the queue's order
    // (the inventory refresh is four questions to an iPhone).
    let mut phone = phone;
    assert_eq!(
        phone.work().await,
        [
            "DeviceLock",
            "DeviceInformation",
            "SecurityInfo",
            "ProfileList",
            "InstalledApplicationList",
            "RestartDevice"
        ]
    );
    for id in commands {
        assert_eq!(p.kit.command(id).await["state"], "acknowledged");
    }

    // The stand-in takes only the push certificate: a client without it is turned away.
    let stranger = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(p.apns.ca_pem.as_bytes()).expect("ca"))
        .http2_prior_knowledge()
        .build()
        .expect("client");
    assert!(stranger
        .post(format!("{}/3/device/{token}", p.apns.url))
        .send()
        .await
        .is_err());
}

async fn apns_busy_answers_are_tried_again_a_refusal_is_not_and_unregistered_marks_the_token_dead_until_the_next_token_update(
    backend: Backend,
) {
    let p = pushed_fleet(backend, 365).await;
    let (busy_id, busy) = enrolled(&p, "F2LXK0BUSY01", 1).await;
    let (slow_id, slow) = enrolled(&p, "F2LXK0SLOW01", 2).await;
    let (refused_id, refused) = enrolled(&p, "F2LXK0REFU01", 3).await;
    let (gone_id, gone) = enrolled(&p, "F2LXK0GONE01", 4).await;
    let before = |phone: &SimulatedIphone| p.apns.received_for(&phone.push_token_hex()).len();
    let (b_busy, b_slow, b_refused, b_gone) = (
        before(&busy),
        before(&slow),
        before(&refused),
        before(&gone),
    );

    p.apns.script(
        &busy.push_token_hex(),
        [
            Answer::Status(500, "InternalServerError"),
            Answer::Status(429, "TooManyRequests"),
            Answer::Status(503, "ServiceUnavailable"),
        ],
    );
    p.apns.script(&slow.push_token_hex(), [Answer::Hang]);
    p.apns.script(
        &refused.push_token_hex(),
        [Answer::Status(403, "BadCertificate")],
    );
    p.apns.script(
        &gone.push_token_hex(),
        [Answer::Status(410, "Unregistered")],
    );
    for device in [busy_id, slow_id, refused_id, gone_id] {
        p.kit
            .queue_command(device, json!({ "kind": "restart" }))
            .await;
    }

    // Busy three times, then taken: four tries, the last answered 200.
    let tries = p.apns.wait_for(&busy.push_token_hex(), b_busy + 4).await;
    assert_eq!(
        tries[b_busy..]
            .iter()
            .map(|t| t.answered)
            .collect::<Vec<_>>(),
        [500, 429, 503, 200]
    );
    // No answer in time: tried again, and taken.
    let tries = p.apns.wait_for(&slow.push_token_hex(), b_slow + 2).await;
    assert_eq!(tries.last().expect("a try").answered, 200);
    quiet().await;
    // A refusal another try will not fix is not tried again.
    assert_eq!(
        p.apns.received_for(&refused.push_token_hex()).len(),
        b_refused + 1
    );
    assert_eq!(
        p.kit.identity(refused_id).await["apple_mdm"]["can_be_woken"],
        true
    );

    // Unregistered: the token is dead, the device view says the phone cannot be woken, and
    // further commands are not pushed but wait in the queue.
    assert_eq!(
        p.apns.received_for(&gone.push_token_hex()).len(),
        b_gone + 1
    );
    let seen = p.kit.identity(gone_id).await["apple_mdm"].clone();
    assert_eq!(seen["can_be_woken"], false, "{seen}");
    assert_eq!(seen["push_token_refused_reason"], "Unregistered");
    let waiting = p
        .kit
        .queue_command(gone_id, json!({ "kind": "lock" }))
        .await;
    quiet().await;
    assert_eq!(
        p.apns.received_for(&gone.push_token_hex()).len(),
        b_gone + 1
    );
    assert_eq!(p.kit.command(waiting).await["state"], "queued");
    // Another phone cannot answer it, nor take a step of it.
    for uuid in [waiting.to_string(), format!("{waiting}.security")] {
        let (status, _) = busy.answer(&uuid, "Acknowledged", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uuid}");
    }
    assert_eq!(p.kit.command(waiting).await["state"], "queued");

    // Its next TokenUpdate makes it reachable again.
    let (status, body) = gone.token_update().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = p.kit.identity(gone_id).await["apple_mdm"].clone();
    assert_eq!(seen["can_be_woken"], true, "{seen}");
    assert!(seen["push_token_refused_reason"].is_null());
    p.kit
        .queue_command(gone_id, json!({ "kind": "refresh_information" }))
        .await;
    p.apns.wait_for(&gone.push_token_hex(), b_gone + 2).await;
}

async fn with_the_push_certificate_run_out_nothing_is_pushed_and_the_commands_wait_for_the_phone(
    backend: Backend,
) {
    let p = pushed_fleet(backend, 30).await;
    let (device, phone) = enrolled(&p, "F2LXK0EXPD01", 1).await;
    let token = phone.push_token_hex();
    let before = p.apns.received_for(&token).len();
    p.kit.app.clock.advance(chrono::Duration::days(31));

    let lock = p.kit.queue_command(device, json!({ "kind": "lock" })).await;
    quiet().await;
    assert_eq!(p.apns.received_for(&token).len(), before, "no push");
    let metrics = p
        .kit
        .app
        .http
        .get(format!("{}/metrics", p.kit.app.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // The lock's push (and the month's inventory question's) counted as not sent.
    let expired = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mdm_apns_pushes_total{outcome=\"certificate_expired\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(expired.is_some_and(|n| n >= 1), "{metrics}");
    assert_eq!(p.kit.command(lock).await["state"], "queued");
    // The phone connects by itself and gets the lock all the same.
    let mut phone = phone;
    assert!(phone.work().await.contains(&"DeviceLock".to_string()));
    assert_eq!(p.kit.command(lock).await["state"], "acknowledged");
}

async fn lock_install_and_wipe_go_queued_pushed_sent_acknowledged_and_after_return_to_service_the_iphone_enrolls_again_by_itself(
    backend: Backend,
) {
    let p = pushed_fleet(backend, 365).await;
    let kit = &p.kit;
    kit.catalogue_phoniro().await;
    let (device, mut phone) = enrolled(&p, "F2LXK0RTS001", 1).await;
    let first_identity = phone.fingerprint();
    let token = phone.push_token_hex();

    // Each command: queued, pushed, sent when the phone connects, acknowledged by its answer.
    for (body, request_type) in [
        (
            json!({ "kind": "lock", "message": "Ring IT-supporten" }),
            "DeviceLock",
        ),
        (
            json!({ "kind": "install_app", "app": "phoniro" }),
            "InstallApplication",
        ),
    ] {
        let pushed = p.apns.received_for(&token).len();
        let id = kit.queue_command(device, body).await;
        assert_eq!(kit.command(id).await["state"], "queued");
        p.apns.wait_for(&token, pushed + 1).await;
        let given = phone.next_command().await.1.expect("the command");
        assert_eq!(given.request_type, request_type);
        assert_eq!(given.uuid, id.to_string());
        assert_eq!(kit.command(id).await["state"], "sent");
        let (status, next) = phone.carry_out(&given).await;
        assert_eq!((status, next.is_none()), (StatusCode::OK, true));
        assert_eq!(kit.command(id).await["state"], "acknowledged");
    }

    // Returned from its lease, the phone is wiped with Return to Service (it runs iOS 18): the
    // erase carries an enrollment profile with a token of its own, the phone sets itself up,
    // enrolls again with a fresh identity, and the wipe gate lets the next holder in.
    let wipe = kit.lease_and_return(device).await;
    let pushed = p.apns.received_for(&token).len();
    p.apns.wait_for(&token, pushed + 1).await;
    let given = phone.next_command().await.1.expect("the erase");
    assert_eq!(given.request_type, "EraseDevice");
    let rts = given.command["ReturnToService"]
        .as_dictionary()
        .expect("Return to Service");
    assert_eq!(rts["Enabled"].as_boolean(), Some(true));
    assert_eq!(kit.command(wipe).await["state"], "sent");
    let (status, next) = phone.answer(&given.uuid, "Acknowledged", None).await;
    assert_eq!((status, next.is_none()), (StatusCode::OK, true));
    assert_eq!(kit.command(wipe).await["state"], "acknowledged");
    // Erasing and setting up take minutes.
    kit.app.clock.advance(chrono::Duration::minutes(3));
    phone.erase(&given.command).await;

    assert_ne!(phone.fingerprint(), first_identity, "a fresh identity");
    assert_eq!(
        kit.identity(device).await["apple_mdm"]["udid"],
        phone.udid.as_str(),
        "the same phone"
    );
    let history = kit
        .app
        .get(&format!("/api/v1/devices/{device}/history"), &kit.admin)
        .await;
    history.expect(StatusCode::OK);
    assert_eq!(history.body["wipe_gate"]["ready"], true, "{}", history.text);
    assert_eq!(
        history.body["wipe_gate"]["wipe_delivered_as"],
        "return_to_service"
    );
    // It is managed as before: it has the standard profile and answers commands.
    assert_eq!(phone.profiles.len(), 1);
    let lock = kit.queue_command(device, json!({ "kind": "lock" })).await;
    assert_eq!(phone.work().await, ["DeviceLock"]);
    assert_eq!(kit.command(lock).await["state"], "acknowledged");
}

async fn an_iphone_older_than_ios_17_gets_a_plain_erase_and_the_history_says_it_must_be_enrolled_by_hand(
    backend: Backend,
) {
    let p = pushed_fleet(backend, 365).await;
    let kit = &p.kit;
    let (device, mut phone) = enrolled(&p, "F2LXK0OLD001", 1).await;
    phone.os_version = "16.7.10".into();
    kit.queue_command(device, json!({ "kind": "refresh_information" }))
        .await;
    phone.work().await;
    let wipe = kit.lease_and_return(device).await;
    let given = phone.next_command().await.1.expect("the erase");
    assert_eq!(given.request_type, "EraseDevice");
    assert!(given.command.get("ReturnToService").is_none());
    phone.carry_out(&given).await;
    assert_eq!(kit.command(wipe).await["state"], "acknowledged");
    assert!(phone.identity.is_none(), "it waits on the setup screen");
    let history = kit
        .app
        .get(&format!("/api/v1/devices/{device}/history"), &kit.admin)
        .await;
    history.expect(StatusCode::OK);
    assert_eq!(history.body["wipe_gate"]["wipe_delivered_as"], "erase_only");
    assert_eq!(history.body["wipe_gate"]["missing"], "not_reenrolled");
}

async fn an_iphone_is_asked_for_its_inventory_again_after_the_configured_interval_and_woken_for_it(
    backend: Backend,
) {
    let p = pushed_fleet(backend, 365).await;
    let kit = &p.kit;
    let (device, mut phone) = enrolled(&p, "F2LXK0INV001", 1).await;
    let token = phone.push_token_hex();
    assert_eq!(refreshes(kit, device).await, 1, "the enrollment's");
    // An hour on, nothing is due; a day on (the default interval), the phone is asked again.
    kit.app.clock.advance(chrono::Duration::hours(1));
    quiet().await;
    assert_eq!(refreshes(kit, device).await, 1);
    let pushed = p.apns.received_for(&token).len();
    kit.app.clock.advance(chrono::Duration::hours(24));
    p.apns.wait_for(&token, pushed + 1).await;
    assert_eq!(refreshes(kit, device).await, 2);
    phone.os_version = "18.3".into();
    assert_eq!(
        phone.work().await,
        [
            "DeviceInformation",
            "SecurityInfo",
            "ProfileList",
            "InstalledApplicationList"
        ]
    );
    let view = kit
        .app
        .get(&format!("/api/v1/devices/{device}"), &kit.admin)
        .await;
    assert_eq!(view.body["reported"]["os_version"], "18.3");
}

/// How many inventory refreshes were queued for the phone.
async fn refreshes(kit: &Fleet, device: i64) -> usize {
    kit.device_commands(device)
        .await
        .iter()
        .filter(|c| c["kind"] == "refresh_information")
        .count()
}

async fn a_fan_out_to_a_thousand_iphones_pushes_each_once_and_every_one_acknowledges_exactly_once(
    backend: Backend,
) {
    use mdm_tests::iphone_swarm::{IphoneSwarm, Target};
    let p = pushed_fleet(backend, 365).await;
    let kit = &p.kit;
    let state = &kit.app.server.state;
    let device_url = kit.app.device_url();
    let swarm = IphoneSwarm::enroll(
        Target {
            store: state.store.as_ref(),
            device_url: &device_url,
            root_der: state.ca.root_der(),
            topic: mdm_tests::apns::TOPIC,
            now: kit.app.clock.now(),
        },
        kit.model,
        Some(kit.provider_b),
        "FAN",
        1000,
        16,
    )
    .await;
    assert_eq!(swarm.len(), 1000);
    quiet().await;
    let pushed_before = p.apns.received().len();
    let answering = swarm.answer_pushes(&p.apns, 64);

    let batch = kit
        .app
        .post(
            &format!("/api/v1/providers/{}/commands", kit.provider_b),
            &kit.admin,
            json!({ "kind": "restart" }),
        )
        .await;
    batch.expect(StatusCode::CREATED);
    assert_eq!(batch.body["queued"], 1000, "{}", batch.text);
    let batch = batch.body["id"].as_i64().expect("batch");
    let mut acknowledged = 0;
    for _ in 0..600 {
        let r = kit
            .app
            .get(&format!("/api/v1/command-batches/{batch}"), &kit.admin)
            .await;
        r.expect(StatusCode::OK);
        acknowledged = r.body["states"]["acknowledged"].as_i64().unwrap_or(0);
        if acknowledged == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(acknowledged, 1000, "every phone acknowledged");
    quiet().await;
    answering.abort();
    let pushes = p.apns.received()[pushed_before..].to_vec();
    assert_eq!(pushes.len(), 1000, "one push per phone");
    assert!(pushes.iter().all(|push| push.answered == 200));
    let done = swarm.done();
    assert_eq!(done.len(), 1000);
    assert!(
        done.values()
            .all(|d| d.iter().filter(|r| *r == "RestartDevice").count() == 1),
        "each phone restarted exactly once"
    );
    assert_eq!(p.apns.connections(), 1, "one HTTP/2 connection");
}

async fn an_iphone_silent_longer_than_configured_is_pushed_once_for_the_period(backend: Backend) {
    let p = pushed_fleet_with(
        backend,
        365,
        Some("push_coalesce_ms = 300\nwake_silent_after_hours = 2\n"),
    )
    .await;
    let (device, phone) = enrolled(&p, "F2LXK0SILE01", 1).await;
    let token = phone.push_token_hex();
    let before = p.apns.received_for(&token).len();
    // Three hours without a word from the phone; the node looks for silent iPhones when it
    // starts and every minute after.
    let mdm_tests::apns::Pushed { kit, apns } = p;
    let mdm_tests::Fleet {
        app,
        admin,
        provider_a,
        provider_b,
        model,
    } = kit;
    app.clock.advance(chrono::Duration::hours(3));
    let (app, ()) = app.restart_after(async {}).await;
    let kit = Fleet {
        app,
        admin,
        provider_a,
        provider_b,
        model,
    };
    let pushes = apns.wait_for(&token, before + 1).await;
    assert_eq!(pushes.last().expect("a push").answered, 200);
    quiet().await;
    assert_eq!(apns.received_for(&token).len(), before + 1, "once");
    assert!(kit.identity(device).await["apple_mdm"]["pushed_at"].is_string());
}
