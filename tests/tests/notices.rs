//! Planned maintenance, disruptions and their notices end to end: a real server, a real SMTP
//! server on loopback, and an HTTP stand-in speaking the SMS gateway's wire format. The
//! server's clock is a test clock, moved forward to make reminders and occurrences due. Every
//! test runs on SQLite and PostgreSQL.

use agent::client::{checkin_once, enroll};
use agent::state::StateDir;
use agent::swarm::simulated_facts;
use chrono::{DateTime, Duration, Utc};
use mdm_server::clock::Clock;
use mdm_tests::sinks::{wait_until, GatewayStandIn, SmtpSink};
use mdm_tests::{backend_tests, imei, server_binary, Backend, TestApp, ORG_A, ORG_B};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration as Wait;

backend_tests!(
    a_planned_window_is_mailed_to_the_it_contacts_of_the_providers_concerned_in_local_time,
    notice_too_late_at_six_days_23_hours_and_accepted_at_seven_days,
    a_window_outside_the_preferred_hours_needs_an_acknowledgement_which_is_audited,
    a_window_across_the_october_dst_change_keeps_its_local_wall_clock_times,
    a_recurring_window_announces_each_occurrence_at_its_own_lead_time,
    a_reminder_due_while_the_server_is_down_goes_out_once_after_restart_marked_late,
    two_server_processes_on_one_database_deliver_every_notice_exactly_once,
    the_sms_gateway_failing_three_times_then_accepting_delivers_once_with_retries_recorded,
    an_unreachable_relay_dead_letters_the_mail_until_the_operator_retries_it,
    a_disruption_goes_by_sms_and_email_with_follow_ups_until_it_is_closed,
    rescheduling_and_cancelling_send_their_own_notices_and_move_the_reminder,
    provider_admins_acknowledge_and_the_operator_sees_who_has_not,
    phones_see_active_and_upcoming_notices_at_check_in,
    the_calendar_feed_lists_a_providers_windows_behind_a_secret_that_can_be_rotated,
    bad_windows_and_policies_are_refused_and_nothing_is_stored,
    webhooks_are_signed_with_hmac_sha256,
    sent_messages_are_deleted_after_the_retention_period,
);

const WAIT: Wait = Wait::from_secs(20);

/// A server whose notices go to a local SMTP server and SMS gateway stand-in, its admin, and
/// two providers: A with two IT contacts, B with one.
struct Kit {
    app: TestApp,
    admin: String,
    smtp: SmtpSink,
    gateway: GatewayStandIn,
    provider_a: i64,
    provider_b: i64,
}

async fn kit(backend: Backend, at: &str, extra: &str) -> Kit {
    kit_on(backend, Clock::fixed(at.parse().expect("time")), extra).await
}

async fn kit_on(backend: Backend, clock: Clock, extra: &str) -> Kit {
    let smtp = SmtpSink::start();
    let gateway = GatewayStandIn::start().await;
    let config = format!(
        "[notifications]\nsmtp_url = \"{}\"\nmail_from = \"IT vård och omsorg <it@kommun.example>\"\n\
         {}poll_interval_ms = 50\n{extra}",
        smtp.url(),
        gateway.config()
    );
    let app = TestApp::spawn_configured(backend, &config, clock).await;
    let admin = app.admin_api_token().await;
    let provider_a = provider(&app, &admin, "Hemtjänst Norr AB", ORG_A, &["anna", "bo"]).await;
    let provider_b = provider(&app, &admin, "Omsorg Syd AB", ORG_B, &["cecilia"]).await;
    Kit {
        app,
        admin,
        smtp,
        gateway,
        provider_a,
        provider_b,
    }
}

async fn provider(app: &TestApp, admin: &str, name: &str, org: &str, contacts: &[&str]) -> i64 {
    let contacts: Vec<Value> = contacts
        .iter()
        .map(|c| json!({ "name": c, "email": email(c, org), "mobile": mobile(c) }))
        .collect();
    let r = app
        .post(
            "/api/v1/providers",
            admin,
            json!({ "name": name, "org_number": org, "contract_start": "2024-01-01", "it_contacts": contacts }),
        )
        .await;
    r.expect(StatusCode::CREATED);
    r.body["id"].as_i64().expect("id")
}

/// A mobile number of its own for each contact name.
fn mobile(contact: &str) -> String {
    format!("+46701{:06}", contact.bytes().map(u32::from).sum::<u32>())
}

fn email(contact: &str, org: &str) -> String {
    format!("{contact}@{}.example", org.replace('-', ""))
}

async fn schedule(kit: &Kit, body: Value) -> Value {
    let r = kit
        .app
        .post("/api/v1/maintenance-windows", &kit.admin, body)
        .await;
    r.expect(StatusCode::CREATED);
    r.body
}

fn window(title: &str, start: &str, end: &str, providers: Option<&[i64]>) -> Value {
    json!({
        "title": title,
        "description": "Telefonerna kan inte checka in under tiden.",
        "systems": ["MDM"],
        "provider_ids": providers,
        "starts_at": start,
        "ends_at": end,
    })
}

/// On Tuesday 1 December 2026, maintenance on Tuesday 15 December 10:00-12:00 for provider B,
/// whose one contact has had the notice.
async fn announced_to_b(backend: Backend) -> (Kit, i64) {
    let kit = kit(backend, "2026-12-01T09:00:00Z", "").await;
    let created = schedule(
        &kit,
        window(
            "MDM",
            "2026-12-15T10:00",
            "2026-12-15T12:00",
            Some(&[kit.provider_b]),
        ),
    )
    .await;
    kit.smtp.wait_for(1, WAIT).await;
    (kit, created["id"].as_i64().expect("id"))
}

/// Waits until `n` e-mails whose subject starts with `prefix` have arrived.
async fn wait_for_subjects(kit: &Kit, prefix: &str, n: usize) {
    wait_until(
        WAIT,
        || subjects(&kit.smtp.received(), prefix) == n,
        || {
            let all: Vec<String> = kit.smtp.received().into_iter().map(|m| m.subject).collect();
            format!("{n} × '{prefix}' expected; arrived: {all:?}")
        },
    )
    .await;
}

/// Waits until no message is being sent: a mail can reach the SMTP server a moment before its
/// sender records it as sent, and moving the test clock by weeks in that moment would make the
/// lease look run out.
async fn outbox_at_rest(kit: &Kit) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while kit
        .app
        .count("deliveries WHERE lease_owner IS NOT NULL")
        .await
        > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages stay in flight"
        );
        tokio::time::sleep(Wait::from_millis(20)).await;
    }
}

/// Gives the workers time to send anything else they might (wrongly) send.
async fn settle() {
    tokio::time::sleep(Wait::from_millis(400)).await;
}

fn subjects(mails: &[mdm_tests::sinks::ReceivedMail], prefix: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.subject.starts_with(prefix))
        .count()
}

async fn a_planned_window_is_mailed_to_the_it_contacts_of_the_providers_concerned_in_local_time(
    backend: Backend,
) {
    // Tuesday 1 December 2026, 10:00 in Stockholm.
    let kit = kit(backend, "2026-12-01T09:00:00Z", "").await;
    let created = schedule(
        &kit,
        window(
            "Uppgradering av MDM",
            "2026-12-15T10:00",
            "2026-12-15T12:00",
            Some(&[kit.provider_a]),
        ),
    )
    .await;
    assert_eq!(created["starts_at"], "2026-12-15T10:00:00+01:00");
    assert_eq!(created["status"], "scheduled");
    let mails = kit.smtp.wait_for(2, WAIT).await;
    settle().await;
    let mails = {
        let again = kit.smtp.received();
        assert_eq!(again.len(), mails.len(), "only provider A's two contacts");
        again
    };
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, [email("anna", ORG_A), email("bo", ORG_A)]);
    for mail in &mails {
        assert_eq!(mail.subject, "Planerat underhåll: Uppgradering av MDM");
        assert!(
            mail.body
                .contains("Tid: tisdag 15 december 2026 kl. 10:00–12:00"),
            "{}",
            mail.body
        );
        assert!(mail.from.contains("it@kommun.example"), "{}", mail.from);
        assert!(
            mail.message_id.starts_with("notice-"),
            "{}",
            mail.message_id
        );
    }
    assert!(
        kit.gateway.requests().is_empty(),
        "planned maintenance goes by e-mail unless the policy adds SMS"
    );
    let id = created["id"].as_i64().expect("id");
    let view = kit
        .app
        .get(&format!("/api/v1/maintenance-windows/{id}"), &kit.admin)
        .await;
    view.expect(StatusCode::OK);
    let notices: Vec<(String, String, String)> = view.body["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().expect("kind").to_string(),
                n["state"].as_str().expect("state").to_string(),
                n["due_at"].as_str().expect("due").to_string(),
            )
        })
        .collect();
    assert!(notices[0].2.starts_with("2026-12-01T10:00"), "{notices:?}");
    assert_eq!(
        notices,
        [
            ("announced".into(), "expanded".into(), notices[0].2.clone()),
            (
                "reminder".into(),
                "scheduled".into(),
                "2026-12-14T10:00:00+01:00".into()
            ),
            (
                "started".into(),
                "scheduled".into(),
                "2026-12-15T10:00:00+01:00".into()
            ),
            (
                "ended".into(),
                "scheduled".into(),
                "2026-12-15T12:00:00+01:00".into()
            ),
        ]
    );
    // Provider B's admin does not see a window that does not concern B.
    let b_admin = kit
        .app
        .create_user(
            &kit.admin,
            kit.provider_b,
            "it@syd.example",
            "provider_admin",
        )
        .await;
    let b = kit.app.first_login(&b_admin).await;
    kit.app
        .get(&format!("/api/v1/maintenance-windows/{id}"), &b)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
}

async fn notice_too_late_at_six_days_23_hours_and_accepted_at_seven_days(backend: Backend) {
    let kit = kit(backend, "2026-12-01T09:00:00Z", "").await;
    let before = kit.app.count("maintenance_windows").await;
    // From about 10:00 on Tuesday 1 December (logging in moved the clock by seconds): 6 days
    // 23 hours ahead is 09:00 on Tuesday 8 December, before the preferred hours anyway, so the
    // lead time is what refuses it.
    let now = kit.app.clock.now();
    let at = |d: Duration| (now + d).to_rfc3339();
    let r = kit
        .app
        .post(
            "/api/v1/maintenance-windows",
            &kit.admin,
            window(
                "MDM",
                &at(Duration::days(7) - Duration::hours(1)),
                &at(Duration::days(7) + Duration::hours(1)),
                None,
            ),
        )
        .await;
    r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "notice-too-late");
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("7 days") && d.contains("2026-12-08 10:00")),
        "{}",
        r.text
    );
    assert_eq!(kit.app.count("maintenance_windows").await, before);
    // Exactly 7 days ahead: 10:00 and a few seconds on Tuesday 8 December.
    schedule(
        &kit,
        window(
            "MDM",
            &at(Duration::days(7)),
            &at(Duration::days(7) + Duration::hours(2)),
            None,
        ),
    )
    .await;
    // Another city's contract: 10 days.
    let mut policy = kit.app.get("/api/v1/notice-policy", &kit.admin).await.body["policy"].clone();
    policy["min_lead_days"] = json!(10);
    kit.app
        .request(
            reqwest::Method::PUT,
            "/api/v1/notice-policy",
            Some(&kit.admin),
            Some(policy),
        )
        .await
        .expect(StatusCode::OK);
    kit.app
        .post(
            "/api/v1/maintenance-windows",
            &kit.admin,
            window("MDM", "2026-12-09T09:00:00Z", "2026-12-09T11:00:00Z", None),
        )
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "notice-too-late");
}

async fn a_window_outside_the_preferred_hours_needs_an_acknowledgement_which_is_audited(
    backend: Backend,
) {
    let kit = kit(backend, "2026-12-01T09:00:00Z", "").await;
    // Monday is outside Tuesday to Thursday 10-13.
    let monday = window("Databasbyte", "2026-12-14T10:00", "2026-12-14T12:00", None);
    kit.app
        .post("/api/v1/maintenance-windows", &kit.admin, monday.clone())
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "outside-preferred-window");
    let mut acknowledged = monday;
    acknowledged["acknowledge_outside_preferred"] = json!(true);
    let created = schedule(&kit, acknowledged).await;
    assert_eq!(created["outside_preferred"], true);
    let audit = kit.app.get("/api/v1/audit?limit=20", &kit.admin).await;
    let entry = audit.body["items"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["action"] == "maintenance.schedule")
        .cloned()
        .expect("the scheduling is audited");
    assert_eq!(entry["details"]["outside_preferred_acknowledged"], true);
    assert_eq!(
        entry["target_id"],
        created["id"].as_i64().expect("id").to_string()
    );
}

async fn a_window_across_the_october_dst_change_keeps_its_local_wall_clock_times(backend: Backend) {
    // Summer time ends at 03:00 on Sunday 31 October 2027.
    let kit = kit(backend, "2027-10-01T08:00:00Z", "").await;
    let mut night = window(
        "Byte av lagring",
        "2027-10-30T22:00",
        "2027-10-31T06:00",
        Some(&[kit.provider_b]),
    );
    night["acknowledge_outside_preferred"] = json!(true);
    let created = schedule(&kit, night).await;
    assert_eq!(created["starts_at"], "2027-10-30T22:00:00+02:00");
    assert_eq!(created["ends_at"], "2027-10-31T06:00:00+01:00");
    let start: DateTime<Utc> = created["starts_at"]
        .as_str()
        .expect("start")
        .parse()
        .expect("t");
    let end: DateTime<Utc> = created["ends_at"]
        .as_str()
        .expect("end")
        .parse()
        .expect("t");
    assert_eq!(
        end - start,
        Duration::hours(9),
        "the night has an extra hour"
    );
    let mail = kit.smtp.wait_for(1, WAIT).await.remove(0);
    assert_eq!(mail.to, [email("cecilia", ORG_B)]);
    assert!(
        mail.body
            .contains("Tid: lördag 30 oktober 2027 kl. 22:00 – söndag 31 oktober 2027 kl. 06:00"),
        "{}",
        mail.body
    );
}

async fn a_recurring_window_announces_each_occurrence_at_its_own_lead_time(backend: Backend) {
    // Friday 1 January 2027, 10:00 local.
    let kit = kit(backend, "2027-01-01T09:00:00Z", "").await;
    let r = kit
        .app
        .post(
            "/api/v1/maintenance-series",
            &kit.admin,
            json!({
                "title": "Månadsunderhåll",
                "systems": ["MDM"],
                "cron": "0 10 1-7 * 2",
                "duration_minutes": 120,
            }),
        )
        .await;
    r.expect(StatusCode::CREATED);
    // The first Tuesday at least 7 days ahead.
    assert_eq!(r.body["next_start_at"], "2027-02-02T10:00:00+01:00");
    settle().await;
    assert!(
        kit.smtp.received().is_empty(),
        "announced 7 days before, not now"
    );
    let clock = &kit.app.clock;
    // One minute before 26 January 10:00 local: still nothing.
    clock.advance("2027-01-26T08:59:00Z".parse::<DateTime<Utc>>().expect("t") - clock.now());
    settle().await;
    assert!(kit.smtp.received().is_empty());
    clock.advance(Duration::minutes(1));
    let mails = kit.smtp.wait_for(3, WAIT).await;
    assert_eq!(subjects(&mails, "Planerat underhåll: Månadsunderhåll"), 3);
    assert!(
        mails[0]
            .body
            .contains("tisdag 2 februari 2027 kl. 10:00–12:00"),
        "{}",
        mails[0].body
    );
    // The March occurrence is announced on 23 February, 7 days before 2 March.
    outbox_at_rest(&kit).await;
    clock.advance("2027-02-23T08:59:00Z".parse::<DateTime<Utc>>().expect("t") - clock.now());
    wait_for_subjects(&kit, "Påminnelse", 3).await;
    wait_for_subjects(&kit, "Tjänsten är i drift igen", 3).await;
    settle().await;
    assert_eq!(subjects(&kit.smtp.received(), "Planerat underhåll"), 3);
    outbox_at_rest(&kit).await;
    clock.advance(Duration::minutes(1));
    wait_for_subjects(&kit, "Planerat underhåll", 6).await;
    let march: Vec<_> = kit
        .smtp
        .received()
        .into_iter()
        .filter(|m| m.subject.starts_with("Planerat underhåll"))
        .skip(3)
        .collect();
    assert!(march
        .iter()
        .all(|m| m.body.contains("tisdag 2 mars 2027 kl. 10:00–12:00")));
    let windows = kit
        .app
        .get("/api/v1/maintenance-windows?include_past=true", &kit.admin)
        .await;
    let occurrences: Vec<&Value> = windows
        .body
        .as_array()
        .expect("windows")
        .iter()
        .filter(|w| w["series_id"] == r.body["id"])
        .collect();
    assert_eq!(occurrences.len(), 2);
}

async fn a_reminder_due_while_the_server_is_down_goes_out_once_after_restart_marked_late(
    backend: Backend,
) {
    let (kit, id) = announced_to_b(backend).await;
    let Kit {
        app, admin, smtp, ..
    } = kit;
    // Down from before the reminder was due (14 December 10:00 local) until an hour after.
    let clock = app.clock.clone();
    let (app, ()) = app
        .restart_after(async move {
            clock
                .advance("2026-12-14T10:00:00Z".parse::<DateTime<Utc>>().expect("t") - clock.now());
        })
        .await;
    let mails = smtp.wait_for(2, WAIT).await;
    assert!(
        mails[1]
            .subject
            .starts_with("Påminnelse om planerat underhåll"),
        "{}",
        mails[1].subject
    );
    let view = app
        .get(&format!("/api/v1/maintenance-windows/{id}"), &admin)
        .await;
    let reminder = view.body["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .find(|n| n["kind"] == "reminder")
        .cloned()
        .expect("reminder");
    assert_eq!(reminder["state"], "expanded");
    assert_eq!(reminder["late"], true);
    let deliveries = app
        .get(&format!("/api/v1/deliveries?window_id={id}"), &admin)
        .await;
    let late: Vec<bool> = deliveries
        .body
        .as_array()
        .expect("deliveries")
        .iter()
        .filter(|d| d["notice"] == "reminder")
        .map(|d| d["late"].as_bool().expect("late"))
        .collect();
    assert_eq!(late, [true]);
    // Another restart sends nothing again.
    let (_app, ()) = app.restart_after(async {}).await;
    settle().await;
    assert_eq!(smtp.received().len(), 2);
}

async fn two_server_processes_on_one_database_deliver_every_notice_exactly_once(backend: Backend) {
    // Both nodes on the real clock, each sending one message at a time, so that both have
    // work to race for.
    let kit = kit_on(backend, Clock::System, "concurrency = 1\n").await;
    provider(
        &kit.app,
        &kit.admin,
        "Vård Väst AB",
        "556677-8899",
        &["dan", "eva"],
    )
    .await;
    // The second node: the `mdm-server` binary on the same configuration and database (its
    // listeners take free ports of their own).
    let mut second = tokio::process::Command::new(server_binary())
        .args([
            "--config",
            kit.app.config_file.to_str().expect("utf-8"),
            "serve",
        ])
        .env("MDM_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start the second node");
    tokio::time::sleep(Wait::from_millis(700)).await;
    const DISRUPTIONS: usize = 20;
    for n in 0..DISRUPTIONS {
        let r = kit
            .app
            .post(
                "/api/v1/disruptions",
                &kit.admin,
                json!({ "title": format!("Störning {n}"), "systems": ["Nyckelappen"] }),
            )
            .await;
        r.expect(StatusCode::CREATED);
    }
    // Three providers, five contacts in all: five e-mails and five SMS per disruption.
    let expected = DISRUPTIONS * 5;
    kit.smtp.wait_for(expected, WAIT).await;
    let sms = kit.gateway.wait_for_accepted(expected, WAIT).await;
    settle().await;
    let mails = kit.smtp.received();
    let sms_now = kit.gateway.requests();
    assert!(
        second.try_wait().expect("status").is_none(),
        "the second node stopped early"
    );
    let _ = second.kill().await;
    assert_eq!(mails.len(), expected, "no e-mail twice");
    assert_eq!(sms_now.len(), sms.len(), "no SMS twice");
    let mut ids: Vec<&str> = mails.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), expected);
    let mut keys: Vec<String> = sms_now
        .iter()
        .map(|s| s.idempotency_key.clone().expect("key"))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), expected);
    assert_eq!(kit.app.count("deliveries").await, (expected * 2) as i64);
    assert_eq!(
        kit.app.count("delivery_attempts").await,
        (expected * 2) as i64
    );
    let nodes = kit
        .app
        .count("(SELECT DISTINCT node FROM delivery_attempts) AS n")
        .await;
    assert_eq!(nodes, 2, "both nodes sent messages");
}

async fn the_sms_gateway_failing_three_times_then_accepting_delivers_once_with_retries_recorded(
    backend: Backend,
) {
    let kit = kit(backend, "2026-12-01T09:00:00Z", "retry_base_seconds = 30\n").await;
    kit.gateway.fail_next(&[500, 500, 500]);
    let r = kit
        .app
        .post(
            "/api/v1/disruptions",
            &kit.admin,
            json!({ "title": "Nyckelappen når inte servern", "systems": ["Nyckelappen"], "provider_ids": [kit.provider_b] }),
        )
        .await;
    r.expect(StatusCode::CREATED);
    let id = r.body["id"].as_i64().expect("id");
    // Each retry waits longer (30 s, 60 s, 120 s): move the clock on until the SMS is taken.
    let deadline = tokio::time::Instant::now() + WAIT;
    while kit.gateway.accepted().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            kit.gateway.requests()
        );
        kit.app.clock.advance(Duration::seconds(20));
        tokio::time::sleep(Wait::from_millis(60)).await;
    }
    settle().await;
    let requests = kit.gateway.requests();
    assert_eq!(
        requests.iter().map(|s| s.answered).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    assert_eq!(requests[3].to, mobile("cecilia"));
    assert_eq!(requests[3].from, "Kommunen");
    assert!(requests[3]
        .message
        .contains("Driftstörning: Nyckelappen når inte servern"));
    let deliveries = kit
        .app
        .get(&format!("/api/v1/deliveries?window_id={id}"), &kit.admin)
        .await;
    let sms = deliveries
        .body
        .as_array()
        .expect("deliveries")
        .iter()
        .find(|d| d["channel"] == "sms")
        .cloned()
        .expect("sms delivery");
    assert_eq!(sms["state"], "sent");
    assert_eq!(sms["attempts"], 4);
    let detail = kit
        .app
        .get(
            &format!("/api/v1/deliveries/{}", sms["id"].as_i64().expect("id")),
            &kit.admin,
        )
        .await;
    let history = detail.body["history"].as_array().expect("history");
    let outcomes: Vec<bool> = history
        .iter()
        .map(|a| a["sent"].as_bool().expect("sent"))
        .collect();
    assert_eq!(outcomes, [false, false, false, true]);
    assert!(history[0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("500")));
    let times: Vec<DateTime<Utc>> = history
        .iter()
        .map(|a| a["attempted_at"].as_str().expect("t").parse().expect("t"))
        .collect();
    // Each retry waited at least its backoff (30 s, then 60 s, then 120 s); the clock moves in
    // steps, so a busy machine may see a retry somewhat later, never earlier.
    let gaps: Vec<i64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds())
        .collect();
    assert!(
        gaps.iter()
            .zip([30, 60, 120])
            .all(|(gap, wait)| *gap >= wait),
        "the waits grow: {gaps:?}"
    );
    assert_eq!(subjects(&kit.smtp.received(), "Driftstörning"), 1);
}

async fn an_unreachable_relay_dead_letters_the_mail_until_the_operator_retries_it(
    backend: Backend,
) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let smtp = SmtpSink::start();
    let config = format!(
        "[notifications]\nsmtp_url = \"smtp://127.0.0.1:{port}\"\nmail_from = \"it@kommun.example\"\n\
         poll_interval_ms = 50\nmax_attempts = 2\nretry_base_seconds = 1\nsend_timeout_seconds = 2\n"
    );
    let app = TestApp::spawn_configured(
        backend,
        &config,
        Clock::fixed("2026-12-01T09:00:00Z".parse().expect("t")),
    )
    .await;
    let (_, admin) = app.bootstrap_admin().await;
    provider(&app, &admin, "Omsorg Syd AB", ORG_B, &["cecilia"]).await;
    let r = app
        .post(
            "/api/v1/maintenance-windows",
            &admin,
            window("MDM", "2026-12-15T10:00", "2026-12-15T12:00", None),
        )
        .await;
    r.expect(StatusCode::CREATED);
    let deadline = tokio::time::Instant::now() + WAIT;
    let dead = loop {
        let dead = app.get("/api/v1/deliveries?state=dead", &admin).await;
        if let Some(first) = dead.body.as_array().and_then(|a| a.first()).cloned() {
            break first;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
        app.clock.advance(Duration::seconds(5));
        tokio::time::sleep(Wait::from_millis(100)).await;
    };
    assert_eq!(dead["attempts"], 2);
    assert_eq!(dead["recipient"], email("cecilia", ORG_B));
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("SMTP")),
        "{dead}"
    );
    let id = dead["id"].as_i64().expect("id");
    let retried = app
        .post(&format!("/api/v1/deliveries/{id}/retry"), &admin, json!({}))
        .await;
    retried.expect(StatusCode::OK);
    assert_eq!(retried.body["state"], "pending");
    assert_eq!(retried.body["attempts"], 0);
    app.post(&format!("/api/v1/deliveries/{id}/retry"), &admin, json!({}))
        .await
        .expect_problem(StatusCode::CONFLICT, "conflict");
    assert!(smtp.received().is_empty());
}

async fn a_disruption_goes_by_sms_and_email_with_follow_ups_until_it_is_closed(backend: Backend) {
    let kit = kit(backend, "2026-12-01T09:00:00Z", "").await;
    let r = kit
        .app
        .post(
            "/api/v1/disruptions",
            &kit.admin,
            json!({ "title": "Journalappen ligger nere", "systems": ["Journal"] }),
        )
        .await;
    r.expect(StatusCode::CREATED);
    assert_eq!(r.body["status"], "in_progress");
    let id = r.body["id"].as_i64().expect("id");
    kit.smtp.wait_for(3, WAIT).await;
    kit.gateway.wait_for_accepted(3, WAIT).await;
    // The default policy follows up every two hours.
    outbox_at_rest(&kit).await;
    kit.app.clock.advance(Duration::minutes(120));
    wait_for_subjects(&kit, "Driftstörningen pågår", 3).await;
    kit.app
        .post(
            &format!("/api/v1/disruptions/{id}/updates"),
            &kit.admin,
            json!({ "message": "Leverantören felsöker; nästa besked 14:00." }),
        )
        .await
        .expect(StatusCode::OK);
    let closed = kit
        .app
        .post(
            &format!("/api/v1/disruptions/{id}/close"),
            &kit.admin,
            json!({ "message": "Felet är åtgärdat." }),
        )
        .await;
    closed.expect(StatusCode::OK);
    assert_eq!(closed.body["status"], "completed");
    wait_for_subjects(&kit, "Driftstörningen är åtgärdad", 3).await;
    let update = kit
        .smtp
        .received()
        .into_iter()
        .find(|m| m.subject.starts_with("Uppdatering om driftstörning"))
        .expect("update");
    assert!(update.body.contains("nästa besked 14:00"));
    outbox_at_rest(&kit).await;
    kit.app.clock.advance(Duration::hours(6));
    settle().await;
    let mails = kit.smtp.received();
    assert_eq!(
        mails.len(),
        12,
        "opened, one follow-up, update, resolved; three contacts each"
    );
    assert_eq!(kit.gateway.accepted().len(), 12);
    kit.app
        .post(
            &format!("/api/v1/disruptions/{id}/updates"),
            &kit.admin,
            json!({ "message": "igen" }),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "disruption-closed");
}

async fn rescheduling_and_cancelling_send_their_own_notices_and_move_the_reminder(
    backend: Backend,
) {
    let (kit, id) = announced_to_b(backend).await;
    // Earlier than the lead time allows is refused like a new window.
    kit.app
        .post(
            &format!("/api/v1/maintenance-windows/{id}/reschedule"),
            &kit.admin,
            json!({ "starts_at": "2026-12-03T10:00", "ends_at": "2026-12-03T12:00" }),
        )
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "notice-too-late");
    let moved = kit
        .app
        .post(
            &format!("/api/v1/maintenance-windows/{id}/reschedule"),
            &kit.admin,
            json!({ "starts_at": "2026-12-17T10:00", "ends_at": "2026-12-17T11:00" }),
        )
        .await;
    moved.expect(StatusCode::OK);
    assert_eq!(moved.body["status"], "rescheduled");
    assert_eq!(moved.body["revision"], 1);
    let mails = kit.smtp.wait_for(2, WAIT).await;
    assert!(mails[1]
        .subject
        .starts_with("Ändrad tid för planerat underhåll"));
    assert!(mails[1]
        .body
        .contains("torsdag 17 december 2026 kl. 10:00–11:00"));
    let reminders: Vec<(String, String)> = moved.body["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .filter(|n| n["kind"] == "reminder")
        .map(|n| {
            (
                n["state"].as_str().expect("s").into(),
                n["due_at"].as_str().expect("d").into(),
            )
        })
        .collect();
    assert_eq!(
        reminders,
        [
            ("void".to_string(), "2026-12-14T10:00:00+01:00".to_string()),
            (
                "scheduled".to_string(),
                "2026-12-16T10:00:00+01:00".to_string()
            ),
        ]
    );
    let cancelled = kit
        .app
        .post(
            &format!("/api/v1/maintenance-windows/{id}/cancel"),
            &kit.admin,
            json!({ "message": "Leverantören har skjutit upp uppgraderingen." }),
        )
        .await;
    cancelled.expect(StatusCode::OK);
    assert_eq!(cancelled.body["status"], "cancelled");
    let mails = kit.smtp.wait_for(3, WAIT).await;
    assert!(mails[2].subject.starts_with("Inställt underhåll"));
    assert!(mails[2].body.contains("skjutit upp"));
    kit.app
        .post(
            &format!("/api/v1/maintenance-windows/{id}/cancel"),
            &kit.admin,
            json!({}),
        )
        .await
        .expect(StatusCode::CONFLICT);
    // Nothing more: the reminder, start and end were dropped.
    outbox_at_rest(&kit).await;
    kit.app.clock.advance(Duration::days(20));
    settle().await;
    assert_eq!(kit.smtp.received().len(), 3);
}

async fn provider_admins_acknowledge_and_the_operator_sees_who_has_not(backend: Backend) {
    let kit = kit(backend, "2026-12-01T09:00:00Z", "").await;
    let created = schedule(
        &kit,
        window("MDM", "2026-12-15T10:00", "2026-12-15T12:00", None),
    )
    .await;
    let id = created["id"].as_i64().expect("id");
    let path = format!("/api/v1/maintenance-windows/{id}");
    let before = kit.app.get(&path, &kit.admin).await;
    let mut waiting: Vec<i64> = before.body["not_acknowledged"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect();
    waiting.sort_unstable();
    assert_eq!(waiting, [kit.provider_a, kit.provider_b]);
    let a_admin = kit
        .app
        .create_user(
            &kit.admin,
            kit.provider_a,
            "it-chef@norr.example",
            "provider_admin",
        )
        .await;
    let a = kit.app.first_login(&a_admin).await;
    let ack = format!("{path}/acknowledge");
    kit.app
        .post(&ack, &a, json!({}))
        .await
        .expect(StatusCode::NO_CONTENT);
    kit.app
        .post(&ack, &a, json!({}))
        .await
        .expect(StatusCode::NO_CONTENT);
    let after = kit.app.get(&path, &kit.admin).await;
    assert_eq!(after.body["not_acknowledged"], json!([kit.provider_b]));
    assert_eq!(
        after.body["acknowledgements"][0]["account_email"],
        "it-chef@norr.example"
    );
    assert_eq!(
        after.body["acknowledgements"].as_array().map(Vec::len),
        Some(1)
    );
    // The provider sees its own acknowledgement and not the operator's notice bookkeeping.
    let own = kit.app.get(&path, &a).await;
    own.expect(StatusCode::OK);
    assert!(own.body.get("notices").is_none());
    assert!(own.body.get("not_acknowledged").is_none());
    // A provider is not told which other providers a window concerns.
    let both = schedule(
        &kit,
        window(
            "Två utförare",
            "2026-12-16T10:00",
            "2026-12-16T12:00",
            Some(&[kit.provider_a, kit.provider_b]),
        ),
    )
    .await;
    let seen = kit
        .app
        .get(&format!("/api/v1/maintenance-windows/{}", both["id"]), &a)
        .await;
    assert_eq!(seen.body["provider_ids"], json!([kit.provider_a]));
    let listed = kit.app.get("/api/v1/maintenance-windows", &a).await;
    assert!(listed
        .body
        .as_array()
        .expect("list")
        .iter()
        .all(|w| w["provider_ids"].is_null() || w["provider_ids"] == json!([kit.provider_a])));
    // The operator cannot acknowledge on a provider's behalf.
    kit.app
        .post(&ack, &kit.admin, json!({}))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
}

async fn phones_see_active_and_upcoming_notices_at_check_in(backend: Backend) {
    let now = Utc::now();
    let kit = kit(backend, &now.to_rfc3339(), "").await;
    kit.app
        .create_model(&kit.admin, "ios", "iPhone 16", Some("2024-09-20"))
        .await;
    let device = kit
        .app
        .register_device(&kit.admin, "PHONE001", &imei(1), Some(kit.provider_a))
        .await;
    let token = kit
        .app
        .post(
            "/api/v1/enrollment-tokens",
            &kit.admin,
            json!({ "device_id": device }),
        )
        .await;
    token.expect(StatusCode::CREATED);
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(state_dir.path()).expect("state");
    let facts = simulated_facts("PHONE001", &imei(1), "ios", "iPhone 16");
    enroll(&state, token.body["token"].as_str().expect("token"), &facts)
        .await
        .expect("enroll");
    let quiet = checkin_once(&state, &facts).await.expect("check-in");
    assert!(quiet.notices.is_empty());
    // A disruption for A, planned maintenance for all in 8 days, and one for B only.
    kit.app
        .post(
            "/api/v1/disruptions",
            &kit.admin,
            json!({ "title": "Nyckelappen nere", "provider_ids": [kit.provider_a] }),
        )
        .await
        .expect(StatusCode::CREATED);
    let start = (now + Duration::days(8))
        .format("%Y-%m-%dT10:00")
        .to_string();
    let end = (now + Duration::days(8))
        .format("%Y-%m-%dT11:00")
        .to_string();
    let mut planned = window("Uppgradering", &start, &end, None);
    planned["acknowledge_outside_preferred"] = json!(true);
    schedule(&kit, planned).await;
    let mut other = window("Bara Syd", &start, &end, Some(&[kit.provider_b]));
    other["acknowledge_outside_preferred"] = json!(true);
    schedule(&kit, other).await;
    let answer = checkin_once(&state, &facts).await.expect("check-in");
    let shown: Vec<(String, String, String)> = answer
        .notices
        .iter()
        .map(|n| (n.kind.clone(), n.title.clone(), n.status.clone()))
        .collect();
    assert_eq!(
        shown,
        [
            (
                "disruption".into(),
                "Nyckelappen nere".into(),
                "in_progress".into()
            ),
            ("planned".into(), "Uppgradering".into(), "scheduled".into()),
        ]
    );
    assert_eq!(answer.notices[0].ends_at, None);
}

async fn the_calendar_feed_lists_a_providers_windows_behind_a_secret_that_can_be_rotated(
    backend: Backend,
) {
    let kit = kit(backend, "2026-12-01T09:00:00Z", "").await;
    schedule(
        &kit,
        window(
            "Uppgradering av MDM",
            "2026-12-15T10:00",
            "2026-12-15T12:00",
            Some(&[kit.provider_a]),
        ),
    )
    .await;
    schedule(
        &kit,
        window(
            "Bara Syd",
            "2026-12-16T10:00",
            "2026-12-16T12:00",
            Some(&[kit.provider_b]),
        ),
    )
    .await;
    let feed_path = format!("/api/v1/providers/{}/calendar-feed", kit.provider_a);
    let first = kit.app.post(&feed_path, &kit.admin, json!({})).await;
    first.expect(StatusCode::CREATED);
    let path = first.body["path"].as_str().expect("path").to_string();
    let ics = kit
        .app
        .http
        .get(format!("{}{path}", kit.app.base))
        .send()
        .await
        .expect("feed");
    assert_eq!(ics.status(), StatusCode::OK);
    assert!(ics
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/calendar")));
    let text = ics.text().await.expect("body");
    let calendar: icalendar::Calendar = text.parse().expect("RFC 5545");
    let events: Vec<&icalendar::Event> = calendar
        .components
        .iter()
        .filter_map(|c| match c {
            icalendar::CalendarComponent::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    use icalendar::Component;
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!(events[0].get_summary(), Some("Uppgradering av MDM"));
    assert!(text.contains("DTSTART:20261215T090000Z"), "{text}");
    assert!(text.contains("DTEND:20261215T110000Z"), "{text}");
    // A new secret ends the old one.
    let second = kit.app.post(&feed_path, &kit.admin, json!({})).await;
    second.expect(StatusCode::CREATED);
    let old = kit
        .app
        .http
        .get(format!("{}{path}", kit.app.base))
        .send()
        .await
        .expect("old");
    assert_eq!(old.status(), StatusCode::NOT_FOUND);
    let new_path = second.body["path"].as_str().expect("path");
    let new = kit
        .app
        .http
        .get(format!("{}{new_path}", kit.app.base))
        .send()
        .await
        .expect("new");
    assert_eq!(new.status(), StatusCode::OK);
    // Provider B's admin cannot make A's feed.
    let b_admin = kit
        .app
        .create_user(
            &kit.admin,
            kit.provider_b,
            "it@syd.example",
            "provider_admin",
        )
        .await;
    let b = kit.app.first_login(&b_admin).await;
    kit.app
        .post(&feed_path, &b, json!({}))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
}

async fn bad_windows_and_policies_are_refused_and_nothing_is_stored(backend: Backend) {
    let kit = kit(backend, "2026-12-01T09:00:00Z", "").await;
    let refuse = |body: Value, slug: &'static str| {
        let app = &kit.app;
        let admin = kit.admin.clone();
        async move {
            app.post("/api/v1/maintenance-windows", &admin, body)
                .await
                .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, slug);
        }
    };
    refuse(
        window("MDM", "2026-12-15T12:00", "2026-12-15T10:00", None),
        "validation",
    )
    .await;
    refuse(
        window("MDM", "2026-11-15T10:00", "2026-11-15T12:00", None),
        "validation",
    )
    .await;
    refuse(
        window("MDM", "i morgon", "2026-12-15T12:00", None),
        "validation",
    )
    .await;
    refuse(
        window("", "2026-12-15T10:00", "2026-12-15T12:00", None),
        "validation",
    )
    .await;
    refuse(
        window(
            "MDM",
            "2026-12-15T10:00",
            "2026-12-15T12:00",
            Some(&[99_999]),
        ),
        "validation",
    )
    .await;
    // The hour skipped when summer time begins.
    refuse(
        window("MDM", "2027-03-28T02:30", "2027-03-28T04:00", None),
        "validation",
    )
    .await;
    assert_eq!(kit.app.count("maintenance_windows").await, 0);
    assert_eq!(kit.app.count("notices").await, 0);
    for (cron, needle) in [
        ("0 10 * *", "expected 5"),
        ("0 10 30 2 *", "never fires"),
        ("61 10 * * 2", "parse"),
        ("0 10 * * 9", "0-7"),
    ] {
        let r = kit
            .app
            .post(
                "/api/v1/maintenance-series",
                &kit.admin,
                json!({ "title": "x", "cron": cron, "duration_minutes": 60 }),
            )
            .await;
        r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
        assert!(r.text.contains(needle), "{cron}: {}", r.text);
    }
    assert_eq!(kit.app.count("maintenance_series").await, 0);
    let policy = kit.app.get("/api/v1/notice-policy", &kit.admin).await.body["policy"].clone();
    for (key, value) in [
        ("min_lead_days", json!(400)),
        ("channels", json!([])),
        ("channels", json!(["fax"])),
        (
            "preferred_windows",
            json!([{ "days": ["tis"], "from": "10:00", "until": "13:00" }]),
        ),
        ("reminder_hours", json!(0)),
    ] {
        let mut bad = policy.clone();
        bad[key] = value;
        let r = kit
            .app
            .request(
                reqwest::Method::PUT,
                "/api/v1/notice-policy",
                Some(&kit.admin),
                Some(bad),
            )
            .await;
        assert_eq!(r.status.as_u16() / 100, 4, "{key}: {}", r.text);
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
    }
    let unchanged = kit.app.get("/api/v1/notice-policy", &kit.admin).await.body["policy"].clone();
    assert_eq!(unchanged, policy);
}

async fn webhooks_are_signed_with_hmac_sha256(backend: Backend) {
    let gateway = GatewayStandIn::start().await;
    let secret = "webhook-hemlighet-2026";
    let kit = kit(
        backend,
        "2026-12-01T09:00:00Z",
        &format!(
            "webhook_url = \"http://{}/hook\"\nwebhook_secret = \"{secret}\"\n",
            gateway.addr
        ),
    )
    .await;
    let mut policy = kit.app.get("/api/v1/notice-policy", &kit.admin).await.body["policy"].clone();
    policy["channels"] = json!(["email", "webhook"]);
    kit.app
        .request(
            reqwest::Method::PUT,
            "/api/v1/notice-policy",
            Some(&kit.admin),
            Some(policy),
        )
        .await
        .expect(StatusCode::OK);
    schedule(
        &kit,
        window("MDM", "2026-12-15T10:00", "2026-12-15T12:00", None),
    )
    .await;
    wait_until(
        WAIT,
        || gateway.hooks().len() == 1,
        || "no webhook".to_string(),
    )
    .await;
    let hook = gateway.hooks().remove(0);
    let header = |name: &str| {
        hook.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let timestamp: i64 = header("x-mdm-timestamp").parse().expect("timestamp");
    assert_eq!(
        header("x-mdm-signature"),
        mdm_server::notify::webhook::signature(secret.as_bytes(), timestamp, hook.body.as_bytes())
    );
    assert!(header("idempotency-key").starts_with("notice-"));
    let body: Value = serde_json::from_str(&hook.body).expect("json");
    assert_eq!(body["notice"], "announced");
    assert_eq!(body["window"]["title"], "MDM");
    kit.smtp.wait_for(3, WAIT).await;
}

async fn sent_messages_are_deleted_after_the_retention_period(backend: Backend) {
    let (kit, id) = announced_to_b(backend).await;
    let path = format!("/api/v1/deliveries?window_id={id}");
    let kinds = |body: &Value| -> Vec<String> {
        body.as_array()
            .expect("deliveries")
            .iter()
            .map(|d| d["notice"].as_str().expect("notice").to_string())
            .collect()
    };
    assert_eq!(
        kinds(&kit.app.get(&path, &kit.admin).await.body),
        ["announced"]
    );
    // 179 days on, the window's other notices have gone out and the announcement is kept.
    outbox_at_rest(&kit).await;
    kit.app.clock.advance(Duration::days(179));
    kit.smtp.wait_for(4, WAIT).await;
    settle().await;
    assert_eq!(
        kit.app
            .get(&path, &kit.admin)
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    // Past 180 days from its sending, the announcement goes; the later ones stay.
    outbox_at_rest(&kit).await;
    kit.app.clock.advance(Duration::days(2));
    let deadline = tokio::time::Instant::now() + WAIT;
    while kit.app.count("deliveries").await != 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the announcement was not deleted"
        );
        tokio::time::sleep(Wait::from_millis(50)).await;
    }
    let left = kinds(&kit.app.get(&path, &kit.admin).await.body);
    assert!(!left.contains(&"announced".to_string()), "{left:?}");
    assert_eq!(kit.app.count("delivery_attempts").await, 3);
    let audit = kit.app.get("/api/v1/audit?limit=50", &kit.admin).await;
    assert!(audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|e| e["action"] == "outbox.prune" && e["details"]["deliveries"] == 1));
}
