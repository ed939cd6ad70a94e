//! The policy document the device agent receives (Android and the Linux test agent): JSON, with
//! a content hash the agent sends back so the server knows whether it is current.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::apps::{CatalogueApp, Platform};
use crate::policy::EffectivePolicy;
use crate::RenderError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentPin {
    pub min_length: u8,
    pub numeric_allowed: bool,
    pub max_failed_attempts: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRestrictions {
    pub camera: bool,
    pub screenshots: bool,
    pub cloud_backup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentApp {
    /// Package name or bundle id.
    pub id: String,
    pub min_version: Option<String>,
    pub settings: BTreeMap<String, String>,
}

/// The document; fields serialise in this order, so equal policies give equal bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentPolicy {
    pub pin: AgentPin,
    pub auto_lock_minutes: u8,
    pub min_os_version: Option<String>,
    pub restrictions: AgentRestrictions,
    pub apps: Vec<AgentApp>,
}

impl AgentPolicy {
    /// The document for a phone of `platform`. Every required app must be in the catalogue; one
    /// that does not exist on the platform is left out (compliance reports it), so the rest of
    /// the policy, the PIN rules above all, still reaches the phone.
    pub fn render(
        policy: &EffectivePolicy,
        catalogue: &[CatalogueApp],
        platform: Platform,
    ) -> Result<Self, RenderError> {
        let mut apps = Vec::with_capacity(policy.required_apps.value.len());
        for required in &policy.required_apps.value {
            let app = catalogue
                .iter()
                .find(|a| a.key == required.app)
                .ok_or_else(|| RenderError::UnknownApp(required.app.clone()))?;
            if let Some(id) = app.id_on(platform) {
                apps.push(AgentApp {
                    id: id.to_string(),
                    min_version: required.min_version.clone(),
                    settings: required.settings.clone(),
                });
            }
        }
        Ok(AgentPolicy {
            pin: AgentPin {
                min_length: policy.pin_min_length.value,
                numeric_allowed: policy.pin_numeric_allowed.value,
                max_failed_attempts: policy.pin_max_failed_attempts.value,
            },
            auto_lock_minutes: policy.auto_lock_minutes.value,
            min_os_version: match platform {
                Platform::Android => policy.min_os_android.value.clone(),
                Platform::Ios => policy.min_os_ios.value.clone(),
            },
            restrictions: AgentRestrictions {
                camera: policy.allow_camera.value,
                screenshots: policy.allow_screenshots.value,
                cloud_backup: policy.allow_cloud_backup.value,
            },
            apps,
        })
    }

    /// The document as JSON and the SHA-256 (hex) of its canonical form (keys sorted, no
    /// spaces), which names this version: the phone can work the hash out again from what it
    /// receives.
    pub fn to_json_and_hash(&self) -> (serde_json::Value, String) {
        let value = serde_json::to_value(self).unwrap_or_default();
        // serde_json keeps object keys sorted, so these bytes are the canonical form.
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let hash = hex::encode(Sha256::digest(&bytes));
        (value, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{effective, PolicyLayer, Source};

    fn catalogue() -> Vec<CatalogueApp> {
        vec![CatalogueApp {
            key: "phoniro".into(),
            name: "Phoniro Care".into(),
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

    #[test]
    fn the_hash_changes_with_the_policy_and_only_then() {
        let a = policy(serde_json::json!({ "auto_lock_minutes": 5 }));
        let b = policy(serde_json::json!({ "auto_lock_minutes": 2 }));
        let render = |p: &EffectivePolicy| {
            AgentPolicy::render(p, &catalogue(), Platform::Android)
                .expect("render")
                .to_json_and_hash()
                .1
        };
        assert_eq!(render(&a), render(&a.clone()));
        assert_ne!(render(&a), render(&b));
        // Where a setting came from is not part of what the phone must do.
        let from_provider: PolicyLayer =
            serde_json::from_value(serde_json::json!({ "auto_lock_minutes": 5 })).expect("layer");
        let c = effective(&[(Source::Provider(1), &from_provider)]);
        assert_eq!(render(&a), render(&c));
    }

    #[test]
    fn apps_are_named_by_their_id_on_the_platform() {
        let p = policy(serde_json::json!({
            "required_apps": [{ "app": "phoniro", "min_version": "5.2", "settings": { "server": "https://lås.kommun.example" } }]
        }));
        let doc = AgentPolicy::render(&p, &catalogue(), Platform::Android).expect("render");
        assert_eq!(doc.apps[0].id, "se.phoniro.app");
        // Not on iPhones: left out, and the rest of the policy still goes.
        let ios = AgentPolicy::render(&p, &catalogue(), Platform::Ios).expect("render");
        assert!(ios.apps.is_empty());
        assert_eq!(ios.pin.min_length, 4);
        let unknown = policy(serde_json::json!({ "required_apps": [{ "app": "okänd" }] }));
        assert_eq!(
            AgentPolicy::render(&unknown, &catalogue(), Platform::Android),
            Err(RenderError::UnknownApp("okänd".into()))
        );
    }
}
