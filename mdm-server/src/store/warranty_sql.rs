//! The SQL of [`WarrantyStore`], compiled once per backend like `shared_sql.rs`.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{QueryBuilder, Row};

use super::leasing_sql::{
    last_holder, load_lease, open_lease, phone_state, start_holding, LeaseRow,
};
use super::shared::{
    append_audit_tx, corrupt, lock_device, with_details, with_target, SqlStore, Tx,
};
use super::steps_sql::end_holding;
use super::Db;
use crate::domain::audit::AuditEvent;
use crate::domain::device::DeviceStatus;
use crate::domain::lease::{self, LeaseEnd, LeaseTerms};
use crate::domain::warranty::{self, WarrantyState};
use crate::domain::Refusal;
use crate::store::leasing::Lease;
use crate::store::warranty::*;
use crate::store::{StoreError, StoreResult};

type DbRow = <Db as sqlx::Database>::Row;

const COLUMNS: &str = "c.id, c.device_id, d.serial, c.fault, c.under_warranty, c.state, \
     c.supplier_reference, c.replacement_device_id, c.opened_by, c.opened_at, c.updated_at, c.closed_at";
const FROM: &str = "FROM warranty_cases c JOIN devices d ON d.id = c.device_id";

fn case_from_row(row: &DbRow) -> StoreResult<WarrantyCase> {
    let state: String = row.try_get("state")?;
    Ok(WarrantyCase {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        serial: row.try_get("serial")?,
        fault: row.try_get("fault")?,
        under_warranty: row.try_get("under_warranty")?,
        state: WarrantyState::parse(&state).map_err(|_| corrupt("warranty state", &state))?,
        supplier_reference: row.try_get("supplier_reference")?,
        replacement_device_id: row.try_get("replacement_device_id")?,
        opened_by: row.try_get("opened_by")?,
        opened_at: row.try_get("opened_at")?,
        updated_at: row.try_get("updated_at")?,
        closed_at: row.try_get("closed_at")?,
    })
}

async fn load(conn: &mut <Db as sqlx::Database>::Connection, id: i64) -> StoreResult<WarrantyCase> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} {FROM} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    case_from_row(&row)
}

/// The case as it is once its phone is locked for this transaction: changes to a case and its
/// phone take turns, and each sees what the one before it committed.
async fn locked(tx: &mut Tx, id: i64) -> StoreResult<WarrantyCase> {
    let device = load(tx, id).await?.device_id;
    lock_device(tx, device).await?;
    load(tx, id).await
}

async fn event(
    tx: &mut Tx,
    case_id: i64,
    by: Option<i64>,
    from: Option<WarrantyState>,
    to: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO warranty_events (case_id, at, actor_id, from_state, to_state, note) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(case_id)
    .bind(now)
    .bind(by)
    .bind(from.map(WarrantyState::as_str))
    .bind(to)
    .bind(note)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl WarrantyStore for SqlStore {
    async fn open_warranty_case(
        &self,
        new: &NewWarrantyCase,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<WarrantyCase> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, new.device_id).await?;
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM warranty_cases WHERE device_id = $1 AND state <> 'closed'",
        )
        .bind(new.device_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(open) = open {
            return Err(Refusal::new(
                "warranty-case-open",
                format!("the phone has an open warranty case ({open}): add to that one, or close it first"),
            )
            .into());
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO warranty_cases (device_id, fault, under_warranty, state, opened_by, opened_at, updated_at) \
             VALUES ($1, $2, $3, 'opened', $4, $5, $5) RETURNING id",
        )
        .bind(new.device_id)
        .bind(&new.fault)
        .bind(new.under_warranty)
        .bind(new.opened_by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        event(
            &mut tx,
            id,
            new.opened_by,
            None,
            "opened",
            Some(&new.fault),
            now,
        )
        .await?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let case = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(case)
    }

    async fn warranty_case(&self, id: i64) -> StoreResult<WarrantyCase> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, id).await
    }

    async fn warranty_events(&self, id: i64) -> StoreResult<Vec<WarrantyEvent>> {
        let rows = sqlx::query(
            "SELECT at, actor_id, from_state, to_state, note FROM warranty_events \
             WHERE case_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WarrantyEvent {
                    at: r.try_get("at")?,
                    actor_id: r.try_get("actor_id")?,
                    from_state: r.try_get("from_state")?,
                    to_state: r.try_get("to_state")?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
    }

    async fn list_warranty_cases(
        &self,
        open_only: bool,
        device_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<WarrantyCase>> {
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} {FROM} WHERE 1 = 1"));
        if open_only {
            q.push(" AND c.state <> 'closed'");
        }
        if let Some(d) = device_id {
            q.push(" AND c.device_id = ").push_bind(d);
        }
        q.push(" ORDER BY c.id DESC LIMIT ")
            .push_bind(i64::from(limit));
        q.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(case_from_row)
            .collect()
    }

    async fn move_warranty_case(
        &self,
        id: i64,
        step: &WarrantyMove,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<WarrantyCase> {
        let mut tx = self.write().await?;
        let case = locked(&mut tx, id).await?;
        let row = sqlx::query(
            "SELECT d.wiped_at, d.marked_wiped_at, \
             EXISTS (SELECT 1 FROM leases l WHERE l.device_id = d.id AND l.ended_at IS NULL) AS lease_open, \
             d.status FROM devices d WHERE d.id = $1",
        )
        .bind(case.device_id)
        .fetch_one(&mut *tx)
        .await?;
        let status: String = row.try_get("status")?;
        let phone = warranty::PhoneNow {
            wiped: warranty::wiped_since(
                case.opened_at,
                row.try_get("wiped_at")?,
                row.try_get("marked_wiped_at")?,
            ),
            lease_open: row.try_get("lease_open")?,
            lost: status == DeviceStatus::Lost.as_str(),
        };
        let to = warranty::check_transition(case.state, step.to, phone)?;
        if let Some(status) = warranty::status_after(to, phone.lease_open) {
            sqlx::query("UPDATE devices SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now)
                .bind(case.device_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE warranty_cases SET state = $1, updated_at = $2, \
             supplier_reference = COALESCE($3, supplier_reference), \
             closed_at = CASE WHEN $1 = 'closed' THEN $2 ELSE closed_at END WHERE id = $4",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(&step.supplier_reference)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        event(
            &mut tx,
            id,
            step.by,
            Some(case.state),
            to.as_str(),
            step.note.as_deref(),
            now,
        )
        .await?;
        let audit = with_details(
            audit,
            serde_json::json!({
                "device_id": case.device_id, "from": case.state.as_str(), "to": to.as_str()
            }),
        );
        append_audit_tx(&mut tx, &audit, now).await?;
        let case = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(case)
    }

    async fn swap_warranty_phone(
        &self,
        id: i64,
        replacement: i64,
        by: Option<i64>,
        today: NaiveDate,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<(WarrantyCase, Lease)> {
        let mut tx = self.write().await?;
        let case = locked(&mut tx, id).await?;
        lock_device(&mut tx, replacement).await?;
        let old: Option<i64> =
            sqlx::query_scalar("SELECT id FROM leases WHERE device_id = $1 AND ended_at IS NULL")
                .bind(case.device_id)
                .fetch_optional(&mut *tx)
                .await?;
        let target = phone_state(&mut tx, replacement).await?;
        let compliant: Option<String> =
            sqlx::query_scalar("SELECT status FROM device_compliance WHERE device_id = $1")
                .bind(replacement)
                .fetch_optional(&mut *tx)
                .await?;
        warranty::may_swap(
            case.state,
            old.is_some(),
            target.status,
            target.wipe.enrolled_at.is_some(),
            compliant.as_deref() == Some("compliant"),
        )?;
        let Some(old) = old else {
            return Err(StoreError::NotFound);
        };
        let old_lease = load_lease(&mut tx, old).await?;
        lease::may_lease(&target, old_lease.provider_id)?;
        let holder = last_holder(&mut tx, old).await?;
        sqlx::query("UPDATE leases SET ended_at = $1, end_reason = $2 WHERE id = $3")
            .bind(now)
            .bind(LeaseEnd::Swapped.as_str())
            .bind(old)
            .execute(&mut *tx)
            .await?;
        end_holding(&mut tx, case.device_id, now).await?;
        sqlx::query(
            "UPDATE devices SET status = $1, provider_id = NULL, assignment_ended_at = $2, \
             updated_at = $2 WHERE id = $3",
        )
        .bind(LeaseEnd::Swapped.status_after().as_str())
        .bind(now)
        .bind(case.device_id)
        .execute(&mut *tx)
        .await?;
        let terms = LeaseTerms::carried_over(
            today,
            old_lease.ends_on,
            old_lease.monthly_price_ore,
            old_lease.data_gb,
        );
        let new_id = open_lease(
            &mut tx,
            &LeaseRow {
                device_id: replacement,
                provider_id: old_lease.provider_id,
                terms,
                request_id: None,
                replaces: Some(old),
                created_by: by,
            },
            now,
        )
        .await?;
        if let Some(holder) = holder {
            start_holding(&mut tx, replacement, new_id, holder, now).await?;
        }
        sqlx::query(
            "UPDATE warranty_cases SET replacement_device_id = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(replacement)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let note = format!("lease {old} moved to phone {replacement} as lease {new_id}");
        event(
            &mut tx,
            id,
            by,
            Some(case.state),
            "swapped",
            Some(&note),
            now,
        )
        .await?;
        let audit = with_details(
            audit,
            serde_json::json!({
                "device_id": case.device_id, "replacement_device_id": replacement,
                "old_lease_id": old, "new_lease_id": new_id, "holder_id": holder,
            }),
        );
        append_audit_tx(&mut tx, &audit, now).await?;
        let case = load(&mut tx, id).await?;
        let lease = load_lease(&mut tx, new_id).await?;
        tx.commit().await?;
        Ok((case, lease))
    }

    async fn warranties_ending(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        limit: u32,
    ) -> StoreResult<Vec<WarrantyEnding>> {
        let rows = sqlx::query(
            "SELECT id, serial, provider_id, warranty_end FROM devices \
             WHERE warranty_end >= $1 AND warranty_end <= $2 \
             AND status NOT IN ('retired', 'awaiting_wipe') ORDER BY warranty_end, id LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WarrantyEnding {
                    device_id: r.try_get("id")?,
                    serial: r.try_get("serial")?,
                    provider_id: r.try_get("provider_id")?,
                    warranty_end: r.try_get("warranty_end")?,
                })
            })
            .collect()
    }
}
