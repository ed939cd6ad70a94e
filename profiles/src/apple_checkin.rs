//! Apple's MDM check-in messages (`Authenticate`, `TokenUpdate`, `CheckOut`), the property
//! lists an iPhone PUTs to the check-in URL, and the bounded reading of property lists that
//! phones send. Fields Apple marks required but real phones leave out (`Model`, `ModelName`)
//! are optional here; the server decides what it needs.

use agent_protocol::DeviceFacts;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The largest property list a phone may send.
pub const MAX_PLIST_BYTES: usize = 256 * 1024;
/// The deepest nesting of dictionaries and arrays accepted.
pub const MAX_PLIST_DEPTH: usize = 24;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "MessageType")]
pub enum CheckinMessage {
    Authenticate(Authenticate),
    TokenUpdate(TokenUpdate),
    CheckOut(CheckOut),
    /// `UserAuthenticate`, bootstrap tokens, declarative management: not offered by this
    /// server.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Authenticate {
    #[serde(rename = "UDID")]
    pub udid: String,
    pub topic: String,
    pub serial_number: Option<String>,
    #[serde(rename = "IMEI")]
    pub imei: Option<String>,
    #[serde(rename = "MEID")]
    pub meid: Option<String>,
    pub model: Option<String>,
    pub model_name: Option<String>,
    /// `iPhone14,6`.
    pub product_name: Option<String>,
    #[serde(rename = "OSVersion")]
    pub os_version: Option<String>,
    pub build_version: Option<String>,
    pub device_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenUpdate {
    #[serde(rename = "UDID")]
    pub udid: String,
    pub topic: String,
    /// The APNs device token: opaque bytes.
    pub token: plist::Data,
    pub push_magic: String,
    pub awaiting_configuration: Option<bool>,
    // `UnlockToken` is not read: the server never keeps it.
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckOut {
    #[serde(rename = "UDID")]
    pub udid: String,
    pub topic: String,
}

/// What an iPhone PUTs to the connect URL: `Idle` when it asks for work, or its answer to the
/// command it was last given (`CommandUUID` quotes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectMessage {
    #[serde(rename = "UDID")]
    pub udid: String,
    pub status: ConnectStatus,
    #[serde(
        rename = "CommandUUID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub command_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_chain: Option<Vec<ErrorChainItem>>,
    /// A `DeviceInformation` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_responses: Option<plist::Dictionary>,
    /// A `SecurityInfo` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_info: Option<plist::Dictionary>,
    /// A `ProfileList` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_list: Option<Vec<plist::Dictionary>>,
    /// An `InstalledApplicationList` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_application_list: Option<Vec<plist::Dictionary>>,
}

/// Folds a `SecurityInfo` answer into the facts: whether a passcode is set and meets the
/// installed profiles (Apple reports neither its length nor its kind), and data protection,
/// which needs a passcode and both block- and file-level hardware encryption
/// (`HardwareEncryptionCaps` 3).
pub fn security_into_facts(info: &plist::Dictionary, facts: &mut DeviceFacts) {
    let flag = |key: &str| info.get(key).and_then(plist::Value::as_boolean);
    let present = flag("PasscodePresent").unwrap_or(false);
    facts.pin.set = present;
    facts.pin.length = None;
    facts.pin.numeric = None;
    facts
        .pin
        .by_profile
        .get_or_insert_with(Default::default)
        .compliant_with_profiles = flag("PasscodeCompliantWithProfiles");
    let caps = info
        .get("HardwareEncryptionCaps")
        .and_then(plist::Value::as_signed_integer);
    facts.disk_encrypted = present && caps == Some(3);
}

/// Folds a `ProfileList` answer into the facts: the `PayloadUUID` of the standard profile the
/// phone has installed, if it has it.
pub fn profiles_into_facts(list: &[plist::Dictionary], facts: &mut DeviceFacts) {
    let installed = list
        .iter()
        .find(|p| {
            p.get("PayloadIdentifier").and_then(plist::Value::as_string)
                == Some(crate::apple::STANDARD_PROFILE)
        })
        .and_then(|p| p.get("PayloadUUID").and_then(plist::Value::as_string))
        .map(str::to_string);
    facts
        .pin
        .by_profile
        .get_or_insert_with(Default::default)
        .installed_profile = installed;
}

/// Folds an `InstalledApplicationList` answer into the facts: each app's bundle id and its
/// version as people know it (`ShortVersion`, else the build `Version`).
pub fn apps_into_facts(list: &[plist::Dictionary], facts: &mut DeviceFacts) {
    let text = |app: &plist::Dictionary, key: &str| {
        app.get(key)
            .and_then(plist::Value::as_string)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    facts.installed_apps = list
        .iter()
        .filter_map(|app| {
            Some(agent_protocol::InstalledApp {
                id: text(app, "Identifier")?,
                version: text(app, "ShortVersion")
                    .or_else(|| text(app, "Version"))
                    .unwrap_or_default(),
            })
        })
        .collect();
}

/// Folds an iPhone's `DeviceInformation` answer (`QueryResponses`) into the facts the server
/// keeps for every phone; what the answer leaves out stays as it was. Apple writes the IMEI
/// and ICCID in groups with spaces, the battery as a fraction and capacities in gigabytes.
pub fn information_into_facts(responses: &plist::Dictionary, facts: &mut DeviceFacts) {
    use plist::Value;
    let text = |key: &str| {
        responses
            .get(key)
            .and_then(Value::as_string)
            .map(str::trim)
            .filter(|t| !t.is_empty())
    };
    let number = |key: &str| {
        responses.get(key).and_then(|v| {
            v.as_real()
                .or_else(|| v.as_signed_integer().map(|i| i as f64))
        })
    };
    let compact = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    if let Some(v) = text("OSVersion") {
        facts.os_version = v.to_string();
    }
    if let Some(v) = text("ProductName") {
        facts.model = v.to_string();
    }
    if let Some(v) = text("SerialNumber") {
        facts.serial = v.to_string();
    }
    if let Some(v) = text("IMEI") {
        facts.imei = compact(v);
    }
    if responses.contains_key("ICCID") {
        facts.iccid = text("ICCID").map(compact);
    }
    if let Some(level) = number("BatteryLevel").filter(|l| (0.0..=1.0).contains(l)) {
        facts.battery_percent = Some((level * 100.0).round() as u8);
    }
    let bytes = |gb: f64| (gb.max(0.0) * 1e9) as u64;
    if let Some(gb) = number("AvailableDeviceCapacity") {
        facts.storage_free_bytes = Some(bytes(gb));
    }
    if let Some(gb) = number("DeviceCapacity") {
        facts.storage_total_bytes = Some(bytes(gb));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectStatus {
    Idle,
    Acknowledged,
    Error,
    CommandFormatError,
    NotNow,
}

/// One link of the `ErrorChain` an iPhone sends with `Error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorChainItem {
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_domain: Option<String>,
    #[serde(default)]
    pub localized_description: Option<String>,
    #[serde(default, rename = "USEnglishDescription")]
    pub us_english_description: Option<String>,
}

impl ConnectMessage {
    /// The error in words: each link's English description (or else its localised one),
    /// with its domain and code, outermost first.
    pub fn error_words(&self) -> Option<String> {
        let chain = self.error_chain.as_ref()?;
        let words: Vec<String> = chain
            .iter()
            .map(|e| {
                let text = e
                    .us_english_description
                    .as_deref()
                    .or(e.localized_description.as_deref())
                    .unwrap_or("no description");
                match (&e.error_domain, e.error_code) {
                    (Some(domain), Some(code)) => format!("{text} ({domain} {code})"),
                    _ => text.to_string(),
                }
            })
            .collect();
        (!words.is_empty()).then(|| words.join("; "))
    }
}

/// Why a property list was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlistError {
    #[error("the property list is larger than {MAX_PLIST_BYTES} bytes")]
    TooLarge,
    #[error("the property list nests deeper than {MAX_PLIST_DEPTH} levels")]
    TooDeep,
    #[error("only XML property lists are accepted")]
    NotXml,
    #[error("the property list cannot be read: {0}")]
    Malformed(String),
}

/// Reads an XML property list a phone sent, within the size and depth limits: the depth is
/// counted before the parser sees the text, so a hostile nesting never reaches it.
pub fn read_plist<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PlistError> {
    if bytes.len() > MAX_PLIST_BYTES {
        return Err(PlistError::TooLarge);
    }
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    if !bytes[start..].starts_with(b"<") {
        return Err(PlistError::NotXml);
    }
    if nesting(bytes) > MAX_PLIST_DEPTH {
        return Err(PlistError::TooDeep);
    }
    plist::from_bytes(bytes).map_err(|e| PlistError::Malformed(e.to_string()))
}

/// The deepest nesting of `<dict>` and `<array>` elements in XML text.
fn nesting(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| b == b'<') {
        rest = &rest[at + 1..];
        let opens = rest.starts_with(b"dict") || rest.starts_with(b"array");
        let closes = rest.starts_with(b"/dict") || rest.starts_with(b"/array");
        let end = rest.iter().position(|&b| b == b'>').unwrap_or(rest.len());
        let empty = end > 0 && rest[end - 1] == b'/';
        if opens && !empty {
            depth += 1;
            deepest = deepest.max(depth);
        } else if closes {
            depth = depth.saturating_sub(1);
        }
    }
    deepest
}

/// A message as XML property-list bytes (what the simulated iPhone sends).
pub fn to_plist<T: Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Writing to memory cannot fail for these types.
    let _ = plist::to_writer_xml(&mut bytes, message);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An iPhone's facts as `Authenticate` leaves them.
    fn iphone_facts() -> DeviceFacts {
        serde_json::from_value(serde_json::json!({
            "platform": "ios", "model": "iPhone", "os_version": "18.1", "serial": "F2LXK0ABHG7F",
            "imei": "350000000000015", "iccid": null, "phone_number": null, "battery_percent": null,
            "storage_free_bytes": null, "storage_total_bytes": null, "mobile_data_bytes_this_month": null,
            "agent_version": ""
        }))
        .expect("facts")
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/apple-wire")
            .join(name);
        std::fs::read(path).expect("fixture")
    }

    #[test]
    fn a_real_command_answer_is_read_as_acknowledged_with_its_uuid() {
        let answer: ConnectMessage =
            read_plist(&fixture("DeviceInformation.1.plist")).expect("answer");
        assert_eq!(answer.status, ConnectStatus::Acknowledged);
        assert_eq!(
            answer.command_uuid.as_deref(),
            Some("76eda240-5488-4989-8339-f2ae160113c4")
        );
        assert_eq!(answer.udid, "66ADE930-5FDF-5EC4-8429-15640684C489");
    }

    #[test]
    fn an_information_answer_updates_the_facts_it_holds_and_keeps_the_rest() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>UDID</key><string>X</string><key>Status</key><string>Acknowledged</string>
<key>CommandUUID</key><string>7</string>
<key>QueryResponses</key><dict>
<key>OSVersion</key><string>18.2</string><key>ProductName</key><string>iPhone14,6</string>
<key>IMEI</key><string>35 000000 000001 5</string><key>ICCID</key><string>8946 0000 0000 0000 0019</string>
<key>BatteryLevel</key><real>0.87</real><key>AvailableDeviceCapacity</key><real>41.5</real>
<key>DeviceCapacity</key><real>64</real>
</dict></dict></plist>"#;
        let answer: ConnectMessage = read_plist(text.as_bytes()).expect("answer");
        let mut facts = iphone_facts();
        information_into_facts(
            answer.query_responses.as_ref().expect("responses"),
            &mut facts,
        );
        assert_eq!(facts.os_version, "18.2");
        assert_eq!(facts.model, "iPhone14,6");
        assert_eq!(facts.serial, "F2LXK0ABHG7F");
        assert_eq!(facts.imei, "350000000000015");
        assert_eq!(facts.iccid.as_deref(), Some("89460000000000000019"));
        assert_eq!(facts.battery_percent, Some(87));
        assert_eq!(facts.storage_free_bytes, Some(41_500_000_000));
        assert_eq!(facts.storage_total_bytes, Some(64_000_000_000));
    }

    #[test]
    fn security_profile_and_app_answers_become_passcode_evidence_encryption_and_apps() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>UDID</key><string>X</string><key>Status</key><string>Acknowledged</string>
<key>CommandUUID</key><string>7.security</string>
<key>SecurityInfo</key><dict>
<key>HardwareEncryptionCaps</key><integer>3</integer><key>PasscodePresent</key><true/>
<key>PasscodeCompliant</key><true/><key>PasscodeCompliantWithProfiles</key><false/>
</dict>
<key>ProfileList</key><array>
<dict><key>PayloadIdentifier</key><string>com.example.wifi</string><key>PayloadUUID</key><string>W</string></dict>
<dict><key>PayloadIdentifier</key><string>se.kommun.mdm.standard</string><key>PayloadUUID</key><string>S</string></dict>
</array>
<key>InstalledApplicationList</key><array>
<dict><key>Identifier</key><string>se.phoniro.ios</string><key>ShortVersion</key><string>5.3.1</string><key>Version</key><string>531</string></dict>
<dict><key>Identifier</key><string>se.kommun.build</string><key>Version</key><string>17</string></dict>
<dict><key>Name</key><string>No identifier</string></dict>
</array>
</dict></plist>"#;
        let answer: ConnectMessage = read_plist(text.as_bytes()).expect("answer");
        let mut facts = iphone_facts();
        security_into_facts(answer.security_info.as_ref().expect("info"), &mut facts);
        profiles_into_facts(answer.profile_list.as_deref().expect("list"), &mut facts);
        apps_into_facts(
            answer.installed_application_list.as_deref().expect("apps"),
            &mut facts,
        );
        assert!(facts.pin.set && facts.disk_encrypted);
        assert_eq!(facts.pin.length, None, "Apple does not say");
        let evidence = facts.pin.by_profile.clone().expect("evidence");
        assert_eq!(evidence.installed_profile.as_deref(), Some("S"));
        assert_eq!(evidence.compliant_with_profiles, Some(false));
        let apps: Vec<(&str, &str)> = facts
            .installed_apps
            .iter()
            .map(|a| (a.id.as_str(), a.version.as_str()))
            .collect();
        assert_eq!(
            apps,
            [("se.phoniro.ios", "5.3.1"), ("se.kommun.build", "17")]
        );

        // Without a passcode there is no data protection, whatever the hardware.
        let mut bare = plist::Dictionary::new();
        bare.insert("HardwareEncryptionCaps".into(), 3.into());
        bare.insert("PasscodePresent".into(), false.into());
        security_into_facts(&bare, &mut facts);
        assert!(!facts.pin.set && !facts.disk_encrypted);
    }

    #[test]
    fn an_error_chain_is_put_in_words_outermost_first() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>UDID</key><string>X</string><key>Status</key><string>Error</string>
<key>CommandUUID</key><string>7</string>
<key>ErrorChain</key><array>
<dict><key>ErrorCode</key><integer>12021</integer><key>ErrorDomain</key><string>MCMDMErrorDomain</string>
<key>LocalizedDescription</key><string>Kan inte låsa</string><key>USEnglishDescription</key><string>Cannot lock</string></dict>
<dict><key>LocalizedDescription</key><string>Busy</string></dict>
</array></dict></plist>"#;
        let answer: ConnectMessage = read_plist(text.as_bytes()).expect("answer");
        assert_eq!(answer.status, ConnectStatus::Error);
        assert_eq!(
            answer.error_words().as_deref(),
            Some("Cannot lock (MCMDMErrorDomain 12021); Busy")
        );
    }

    #[test]
    fn real_authenticate_messages_are_read_with_their_identifiers() {
        let CheckinMessage::Authenticate(a) =
            read_plist(&fixture("Authenticate.1.plist")).expect("read")
        else {
            panic!("not Authenticate");
        };
        assert_eq!(a.udid, "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69");
        assert_eq!(a.serial_number.as_deref(), Some("F5JM992LF193"));
        assert_eq!(a.product_name.as_deref(), Some("iPad2,5"));
        assert_eq!(a.model, None, "real phones leave Model out");
        assert!(matches!(
            read_plist::<CheckinMessage>(&fixture("Authenticate.2.plist")).expect("read"),
            CheckinMessage::Authenticate(_)
        ));
    }

    #[test]
    fn real_token_updates_carry_the_push_token_as_bytes() {
        for name in ["TokenUpdate.1.plist", "TokenUpdate.2.plist"] {
            let CheckinMessage::TokenUpdate(t) = read_plist(&fixture(name)).expect("read") else {
                panic!("{name}: not TokenUpdate");
            };
            assert_eq!(Vec::from(t.token.clone()).len(), 32, "{name}");
            assert!(!t.push_magic.is_empty());
            assert!(t.topic.starts_with("com.apple.mgmt."));
        }
    }

    #[test]
    fn other_message_types_are_recognised_as_not_offered() {
        let body = to_plist(&plist::Value::Dictionary(
            [(
                "MessageType".to_string(),
                plist::Value::from("UserAuthenticate"),
            )]
            .into_iter()
            .collect(),
        ));
        assert_eq!(
            read_plist::<CheckinMessage>(&body).expect("read"),
            CheckinMessage::Other
        );
    }

    #[test]
    fn hostile_and_broken_property_lists_are_refused() {
        let deep = format!(
            "<plist>{}{}</plist>",
            "<array>".repeat(MAX_PLIST_DEPTH + 1),
            "</array>".repeat(MAX_PLIST_DEPTH + 1)
        );
        assert_eq!(
            read_plist::<plist::Value>(deep.as_bytes()).expect_err("deep"),
            PlistError::TooDeep
        );
        assert_eq!(
            read_plist::<plist::Value>(&vec![b' '; MAX_PLIST_BYTES + 1]).expect_err("big"),
            PlistError::TooLarge
        );
        assert_eq!(
            read_plist::<plist::Value>(b"bplist00...").expect_err("binary"),
            PlistError::NotXml
        );
        assert!(matches!(
            read_plist::<CheckinMessage>(b"<plist><dict><key>MessageType</key></plist>"),
            Err(PlistError::Malformed(_))
        ));
        // Empty elements do not count as nesting.
        assert_eq!(nesting(b"<dict><array/><dict/></dict>"), 1);
    }
}
