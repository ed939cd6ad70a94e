//! The standard phone: PIN, auto-lock, minimum OS versions, a few restrictions and the required
//! apps, set in layers (operator default, provider override, device override) and merged into
//! the effective policy with the source of every setting.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::version::OsVersion;

/// Where a setting of the effective policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "level", content = "id", rename_all = "snake_case")]
pub enum Source {
    /// The product's built-in value (the contracts' minimum: a PIN of four digits).
    BuiltIn,
    /// The operator's standard phone.
    Operator,
    Provider(i64),
    Device(i64),
}

/// An app the policy requires, by its key in the app catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredApp {
    pub app: String,
    /// The lowest acceptable version, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// Managed settings for the app (a server address, a tenant code).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

/// One layer of policy. A field left out is inherited from the layer below; the list of apps
/// is replaced as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyLayer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_min_length: Option<u8>,
    /// Whether a PIN of digits only is enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_numeric_allowed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_max_failed_attempts: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_lock_minutes: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_os_android: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_os_ios: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_camera: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_screenshots: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_cloud_backup: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_apps: Option<Vec<RequiredApp>>,
}

/// A value that breaks a rule, named by its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field,
        message: message.into(),
    }
}

/// The contracts demand a PIN of at least four digits; Apple allows at most 16.
pub const PIN_LENGTH: std::ops::RangeInclusive<u8> = 4..=16;
/// Apple's range for `maxFailedAttempts`.
pub const MAX_FAILED_ATTEMPTS: std::ops::RangeInclusive<u8> = 2..=11;
/// Apple's range for `maxInactivity` on iOS, in minutes.
pub const AUTO_LOCK_MINUTES: std::ops::RangeInclusive<u8> = 1..=15;
/// Apps a policy may require.
pub const MAX_REQUIRED_APPS: usize = 100;

impl PolicyLayer {
    /// Every value in range; the first one that is not is named.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let in_range = |field, value: Option<u8>, range: std::ops::RangeInclusive<u8>| match value {
            Some(v) if !range.contains(&v) => Err(invalid(
                field,
                format!("{v} is outside {} to {}", range.start(), range.end()),
            )),
            _ => Ok(()),
        };
        in_range("pin_min_length", self.pin_min_length, PIN_LENGTH)?;
        in_range(
            "pin_max_failed_attempts",
            self.pin_max_failed_attempts,
            MAX_FAILED_ATTEMPTS,
        )?;
        in_range(
            "auto_lock_minutes",
            self.auto_lock_minutes,
            AUTO_LOCK_MINUTES,
        )?;
        for (field, version) in [
            ("min_os_android", &self.min_os_android),
            ("min_os_ios", &self.min_os_ios),
        ] {
            if let Some(v) = version {
                OsVersion::parse(v).map_err(|e| invalid(field, e))?;
            }
        }
        if let Some(apps) = &self.required_apps {
            if apps.len() > MAX_REQUIRED_APPS {
                return Err(invalid(
                    "required_apps",
                    format!("at most {MAX_REQUIRED_APPS} apps"),
                ));
            }
            for app in apps {
                if app.app.trim().is_empty() || app.app.len() > 100 {
                    return Err(invalid("required_apps.app", "must be 1 to 100 characters"));
                }
                if let Some(v) = &app.min_version {
                    OsVersion::parse(v).map_err(|e| invalid("required_apps.min_version", e))?;
                }
                if app.settings.len() > 50
                    || app
                        .settings
                        .iter()
                        .any(|(k, v)| k.is_empty() || k.len() > 100 || v.len() > 1000)
                {
                    return Err(invalid(
                        "required_apps.settings",
                        "at most 50 settings, names of 1 to 100 and values of at most 1000 characters",
                    ));
                }
            }
            let mut keys: Vec<&str> = apps.iter().map(|a| a.app.as_str()).collect();
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(invalid("required_apps", "an app is listed twice"));
            }
        }
        Ok(())
    }
}

/// A setting of the effective policy and the layer it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// The policy a phone must follow, every setting with its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectivePolicy {
    pub pin_min_length: Setting<u8>,
    pub pin_numeric_allowed: Setting<bool>,
    pub pin_max_failed_attempts: Setting<u8>,
    pub auto_lock_minutes: Setting<u8>,
    pub min_os_android: Setting<Option<String>>,
    pub min_os_ios: Setting<Option<String>>,
    pub allow_camera: Setting<bool>,
    pub allow_screenshots: Setting<bool>,
    pub allow_cloud_backup: Setting<bool>,
    pub required_apps: Setting<Vec<RequiredApp>>,
}

impl Default for EffectivePolicy {
    /// The built-in floor: a four-digit PIN, ten attempts, auto-lock after five minutes.
    fn default() -> Self {
        EffectivePolicy {
            pin_min_length: built_in(4),
            pin_numeric_allowed: built_in(true),
            pin_max_failed_attempts: built_in(10),
            auto_lock_minutes: built_in(5),
            min_os_android: built_in(None),
            min_os_ios: built_in(None),
            allow_camera: built_in(true),
            allow_screenshots: built_in(true),
            allow_cloud_backup: built_in(true),
            required_apps: built_in(Vec::new()),
        }
    }
}

fn built_in<T>(value: T) -> Setting<T> {
    Setting {
        value,
        source: Source::BuiltIn,
    }
}

fn apply<T: Clone>(setting: &mut Setting<T>, value: &Option<T>, source: Source) {
    if let Some(v) = value {
        *setting = Setting {
            value: v.clone(),
            source,
        };
    }
}

fn apply_opt<T: Clone>(setting: &mut Setting<Option<T>>, value: &Option<T>, source: Source) {
    if let Some(v) = value {
        *setting = Setting {
            value: Some(v.clone()),
            source,
        };
    }
}

/// Merges the layers in order, each over the ones before: operator default, then provider,
/// then device. The same layers always give the same policy.
pub fn effective(layers: &[(Source, &PolicyLayer)]) -> EffectivePolicy {
    let mut p = EffectivePolicy::default();
    for (source, layer) in layers {
        let s = *source;
        apply(&mut p.pin_min_length, &layer.pin_min_length, s);
        apply(&mut p.pin_numeric_allowed, &layer.pin_numeric_allowed, s);
        apply(
            &mut p.pin_max_failed_attempts,
            &layer.pin_max_failed_attempts,
            s,
        );
        apply(&mut p.auto_lock_minutes, &layer.auto_lock_minutes, s);
        apply_opt(&mut p.min_os_android, &layer.min_os_android, s);
        apply_opt(&mut p.min_os_ios, &layer.min_os_ios, s);
        apply(&mut p.allow_camera, &layer.allow_camera, s);
        apply(&mut p.allow_screenshots, &layer.allow_screenshots, s);
        apply(&mut p.allow_cloud_backup, &layer.allow_cloud_backup, s);
        apply(&mut p.required_apps, &layer.required_apps, s);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(json: serde_json::Value) -> PolicyLayer {
        serde_json::from_value(json).expect("layer")
    }

    #[test]
    fn a_device_override_wins_over_the_provider_which_wins_over_the_default() {
        let operator = layer(serde_json::json!({ "auto_lock_minutes": 5, "pin_min_length": 6 }));
        let provider = layer(serde_json::json!({ "auto_lock_minutes": 2 }));
        let device = layer(serde_json::json!({ "auto_lock_minutes": 1 }));
        let p = effective(&[
            (Source::Operator, &operator),
            (Source::Provider(7), &provider),
        ]);
        assert_eq!(
            p.auto_lock_minutes,
            Setting {
                value: 2,
                source: Source::Provider(7)
            }
        );
        assert_eq!(p.pin_min_length.source, Source::Operator);
        assert_eq!(p.pin_max_failed_attempts.source, Source::BuiltIn);
        let p = effective(&[
            (Source::Operator, &operator),
            (Source::Provider(7), &provider),
            (Source::Device(42), &device),
        ]);
        assert_eq!(p.auto_lock_minutes.value, 1);
        assert_eq!(p.auto_lock_minutes.source, Source::Device(42));
        assert_eq!(p.pin_min_length.value, 6);
    }

    #[test]
    fn an_override_replaces_the_list_of_apps_as_a_whole() {
        let operator =
            layer(serde_json::json!({ "required_apps": [{ "app": "phoniro" }, { "app": "tes" }] }));
        let provider = layer(
            serde_json::json!({ "required_apps": [{ "app": "phoniro", "settings": { "tenant": "norr" } }] }),
        );
        let p = effective(&[
            (Source::Operator, &operator),
            (Source::Provider(3), &provider),
        ]);
        assert_eq!(p.required_apps.value.len(), 1);
        assert_eq!(p.required_apps.value[0].settings["tenant"], "norr");
        assert_eq!(p.required_apps.source, Source::Provider(3));
    }

    #[test]
    fn values_out_of_range_are_refused_by_name() {
        let field = |json| layer(json).validate().expect_err("refused").field;
        assert_eq!(
            field(serde_json::json!({ "pin_min_length": 17 })),
            "pin_min_length"
        );
        assert_eq!(
            field(serde_json::json!({ "pin_min_length": 3 })),
            "pin_min_length"
        );
        assert_eq!(
            field(serde_json::json!({ "pin_max_failed_attempts": 1 })),
            "pin_max_failed_attempts"
        );
        assert_eq!(
            field(serde_json::json!({ "pin_max_failed_attempts": 12 })),
            "pin_max_failed_attempts"
        );
        assert_eq!(
            field(serde_json::json!({ "auto_lock_minutes": 0 })),
            "auto_lock_minutes"
        );
        assert_eq!(
            field(serde_json::json!({ "min_os_ios": "fjorton" })),
            "min_os_ios"
        );
        assert_eq!(
            field(serde_json::json!({ "required_apps": [{ "app": "a" }, { "app": "a" }] })),
            "required_apps"
        );
        assert!(layer(
            serde_json::json!({ "pin_min_length": 4, "min_os_android": "14", "min_os_ios": "17.4" })
        )
        .validate()
        .is_ok());
        assert!(serde_json::from_value::<PolicyLayer>(serde_json::json!({ "pin": 4 })).is_err());
    }

    #[test]
    fn the_built_in_floor_is_a_four_digit_pin() {
        let p = effective(&[]);
        assert_eq!(p.pin_min_length.value, 4);
        assert!(p.pin_numeric_allowed.value);
        assert_eq!(p.pin_min_length.source, Source::BuiltIn);
    }
}
