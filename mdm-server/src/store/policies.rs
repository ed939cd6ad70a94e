//! Storage of policy layers and the app catalogue.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use profiles::apps::CatalogueApp;
use profiles::policy::{PolicyLayer, Source};
use std::collections::HashMap;

use super::StoreResult;
use crate::domain::audit::AuditEvent;

/// Which layer: the operator's default, a provider's override or a device's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerScope {
    Operator,
    Provider(i64),
    Device(i64),
}

impl LayerScope {
    pub fn parts(self) -> (&'static str, i64) {
        match self {
            LayerScope::Operator => ("operator", 0),
            LayerScope::Provider(id) => ("provider", id),
            LayerScope::Device(id) => ("device", id),
        }
    }
}

/// Every policy layer there is, by scope.
#[derive(Debug, Clone, Default)]
pub struct PolicyLayers {
    pub operator: Option<PolicyLayer>,
    pub providers: HashMap<i64, PolicyLayer>,
    pub devices: HashMap<i64, PolicyLayer>,
}

impl PolicyLayers {
    pub fn from_rows(rows: Vec<(LayerScope, PolicyLayer)>) -> Self {
        let mut layers = PolicyLayers::default();
        for (scope, layer) in rows {
            match scope {
                LayerScope::Operator => layers.operator = Some(layer),
                LayerScope::Provider(id) => {
                    layers.providers.insert(id, layer);
                }
                LayerScope::Device(id) => {
                    layers.devices.insert(id, layer);
                }
            }
        }
        layers
    }

    /// The layers that apply to a phone, in merge order (operator, provider, device), each
    /// with its source.
    pub fn for_device(
        &self,
        provider_id: Option<i64>,
        device_id: i64,
    ) -> Vec<(Source, &PolicyLayer)> {
        let mut out = Vec::with_capacity(3);
        out.extend(self.operator.as_ref().map(|l| (Source::Operator, l)));
        if let Some(p) = provider_id {
            out.extend(self.providers.get(&p).map(|l| (Source::Provider(p), l)));
        }
        out.extend(
            self.devices
                .get(&device_id)
                .map(|l| (Source::Device(device_id), l)),
        );
        out
    }
}

#[async_trait]
pub trait PolicyStore: Send + Sync {
    async fn policy_layer(&self, scope: LayerScope) -> StoreResult<Option<PolicyLayer>>;
    /// Sets the layer, or removes it with `None`.
    async fn set_policy_layer(
        &self,
        scope: LayerScope,
        layer: Option<&PolicyLayer>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()>;
    /// Every layer there is, in one query (for the policy board each node keeps).
    async fn all_policy_layers(&self) -> StoreResult<Vec<(LayerScope, PolicyLayer)>>;
    async fn list_apps(&self) -> StoreResult<Vec<CatalogueApp>>;
    /// Adds an app or changes the one with its key.
    async fn put_app(
        &self,
        app: &CatalogueApp,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<CatalogueApp>;
}
