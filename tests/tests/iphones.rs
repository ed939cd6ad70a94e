//! iPhones through Apple's MDM protocol, end to end over the real device listener: the
//! operator's push certificate, the enrollment profile a token's address serves, SCEP, the
//! signed check-ins, commands and their answers, revocation, re-enrollment and the wipe gate;
//! Debian's `scepclient`, `openssl cms` and Python's `plistlib` as clients we did not write.
//! Every test runs on SQLite and PostgreSQL.

use base64::Engine;
use chrono::{Duration, Utc};
use enrollment::scep::CertRep;
use mdm_tests::iphone::{push_certificate, read_signed_profile, SimulatedIphone};
use mdm_tests::sinks::SmtpSink;
use mdm_tests::{backend_tests, imei, Backend, Fleet};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

backend_tests!(
    an_iphone_enrolls_from_its_token_address_through_scep_and_check_in_and_shows_enrolled_with_its_facts,
    an_iphone_token_works_once_even_when_two_phones_use_it_at_the_same_moment,
    an_iphone_whose_serial_contradicts_its_record_is_refused_audited_and_its_certificate_dropped,
    a_revoked_or_checked_out_iphone_is_refused_a_checkout_alerts_its_provider_and_enrolling_again_revokes_the_old_identity,
    check_ins_with_a_bad_missing_or_foreign_signature_or_a_broken_plist_are_refused,
    the_push_certificate_is_checked_kept_shown_and_the_service_desk_reminded_30_and_7_days_before,
    debians_scepclient_gets_a_certificate_and_a_wrong_challenge_is_refused_with_failure,
    the_enrollment_profile_verifies_with_openssl_and_parses_with_python_plistlib,
    an_iphone_gets_each_queued_command_on_connect_its_answers_move_the_queue_and_an_erase_holds_the_wipe_gate_until_it_enrolls_again,
    a_lost_iphone_gets_lost_mode_when_supervised_and_a_lock_with_the_same_words_when_not,
);

const TOPIC: &str = "com.apple.mgmt.External.5f8e7c2a-1b3d-4e6f-9a0b-2c4d6e8f0a1b";

async fn fleet(backend: Backend, config: &str) -> Fleet {
    Fleet::start(backend, config, &Utc::now().to_rfc3339()).await
}

/// Uploads a push certificate for `topic` running out in `days`, as PEM.
async fn upload_push(kit: &Fleet, topic: &str, days: i64) -> mdm_tests::Response {
    let (certificate_pem, key_pem) = push_certificate(topic, days);
    kit.app
        .request(
            Method::PUT,
            "/api/v1/push-certificate",
            Some(&kit.admin),
            Some(json!({ "certificate_pem": certificate_pem, "key_pem": key_pem })),
        )
        .await
}

/// A fleet with a push certificate.
async fn ready(backend: Backend) -> Fleet {
    let kit = fleet(backend, "").await;
    upload_push(&kit, TOPIC, 365).await.expect(StatusCode::OK);
    kit
}

/// A token for iPhones: the address the QR code holds.
async fn iphone_token(kit: &Fleet, body: Value) -> String {
    let r = kit
        .app
        .post("/api/v1/enrollment-tokens", &kit.admin, body)
        .await;
    r.expect(StatusCode::CREATED);
    assert_eq!(r.body["channel"], "apple_mdm");
    r.body["token"].as_str().expect("token").to_string()
}

async fn token_for_device(kit: &Fleet, device: i64) -> String {
    iphone_token(kit, json!({ "device_id": device, "channel": "apple_mdm" })).await
}

/// A registered iPhone and a simulated phone with its serial and IMEI.
async fn registered(kit: &Fleet, serial: &str, n: u32) -> (i64, SimulatedIphone) {
    let id = kit
        .app
        .register_device(&kit.admin, serial, &imei(n), Some(kit.provider_a))
        .await;
    (id, SimulatedIphone::new(serial, Some(&imei(n))))
}

/// The audit trail's entries with this action, newest first.
async fn audited(kit: &Fleet, action: &str) -> Vec<Value> {
    let r = kit.app.get("/api/v1/audit?limit=200", &kit.admin).await;
    r.expect(StatusCode::OK);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

/// `phone` installs the profile at `address` and gets its certificate by SCEP, but has not
/// authenticated yet.
async fn certified(phone: &mut SimulatedIphone, address: &str) {
    phone.install_profile(address).await.expect("profile");
    assert!(matches!(phone.scep().await, CertRep::Success(_)));
}

fn secret_of(address: &str) -> String {
    address.rsplit('/').next().expect("secret").to_string()
}

async fn an_iphone_enrolls_from_its_token_address_through_scep_and_check_in_and_shows_enrolled_with_its_facts(
    backend: Backend,
) {
    let kit = fleet(backend, "").await;
    let (device, mut phone) = registered(&kit, "F2LXK0ABHG7F", 1).await;
    let address = token_for_device(&kit, device).await;
    assert!(address.contains("/enroll/apple/"), "{address}");

    // Without a push certificate the profile says what to upload.
    let (status, body) = phone.install_profile(&address).await.expect_err("no push");
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("push-certificate-missing") && body.contains("push-certificate"));
    upload_push(&kit, TOPIC, 365).await.expect(StatusCode::OK);

    phone.install_profile(&address).await.expect("profile");
    let installed = phone.profile.clone().expect("installed");
    assert_eq!(installed.topic, TOPIC);
    assert_eq!(installed.challenge, secret_of(&address));
    assert!(installed.checkin_url.starts_with(&kit.app.device_url()));
    assert_eq!(installed.root_der, kit.app.server.state.ca.root_der());

    match phone.scep().await {
        CertRep::Success(certs) => assert!(!certs.is_empty()),
        other => panic!("SCEP answered {other:?}"),
    }
    // Not enrolled until the phone says who it is.
    assert!(kit.identity(device).await["certificate"].is_null());
    let (status, body) = phone.authenticate().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = phone.token_update().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after_authenticate = kit
        .app
        .get(&format!("/api/v1/devices/{device}"), &kit.admin)
        .await;
    assert_eq!(after_authenticate.body["reported"]["os_version"], "18.1");
    // The server sends the new phone the standard profile of its policy, asks whether its
    // passcode meets it, and asks for its inventory; the answers become its facts.
    phone.os_version = "18.2".into();
    phone.iccid = Some("8946 0000 0000 0000 0019".into());
    assert_eq!(
        phone.work().await,
        [
            "InstallProfile",
            "SecurityInfo",
            "DeviceInformation",
            "SecurityInfo",
            "ProfileList",
            "InstalledApplicationList"
        ]
    );
    let (status, body) = phone.idle().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.is_empty(), "an empty answer to Idle");

    let view = kit
        .app
        .get(&format!("/api/v1/devices/{device}"), &kit.admin)
        .await;
    view.expect(StatusCode::OK);
    assert!(view.body["enrolled_at"].is_string());
    assert_eq!(view.body["reported"]["serial"], "F2LXK0ABHG7F");
    assert_eq!(view.body["reported"]["imei"], imei(1));
    assert_eq!(view.body["reported"]["os_version"], "18.2");
    assert_eq!(view.body["reported"]["model"], "iPhone14,6");
    assert_eq!(view.body["reported"]["iccid"], "89460000000000000019");
    assert_eq!(view.body["reported"]["battery_percent"], 87);
    assert_eq!(
        view.body["reported"]["storage_total_bytes"],
        64_000_000_000u64
    );
    assert_eq!(view.body["reported"]["platform"], "ios");

    let id = kit.identity(device).await;
    assert_eq!(id["channel"], "apple_mdm");
    assert_eq!(id["certificate"]["key"], "rsa-2048");
    assert_eq!(id["certificate"]["fingerprint"], phone.fingerprint());
    assert_eq!(id["apple_mdm"]["udid"], phone.udid.as_str());
    assert_eq!(id["apple_mdm"]["topic"], TOPIC);
    assert_eq!(id["apple_mdm"]["push_token_present"], true);

    // The inventory finds it by the beginning of its UDID, as by its serial.
    let udid = phone.udid.to_lowercase();
    let found = kit
        .app
        .get(&format!("/api/v1/devices?q={}", &udid[..14]), &kit.admin)
        .await;
    found.expect(StatusCode::OK);
    let ids: Vec<i64> = found.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, vec![device]);

    let enrolled = audited(&kit, "device.enroll").await;
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0]["outcome"], "success");
    assert_eq!(audited(&kit, "device.scep_issue").await.len(), 1);

    // The token is spent: the same profile address now answers a problem.
    let mut again = SimulatedIphone::new("F2LXK0ABHG7F", Some(&imei(1)));
    let (status, body) = again.install_profile(&address).await.expect_err("spent");
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A repeated Authenticate from the enrolled phone changes nothing.
    let (status, _) = phone.authenticate().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        kit.identity(device).await["history"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

async fn an_iphone_token_works_once_even_when_two_phones_use_it_at_the_same_moment(
    backend: Backend,
) {
    let kit = ready(backend).await;
    let (device, mut first) = registered(&kit, "F2LXK0ABHG7F", 1).await;
    let address = token_for_device(&kit, device).await;
    let mut second = SimulatedIphone::new("F2LXK0ABHG7F", Some(&imei(1)));
    first.install_profile(&address).await.expect("profile");
    second.install_profile(&address).await.expect("profile");
    let (a, b) = tokio::join!(first.scep(), second.scep());
    let wins = [&a, &b]
        .iter()
        .filter(|r| matches!(r, CertRep::Success(_)))
        .count();
    assert_eq!(wins, 1, "exactly one wins: {a:?} {b:?}");
    for r in [&a, &b] {
        if let CertRep::Failure(code) = r {
            assert_eq!(code, "2", "badRequest");
        }
    }
    assert_eq!(kit.app.count("apple_pending_enrollments").await, 1);

    // Later: the address answers that the token is spent, and its challenge, a token made
    // for agents and a made-up one each get FAILURE, audited.
    let mut late = SimulatedIphone::new("F2LXK0ABHG7F", Some(&imei(1)));
    let (status, body) = late.install_profile(&address).await.expect_err("spent");
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    late.profile = first.profile.clone();
    late.trust(kit.app.server.state.ca.root_der());
    assert_eq!(late.scep().await, CertRep::Failure("2".into()));
    let agent_token = kit.enrollment_token(device).await;
    let agent_secret = enrollment::EnrollmentInvite::decode(&agent_token)
        .expect("invite")
        .secret;
    assert_eq!(
        late.scep_with(&agent_secret).await,
        CertRep::Failure("2".into())
    );
    assert_eq!(
        late.scep_with("made-up-challenge").await,
        CertRep::Failure("2".into())
    );
    assert_eq!(kit.app.count("apple_pending_enrollments").await, 1);
    // The winner never authenticates: a day later its certificate is swept away.
    kit.app.clock.advance(Duration::hours(25));
    let swept = async {
        while kit.app.count("apple_pending_enrollments").await > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), swept)
        .await
        .expect("the abandoned enrollment is swept");
    let winner = if matches!(a, CertRep::Success(_)) {
        &first
    } else {
        &second
    };
    assert_eq!(winner.authenticate().await.0, StatusCode::UNAUTHORIZED);
    let refused: Vec<String> = audited(&kit, "device.enroll")
        .await
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .map(|e| e["details"].to_string())
        .collect();
    assert!(refused.len() >= 3, "{refused:?}");
}

async fn an_iphone_whose_serial_contradicts_its_record_is_refused_audited_and_its_certificate_dropped(
    backend: Backend,
) {
    let kit = ready(backend).await;
    let (device, _) = registered(&kit, "F2LXK0ABHG7F", 1).await;
    let address = token_for_device(&kit, device).await;
    let mut phone = SimulatedIphone::new("DIFFERENT999", Some(&imei(1)));
    certified(&mut phone, &address).await;
    let (status, body) = phone.authenticate().await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("facts-contradict-record"), "{body}");
    let denied: Vec<Value> = audited(&kit, "device.enroll")
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["target_id"], device.to_string());
    // Nothing half-way: no identity, no pending certificate, and the phone cannot try again
    // with the serial changed.
    assert!(kit.identity(device).await["certificate"].is_null());
    assert_eq!(kit.app.count("apple_pending_enrollments").await, 0);
    assert_eq!(kit.app.count("apple_devices").await, 0);
    phone.serial = "F2LXK0ABHG7F".into();
    let (status, _) = phone.authenticate().await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An IMEI that is another phone's is refused the same way.
    let address = token_for_device(&kit, device).await;
    let mut other = SimulatedIphone::new("F2LXK0ABHG7F", Some(&imei(7)));
    certified(&mut other, &address).await;
    let (status, _) = other.authenticate().await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(kit.identity(device).await["certificate"].is_null());
}

async fn a_revoked_or_checked_out_iphone_is_refused_a_checkout_alerts_its_provider_and_enrolling_again_revokes_the_old_identity(
    backend: Backend,
) {
    let kit = ready(backend).await;
    let (device, mut phone) = registered(&kit, "F2LXK0ABHG7F", 1).await;
    phone.enroll(&token_for_device(&kit, device).await).await;
    let first_print = phone.fingerprint();

    // Enrolling again (a new key, a new token) revokes the first identity.
    let mut again = SimulatedIphone::new("F2LXK0ABHG7F", Some(&imei(1)));
    again.udid = phone.udid.clone();
    again.enroll(&token_for_device(&kit, device).await).await;
    let id = kit.identity(device).await;
    assert_eq!(id["certificate"]["fingerprint"], again.fingerprint());
    let history = id["history"].as_array().expect("history");
    let old = history
        .iter()
        .find(|h| h["fingerprint"] == first_print.as_str())
        .expect("old identity");
    assert_eq!(old["revoke_reason"], "re-enrolled");
    let (status, body) = phone.idle().await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("device-identity-refused"));
    assert_eq!(again.idle().await.0, StatusCode::OK);

    // Revoked by municipal IT: the very next check-in is refused.
    kit.app
        .post(
            &format!("/api/v1/devices/{device}/identity/revoke"),
            &kit.admin,
            json!({ "reason": "lost" }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(again.idle().await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(again.token_update().await.0, StatusCode::UNAUTHORIZED);

    // The person removes the MDM profile: CheckOut revokes the identity at once.
    let mut third = SimulatedIphone::new("F2LXK0ABHG7F", Some(&imei(1)));
    third.enroll(&token_for_device(&kit, device).await).await;
    let (status, body) = third.check_out().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(third.idle().await.0, StatusCode::UNAUTHORIZED);
    let id = kit.identity(device).await;
    assert!(id["certificate"].is_null());
    assert!(id["apple_mdm"]["checked_out_at"].is_string());
    assert_eq!(audited(&kit, "device.check_out").await.len(), 1);
    // Nobody manages it now: not enrolled, non-compliant ("must enroll again"), and its
    // provider's IT contact is told at once through the outbox.
    let view = kit
        .app
        .get(&format!("/api/v1/devices/{device}"), &kit.admin)
        .await;
    assert!(view.body["enrolled_at"].is_null(), "{}", view.text);
    let compliance = kit
        .app
        .get(&format!("/api/v1/devices/{device}/compliance"), &kit.admin)
        .await;
    assert_eq!(compliance.body["status"], "non_compliant");
    assert!(
        compliance.text.contains("certificate_invalid"),
        "{}",
        compliance.text
    );
    assert_eq!(
        kit.app
            .count(&format!(
                "deliveries WHERE topic = 'compliance' AND device_id = {device}"
            ))
            .await,
        1
    );
    assert_eq!(audited(&kit, "compliance.checked_out").await.len(), 1);

    // The same iPhone (its UDID) cannot be enrolled as a second record.
    let (other, _) = registered(&kit, "G0NZK1CDHG7F", 2).await;
    let mut twin = SimulatedIphone::new("G0NZK1CDHG7F", Some(&imei(2)));
    twin.udid = third.udid.clone();
    certified(&mut twin, &token_for_device(&kit, other).await).await;
    let (status, body) = twin.authenticate().await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(kit.identity(other).await["certificate"].is_null());
}

async fn check_ins_with_a_bad_missing_or_foreign_signature_or_a_broken_plist_are_refused(
    backend: Backend,
) {
    let kit = ready(backend).await;
    let (device, mut phone) = registered(&kit, "F2LXK0ABHG7F", 1).await;
    phone.enroll(&token_for_device(&kit, device).await).await;
    let url = phone.profile.as_ref().expect("profile").checkin_url.clone();
    let connect = phone.profile.as_ref().expect("profile").server_url.clone();
    let message = phone.authenticate_message();

    // A signature over other bytes: 400, never 401 (that would drop the enrollment).
    let wrong = phone.signature(b"something else");
    let (status, body) = phone.put_with(&url, message.clone(), Some(wrong)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("mdm-signature-invalid"));
    // No signature and no client certificate.
    let (status, body) = phone.put_with(&connect, message.clone(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Garbage in the header.
    let (status, _) = phone
        .put_with(&url, message.clone(), Some("not base64!".into()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A certificate this server's CA did not issue: 401.
    let mut stranger = SimulatedIphone::new("F2LXK0ABHG7F", Some(&imei(1)));
    stranger.profile = phone.profile.clone();
    stranger.trust(kit.app.server.state.ca.root_der());
    let (foreign, _) =
        enrollment::scep::client_request(&stranger.key, "stranger", "x").expect("self-signed");
    stranger.identity = Some(der::Encode::to_der(&foreign).expect("der"));
    let (status, body) = stranger.authenticate().await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Property lists that are not, or nest too deep: 400, stored nothing.
    let (status, body) = phone.put_signed(&url, b"<html>no</html>".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("plist-invalid"));
    let deep = format!(
        "<?xml version=\"1.0\"?><plist version=\"1.0\">{}{}</plist>",
        "<array>".repeat(40),
        "</array>".repeat(40)
    );
    let (status, _) = phone.put_signed(&connect, deep.into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A message type the server does not offer.
    let mut other = plist::Dictionary::new();
    other.insert("MessageType".into(), "UserAuthenticate".into());
    let mut bytes = Vec::new();
    plist::to_writer_xml(&mut bytes, &plist::Value::Dictionary(other)).expect("plist");
    assert_eq!(phone.put_signed(&url, bytes).await.0, StatusCode::GONE);

    assert!(!audited(&kit, "device.refused").await.is_empty());
    // The phone is still enrolled and heard.
    assert_eq!(phone.idle().await.0, StatusCode::OK);
    assert!(kit.identity(device).await["certificate"].is_object());
}

async fn the_push_certificate_is_checked_kept_shown_and_the_service_desk_reminded_30_and_7_days_before(
    backend: Backend,
) {
    let smtp = SmtpSink::start();
    let config = format!(
        "[notifications]\nsmtp_url = \"{}\"\nmail_from = \"it@kommun.example\"\n\
         [leasing]\nservice_desk_email = \"servicedesk@kommun.example\"\n",
        smtp.url()
    );
    let kit = fleet(backend, &config).await;
    kit.app
        .get("/api/v1/push-certificate", &kit.admin)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "push-certificate-missing");

    // Refused: a key of another certificate, one that has run out, a half-filled body.
    let (cert_a, _) = push_certificate(TOPIC, 40);
    let (_, key_b) = push_certificate(TOPIC, 40);
    let put = |body: Value| {
        kit.app.request(
            Method::PUT,
            "/api/v1/push-certificate",
            Some(&kit.admin),
            Some(body),
        )
    };
    put(json!({ "certificate_pem": cert_a, "key_pem": key_b }))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "push-certificate-invalid");
    let (old_cert, old_key) = push_certificate(TOPIC, -1);
    put(json!({ "certificate_pem": old_cert, "key_pem": old_key }))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "push-certificate-invalid");
    put(json!({ "certificate_pem": cert_a }))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    // Only an operator admin uploads it; a provider does not even see it.
    let provider_admin = kit
        .app
        .create_user(
            &kit.admin,
            kit.provider_a,
            "it@norr.example",
            "provider_admin",
        )
        .await;
    let provider = kit.app.first_login(&provider_admin).await;
    kit.app
        .request(
            Method::PUT,
            "/api/v1/push-certificate",
            Some(&provider),
            Some(json!({ "certificate_pem": "x", "key_pem": "y" })),
        )
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    kit.app
        .get("/api/v1/push-certificate", &provider)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");

    // A .p12 through the command line, its password from the environment.
    let (cert, key) = push_certificate(TOPIC, 40);
    let p12 = mdm_tests::iphone::pkcs12(&cert, &key, "hemligt");
    let file = kit.app.dir.path().join("push.p12");
    std::fs::write(&file, p12).expect("write");
    let file = file.to_str().expect("path");
    let wrong = kit
        .app
        .cli(&[
            "push-certificate",
            "upload",
            "--p12",
            file,
            "--password",
            "fel",
        ])
        .await
        .expect_err("wrong password");
    assert!(format!("{wrong:#}").contains("PKCS #12"), "{wrong:#}");
    kit.app
        .cli(&[
            "push-certificate",
            "upload",
            "--p12",
            file,
            "--password",
            "hemligt",
        ])
        .await
        .expect("uploaded");
    let shown = kit.app.get("/api/v1/push-certificate", &kit.admin).await;
    shown.expect(StatusCode::OK);
    assert_eq!(shown.body["topic"], TOPIC);
    assert!(shown.body["subject"]
        .as_str()
        .expect("subject")
        .contains("APSP:"));
    assert!((38..=40).contains(&shown.body["days_left"].as_i64().expect("days")));
    assert_eq!(shown.body["enrolled_iphones"], 0);
    assert_eq!(audited(&kit, "push_certificate.upload").await.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(kit.app.dir.path().join("ca/mdm-push.pem"))
            .expect("kept")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // With an iPhone enrolled, a certificate for another topic would orphan it.
    let (device, mut phone) = registered(&kit, "F2LXK0ABHG7F", 1).await;
    phone.enroll(&token_for_device(&kit, device).await).await;
    upload_push(&kit, "com.apple.mgmt.External.other", 365)
        .await
        .expect_problem(StatusCode::CONFLICT, "push-certificate-topic-changed");
    assert_eq!(
        kit.app
            .get("/api/v1/push-certificate", &kit.admin)
            .await
            .body["enrolled_iphones"],
        1
    );

    // 30 days before it runs out, and again 7 days before, the service desk hears of it once
    // (among other mail: the unmanaged iPhone's compliance alerts, say).
    let reminders = |n: usize| {
        let smtp = &smtp;
        async move {
            let wait = async {
                loop {
                    let found: Vec<_> = smtp
                        .received()
                        .into_iter()
                        .filter(|m| m.subject.contains("MDM-pushcertifikatet"))
                        .collect();
                    if found.len() >= n {
                        return found;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(20), wait)
                .await
                .unwrap_or_else(|_| panic!("{n} push certificate reminders"))
        }
    };
    kit.app.clock.advance(Duration::days(11));
    let mails = reminders(1).await;
    assert!(mails[0].body.contains(TOPIC), "{mails:?}");
    assert_eq!(mails[0].to, vec!["servicedesk@kommun.example".to_string()]);
    kit.app.clock.advance(Duration::hours(7));
    kit.app.clock.advance(Duration::days(23));
    assert_eq!(reminders(2).await.len(), 2);
    kit.app.clock.advance(Duration::hours(7));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(reminders(2).await.len(), 2, "each reminder once");
    assert_eq!(
        kit.app
            .count("deliveries WHERE idempotency_key LIKE 'reminder-push-certificate-%'")
            .await,
        2
    );
}

async fn debians_scepclient_gets_a_certificate_and_a_wrong_challenge_is_refused_with_failure(
    backend: Backend,
) {
    let kit = ready(backend).await;
    let (device, _) = registered(&kit, "F2LXK0ABHG7F", 1).await;
    let address = token_for_device(&kit, device).await;
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("root.pem");
    std::fs::write(
        &root,
        pem("CERTIFICATE", kit.app.server.state.ca.root_der()),
    )
    .expect("root");
    let scep_url = format!("{}/scep", kit.app.device_url());
    // Like an NDES client, it is told which of GetCACert's certificates is the RA to encrypt
    // for (the device CA's own keys are P-256, which PKCS #7 key transport cannot use).
    let ra = kit.app.server.state.ca.scep_ra().expect("ra");
    let ra_print = enrollment::fingerprint(&der::Encode::to_der(&ra.certificate).expect("der"));
    let run = |challenge: String, name: &'static str| {
        let (root, dir, scep_url, ra_print) = (
            root.clone(),
            dir.path().to_path_buf(),
            scep_url.clone(),
            ra_print.clone(),
        );
        async move {
            tokio::task::spawn_blocking(move || {
                // It keeps its self-signed signer and CSR beside the key, and signs with a
                // signer it finds there: each run gets its own directory.
                let work = dir.join(name);
                std::fs::create_dir_all(&work).expect("work dir");
                std::process::Command::new("scepclient")
                    .env("SSL_CERT_FILE", &root)
                    .args([
                        "-server-url",
                        &scep_url,
                        "-challenge",
                        &challenge,
                        "-cn",
                        name,
                    ])
                    .args(["-ca-fingerprint", &ra_print])
                    .arg("-private-key")
                    .arg(work.join("key.pem"))
                    .arg("-certificate")
                    .arg(work.join("cert.pem"))
                    .output()
                    .expect("scepclient runs (apt-get install scep)")
            })
            .await
            .expect("join")
        }
    };
    let wrong = run("not-the-challenge".into(), "wrong").await;
    assert!(!wrong.status.success(), "a wrong challenge must fail");
    assert!(!dir.path().join("wrong/cert.pem").exists());
    let text = String::from_utf8_lossy(&wrong.stderr).to_lowercase()
        + &String::from_utf8_lossy(&wrong.stdout).to_lowercase();
    assert!(text.contains("failinfo: badrequest"), "{text}");

    let ok = run(secret_of(&address), "phone").await;
    assert!(
        ok.status.success(),
        "scepclient: {}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let issued = std::fs::read_to_string(dir.path().join("phone/cert.pem")).expect("certificate");
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            issued
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .expect("pem");
    assert!(kit.app.server.state.ca.issued_here(&der));
    assert_eq!(kit.app.count("apple_pending_enrollments").await, 1);
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<String> = body
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

async fn the_enrollment_profile_verifies_with_openssl_and_parses_with_python_plistlib(
    backend: Backend,
) {
    let kit = ready(backend).await;
    let (device, _) = registered(&kit, "F2LXK0ABHG7F", 1).await;
    let address = token_for_device(&kit, device).await;
    let response = reqwest::get(&address).await.expect("download");
    assert_eq!(response.status(), StatusCode::OK);
    let signed = response.bytes().await.expect("bytes");
    let dir = tempfile::tempdir().expect("dir");
    let (profile_file, plain, root) = (
        dir.path().join("enroll.mobileconfig"),
        dir.path().join("enroll.plist"),
        dir.path().join("root.pem"),
    );
    std::fs::write(&profile_file, &signed).expect("write");
    std::fs::write(
        &root,
        pem("CERTIFICATE", kit.app.server.state.ca.root_der()),
    )
    .expect("root");
    let verify = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-purpose", "any", "-in"])
        .arg(&profile_file)
        .arg("-CAfile")
        .arg(&root)
        .arg("-out")
        .arg(&plain)
        .output()
        .expect("openssl");
    assert!(
        verify.status.success(),
        "openssl cms -verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let script = "import plistlib,sys\n\
        p = plistlib.load(open(sys.argv[1], 'rb'))\n\
        kinds = {x['PayloadType']: x for x in p['PayloadContent']}\n\
        mdm = kinds['com.apple.mdm']\n\
        scep = kinds['com.apple.security.scep']['PayloadContent']\n\
        assert p['PayloadType'] == 'Configuration'\n\
        assert mdm['IdentityCertificateUUID'] == kinds['com.apple.security.scep']['PayloadUUID']\n\
        assert mdm['SignMessage'] is True and mdm['CheckOutWhenRemoved'] is True\n\
        assert isinstance(kinds['com.apple.security.root']['PayloadContent'], bytes)\n\
        assert scep['Keysize'] == 2048\n\
        print(mdm['Topic'], scep['Challenge'])\n";
    let parsed = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&plain)
        .output()
        .expect("python3");
    assert!(
        parsed.status.success(),
        "plistlib: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let out = String::from_utf8_lossy(&parsed.stdout);
    assert_eq!(out.trim(), format!("{TOPIC} {}", secret_of(&address)));
    // The same bytes the simulated phone reads.
    let profile = read_signed_profile(&signed);
    assert_eq!(
        plist::Value::Dictionary(profile),
        plist::Value::from_file(&plain).expect("plain")
    );
}

async fn an_iphone_gets_each_queued_command_on_connect_its_answers_move_the_queue_and_an_erase_holds_the_wipe_gate_until_it_enrolls_again(
    backend: Backend,
) {
    let kit = ready(backend).await;
    let (device, mut phone) = registered(&kit, "F2LXK0ABHG7F", 1).await;
    phone.enroll(&token_for_device(&kit, device).await).await;
    assert!(phone.next_command().await.1.is_none(), "nothing queued yet");

    // A lock: handed out on the next connect as DeviceLock with its words, then acknowledged.
    let lock = kit.queue_command(device,
        json!({ "kind": "lock", "message": "Ring IT-supporten", "phone_number": "+46 8 123 456 78" }),
    )
    .await;
    let (status, given) = phone.next_command().await;
    assert_eq!(status, StatusCode::OK);
    let given = given.expect("the lock");
    assert_eq!(given.request_type, "DeviceLock");
    assert_eq!(given.uuid, lock.to_string());
    assert_eq!(
        given.command["Message"].as_string(),
        Some("Ring IT-supporten")
    );
    assert_eq!(
        given.command["PhoneNumber"].as_string(),
        Some("+46812345678")
    );
    assert_eq!(kit.command(lock).await["state"], "sent");
    let (status, next) = phone.answer(&given.uuid, "Acknowledged", None).await;
    assert_eq!((status, next.is_none()), (StatusCode::OK, true));
    assert_eq!(kit.command(lock).await["state"], "acknowledged");
    // The same answer again changes nothing.
    assert_eq!(
        phone.answer(&given.uuid, "Acknowledged", None).await.0,
        StatusCode::OK
    );

    // Not now: the restart waits and comes again after the pause; an error keeps its words.
    let restart = kit
        .queue_command(device, json!({ "kind": "restart" }))
        .await;
    let given = phone.next_command().await.1.expect("the restart");
    assert_eq!(given.request_type, "RestartDevice");
    let (status, next) = phone.answer(&given.uuid, "NotNow", None).await;
    assert_eq!((status, next.is_none()), (StatusCode::OK, true));
    assert_eq!(kit.command(restart).await["state"], "not_now");
    assert!(phone.next_command().await.1.is_none(), "not again at once");
    kit.app.clock.advance(Duration::minutes(6));
    let again = phone.next_command().await.1.expect("the restart again");
    assert_eq!(again.uuid, restart.to_string());
    let (status, _) = phone
        .answer(
            &again.uuid,
            "Error",
            Some("The device is in Single App Mode"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let failed = kit.command(restart).await;
    assert_eq!(failed["state"], "error");
    assert!(
        failed["result"]
            .as_str()
            .is_some_and(|r| r.contains("Single App Mode")),
        "{failed}"
    );

    // Answers for a command never sent, or without a usable CommandUUID, are refused.
    let (status, _) = phone.answer("999999", "Acknowledged", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = phone.answer("not-ours", "Acknowledged", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Returned from its lease, the phone is queued for wipe: EraseDevice keeps the data plan;
    // its acknowledgement ends the identity, and the wipe gate waits for the phone to enroll
    // again with a fresh one.
    let wipe = kit.lease_and_return(device).await;
    let given = phone.next_command().await.1.expect("the erase");
    assert_eq!(given.request_type, "EraseDevice");
    assert_eq!(given.command["PreserveDataPlan"].as_boolean(), Some(true));
    assert_eq!(
        phone.answer(&given.uuid, "Acknowledged", None).await.0,
        StatusCode::OK
    );
    assert_eq!(kit.command(wipe).await["state"], "acknowledged");
    assert_eq!(phone.idle().await.0, StatusCode::UNAUTHORIZED);
    assert!(kit.identity(device).await["certificate"].is_null());
    let history = kit
        .app
        .get(&format!("/api/v1/devices/{device}/history"), &kit.admin)
        .await;
    assert_eq!(
        history.body["wipe_gate"]["missing"], "not_reenrolled",
        "{}",
        history.text
    );
    kit.app.clock.advance(Duration::minutes(1));
    let mut erased = SimulatedIphone::new("F2LXK0ABHG7F", Some(&imei(1)));
    erased.enroll(&token_for_device(&kit, device).await).await;
    let history = kit
        .app
        .get(&format!("/api/v1/devices/{device}/history"), &kit.admin)
        .await;
    assert_eq!(history.body["wipe_gate"]["ready"], true, "{}", history.text);
}

async fn a_lost_iphone_gets_lost_mode_when_supervised_and_a_lock_with_the_same_words_when_not(
    backend: Backend,
) {
    let kit = ready(backend).await;
    // Supervised (its inventory answer said so): lost mode, with the operator as footnote.
    let (supervised_id, mut supervised) = registered(&kit, "F2LXK0ABHG7F", 1).await;
    supervised.supervised = true;
    supervised
        .enroll(&token_for_device(&kit, supervised_id).await)
        .await;
    assert_eq!(
        kit.identity(supervised_id).await["apple_mdm"]["supervised"],
        true
    );
    let case = report_lost(&kit, supervised_id).await;
    let given = supervised.next_command().await.1.expect("lost mode");
    assert_eq!(given.request_type, "EnableLostMode");
    assert!(given.command["Message"]
        .as_string()
        .is_some_and(|m| !m.is_empty()));
    assert!(!timeline_kinds(&kit, case)
        .await
        .contains(&"locked_instead_of_lost_mode".to_string()));

    // Not supervised: a lock with the same message, and the timeline says why.
    let (plain_id, mut plain) = registered(&kit, "G0NZK1CDHG7F", 2).await;
    plain.enroll(&token_for_device(&kit, plain_id).await).await;
    assert_eq!(
        kit.identity(plain_id).await["apple_mdm"]["supervised"],
        false
    );
    let case = report_lost(&kit, plain_id).await;
    let given = plain.next_command().await.1.expect("a lock");
    assert_eq!(given.request_type, "DeviceLock");
    assert_eq!(
        given.command["Message"].as_string(),
        queued_lost_mode_message(&kit, plain_id).await.as_deref()
    );
    assert!(timeline_kinds(&kit, case)
        .await
        .contains(&"locked_instead_of_lost_mode".to_string()));
    assert_eq!(
        plain.answer(&given.uuid, "Acknowledged", None).await.0,
        StatusCode::OK
    );
}

/// The lost-mode message the queue holds for the phone (the words the lock must carry).
async fn queued_lost_mode_message(kit: &Fleet, device: i64) -> Option<String> {
    kit.device_commands(device)
        .await
        .iter()
        .find(|c| c["kind"] == "lost_mode_on")
        .and_then(|c| c["payload"]["message"].as_str())
        .map(str::to_string)
}

/// Reports the phone lost through the API; the lost case's id.
async fn report_lost(kit: &Fleet, device: i64) -> i64 {
    let r = kit
        .app
        .post(
            &format!("/api/v1/devices/{device}/lost-cases"),
            &kit.admin,
            json!({ "kind": "lost", "discovered_at": kit.app.clock.now().to_rfc3339(), "circumstances": "Tappad på bussen" }),
        )
        .await;
    r.expect(StatusCode::CREATED);
    r.body["id"].as_i64().expect("case")
}

/// The kinds of a lost case's timeline entries, oldest first.
async fn timeline_kinds(kit: &Fleet, case: i64) -> Vec<String> {
    let r = kit
        .app
        .get(&format!("/api/v1/lost-cases/{case}"), &kit.admin)
        .await;
    r.expect(StatusCode::OK);
    r.body["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_string())
        .collect()
}
