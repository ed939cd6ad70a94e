//! Every key of the configuration profiles we render is checked against Apple's published
//! device-management schemas (the YAML files in `tests/apple-schemas`, copied with their
//! licence from apple/device-management): the key must exist for its payload type, its value
//! must have the schema's type, and integers must lie in the schema's range or list.

use plist::{Dictionary, Value};
use profiles::apple::{
    configuration_profile, enrollment_profile, to_xml, Enrollment, ProfileIdentity,
};
use profiles::apple_commands::{AppStoreApp, AppleCommand, ReturnToService};
use profiles::policy::{effective, PolicyLayer, Source};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Schema {
    payload: Payload,
    /// Absent for a command without keys (`DisableLostMode`).
    #[serde(default)]
    payloadkeys: Vec<Key>,
}

#[derive(Debug, Deserialize)]
struct Payload {
    /// Configuration profile payloads.
    payloadtype: Option<String>,
    /// MDM commands.
    requesttype: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Key {
    key: String,
    #[serde(rename = "type")]
    kind: String,
    range: Option<Range>,
    rangelist: Option<Vec<serde_norway::Value>>,
    presence: Option<String>,
    /// The keys of a dictionary value.
    #[serde(default)]
    subkeys: Vec<Key>,
}

#[derive(Debug, Deserialize)]
struct Range {
    min: Option<i64>,
    max: Option<i64>,
}

fn schema(file: &str) -> Schema {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/apple-schemas")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("schema file");
    serde_norway::from_str(&text).expect("schema YAML")
}

/// Checks every key of `dict` against `keys`; returns what is wrong.
fn check(dict: &Dictionary, keys: &[&Key], what: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for (name, value) in dict {
        // `ANY` stands for keys the schema leaves free (an app's managed configuration).
        let Some(key) = keys.iter().find(|k| &k.key == name || k.key == "ANY") else {
            wrong.push(format!("{what}: {name} is not a key of the schema"));
            continue;
        };
        let type_ok = match key.kind.as_str() {
            "<boolean>" => value.as_boolean().is_some(),
            "<integer>" => value.as_signed_integer().is_some(),
            "<string>" => value.as_string().is_some(),
            "<array>" => value.as_array().is_some(),
            "<dictionary>" => value.as_dictionary().is_some(),
            "<data>" => value.as_data().is_some(),
            "<any>" => true,
            other => {
                wrong.push(format!(
                    "{what}: {name} has schema type {other} this check does not know"
                ));
                true
            }
        };
        if !type_ok {
            wrong.push(format!(
                "{what}: {name} should be {} but is {value:?}",
                key.kind
            ));
        }
        if let Some(n) = value.as_signed_integer() {
            if let Some(range) = &key.range {
                if range.min.is_some_and(|min| n < min) || range.max.is_some_and(|max| n > max) {
                    wrong.push(format!("{what}: {name} = {n} is outside {:?}", range));
                }
            }
            if let Some(list) = &key.rangelist {
                if !list.iter().any(|v| v.as_i64() == Some(n)) {
                    wrong.push(format!("{what}: {name} = {n} is not one of {list:?}"));
                }
            }
        }
        if let (Some(s), Some(list)) = (value.as_string(), &key.rangelist) {
            if !list.iter().any(|v| v.as_str() == Some(s)) {
                wrong.push(format!("{what}: {name} = {s} is not one of {list:?}"));
            }
        }
        if let (Some(inner), false) = (value.as_dictionary(), key.subkeys.is_empty()) {
            let subkeys: Vec<&Key> = key.subkeys.iter().collect();
            wrong.extend(check(inner, &subkeys, &format!("{what}.{name}")));
        }
    }
    for key in keys {
        if key.presence.as_deref() == Some("required") && !dict.contains_key(&key.key) {
            wrong.push(format!("{what}: the required key {} is missing", key.key));
        }
    }
    wrong
}

fn profile_for(layer: serde_json::Value) -> Dictionary {
    let layer: PolicyLayer = serde_json::from_value(layer).expect("layer");
    layer.validate().expect("a valid policy");
    let policy = effective(&[(Source::Operator, &layer)]);
    let profile = configuration_profile(
        &policy,
        ProfileIdentity {
            identifier: "se.kommun.mdm.standard",
            organisation: "Kommunens IT – vård och omsorg",
            display_name: "Standardtelefon",
        },
    );
    // What is checked is what a phone would parse.
    plist::from_bytes(&to_xml(&profile)).expect("the profile parses as a property list")
}

#[test]
fn every_key_of_the_profile_is_in_apples_schemas_with_its_type_and_range() {
    let top = schema("TopLevel.yaml");
    let common = schema("CommonPayloadKeys.yaml");
    let payloads = [
        schema("com.apple.mobiledevice.passwordpolicy.yaml"),
        schema("com.apple.applicationaccess.yaml"),
    ];
    // The built-in policy, and the extremes every setting may take.
    let policies = [
        serde_json::json!({}),
        serde_json::json!({ "pin_min_length": 4, "pin_max_failed_attempts": 2, "auto_lock_minutes": 1,
                            "pin_numeric_allowed": false, "allow_camera": false, "allow_screenshots": false,
                            "allow_cloud_backup": false }),
        serde_json::json!({ "pin_min_length": 16, "pin_max_failed_attempts": 11, "auto_lock_minutes": 15 }),
    ];
    for policy in policies {
        let profile = profile_for(policy.clone());
        let mut wrong = check(
            &profile,
            &top.payloadkeys.iter().collect::<Vec<_>>(),
            "top level",
        );
        let content = profile["PayloadContent"]
            .as_array()
            .expect("PayloadContent");
        assert_eq!(content.len(), 2);
        for item in content {
            let dict = item.as_dictionary().expect("a payload is a dictionary");
            let kind = dict["PayloadType"].as_string().expect("PayloadType");
            let schema = payloads
                .iter()
                .find(|s| s.payload.payloadtype.as_deref() == Some(kind))
                .unwrap_or_else(|| panic!("no schema for {kind}"));
            let keys: Vec<&Key> = common
                .payloadkeys
                .iter()
                .chain(schema.payloadkeys.iter())
                .collect();
            wrong.extend(check(dict, &keys, kind));
        }
        assert!(wrong.is_empty(), "{policy}: {wrong:#?}");
    }
}

#[test]
fn the_check_itself_catches_a_wrong_key_type_and_range() {
    let passcode = schema("com.apple.mobiledevice.passwordpolicy.yaml");
    let keys: Vec<&Key> = passcode.payloadkeys.iter().collect();
    let mut bad = Dictionary::new();
    bad.insert("minLength".into(), Value::from(17u64));
    bad.insert("forcePIN".into(), Value::from("yes"));
    bad.insert("pinLength".into(), Value::from(4u64));
    let wrong = check(&bad, &keys, "passcode");
    assert_eq!(wrong.len(), 3, "{wrong:#?}");
}

#[test]
fn every_key_of_every_command_is_in_apples_command_schemas_with_its_type() {
    let mut configuration = Dictionary::new();
    configuration.insert("tenant".into(), Value::from("norr"));
    let commands = [
        (
            "device.lock.yaml",
            AppleCommand::Lock {
                message: Some("Ring IT".into()),
                phone_number: Some("+46812345678".into()),
            },
        ),
        (
            "device.erase.yaml",
            AppleCommand::Erase {
                return_to_service: None,
            },
        ),
        (
            "device.erase.yaml",
            AppleCommand::Erase {
                return_to_service: Some(ReturnToService {
                    mdm_profile: b"<signed enrollment profile>".to_vec(),
                    wifi_profile: Some(b"<signed wifi profile>".to_vec()),
                }),
            },
        ),
        (
            "device.lostmode.enable.yaml",
            AppleCommand::LostModeOn {
                message: Some("Hittad?".into()),
                phone_number: Some("+46812345678".into()),
                footnote: Some("Kommunens IT".into()),
            },
        ),
        ("device.lostmode.disable.yaml", AppleCommand::LostModeOff),
        (
            "application.install.yaml",
            AppleCommand::InstallApp {
                app: AppStoreApp::StoreId(1_234_567_890),
                configuration: Some(configuration.clone()),
            },
        ),
        (
            "application.install.yaml",
            AppleCommand::InstallApp {
                app: AppStoreApp::BundleId("se.phoniro.ios".into()),
                configuration: Some(configuration),
            },
        ),
        (
            "application.remove.yaml",
            AppleCommand::RemoveApp {
                bundle_id: "se.phoniro.ios".into(),
            },
        ),
        ("information.device.yaml", AppleCommand::RefreshInformation),
        ("device.restart.yaml", AppleCommand::Restart),
        ("information.security.yaml", AppleCommand::SecurityInfo),
        ("profile.list.yaml", AppleCommand::ProfileList),
        (
            "application.installed.list.yaml",
            AppleCommand::InstalledApplicationList,
        ),
        (
            "profile.install.yaml",
            AppleCommand::InstallProfile {
                payload: b"<signed profile>".to_vec(),
            },
        ),
    ];
    for (file, command) in commands {
        let schema = schema(&format!("commands/{file}"));
        // What is checked is what a phone would parse.
        let message: Dictionary = plist::from_bytes(&command.to_plist("17")).expect("plist");
        let mut body = message["Command"].as_dictionary().expect("Command").clone();
        let request = body.remove("RequestType").expect("RequestType");
        assert_eq!(
            request.as_string(),
            schema.payload.requesttype.as_deref(),
            "{file}"
        );
        let wrong = check(&body, &schema.payloadkeys.iter().collect::<Vec<_>>(), file);
        assert!(wrong.is_empty(), "{file}: {wrong:#?}");
    }
}

#[test]
fn every_key_of_the_enrollment_profile_is_in_apples_schemas_and_the_mdm_payload_names_the_scep_identity(
) {
    let top = schema("TopLevel.yaml");
    let common = schema("CommonPayloadKeys.yaml");
    let payloads = [
        schema("com.apple.security.root.yaml"),
        schema("com.apple.security.scep.yaml"),
        schema("com.apple.mdm.yaml"),
    ];
    let profile = enrollment_profile(Enrollment {
        id: ProfileIdentity {
            identifier: "se.kommun.mdm.enrollment",
            organisation: "Kommunens IT",
            display_name: "Kommunens enhetshantering",
        },
        root_der: b"not really a certificate, but data",
        scep_url: "https://mdm.kommun.se:8443/scep",
        challenge: "secret",
        subject: "iPhone",
        server_url: "https://mdm.kommun.se:8443/mdm/connect",
        checkin_url: "https://mdm.kommun.se:8443/mdm/checkin",
        topic: "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9",
    });
    let profile: Dictionary =
        plist::from_bytes(&to_xml(&profile)).expect("the profile parses as a property list");
    let mut wrong = check(
        &profile,
        &top.payloadkeys.iter().collect::<Vec<_>>(),
        "top level",
    );
    let content = profile["PayloadContent"]
        .as_array()
        .expect("PayloadContent");
    assert_eq!(content.len(), 3);
    for item in content {
        let dict = item.as_dictionary().expect("a payload is a dictionary");
        let kind = dict["PayloadType"].as_string().expect("PayloadType");
        let schema = payloads
            .iter()
            .find(|s| s.payload.payloadtype.as_deref() == Some(kind))
            .unwrap_or_else(|| panic!("no schema for {kind}"));
        let keys: Vec<&Key> = common
            .payloadkeys
            .iter()
            .chain(schema.payloadkeys.iter())
            .collect();
        wrong.extend(check(dict, &keys, kind));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let scep = content[1].as_dictionary().expect("scep");
    let mdm = content[2].as_dictionary().expect("mdm");
    assert_eq!(mdm["IdentityCertificateUUID"], scep["PayloadUUID"]);
    let scep_content = scep["PayloadContent"].as_dictionary().expect("content");
    assert_eq!(scep_content["Keysize"].as_unsigned_integer(), Some(2048));
    assert_eq!(scep_content["Challenge"].as_string(), Some("secret"));
}
