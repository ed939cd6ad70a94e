//! The SQL of [`ComplianceStore`], compiled once per backend like `shared_sql.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::shared::{append_audit_tx, with_target, SqlStore};
use super::steps_sql::insert_alerts;
use super::Db;
use crate::domain::audit::AuditEvent;
use crate::domain::compliance::{change, Assessment, Change};
use crate::domain::outbox::Topic;
use crate::store::compliance::{ComplianceChange, ComplianceRecord, ComplianceStore};
use crate::store::notices::NewDelivery;
use crate::store::StoreResult;

type DbRow = <Db as sqlx::Database>::Row;

const COLUMNS: &str = "c.device_id, d.provider_id, c.status, c.reasons, c.since, c.evaluated_at, \
     c.alerted_at FROM device_compliance c JOIN devices d ON d.id = c.device_id";

fn record_from_row(row: &DbRow) -> StoreResult<ComplianceRecord> {
    Ok(ComplianceRecord {
        device_id: row.try_get("device_id")?,
        provider_id: row.try_get("provider_id")?,
        status: row.try_get("status")?,
        reasons: row.try_get("reasons")?,
        since: row.try_get("since")?,
        evaluated_at: row.try_get("evaluated_at")?,
        alerted_at: row.try_get("alerted_at")?,
    })
}

#[async_trait]
impl ComplianceStore for SqlStore {
    async fn record_compliance(
        &self,
        device_id: i64,
        a: &Assessment,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        // Most assessments change nothing: those are answered by a read, without a write.
        let stored: Option<(String, String)> =
            sqlx::query_as("SELECT status, reasons FROM device_compliance WHERE device_id = $1")
                .bind(device_id)
                .fetch_optional(self.pool())
                .await?;
        if change(stored.as_ref().map(|(s, r)| (s.as_str(), r.as_str())), a) == Change::Same {
            return Ok(false);
        }
        let mut tx = self.write().await?;
        let previous =
            sqlx::query("SELECT status, reasons FROM device_compliance WHERE device_id = $1")
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await?;
        let previous: Option<(String, String)> = previous
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("status")?, r.try_get("reasons")?)))
            .transpose()?;
        let what = change(previous.as_ref().map(|(s, r)| (s.as_str(), r.as_str())), a);
        match what {
            Change::Same => {
                sqlx::query("UPDATE device_compliance SET evaluated_at = $1 WHERE device_id = $2")
                    .bind(now)
                    .bind(device_id)
                    .execute(&mut *tx)
                    .await?;
            }
            Change::ReasonsChanged => {
                sqlx::query(
                    "UPDATE device_compliance SET reasons = $1, evaluated_at = $2 WHERE device_id = $3",
                )
                .bind(&a.reasons_json)
                .bind(now)
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
            }
            Change::StatusChanged => {
                sqlx::query(
                    "INSERT INTO device_compliance (device_id, status, reasons, since, evaluated_at, alerted_at) \
                     VALUES ($1, $2, $3, $4, $4, NULL) \
                     ON CONFLICT (device_id) DO UPDATE SET status = $2, reasons = $3, since = $4, \
                     evaluated_at = $4, alerted_at = NULL",
                )
                .bind(device_id)
                .bind(a.status)
                .bind(&a.reasons_json)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        if what != Change::Same {
            sqlx::query(
                "INSERT INTO compliance_history (device_id, at, status, reasons) VALUES ($1, $2, $3, $4)",
            )
            .bind(device_id)
            .bind(now)
            .bind(a.status)
            .bind(&a.reasons_json)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(what != Change::Same)
    }

    async fn compliance_record(&self, device_id: i64) -> StoreResult<Option<ComplianceRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} WHERE c.device_id = $1"))
            .bind(device_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn compliance_history(
        &self,
        device_id: i64,
        limit: u32,
    ) -> StoreResult<Vec<ComplianceChange>> {
        let rows = sqlx::query(
            "SELECT at, status, reasons FROM compliance_history WHERE device_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(device_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ComplianceChange {
                    at: r.try_get("at")?,
                    status: r.try_get("status")?,
                    reasons: r.try_get("reasons")?,
                })
            })
            .collect()
    }

    async fn overdue_compliance(
        &self,
        since_before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ComplianceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} WHERE c.status = 'non_compliant' AND c.alerted_at IS NULL \
             AND c.since <= $1 ORDER BY c.since LIMIT $2"
        ))
        .bind(since_before)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn alert_compliance(
        &self,
        device_id: i64,
        since: DateTime<Utc>,
        messages: &[NewDelivery],
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let marked = sqlx::query(
            "UPDATE device_compliance SET alerted_at = $1 WHERE device_id = $2 AND since = $3 \
             AND alerted_at IS NULL AND status = 'non_compliant'",
        )
        .bind(now)
        .bind(device_id)
        .bind(since)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if marked {
            insert_alerts(&mut tx, Topic::Compliance, device_id, messages, now).await?;
            append_audit_tx(&mut tx, &with_target(audit, device_id), now).await?;
        }
        tx.commit().await?;
        Ok(marked)
    }
}
