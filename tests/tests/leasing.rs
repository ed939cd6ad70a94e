//! Leasing operations end to end: leases and holders, wipe before reassign with real agents,
//! phone requests with working-day deadlines, lost and stolen cases, contract ends, four-eyes
//! manual wipes and SIM subscriptions. Every test runs on SQLite and PostgreSQL.

use agent::client::{report, Refused};
use chrono::Duration;
use mdm_tests::sinks::SmtpSink;
use mdm_tests::{backend_tests, imei, AgentPhone, Backend, Fleet, NewLogin, ORG_A};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

backend_tests!(
    a_returned_phone_gets_a_new_holder_only_after_its_agent_confirmed_the_wipe_and_enrolled_again,
    a_stolen_phone_is_locked_at_once_wiped_after_24_hours_and_written_off_to_a_replacement_that_takes_over_its_lease,
    a_loss_reported_49_hours_after_discovery_is_flagged_late_bad_reports_change_nothing_and_people_add_notes_to_its_timeline,
    when_a_providers_contract_ends_every_leased_phone_is_queued_for_wipe_and_its_users_are_locked_out,
    phone_requests_are_due_three_working_days_later_and_stay_open_until_fully_leased,
    a_phone_that_cannot_be_wiped_remotely_counts_as_wiped_only_after_a_second_admin_confirms,
    sims_move_through_block_and_reactivation_and_a_check_in_flags_another_sim_and_heavy_data_use,
    a_sim_placed_in_a_phone_that_reports_another_card_is_flagged_at_once_and_taking_it_out_clears_the_flag,
    bad_leasing_requests_are_refused_with_what_must_happen_first_and_nothing_changes,
    a_faulty_phone_leaves_for_the_supplier_only_wiped_and_a_compliant_replacement_takes_over_its_lease,
);

const SIM_1: &str = "89460000000000000018";
const SIM_2: &str = "89460000000000000026";

/// A server at Monday 23 November 2026, 10:00 in Stockholm, with two providers.
async fn kit(backend: Backend) -> Fleet {
    Fleet::start(backend, "", "2026-11-23T09:00:00Z").await
}

/// A person of a provider, logged in (a session of eight hours).
async fn person(kit: &Fleet, org: i64, email: &str, role: &str) -> (NewLogin, String) {
    let login = kit.app.create_user(&kit.admin, org, email, role).await;
    let token = kit.app.first_login(&login).await;
    (login, token)
}

/// An API token of a new person (it outlives sessions while the clock moves).
async fn person_token(kit: &Fleet, org: i64, email: &str, role: &str) -> String {
    let (_, session) = person(kit, org, email, role).await;
    let token = kit
        .app
        .post(
            "/api/v1/me/tokens",
            &session,
            json!({ "name": "script", "expires_in_days": 365 }),
        )
        .await;
    token.expect(StatusCode::CREATED);
    token.body["token"].as_str().expect("token").to_string()
}

/// Registers a phone in stock (new from the supplier) and enrolls a real agent on it.
async fn new_phone(kit: &Fleet, serial: &str, n: u32) -> AgentPhone {
    kit.enrolled_iphone(serial, n, None).await
}

async fn lease(
    kit: &Fleet,
    device: i64,
    provider: i64,
    holder: Option<i64>,
) -> mdm_tests::Response {
    kit.app
        .post(
            "/api/v1/leases",
            &kit.admin,
            json!({ "device_id": device, "provider_id": provider, "monthly_price_sek": 249.5,
                    "ends_on": "2029-11-30", "holder_id": holder }),
        )
        .await
}

async fn device(kit: &Fleet, id: i64) -> Value {
    let r = kit
        .app
        .get(&format!("/api/v1/devices/{id}"), &kit.admin)
        .await;
    r.expect(StatusCode::OK);
    r.body
}

async fn history(kit: &Fleet, id: i64) -> Value {
    let r = kit
        .app
        .get(&format!("/api/v1/devices/{id}/history"), &kit.admin)
        .await;
    r.expect(StatusCode::OK);
    r.body
}

/// Polls the API until `done` holds for the answer at `path`.
async fn eventually(kit: &Fleet, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..250 {
        let r = kit.app.get(path, &kit.admin).await;
        if done(&r.body) {
            return r.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{path} never reached the expected state");
}

fn refusal(e: &anyhow::Error) -> (u16, String) {
    let r = e.downcast_ref::<Refused>().expect("a refusal");
    (r.status, r.problem_type.clone())
}

async fn a_returned_phone_gets_a_new_holder_only_after_its_agent_confirmed_the_wipe_and_enrolled_again(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let (anna, _) = person(&kit, kit.provider_a, "anna@norr.example", "provider_user").await;
    let (bo, _) = person(&kit, kit.provider_a, "bo@norr.example", "provider_user").await;
    let (_, it_contact) = person(&kit, kit.provider_a, "it@norr.example", "provider_admin").await;
    let phone = new_phone(&kit, "PHONEA01", 1).await;

    // A phone new from the supplier goes straight to its first holder.
    let first = lease(&kit, phone.id, kit.provider_a, Some(anna.id)).await;
    first.expect(StatusCode::CREATED);
    assert_eq!(first.body["holder_id"], anna.id);
    assert_eq!(first.body["monthly_price_sek"], 249.5);
    assert_eq!(first.body["data_gb"], 100);
    let leased = device(&kit, phone.id).await;
    assert_eq!(leased["status"], "leased");
    assert_eq!(leased["provider_id"], kit.provider_a);
    assert_eq!(leased["holder_id"], anna.id);
    phone.check_in().await;

    // The provider's IT contact returns it: the lease ends, Anna's holding ends, a wipe waits.
    kit.app.clock.advance(Duration::hours(1));
    let returned = kit
        .app
        .post(
            &format!("/api/v1/devices/{}/return", phone.id),
            &it_contact,
            json!({}),
        )
        .await;
    returned.expect(StatusCode::OK);
    assert_eq!(returned.body["lease"]["end_reason"], "returned");
    let wipe = returned.body["wipe_command_id"].as_i64().expect("wipe");
    let back = device(&kit, phone.id).await;
    assert_eq!(back["status"], "awaiting_wipe");
    assert!(back["holder_id"].is_null() && back["provider_id"].is_null());

    // Bo may not have it yet: the wipe is sent but not confirmed.
    let early = lease(&kit, phone.id, kit.provider_a, Some(bo.id)).await;
    early.expect_problem(StatusCode::CONFLICT, "wipe-required");
    assert!(early.body["detail"]
        .as_str()
        .expect("detail")
        .contains("confirm"));
    assert_eq!(
        history(&kit, phone.id).await["wipe_gate"]["missing"],
        "not_acknowledged"
    );
    assert_eq!(
        early.body["missing_step"], "not_acknowledged",
        "the refusal names the step as the history view does"
    );

    // The agent gets the wipe, confirms it and erases itself; its old identity stops working.
    kit.app.clock.advance(Duration::minutes(1));
    let old_identity = phone.client();
    phone.check_in().await;
    let wiped = kit
        .app
        .get(&format!("/api/v1/commands/{wipe}"), &kit.admin)
        .await;
    assert_eq!(wiped.body["state"], "acknowledged", "{}", wiped.text);
    assert!(phone.state().enrollment().expect("state").is_none());
    let err = old_identity
        .checkin(&report(&phone.facts()))
        .await
        .expect_err("the wiped identity must be refused");
    assert_eq!(
        refusal(&err),
        (401, "/problems/device-identity-refused".into())
    );
    assert_eq!(device(&kit, phone.id).await["status"], "in_stock");

    // Still not: the wiped phone has not enrolled again.
    let not_yet = lease(&kit, phone.id, kit.provider_a, Some(bo.id)).await;
    not_yet.expect_problem(StatusCode::CONFLICT, "wipe-required");
    assert!(not_yet.body["detail"]
        .as_str()
        .expect("detail")
        .contains("enroll"));
    assert_eq!(not_yet.body["missing_step"], "not_reenrolled");
    assert_eq!(kit.app.count("leases").await, 1, "nothing was written");

    // Enrolled again with a fresh identity: now Bo gets it.
    kit.app.clock.advance(Duration::minutes(1));
    kit.enroll(&phone).await;
    phone.check_in().await;
    let second = lease(&kit, phone.id, kit.provider_a, Some(bo.id)).await;
    second.expect(StatusCode::CREATED);
    assert_eq!(second.body["holder_id"], bo.id);
    // Bo holds it now: it is not ready for anyone else, whatever its wipes.
    assert_eq!(
        history(&kit, phone.id).await["wipe_gate"]["missing"],
        "in_use"
    );

    // Within the lease, too, Anna may not take it back from Bo without a wipe.
    let handover = kit
        .app
        .request(
            Method::PUT,
            &format!("/api/v1/devices/{}/holder", phone.id),
            Some(&it_contact),
            Some(json!({ "holder_id": anna.id })),
        )
        .await;
    handover.expect_problem(StatusCode::CONFLICT, "wipe-required");

    let record = history(&kit, phone.id).await;
    assert_eq!(record["leases"].as_array().expect("leases").len(), 2);
    let holders: Vec<(i64, bool)> = record["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .map(|h| {
            (
                h["account_id"].as_i64().expect("id"),
                h["ended_at"].is_null(),
            )
        })
        .collect();
    assert_eq!(holders, [(anna.id, false), (bo.id, true)]);
    assert_eq!(record["wipe_gate"]["ready"], false, "Bo holds it");
    assert_eq!(
        kit.app
            .count("audit_log WHERE action IN ('lease.create', 'lease.return')")
            .await,
        3
    );
}

async fn a_stolen_phone_is_locked_at_once_wiped_after_24_hours_and_written_off_to_a_replacement_that_takes_over_its_lease(
    backend: Backend,
) {
    let smtp = SmtpSink::start();
    let config = format!(
        "[notifications]\nsmtp_url = \"{}\"\nmail_from = \"it@kommun.example\"\n\
         [leasing]\nservice_desk_email = \"servicedesk@kommun.example\"\n\
         support_phone_number = \"+46812345678\"\n",
        smtp.url()
    );
    let kit = Fleet::start(backend, &config, "2026-11-23T09:00:00Z").await;
    let (anna, anna_token) =
        person(&kit, kit.provider_a, "anna@norr.example", "provider_user").await;
    let phone = new_phone(&kit, "PHONEA01", 1).await;
    let sim = kit
        .app
        .post(
            "/api/v1/sims",
            &kit.admin,
            json!({ "iccid": SIM_1, "phone_number": "+46701112233", "carrier": "Telia", "plan": "Jobbmobil" }),
        )
        .await;
    sim.expect(StatusCode::CREATED);
    let sim_path = format!("/api/v1/sims/{}", sim.body["id"]);
    kit.app
        .request(
            Method::PUT,
            &format!("{sim_path}/device"),
            Some(&kit.admin),
            Some(json!({ "device_id": phone.id })),
        )
        .await
        .expect(StatusCode::OK);
    let first = lease(&kit, phone.id, kit.provider_a, Some(anna.id)).await;
    first.expect(StatusCode::CREATED);
    let first_lease = first.body["id"].as_i64().expect("lease");

    // Anna reports it stolen two hours after she missed it.
    let report = kit
        .app
        .post(
            &format!("/api/v1/devices/{}/lost-cases", phone.id),
            &anna_token,
            json!({ "kind": "stolen", "discovered_at": "2026-11-23T07:00:00Z",
                    "circumstances": "Stulen ur bilen på Storgatan", "police_report": "5000-K123456-26" }),
        )
        .await;
    report.expect(StatusCode::CREATED);
    assert_eq!(report.body["late"], false);
    assert_eq!(report.body["state"], "open");
    let case_path = format!("/api/v1/lost-cases/{}", report.body["id"]);
    let kinds = |case: &Value| -> Vec<String> {
        case["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .map(|e| e["kind"].as_str().expect("kind").to_string())
            .collect()
    };
    assert_eq!(
        kinds(&report.body),
        [
            "reported",
            "lock_queued",
            "sim_block_requested",
            "service_desk_notified"
        ]
    );
    assert_eq!(device(&kit, phone.id).await["status"], "lost");
    assert_eq!(
        kit.app.get(&sim_path, &kit.admin).await.body["status"],
        "block_requested"
    );
    let mail = smtp.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(mail[0].to, ["servicedesk@kommun.example"]);
    assert!(mail[0].subject.contains("PHONEA01"), "{}", mail[0].subject);
    assert!(mail[0].body.contains(SIM_1), "{}", mail[0].body);

    // The lost-mode lock goes out first at the next check-in, with the support number; the
    // phone's check-in is noted on the case (time and network facts only).
    let lock = report.body["lock_command_id"].as_i64().expect("lock");
    let sent = phone
        .client()
        .checkin(&agent::client::report(&phone.facts()))
        .await
        .expect("check-in");
    let first_command = serde_json::to_value(&sent.commands[0]).expect("json");
    assert_eq!(first_command["id"], lock);
    assert_eq!(first_command["kind"], "lost_mode_on");
    assert_eq!(first_command["phone_number"], "+46812345678");
    phone
        .client()
        .command_result(
            lock,
            &agent::protocol::CommandResult {
                status: agent::protocol::CommandStatus::Acknowledged,
                error: None,
            },
        )
        .await
        .expect("answer");
    let case = kit.app.get(&case_path, &kit.admin).await;
    assert!(
        kinds(&case.body).contains(&"checked_in".to_string()),
        "{}",
        case.text
    );

    // Not found within 24 hours: the wipe is queued by itself.
    kit.app
        .clock
        .advance(Duration::hours(24) + Duration::minutes(6));
    let escalated = eventually(&kit, &case_path, |c| c["wipe_command_id"].is_i64()).await;
    assert!(kinds(&escalated).contains(&"wipe_queued".to_string()));
    let wipe = kit
        .app
        .get(
            &format!("/api/v1/commands/{}", escalated["wipe_command_id"]),
            &kit.admin,
        )
        .await;
    assert_eq!(wipe.body["kind"], "wipe");
    assert_eq!(wipe.body["priority"], "high");

    // Written off: identity revoked, phone retired, lease ended, replacement requested.
    let written_off = kit
        .app
        .post(&format!("{case_path}/write-off"), &kit.admin, json!({}))
        .await;
    written_off.expect(StatusCode::OK);
    assert_eq!(written_off.body["state"], "written_off");
    let request = written_off.body["replacement_request_id"]
        .as_i64()
        .expect("replacement request");
    let gone = device(&kit, phone.id).await;
    assert_eq!(gone["status"], "retired");
    let err = phone
        .client()
        .checkin(&agent::client::report(&phone.facts()))
        .await
        .expect_err("a written-off phone is refused");
    assert_eq!(refusal(&err).0, 401);
    let old = kit
        .app
        .get(&format!("/api/v1/leases/{first_lease}"), &kit.admin)
        .await;
    assert_eq!(old.body["end_reason"], "written_off");
    let asked = kit
        .app
        .get(&format!("/api/v1/phone-requests/{request}"), &kit.admin)
        .await;
    assert_eq!(asked.body["replaces_lease_id"], first_lease);
    assert_eq!(asked.body["provider_id"], kit.provider_a);
    assert_eq!(asked.body["state"], "open");

    // The replacement takes over the lease: its terms and Anna.
    let replacement = new_phone(&kit, "PHONEA02", 2).await;
    let moved = kit
        .app
        .post(
            "/api/v1/leases",
            &kit.admin,
            json!({ "device_id": replacement.id, "provider_id": kit.provider_a, "request_id": request }),
        )
        .await;
    moved.expect(StatusCode::CREATED);
    assert_eq!(moved.body["replaces_lease_id"], first_lease);
    assert_eq!(moved.body["monthly_price_sek"], 249.5);
    assert_eq!(moved.body["ends_on"], "2029-11-30");
    assert_eq!(moved.body["holder_id"], anna.id);
    let done = kit
        .app
        .get(&format!("/api/v1/phone-requests/{request}"), &kit.admin)
        .await;
    assert_eq!(done.body["state"], "fulfilled");
}

async fn a_loss_reported_49_hours_after_discovery_is_flagged_late_bad_reports_change_nothing_and_people_add_notes_to_its_timeline(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let (anna, anna_token) =
        person(&kit, kit.provider_a, "anna@norr.example", "provider_user").await;
    let (_, bo_token) = person(&kit, kit.provider_a, "bo@norr.example", "provider_user").await;
    let (_, other_provider) =
        person(&kit, kit.provider_b, "it@syd.example", "provider_admin").await;
    let phone = new_phone(&kit, "PHONEA01", 1).await;
    lease(&kit, phone.id, kit.provider_a, Some(anna.id))
        .await
        .expect(StatusCode::CREATED);
    let path = format!("/api/v1/devices/{}/lost-cases", phone.id);
    let report = |discovered: &str| json!({ "kind": "lost", "discovered_at": discovered, "circumstances": "Tappad på bussen" });

    // Bad reports: a discovery in the future, another provider's phone, a phone someone else
    // holds, an unknown kind.
    kit.app
        .post(&path, &anna_token, report("2026-11-23T10:00:00Z"))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    kit.app
        .post(&path, &other_provider, report("2026-11-23T08:00:00Z"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
    kit.app
        .post(&path, &bo_token, report("2026-11-23T08:00:00Z"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
    kit.app
        .post(
            &path,
            &anna_token,
            json!({ "kind": "misplaced", "discovered_at": "2026-11-23T08:00:00Z", "circumstances": "?" }),
        )
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(kit.app.count("lost_cases").await, 0);
    assert_eq!(kit.app.count("commands").await, 0);
    assert_eq!(device(&kit, phone.id).await["status"], "leased");

    // Discovered 49 hours before the report: late.
    let late = kit
        .app
        .post(&path, &anna_token, report("2026-11-21T08:00:00Z"))
        .await;
    late.expect(StatusCode::CREATED);
    assert_eq!(late.body["late"], true);
    assert_eq!(late.body["timeline"][0]["details"]["late"], true);
    // A second report while the case is open is refused.
    kit.app
        .post(&path, &anna_token, report("2026-11-21T08:00:00Z"))
        .await
        .expect_problem(StatusCode::CONFLICT, "lost-case-open");
    // The lost phone cannot be leased or returned meanwhile.
    kit.app
        .post(
            &format!("/api/v1/devices/{}/return", phone.id),
            &kit.admin,
            json!({}),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "device-lost");

    // The operator's overview shows it among the late and the open cases; the other provider
    // sees none of it.
    for query in ["late=true", "open=true"] {
        let listed = kit
            .app
            .get(&format!("/api/v1/lost-cases?{query}"), &kit.admin)
            .await;
        assert_eq!(listed.body.as_array().expect("list").len(), 1, "{query}");
    }
    let theirs = kit.app.get("/api/v1/lost-cases", &other_provider).await;
    assert_eq!(theirs.body, json!([]));
    kit.app
        .get(
            &format!("/api/v1/lost-cases/{}", late.body["id"]),
            &other_provider,
        )
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");

    // The one who reported it adds to the timeline; nobody outside the case can.
    let notes = format!("/api/v1/lost-cases/{}/notes", late.body["id"]);
    let noted = kit
        .app
        .post(
            &notes,
            &anna_token,
            json!({ "text": " Anmäld till polisen, ärende 5000-K123456-26 " }),
        )
        .await;
    noted.expect(StatusCode::CREATED);
    let timeline = noted.body["timeline"].as_array().expect("timeline");
    let last = timeline.last().expect("an entry");
    assert_eq!(last["kind"], "note");
    assert_eq!(last["actor_id"], anna.id);
    assert_eq!(
        last["details"]["text"],
        "Anmäld till polisen, ärende 5000-K123456-26"
    );
    kit.app
        .post(&notes, &anna_token, json!({ "text": "   " }))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    for outsider in [&bo_token, &other_provider] {
        kit.app
            .post(&notes, outsider, json!({ "text": "hittad?" }))
            .await
            .expect_problem(StatusCode::NOT_FOUND, "not-found");
    }

    // Found: back to leased, lost mode off queued; the case cannot end twice.
    let found = kit
        .app
        .post(
            &format!("/api/v1/lost-cases/{}/found", late.body["id"]),
            &kit.admin,
            json!({}),
        )
        .await;
    found.expect(StatusCode::OK);
    assert_eq!(found.body["state"], "found");
    assert_eq!(device(&kit, phone.id).await["status"], "leased");
    let queued = kit
        .app
        .get(
            &format!("/api/v1/devices/{}/commands", phone.id),
            &kit.admin,
        )
        .await;
    assert_eq!(queued.body[0]["kind"], "lost_mode_off");
    kit.app
        .post(
            &format!("/api/v1/lost-cases/{}/write-off", late.body["id"]),
            &kit.admin,
            json!({}),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "lost-case-closed");
    // An ended case still takes notes.
    kit.app
        .post(
            &notes,
            &kit.admin,
            json!({ "text": "Försäkringsbolaget meddelat" }),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        kit.app.count("lost_case_events WHERE kind = 'note'").await,
        2
    );
}

async fn when_a_providers_contract_ends_every_leased_phone_is_queued_for_wipe_and_its_users_are_locked_out(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let provider_token =
        person_token(&kit, kit.provider_a, "it@norr.example", "provider_admin").await;
    let mut theirs = Vec::new();
    for n in 1..=3 {
        let id = kit
            .app
            .register_device(&kit.admin, &format!("PHONEA0{n}"), &imei(n), None)
            .await;
        lease(&kit, id, kit.provider_a, None)
            .await
            .expect(StatusCode::CREATED);
        theirs.push(id);
    }
    let other = kit
        .app
        .register_device(&kit.admin, "PHONEB01", &imei(9), None)
        .await;
    lease(&kit, other, kit.provider_b, None)
        .await
        .expect(StatusCode::CREATED);

    // The contract ends today; its people work until then.
    kit.app
        .patch(
            &format!("/api/v1/providers/{}", kit.provider_a),
            &kit.admin,
            json!({ "contract_end": "2026-11-23" }),
        )
        .await
        .expect(StatusCode::OK);
    kit.app
        .get("/api/v1/devices", &provider_token)
        .await
        .expect(StatusCode::OK);

    // The next day: every lease of the provider ends and every phone waits for its wipe.
    kit.app.clock.advance(Duration::days(1));
    eventually(
        &kit,
        &format!("/api/v1/leases?provider_id={}&open=true", kit.provider_a),
        |l| l.as_array().is_some_and(|a| a.is_empty()),
    )
    .await;
    for id in &theirs {
        let phone = device(&kit, *id).await;
        assert_eq!(phone["status"], "awaiting_wipe");
        let commands = kit
            .app
            .get(&format!("/api/v1/devices/{id}/commands"), &kit.admin)
            .await;
        assert_eq!(commands.body[0]["kind"], "wipe");
        assert_eq!(commands.body[0]["state"], "queued");
    }
    let ended = kit
        .app
        .get(
            &format!("/api/v1/leases?provider_id={}", kit.provider_a),
            &kit.admin,
        )
        .await;
    assert!(ended
        .body
        .as_array()
        .expect("leases")
        .iter()
        .all(|l| l["end_reason"] == "contract_ended"));
    assert_eq!(
        kit.app
            .count("audit_log WHERE action = 'lease.contract_end'")
            .await,
        1
    );
    // Its people are locked out; the other provider is untouched.
    kit.app
        .get("/api/v1/devices", &provider_token)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(device(&kit, other).await["status"], "leased");
    // And no phone is leased to it any more.
    let fresh = kit
        .app
        .register_device(&kit.admin, "PHONEA09", &imei(20), None)
        .await;
    lease(&kit, fresh, kit.provider_a, None)
        .await
        .expect_problem(StatusCode::CONFLICT, "contract-not-running");
}

async fn phone_requests_are_due_three_working_days_later_and_stay_open_until_fully_leased(
    backend: Backend,
) {
    // Friday 20 November 2026, 17:00 in Stockholm: after support closed.
    let kit = Fleet::start(backend, "", "2026-11-20T16:00:00Z").await;
    let it_contact = person_token(&kit, kit.provider_a, "it@norr.example", "provider_admin").await;
    let (_, other_provider) =
        person(&kit, kit.provider_b, "it@syd.example", "provider_admin").await;
    let asked = kit
        .app
        .post(
            "/api/v1/phone-requests",
            &it_contact,
            json!({ "quantity": 2, "needed_by": "2026-12-01", "delivery_note": "Till kontoret på Storgatan 1" }),
        )
        .await;
    asked.expect(StatusCode::CREATED);
    // Handed in after closing, it counts from Monday 23rd; three working days on, it is due at
    // Thursday's closing.
    assert_eq!(asked.body["due_at"], "2026-11-26T16:00:00+01:00");
    assert_eq!(asked.body["provider_id"], kit.provider_a);
    let id = asked.body["id"].as_i64().expect("id");
    let path = format!("/api/v1/phone-requests/{id}");
    kit.app
        .get(&path, &other_provider)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
    kit.app
        .post(
            "/api/v1/phone-requests",
            &it_contact,
            json!({ "quantity": 0, "needed_by": "2026-11-01" }),
        )
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    // Another provider's id is refused, not quietly replaced by the caller's own.
    let foreign = kit
        .app
        .post(
            "/api/v1/phone-requests",
            &it_contact,
            json!({ "quantity": 1, "provider_id": kit.provider_b }),
        )
        .await;
    foreign.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(foreign.body["errors"][0]["field"], "provider_id");
    kit.app
        .post(
            "/api/v1/phone-requests",
            &it_contact,
            json!({ "quantity": 1, "provider_id": kit.provider_a, "delivery_note": "Storgatan 1" }),
        )
        .await
        .expect(StatusCode::CREATED);

    // One phone on Monday: partly fulfilled, still open.
    kit.app.clock.advance(Duration::days(3));
    let first = kit
        .app
        .register_device(&kit.admin, "PHONEA01", &imei(1), None)
        .await;
    let leased = kit
        .app
        .post(
            "/api/v1/leases",
            &kit.admin,
            json!({ "device_id": first, "provider_id": kit.provider_a, "monthly_price_sek": 199, "request_id": id }),
        )
        .await;
    leased.expect(StatusCode::CREATED);
    assert_eq!(leased.body["request_id"], id);
    let partly = kit.app.get(&path, &it_contact).await;
    assert_eq!(
        (
            partly.body["fulfilled"].clone(),
            partly.body["state"].clone()
        ),
        (json!(1), json!("open"))
    );
    let overdue = kit
        .app
        .get("/api/v1/phone-requests?overdue=true", &kit.admin)
        .await;
    assert_eq!(overdue.body, json!([]));

    // Past Thursday's closing it is overdue.
    kit.app
        .clock
        .advance(Duration::days(3) + Duration::hours(1));
    let overdue = kit
        .app
        .get("/api/v1/phone-requests?overdue=true", &kit.admin)
        .await;
    assert_eq!(overdue.body[0]["id"], id, "{}", overdue.text);
    assert_eq!(overdue.body[0]["overdue"], true);

    // The second phone fulfils it; a third is refused.
    let second = kit
        .app
        .register_device(&kit.admin, "PHONEA02", &imei(2), None)
        .await;
    kit.app
        .post(
            "/api/v1/leases",
            &kit.admin,
            json!({ "device_id": second, "provider_id": kit.provider_a, "monthly_price_sek": 199, "request_id": id }),
        )
        .await
        .expect(StatusCode::CREATED);
    let done = kit.app.get(&path, &it_contact).await;
    assert_eq!(done.body["state"], "fulfilled");
    assert_eq!(done.body["overdue"], false);
    let third = kit
        .app
        .register_device(&kit.admin, "PHONEA03", &imei(3), None)
        .await;
    kit.app
        .post(
            "/api/v1/leases",
            &kit.admin,
            json!({ "device_id": third, "provider_id": kit.provider_a, "monthly_price_sek": 199, "request_id": id }),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "request-closed");
    assert_eq!(device(&kit, third).await["status"], "in_stock");
    kit.app
        .post(&format!("{path}/cancel"), &it_contact, json!({}))
        .await
        .expect_problem(StatusCode::CONFLICT, "request-closed");
}

async fn a_phone_that_cannot_be_wiped_remotely_counts_as_wiped_only_after_a_second_admin_confirms(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let operator = kit.app.server.state.operator_id;
    let (_, second_admin) = person(&kit, operator, "andra@kommun.example", "operator_admin").await;
    let (_, staff) = person(
        &kit,
        operator,
        "servicedesk@kommun.example",
        "operator_staff",
    )
    .await;
    let phone = kit
        .app
        .register_device(&kit.admin, "PHONEA01", &imei(1), None)
        .await;
    lease(&kit, phone, kit.provider_a, None)
        .await
        .expect(StatusCode::CREATED);
    kit.app
        .post(
            &format!("/api/v1/devices/{phone}/return"),
            &kit.admin,
            json!({}),
        )
        .await
        .expect(StatusCode::OK);
    // The phone is dead: its wipe will never be confirmed.
    lease(&kit, phone, kit.provider_b, None)
        .await
        .expect_problem(StatusCode::CONFLICT, "wipe-required");

    let path = format!("/api/v1/devices/{phone}/manual-wipe");
    kit.app
        .post(&path, &kit.admin, json!({ "reason": "trasig" }))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    kit.app
        .post(
            &path,
            &staff,
            json!({ "reason": "Skärmen krossad, startar inte" }),
        )
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    kit.app
        .post(
            &path,
            &kit.admin,
            json!({ "reason": "Skärmen krossad, startar inte" }),
        )
        .await
        .expect(StatusCode::CREATED);
    // The one who recorded it cannot confirm it.
    kit.app
        .post(&format!("{path}/confirm"), &kit.admin, json!({}))
        .await
        .expect_problem(StatusCode::CONFLICT, "four-eyes");
    lease(&kit, phone, kit.provider_b, None)
        .await
        .expect_problem(StatusCode::CONFLICT, "wipe-required");
    let confirmed = kit
        .app
        .post(&format!("{path}/confirm"), &second_admin, json!({}))
        .await;
    confirmed.expect(StatusCode::OK);
    assert!(confirmed.body["confirmed_at"].is_string());
    let queue = kit
        .app
        .get(&format!("/api/v1/devices/{phone}/commands"), &kit.admin)
        .await;
    assert_eq!(
        queue.body[0]["state"], "cancelled",
        "the unsent wipe is purged"
    );
    assert_eq!(device(&kit, phone).await["status"], "in_stock");
    lease(&kit, phone, kit.provider_b, None)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        kit.app
            .count("audit_log WHERE action IN ('device.manual_wipe.record', 'device.manual_wipe.confirm')")
            .await,
        2
    );
}

async fn a_sim_placed_in_a_phone_that_reports_another_card_is_flagged_at_once_and_taking_it_out_clears_the_flag(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let mut sims = Vec::new();
    for (iccid, number) in [(SIM_1, "+46701112233"), (SIM_2, "+46701112244")] {
        let sim = kit
            .app
            .post(
                "/api/v1/sims",
                &kit.admin,
                json!({ "iccid": iccid, "phone_number": number, "carrier": "Telia", "plan": "Jobbmobil" }),
            )
            .await;
        sim.expect(StatusCode::CREATED);
        sims.push(format!("/api/v1/sims/{}/device", sim.body["id"]));
    }
    // The phone carries the second card before any SIM is on record: nothing is expected yet.
    let phone = new_phone(&kit, "PHONEB01", 1).await;
    phone.describe("PHONEB01", 1, Some(SIM_2), 1);
    phone.check_in().await;
    let flagged = || async {
        kit.app
            .get("/api/v1/devices?sim_mismatch=true", &kit.admin)
            .await
            .body["items"]
            .clone()
    };
    assert_eq!(flagged().await, json!([]));
    let place = |path: String, device: Option<i64>| {
        let (app, admin) = (&kit.app, kit.admin.clone());
        async move {
            app.request(
                Method::PUT,
                &path,
                Some(&admin),
                Some(json!({ "device_id": device })),
            )
            .await
        }
    };

    // The first card is placed in it on the record: the phone reports the other one, flagged at
    // once without waiting for its next report.
    place(sims[0].clone(), Some(phone.id))
        .await
        .expect(StatusCode::OK);
    let items = flagged().await;
    assert_eq!(items[0]["id"], phone.id, "{items}");
    assert_eq!(items[0]["reported_iccid_mismatch"], SIM_2);

    // Taken out again: no SIM on record, nothing to contradict.
    place(sims[0].clone(), None).await.expect(StatusCode::OK);
    assert_eq!(flagged().await, json!([]));

    // The card it reports is the one placed: no flag.
    place(sims[1].clone(), Some(phone.id))
        .await
        .expect(StatusCode::OK);
    assert_eq!(flagged().await, json!([]));
    assert_eq!(
        device(&kit, phone.id).await["reported_iccid_mismatch"],
        Value::Null
    );
}

async fn sims_move_through_block_and_reactivation_and_a_check_in_flags_another_sim_and_heavy_data_use(
    backend: Backend,
) {
    let smtp = SmtpSink::start();
    let config = format!(
        "[notifications]\nsmtp_url = \"{}\"\nmail_from = \"it@kommun.example\"\n",
        smtp.url()
    );
    let kit = Fleet::start(backend, &config, "2026-11-23T09:00:00Z").await;
    let create = |iccid: &str, number: &str| json!({ "iccid": iccid, "phone_number": number, "carrier": "Telia", "plan": "Jobbmobil 100 GB" });
    kit.app
        .post(
            "/api/v1/sims",
            &kit.admin,
            create("89460000000000000019", "+46701112233"),
        )
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let sim = kit
        .app
        .post("/api/v1/sims", &kit.admin, create(SIM_1, "+46701112233"))
        .await;
    sim.expect(StatusCode::CREATED);
    assert_eq!(sim.body["status"], "active");
    assert_eq!(sim.body["data_gb"], 100);
    kit.app
        .post("/api/v1/sims", &kit.admin, create(SIM_1, "+46701112244"))
        .await
        .expect_problem(StatusCode::CONFLICT, "conflict");
    let spare = kit
        .app
        .post("/api/v1/sims", &kit.admin, create(SIM_2, "+46701112255"))
        .await;
    spare.expect(StatusCode::CREATED);
    let sim_path = format!("/api/v1/sims/{}", sim.body["id"]);
    let spare_path = format!("/api/v1/sims/{}", spare.body["id"]);

    let phone = new_phone(&kit, "PHONEA01", 1).await;
    let second = kit
        .app
        .register_device(&kit.admin, "PHONEA02", &imei(2), None)
        .await;
    let place = |path: String, device: Option<i64>| {
        let app = &kit.app;
        let admin = kit.admin.clone();
        async move {
            app.request(
                Method::PUT,
                &format!("{path}/device"),
                Some(&admin),
                Some(json!({ "device_id": device })),
            )
            .await
        }
    };
    place(sim_path.clone(), Some(phone.id))
        .await
        .expect(StatusCode::OK);
    place(spare_path.clone(), Some(phone.id))
        .await
        .expect_problem(StatusCode::CONFLICT, "device-has-sim");
    place(sim_path.clone(), Some(second))
        .await
        .expect_problem(StatusCode::CONFLICT, "sim-in-use");
    lease(&kit, phone.id, kit.provider_a, None)
        .await
        .expect(StatusCode::CREATED);

    // Status moves: a block is requested before it is confirmed; re-activation clears it.
    let status = |to: &str| {
        let app = &kit.app;
        let admin = kit.admin.clone();
        let path = format!("{sim_path}/status");
        let body = json!({ "status": to });
        async move { app.post(&path, &admin, body).await }
    };
    status("blocked")
        .await
        .expect_problem(StatusCode::CONFLICT, "sim-transition");
    status("block_requested").await.expect(StatusCode::OK);
    status("blocked").await.expect(StatusCode::OK);
    let active = status("active").await;
    active.expect(StatusCode::OK);
    assert_eq!(active.body["history"][0]["device_id"], phone.id);
    assert!(active.body["history"][0]["ended_at"].is_null());

    // The phone reports the spare card: flagged for the operator.
    phone.describe("PHONEA01", 1, Some(SIM_2), 10);
    phone.check_in().await;
    let flagged = kit
        .app
        .get("/api/v1/devices?sim_mismatch=true", &kit.admin)
        .await;
    assert_eq!(flagged.body["items"][0]["id"], phone.id, "{}", flagged.text);
    assert_eq!(flagged.body["items"][0]["reported_iccid_mismatch"], SIM_2);
    assert!(flagged.body["items"][0]["flags"]
        .to_string()
        .contains("sim_mismatch"));

    // Back to its own card, it has used 85 GB: the provider's IT contact hears of 80 % once.
    phone.describe("PHONEA01", 1, Some(SIM_1), 85);
    phone.check_in().await;
    let cleared = kit
        .app
        .get("/api/v1/devices?sim_mismatch=true", &kit.admin)
        .await;
    assert_eq!(cleared.body["items"], json!([]));
    let mail = smtp.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(
        mail[0].to,
        [format!("it@{}.example", ORG_A.replace('-', ""))]
    );
    assert!(mail[0].subject.contains("80 %"), "{}", mail[0].subject);
    phone.describe("PHONEA01", 1, Some(SIM_1), 90);
    phone.check_in().await;
    phone.describe("PHONEA01", 1, Some(SIM_1), 101);
    phone.check_in().await;
    let mail = smtp.wait_for(2, std::time::Duration::from_secs(10)).await;
    assert!(mail[1].subject.contains("100 %"), "{}", mail[1].subject);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        smtp.received().len(),
        2,
        "each share is reported once a month"
    );
    assert_eq!(
        kit.app.count("deliveries WHERE topic = 'data_use'").await,
        2
    );

    // Terminated: out of the phone, and final.
    let ended = status("terminated").await;
    ended.expect(StatusCode::OK);
    assert!(ended.body["device_id"].is_null());
    assert!(ended.body["history"][0]["ended_at"].is_string());
    status("active")
        .await
        .expect_problem(StatusCode::CONFLICT, "sim-terminated");
}

async fn bad_leasing_requests_are_refused_with_what_must_happen_first_and_nothing_changes(
    backend: Backend,
) {
    let kit = kit(backend).await;
    let (_, user) = person(&kit, kit.provider_a, "anna@norr.example", "provider_user").await;
    let (bo, _) = person(&kit, kit.provider_b, "bo@syd.example", "provider_user").await;
    let (_, other_provider) =
        person(&kit, kit.provider_b, "it@syd.example", "provider_admin").await;
    let phone = kit
        .app
        .register_device(&kit.admin, "PHONEA01", &imei(1), None)
        .await;

    // Bad terms and holders.
    for body in [
        json!({ "device_id": phone, "provider_id": kit.provider_a }),
        json!({ "device_id": phone, "provider_id": kit.provider_a, "monthly_price_sek": -5 }),
        json!({ "device_id": phone, "provider_id": kit.provider_a, "monthly_price_sek": 100, "starts_on": "2026-12-01", "ends_on": "2026-11-01" }),
        json!({ "device_id": phone, "provider_id": kit.provider_a, "monthly_price_sek": 100, "holder_id": bo.id }),
        json!({ "device_id": phone, "provider_id": 999_999, "monthly_price_sek": 100 }),
        json!({ "device_id": 999_999, "provider_id": kit.provider_a, "monthly_price_sek": 100 }),
    ] {
        kit.app
            .post("/api/v1/leases", &kit.admin, body.clone())
            .await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    }
    // Only municipal IT leases.
    kit.app
        .post(
            "/api/v1/leases",
            &user,
            json!({ "device_id": phone, "provider_id": kit.provider_a, "monthly_price_sek": 100 }),
        )
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    // A provider user sees no leases, requests or loss overview: prices and colleagues' names
    // are for the IT contacts.
    for path in [
        "/api/v1/leases",
        "/api/v1/phone-requests",
        "/api/v1/lost-cases",
    ] {
        kit.app
            .get(path, &user)
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    }
    // A phone not leased cannot be returned, nor given a holder.
    kit.app
        .post(
            &format!("/api/v1/devices/{phone}/return"),
            &kit.admin,
            json!({}),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "not-leased");
    assert_eq!(kit.app.count("leases").await, 0);

    lease(&kit, phone, kit.provider_a, None)
        .await
        .expect(StatusCode::CREATED);
    // Leased already; another provider cannot return or even see it; its record does not move
    // it between providers.
    lease(&kit, phone, kit.provider_b, None)
        .await
        .expect_problem(StatusCode::CONFLICT, "lease-open");
    kit.app
        .post(
            &format!("/api/v1/devices/{phone}/return"),
            &other_provider,
            json!({}),
        )
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not-found");
    kit.app
        .post(&format!("/api/v1/devices/{phone}/return"), &user, json!({}))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    kit.app
        .patch(
            &format!("/api/v1/devices/{phone}"),
            &kit.admin,
            json!({ "provider_id": kit.provider_b }),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "lease-required");
    let unchanged = device(&kit, phone).await;
    assert_eq!(unchanged["provider_id"], kit.provider_a);
    assert_eq!(unchanged["status"], "leased");
    assert_eq!(kit.app.count("leases").await, 1);
    assert_eq!(kit.app.count("commands").await, 0);
}

async fn a_faulty_phone_leaves_for_the_supplier_only_wiped_and_a_compliant_replacement_takes_over_its_lease(
    backend: Backend,
) {
    let smtp = SmtpSink::start();
    let config = format!(
        "[notifications]\nsmtp_url = \"{}\"\nmail_from = \"it@kommun.example\"\n\
         [leasing]\nservice_desk_email = \"servicedesk@kommun.example\"\n",
        smtp.url()
    );
    let kit = Fleet::start(backend, &config, "2026-11-23T09:00:00Z").await;
    let (anna, _) = person(&kit, kit.provider_a, "anna@norr.example", "provider_user").await;
    let faulty = kit
        .app
        .post(
            "/api/v1/devices",
            &kit.admin,
            json!({ "platform": "ios", "model": "iPhone 16", "serial": "PHONEA01", "imei": imei(1),
                    "purchase_date": "2025-01-10", "warranty_end": "2027-01-10" }),
        )
        .await;
    faulty.expect(StatusCode::CREATED);
    let phone = AgentPhone {
        id: faulty.body["id"].as_i64().expect("id"),
        dir: tempfile::tempdir().expect("tempdir"),
    };
    phone.describe("PHONEA01", 1, None, 1);
    kit.enroll(&phone).await;
    let first = kit
        .app
        .post(
            "/api/v1/leases",
            &kit.admin,
            json!({ "device_id": phone.id, "provider_id": kit.provider_a, "monthly_price_sek": 249.5,
                    "ends_on": "2026-12-15", "holder_id": anna.id }),
        )
        .await;
    first.expect(StatusCode::CREATED);

    // Both show among the reminders: the warranty ends within 60 days, the lease within 30.
    let soon = kit.app.get("/api/v1/reminders", &kit.admin).await;
    soon.expect(StatusCode::OK);
    assert_eq!(
        soon.body["warranties_ending"][0]["device_id"], phone.id,
        "{}",
        soon.text
    );
    assert_eq!(soon.body["leases_ending"][0]["id"], first.body["id"]);
    let later = kit
        .app
        .get(
            "/api/v1/reminders?warranty_days=30&lease_days=10",
            &kit.admin,
        )
        .await;
    assert_eq!(
        later.body,
        json!({ "warranties_ending": [], "leases_ending": [] })
    );

    let opened = kit
        .app
        .post(
            "/api/v1/warranty-cases",
            &kit.admin,
            json!({ "device_id": phone.id, "fault": "Laddar inte, kontakten glapper" }),
        )
        .await;
    opened.expect(StatusCode::CREATED);
    assert_eq!(opened.body["under_warranty"], true);
    let case_path = format!("/api/v1/warranty-cases/{}", opened.body["id"]);
    let step = |to: &str| {
        let app = &kit.app;
        let admin = kit.admin.clone();
        let path = format!("{case_path}/state");
        let body = json!({ "state": to, "supplier_reference": "RMA-4711" });
        async move { app.post(&path, &admin, body).await }
    };
    kit.app
        .post(
            "/api/v1/warranty-cases",
            &kit.admin,
            json!({ "device_id": phone.id, "fault": "Något annat" }),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "warranty-case-open");
    step("repaired")
        .await
        .expect_problem(StatusCode::CONFLICT, "warranty-transition");
    // Not wiped yet: it may not leave.
    step("sent_to_supplier")
        .await
        .expect_problem(StatusCode::CONFLICT, "wipe-required");

    // Wiped by its agent, it goes.
    kit.app.clock.advance(Duration::minutes(1));
    kit.app
        .post(
            &format!("/api/v1/devices/{}/commands", phone.id),
            &kit.admin,
            json!({ "kind": "wipe" }),
        )
        .await
        .expect(StatusCode::CREATED);
    phone.check_in().await;
    let sent = step("sent_to_supplier").await;
    sent.expect(StatusCode::OK);
    assert_eq!(sent.body["supplier_reference"], "RMA-4711");
    assert_eq!(device(&kit, phone.id).await["status"], "in_repair");

    // The replacement must be enrolled and compliant before it takes over.
    let spare = kit
        .app
        .register_device(&kit.admin, "PHONEA02", &imei(2), None)
        .await;
    kit.app
        .post(
            &format!("{case_path}/swap"),
            &kit.admin,
            json!({ "replacement_device_id": spare }),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "replacement-not-enrolled");
    let replacement = AgentPhone {
        id: spare,
        dir: tempfile::tempdir().expect("tempdir"),
    };
    replacement.describe("PHONEA02", 2, None, 1);
    kit.enroll(&replacement).await;
    replacement.check_in().await;
    let swapped = kit
        .app
        .post(
            &format!("{case_path}/swap"),
            &kit.admin,
            json!({ "replacement_device_id": spare }),
        )
        .await;
    swapped.expect(StatusCode::OK);
    assert_eq!(swapped.body["lease"]["device_id"], spare);
    assert_eq!(swapped.body["lease"]["replaces_lease_id"], first.body["id"]);
    assert_eq!(swapped.body["lease"]["holder_id"], anna.id);
    assert_eq!(swapped.body["lease"]["monthly_price_sek"], 249.5);
    assert_eq!(swapped.body["lease"]["ends_on"], "2026-12-15");
    assert_eq!(swapped.body["case"]["replacement_device_id"], spare);
    let old = kit
        .app
        .get(&format!("/api/v1/leases/{}", first.body["id"]), &kit.admin)
        .await;
    assert_eq!(old.body["end_reason"], "swapped");
    assert_eq!(device(&kit, spare).await["holder_id"], anna.id);

    // The supplier replaced it: the faulty phone retires with its history, and the case closes.
    step("replaced").await.expect(StatusCode::OK);
    let closed = step("closed").await;
    closed.expect(StatusCode::OK);
    let states: Vec<&str> = closed.body["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| e["to_state"].as_str().expect("state"))
        .collect();
    assert_eq!(
        states,
        [
            "opened",
            "sent_to_supplier",
            "swapped",
            "replaced",
            "closed"
        ]
    );
    assert_eq!(device(&kit, phone.id).await["status"], "retired");
    assert_eq!(
        history(&kit, phone.id).await["holders"][0]["account_id"],
        anna.id
    );
    kit.app
        .post(
            "/api/v1/warranty-cases",
            &kit.admin,
            json!({ "device_id": phone.id, "fault": "Fortfarande trasig" }),
        )
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    step("repaired")
        .await
        .expect_problem(StatusCode::CONFLICT, "warranty-transition");
}
