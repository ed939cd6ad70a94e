//! The SQL of [`LostCaseStore`], compiled once per backend like `shared_sql.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::leasing_sql::insert_request;
use super::shared::{
    append_audit_tx, corrupt, lock_device, revoke_live_identities, with_details, with_target,
    SqlStore, Tx,
};
use super::steps_sql::{end_holding, insert_alerts, insert_command, purge_pending};
use super::Db;
use crate::domain::audit::AuditEvent;
use crate::domain::device::DeviceStatus;
use crate::domain::lease::LeaseEnd;
use crate::domain::lost_case::{self, LossKind, LostState, Resolution};
use crate::domain::outbox::Topic;
use crate::domain::role::Scope;
use crate::domain::subscription::{self, SimStatus};
use crate::domain::Refusal;
use crate::store::commands::CommandTemplate;
use crate::store::lost_cases::*;
use crate::store::{StoreError, StoreResult};

type DbRow = <Db as sqlx::Database>::Row;

const COLUMNS: &str = "c.id, c.device_id, d.serial, c.provider_id, c.kind, c.discovered_at, \
     c.reported_at, c.reported_by, c.circumstances, c.police_report, c.late, c.state, \
     c.lock_command_id, c.wipe_command_id, c.replacement_request_id, c.resolved_at, c.resolved_by";
const FROM: &str = "FROM lost_cases c JOIN devices d ON d.id = c.device_id";

fn state_name(s: LostState) -> &'static str {
    match s {
        LostState::Open => "open",
        LostState::Found => "found",
        LostState::WrittenOff => "written_off",
    }
}

fn parse_state(s: &str) -> StoreResult<LostState> {
    match s {
        "open" => Ok(LostState::Open),
        "found" => Ok(LostState::Found),
        "written_off" => Ok(LostState::WrittenOff),
        other => Err(corrupt("lost case state", other)),
    }
}

fn case_from_row(row: &DbRow) -> StoreResult<LostCase> {
    let state: String = row.try_get("state")?;
    Ok(LostCase {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        serial: row.try_get("serial")?,
        provider_id: row.try_get("provider_id")?,
        kind: row.try_get("kind")?,
        discovered_at: row.try_get("discovered_at")?,
        reported_at: row.try_get("reported_at")?,
        reported_by: row.try_get("reported_by")?,
        circumstances: row.try_get("circumstances")?,
        police_report: row.try_get("police_report")?,
        late: row.try_get("late")?,
        state: parse_state(&state)?,
        lock_command_id: row.try_get("lock_command_id")?,
        wipe_command_id: row.try_get("wipe_command_id")?,
        replacement_request_id: row.try_get("replacement_request_id")?,
        resolved_at: row.try_get("resolved_at")?,
        resolved_by: row.try_get("resolved_by")?,
    })
}

async fn load(conn: &mut <Db as sqlx::Database>::Connection, id: i64) -> StoreResult<LostCase> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} {FROM} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    case_from_row(&row)
}

/// The case as it is once its phone is locked for this transaction: changes to a case and its
/// phone take turns, and each sees what the one before it committed.
async fn locked(tx: &mut Tx, id: i64) -> StoreResult<LostCase> {
    let device = load(tx, id).await?.device_id;
    lock_device(tx, device).await?;
    load(tx, id).await
}

async fn event(
    tx: &mut Tx,
    case_id: i64,
    kind: &str,
    actor: Option<i64>,
    details: serde_json::Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO lost_case_events (case_id, at, kind, actor_id, details) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(case_id)
    .bind(now)
    .bind(kind)
    .bind(actor)
    .bind(details.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a turn of a lost case does to the phone's SIM, if it has one.
enum SimStep {
    /// The loss report: the block is requested.
    RequestBlock,
    /// The phone is found: the re-activation is requested.
    RequestReactivation,
}

/// Takes `step` on the phone's SIM where the subscription rules allow it
/// (`domain::subscription`); the SIM's ICCID when it was taken.
async fn sim_step(
    tx: &mut Tx,
    device_id: i64,
    step: SimStep,
    now: DateTime<Utc>,
) -> StoreResult<Option<String>> {
    let row = sqlx::query("SELECT id, iccid, status FROM sims WHERE device_id = $1")
        .bind(device_id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let status: String = row.try_get("status")?;
    let status = SimStatus::parse(&status).map_err(|_| corrupt("SIM status", &status))?;
    let id: i64 = row.try_get("id")?;
    match step {
        SimStep::RequestBlock => {
            let Some(to) = subscription::on_loss(status) else {
                return Ok(None);
            };
            sqlx::query("UPDATE sims SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(to.as_str())
                .bind(now)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        SimStep::RequestReactivation => {
            if !subscription::needs_reactivation(status) {
                return Ok(None);
            }
            sqlx::query(
                "UPDATE sims SET reactivation_requested_at = $1, updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(Some(row.try_get("iccid")?))
}

#[async_trait]
impl LostCaseStore for SqlStore {
    async fn report_loss(
        &self,
        new: &NewLostCase,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<LostCase> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, new.device_id).await?;
        let row = sqlx::query("SELECT status, provider_id FROM devices WHERE id = $1")
            .bind(new.device_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let status: String = row.try_get("status")?;
        let provider: Option<i64> = row.try_get("provider_id")?;
        let status = DeviceStatus::parse(&status).map_err(|_| corrupt("device status", &status))?;
        lost_case::may_report(status)?;
        let kind = match new.report.kind {
            LossKind::Lost => "lost",
            LossKind::Stolen => "stolen",
        };
        let late = new.report.is_late(now);
        let lock = insert_command(&mut tx, &new.lock.for_device(new.device_id), now).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lost_cases (device_id, provider_id, kind, discovered_at, reported_at, \
             reported_by, circumstances, police_report, late, state, status_before, lock_command_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', $10, $11) RETURNING id",
        )
        .bind(new.device_id)
        .bind(provider)
        .bind(kind)
        .bind(new.report.discovered_at)
        .bind(now)
        .bind(new.reported_by)
        .bind(new.report.circumstances.trim())
        .bind(&new.report.police_report)
        .bind(late)
        .bind(status.as_str())
        .bind(lock)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE devices SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(DeviceStatus::Lost.as_str())
            .bind(now)
            .bind(new.device_id)
            .execute(&mut *tx)
            .await?;
        event(
            &mut tx,
            id,
            "reported",
            new.reported_by,
            serde_json::json!({
                "kind": kind,
                "discovered_at": new.report.discovered_at,
                "late": late,
            }),
            now,
        )
        .await?;
        event(
            &mut tx,
            id,
            "lock_queued",
            None,
            serde_json::json!({ "command_id": lock }),
            now,
        )
        .await?;
        let sim = sim_step(&mut tx, new.device_id, SimStep::RequestBlock, now).await?;
        if let Some(iccid) = &sim {
            event(
                &mut tx,
                id,
                "sim_block_requested",
                None,
                serde_json::json!({ "iccid": iccid }),
                now,
            )
            .await?;
        }
        insert_alerts(&mut tx, Topic::LostCase, new.device_id, &new.notify, now).await?;
        if !new.notify.is_empty() {
            event(
                &mut tx,
                id,
                "service_desk_notified",
                None,
                serde_json::json!({ "recipients": new.notify.len() }),
                now,
            )
            .await?;
        }
        let audit = with_details(
            with_target(audit, id),
            serde_json::json!({
                "device_id": new.device_id,
                "kind": kind,
                "late": late,
                "lock_command_id": lock,
                "sim_block_requested": sim.is_some(),
            }),
        );
        append_audit_tx(&mut tx, &audit, now).await?;
        let case = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(case)
    }

    async fn lost_case(&self, scope: Scope, id: i64) -> StoreResult<LostCase> {
        let mut conn = self.pool.acquire().await?;
        let case = load(&mut conn, id).await?;
        match scope.org() {
            Some(org) if case.provider_id != Some(org) => Err(StoreError::NotFound),
            _ => Ok(case),
        }
    }

    async fn lost_case_events(&self, id: i64) -> StoreResult<Vec<LostCaseEvent>> {
        let rows = sqlx::query(
            "SELECT at, kind, actor_id, details FROM lost_case_events WHERE case_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LostCaseEvent {
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    actor_id: r.try_get("actor_id")?,
                    details: r.try_get("details")?,
                })
            })
            .collect()
    }

    async fn list_lost_cases(
        &self,
        scope: Scope,
        f: &LostCaseFilter,
    ) -> StoreResult<Vec<LostCase>> {
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} {FROM} WHERE 1 = 1"));
        if let Some(org) = scope.org() {
            q.push(" AND c.provider_id = ").push_bind(org);
        }
        if let Some(p) = f.provider_id {
            q.push(" AND c.provider_id = ").push_bind(p);
        }
        if f.open_only {
            q.push(" AND c.state = 'open'");
        }
        if f.late_only {
            q.push(" AND c.late = ").push_bind(true);
        }
        if let Some(before) = f.before_id {
            q.push(" AND c.id < ").push_bind(before);
        }
        q.push(" ORDER BY c.id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        q.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(case_from_row)
            .collect()
    }

    async fn resolve_lost_case(
        &self,
        id: i64,
        end: &CaseEnd,
        by: Option<i64>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<LostCase> {
        let mut tx = self.write().await?;
        let case = locked(&mut tx, id).await?;
        let how = match end {
            CaseEnd::Found { .. } => Resolution::Found,
            CaseEnd::WrittenOff { .. } => Resolution::WrittenOff,
        };
        let state = lost_case::resolve(case.state, how)
            .map_err(|why| Refusal::new("lost-case-closed", why))?;
        let mut details = serde_json::json!({ "resolution": state_name(state) });
        match end {
            CaseEnd::Found { unlock } => {
                let before: String =
                    sqlx::query_scalar("SELECT status_before FROM lost_cases WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                sqlx::query("UPDATE devices SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(&before)
                    .bind(now)
                    .bind(case.device_id)
                    .execute(&mut *tx)
                    .await?;
                let unlock_id =
                    insert_command(&mut tx, &unlock.for_device(case.device_id), now).await?;
                event(
                    &mut tx,
                    id,
                    "unlock_queued",
                    by,
                    serde_json::json!({ "command_id": unlock_id }),
                    now,
                )
                .await?;
                let sim =
                    sim_step(&mut tx, case.device_id, SimStep::RequestReactivation, now).await?;
                if let Some(iccid) = sim {
                    event(
                        &mut tx,
                        id,
                        "sim_reactivation_requested",
                        by,
                        serde_json::json!({ "iccid": iccid }),
                        now,
                    )
                    .await?;
                }
                details["status"] = before.into();
            }
            CaseEnd::WrittenOff { replacement } => {
                purge_pending(
                    &mut tx,
                    case.device_id,
                    None,
                    "purged: the phone was written off",
                    now,
                )
                .await?;
                revoke_live_identities(&mut tx, case.device_id, "written off", now).await?;
                let lease: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM leases WHERE device_id = $1 AND ended_at IS NULL",
                )
                .bind(case.device_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(lease) = lease {
                    sqlx::query("UPDATE leases SET ended_at = $1, end_reason = $2 WHERE id = $3")
                        .bind(now)
                        .bind(LeaseEnd::WrittenOff.as_str())
                        .bind(lease)
                        .execute(&mut *tx)
                        .await?;
                }
                end_holding(&mut tx, case.device_id, now).await?;
                sqlx::query(
                    "UPDATE devices SET status = $1, enrolled_at = NULL, provider_id = NULL, \
                     assignment_ended_at = $2, updated_at = $2 WHERE id = $3",
                )
                .bind(LeaseEnd::WrittenOff.status_after().as_str())
                .bind(now)
                .bind(case.device_id)
                .execute(&mut *tx)
                .await?;
                let request = match (case.provider_id, lease) {
                    (Some(_), Some(lease)) => {
                        Some(insert_request(&mut tx, replacement, Some(lease), now).await?)
                    }
                    _ => None,
                };
                sqlx::query("UPDATE lost_cases SET replacement_request_id = $1 WHERE id = $2")
                    .bind(request)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                event(
                    &mut tx,
                    id,
                    "written_off",
                    by,
                    serde_json::json!({ "lease_id": lease, "replacement_request_id": request }),
                    now,
                )
                .await?;
                details["lease_id"] = lease.into();
                details["replacement_request_id"] = request.into();
            }
        }
        sqlx::query(
            "UPDATE lost_cases SET state = $1, resolved_at = $2, resolved_by = $3 WHERE id = $4",
        )
        .bind(state_name(state))
        .bind(now)
        .bind(by)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if matches!(end, CaseEnd::Found { .. }) {
            event(&mut tx, id, "found", by, serde_json::json!({}), now).await?;
        }
        let audit = with_details(audit, details);
        append_audit_tx(&mut tx, &audit, now).await?;
        let case = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(case)
    }

    async fn lost_cases_to_escalate(
        &self,
        reported_by: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<LostCase>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} {FROM} WHERE c.state = 'open' AND c.wipe_command_id IS NULL \
             AND c.reported_at <= $1 ORDER BY c.reported_at, c.id LIMIT $2"
        ))
        .bind(reported_by)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(case_from_row)
        .collect()
    }

    async fn escalate_lost_case(
        &self,
        id: i64,
        wipe: &CommandTemplate,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.write().await?;
        let case = locked(&mut tx, id).await?;
        if case.state != LostState::Open || case.wipe_command_id.is_some() {
            return Ok(None);
        }
        let command = insert_command(&mut tx, &wipe.for_device(case.device_id), now).await?;
        let claimed = sqlx::query(
            "UPDATE lost_cases SET wipe_command_id = $1 WHERE id = $2 AND wipe_command_id IS NULL",
        )
        .bind(command)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            // Another node queued it between our read and this write; ours is rolled back.
            return Ok(None);
        }
        event(
            &mut tx,
            id,
            "wipe_queued",
            None,
            serde_json::json!({ "command_id": command, "automatic": true }),
            now,
        )
        .await?;
        let audit = with_details(
            with_target(audit, id),
            serde_json::json!({ "device_id": case.device_id, "command_id": command }),
        );
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(Some(command))
    }

    async fn add_lost_case_note(
        &self,
        id: i64,
        actor_id: i64,
        text: &str,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM lost_cases WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        event(
            &mut tx,
            id,
            "note",
            Some(actor_id),
            serde_json::json!({ "text": text }),
            now,
        )
        .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn note_on_open_case(
        &self,
        device_id: i64,
        kind: &str,
        details: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let Some(case) = open_case_of(&mut tx, device_id).await? else {
            return Ok(false);
        };
        event(&mut tx, case, kind, None, details.clone(), now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn note_lost_checkin(
        &self,
        device_id: i64,
        details: &serde_json::Value,
        quiet: chrono::Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let Some(case) = open_case_of(&mut tx, device_id).await? else {
            return Ok(false);
        };
        let recent: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM lost_case_events WHERE case_id = $1 AND kind = 'checked_in' AND at > $2 LIMIT 1",
        )
        .bind(case)
        .bind(now - quiet)
        .fetch_optional(&mut *tx)
        .await?;
        if recent.is_some() {
            return Ok(false);
        }
        event(&mut tx, case, "checked_in", None, details.clone(), now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The phone's open lost case, if it has one.
async fn open_case_of(tx: &mut Tx, device_id: i64) -> StoreResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM lost_cases WHERE device_id = $1 AND state = 'open'")
            .bind(device_id)
            .fetch_optional(&mut **tx)
            .await?,
    )
}
