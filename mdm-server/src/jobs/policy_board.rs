//! The policy documents phones receive at check-in. Working one out takes the operator's,
//! provider's and device's layers and the app catalogue; check-ins are the busiest requests, so
//! each node keeps every layer in memory, reads them again every few seconds and after every
//! change it makes, and keeps each rendered document until then.

use profiles::agent::AgentPolicy;
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

#[derive(Debug, Clone, Default)]
pub struct PolicyBoard {
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

    /// The document for a phone.
    /// Every reason a phone checking in breaks its effective policy, worked out from what this
    /// node holds in memory (layers, catalogue, models) so that a check-in reads nothing more.
    /// The phone presents a live certificate, or it would not have got this far.
    pub fn assess_checkin(
        &self,
        device: &crate::store::DeviceSession,
        facts: &agent::protocol::DeviceFacts,
        today: chrono::NaiveDate,
        generations_back: usize,
    ) -> Vec<Reason> {
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let policy = effective(
            &snapshot
                .layers
                .for_device(device.provider_id, device.device_id),
        );
        let context = DeviceContext {
            platform: device.platform,
            model_supported: supported_models(&snapshot.models, today, generations_back)
                .contains(&device.model_id),
            certificate_valid: true,
        };
        evaluate(&policy, &snapshot.apps, context, facts)
    }

    pub fn document(
        &self,
        platform: Platform,
        provider_id: Option<i64>,
        device_id: i64,
    ) -> Option<Arc<Document>> {
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Phones without layers of their own share one document per provider and platform.
        let provider = provider_id.filter(|p| snapshot.layers.providers.contains_key(p));
        let device = Some(device_id).filter(|d| snapshot.layers.devices.contains_key(d));
        let key = (platform, provider, device);
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
            AgentPolicy::render(&effective(&layers), &snapshot.apps, platform_for_profiles)
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

    /// Reads the layers again every [`REFRESH_EVERY`] until `stop` says so.
    pub async fn run(self, store: Arc<dyn Store>, stop: tokio::sync::watch::Receiver<bool>) {
        super::repeat(REFRESH_EVERY, stop, "reading the policy layers", || {
            self.refresh(store.as_ref())
        })
        .await;
    }
}
