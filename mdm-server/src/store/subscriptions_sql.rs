//! The SQL of [`SubscriptionStore`], compiled once per backend like `shared_sql.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row};

use super::shared::{append_audit_tx, corrupt, with_details, with_target, SqlStore, Tx};
use super::steps_sql::insert_alerts;
use super::Db;
use crate::domain::audit::AuditEvent;
use crate::domain::outbox::Topic;
use crate::domain::subscription::{self, SimStatus};
use crate::domain::Refusal;
use crate::store::subscriptions::*;
use crate::store::{StoreError, StoreResult};

type DbRow = <Db as sqlx::Database>::Row;

const COLUMNS: &str = "id, iccid, phone_number, carrier, plan, data_gb, status, device_id, \
     reactivation_requested_at, created_at, updated_at";

fn sim_from_row(row: &DbRow) -> StoreResult<Sim> {
    let status: String = row.try_get("status")?;
    Ok(Sim {
        id: row.try_get("id")?,
        iccid: row.try_get("iccid")?,
        phone_number: row.try_get("phone_number")?,
        carrier: row.try_get("carrier")?,
        plan: row.try_get("plan")?,
        data_gb: row.try_get("data_gb")?,
        status: SimStatus::parse(&status).map_err(|_| corrupt("SIM status", &status))?,
        device_id: row.try_get("device_id")?,
        reactivation_requested_at: row.try_get("reactivation_requested_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn load(conn: &mut <Db as sqlx::Database>::Connection, id: i64) -> StoreResult<Sim> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sims WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    sim_from_row(&row)
}

/// Judges the phone's reported card against its SIM on record again, after either changed in
/// this transaction (`subscription::card_mismatch`), and stores the flag if it moved.
async fn rejudge_card(tx: &mut Tx, device_id: i64, now: DateTime<Utc>) -> StoreResult<()> {
    let row = sqlx::query(
        "SELECT d.facts, d.iccid_mismatch, s.iccid FROM devices d \
         LEFT JOIN sims s ON s.device_id = d.id WHERE d.id = $1",
    )
    .bind(device_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    let facts: Option<String> = row.try_get("facts")?;
    let reported = facts
        .and_then(|f| serde_json::from_str::<serde_json::Value>(&f).ok())
        .and_then(|f| f.get("iccid").and_then(|i| i.as_str()).map(str::to_string));
    let recorded: Option<String> = row.try_get("iccid")?;
    let flagged: Option<String> = row.try_get("iccid_mismatch")?;
    let judged = subscription::card_mismatch(recorded.as_deref(), reported.as_deref());
    if judged != flagged {
        sqlx::query("UPDATE devices SET iccid_mismatch = $1, iccid_mismatch_at = $2 WHERE id = $3")
            .bind(&judged)
            .bind(judged.as_ref().map(|_| now))
            .bind(device_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Takes the SIM out of its phone, closing the period.
async fn take_out(tx: &mut Tx, sim: &Sim, now: DateTime<Utc>) -> StoreResult<()> {
    if sim.device_id.is_some() {
        sqlx::query("UPDATE sim_periods SET ended_at = $1 WHERE sim_id = $2 AND ended_at IS NULL")
            .bind(now)
            .bind(sim.id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE sims SET device_id = NULL, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(sim.id)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(device_id) = sim.device_id {
        rejudge_card(tx, device_id, now).await?;
    }
    Ok(())
}

#[async_trait]
impl SubscriptionStore for SqlStore {
    async fn create_sim(
        &self,
        s: &NewSim,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Sim> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sims (iccid, phone_number, carrier, plan, data_gb, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6, $6) RETURNING id",
        )
        .bind(&s.iccid)
        .bind(&s.phone_number)
        .bind(&s.carrier)
        .bind(&s.plan)
        .bind(i64::from(s.data_gb))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(
                "a SIM with this ICCID or phone number is already registered".into(),
            ),
            other => other,
        })?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let sim = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(sim)
    }

    async fn sim(&self, id: i64) -> StoreResult<Sim> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, id).await
    }

    async fn list_sims(&self, f: &SimFilter) -> StoreResult<Vec<Sim>> {
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} FROM sims WHERE 1 = 1"));
        if let Some(status) = f.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(d) = f.device_id {
            q.push(" AND device_id = ").push_bind(d);
        }
        if f.reactivation_requested {
            q.push(" AND reactivation_requested_at IS NOT NULL");
        }
        if let Some(after) = f.after_id {
            q.push(" AND id > ").push_bind(after);
        }
        q.push(" ORDER BY id LIMIT ").push_bind(i64::from(f.limit));
        q.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(sim_from_row)
            .collect()
    }

    async fn set_sim_status(
        &self,
        id: i64,
        to: SimStatus,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Sim> {
        let mut tx = self.write().await?;
        let sim = load(&mut tx, id).await?;
        subscription::transition(sim.status, to)?;
        sqlx::query(
            "UPDATE sims SET status = $1, updated_at = $2, \
             reactivation_requested_at = CASE WHEN $1 = 'active' THEN NULL ELSE reactivation_requested_at END \
             WHERE id = $3",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if to == SimStatus::Terminated {
            take_out(&mut tx, &sim, now).await?;
        }
        let audit = with_details(
            audit,
            serde_json::json!({ "iccid": sim.iccid, "from": sim.status.as_str(), "to": to.as_str() }),
        );
        append_audit_tx(&mut tx, &audit, now).await?;
        let sim = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(sim)
    }

    async fn place_sim(
        &self,
        id: i64,
        device_id: Option<i64>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Sim> {
        let mut tx = self.write().await?;
        let sim = load(&mut tx, id).await?;
        if sim.device_id == device_id {
            tx.commit().await?;
            return Ok(sim);
        }
        if let Some(device) = device_id {
            if sim.status == SimStatus::Terminated {
                return Err(Refusal::new(
                    "sim-terminated",
                    "the subscription is terminated: register a new SIM instead",
                )
                .into());
            }
            if sim.device_id.is_some() {
                return Err(Refusal::new(
                    "sim-in-use",
                    "the SIM is in another phone: take it out of that phone first",
                )
                .into());
            }
            let other: Option<String> =
                sqlx::query_scalar("SELECT iccid FROM sims WHERE device_id = $1")
                    .bind(device)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(other) = other {
                return Err(Refusal::new(
                    "device-has-sim",
                    format!("the phone holds SIM {other}: take that out first"),
                )
                .into());
            }
            sqlx::query("UPDATE sims SET device_id = $1, updated_at = $2 WHERE id = $3")
                .bind(device)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO sim_periods (sim_id, device_id, started_at) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(device)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            rejudge_card(&mut tx, device, now).await?;
        } else {
            take_out(&mut tx, &sim, now).await?;
        }
        let audit = with_details(
            audit,
            serde_json::json!({
                "iccid": sim.iccid, "from_device": sim.device_id, "to_device": device_id
            }),
        );
        append_audit_tx(&mut tx, &audit, now).await?;
        let sim = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(sim)
    }

    async fn sim_periods(
        &self,
        sim_id: Option<i64>,
        device_id: Option<i64>,
    ) -> StoreResult<Vec<SimPeriod>> {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT p.sim_id, s.iccid, p.device_id, p.started_at, p.ended_at \
             FROM sim_periods p JOIN sims s ON s.id = p.sim_id WHERE 1 = 1",
        );
        if let Some(s) = sim_id {
            q.push(" AND p.sim_id = ").push_bind(s);
        }
        if let Some(d) = device_id {
            q.push(" AND p.device_id = ").push_bind(d);
        }
        q.push(" ORDER BY p.id");
        q.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(SimPeriod {
                    sim_id: r.try_get("sim_id")?,
                    iccid: r.try_get("iccid")?,
                    device_id: r.try_get("device_id")?,
                    started_at: r.try_get("started_at")?,
                    ended_at: r.try_get("ended_at")?,
                })
            })
            .collect()
    }

    async fn sim_on_file(
        &self,
        device_id: i64,
    ) -> StoreResult<(Option<SimOnFile>, Option<String>)> {
        let row = sqlx::query(
            "SELECT d.iccid_mismatch, s.iccid, s.phone_number, s.data_gb, s.data_alert_month, \
             s.data_alert_percent FROM devices d LEFT JOIN sims s ON s.device_id = d.id \
             WHERE d.id = $1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let iccid: Option<String> = row.try_get("iccid")?;
        let sim = match iccid {
            Some(iccid) => Some(SimOnFile {
                iccid,
                phone_number: row.try_get("phone_number")?,
                data_gb: row.try_get("data_gb")?,
                alert_month: row.try_get("data_alert_month")?,
                alert_percent: row.try_get("data_alert_percent")?,
            }),
            None => None,
        };
        Ok((sim, row.try_get("iccid_mismatch")?))
    }

    async fn record_sim_report(&self, report: &SimReport, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.write().await?;
        if let Some(mismatch) = &report.mismatch {
            sqlx::query(
                "UPDATE devices SET iccid_mismatch = $1, iccid_mismatch_at = $2 WHERE id = $3",
            )
            .bind(mismatch)
            .bind(mismatch.as_ref().map(|_| now))
            .bind(report.device_id)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((month, percent, messages)) = &report.data_alert {
            // Only the node that moves the SIM's mark sends: a second check-in racing this one
            // finds it moved already.
            let marked = sqlx::query(
                "UPDATE sims SET data_alert_month = $1, data_alert_percent = $2 \
                 WHERE device_id = $3 AND (data_alert_month IS NULL OR data_alert_month <> $1 \
                 OR data_alert_percent < $2)",
            )
            .bind(month)
            .bind(i64::from(*percent))
            .bind(report.device_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if marked > 0 {
                insert_alerts(&mut tx, Topic::DataUse, report.device_id, messages, now).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
