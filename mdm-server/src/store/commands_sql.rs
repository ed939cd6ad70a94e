//! The SQL of [`CommandStore`], compiled once per backend like `shared_sql.rs`.

use agent_protocol::CommandStatus;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::shared::{append_audit_tx, corrupt, lock_device, SqlStore};
use super::steps_sql::{forget_phone, insert_command, PENDING};
use super::Db;
use crate::domain::audit::AuditEvent;
use crate::domain::command::{self, AnswerEffect, CommandKind, CommandState, ResultDecision};
use crate::domain::role::Scope;
use crate::store::commands::{
    AnswerOutcome, CommandBatch, CommandFilter, CommandRecord, CommandStore, NewCommand, NewFanOut,
};
use crate::store::{StoreError, StoreResult};

use super::shared::Tx;
type DbRow = <Db as sqlx::Database>::Row;

const COLUMNS: &str = "c.id, c.device_id, d.provider_id, c.batch_id, c.kind, c.payload, \
     c.priority, c.state, c.created_by, c.created_at, c.expires_at, c.sent_at, c.attempts, \
     c.finished_at, c.result";
const FROM: &str = "FROM commands c JOIN devices d ON d.id = c.device_id";

/// A stored kind, which this server must know.
fn kind_from(text: &str) -> StoreResult<CommandKind> {
    CommandKind::parse(text).map_err(|_| corrupt("command kind", text))
}

fn record_from_row(row: &DbRow) -> StoreResult<CommandRecord> {
    let state: String = row.try_get("state")?;
    let kind: String = row.try_get("kind")?;
    Ok(CommandRecord {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        provider_id: row.try_get("provider_id")?,
        batch_id: row.try_get("batch_id")?,
        kind: kind_from(&kind)?,
        payload: row.try_get("payload")?,
        priority: row.try_get("priority")?,
        state: CommandState::parse(&state).map_err(|_| corrupt("command state", &state))?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        sent_at: row.try_get("sent_at")?,
        attempts: row.try_get("attempts")?,
        finished_at: row.try_get("finished_at")?,
        result: row.try_get("result")?,
    })
}

async fn load(tx: &mut Tx, id: i64) -> StoreResult<CommandRecord> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} {FROM} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    record_from_row(&row)
}

/// What a confirmed wipe does to the phone's record (see `steps_sql::forget_phone`); the
/// holding ended when the wipe was sent, which is what the wipe was for.
async fn confirm_wipe(
    tx: &mut Tx,
    device_id: i64,
    command_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let sent: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT wipe_sent_at FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_one(&mut **tx)
            .await?;
    forget_phone(
        tx,
        device_id,
        Some(command_id),
        "purged: the phone was wiped",
        sent.unwrap_or(now),
        now,
    )
    .await?;
    sqlx::query("UPDATE devices SET wiped_at = $1 WHERE id = $2")
        .bind(now)
        .bind(device_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn scoped(q: &mut QueryBuilder<'_, Db>, scope: Scope) {
    if let Some(org) = scope.org() {
        q.push(" AND d.provider_id = ").push_bind(org);
    }
}

#[async_trait]
impl CommandStore for SqlStore {
    async fn queue_command(
        &self,
        c: &NewCommand,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<CommandRecord> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, c.device_id).await?;
        let id = insert_command(&mut tx, c, now).await?;
        append_audit_tx(&mut tx, &super::shared::with_target(audit, id), now).await?;
        let record = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn queue_fan_out(
        &self,
        f: &NewFanOut,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<CommandBatch> {
        let mut tx = self.write().await?;
        let batch: i64 = sqlx::query_scalar(
            "INSERT INTO command_batches (provider_id, kind, queued, created_by, created_at) \
             VALUES ($1, $2, 0, $3, $4) RETURNING id",
        )
        .bind(f.provider_id)
        .bind(f.kind.as_str())
        .bind(f.created_by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        // One statement for the whole provider: the database copies the rows itself.
        let queued = sqlx::query(
            "INSERT INTO commands (device_id, batch_id, kind, payload, priority, state, \
             created_by, created_at, expires_at, available_at, attempts) \
             SELECT d.id, $1, $2, CASE d.platform WHEN 'android' THEN $3 ELSE $4 END, $5, \
             'queued', $6, $7, $8, $7, 0 FROM devices d \
             WHERE d.provider_id = $9 AND d.enrolled_at IS NOT NULL AND d.status <> 'retired' \
             AND ((d.platform = 'android' AND $3 IS NOT NULL) OR (d.platform = 'ios' AND $4 IS NOT NULL)) \
             ORDER BY d.id",
        )
        .bind(batch)
        .bind(f.kind.as_str())
        .bind(&f.android_payload)
        .bind(&f.ios_payload)
        .bind(f.priority)
        .bind(f.created_by)
        .bind(now)
        .bind(f.expires_at)
        .bind(f.provider_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let queued = i64::try_from(queued).unwrap_or(i64::MAX);
        sqlx::query("UPDATE command_batches SET queued = $1 WHERE id = $2")
            .bind(queued)
            .bind(batch)
            .execute(&mut *tx)
            .await?;
        let audit = super::shared::with_details(
            super::shared::with_target(audit, batch),
            serde_json::json!({ "queued": queued }),
        );
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(CommandBatch {
            id: batch,
            provider_id: f.provider_id,
            kind: f.kind,
            queued,
            created_by: f.created_by,
            created_at: now,
            states: vec![(CommandState::Queued, queued)],
        })
    }

    async fn command(&self, scope: Scope, id: i64) -> StoreResult<CommandRecord> {
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} {FROM} WHERE c.id = "));
        q.push_bind(id);
        scoped(&mut q, scope);
        let row = q
            .build()
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        record_from_row(&row)
    }

    async fn list_commands(
        &self,
        scope: Scope,
        f: &CommandFilter,
    ) -> StoreResult<Vec<CommandRecord>> {
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} {FROM} WHERE 1 = 1"));
        scoped(&mut q, scope);
        if let Some(device) = f.device_id {
            q.push(" AND c.device_id = ").push_bind(device);
        }
        if let Some(batch) = f.batch_id {
            q.push(" AND c.batch_id = ").push_bind(batch);
        }
        if let Some(state) = f.state {
            q.push(" AND c.state = ").push_bind(state.as_str());
        }
        if let Some(before) = f.before_id {
            q.push(" AND c.id < ").push_bind(before);
        }
        q.push(" ORDER BY c.id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn command_batch(&self, scope: Scope, id: i64) -> StoreResult<CommandBatch> {
        let row = sqlx::query(
            "SELECT id, provider_id, kind, queued, created_by, created_at \
             FROM command_batches WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        let provider_id: i64 = row.try_get("provider_id")?;
        if !scope.allows(Some(provider_id)) {
            return Err(StoreError::NotFound);
        }
        let counts = sqlx::query(
            "SELECT state, COUNT(*) AS count FROM commands WHERE batch_id = $1 GROUP BY state ORDER BY state",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let mut states = Vec::with_capacity(counts.len());
        for r in &counts {
            let state: String = r.try_get("state")?;
            states.push((
                CommandState::parse(&state).map_err(|_| corrupt("command state", &state))?,
                r.try_get("count")?,
            ));
        }
        let kind: String = row.try_get("kind")?;
        Ok(CommandBatch {
            id,
            provider_id,
            kind: kind_from(&kind)?,
            queued: row.try_get("queued")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            states,
        })
    }

    async fn cancel_command(
        &self,
        id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<CommandRecord> {
        let mut tx = self.write().await?;
        let current = load(&mut tx, id).await?;
        lock_device(&mut tx, current.device_id).await?;
        let current = load(&mut tx, id).await?;
        if !current.state.is_cancellable() {
            return Err(StoreError::Conflict(format!(
                "command {id} is {}; only a command still queued or put off by the phone can be cancelled",
                current.state.as_str()
            )));
        }
        sqlx::query(
            "UPDATE commands SET state = 'cancelled', finished_at = $1, result = 'cancelled by the operator' \
             WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        let record = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn take_commands(
        &self,
        device_id: i64,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<(i64, String)>> {
        let due = format!(
            "SELECT id, payload, expires_at FROM commands \
             WHERE device_id = $1 AND state IN {PENDING} AND available_at <= $2 \
             ORDER BY priority DESC, id LIMIT $3"
        );
        // Most check-ins find nothing: one indexed read, no write.
        let any: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM commands WHERE device_id = $1 AND state IN {PENDING} \
             AND available_at <= $2 LIMIT 1"
        ))
        .bind(device_id)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        let rows = sqlx::query(&due)
            .bind(device_id)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let expires_at: DateTime<Utc> = row.try_get("expires_at")?;
            if expires_at <= now {
                sqlx::query(
                    "UPDATE commands SET state = 'expired', finished_at = $1 WHERE id = $2",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                continue;
            }
            sqlx::query(
                "UPDATE commands SET state = 'sent', sent_at = $1, attempts = attempts + 1, \
                 available_at = $2 WHERE id = $3",
            )
            .bind(now)
            .bind(now + command::REDELIVER_AFTER)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            out.push((id, row.try_get("payload")?));
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn record_answer(
        &self,
        device_id: i64,
        command_id: i64,
        status: CommandStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<AnswerOutcome> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, device_id).await?;
        let current = load(&mut tx, command_id).await?;
        if current.device_id != device_id {
            return Err(StoreError::NotFound);
        }
        let decision =
            command::decide_result(current.kind, current.state, current.attempts, status, now);
        let (state, retry_at, effect) = match decision {
            Err(refusal) => return Ok(AnswerOutcome::Refused(refusal)),
            Ok(ResultDecision::AlreadyRecorded) => return Ok(AnswerOutcome::Repeat(current)),
            Ok(ResultDecision::Record {
                state,
                retry_at,
                effect,
            }) => (state, retry_at, effect),
        };
        let finished = (!state.is_pending()).then_some(now);
        sqlx::query(
            "UPDATE commands SET state = $1, finished_at = $2, available_at = COALESCE($3, available_at), \
             result = $4 WHERE id = $5",
        )
        .bind(state.as_str())
        .bind(finished)
        .bind(retry_at)
        .bind(command::error_text(error))
        .bind(command_id)
        .execute(&mut *tx)
        .await?;
        match effect {
            Some(AnswerEffect::PhoneWiped) => {
                confirm_wipe(&mut tx, device_id, command_id, now).await?
            }
            None => {}
        }
        append_audit_tx(&mut tx, &audit, now).await?;
        let record = load(&mut tx, command_id).await?;
        tx.commit().await?;
        Ok(AnswerOutcome::Recorded(record))
    }

    async fn devices_with_pending_commands(&self) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT DISTINCT device_id FROM commands WHERE state IN {PENDING}"
        ))
        .fetch_all(self.pool())
        .await?)
    }

    async fn sweep_commands(
        &self,
        now: DateTime<Utc>,
        finished_before: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)> {
        let mut tx = self.write().await?;
        let expired = sqlx::query(&format!(
            "UPDATE commands SET state = 'expired', finished_at = $1 \
             WHERE state IN {PENDING} AND expires_at <= $1"
        ))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let deleted =
            sqlx::query("DELETE FROM commands WHERE finished_at IS NOT NULL AND finished_at < $1")
                .bind(finished_before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query(
            "DELETE FROM command_batches WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM commands c WHERE c.batch_id = command_batches.id)",
        )
        .bind(finished_before)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((expired, deleted))
    }
}
