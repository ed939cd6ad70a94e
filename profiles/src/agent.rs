//! The policy document the device agent receives (Android and the Linux test agent): JSON, with
//! a content hash the agent sends back so the server knows whether it is current.

use crate::apps::{CatalogueApp, Platform};
use crate::policy::EffectivePolicy;
use crate::RenderError;
pub use agent_protocol::{AgentApp, AgentPin, AgentPolicy, AgentRestrictions};

/// The document for a phone of `platform`. Every required app must be in the catalogue; one
/// that does not exist on the platform is left out (compliance reports it), so the rest of the
/// policy, the PIN rules above all, still reaches the phone.
pub fn render(
    policy: &EffectivePolicy,
    catalogue: &[CatalogueApp],
    platform: Platform,
) -> Result<AgentPolicy, RenderError> {
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
            render(p, &catalogue(), Platform::Android)
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
        let doc = render(&p, &catalogue(), Platform::Android).expect("render");
        assert_eq!(doc.apps[0].id, "se.phoniro.app");
        // Not on iPhones: left out, and the rest of the policy still goes.
        let ios = render(&p, &catalogue(), Platform::Ios).expect("render");
        assert!(ios.apps.is_empty());
        assert_eq!(ios.pin.min_length, 4);
        let unknown = policy(serde_json::json!({ "required_apps": [{ "app": "okänd" }] }));
        assert_eq!(
            render(&unknown, &catalogue(), Platform::Android),
            Err(RenderError::UnknownApp("okänd".into()))
        );
    }
}
