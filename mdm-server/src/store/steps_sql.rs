//! Transaction steps that several capabilities take, compiled once per backend like
//! `shared_sql.rs`: queueing a command and purging a phone's queue (commands, leasing, lost
//! cases, enrollment), what a wipe means for a phone's records (a confirmed wipe, a manual one),
//! ending a holding, and putting a phone's alerts in the outbox. The capability files use these
//! and not each other, so no two of them call each other.

use chrono::{DateTime, Utc};

use super::shared::{corrupt, revoke_live_identities, Tx};
use crate::domain::command;
use crate::domain::device::DeviceStatus;
use crate::domain::outbox::Topic;
use crate::store::commands::NewCommand;
use crate::store::notices::NewDelivery;
use crate::store::StoreResult;

/// Commands still to be delivered or answered. Must match the predicate of the partial indexes,
/// so that both backends use them.
pub(super) const PENDING: &str = "('queued', 'sent', 'not_now')";

/// Cancels everything still waiting for the phone (but `except`): a wipe or a new enrollment
/// makes what was queued for the old identity meaningless.
pub(super) async fn purge_pending(
    tx: &mut Tx,
    device_id: i64,
    except: Option<i64>,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    Ok(sqlx::query(&format!(
        "UPDATE commands SET state = 'cancelled', finished_at = $1, result = $2 \
         WHERE device_id = $3 AND state IN {PENDING} AND id <> $4"
    ))
    .bind(now)
    .bind(reason)
    .bind(device_id)
    .bind(except.unwrap_or(0))
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Queues one command in the caller's transaction. A wipe is also noted on the phone's row, as
/// evidence for the wipe-before-reassign rule (commands are pruned; the row is not).
pub(super) async fn insert_command(
    tx: &mut Tx,
    c: &NewCommand,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO commands (device_id, kind, payload, priority, state, created_by, \
         created_at, expires_at, available_at, attempts) \
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $6, 0) RETURNING id",
    )
    .bind(c.device_id)
    .bind(c.kind.as_str())
    .bind(&c.payload)
    .bind(c.priority)
    .bind(c.created_by)
    .bind(now)
    .bind(c.expires_at)
    .fetch_one(&mut **tx)
    .await?;
    if c.kind == command::CommandKind::Wipe {
        sqlx::query("UPDATE devices SET wipe_sent_at = $1, wipe_delivered_as = NULL WHERE id = $2")
            .bind(now)
            .bind(c.device_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(id)
}

/// What a wipe means for the phone's records, whether the phone confirmed it or two operator
/// admins did: what was queued for the old identity is purged (but `keep`, the wipe itself),
/// the identity stops working, the holder is cleared, and the phone counts as not enrolled.
pub(super) async fn forget_phone(
    tx: &mut Tx,
    device_id: i64,
    keep: Option<i64>,
    why: &str,
    holding_ended_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    purge_pending(tx, device_id, keep, why, now).await?;
    revoke_live_identities(tx, device_id, "wiped", now).await?;
    end_holding(tx, device_id, holding_ended_at).await?;
    let status: String = sqlx::query_scalar("SELECT status FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_one(&mut **tx)
        .await?;
    let status = DeviceStatus::parse(&status).map_err(|_| corrupt("device status", &status))?;
    sqlx::query(
        "UPDATE devices SET status = $1, enrolled_at = NULL, updated_at = $2 WHERE id = $3",
    )
    .bind(command::status_after_wipe(status).as_str())
    .bind(now)
    .bind(device_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends the phone's holding, if it has a holder: the period closes at `ended_at` (or when it
/// began, if that was later) and so does the phone's last assignment.
pub(super) async fn end_holding(
    tx: &mut Tx,
    device_id: i64,
    ended_at: DateTime<Utc>,
) -> StoreResult<bool> {
    let ended: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE holder_periods SET ended_at = CASE WHEN started_at > $1 THEN started_at ELSE $1 END \
         WHERE device_id = $2 AND ended_at IS NULL RETURNING ended_at",
    )
    .bind(ended_at)
    .bind(device_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(ended) = ended {
        sqlx::query("UPDATE devices SET holder_id = NULL, assignment_ended_at = $1 WHERE id = $2")
            .bind(ended)
            .bind(device_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(ended.is_some())
}

/// Puts a phone's alert messages (compliance, lost case, data use) in the outbox, inside the
/// caller's transaction; a message whose idempotency key is there already is not added again.
pub(super) async fn insert_alerts(
    tx: &mut Tx,
    topic: Topic,
    device_id: impl Into<Option<i64>>,
    messages: &[NewDelivery],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let device_id = device_id.into();
    for m in messages {
        sqlx::query(
            "INSERT INTO deliveries (topic, device_id, idempotency_key, channel, recipient, \
             provider_id, subject, body, state, next_attempt_at, late, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, FALSE, $9) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(topic.as_str())
        .bind(device_id)
        .bind(&m.idempotency_key)
        .bind(m.channel.as_str())
        .bind(&m.recipient)
        .bind(m.provider_id)
        .bind(&m.subject)
        .bind(&m.body)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
