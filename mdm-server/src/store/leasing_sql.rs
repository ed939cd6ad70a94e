//! The SQL of [`LeasingStore`], compiled once per backend like `shared_sql.rs`.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{QueryBuilder, Row};

use super::shared::{
    append_audit_tx, corrupt, lock_device, with_details, with_target, SqlStore, Tx,
};
use super::steps_sql::{end_holding, forget_phone, insert_alerts, insert_command};
use super::Db;
use crate::domain::audit::AuditEvent;
use crate::domain::device::DeviceStatus;
use crate::domain::lease::{self, LeaseTerms, PhoneState};
use crate::domain::outbox::Topic;
use crate::domain::phone_request::{self, RequestState};
use crate::domain::role::Scope;
use crate::domain::wipe_gate::{check_manual_wipe, WipeEvidence};
use crate::domain::Refusal;
use crate::store::leasing::*;
use crate::store::notices::NewDelivery;
use crate::store::{StoreError, StoreResult};

type DbRow = <Db as sqlx::Database>::Row;

const LEASE_COLUMNS: &str = "l.id, l.device_id, d.serial, l.provider_id, l.starts_on, l.ends_on, \
     l.monthly_price_ore, l.data_gb, l.request_id, l.replaces_lease_id, l.created_by, l.created_at, \
     l.ended_at, l.end_reason, CASE WHEN l.ended_at IS NULL THEN d.holder_id END AS holder_id";
const LEASE_FROM: &str = "FROM leases l JOIN devices d ON d.id = l.device_id";

fn lease_from_row(row: &DbRow) -> StoreResult<Lease> {
    Ok(Lease {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        serial: row.try_get("serial")?,
        provider_id: row.try_get("provider_id")?,
        starts_on: row.try_get("starts_on")?,
        ends_on: row.try_get("ends_on")?,
        monthly_price_ore: row.try_get("monthly_price_ore")?,
        data_gb: row.try_get("data_gb")?,
        request_id: row.try_get("request_id")?,
        replaces_lease_id: row.try_get("replaces_lease_id")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        ended_at: row.try_get("ended_at")?,
        end_reason: row.try_get("end_reason")?,
        holder_id: row.try_get("holder_id")?,
    })
}

pub(super) async fn load_lease(
    conn: &mut <Db as sqlx::Database>::Connection,
    id: i64,
) -> StoreResult<Lease> {
    let row = sqlx::query(&format!(
        "SELECT {LEASE_COLUMNS} {LEASE_FROM} WHERE l.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    lease_from_row(&row)
}

const WIPE_COLUMNS: &str =
    "id, device_id, reason, recorded_by, recorded_at, confirmed_by, confirmed_at";

fn wipe_from_row(row: &DbRow) -> StoreResult<ManualWipe> {
    Ok(ManualWipe {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        reason: row.try_get("reason")?,
        recorded_by: row.try_get("recorded_by")?,
        recorded_at: row.try_get("recorded_at")?,
        confirmed_by: row.try_get("confirmed_by")?,
        confirmed_at: row.try_get("confirmed_at")?,
    })
}

const REQUEST_COLUMNS: &str = "id, provider_id, quantity, fulfilled, model_id, needed_by, \
     delivery_note, replaces_lease_id, state, created_by, created_at, due_at, closed_at";

fn request_from_row(row: &DbRow) -> StoreResult<PhoneRequest> {
    let state: String = row.try_get("state")?;
    Ok(PhoneRequest {
        id: row.try_get("id")?,
        provider_id: row.try_get("provider_id")?,
        quantity: row.try_get("quantity")?,
        fulfilled: row.try_get("fulfilled")?,
        model_id: row.try_get("model_id")?,
        needed_by: row.try_get("needed_by")?,
        delivery_note: row.try_get("delivery_note")?,
        replaces_lease_id: row.try_get("replaces_lease_id")?,
        state: RequestState::parse(&state).map_err(|_| corrupt("request state", &state))?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        due_at: row.try_get("due_at")?,
        closed_at: row.try_get("closed_at")?,
    })
}

async fn load_request(
    conn: &mut <Db as sqlx::Database>::Connection,
    id: i64,
) -> StoreResult<PhoneRequest> {
    read_request(conn, id, "").await
}

/// The request, locked until the transaction ends: leases fulfilling it and its cancellation
/// take turns.
async fn lock_request(tx: &mut Tx, id: i64) -> StoreResult<PhoneRequest> {
    read_request(tx, id, super::FOR_UPDATE).await
}

async fn read_request(
    conn: &mut <Db as sqlx::Database>::Connection,
    id: i64,
    lock: &str,
) -> StoreResult<PhoneRequest> {
    let row = sqlx::query(&format!(
        "SELECT {REQUEST_COLUMNS} FROM phone_requests WHERE id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    request_from_row(&row)
}

/// What the rules need to know about a phone, read inside the caller's transaction.
pub(super) async fn phone_state(tx: &mut Tx, device_id: i64) -> StoreResult<PhoneState> {
    let row = sqlx::query(
        "SELECT d.status, d.provider_id, d.holder_id, d.assignment_ended_at, d.wipe_sent_at, \
         d.wiped_at, d.enrolled_at, d.marked_wiped_at, l.provider_id AS leased_to \
         FROM devices d LEFT JOIN leases l ON l.device_id = d.id AND l.ended_at IS NULL \
         WHERE d.id = $1",
    )
    .bind(device_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    let status: String = row.try_get("status")?;
    let leased_to: Option<i64> = row.try_get("leased_to")?;
    let provider: Option<i64> = row.try_get("provider_id")?;
    Ok(PhoneState {
        status: DeviceStatus::parse(&status).map_err(|_| corrupt("device status", &status))?,
        leased_to,
        holder: row.try_get("holder_id")?,
        wipe: WipeEvidence {
            assignment_ended_at: row.try_get("assignment_ended_at")?,
            wipe_sent_at: row.try_get("wipe_sent_at")?,
            wipe_acknowledged_at: row.try_get("wiped_at")?,
            enrolled_at: row.try_get("enrolled_at")?,
            marked_wiped_at: row.try_get("marked_wiped_at")?,
        },
        placed_with: if leased_to.is_none() { provider } else { None },
    })
}

pub(super) async fn start_holding(
    tx: &mut Tx,
    device_id: i64,
    lease_id: i64,
    holder: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO holder_periods (device_id, lease_id, account_id, started_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(device_id)
    .bind(lease_id)
    .bind(holder)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE devices SET holder_id = $1 WHERE id = $2")
        .bind(holder)
        .bind(device_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The last holder of a lease, if still an active account: the person a replacement phone
/// goes to (a wipe or a write-off ends the holding before the replacement exists).
pub(super) async fn last_holder(tx: &mut Tx, lease_id: i64) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT h.account_id FROM holder_periods h JOIN accounts a ON a.id = h.account_id \
         WHERE h.lease_id = $1 AND a.active = $2 ORDER BY h.id DESC LIMIT 1",
    )
    .bind(lease_id)
    .bind(true)
    .fetch_optional(&mut **tx)
    .await?)
}

/// A lease to write.
pub(super) struct LeaseRow {
    pub device_id: i64,
    pub provider_id: i64,
    pub terms: LeaseTerms,
    pub request_id: Option<i64>,
    pub replaces: Option<i64>,
    pub created_by: Option<i64>,
}

/// Writes a lease inside the caller's transaction and marks the phone leased to the provider.
/// The rules (`domain::lease::may_lease`) were checked by the caller.
pub(super) async fn open_lease(tx: &mut Tx, l: &LeaseRow, now: DateTime<Utc>) -> StoreResult<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO leases (device_id, provider_id, starts_on, ends_on, monthly_price_ore, \
         data_gb, request_id, replaces_lease_id, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(l.device_id)
    .bind(l.provider_id)
    .bind(l.terms.starts_on)
    .bind(l.terms.ends_on)
    .bind(l.terms.monthly_price_ore)
    .bind(i64::from(l.terms.data_gb))
    .bind(l.request_id)
    .bind(l.replaces)
    .bind(l.created_by)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("UPDATE devices SET status = $1, provider_id = $2, updated_at = $3 WHERE id = $4")
        .bind(DeviceStatus::Leased.as_str())
        .bind(l.provider_id)
        .bind(now)
        .bind(l.device_id)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// Ends one open lease inside the caller's transaction and queues the phone's wipe; `None`
/// when the lease had ended already (another request got there first). `current` is the
/// phone's status, read under its lock. A lost phone or one in repair keeps its status, and a
/// lost phone's case will bring it back to waiting for its wipe.
async fn end_one(
    tx: &mut Tx,
    (device_id, current): (i64, DeviceStatus),
    lease_id: i64,
    ending: &LeaseEnding,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    let ended = sqlx::query(
        "UPDATE leases SET ended_at = $1, end_reason = $2 WHERE id = $3 AND ended_at IS NULL",
    )
    .bind(now)
    .bind(ending.how.as_str())
    .bind(lease_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if ended == 0 {
        return Ok(None);
    }
    end_holding(tx, device_id, now).await?;
    let after = ending.how.status_after().as_str();
    sqlx::query(
        "UPDATE devices SET status = $1, provider_id = NULL, assignment_ended_at = $2, \
         updated_at = $2 WHERE id = $3",
    )
    .bind(ending.how.status_from(current).as_str())
    .bind(now)
    .bind(device_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE lost_cases SET status_before = $1 WHERE device_id = $2 AND state = 'open'")
        .bind(after)
        .bind(device_id)
        .execute(&mut **tx)
        .await?;
    Ok(Some(
        insert_command(tx, &ending.wipe.for_device(device_id), now).await?,
    ))
}

fn scoped_to(q: &mut QueryBuilder<'_, Db>, column: &str, scope: Scope) {
    if let Some(org) = scope.org() {
        q.push(format!(" AND {column} = ")).push_bind(org);
    }
}

#[async_trait]
impl LeasingStore for SqlStore {
    async fn lease_device(
        &self,
        new: &NewLease,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Lease> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, new.device_id).await?;
        let phone = phone_state(&mut tx, new.device_id).await?;
        lease::may_lease(&phone, new.provider_id)?;
        let mut replaces = None;
        if let Some(request_id) = new.request_id {
            let request = lock_request(&mut tx, request_id).await?;
            if request.provider_id != new.provider_id {
                return Err(Refusal::new(
                    "request-other-provider",
                    "the request is another provider's: lease the phone to the provider that asked",
                )
                .into());
            }
            let quantity = u32::try_from(request.quantity).unwrap_or(u32::MAX);
            let fulfilled = u32::try_from(request.fulfilled).unwrap_or(0);
            let (count, state) = phone_request::fulfil_one(request.state, fulfilled, quantity)?;
            sqlx::query(
                "UPDATE phone_requests SET fulfilled = $1, state = $2, closed_at = $3 WHERE id = $4",
            )
            .bind(i64::from(count))
            .bind(state.as_str())
            .bind((state != RequestState::Open).then_some(now))
            .bind(request_id)
            .execute(&mut *tx)
            .await?;
            replaces = request.replaces_lease_id;
        }
        let id = open_lease(
            &mut tx,
            &LeaseRow {
                device_id: new.device_id,
                provider_id: new.provider_id,
                terms: new.terms,
                request_id: new.request_id,
                replaces,
                created_by: new.created_by,
            },
            now,
        )
        .await?;
        // A replacement takes over the written-off phone's holder, if they are still active.
        let holder = match (new.holder_id, replaces) {
            (Some(h), _) => Some(h),
            (None, Some(old)) => last_holder(&mut tx, old).await?,
            (None, None) => None,
        };
        if let Some(holder) = holder {
            start_holding(&mut tx, new.device_id, id, holder, now).await?;
        }
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let lease = load_lease(&mut tx, id).await?;
        tx.commit().await?;
        Ok(lease)
    }

    async fn set_holder(
        &self,
        device_id: i64,
        provider_id: Option<i64>,
        holder: Option<i64>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Lease> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, device_id).await?;
        let phone = phone_state(&mut tx, device_id).await?;
        if phone.leased_to != provider_id {
            return Err(Refusal::new(
                "not-leased",
                "the phone's lease changed meanwhile: look at it again",
            )
            .into());
        }
        lease::may_set_holder(&phone, holder)?;
        let lease_id: i64 =
            sqlx::query_scalar("SELECT id FROM leases WHERE device_id = $1 AND ended_at IS NULL")
                .bind(device_id)
                .fetch_one(&mut *tx)
                .await?;
        if phone.holder != holder {
            end_holding(&mut tx, device_id, now).await?;
            if let Some(next) = holder {
                start_holding(&mut tx, device_id, lease_id, next, now).await?;
            }
            let audit = with_details(
                audit,
                serde_json::json!({ "from": phone.holder, "to": holder, "lease_id": lease_id }),
            );
            append_audit_tx(&mut tx, &audit, now).await?;
        }
        let lease = load_lease(&mut tx, lease_id).await?;
        tx.commit().await?;
        Ok(lease)
    }

    async fn end_lease(
        &self,
        device_id: i64,
        provider_id: i64,
        ending: &LeaseEnding,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<(Lease, i64)> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, device_id).await?;
        let phone = phone_state(&mut tx, device_id).await?;
        lease::may_return(&phone, provider_id)?;
        let lease_id: i64 =
            sqlx::query_scalar("SELECT id FROM leases WHERE device_id = $1 AND ended_at IS NULL")
                .bind(device_id)
                .fetch_one(&mut *tx)
                .await?;
        let wipe = end_one(&mut tx, (device_id, phone.status), lease_id, ending, now)
            .await?
            .ok_or(StoreError::NotFound)?;
        let audit = with_details(
            audit,
            serde_json::json!({ "lease_id": lease_id, "holder": phone.holder, "wipe_command_id": wipe }),
        );
        append_audit_tx(&mut tx, &audit, now).await?;
        let lease = load_lease(&mut tx, lease_id).await?;
        tx.commit().await?;
        Ok((lease, wipe))
    }

    async fn end_provider_leases(
        &self,
        provider_id: i64,
        ending: &LeaseEnding,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Vec<i64>> {
        let mut tx = self.write().await?;
        let open: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, device_id FROM leases WHERE provider_id = $1 AND ended_at IS NULL ORDER BY id",
        )
        .bind(provider_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut devices = Vec::with_capacity(open.len());
        for (lease_id, device_id) in open {
            lock_device(&mut tx, device_id).await?;
            let current = phone_state(&mut tx, device_id).await?.status;
            if end_one(&mut tx, (device_id, current), lease_id, ending, now)
                .await?
                .is_some()
            {
                devices.push(device_id);
            }
        }
        if !devices.is_empty() {
            let audit = with_details(audit, serde_json::json!({ "devices": devices.len() }));
            append_audit_tx(&mut tx, &audit, now).await?;
        }
        tx.commit().await?;
        Ok(devices)
    }

    async fn providers_past_contract(&self, today: NaiveDate) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT o.id FROM organisations o WHERE o.kind = 'provider' \
             AND o.contract_end IS NOT NULL AND o.contract_end < $1 \
             AND EXISTS (SELECT 1 FROM leases l WHERE l.provider_id = o.id AND l.ended_at IS NULL) \
             ORDER BY o.id",
        )
        .bind(today)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn lease(&self, scope: Scope, id: i64) -> StoreResult<Lease> {
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {LEASE_COLUMNS} {LEASE_FROM} WHERE l.id = "));
        q.push_bind(id);
        scoped_to(&mut q, "l.provider_id", scope);
        let row = q
            .build()
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        lease_from_row(&row)
    }

    async fn list_leases(&self, scope: Scope, f: &LeaseFilter) -> StoreResult<Vec<Lease>> {
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {LEASE_COLUMNS} {LEASE_FROM} WHERE 1 = 1"));
        scoped_to(&mut q, "l.provider_id", scope);
        if let Some(p) = f.provider_id {
            q.push(" AND l.provider_id = ").push_bind(p);
        }
        if let Some(d) = f.device_id {
            q.push(" AND l.device_id = ").push_bind(d);
        }
        if f.open_only || f.ending_by.is_some() {
            q.push(" AND l.ended_at IS NULL");
        }
        if let Some(by) = f.ending_by {
            q.push(" AND l.ends_on IS NOT NULL AND l.ends_on <= ")
                .push_bind(by);
        }
        if let Some(before) = f.before_id {
            q.push(" AND l.id < ").push_bind(before);
        }
        q.push(" ORDER BY l.id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        q.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(lease_from_row)
            .collect()
    }

    async fn holder_history(&self, device_id: i64) -> StoreResult<Vec<HolderPeriod>> {
        let rows = sqlx::query(
            "SELECT h.lease_id, h.account_id, a.display_name, h.started_at, h.ended_at \
             FROM holder_periods h JOIN accounts a ON a.id = h.account_id \
             WHERE h.device_id = $1 ORDER BY h.id",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HolderPeriod {
                    lease_id: r.try_get("lease_id")?,
                    account_id: r.try_get("account_id")?,
                    display_name: r.try_get("display_name")?,
                    started_at: r.try_get("started_at")?,
                    ended_at: r.try_get("ended_at")?,
                })
            })
            .collect()
    }

    async fn wipe_evidence(&self, device_id: i64) -> StoreResult<WipeEvidence> {
        let row = sqlx::query(
            "SELECT assignment_ended_at, wipe_sent_at, wiped_at, enrolled_at, marked_wiped_at \
             FROM devices WHERE id = $1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(WipeEvidence {
            assignment_ended_at: row.try_get("assignment_ended_at")?,
            wipe_sent_at: row.try_get("wipe_sent_at")?,
            wipe_acknowledged_at: row.try_get("wiped_at")?,
            enrolled_at: row.try_get("enrolled_at")?,
            marked_wiped_at: row.try_get("marked_wiped_at")?,
        })
    }

    async fn record_manual_wipe(
        &self,
        device_id: i64,
        reason: &str,
        by: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<ManualWipe> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, device_id).await?;
        let pending: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM manual_wipes WHERE device_id = $1 AND confirmed_at IS NULL",
        )
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        if pending.is_some() {
            return Err(Refusal::new(
                "manual-wipe-pending",
                "a manual wipe of this phone is already waiting for a second operator admin's confirmation",
            )
            .into());
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO manual_wipes (device_id, reason, recorded_by, recorded_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(device_id)
        .bind(reason)
        .bind(by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(ManualWipe {
            id,
            device_id,
            reason: reason.to_string(),
            recorded_by: by,
            recorded_at: now,
            confirmed_by: None,
            confirmed_at: None,
        })
    }

    async fn confirm_manual_wipe(
        &self,
        device_id: i64,
        by: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<ManualWipe> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, device_id).await?;
        let row = sqlx::query(&format!(
            "SELECT {WIPE_COLUMNS} FROM manual_wipes WHERE device_id = $1 AND confirmed_at IS NULL"
        ))
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            StoreError::Refused(Refusal::new(
                "manual-wipe-not-recorded",
                "no manual wipe of this phone is waiting: an operator admin records one with a reason first",
            ))
        })?;
        let mut wipe = wipe_from_row(&row)?;
        check_manual_wipe(wipe.recorded_by, &wipe.reason, by)
            .map_err(|why| Refusal::new("four-eyes", why))?;
        sqlx::query("UPDATE manual_wipes SET confirmed_by = $1, confirmed_at = $2 WHERE id = $3")
            .bind(by)
            .bind(now)
            .bind(wipe.id)
            .execute(&mut *tx)
            .await?;
        forget_phone(
            &mut tx,
            device_id,
            None,
            "purged: the phone was marked wiped by hand",
            now,
            now,
        )
        .await?;
        sqlx::query("UPDATE devices SET marked_wiped_at = $1 WHERE id = $2")
            .bind(now)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        wipe.confirmed_by = Some(by);
        wipe.confirmed_at = Some(now);
        Ok(wipe)
    }

    async fn manual_wipes(&self, device_id: i64) -> StoreResult<Vec<ManualWipe>> {
        sqlx::query(&format!(
            "SELECT {WIPE_COLUMNS} FROM manual_wipes WHERE device_id = $1 ORDER BY id"
        ))
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(wipe_from_row)
        .collect()
    }

    async fn create_request(
        &self,
        r: &NewPhoneRequest,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<PhoneRequest> {
        let mut tx = self.write().await?;
        let id = insert_request(&mut tx, r, None, now).await?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let request = load_request(&mut tx, id).await?;
        tx.commit().await?;
        Ok(request)
    }

    async fn request(&self, scope: Scope, id: i64) -> StoreResult<PhoneRequest> {
        let mut conn = self.pool.acquire().await?;
        let request = load_request(&mut conn, id).await?;
        match scope.org() {
            Some(org) if org != request.provider_id => Err(StoreError::NotFound),
            _ => Ok(request),
        }
    }

    async fn list_requests(
        &self,
        scope: Scope,
        f: &RequestFilter,
    ) -> StoreResult<Vec<PhoneRequest>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {REQUEST_COLUMNS} FROM phone_requests WHERE 1 = 1"
        ));
        scoped_to(&mut q, "provider_id", scope);
        if let Some(p) = f.provider_id {
            q.push(" AND provider_id = ").push_bind(p);
        }
        if let Some(state) = f.state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(at) = f.overdue_at {
            q.push(" AND state = 'open' AND due_at < ").push_bind(at);
            q.push(" ORDER BY due_at, id");
        } else {
            q.push(" ORDER BY id DESC");
        }
        q.push(" LIMIT ").push_bind(i64::from(f.limit));
        q.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(request_from_row)
            .collect()
    }

    async fn cancel_request(
        &self,
        id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<PhoneRequest> {
        let mut tx = self.write().await?;
        let request = lock_request(&mut tx, id).await?;
        let state = phone_request::cancel(request.state)?;
        sqlx::query("UPDATE phone_requests SET state = $1, closed_at = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        let request = load_request(&mut tx, id).await?;
        tx.commit().await?;
        Ok(request)
    }

    async fn queue_reminders(
        &self,
        reminders: &[(Option<i64>, NewDelivery)],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        if reminders.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for (device_id, message) in reminders {
            insert_alerts(
                &mut tx,
                Topic::Reminder,
                *device_id,
                std::slice::from_ref(message),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Opens a phone request inside the caller's transaction (a written-off phone's replacement is
/// opened with its case).
pub(super) async fn insert_request(
    tx: &mut Tx,
    r: &NewPhoneRequest,
    replaces_lease_id: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO phone_requests (provider_id, quantity, fulfilled, model_id, needed_by, \
         delivery_note, replaces_lease_id, state, created_by, created_at, due_at) \
         VALUES ($1, $2, 0, $3, $4, $5, $6, 'open', $7, $8, $9) RETURNING id",
    )
    .bind(r.provider_id)
    .bind(i64::from(r.quantity))
    .bind(r.model_id)
    .bind(r.needed_by)
    .bind(&r.delivery_note)
    .bind(replaces_lease_id)
    .bind(r.created_by)
    .bind(now)
    .bind(r.due_at)
    .fetch_one(&mut **tx)
    .await?)
}
