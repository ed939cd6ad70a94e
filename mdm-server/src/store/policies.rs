//! Storage of policy layers and the app catalogue.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use profiles::apps::CatalogueApp;
use profiles::policy::PolicyLayer;

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
