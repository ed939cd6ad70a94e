//! Whether a phone follows its effective policy, with every reason it does not spelled out for
//! the people who must fix it.

use agent_protocol::DeviceFacts;
use profiles::apps::{CatalogueApp, Platform as ProfilePlatform};
use profiles::policy::EffectivePolicy;
use profiles::version::OsVersion;
use serde::Serialize;

use super::device::Platform;

/// One way a phone breaks its policy: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: &'static str,
    pub message: String,
}

fn reason(code: &'static str, message: String) -> Reason {
    Reason { code, message }
}

/// What is known of a phone besides what it reports.
#[derive(Debug, Clone, Copy)]
pub struct DeviceContext<'a> {
    pub platform: Platform,
    /// Its model is on the supported list.
    pub model_supported: bool,
    /// It holds a certificate that is neither revoked nor expired.
    pub certificate_valid: bool,
    /// The `PayloadUUID` of the standard profile of its effective policy as it stands (for a
    /// phone whose passcode is evidenced by the profile: iPhones).
    pub current_profile: Option<&'a str>,
}

/// Every reason the phone with these facts breaks `policy`; none means compliant.
pub fn evaluate(
    policy: &EffectivePolicy,
    catalogue: &[CatalogueApp],
    device: DeviceContext<'_>,
    facts: &DeviceFacts,
) -> Vec<Reason> {
    let mut out = Vec::new();
    let min_pin = policy.pin_min_length.value;
    if let (true, Some(evidence)) = (facts.pin.set, &facts.pin.by_profile) {
        out.extend(passcode_by_profile(
            policy,
            evidence,
            device.current_profile,
        ));
        return rest(policy, catalogue, device, facts, out);
    }
    match (facts.pin.set, facts.pin.length) {
        (false, _) => out.push(reason(
            "pin_missing",
            format!("No PIN is set; policy requires one of at least {min_pin} digits"),
        )),
        (true, Some(len)) if len < min_pin => out.push(reason(
            "pin_too_short",
            format!(
                "PIN is {len} {}; policy requires {min_pin}",
                if len == 1 { "digit" } else { "digits" }
            ),
        )),
        (true, None) => out.push(reason(
            "pin_length_unknown",
            format!("The phone does not report its PIN length; policy requires {min_pin}"),
        )),
        _ => {}
    }
    if facts.pin.set && !policy.pin_numeric_allowed.value {
        match facts.pin.numeric {
            Some(false) => {}
            Some(true) => out.push(reason(
                "pin_numeric",
                "PIN is digits only; policy requires letters as well".to_string(),
            )),
            None => out.push(reason(
                "pin_kind_unknown",
                "The phone does not report whether its PIN has letters; policy requires them"
                    .to_string(),
            )),
        }
    }
    rest(policy, catalogue, device, facts, out)
}

/// An iPhone's passcode, which Apple does not measure for a server: it meets the policy when
/// the phone has the standard profile of the policy as it stands (which makes iOS require the
/// policy's length and kind) and says its passcode meets its profiles.
fn passcode_by_profile(
    policy: &EffectivePolicy,
    evidence: &agent_protocol::PasscodeByProfile,
    current_profile: Option<&str>,
) -> Option<Reason> {
    let min_pin = policy.pin_min_length.value;
    let wanted = if policy.pin_numeric_allowed.value {
        format!("at least {min_pin} digits")
    } else {
        format!("at least {min_pin} characters with letters")
    };
    let installed = evidence.installed_profile.as_deref();
    if installed.is_none() {
        return Some(reason(
            "passcode_profile_missing",
            format!("The passcode profile ({wanted}) is not installed on the iPhone; Apple does not report a passcode's length, so the profile is what enforces it"),
        ));
    }
    if installed != current_profile {
        return Some(reason(
            "passcode_profile_outdated",
            format!("The iPhone has an older version of the passcode profile; the current one ({wanted}) is being sent"),
        ));
    }
    match evidence.compliant_with_profiles {
        Some(true) => None,
        Some(false) => Some(reason(
            "pin_not_compliant",
            format!("The iPhone reports that its passcode does not meet the passcode profile ({wanted}); Apple does not report the length"),
        )),
        None => Some(reason(
            "pin_unverified",
            format!("The iPhone has not yet said whether its passcode meets the passcode profile ({wanted})"),
        )),
    }
}

/// Every reason besides the PIN.
fn rest(
    policy: &EffectivePolicy,
    catalogue: &[CatalogueApp],
    device: DeviceContext<'_>,
    facts: &DeviceFacts,
    mut out: Vec<Reason>,
) -> Vec<Reason> {
    let minimum = match device.platform {
        Platform::Android => &policy.min_os_android.value,
        Platform::Ios => &policy.min_os_ios.value,
    };
    if let Some(minimum) = minimum {
        match (
            OsVersion::parse(&facts.os_version),
            OsVersion::parse(minimum),
        ) {
            (Ok(have), Ok(need)) if have < need => out.push(reason(
                "os_too_old",
                format!("OS {have} is below the minimum {need}"),
            )),
            (Err(_), _) => out.push(reason(
                "os_unknown",
                format!(
                    "OS version '{}' cannot be compared with the minimum {minimum}",
                    facts.os_version
                ),
            )),
            _ => {}
        }
    }
    let platform: ProfilePlatform = device.platform.into();
    for required in &policy.required_apps.value {
        let app = catalogue.iter().find(|a| a.key == required.app);
        let name = app.map_or(required.app.as_str(), |a| a.name.as_str());
        let Some(id) = app.and_then(|a| a.id_on(platform)) else {
            out.push(reason(
                "app_unavailable",
                format!("{name} app is required but does not exist for this platform"),
            ));
            continue;
        };
        match facts.installed_apps.iter().find(|i| i.id == id) {
            None => out.push(reason("app_missing", format!("{name} app missing"))),
            Some(installed) => {
                if let Some(min) = &required.min_version {
                    match (OsVersion::parse(&installed.version), OsVersion::parse(min)) {
                        (Ok(have), Ok(need)) if have < need => out.push(reason(
                            "app_outdated",
                            format!("{name} app {} is below the required {min}", installed.version),
                        )),
                        (Err(_), _) => out.push(reason(
                            "app_version_unknown",
                            format!(
                                "{name} app version '{}' cannot be compared with the required {min}",
                                installed.version
                            ),
                        )),
                        _ => {}
                    }
                }
            }
        }
    }
    if !device.model_supported {
        out.push(reason(
            "model_unsupported",
            "The phone's model is no longer supported".to_string(),
        ));
    }
    if !device.certificate_valid {
        out.push(reason(
            "certificate_invalid",
            "The phone's certificate is revoked or expired; it must enroll again".to_string(),
        ));
    }
    out
}

/// How long a phone may stay non-compliant before its provider is told, unless configured.
pub const DEFAULT_GRACE_HOURS: u32 = 72;

/// A phone's standing: `compliant` or `non_compliant`.
pub fn status_of(reasons: &[Reason]) -> &'static str {
    if reasons.is_empty() {
        "compliant"
    } else {
        "non_compliant"
    }
}

/// An assessment as recorded: the status and the reasons as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub status: &'static str,
    pub reasons_json: String,
}

impl Assessment {
    pub fn of(reasons: &[Reason]) -> Self {
        Assessment {
            status: status_of(reasons),
            reasons_json: serde_json::to_string(reasons).unwrap_or_else(|_| "[]".into()),
        }
    }
}

/// What a new assessment does to the record: nothing when status and reasons are as before; a
/// history entry when they differ; and when the status itself changed, a new "since" (and a
/// new grace period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Same,
    ReasonsChanged,
    StatusChanged,
}

pub fn change(previous: Option<(&str, &str)>, new: &Assessment) -> Change {
    match previous {
        None => Change::StatusChanged,
        Some((status, _)) if status != new.status => Change::StatusChanged,
        Some((_, reasons)) if reasons != new.reasons_json => Change::ReasonsChanged,
        Some(_) => Change::Same,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_protocol::{InstalledApp, PinState};
    use profiles::policy::{effective, PolicyLayer, Source};

    fn facts(pin: Option<u8>, os: &str, apps: &[(&str, &str)]) -> DeviceFacts {
        DeviceFacts {
            platform: "android".into(),
            model: "Galaxy XCover7".into(),
            os_version: os.into(),
            serial: "R58N1234".into(),
            imei: "356938035643809".into(),
            iccid: None,
            phone_number: None,
            battery_percent: None,
            storage_free_bytes: None,
            storage_total_bytes: None,
            installed_apps: apps
                .iter()
                .map(|(id, v)| InstalledApp {
                    id: (*id).into(),
                    version: (*v).into(),
                })
                .collect(),
            pin: PinState {
                set: pin.is_some(),
                length: pin,
                numeric: Some(true),
                by_profile: None,
            },
            disk_encrypted: true,
            mobile_data_bytes_this_month: None,
            agent_version: "1.0".into(),
        }
    }

    fn catalogue() -> Vec<CatalogueApp> {
        vec![CatalogueApp {
            key: "phoniro".into(),
            name: "Phoniro".into(),
            android_package: Some("se.phoniro.app".into()),
            ios_bundle_id: None,
            app_store_id: None,
            included_licences: None,
        }]
    }

    fn policy(json: serde_json::Value) -> EffectivePolicy {
        let layer: PolicyLayer = serde_json::from_value(json).expect("layer");
        effective(&[(Source::Operator, &layer)])
    }

    const ANDROID: DeviceContext = DeviceContext {
        platform: Platform::Android,
        model_supported: true,
        certificate_valid: true,
        current_profile: None,
    };

    fn messages(reasons: &[Reason]) -> Vec<String> {
        reasons.iter().map(|r| r.message.clone()).collect()
    }

    #[test]
    fn a_three_digit_pin_breaks_the_four_digit_rule_and_says_so() {
        let p = policy(serde_json::json!({}));
        let r = evaluate(&p, &[], ANDROID, &facts(Some(3), "14", &[]));
        assert_eq!(messages(&r), ["PIN is 3 digits; policy requires 4"]);
        assert!(evaluate(&p, &[], ANDROID, &facts(Some(4), "14", &[])).is_empty());
        let r = evaluate(&p, &[], ANDROID, &facts(None, "14", &[]));
        assert_eq!(r[0].code, "pin_missing");
    }

    #[test]
    fn an_iphones_passcode_meets_the_policy_only_with_the_current_profile_installed_and_complied_with(
    ) {
        let p = policy(serde_json::json!({ "pin_min_length": 6 }));
        let iphone = |installed: Option<&str>, compliant: Option<bool>| {
            let mut f = facts(None, "18", &[]);
            f.pin = PinState {
                set: true,
                length: None,
                numeric: None,
                by_profile: Some(agent_protocol::PasscodeByProfile {
                    installed_profile: installed.map(str::to_string),
                    compliant_with_profiles: compliant,
                }),
            };
            f
        };
        let ios = DeviceContext {
            platform: Platform::Ios,
            current_profile: Some("NEW"),
            ..ANDROID
        };
        let code = |f: &DeviceFacts| {
            evaluate(&p, &[], ios, f)
                .into_iter()
                .map(|r| r.code)
                .collect::<Vec<_>>()
        };
        assert!(code(&iphone(Some("NEW"), Some(true))).is_empty());
        assert_eq!(
            code(&iphone(Some("NEW"), Some(false))),
            ["pin_not_compliant"]
        );
        assert_eq!(code(&iphone(Some("NEW"), None)), ["pin_unverified"]);
        assert_eq!(
            code(&iphone(Some("OLD"), Some(true))),
            ["passcode_profile_outdated"]
        );
        assert_eq!(
            code(&iphone(None, Some(true))),
            ["passcode_profile_missing"]
        );
        let r = evaluate(&p, &[], ios, &iphone(Some("NEW"), Some(false)));
        assert!(
            r[0].message.contains("at least 6 digits"),
            "{}",
            r[0].message
        );
        // No passcode at all is no passcode, whatever the profile.
        let mut none = iphone(Some("NEW"), Some(false));
        none.pin.set = false;
        assert_eq!(code(&none), ["pin_missing"]);
    }

    #[test]
    fn an_old_os_and_a_missing_or_old_app_are_named() {
        let p = policy(serde_json::json!({
            "min_os_android": "14",
            "required_apps": [{ "app": "phoniro", "min_version": "5.2" }]
        }));
        let r = evaluate(&p, &catalogue(), ANDROID, &facts(Some(4), "13", &[]));
        assert_eq!(
            messages(&r),
            ["OS 13 is below the minimum 14", "Phoniro app missing"]
        );
        let r = evaluate(
            &p,
            &catalogue(),
            ANDROID,
            &facts(Some(4), "14.1", &[("se.phoniro.app", "5.1.9")]),
        );
        assert_eq!(
            messages(&r),
            ["Phoniro app 5.1.9 is below the required 5.2"]
        );
        assert!(evaluate(
            &p,
            &catalogue(),
            ANDROID,
            &facts(Some(6), "15", &[("se.phoniro.app", "5.2")])
        )
        .is_empty());
    }

    #[test]
    fn a_numeric_pin_where_letters_are_required_and_an_unsupported_model_are_reasons() {
        let p = policy(serde_json::json!({ "pin_numeric_allowed": false }));
        let old = DeviceContext {
            model_supported: false,
            ..ANDROID
        };
        let codes: Vec<&str> = evaluate(&p, &[], old, &facts(Some(6), "14", &[]))
            .iter()
            .map(|r| r.code)
            .collect();
        assert_eq!(codes, ["pin_numeric", "model_unsupported"]);
        let cut_off = DeviceContext {
            certificate_valid: false,
            ..ANDROID
        };
        let r = evaluate(&p, &[], cut_off, &facts(Some(6), "14", &[]));
        assert_eq!(r.last().map(|r| r.code), Some("certificate_invalid"));
    }

    #[test]
    fn only_a_different_status_starts_a_new_grace_period() {
        let compliant = Assessment::of(&[]);
        let short = Assessment::of(&[reason("pin_too_short", "PIN is 3 digits".into())]);
        let shorter = Assessment::of(&[reason("pin_too_short", "PIN is 2 digits".into())]);
        assert_eq!(compliant.status, "compliant");
        assert_eq!(short.status, "non_compliant");
        assert_eq!(change(None, &compliant), Change::StatusChanged);
        fn was(a: &Assessment) -> Option<(&str, &str)> {
            Some((a.status, a.reasons_json.as_str()))
        }
        assert_eq!(change(was(&compliant), &compliant), Change::Same);
        assert_eq!(change(was(&compliant), &short), Change::StatusChanged);
        assert_eq!(change(was(&short), &shorter), Change::ReasonsChanged);
        assert_eq!(change(was(&short), &short), Change::Same);
    }
}
