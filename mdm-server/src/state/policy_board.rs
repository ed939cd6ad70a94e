//! The policy documents phones receive at check-in. Working one out takes the operator's,
//! provider's and device's layers and the app catalogue; check-ins are the busiest requests, so
//! each node keeps every layer in memory, reads them again every few seconds and after every
//! change it makes, and keeps each rendered document until then.

use profiles::apps::{CatalogueApp, Platform as ProfilePlatform};
use profiles::policy::effective;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::domain::compliance::{evaluate, DeviceContext, Reason};
use crate::domain::device::Platform;
use crate::domain::model::{supported_models, ModelGeneration};
use crate::store::policies::PolicyLayers;
use crate::store::{Store, StoreResult};

/// How often each node reads the layers again (changes on the node itself show at once).
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// A rendered document: its JSON and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub hash: String,
    pub json: serde_json::Value,
}

#[derive(Debug, Default)]
struct Snapshot {
    /// Counts refreshes; a document is cached only for the snapshot it was made from.
    generation: u64,
    layers: PolicyLayers,
    apps: Vec<CatalogueApp>,
    /// The model catalogue, for which models are still supported.
    models: Vec<ModelGeneration>,
}

type Key = (Platform, Option<i64>, Option<i64>);
/// Documents made from the snapshot of one generation.
type Rendered = (u64, HashMap<Key, Option<Arc<Document>>>);

/// The standard configuration profile of a phone's policy, for iPhones.
#[derive(Debug)]
pub struct StandardProfile {
    /// Its `PayloadUUID`, which changes with its content.
    pub uuid: String,
    pub profile: plist::Dictionary,
    /// The profile signed, once the first phone needed it: every phone with the same policy
    /// gets the same bytes, so a fleet's profiles cost one signature.
    pub signed: std::sync::OnceLock<Vec<u8>>,
}

/// An app an iPhone's policy requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredIphoneApp {
    /// The catalogue's key.
    pub key: String,
    pub bundle_id: String,
    /// Its managed settings (`Configuration` of `InstallApplication`).
    pub settings: std::collections::BTreeMap<String, String>,
}

/// Profiles made from the snapshot of one generation.
type RenderedProfiles = (u64, HashMap<Key, Arc<StandardProfile>>);

#[derive(Debug, Clone, Default)]
pub struct PolicyBoard {
    /// Standard profiles, kept like the documents.
    profiles: Arc<Mutex<RenderedProfiles>>,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    /// Documents by platform, provider with a layer, and device with a layer; `None` when the
    /// policy cannot be rendered for the phone (an app missing on its platform).
    rendered: Arc<Mutex<Rendered>>,
    /// One refresh at a time, so an older read never replaces a newer one.
    refreshing: Arc<tokio::sync::Mutex<u64>>,
}

impl PolicyBoard {
    pub async fn refresh(&self, store: &dyn Store) -> StoreResult<()> {
        let mut generation = self.refreshing.lock().await;
        *generation += 1;
        let snapshot = Snapshot {
            generation: *generation,
            layers: PolicyLayers::from_rows(store.all_policy_layers().await?),
            apps: store.list_apps().await?,
            models: store
                .list_models()
                .await?
                .iter()
                .map(|m| ModelGeneration {
                    id: m.id,
                    platform: m.platform,
                    recommended_since: m.recommended_since,
                })
                .collect(),
        };
        let fresh = snapshot.generation;
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
        *self.rendered.lock().unwrap_or_else(|p| p.into_inner()) = (fresh, HashMap::new());
        Ok(())
    }

    /// The App Store id of a catalogue app, if the catalogue has one.
    pub fn app_store_id(&self, key: &str) -> Option<u64> {
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        snapshot
            .apps
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.app_store_id)
    }

    /// The document for a phone.
    /// Judges phones' compliance against what this node holds in memory (layers, catalogue,
    /// models), so that neither a check-in nor a fleet summary reads them again. One judge
    /// serves many phones.
    pub fn judge(
        &self,
        today: chrono::NaiveDate,
        generations_back: usize,
        organisation: Arc<str>,
    ) -> Judge {
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let supported = supported_models(&snapshot.models, today, generations_back);
        Judge {
            snapshot,
            supported,
            organisation,
        }
    }

    /// The snapshot as it stands, and what a phone's rendering is kept under: phones without
    /// layers of their own share one rendering per provider and platform.
    fn keyed(
        &self,
        platform: Platform,
        provider_id: Option<i64>,
        device_id: i64,
    ) -> (Arc<Snapshot>, Key) {
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let provider = provider_id.filter(|p| snapshot.layers.providers.contains_key(p));
        let device = Some(device_id).filter(|d| snapshot.layers.devices.contains_key(d));
        (snapshot, (platform, provider, device))
    }

    pub fn document(
        &self,
        platform: Platform,
        provider_id: Option<i64>,
        device_id: i64,
    ) -> Option<Arc<Document>> {
        let (snapshot, key) = self.keyed(platform, provider_id, device_id);
        let provider = key.1;
        {
            let rendered = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
            if rendered.0 == snapshot.generation {
                if let Some(found) = rendered.1.get(&key) {
                    return found.clone();
                }
            }
        }
        let layers = snapshot.layers.for_device(provider, device_id);
        let platform_for_profiles: ProfilePlatform = platform.into();
        let document =
            profiles::agent::render(&effective(&layers), &snapshot.apps, platform_for_profiles)
                .ok()
                .map(|doc| {
                    let (json, hash) = doc.to_json_and_hash();
                    Arc::new(Document { hash, json })
                });
        let mut rendered = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        // A refresh may have come in between: then this was made from the old layers.
        if rendered.0 == snapshot.generation {
            rendered.1.insert(key, document.clone());
        }
        document
    }

    /// The apps an iPhone's effective policy requires that exist for iPhones, with their
    /// managed settings.
    pub fn required_iphone_apps(
        &self,
        provider_id: Option<i64>,
        device_id: i64,
    ) -> Vec<RequiredIphoneApp> {
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let policy = effective(&snapshot.layers.for_device(provider_id, device_id));
        policy
            .required_apps
            .value
            .iter()
            .filter_map(|required| {
                let app = snapshot.apps.iter().find(|a| a.key == required.app)?;
                Some(RequiredIphoneApp {
                    key: app.key.clone(),
                    bundle_id: app.id_on(ProfilePlatform::Ios)?.to_string(),
                    settings: required.settings.clone(),
                })
            })
            .collect()
    }

    /// The standard profile of an iPhone's effective policy, for the operator `organisation`.
    pub fn standard_profile(
        &self,
        provider_id: Option<i64>,
        device_id: i64,
        organisation: &str,
    ) -> Arc<StandardProfile> {
        let (snapshot, key) = self.keyed(Platform::Ios, provider_id, device_id);
        let provider = key.1;
        {
            let rendered = self.profiles.lock().unwrap_or_else(|p| p.into_inner());
            if rendered.0 == snapshot.generation {
                if let Some(found) = rendered.1.get(&key) {
                    return found.clone();
                }
            }
        }
        let policy = effective(&snapshot.layers.for_device(provider, device_id));
        let profile = profiles::apple::standard_profile(&policy, organisation);
        let made = Arc::new(StandardProfile {
            uuid: profiles::apple::profile_uuid(&profile).to_string(),
            profile,
            signed: std::sync::OnceLock::new(),
        });
        let mut rendered = self.profiles.lock().unwrap_or_else(|p| p.into_inner());
        // Kept only while no newer snapshot has been read.
        if rendered.0 < snapshot.generation {
            *rendered = (snapshot.generation, HashMap::new());
        }
        if rendered.0 == snapshot.generation {
            rendered.1.insert(key, made.clone());
        }
        made
    }

    /// Reads the layers again every [`REFRESH_EVERY`] until `stop` says so.
    pub async fn run(self, store: Arc<dyn Store>, stop: tokio::sync::watch::Receiver<bool>) {
        crate::clock::repeat(REFRESH_EVERY, stop, "reading the policy layers", || {
            self.refresh(store.as_ref())
        })
        .await;
    }
}

/// Compliance judged from one snapshot of the policy board.
#[derive(Debug)]
pub struct Judge {
    snapshot: Arc<Snapshot>,
    supported: std::collections::HashSet<i64>,
    /// The operator's name, part of the standard profile's content.
    organisation: Arc<str>,
}

/// The phone being judged.
#[derive(Debug, Clone, Copy)]
pub struct Phone {
    pub device_id: i64,
    pub platform: Platform,
    pub provider_id: Option<i64>,
    pub model_id: i64,
    /// It holds a certificate that is neither revoked nor expired.
    pub certificate_valid: bool,
}

impl Judge {
    /// Every reason the phone with these facts breaks its effective policy.
    pub fn reasons(&self, phone: Phone, facts: &agent_protocol::DeviceFacts) -> Vec<Reason> {
        let policy = effective(
            &self
                .snapshot
                .layers
                .for_device(phone.provider_id, phone.device_id),
        );
        // Only a phone whose passcode the profile stands in for needs the profile rendered.
        let profile = facts
            .pin
            .by_profile
            .as_ref()
            .map(|_| profiles::apple::standard_profile(&policy, &self.organisation));
        let context = DeviceContext {
            platform: phone.platform,
            model_supported: self.supported.contains(&phone.model_id),
            certificate_valid: phone.certificate_valid,
            current_profile: profile.as_ref().map(profiles::apple::profile_uuid),
        };
        evaluate(&policy, &self.snapshot.apps, context, facts)
    }
}
