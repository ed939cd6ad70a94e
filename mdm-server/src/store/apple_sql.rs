//! The SQL of [`AppleStore`], compiled once per backend like `shared_sql.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::shared::{
    append_audit_tx, bind_identity, lock_device, revoke_live_identities, token_from_row, SqlStore,
    TOKEN_COLUMNS,
};
use super::Db;
use crate::domain::audit::AuditEvent;
use crate::store::apple::*;
use crate::store::{DeviceIdentity, EnrollmentToken, ReportedFacts, StoreError, StoreResult};

type DbRow = <Db as sqlx::Database>::Row;

fn pending_from_row(row: &DbRow) -> StoreResult<PendingEnrollment> {
    Ok(PendingEnrollment {
        fingerprint: row.try_get("fingerprint")?,
        certificate_serial: row.try_get("certificate_serial")?,
        token_id: row.try_get("token_id")?,
        key_kind: row.try_get("key_kind")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        created_at: row.try_get("pending_at")?,
    })
}

#[async_trait]
impl AppleStore for SqlStore {
    async fn claim_token_for_scep(
        &self,
        p: &PendingEnrollment,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        // Using the token in the statement that checks it makes it single-use even against
        // two phones presenting it at once.
        let used = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = $1 \
             WHERE id = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(p.token_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used == 0 {
            return Err(StoreError::Conflict(
                "the enrollment token has already been used or has expired".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO apple_pending_enrollments \
             (fingerprint, certificate_serial, token_id, key_kind, not_before, not_after, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&p.fingerprint)
        .bind(&p.certificate_serial)
        .bind(p.token_id)
        .bind(&p.key_kind)
        .bind(p.not_before)
        .bind(p.not_after)
        .bind(p.created_at)
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pending_enrollment(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<(PendingEnrollment, EnrollmentToken)>> {
        let token_columns = TOKEN_COLUMNS
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(&format!(
            "SELECT p.fingerprint, p.certificate_serial, p.token_id, p.key_kind, p.not_before, \
             p.not_after, p.created_at AS pending_at, {token_columns} \
             FROM apple_pending_enrollments p JOIN enrollment_tokens t ON t.id = p.token_id \
             WHERE p.fingerprint = $1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((pending_from_row(&row)?, token_from_row(&row)?)))
            .transpose()
    }

    async fn complete_apple_enrollment(
        &self,
        identity: &DeviceIdentity,
        facts: &ReportedFacts,
        udid: &str,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, identity.device_id).await?;
        let token_id: Option<i64> = sqlx::query_scalar(
            "DELETE FROM apple_pending_enrollments WHERE fingerprint = $1 RETURNING token_id",
        )
        .bind(&identity.fingerprint)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(token_id) = token_id else {
            return Err(StoreError::Conflict(
                "this certificate has already been tied to a phone".into(),
            ));
        };
        let elsewhere: Option<i64> = sqlx::query_scalar(
            "SELECT device_id FROM apple_devices WHERE udid = $1 AND device_id <> $2",
        )
        .bind(udid)
        .bind(identity.device_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(other) = elsewhere {
            return Err(StoreError::Conflict(format!(
                "this iPhone (UDID {udid}) is enrolled as device {other}"
            )));
        }
        sqlx::query("UPDATE enrollment_tokens SET used_by = $1 WHERE id = $2")
            .bind(identity.device_id)
            .bind(token_id)
            .execute(&mut *tx)
            .await?;
        bind_identity(&mut tx, identity, facts, now).await?;
        sqlx::query(
            "INSERT INTO apple_devices (device_id, udid, enrolled_at) VALUES ($1, $2, $3) \
             ON CONFLICT (device_id) DO UPDATE SET udid = excluded.udid, \
             enrolled_at = excluded.enrolled_at, topic = NULL, push_token = NULL, \
             push_magic = NULL, token_updated_at = NULL, checked_out_at = NULL, supervised = NULL, \
             pushed_at = NULL, push_dead_at = NULL, push_dead_reason = NULL",
        )
        .bind(identity.device_id)
        .bind(udid)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn drop_pending_enrollment(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM apple_pending_enrollments WHERE fingerprint = $1")
            .bind(fingerprint)
            .execute(&mut *tx)
            .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sweep_pending_enrollments(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM apple_pending_enrollments WHERE created_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn apple_device(&self, device_id: i64) -> StoreResult<Option<AppleDevice>> {
        let row = sqlx::query(
            "SELECT device_id, udid, topic, push_token, push_magic, enrolled_at, \
             token_updated_at, checked_out_at, supervised, pushed_at, push_dead_at, \
             push_dead_reason FROM apple_devices WHERE device_id = $1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let push_token: Option<String> = row.try_get("push_token")?;
        let dead_at: Option<DateTime<Utc>> = row.try_get("push_dead_at")?;
        let dead_reason: Option<String> = row.try_get("push_dead_reason")?;
        Ok(Some(AppleDevice {
            device_id: row.try_get("device_id")?,
            udid: row.try_get("udid")?,
            topic: row.try_get("topic")?,
            push_token: push_token.and_then(|t| hex::decode(t).ok()),
            push_magic: row.try_get("push_magic")?,
            enrolled_at: row.try_get("enrolled_at")?,
            token_updated_at: row.try_get("token_updated_at")?,
            checked_out_at: row.try_get("checked_out_at")?,
            supervised: row.try_get("supervised")?,
            pushed_at: row.try_get("pushed_at")?,
            push_dead: dead_at.map(|at| (at, dead_reason.unwrap_or_default())),
        }))
    }

    async fn set_apple_supervised(&self, device_id: i64, supervised: bool) -> StoreResult<()> {
        sqlx::query("UPDATE apple_devices SET supervised = $1 WHERE device_id = $2")
            .bind(supervised)
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn enrolled_apple_devices(&self) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM apple_devices WHERE checked_out_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn apple_devices_due_inventory(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT a.device_id FROM apple_devices a WHERE a.checked_out_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.device_id = a.device_id \
             AND c.kind = 'refresh_information' \
             AND (c.created_at >= $1 OR c.state IN ('queued', 'sent', 'not_now'))) \
             ORDER BY a.device_id LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn note_wipe_delivery(&self, device_id: i64, how: &str) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET wipe_delivered_as = $1 WHERE id = $2")
            .bind(how)
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn wipe_delivery(&self, device_id: i64) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT wipe_delivered_as FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    async fn apple_device_ids(&self, provider_id: Option<i64>) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT a.device_id FROM apple_devices a JOIN devices d ON d.id = a.device_id \
             WHERE a.checked_out_at IS NULL AND ($1 IS NULL OR d.provider_id = $1) \
             ORDER BY a.device_id",
        )
        .bind(provider_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn push_targets(&self, device_ids: &[i64]) -> StoreResult<Vec<PushTarget>> {
        let mut targets = Vec::new();
        for chunk in device_ids.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new(
                "SELECT device_id, push_token, push_magic, topic FROM apple_devices \
                 WHERE push_token IS NOT NULL AND push_magic IS NOT NULL AND topic IS NOT NULL \
                 AND push_dead_at IS NULL AND checked_out_at IS NULL AND device_id IN (",
            );
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            q.push(")");
            for row in q.build().fetch_all(&self.pool).await? {
                targets.push(PushTarget {
                    device_id: row.try_get("device_id")?,
                    push_token: row.try_get("push_token")?,
                    push_magic: row.try_get("push_magic")?,
                    topic: row.try_get("topic")?,
                });
            }
        }
        Ok(targets)
    }

    async fn silent_apple_devices(
        &self,
        silent_since: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT a.device_id FROM apple_devices a \
             LEFT JOIN device_checkins c ON c.device_id = a.device_id \
             WHERE a.push_token IS NOT NULL AND a.push_dead_at IS NULL \
             AND a.checked_out_at IS NULL AND (c.at IS NULL OR c.at < $1) \
             AND (a.pushed_at IS NULL OR a.pushed_at < $1) ORDER BY a.device_id LIMIT $2",
        )
        .bind(silent_since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn note_pushed(&self, device_ids: &[i64], now: DateTime<Utc>) -> StoreResult<()> {
        for chunk in device_ids.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new("UPDATE apple_devices SET pushed_at = ");
            q.push_bind(now).push(" WHERE device_id IN (");
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn mark_push_token_dead(
        &self,
        device_id: i64,
        push_token: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        Ok(sqlx::query(
            "UPDATE apple_devices SET push_dead_at = $1, push_dead_reason = $2 \
             WHERE device_id = $3 AND push_token = $4 AND push_dead_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(device_id)
        .bind(push_token)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn update_apple_push(
        &self,
        device_id: i64,
        push: &PushDetails,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let changed = sqlx::query(
            "UPDATE apple_devices SET topic = $1, push_token = $2, push_magic = $3, \
             token_updated_at = $4, push_dead_at = NULL, push_dead_reason = NULL \
             WHERE device_id = $5",
        )
        .bind(&push.topic)
        .bind(hex::encode(&push.push_token))
        .bind(&push.push_magic)
        .bind(now)
        .bind(device_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn check_out_apple_device(
        &self,
        device_id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, device_id).await?;
        let revoked = revoke_live_identities(&mut tx, device_id, "checked out", now).await?;
        sqlx::query("UPDATE devices SET enrolled_at = NULL, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE apple_devices SET push_token = NULL, push_magic = NULL, checked_out_at = $1 \
             WHERE device_id = $2",
        )
        .bind(now)
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }
}
