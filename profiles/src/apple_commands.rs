//! Apple MDM command payloads for the commands municipal IT sends: the plist an iPhone fetches
//! from the server in Apple's protocol (`Command` with its `RequestType` and keys, and the
//! `CommandUUID` its answer quotes). Keys and types follow Apple's schemas in
//! `mdm/commands/*.yaml`; `tests/apple_schema.rs` checks every key against them.

use plist::{Dictionary, Value};

/// A command for an iPhone, in the terms of Apple's protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum AppleCommand {
    /// `DeviceLock`: lock now, showing a message and a phone number on the lock screen.
    Lock {
        message: Option<String>,
        phone_number: Option<String>,
    },
    /// `EraseDevice`. The phone's data plan (eSIM) is kept: the municipality's subscription
    /// moves with the phone to its next holder. With Return to Service (iOS 17 and later) the
    /// phone sets itself up after the erase and enrolls again from the profile it is given.
    Erase {
        return_to_service: Option<ReturnToService>,
    },
    /// `EnableLostMode` (supervised phones): what the finder sees.
    LostModeOn {
        message: Option<String>,
        phone_number: Option<String>,
        footnote: Option<String>,
    },
    /// `DisableLostMode`.
    LostModeOff,
    /// `InstallApplication` of an App Store app, as a managed app, removed with the MDM
    /// profile (management flag 1), with its managed settings: by its App Store id when the
    /// catalogue knows it, else by its bundle id.
    InstallApp {
        app: AppStoreApp,
        configuration: Option<Dictionary>,
    },
    /// `RemoveApplication` of a managed app by bundle id.
    RemoveApp { bundle_id: String },
    /// `DeviceInformation` with the queries the inventory keeps.
    RefreshInformation,
    /// `RestartDevice`.
    Restart,
    /// `SecurityInfo`: whether a passcode is set and meets the installed profiles, and the
    /// hardware encryption.
    SecurityInfo,
    /// `ProfileList` of the profiles this server installed.
    ProfileList,
    /// `InstalledApplicationList`.
    InstalledApplicationList,
    /// `InstallProfile` of a signed configuration profile (`.mobileconfig` bytes).
    InstallProfile { payload: Vec<u8> },
}

/// What an erased iPhone sets itself up with (`ReturnToService`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnToService {
    /// The signed enrollment profile it enrolls again with.
    pub mdm_profile: Vec<u8>,
    /// A Wi-Fi profile to reach the server with, when the phone has no mobile data.
    pub wifi_profile: Option<Vec<u8>>,
}

/// How `InstallApplication` names an App Store app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppStoreApp {
    /// `iTunesStoreID`.
    StoreId(u64),
    /// `Identifier`: the bundle id.
    BundleId(String),
}

/// What an inventory refresh asks an iPhone for.
pub const INFORMATION_QUERIES: [&str; 12] = [
    "DeviceName",
    "Model",
    "ModelName",
    "ProductName",
    "OSVersion",
    "SerialNumber",
    "IMEI",
    "ICCID",
    "BatteryLevel",
    "AvailableDeviceCapacity",
    "DeviceCapacity",
    "IsSupervised",
];

/// Removes the managed app when the MDM profile is removed.
const REMOVE_APP_WITH_PROFILE: i64 = 1;

fn set_text(d: &mut Dictionary, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        d.insert(key.into(), Value::String(v.clone()));
    }
}

impl AppleCommand {
    pub fn request_type(&self) -> &'static str {
        match self {
            AppleCommand::Lock { .. } => "DeviceLock",
            AppleCommand::Erase { .. } => "EraseDevice",
            AppleCommand::LostModeOn { .. } => "EnableLostMode",
            AppleCommand::LostModeOff => "DisableLostMode",
            AppleCommand::InstallApp { .. } => "InstallApplication",
            AppleCommand::RemoveApp { .. } => "RemoveApplication",
            AppleCommand::RefreshInformation => "DeviceInformation",
            AppleCommand::Restart => "RestartDevice",
            AppleCommand::SecurityInfo => "SecurityInfo",
            AppleCommand::ProfileList => "ProfileList",
            AppleCommand::InstalledApplicationList => "InstalledApplicationList",
            AppleCommand::InstallProfile { .. } => "InstallProfile",
        }
    }

    /// The `Command` dictionary.
    pub fn command(&self) -> Dictionary {
        let mut d = Dictionary::new();
        d.insert(
            "RequestType".into(),
            Value::String(self.request_type().into()),
        );
        match self {
            AppleCommand::Lock {
                message,
                phone_number,
            } => {
                set_text(&mut d, "Message", message);
                set_text(&mut d, "PhoneNumber", phone_number);
            }
            AppleCommand::Erase { return_to_service } => {
                d.insert("PreserveDataPlan".into(), Value::Boolean(true));
                if let Some(rts) = return_to_service {
                    let mut r = Dictionary::new();
                    r.insert("Enabled".into(), Value::Boolean(true));
                    r.insert(
                        "MDMProfileData".into(),
                        Value::Data(rts.mdm_profile.clone()),
                    );
                    if let Some(wifi) = &rts.wifi_profile {
                        r.insert("WiFiProfileData".into(), Value::Data(wifi.clone()));
                    }
                    d.insert("ReturnToService".into(), Value::Dictionary(r));
                }
            }
            AppleCommand::LostModeOn {
                message,
                phone_number,
                footnote,
            } => {
                set_text(&mut d, "Message", message);
                set_text(&mut d, "PhoneNumber", phone_number);
                set_text(&mut d, "Footnote", footnote);
            }
            AppleCommand::InstallApp { app, configuration } => {
                match app {
                    AppStoreApp::StoreId(id) => d.insert(
                        "iTunesStoreID".into(),
                        Value::Integer(i64::try_from(*id).unwrap_or(i64::MAX).into()),
                    ),
                    AppStoreApp::BundleId(bundle) => {
                        d.insert("Identifier".into(), Value::String(bundle.clone()))
                    }
                };
                d.insert(
                    "ManagementFlags".into(),
                    Value::Integer(REMOVE_APP_WITH_PROFILE.into()),
                );
                if let Some(configuration) = configuration {
                    d.insert(
                        "Configuration".into(),
                        Value::Dictionary(configuration.clone()),
                    );
                }
            }
            AppleCommand::RemoveApp { bundle_id } => {
                d.insert("Identifier".into(), Value::String(bundle_id.clone()));
            }
            AppleCommand::RefreshInformation => {
                d.insert(
                    "Queries".into(),
                    Value::Array(
                        INFORMATION_QUERIES
                            .iter()
                            .map(|q| Value::String((*q).into()))
                            .collect(),
                    ),
                );
            }
            AppleCommand::ProfileList => {
                d.insert("ManagedOnly".into(), Value::Boolean(true));
            }
            AppleCommand::InstallProfile { payload } => {
                d.insert("Payload".into(), Value::Data(payload.clone()));
            }
            AppleCommand::LostModeOff
            | AppleCommand::Restart
            | AppleCommand::SecurityInfo
            | AppleCommand::InstalledApplicationList => {}
        }
        d
    }

    /// The whole message as an iPhone receives it, XML plist. `command_uuid` is what the
    /// phone's answer quotes (the command's id in our queue, as text).
    pub fn to_plist(&self, command_uuid: &str) -> Vec<u8> {
        let mut top = Dictionary::new();
        top.insert("Command".into(), Value::Dictionary(self.command()));
        top.insert("CommandUUID".into(), Value::String(command_uuid.into()));
        crate::apple::to_xml(&top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_carries_its_message_and_number_and_parses_as_a_plist() {
        let bytes = AppleCommand::Lock {
            message: Some("Ring IT-supporten".into()),
            phone_number: Some("+46812345678".into()),
        }
        .to_plist("42");
        let value = Value::from_reader(std::io::Cursor::new(bytes)).expect("plist");
        let top = value.as_dictionary().expect("dict");
        assert_eq!(top["CommandUUID"].as_string(), Some("42"));
        let command = top["Command"].as_dictionary().expect("command");
        assert_eq!(command["RequestType"].as_string(), Some("DeviceLock"));
        assert_eq!(command["Message"].as_string(), Some("Ring IT-supporten"));
        assert_eq!(command["PhoneNumber"].as_string(), Some("+46812345678"));
    }

    #[test]
    fn an_erase_keeps_the_data_plan_and_an_install_is_managed() {
        let erase = AppleCommand::Erase {
            return_to_service: None,
        }
        .command();
        assert_eq!(erase["PreserveDataPlan"].as_boolean(), Some(true));
        assert!(erase.get("ReturnToService").is_none());
        let erase = AppleCommand::Erase {
            return_to_service: Some(ReturnToService {
                mdm_profile: b"enrollment".to_vec(),
                wifi_profile: None,
            }),
        }
        .command();
        let rts = erase["ReturnToService"].as_dictionary().expect("rts");
        assert_eq!(rts["Enabled"].as_boolean(), Some(true));
        assert_eq!(rts["MDMProfileData"].as_data(), Some(&b"enrollment"[..]));
        let install = AppleCommand::InstallApp {
            app: AppStoreApp::StoreId(1_234_567_890),
            configuration: None,
        }
        .command();
        assert_eq!(
            install["iTunesStoreID"].as_signed_integer(),
            Some(1_234_567_890)
        );
        assert_eq!(install["ManagementFlags"].as_signed_integer(), Some(1));
    }
}
