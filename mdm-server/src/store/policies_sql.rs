//! The SQL of [`PolicyStore`], compiled once per backend like `shared_sql.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use profiles::apps::CatalogueApp;
use profiles::policy::PolicyLayer;
use sqlx::Row;

use super::shared::{append_audit_tx, corrupt, SqlStore};
use crate::domain::audit::AuditEvent;
use crate::store::policies::{LayerScope, PolicyStore};
use crate::store::{StoreError, StoreResult};

#[async_trait]
impl PolicyStore for SqlStore {
    async fn policy_layer(&self, scope: LayerScope) -> StoreResult<Option<PolicyLayer>> {
        let (kind, id) = scope.parts();
        let text: Option<String> = sqlx::query_scalar(
            "SELECT layer FROM policy_layers WHERE scope = $1 AND scope_id = $2",
        )
        .bind(kind)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        text.map(|t| serde_json::from_str(&t).map_err(|_| corrupt("policy layer", &t)))
            .transpose()
    }

    async fn set_policy_layer(
        &self,
        scope: LayerScope,
        layer: Option<&PolicyLayer>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let (kind, id) = scope.parts();
        let mut tx = self.write().await?;
        match layer {
            Some(layer) => {
                let text = serde_json::to_string(layer)
                    .map_err(|e| StoreError::Database(sqlx::Error::Protocol(e.to_string())))?;
                sqlx::query(
                    "INSERT INTO policy_layers (scope, scope_id, layer, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (scope, scope_id) DO UPDATE SET layer = $3, updated_at = $4",
                )
                .bind(kind)
                .bind(id)
                .bind(text)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM policy_layers WHERE scope = $1 AND scope_id = $2")
                    .bind(kind)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn all_policy_layers(&self) -> StoreResult<Vec<(LayerScope, PolicyLayer)>> {
        let rows = sqlx::query("SELECT scope, scope_id, layer FROM policy_layers")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let scope: String = row.try_get("scope")?;
                let id: i64 = row.try_get("scope_id")?;
                let text: String = row.try_get("layer")?;
                let scope = match scope.as_str() {
                    "operator" => LayerScope::Operator,
                    "provider" => LayerScope::Provider(id),
                    "device" => LayerScope::Device(id),
                    other => return Err(corrupt("policy scope", other)),
                };
                let layer =
                    serde_json::from_str(&text).map_err(|_| corrupt("policy layer", &text))?;
                Ok((scope, layer))
            })
            .collect()
    }

    async fn list_apps(&self) -> StoreResult<Vec<CatalogueApp>> {
        let rows = sqlx::query(
            "SELECT key, name, android_package, ios_bundle_id, app_store_id, included_licences \
             FROM apps ORDER BY key",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let store_id: Option<i64> = row.try_get("app_store_id")?;
                let included: Option<i64> = row.try_get("included_licences")?;
                Ok(CatalogueApp {
                    key: row.try_get("key")?,
                    name: row.try_get("name")?,
                    android_package: row.try_get("android_package")?,
                    ios_bundle_id: row.try_get("ios_bundle_id")?,
                    app_store_id: store_id.and_then(|v| u64::try_from(v).ok()),
                    included_licences: included.and_then(|v| u32::try_from(v).ok()),
                })
            })
            .collect()
    }

    async fn put_app(
        &self,
        app: &CatalogueApp,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<CatalogueApp> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO apps (key, name, android_package, ios_bundle_id, app_store_id, \
             included_licences, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $7, $6, $6) ON CONFLICT (key) DO UPDATE SET name = $2, \
             android_package = $3, ios_bundle_id = $4, app_store_id = $5, included_licences = $7, \
             updated_at = $6",
        )
        .bind(&app.key)
        .bind(&app.name)
        .bind(&app.android_package)
        .bind(&app.ios_bundle_id)
        .bind(app.app_store_id.and_then(|v| i64::try_from(v).ok()))
        .bind(now)
        .bind(app.included_licences.map(i64::from))
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(app.clone())
    }
}
