//! The standard phone policy on iPhones: the server sends the signed profile of the policy as it
//! stands (and again, after a push, when the policy changes), and judges the passcode, which
//! Apple does not measure for a server, by the profile being installed and the phone saying its
//! passcode meets it. The simulated iPhone checks the profile's signature and works out whether
//! its passcode meets the profile's least length as iOS does. Both backends.

use mdm_tests::apns::{enrolled, pushed_fleet};
use mdm_tests::{backend_tests, Backend, Fleet};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

backend_tests!(
    a_policy_change_reaches_an_iphone_as_a_new_profile_and_its_passcode_is_judged_by_what_it_says_of_the_profile,
    an_iphone_that_declines_the_profile_is_non_compliant_because_nothing_enforces_its_passcode,
    an_app_the_policy_requires_is_installed_on_an_iphone_that_lacks_it_with_its_managed_settings,
);

async fn compliance(kit: &Fleet, device: i64) -> Value {
    let r = kit
        .app
        .get(&format!("/api/v1/devices/{device}/compliance"), &kit.admin)
        .await;
    r.expect(StatusCode::OK);
    r.body
}

fn codes(compliance: &Value) -> Vec<String> {
    compliance["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r["code"].as_str().expect("code").to_string())
        .collect()
}

async fn set_policy(kit: &Fleet, body: Value) {
    kit.app
        .request(Method::PUT, "/api/v1/policy", Some(&kit.admin), Some(body))
        .await
        .expect(StatusCode::OK);
}

async fn a_policy_change_reaches_an_iphone_as_a_new_profile_and_its_passcode_is_judged_by_what_it_says_of_the_profile(
    backend: Backend,
) {
    let p = pushed_fleet(backend, 365).await;
    set_policy(&p.kit, json!({ "pin_min_length": 4 })).await;
    let (device, mut phone) = enrolled(&p, "F2LXK0POLI01", 1).await;
    let first = phone.profiles.clone();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, "se.kommun.mdm.standard");
    assert_eq!(first[0].2, Some(4), "the profile requires four");
    phone.passcode = Some("4829".into());
    // The phone answered at enrollment with its six-digit passcode; now it has four.
    p.kit
        .queue_command(device, json!({ "kind": "refresh_information" }))
        .await;
    phone.work().await;
    let judged = compliance(&p.kit, device).await;
    let reasons = codes(&judged);
    assert!(
        !reasons
            .iter()
            .any(|c| c.contains("pin") || c.contains("passcode")),
        "{judged}"
    );

    // The policy asks for six: the phone is pushed, gets the new profile and says its
    // four-digit passcode does not meet it.
    let token = phone.push_token_hex();
    let before = p.apns.received_for(&token).len();
    set_policy(&p.kit, json!({ "pin_min_length": 6 })).await;
    p.apns.wait_for(&token, before + 1).await;
    assert_eq!(phone.work().await, ["InstallProfile", "SecurityInfo"]);
    assert_eq!(phone.profiles.len(), 1, "the new version replaced the old");
    assert_ne!(phone.profiles[0].1, first[0].1, "a new PayloadUUID");
    assert_eq!(phone.profiles[0].2, Some(6));
    let judged = compliance(&p.kit, device).await;
    assert_eq!(judged["status"], "non_compliant", "{judged}");
    let reason = judged["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .find(|r| r["code"] == "pin_not_compliant")
        .unwrap_or_else(|| panic!("pin_not_compliant in {judged}"));
    let words = reason["message"].as_str().expect("message");
    assert!(
        words.contains("at least 6 digits") && words.contains("Apple does not report"),
        "{words}"
    );
    // Nothing more to send while the phone has the profile of the policy as it stands.
    assert!(phone.work().await.is_empty());

    // The person sets a longer passcode; the next inventory says it meets the profile.
    phone.passcode = Some("48291573".into());
    p.kit
        .queue_command(device, json!({ "kind": "refresh_information" }))
        .await;
    phone.work().await;
    let judged = compliance(&p.kit, device).await;
    assert!(
        !codes(&judged)
            .iter()
            .any(|c| c.contains("pin") || c.contains("passcode")),
        "{judged}"
    );
}

async fn an_iphone_that_declines_the_profile_is_non_compliant_because_nothing_enforces_its_passcode(
    backend: Backend,
) {
    let p = pushed_fleet(backend, 365).await;
    let (device, mut phone) = enrolled(&p, "F2LXK0DECL01", 1).await;
    // The person removes the standard profile (a supervised phone would not let them).
    phone.profiles.clear();
    p.kit
        .queue_command(device, json!({ "kind": "refresh_information" }))
        .await;
    // The inventory finds it missing; the profile goes out again, and this time the phone
    // answers with an error.
    let (_, mut next) = phone.next_command().await;
    let mut seen = Vec::new();
    while let Some(command) = next {
        seen.push(command.request_type.clone());
        next = if command.request_type == "InstallProfile" {
            phone
                .answer(
                    &command.uuid,
                    "Error",
                    Some("The user declined the profile"),
                )
                .await
                .1
        } else {
            phone.carry_out(&command).await.1
        };
    }
    assert_eq!(
        seen,
        [
            "DeviceInformation",
            "SecurityInfo",
            "ProfileList",
            "InstalledApplicationList",
            "InstallProfile"
        ]
    );
    let judged = compliance(&p.kit, device).await;
    assert_eq!(judged["status"], "non_compliant", "{judged}");
    assert!(
        codes(&judged).contains(&"passcode_profile_missing".to_string()),
        "{judged}"
    );
}

async fn an_app_the_policy_requires_is_installed_on_an_iphone_that_lacks_it_with_its_managed_settings(
    backend: Backend,
) {
    let p = pushed_fleet(backend, 365).await;
    p.kit.catalogue_phoniro().await;
    set_policy(
        &p.kit,
        json!({ "required_apps": [{ "app": "phoniro", "settings": { "tenant": "norr" } }] }),
    )
    .await;
    // The new phone's app list lacks the app: the server installs it with its settings.
    let (device, mut phone) = enrolled(&p, "F2LXK0APPS01", 1).await;
    assert!(
        phone.apps.iter().any(|(id, _)| id == "se.phoniro.ios"),
        "{:?}",
        phone.apps
    );
    let settings = &phone.app_settings["se.phoniro.ios"];
    assert_eq!(settings["tenant"].as_string(), Some("norr"));
    let installs: Vec<Value> = p
        .kit
        .device_commands(device)
        .await
        .into_iter()
        .filter(|c| c["kind"] == "install_app")
        .collect();
    assert_eq!(installs.len(), 1, "{installs:?}");
    assert_eq!(installs[0]["state"], "acknowledged");
    // The next inventory finds it, and does not install it again.
    p.kit
        .queue_command(device, json!({ "kind": "refresh_information" }))
        .await;
    assert_eq!(
        phone.work().await,
        [
            "DeviceInformation",
            "SecurityInfo",
            "ProfileList",
            "InstalledApplicationList"
        ]
    );
    let judged = compliance(&p.kit, device).await;
    assert!(
        !codes(&judged).iter().any(|c| c.starts_with("app_")),
        "{judged}"
    );
}
