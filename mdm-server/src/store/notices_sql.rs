//! The SQL of [`NoticeStore`], compiled once per backend like `shared_sql.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::shared::{append_audit_tx, corrupt, with_target, SqlStore};
use super::{Db, SKIP_LOCKED};
use crate::domain::audit::AuditEvent;
use crate::domain::maintenance::{Channel, NoticeKind, NoticePolicy, WindowKind};
use crate::store::notices::*;
use crate::store::{StoreError, StoreResult};

use super::shared::Tx;
type DbRow = <Db as sqlx::Database>::Row;
type Conn = <Db as sqlx::Database>::Connection;

/// Outbox rows per multi-row INSERT (eight parameters each).
const DELIVERY_CHUNK: usize = 500;

const WINDOW_COLUMNS: &str = "id, kind, series_id, title, description, systems, all_providers, \
     starts_at, ends_at, outside_preferred, revision, rescheduled_at, cancelled_at, closed_at, \
     created_at, updated_at";

const SERIES_COLUMNS: &str = "id, title, description, systems, all_providers, cron, \
     duration_minutes, outside_preferred, next_start_at, cancelled_at, created_at";

const NOTICE_COLUMNS: &str = "id, window_id, kind, message, due_at, state, expanded_at, late";

const DELIVERY_COLUMNS: &str = "d.id, d.topic, d.notice_id, d.device_id, n.window_id, \
     n.kind AS notice_kind, d.idempotency_key, d.channel, d.recipient, d.provider_id, d.subject, d.body, d.state, \
     d.attempts, d.next_attempt_at, d.last_error, d.sent_at, d.late, d.created_at";

fn systems_json(systems: &[String]) -> String {
    serde_json::to_string(systems).unwrap_or_else(|_| "[]".to_string())
}

fn text_from_row(row: &DbRow) -> StoreResult<WindowText> {
    let systems: String = row.try_get("systems")?;
    Ok(WindowText {
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        systems: serde_json::from_str(&systems).map_err(|_| corrupt("systems", &systems))?,
    })
}

async fn load_targets(
    conn: &mut Conn,
    table: &str,
    column: &str,
    id: i64,
) -> StoreResult<Vec<i64>> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT provider_id FROM {table} WHERE {column} = $1 ORDER BY provider_id"
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?)
}

async fn insert_targets(
    tx: &mut Tx,
    table: &str,
    column: &str,
    id: i64,
    targets: &Targets,
) -> StoreResult<()> {
    if let Targets::Providers(ids) = targets {
        for provider_id in ids {
            sqlx::query(&format!(
                "INSERT INTO {table} ({column}, provider_id) VALUES ($1, $2)"
            ))
            .bind(id)
            .bind(provider_id)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

fn window_from_row(row: &DbRow, targets: Targets) -> StoreResult<Window> {
    let kind: String = row.try_get("kind")?;
    Ok(Window {
        id: row.try_get("id")?,
        kind: WindowKind::parse(&kind).ok_or_else(|| corrupt("window kind", &kind))?,
        series_id: row.try_get("series_id")?,
        text: text_from_row(row)?,
        targets,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        outside_preferred: row.try_get("outside_preferred")?,
        revision: row.try_get("revision")?,
        rescheduled_at: row.try_get("rescheduled_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        closed_at: row.try_get("closed_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn load_window(conn: &mut Conn, id: i64) -> StoreResult<Window> {
    let row = sqlx::query(&format!(
        "SELECT {WINDOW_COLUMNS} FROM maintenance_windows WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    let targets = window_targets(conn, &row).await?;
    window_from_row(&row, targets)
}

async fn window_targets(conn: &mut Conn, row: &DbRow) -> StoreResult<Targets> {
    let all: bool = row.try_get("all_providers")?;
    Ok(if all {
        Targets::All
    } else {
        let id: i64 = row.try_get("id")?;
        Targets::Providers(load_targets(conn, "maintenance_targets", "window_id", id).await?)
    })
}

async fn insert_window(tx: &mut Tx, w: &NewWindow, now: DateTime<Utc>) -> StoreResult<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO maintenance_windows (kind, series_id, title, description, systems, \
         all_providers, starts_at, ends_at, outside_preferred, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
    )
    .bind(w.kind.as_str())
    .bind(w.series_id)
    .bind(&w.text.title)
    .bind(&w.text.description)
    .bind(systems_json(&w.text.systems))
    .bind(w.targets == Targets::All)
    .bind(w.starts_at)
    .bind(w.ends_at)
    .bind(w.outside_preferred)
    .bind(w.created_by)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    insert_targets(tx, "maintenance_targets", "window_id", id, &w.targets).await?;
    Ok(id)
}

async fn insert_notices(
    tx: &mut Tx,
    window_id: i64,
    notices: &[NewNotice],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for n in notices {
        sqlx::query(
            "INSERT INTO notices (window_id, kind, message, due_at, state, created_at) \
             VALUES ($1, $2, $3, $4, 'scheduled', $5)",
        )
        .bind(window_id)
        .bind(n.kind.as_str())
        .bind(&n.message)
        .bind(n.due_at)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn notice_from_row(row: &DbRow) -> StoreResult<Notice> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    Ok(Notice {
        id: row.try_get("id")?,
        window_id: row.try_get("window_id")?,
        kind: NoticeKind::parse(&kind).ok_or_else(|| corrupt("notice kind", &kind))?,
        message: row.try_get("message")?,
        due_at: row.try_get("due_at")?,
        state: NoticeState::parse(&state).ok_or_else(|| corrupt("notice state", &state))?,
        expanded_at: row.try_get("expanded_at")?,
        late: row.try_get("late")?,
    })
}

async fn series_from_row(conn: &mut Conn, row: &DbRow) -> StoreResult<Series> {
    let id: i64 = row.try_get("id")?;
    let all: bool = row.try_get("all_providers")?;
    let targets = if all {
        Targets::All
    } else {
        Targets::Providers(load_targets(conn, "maintenance_series_targets", "series_id", id).await?)
    };
    let duration: i64 = row.try_get("duration_minutes")?;
    Ok(Series {
        id,
        text: text_from_row(row)?,
        targets,
        cron: row.try_get("cron")?,
        duration_minutes: u32::try_from(duration)
            .map_err(|_| corrupt("duration", &duration.to_string()))?,
        outside_preferred: row.try_get("outside_preferred")?,
        next_start_at: row.try_get("next_start_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        created_at: row.try_get("created_at")?,
    })
}

async fn load_series(conn: &mut Conn, id: i64) -> StoreResult<Series> {
    let row = sqlx::query(&format!(
        "SELECT {SERIES_COLUMNS} FROM maintenance_series WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    series_from_row(conn, &row).await
}

fn delivery_from_row(row: &DbRow) -> StoreResult<Delivery> {
    let channel: String = row.try_get("channel")?;
    let state: String = row.try_get("state")?;
    let kind: Option<String> = row.try_get("notice_kind")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        topic: row.try_get("topic")?,
        notice_id: row.try_get("notice_id")?,
        device_id: row.try_get("device_id")?,
        window_id: row.try_get("window_id")?,
        notice_kind: kind
            .map(|k| NoticeKind::parse(&k).ok_or_else(|| corrupt("notice kind", &k)))
            .transpose()?,
        idempotency_key: row.try_get("idempotency_key")?,
        channel: Channel::parse(&channel).ok_or_else(|| corrupt("channel", &channel))?,
        recipient: row.try_get("recipient")?,
        provider_id: row.try_get("provider_id")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        state: DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state", &state))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        sent_at: row.try_get("sent_at")?,
        late: row.try_get("late")?,
        created_at: row.try_get("created_at")?,
    })
}

async fn load_delivery(conn: &mut Conn, id: i64) -> StoreResult<Delivery> {
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d LEFT JOIN notices n ON n.id = d.notice_id WHERE d.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    delivery_from_row(&row)
}

#[async_trait]
impl NoticeStore for SqlStore {
    async fn notice_policy(&self, org_id: i64) -> StoreResult<Option<NoticePolicy>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT policy FROM notice_policies WHERE org_id = $1")
                .bind(org_id)
                .fetch_optional(self.pool())
                .await?;
        text.map(|t| serde_json::from_str(&t).map_err(|_| corrupt("notice policy", &t)))
            .transpose()
    }

    async fn set_notice_policy(
        &self,
        org_id: i64,
        policy: &NoticePolicy,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let text = serde_json::to_string(policy)
            .map_err(|e| StoreError::Database(sqlx::Error::Protocol(e.to_string())))?;
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO notice_policies (org_id, policy, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (org_id) DO UPDATE SET policy = $2, updated_at = $3",
        )
        .bind(org_id)
        .bind(&text)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_window(
        &self,
        window: &NewWindow,
        notices: &[NewNotice],
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Window> {
        let mut tx = self.write().await?;
        let id = insert_window(&mut tx, window, now).await?;
        insert_notices(&mut tx, id, notices, now).await?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let created = load_window(&mut tx, id).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn window(&self, id: i64) -> StoreResult<Window> {
        let mut conn = self.pool().acquire().await?;
        load_window(&mut conn, id).await
    }

    async fn list_windows(&self, filter: &WindowFilter) -> StoreResult<Vec<Window>> {
        let mut conn = self.pool().acquire().await?;
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {WINDOW_COLUMNS} FROM maintenance_windows w WHERE 1 = 1"
        ));
        if let Some(provider) = filter.provider_id {
            q.push(" AND (w.all_providers OR EXISTS (SELECT 1 FROM maintenance_targets t WHERE t.window_id = w.id AND t.provider_id = ")
                .push_bind(provider)
                .push("))");
        }
        if let Some(kind) = filter.kind {
            q.push(" AND w.kind = ").push_bind(kind.as_str());
        }
        if let Some(after) = filter.ending_after {
            q.push(" AND (w.ends_at IS NULL OR w.ends_at >= ")
                .push_bind(after)
                .push(")");
        }
        if let Some(before) = filter.before_id {
            q.push(" AND w.id < ").push_bind(before);
        }
        q.push(" ORDER BY w.id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = q.build().fetch_all(&mut *conn).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let targets = window_targets(&mut conn, row).await?;
            out.push(window_from_row(row, targets)?);
        }
        Ok(out)
    }

    async fn change_window(
        &self,
        id: i64,
        change: &WindowChange,
        notices: &[NewNotice],
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Window> {
        let mut tx = self.write().await?;
        // Taking the row first (and only while it is open) puts concurrent changes of one
        // window in line: the second cancel or close finds it ended and changes nothing.
        let open = sqlx::query(
            "UPDATE maintenance_windows SET updated_at = $1 \
             WHERE id = $2 AND cancelled_at IS NULL AND closed_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if open == 0 {
            load_window(&mut tx, id).await?;
            return Err(StoreError::Conflict(
                "the window is already cancelled or closed".to_string(),
            ));
        }
        let drops_timetable = match change {
            WindowChange::Reschedule {
                starts_at,
                ends_at,
                outside_preferred,
            } => {
                sqlx::query(
                    "UPDATE maintenance_windows SET starts_at = $1, ends_at = $2, \
                     outside_preferred = $3, rescheduled_at = $4, revision = revision + 1, \
                     updated_at = $4 WHERE id = $5",
                )
                .bind(starts_at)
                .bind(ends_at)
                .bind(outside_preferred)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                true
            }
            WindowChange::Cancel => {
                sqlx::query(
                    "UPDATE maintenance_windows SET cancelled_at = $1, revision = revision + 1, \
                     updated_at = $1 WHERE id = $2",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                true
            }
            WindowChange::Close => {
                sqlx::query(
                    "UPDATE maintenance_windows SET closed_at = $1, ends_at = $1, \
                     revision = revision + 1, updated_at = $1 WHERE id = $2",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                true
            }
            WindowChange::Notify => false,
        };
        if drops_timetable {
            let timetabled: Vec<&str> = NoticeKind::ALL
                .iter()
                .filter(|k| k.is_timetabled())
                .map(|k| k.as_str())
                .collect();
            let mut q = QueryBuilder::<Db>::new(
                "UPDATE notices SET state = 'void' WHERE state = 'scheduled' AND window_id = ",
            );
            q.push_bind(id).push(" AND kind IN (");
            let mut list = q.separated(", ");
            for kind in timetabled {
                list.push_bind(kind);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        insert_notices(&mut tx, id, notices, now).await?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let changed = load_window(&mut tx, id).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn window_notices(&self, window_id: i64) -> StoreResult<Vec<Notice>> {
        let rows = sqlx::query(&format!(
            "SELECT {NOTICE_COLUMNS} FROM notices WHERE window_id = $1 ORDER BY due_at, id"
        ))
        .bind(window_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(notice_from_row).collect()
    }

    async fn create_series(
        &self,
        series: &NewSeries,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Series> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO maintenance_series (title, description, systems, all_providers, cron, \
             duration_minutes, outside_preferred, next_start_at, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
        )
        .bind(&series.text.title)
        .bind(&series.text.description)
        .bind(systems_json(&series.text.systems))
        .bind(series.targets == Targets::All)
        .bind(&series.cron)
        .bind(i64::from(series.duration_minutes))
        .bind(series.outside_preferred)
        .bind(series.next_start_at)
        .bind(series.created_by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        insert_targets(
            &mut tx,
            "maintenance_series_targets",
            "series_id",
            id,
            &series.targets,
        )
        .await?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let created = load_series(&mut tx, id).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn series(&self, id: i64) -> StoreResult<Series> {
        let mut conn = self.pool().acquire().await?;
        load_series(&mut conn, id).await
    }

    async fn list_series(&self) -> StoreResult<Vec<Series>> {
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {SERIES_COLUMNS} FROM maintenance_series ORDER BY id DESC LIMIT 500"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(series_from_row(&mut conn, row).await?);
        }
        Ok(out)
    }

    async fn cancel_series(
        &self,
        id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Series> {
        let mut tx = self.write().await?;
        let current = load_series(&mut tx, id).await?;
        if current.cancelled_at.is_some() {
            return Err(StoreError::Conflict(
                "the series is already cancelled".to_string(),
            ));
        }
        sqlx::query(
            "UPDATE maintenance_series SET cancelled_at = $1, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let changed = load_series(&mut tx, id).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn due_series(&self, until: DateTime<Utc>) -> StoreResult<Vec<Series>> {
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {SERIES_COLUMNS} FROM maintenance_series \
             WHERE cancelled_at IS NULL AND next_start_at IS NOT NULL AND next_start_at <= $1 \
             ORDER BY next_start_at LIMIT 100"
        ))
        .bind(until)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(series_from_row(&mut conn, row).await?);
        }
        Ok(out)
    }

    async fn materialise_occurrence(
        &self,
        series_id: i64,
        expected: DateTime<Utc>,
        window: Option<&NewWindow>,
        notices: &[NewNotice],
        following: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Window>> {
        let mut tx = self.write().await?;
        // Moving the series on first takes its row lock: a second node waits here and then
        // finds the occurrence taken.
        let moved = sqlx::query(
            "UPDATE maintenance_series SET next_start_at = $1, updated_at = $2 \
             WHERE id = $3 AND next_start_at = $4 AND cancelled_at IS NULL",
        )
        .bind(following)
        .bind(now)
        .bind(series_id)
        .bind(expected)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let Some(window) = window.filter(|_| moved > 0) else {
            tx.commit().await?;
            return Ok(None);
        };
        let id = insert_window(&mut tx, window, now).await?;
        insert_notices(&mut tx, id, notices, now).await?;
        let mut event = AuditEvent::unattended("scheduler", "maintenance.occurrence_announce");
        event.target_kind = Some("maintenance_window".to_string());
        event.details = serde_json::json!({ "series_id": series_id }).to_string();
        append_audit_tx(&mut tx, &with_target(event, id), now).await?;
        let created = load_window(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(created))
    }

    async fn due_notices(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Notice>> {
        let rows = sqlx::query(&format!(
            "SELECT {NOTICE_COLUMNS} FROM notices WHERE state = 'scheduled' AND due_at <= $1 \
             ORDER BY due_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(notice_from_row).collect()
    }

    async fn expand_notice(
        &self,
        notice_id: i64,
        deliveries: &[NewDelivery],
        then: &[NewNotice],
        late: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        // Follow-ups are added only to a window still open, decided under the window's row
        // lock, taken first as `change_window` takes it: a close running at the same time
        // either comes first (and nothing is added) or waits and then drops what is added here.
        let window_open = !then.is_empty()
            && sqlx::query(
                "UPDATE maintenance_windows SET updated_at = updated_at \
                 WHERE id = (SELECT window_id FROM notices WHERE id = $1) \
                 AND cancelled_at IS NULL AND closed_at IS NULL",
            )
            .bind(notice_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
        // The state check and the change are one statement: of two nodes expanding the same
        // notice, the second finds it expanded (PostgreSQL re-reads the row after the first
        // commits) and writes nothing.
        let window_id: Option<i64> = sqlx::query_scalar(
            "UPDATE notices SET state = 'expanded', expanded_at = $1, late = $2 \
             WHERE id = $3 AND state = 'scheduled' RETURNING window_id",
        )
        .bind(now)
        .bind(late)
        .bind(notice_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(window_id) = window_id else {
            return Ok(false);
        };
        for chunk in deliveries.chunks(DELIVERY_CHUNK) {
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO deliveries (notice_id, idempotency_key, channel, recipient, \
                 provider_id, subject, body, state, next_attempt_at, late, created_at) ",
            );
            q.push_values(chunk, |mut b, d| {
                b.push_bind(notice_id)
                    .push_bind(&d.idempotency_key)
                    .push_bind(d.channel.as_str())
                    .push_bind(&d.recipient)
                    .push_bind(d.provider_id)
                    .push_bind(&d.subject)
                    .push_bind(&d.body)
                    .push("'pending'")
                    .push_bind(now)
                    .push_bind(late)
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (idempotency_key) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        if window_open {
            insert_notices(&mut tx, window_id, then, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_deliveries(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let mut tx = self.write().await?;
        // The outer conditions repeat the inner ones: PostgreSQL re-checks them on a row another
        // transaction changed meanwhile, so a row is never leased twice.
        let ids: Vec<i64> = sqlx::query_scalar(&format!(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $3 \
                          AND (lease_until IS NULL OR lease_until < $3) \
                          ORDER BY next_attempt_at, id LIMIT $4{SKIP_LOCKED}) \
             AND state = 'pending' AND (lease_until IS NULL OR lease_until < $3) RETURNING id"
        ))
        .bind(node)
        .bind(lease_until)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        if !ids.is_empty() {
            let mut q = QueryBuilder::<Db>::new(format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d LEFT JOIN notices n ON n.id = d.notice_id WHERE d.id IN ("
            ));
            let mut list = q.separated(", ");
            for id in &ids {
                list.push_bind(id);
            }
            q.push(") ORDER BY d.id");
            for row in q.build().fetch_all(&mut *tx).await? {
                out.push(delivery_from_row(&row)?);
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn finish_delivery(
        &self,
        id: i64,
        node: &str,
        outcome: Result<(), String>,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let held = match &outcome {
            Ok(()) => sqlx::query(
                "UPDATE deliveries SET state = 'sent', sent_at = $1, lease_owner = NULL, \
                 lease_until = NULL, last_error = NULL WHERE id = $2 AND lease_owner = $3",
            )
            .bind(now)
            .bind(id)
            .bind(node)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Err(error) => sqlx::query(
                "UPDATE deliveries SET state = $1, next_attempt_at = $2, lease_owner = NULL, \
                 lease_until = NULL, last_error = $3 WHERE id = $4 AND lease_owner = $5",
            )
            .bind(if retry_at.is_some() {
                "pending"
            } else {
                "dead"
            })
            .bind(retry_at.unwrap_or(now))
            .bind(error)
            .bind(id)
            .bind(node)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if held == 0 {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, node, outcome, error) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(now)
        .bind(node)
        .bind(if outcome.is_ok() { "sent" } else { "failed" })
        .bind(outcome.err())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<Delivery>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d LEFT JOIN notices n ON n.id = d.notice_id WHERE 1 = 1"
        ));
        if let Some(state) = filter.state {
            q.push(" AND d.state = ").push_bind(state.as_str());
        }
        if let Some(window) = filter.window_id {
            q.push(" AND n.window_id = ").push_bind(window);
        }
        if let Some(before) = filter.before_id {
            q.push(" AND d.id < ").push_bind(before);
        }
        q.push(" ORDER BY d.id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn delivery(&self, id: i64) -> StoreResult<Delivery> {
        let mut conn = self.pool().acquire().await?;
        load_delivery(&mut conn, id).await
    }

    async fn delivery_attempts(&self, id: i64) -> StoreResult<Vec<DeliveryAttempt>> {
        let rows = sqlx::query(
            "SELECT attempted_at, node, outcome, error FROM delivery_attempts \
             WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let outcome: String = row.try_get("outcome")?;
                Ok(DeliveryAttempt {
                    attempted_at: row.try_get("attempted_at")?,
                    node: row.try_get("node")?,
                    sent: outcome == "sent",
                    error: row.try_get("error")?,
                })
            })
            .collect()
    }

    async fn retry_delivery(
        &self,
        id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Delivery> {
        let mut tx = self.write().await?;
        let changed = sqlx::query(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $1, attempts = 0 \
             WHERE id = $2 AND state = 'dead'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            load_delivery(&mut tx, id).await?;
            return Err(StoreError::Conflict(
                "only a dead-lettered delivery can be retried".to_string(),
            ));
        }
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let delivery = load_delivery(&mut tx, id).await?;
        tx.commit().await?;
        Ok(delivery)
    }

    async fn prune_deliveries(
        &self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        const OLD: &str =
            "(state = 'sent' AND sent_at < $1) OR (state = 'dead' AND created_at < $1)";
        let mut tx = self.write().await?;
        sqlx::query(&format!(
            "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE {OLD})"
        ))
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let pruned = sqlx::query(&format!("DELETE FROM deliveries WHERE {OLD}"))
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if pruned > 0 {
            let mut event = AuditEvent::unattended("scheduler", "outbox.prune");
            event.details =
                serde_json::json!({ "deliveries": pruned, "before": before }).to_string();
            append_audit_tx(&mut tx, &event, now).await?;
        }
        tx.commit().await?;
        Ok(pruned)
    }

    async fn acknowledge_window(
        &self,
        window_id: i64,
        provider_id: i64,
        account_id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let added = sqlx::query(
            "INSERT INTO notice_acknowledgements (window_id, account_id, provider_id, acknowledged_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (window_id, account_id) DO NOTHING",
        )
        .bind(window_id)
        .bind(account_id)
        .bind(provider_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if added > 0 {
            append_audit_tx(&mut tx, &with_target(audit, window_id), now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn acknowledgements(&self, window_id: i64) -> StoreResult<Vec<Acknowledgement>> {
        let rows = sqlx::query(
            "SELECT k.window_id, k.provider_id, k.account_id, a.email, k.acknowledged_at \
             FROM notice_acknowledgements k JOIN accounts a ON a.id = k.account_id \
             WHERE k.window_id = $1 ORDER BY k.acknowledged_at, k.account_id",
        )
        .bind(window_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Acknowledgement {
                    window_id: row.try_get("window_id")?,
                    provider_id: row.try_get("provider_id")?,
                    account_id: row.try_get("account_id")?,
                    account_email: row.try_get("email")?,
                    acknowledged_at: row.try_get("acknowledged_at")?,
                })
            })
            .collect()
    }

    async fn set_calendar_feed(
        &self,
        provider_id: i64,
        token_hash: &str,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO calendar_feeds (provider_id, token_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (provider_id) DO UPDATE SET token_hash = $2, created_at = $3",
        )
        .bind(provider_id)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn calendar_feed_provider(&self, token_hash: &str) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT provider_id FROM calendar_feeds WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)
    }
}
