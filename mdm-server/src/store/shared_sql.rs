//! The SQL both backends share. This file is compiled once per backend (see `sqlite.rs` and
//! `postgres.rs`, which include it with their own `Db`), so the two cannot drift apart; what
//! differs between them (connection set-up, migrations, backup, the check-in's certificate
//! lookup) lives in those two files.
//! Queries use `$N` placeholders, which both SQLite and PostgreSQL accept.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{Pool, QueryBuilder, Row};
use std::collections::HashMap;

use super::{Db, BACKEND, BEGIN_WRITE};
use crate::domain::account::{FailureOutcome, LoginThrottle};
use crate::domain::audit::{entry_hash, AuditEntry, AuditEvent, Outcome};
use crate::domain::contact::{Email, ItContact, MobileNumber};
use crate::domain::device::{DeviceStatus, Platform};
use crate::domain::organisation::{ContractPeriod, OrgKind};
use crate::domain::role::{Role, Scope};
use crate::store::*;

pub(super) type Tx = WriteTx;
type DbRow = <Db as sqlx::Database>::Row;

/// Rows per multi-row INSERT in an import: well under both backends' parameter limits.
const IMPORT_CHUNK: usize = 1000;
/// The most certificates one session lookup asks for; larger batches take several queries.
const MAX_SESSION_BATCH: usize = 128;
/// What the live-certificate lookup reads of a certificate and its device, by the names
/// `look_up_sessions` reads; each backend's `live_certificates` picks the rows.
pub(super) const SESSION_COLUMNS: &str = "i.fingerprint, i.serial AS certificate_serial, \
     d.id AS device_id, d.serial, d.imei, d.platform, d.provider_id, d.facts_hash, d.model_id, \
     d.status";
/// Check-in times written by one statement (two parameters each).
const MAX_TOUCH_BATCH: usize = 512;

/// How long a writer waits for its turn before giving up, like SQLite's busy timeout.
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(super) pool: Pool<Db>,
    /// SQLite has one writer at a time. Writers queue here, in this process, instead of in
    /// SQLite's busy handler, which retries by sleeping (up to 100 ms a try) and under many
    /// concurrent writers spends most of its time asleep. PostgreSQL has none: its writers run
    /// side by side.
    write_gate: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
    /// The connection the certificate lookup keeps between batches (see
    /// [`SqlStore::look_up_sessions`]); `state::device_lookups` runs one lookup at a time.
    lookup_connection: std::sync::Arc<std::sync::Mutex<Option<sqlx::pool::PoolConnection<Db>>>>,
}

/// A write transaction, holding this process's write turn (SQLite) until it ends. It derefs to
/// the connection, so statements run on it as on a transaction.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, Db>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx").finish_non_exhaustive()
    }
}

impl std::ops::Deref for WriteTx {
    type Target = <Db as sqlx::Database>::Connection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl SqlStore {
    pub(super) fn new(pool: Pool<Db>) -> Self {
        SqlStore {
            pool,
            write_gate: (BACKEND == "sqlite")
                .then(|| std::sync::Arc::new(tokio::sync::Mutex::new(()))),
            lookup_connection: Default::default(),
        }
    }

    /// Keeps a connection that has just served a lookup, unless one is kept already (then it
    /// goes back to the pool).
    fn keep_lookup_connection(&self, conn: sqlx::pool::PoolConnection<Db>) {
        let mut kept = self.kept_lookup_connection();
        if kept.is_none() {
            *kept = Some(conn);
        }
    }

    /// The certificate lookup, on `conn`. The certificate lookup runs on every device request,
    /// and sqlx tests each connection that goes back to its pool with a round trip to the
    /// database (a `Sync` on PostgreSQL, a message to the worker thread on SQLite): as much again
    /// as the lookup's own. So the lookup keeps its connections instead of giving them back; a
    /// connection goes back to the pool (and its test) only after a failed lookup.
    async fn look_up_sessions(
        &self,
        mut conn: sqlx::pool::PoolConnection<Db>,
        fingerprints: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<HashMap<String, DeviceSession>> {
        let mut sessions = HashMap::with_capacity(fingerprints.len());
        for chunk in fingerprints.chunks(MAX_SESSION_BATCH) {
            for row in super::live_certificates(&mut conn, chunk, now).await? {
                let platform: String = row.try_get("platform")?;
                let status: String = row.try_get("status")?;
                sessions.insert(
                    row.try_get("fingerprint")?,
                    DeviceSession {
                        certificate_serial: row.try_get("certificate_serial")?,
                        device_id: row.try_get("device_id")?,
                        serial: row.try_get("serial")?,
                        imei: row.try_get("imei")?,
                        platform: Platform::parse(&platform)
                            .map_err(|_| corrupt("platform", &platform))?,
                        provider_id: row.try_get("provider_id")?,
                        facts_hash: row.try_get("facts_hash")?,
                        model_id: row.try_get("model_id")?,
                        status: DeviceStatus::parse(&status)
                            .map_err(|_| corrupt("device status", &status))?,
                    },
                );
            }
        }
        self.keep_lookup_connection(conn);
        Ok(sessions)
    }

    fn kept_lookup_connection(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<sqlx::pool::PoolConnection<Db>>> {
        self.lookup_connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn pool(&self) -> &Pool<Db> {
        &self.pool
    }

    pub(super) async fn write(&self) -> StoreResult<Tx> {
        let turn = match &self.write_gate {
            Some(gate) => Some(
                tokio::time::timeout(WRITE_WAIT, gate.clone().lock_owned())
                    .await
                    .map_err(|_| {
                        StoreError::Database(sqlx::Error::Protocol(
                            "waited too long for the database's write turn".into(),
                        ))
                    })?,
            ),
            None => None,
        };
        Ok(WriteTx {
            tx: self.pool.begin_with(BEGIN_WRITE).await?,
            _turn: turn,
        })
    }
}

pub(super) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(format!(
        "stored {what} '{value}' is not valid"
    )))
}

/// Appends one entry to the hash chain inside the caller's transaction. Updating the head row
/// first takes its lock, so concurrent appenders (even on other nodes) line up behind it.
pub(super) async fn append_audit_tx(
    tx: &mut Tx,
    event: &AuditEvent,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut **tx)
        .await?;
    let seq: i64 = head.try_get("seq")?;
    let prev: String = head.try_get("hash")?;
    let hash = entry_hash(seq, now, &prev, event);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor_id, actor_label, org_id, source, action, target_kind, \
         target_id, outcome, details, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(seq)
    .bind(now)
    .bind(event.actor_id)
    .bind(&event.actor_label)
    .bind(event.org_id)
    .bind(&event.source)
    .bind(&event.action)
    .bind(&event.target_kind)
    .bind(&event.target_id)
    .bind(event.outcome.as_str())
    .bind(&event.details)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// For create operations the new record's id is only known inside the transaction.
pub(super) fn with_target(mut event: AuditEvent, id: i64) -> AuditEvent {
    if event.target_id.is_none() {
        event.target_id = Some(id.to_string());
    }
    event
}

/// Adds what only the transaction knows (ids it made, counts) to an event's details.
pub(super) fn with_details(mut event: AuditEvent, extra: serde_json::Value) -> AuditEvent {
    if let (Ok(serde_json::Value::Object(mut details)), serde_json::Value::Object(more)) =
        (serde_json::from_str(&event.details), extra)
    {
        details.extend(more);
        event.details = serde_json::Value::Object(details).to_string();
    }
    event
}

fn audit_from_row(row: &DbRow) -> StoreResult<AuditEntry> {
    let outcome: String = row.try_get("outcome")?;
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        event: AuditEvent {
            actor_id: row.try_get("actor_id")?,
            actor_label: row.try_get("actor_label")?,
            org_id: row.try_get("org_id")?,
            source: row.try_get("source")?,
            action: row.try_get("action")?,
            target_kind: row.try_get("target_kind")?,
            target_id: row.try_get("target_id")?,
            outcome: Outcome::parse(&outcome).ok_or_else(|| corrupt("audit outcome", &outcome))?,
            details: row.try_get("details")?,
        },
    })
}

const AUDIT_COLUMNS: &str =
    "seq, at, actor_id, actor_label, org_id, source, action, target_kind, target_id, \
     outcome, details, prev_hash, hash";

// ---------------------------------------------------------------------------------------------
// Organisations

const ORG_COLUMNS: &str =
    "id, kind, name, org_number, contract_start, contract_end, created_at, updated_at";

async fn load_organisation(
    conn: &mut <Db as sqlx::Database>::Connection,
    id: i64,
) -> StoreResult<Organisation> {
    let row = sqlx::query(&format!(
        "SELECT {ORG_COLUMNS} FROM organisations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    let mut org = organisation_from_row(&row)?;
    org.it_contacts = load_contacts(conn, id).await?;
    Ok(org)
}

fn organisation_from_row(row: &DbRow) -> StoreResult<Organisation> {
    let kind: String = row.try_get("kind")?;
    let start: Option<NaiveDate> = row.try_get("contract_start")?;
    let end: Option<NaiveDate> = row.try_get("contract_end")?;
    Ok(Organisation {
        id: row.try_get("id")?,
        kind: OrgKind::parse(&kind).map_err(|_| corrupt("organisation kind", &kind))?,
        name: row.try_get("name")?,
        org_number: row.try_get("org_number")?,
        contract: start.map(|start| ContractPeriod { start, end }),
        it_contacts: Vec::new(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn load_contacts(
    conn: &mut <Db as sqlx::Database>::Connection,
    org_id: i64,
) -> StoreResult<Vec<ItContact>> {
    let rows = sqlx::query(
        "SELECT name, email, mobile FROM it_contacts WHERE org_id = $1 ORDER BY position",
    )
    .bind(org_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(contact_from_row).collect()
}

fn contact_from_row(row: &DbRow) -> StoreResult<ItContact> {
    let email: String = row.try_get("email")?;
    let mobile: String = row.try_get("mobile")?;
    Ok(ItContact {
        name: row.try_get("name")?,
        email: Email::parse(&email).map_err(|_| corrupt("e-mail", &email))?,
        mobile: MobileNumber::parse(&mobile).map_err(|_| corrupt("mobile number", &mobile))?,
    })
}

async fn replace_contacts(tx: &mut Tx, org_id: i64, contacts: &[ItContact]) -> StoreResult<()> {
    sqlx::query("DELETE FROM it_contacts WHERE org_id = $1")
        .bind(org_id)
        .execute(&mut **tx)
        .await?;
    for (position, c) in contacts.iter().enumerate() {
        sqlx::query("INSERT INTO it_contacts (org_id, position, name, email, mobile) VALUES ($1, $2, $3, $4, $5)")
            .bind(org_id)
            .bind(position as i64)
            .bind(&c.name)
            .bind(c.email.as_str())
            .bind(c.mobile.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl OrganisationStore for SqlStore {
    async fn ensure_operator(&self, name: &str, now: DateTime<Utc>) -> StoreResult<Organisation> {
        let mut tx = self.write().await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM organisations WHERE kind = 'operator'")
                .fetch_optional(&mut *tx)
                .await?;
        let id = match existing {
            Some(id) => {
                sqlx::query("UPDATE organisations SET name = $1 WHERE id = $2 AND name <> $1")
                    .bind(name)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO organisations (kind, name, created_at, updated_at) \
                     VALUES ('operator', $1, $2, $2) RETURNING id",
                )
                .bind(name)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let event = AuditEvent {
                    actor_id: None,
                    actor_label: "system".into(),
                    org_id: Some(id),
                    source: None,
                    action: "organisation.create_operator".into(),
                    target_kind: Some("organisation".into()),
                    target_id: Some(id.to_string()),
                    outcome: Outcome::Success,
                    details: serde_json::json!({ "name": name }).to_string(),
                };
                append_audit_tx(&mut tx, &event, now).await?;
                id
            }
        };
        let org = load_organisation(&mut tx, id).await?;
        tx.commit().await?;
        Ok(org)
    }

    async fn create_provider(
        &self,
        p: &NewProvider,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Organisation> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO organisations (kind, name, org_number, contract_start, contract_end, created_at, updated_at) \
             VALUES ('provider', $1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(&p.name)
        .bind(p.org_number.as_str())
        .bind(p.contract.start)
        .bind(p.contract.end)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        replace_contacts(&mut tx, id, &p.it_contacts).await?;
        let mut audit = with_target(audit, id);
        audit.org_id = Some(id);
        append_audit_tx(&mut tx, &audit, now).await?;
        let org = load_organisation(&mut tx, id).await?;
        tx.commit().await?;
        Ok(org)
    }

    async fn organisation(&self, id: i64) -> StoreResult<Organisation> {
        let mut conn = self.pool.acquire().await?;
        load_organisation(&mut conn, id).await
    }

    async fn list_providers(&self) -> StoreResult<Vec<Organisation>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {ORG_COLUMNS} FROM organisations WHERE kind = 'provider' ORDER BY name, id"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let mut orgs = rows
            .iter()
            .map(organisation_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        // Every provider's contacts in one query (notices go to all of them).
        let mut contacts: HashMap<i64, Vec<ItContact>> = HashMap::new();
        let rows = sqlx::query(
            "SELECT c.org_id, c.name, c.email, c.mobile FROM it_contacts c \
             JOIN organisations o ON o.id = c.org_id WHERE o.kind = 'provider' \
             ORDER BY c.org_id, c.position",
        )
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            let org_id: i64 = row.try_get("org_id")?;
            contacts
                .entry(org_id)
                .or_default()
                .push(contact_from_row(row)?);
        }
        for org in &mut orgs {
            org.it_contacts = contacts.remove(&org.id).unwrap_or_default();
        }
        Ok(orgs)
    }

    async fn update_provider(
        &self,
        id: i64,
        change: &ProviderChange,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Organisation> {
        let mut tx = self.write().await?;
        let current = load_organisation(&mut tx, id).await?;
        if current.kind != OrgKind::Provider {
            return Err(StoreError::NotFound);
        }
        let name = change.name.as_ref().unwrap_or(&current.name);
        let contract = change.contract.or(current.contract);
        sqlx::query(
            "UPDATE organisations SET name = $1, contract_start = $2, contract_end = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(name)
        .bind(contract.map(|c| c.start))
        .bind(contract.and_then(|c| c.end))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(contacts) = &change.it_contacts {
            replace_contacts(&mut tx, id, contacts).await?;
        }
        append_audit_tx(&mut tx, &audit, now).await?;
        let org = load_organisation(&mut tx, id).await?;
        tx.commit().await?;
        Ok(org)
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts and sessions

const ACCOUNT_COLUMNS: &str =
    "a.id, a.org_id, a.email, a.display_name, a.role, a.active, a.must_change_password, \
     a.password_hash, a.totp_secret, a.totp_last_step, a.last_login_at, \
     a.created_at, a.updated_at";

fn account_from_row(row: &DbRow) -> StoreResult<Account> {
    let role: String = row.try_get("role")?;
    Ok(Account {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        role: Role::parse(&role).map_err(|_| corrupt("role", &role))?,
        active: row.try_get("active")?,
        must_change_password: row.try_get("must_change_password")?,
        password_hash: row.try_get("password_hash")?,
        totp_secret: row.try_get("totp_secret")?,
        totp_last_step: row.try_get("totp_last_step")?,
        last_login_at: row.try_get("last_login_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn load_account(
    conn: &mut <Db as sqlx::Database>::Connection,
    id: i64,
) -> StoreResult<Account> {
    let row = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    account_from_row(&row)
}

async fn revoke_all_sessions(
    tx: &mut Tx,
    account_id: i64,
    except: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL AND id <> $3",
    )
    .bind(now)
    .bind(account_id)
    .bind(except.unwrap_or(-1))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_session(tx: &mut Tx, s: &NewSession, now: DateTime<Utc>) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO sessions (account_id, kind, name, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(s.account_id)
    .bind(s.kind.as_str())
    .bind(&s.name)
    .bind(&s.token_hash)
    .bind(now)
    .bind(s.expires_at)
    .fetch_one(&mut **tx)
    .await?)
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_account(
        &self,
        a: &NewAccount,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Account> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (org_id, email, display_name, role, active, must_change_password, password_hash, \
             totp_secret, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
        )
        .bind(a.org_id)
        .bind(&a.email)
        .bind(&a.display_name)
        .bind(a.role.as_str())
        .bind(true)
        .bind(a.must_change_password)
        .bind(&a.password_hash)
        .bind(&a.totp_secret)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let account = load_account(&mut tx, id).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn account(&self, id: i64) -> StoreResult<Account> {
        let mut conn = self.pool.acquire().await?;
        load_account(&mut conn, id).await
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Account> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        account_from_row(&row)
    }

    async fn list_accounts(&self, scope: Scope) -> StoreResult<Vec<Account>> {
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a"));
        if let Some(org) = scope.org() {
            q.push(" WHERE a.org_id = ").push_bind(org);
        }
        q.push(" ORDER BY a.org_id, a.email");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(account_from_row).collect()
    }

    async fn update_account(
        &self,
        id: i64,
        change: &AccountChange,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Account> {
        let mut tx = self.write().await?;
        let current = load_account(&mut tx, id).await?;
        let role = change.role.unwrap_or(current.role);
        let active = change.active.unwrap_or(current.active);
        sqlx::query("UPDATE accounts SET display_name = $1, role = $2, active = $3, updated_at = $4 WHERE id = $5")
            .bind(change.display_name.as_ref().unwrap_or(&current.display_name))
            .bind(role.as_str())
            .bind(active)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if role != current.role || !active {
            revoke_all_sessions(&mut tx, id, None, now).await?;
        }
        append_audit_tx(&mut tx, &audit, now).await?;
        let account = load_account(&mut tx, id).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn set_password(
        &self,
        id: i64,
        password_hash: &str,
        keep_session: Option<i64>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let changed = sqlx::query(
            "UPDATE accounts SET password_hash = $1, must_change_password = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(password_hash)
        .bind(false)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        revoke_all_sessions(&mut tx, id, keep_session, now).await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn login_lock(&self, key: &str) -> StoreResult<Option<DateTime<Utc>>> {
        let until: Option<Option<DateTime<Utc>>> =
            sqlx::query_scalar("SELECT locked_until FROM login_throttle WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(until.flatten())
    }

    async fn record_login_failure(
        &self,
        key: &str,
        throttle: &LoginThrottle,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<FailureOutcome> {
        let mut tx = self.write().await?;
        // Failures further back than a day do not count towards a lock any more.
        let stale = now - chrono::Duration::days(1);
        let failures: i64 = sqlx::query_scalar(
            "INSERT INTO login_throttle (key, failures, updated_at) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET updated_at = $2, failures = \
             CASE WHEN login_throttle.updated_at < $3 THEN 1 ELSE login_throttle.failures + 1 END \
             RETURNING failures",
        )
        .bind(key)
        .bind(now)
        .bind(stale)
        .fetch_one(&mut *tx)
        .await?;
        let before = u32::try_from(failures - 1).unwrap_or(0);
        let outcome = throttle.after_failure(before, now);
        if let Some(until) = outcome.locked_until {
            sqlx::query("UPDATE login_throttle SET failures = 0, locked_until = $1 WHERE key = $2")
                .bind(until)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        if failures == 1 {
            // Keys of addresses nobody uses again are forgotten after a day.
            sqlx::query(
                "DELETE FROM login_throttle WHERE updated_at < $1 AND (locked_until IS NULL OR locked_until < $2)",
            )
            .bind(stale)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn record_login_success(
        &self,
        id: i64,
        key: &str,
        totp_step: Option<i64>,
        session: &NewSession,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<i64> {
        let mut tx = self.write().await?;
        // The step check inside the UPDATE makes a replayed code lose even against a
        // concurrent login with the same code.
        let updated = sqlx::query(
            "UPDATE accounts SET last_login_at = $1, \
             totp_last_step = COALESCE($2, totp_last_step) \
             WHERE id = $3 AND ($2 IS NULL OR totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(now)
        .bind(totp_step)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::Conflict(
                "this one-time code has already been used".into(),
            ));
        }
        sqlx::query("DELETE FROM login_throttle WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        let session_id = insert_session(&mut tx, session, now).await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(session_id)
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_token(
        &self,
        s: &NewSession,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<i64> {
        let mut tx = self.write().await?;
        let id = insert_session(&mut tx, s, now).await?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn session_by_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<SessionContext> {
        let row = sqlx::query(&format!(
            "SELECT s.id AS session_id, s.kind AS session_kind, s.expires_at AS session_expires_at, \
             s.last_used_at AS session_last_used_at, o.kind AS org_kind, o.contract_start, o.contract_end, \
             {ACCOUNT_COLUMNS} \
             FROM sessions s JOIN accounts a ON a.id = s.account_id JOIN organisations o ON o.id = a.org_id \
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let kind: String = row.try_get("session_kind")?;
        let org_kind: String = row.try_get("org_kind")?;
        let start: Option<NaiveDate> = row.try_get("contract_start")?;
        let end: Option<NaiveDate> = row.try_get("contract_end")?;
        let last_used: Option<DateTime<Utc>> = row.try_get("session_last_used_at")?;
        let session_id: i64 = row.try_get("session_id")?;
        // Recording use costs a write, so it is kept to once every five minutes per token.
        if last_used.is_none_or(|t| now - t > chrono::Duration::minutes(5)) {
            sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(session_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(SessionContext {
            session_id,
            kind: if kind == "api_token" {
                SessionKind::ApiToken
            } else {
                SessionKind::Session
            },
            expires_at: row.try_get("session_expires_at")?,
            account: account_from_row(&row)?,
            org_kind: OrgKind::parse(&org_kind)
                .map_err(|_| corrupt("organisation kind", &org_kind))?,
            contract: start.map(|start| ContractPeriod { start, end }),
        })
    }

    async fn list_tokens(
        &self,
        account_id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, expires_at, last_used_at FROM sessions \
             WHERE account_id = $1 AND kind = 'api_token' AND revoked_at IS NULL AND expires_at > $2 ORDER BY id",
        )
        .bind(account_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TokenInfo {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    async fn revoke_session(
        &self,
        account_id: i64,
        session_id: i64,
        kind: SessionKind,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND kind = $4 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(session_id)
        .bind(account_id)
        .bind(kind.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if revoked == 0 {
            return Err(StoreError::NotFound);
        }
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Models and devices

fn model_from_row(row: &DbRow) -> StoreResult<DeviceModel> {
    let platform: String = row.try_get("platform")?;
    Ok(DeviceModel {
        id: row.try_get("id")?,
        platform: Platform::parse(&platform).map_err(|_| corrupt("platform", &platform))?,
        name: row.try_get("name")?,
        recommended_since: row.try_get("recommended_since")?,
    })
}

const DEVICE_COLUMNS: &str = "d.id, d.serial, d.imei, d.model_id, m.name AS model_name, d.platform, d.status, \
     d.provider_id, d.purchase_date, d.warranty_end, d.supplier, d.created_at, d.updated_at, d.enrolled_at, \
     lc.at AS last_checkin_at, d.facts, d.holder_id, d.iccid_mismatch";

/// Devices with their model's name and last check-in.
const DEVICE_FROM: &str = "FROM devices d JOIN device_models m ON m.id = d.model_id \
     LEFT JOIN device_checkins lc ON lc.device_id = d.id";

/// A device read by the column names of `DEVICE_COLUMNS`.
fn device_from_row(row: &DbRow) -> StoreResult<Device> {
    let platform: String = row.try_get("platform")?;
    let status: String = row.try_get("status")?;
    Ok(Device {
        id: row.try_get("id")?,
        serial: row.try_get("serial")?,
        imei: row.try_get("imei")?,
        model_id: row.try_get("model_id")?,
        model_name: row.try_get("model_name")?,
        platform: Platform::parse(&platform).map_err(|_| corrupt("platform", &platform))?,
        status: DeviceStatus::parse(&status).map_err(|_| corrupt("device status", &status))?,
        provider_id: row.try_get("provider_id")?,
        purchase_date: row.try_get("purchase_date")?,
        warranty_end: row.try_get("warranty_end")?,
        supplier: row.try_get("supplier")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        enrolled_at: row.try_get("enrolled_at")?,
        last_checkin_at: row.try_get("last_checkin_at")?,
        facts: row.try_get("facts")?,
        holder_id: row.try_get("holder_id")?,
        iccid_mismatch: row.try_get("iccid_mismatch")?,
    })
}

async fn load_device(
    conn: &mut <Db as sqlx::Database>::Connection,
    scope: Scope,
    id: i64,
) -> StoreResult<Device> {
    let mut q = QueryBuilder::<Db>::new(format!("SELECT {DEVICE_COLUMNS} {DEVICE_FROM}"));
    q.push(" WHERE d.id = ").push_bind(id);
    if let Some(org) = scope.org() {
        q.push(" AND d.provider_id = ").push_bind(org);
    }
    let row = q
        .build()
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    device_from_row(&row)
}

async fn pairs_in(
    pool: &Pool<Db>,
    sql: &str,
    values: &[String],
) -> StoreResult<Vec<(String, String)>> {
    let mut found = Vec::new();
    for chunk in values.chunks(IMPORT_CHUNK) {
        let mut q = QueryBuilder::<Db>::new(sql);
        q.push(" IN (");
        let mut list = q.separated(", ");
        for v in chunk {
            list.push_bind(v.clone());
        }
        q.push(")");
        for row in q.build().fetch_all(pool).await? {
            found.push((row.try_get(0)?, row.try_get(1)?));
        }
    }
    Ok(found)
}

#[async_trait]
impl ModelStore for SqlStore {
    async fn create_model(
        &self,
        platform: Platform,
        name: &str,
        recommended_since: Option<NaiveDate>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<DeviceModel> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "INSERT INTO device_models (platform, name, recommended_since, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, platform, name, recommended_since",
        )
        .bind(platform.as_str())
        .bind(name)
        .bind(recommended_since)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let model = model_from_row(&row)?;
        append_audit_tx(&mut tx, &with_target(audit, model.id), now).await?;
        tx.commit().await?;
        Ok(model)
    }

    async fn list_models(&self) -> StoreResult<Vec<DeviceModel>> {
        let rows = sqlx::query("SELECT id, platform, name, recommended_since FROM device_models ORDER BY platform, name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(model_from_row).collect()
    }

    async fn set_model_recommended(
        &self,
        id: i64,
        recommended_since: Option<NaiveDate>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<DeviceModel> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE device_models SET recommended_since = $1 WHERE id = $2 \
             RETURNING id, platform, name, recommended_since",
        )
        .bind(recommended_since)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let model = model_from_row(&row)?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(model)
    }
}

#[async_trait]
impl DeviceStore for SqlStore {
    async fn create_device(
        &self,
        d: &NewDevice,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<Device> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO devices (serial, imei, imei_tail, model_id, platform, status, provider_id, purchase_date, \
             warranty_end, supplier, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'in_stock', $6, $7, $8, $9, $10, $10) RETURNING id",
        )
        .bind(d.serial.as_str())
        .bind(d.imei.as_str())
        .bind(d.imei.reversed())
        .bind(d.model_id)
        .bind(d.platform.as_str())
        .bind(d.provider_id)
        .bind(d.purchase_date)
        .bind(d.warranty_end)
        .bind(&d.supplier)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        let device = load_device(&mut tx, Scope::Everything, id).await?;
        tx.commit().await?;
        Ok(device)
    }

    async fn device(&self, scope: Scope, id: i64) -> StoreResult<Device> {
        let mut conn = self.pool.acquire().await?;
        load_device(&mut conn, scope, id).await
    }

    async fn list_devices(&self, f: &DeviceFilter) -> StoreResult<Vec<Device>> {
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {DEVICE_COLUMNS} {DEVICE_FROM}"));
        q.push(" WHERE 1 = 1");
        if let Some(org) = f.scope {
            q.push(" AND d.provider_id = ").push_bind(org);
        }
        if let Some(provider) = f.provider_id {
            q.push(" AND d.provider_id = ").push_bind(provider);
        }
        if let Some(status) = f.status {
            q.push(" AND d.status = ").push_bind(status.as_str());
        }
        if let Some(model) = f.model_id {
            q.push(" AND d.model_id = ").push_bind(model);
        }
        if let Some(platform) = f.platform {
            q.push(" AND d.platform = ").push_bind(platform.as_str());
        }
        if f.sim_mismatch {
            q.push(" AND d.iccid_mismatch IS NOT NULL");
        }
        if let Some(text) = &f.text {
            // The beginning of a serial (stored upper-case), IMEI or iPhone UDID (upper-case as
            // iPhones send it), or the end of an IMEI (kept reversed), each an index range scan;
            // '\u{7f}' sorts after every character they hold.
            let range = |low: String| (low.clone(), format!("{low}\u{7f}"));
            let (low, high) = range(text.to_ascii_uppercase());
            let (tail_low, tail_high) = range(text.chars().rev().collect());
            q.push(" AND d.id IN (SELECT id FROM devices WHERE serial >= ")
                .push_bind(low.clone())
                .push(" AND serial < ")
                .push_bind(high.clone())
                .push(" UNION SELECT id FROM devices WHERE imei >= ")
                .push_bind(low.clone())
                .push(" AND imei < ")
                .push_bind(high.clone())
                .push(" UNION SELECT device_id FROM apple_devices WHERE udid >= ")
                .push_bind(low)
                .push(" AND udid < ")
                .push_bind(high)
                .push(" UNION SELECT id FROM devices WHERE imei_tail >= ")
                .push_bind(tail_low)
                .push(" AND imei_tail < ")
                .push_bind(tail_high)
                .push(")");
        }
        if let Some(after) = f.after_id {
            q.push(" AND d.id > ").push_bind(after);
        }
        q.push(" ORDER BY d.id LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(device_from_row).collect()
    }

    async fn update_device(
        &self,
        id: i64,
        c: &DeviceChange,
        now: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> StoreResult<Device> {
        let mut tx = self.write().await?;
        let current = load_device(&mut tx, Scope::Everything, id).await?;
        sqlx::query(
            "UPDATE devices SET model_id = $1, purchase_date = $2, warranty_end = $3, \
             supplier = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(c.model_id.unwrap_or(current.model_id))
        .bind(c.purchase_date.unwrap_or(current.purchase_date))
        .bind(c.warranty_end.unwrap_or(current.warranty_end))
        .bind(c.supplier.clone().unwrap_or(current.supplier))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for event in &audit {
            append_audit_tx(&mut tx, event, now).await?;
        }
        let device = load_device(&mut tx, Scope::Everything, id).await?;
        tx.commit().await?;
        Ok(device)
    }

    async fn device_by_serial(&self, serial: &str) -> StoreResult<Device> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} {DEVICE_FROM} WHERE d.serial = $1"
        ))
        .bind(serial)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        device_from_row(&row)
    }

    async fn registered_serials(&self, serials: &[String]) -> StoreResult<Vec<(String, String)>> {
        pairs_in(
            &self.pool,
            "SELECT serial, imei FROM devices WHERE serial",
            serials,
        )
        .await
    }

    async fn registered_imeis(&self, imeis: &[String]) -> StoreResult<Vec<(String, String)>> {
        pairs_in(
            &self.pool,
            "SELECT imei, serial FROM devices WHERE imei",
            imeis,
        )
        .await
    }

    async fn import_devices(
        &self,
        devices: &[NewDevice],
        now: DateTime<Utc>,
        audit: AuditEvent,
        progress: &(dyn Fn(u64) + Sync),
    ) -> StoreResult<ImportSummary> {
        let mut tx = self.write().await?;
        let mut inserted = 0;
        let mut written_rows = 0;
        for chunk in devices.chunks(IMPORT_CHUNK) {
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO devices (serial, imei, imei_tail, model_id, platform, status, provider_id, \
                 purchase_date, warranty_end, supplier, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut row, d| {
                row.push_bind(d.serial.as_str().to_string())
                    .push_bind(d.imei.as_str().to_string())
                    .push_bind(d.imei.reversed())
                    .push_bind(d.model_id)
                    .push_bind(d.platform.as_str())
                    .push_bind(DeviceStatus::InStock.as_str())
                    .push_bind(d.provider_id)
                    .push_bind(d.purchase_date)
                    .push_bind(d.warranty_end)
                    .push_bind(d.supplier.clone())
                    .push_bind(now)
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (serial) DO NOTHING");
            let written = q.build().execute(&mut *tx).await?.rows_affected();
            if written < chunk.len() as u64 {
                // Rows left alone must be the same phones already registered, not another phone
                // registered under the same serial since the file was checked.
                let serials: Vec<String> = chunk
                    .iter()
                    .map(|d| d.serial.as_str().to_string())
                    .collect();
                let mut check =
                    QueryBuilder::<Db>::new("SELECT serial, imei FROM devices WHERE serial IN (");
                let mut list = check.separated(", ");
                for serial in &serials {
                    list.push_bind(serial.clone());
                }
                check.push(")");
                for row in check.build().fetch_all(&mut *tx).await? {
                    let (serial, imei): (String, String) =
                        (row.try_get("serial")?, row.try_get("imei")?);
                    if let Some(d) = chunk.iter().find(|d| d.serial.as_str() == serial) {
                        if d.imei.as_str() != imei {
                            return Err(StoreError::Conflict(format!(
                                "serial {serial} is already registered with IMEI {imei}"
                            )));
                        }
                    }
                }
            }
            inserted += written;
            written_rows += chunk.len() as u64;
            progress(written_rows);
        }
        let summary = ImportSummary {
            inserted,
            already_present: devices.len() as u64 - inserted,
        };
        let mut audit = audit;
        audit.details = serde_json::json!({
            "rows": devices.len(),
            "inserted": summary.inserted,
            "already_present": summary.already_present,
            "source": serde_json::from_str::<serde_json::Value>(&audit.details).unwrap_or_default(),
        })
        .to_string();
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(summary)
    }

    async fn set_device_status(
        &self,
        id: i64,
        status: DeviceStatus,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE devices SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Enrollment and device identities

const IDENTITY_COLUMNS: &str =
    "i.serial, i.device_id, i.fingerprint, i.key_kind, i.not_before, i.not_after, \
     i.created_at, i.revoked_at, i.revoke_reason";

fn identity_from_row(row: &DbRow) -> StoreResult<DeviceIdentity> {
    Ok(DeviceIdentity {
        serial: row.try_get("serial")?,
        device_id: row.try_get("device_id")?,
        fingerprint: row.try_get("fingerprint")?,
        key_kind: row.try_get("key_kind")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoke_reason: row.try_get("revoke_reason")?,
    })
}

pub(super) const TOKEN_COLUMNS: &str =
    "id, device_id, provider_id, channel, created_at, expires_at, used_at, used_by";

pub(super) fn token_from_row(row: &DbRow) -> StoreResult<EnrollmentToken> {
    let channel: String = row.try_get("channel")?;
    Ok(EnrollmentToken {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        provider_id: row.try_get("provider_id")?,
        channel: crate::domain::device::Channel::parse(&channel)
            .map_err(|_| corrupt("enrollment channel", &channel))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        used_by: row.try_get("used_by")?,
    })
}

async fn insert_identity(tx: &mut Tx, identity: &DeviceIdentity) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO device_identities (serial, device_id, fingerprint, key_kind, not_before, not_after, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&identity.serial)
    .bind(identity.device_id)
    .bind(&identity.fingerprint)
    .bind(&identity.key_kind)
    .bind(identity.not_before)
    .bind(identity.not_after)
    .bind(identity.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Serialises changes to one device's identities: on PostgreSQL this takes the device row's
/// lock (SQLite's write transaction already holds the whole database), so a revocation can
/// never miss a certificate that a concurrent renewal or enrollment is adding.
/// Serialises writers of one device's rows. SQLite needs nothing: its write transactions
/// (`BEGIN IMMEDIATE`) hold the whole database, and rewriting the row would only add pages to
/// every write.
pub(super) async fn lock_device(tx: &mut Tx, device_id: i64) -> StoreResult<()> {
    if BACKEND == "sqlite" {
        return Ok(());
    }
    sqlx::query("UPDATE devices SET id = id WHERE id = $1")
        .bind(device_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes phones' check-in times (never moving one backwards), one statement per chunk. The
/// list is padded to a power of two so that few statement texts serve every size; the padding
/// rows have ids below zero and are filtered out (a key twice in one upsert is an error on
/// PostgreSQL).
async fn note_checkins(tx: &mut Tx, batch: &[(i64, DateTime<Utc>)]) -> StoreResult<()> {
    for chunk in batch.chunks(MAX_TOUCH_BATCH) {
        let width = chunk.len().next_power_of_two();
        let values = (0..width)
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO device_checkins (device_id, at) \
             SELECT column1, column2 FROM (VALUES {values}) AS v WHERE column1 > 0 \
             ON CONFLICT (device_id) DO UPDATE SET at = excluded.at \
             WHERE device_checkins.at < excluded.at"
        );
        let mut query = sqlx::query(&sql);
        for i in 0..width {
            match chunk.get(i) {
                Some((device_id, at)) => query = query.bind(device_id).bind(at),
                None => query = query.bind(-(i as i64) - 1).bind(chunk[0].1),
            }
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Makes `identity` the device's one live identity, whichever way it enrolled: earlier
/// identities are revoked, what was queued for them purged, and the reported facts stored.
pub(super) async fn bind_identity(
    tx: &mut Tx,
    identity: &DeviceIdentity,
    facts: &ReportedFacts,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    // Re-enrollment: the device's earlier identities stop working now.
    revoke_live_identities(tx, identity.device_id, "re-enrolled", now).await?;
    super::steps_sql::purge_pending(
        tx,
        identity.device_id,
        None,
        "purged: the phone enrolled again",
        now,
    )
    .await?;
    insert_identity(tx, identity).await?;
    // What an earlier enrollment through Apple's protocol left (an enrollment through it
    // writes its own anew after this).
    sqlx::query("DELETE FROM apple_devices WHERE device_id = $1")
        .bind(identity.device_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE devices SET enrolled_at = $1, facts = $2, facts_hash = $3, updated_at = $1 \
         WHERE id = $4",
    )
    .bind(now)
    .bind(&facts.json)
    .bind(&facts.hash)
    .bind(identity.device_id)
    .execute(&mut **tx)
    .await?;
    note_checkins(tx, &[(identity.device_id, now)]).await
}

pub(super) async fn revoke_live_identities(
    tx: &mut Tx,
    device_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    Ok(sqlx::query(
        "UPDATE device_identities SET revoked_at = $1, revoke_reason = $2 WHERE device_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(device_id)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

#[async_trait]
impl EnrollmentStore for SqlStore {
    async fn create_enrollment_token(
        &self,
        t: &NewEnrollmentToken,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<i64> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO enrollment_tokens (token_hash, device_id, provider_id, created_by, created_at, expires_at, channel) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&t.token_hash)
        .bind(t.device_id)
        .bind(t.provider_id)
        .bind(t.created_by)
        .bind(now)
        .bind(t.expires_at)
        .bind(t.channel.as_str())
        .fetch_one(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &with_target(audit, id), now).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn list_enrollment_tokens(&self, limit: u32) -> StoreResult<Vec<EnrollmentToken>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn enrollment_token(&self, token_hash: &str) -> StoreResult<EnrollmentToken> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        token_from_row(&row)
    }

    async fn enroll_device(
        &self,
        token_id: i64,
        identity: &DeviceIdentity,
        facts: &ReportedFacts,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, identity.device_id).await?;
        // Using the token inside the same statement that checks it makes it single-use even
        // against two phones presenting it at once.
        let used = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = $1, used_by = $2 \
             WHERE id = $3 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(identity.device_id)
        .bind(token_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used == 0 {
            return Err(StoreError::Conflict(
                "the enrollment token has already been used or has expired".into(),
            ));
        }
        bind_identity(&mut tx, identity, facts, now).await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn device_sessions(
        &self,
        fingerprints: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<HashMap<String, DeviceSession>> {
        // A kept connection may have died since its last lookup (the database restarted, or
        // cut it); the lookup only reads, so it is asked once more on a connection from the
        // pool, which PostgreSQL's pool tests before handing it out.
        let kept = self.kept_lookup_connection().take();
        if let Some(conn) = kept {
            match self.look_up_sessions(conn, fingerprints, now).await {
                Ok(sessions) => return Ok(sessions),
                Err(e) => {
                    tracing::warn!(error = %e, "certificate lookup failed on a kept connection; asking on a fresh one")
                }
            }
        }
        let conn = self.pool.acquire().await?;
        self.look_up_sessions(conn, fingerprints, now).await
    }

    async fn device_identities(&self, device_id: i64) -> StoreResult<Vec<DeviceIdentity>> {
        let rows = sqlx::query(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM device_identities i WHERE i.device_id = $1 \
             ORDER BY i.created_at DESC, (i.revoked_at IS NULL) DESC, i.revoked_at DESC"
        ))
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(identity_from_row).collect()
    }

    async fn renew_identity(
        &self,
        old_serial: &str,
        new: &DeviceIdentity,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, new.device_id).await?;
        let revoked = sqlx::query(
            "UPDATE device_identities SET revoked_at = $1, revoke_reason = 'renewed' \
             WHERE serial = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(old_serial)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if revoked == 0 {
            return Err(StoreError::Conflict(
                "the certificate was revoked while it was being renewed".into(),
            ));
        }
        insert_identity(&mut tx, new).await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_device_identities(
        &self,
        device_id: i64,
        reason: &str,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        lock_device(&mut tx, device_id).await?;
        let revoked = revoke_live_identities(&mut tx, device_id, reason, now).await?;
        append_audit_tx(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn live_identity_devices(&self, now: DateTime<Utc>) -> StoreResult<Vec<i64>> {
        // Live as in `domain::device::identity_is_live`.
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT device_id FROM device_identities WHERE revoked_at IS NULL AND not_after > $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn revoked_identities(
        &self,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at FROM device_identities \
             WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY revoked_at",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("serial")?, row.try_get("revoked_at")?)))
            .collect()
    }

    async fn touch_checkins(&self, batch: &[(i64, DateTime<Utc>)]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        note_checkins(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_checkin(
        &self,
        device_id: i64,
        facts: Option<&ReportedFacts>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        if let Some(facts) = facts {
            sqlx::query("UPDATE devices SET facts = $1, facts_hash = $2 WHERE id = $3")
                .bind(&facts.json)
                .bind(&facts.hash)
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
        }
        note_checkins(&mut tx, &[(device_id, now)]).await?;
        tx.commit().await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Audit trail and maintenance

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, event: AuditEvent, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.write().await?;
        append_audit_tx(&mut tx, &event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"));
        if let Some(org) = f.scope {
            q.push(" AND org_id = ").push_bind(org);
        }
        if let Some(before) = f.before_seq {
            q.push(" AND seq < ").push_bind(before);
        }
        q.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_page(
        &self,
        scope: Option<i64>,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > "
        ));
        q.push_bind(after_seq);
        if let Some(org) = scope {
            q.push(" AND org_id = ").push_bind(org);
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_head(&self) -> StoreResult<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("seq")?, row.try_get("hash")?))
    }
}

#[async_trait]
impl Maintenance for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> StoreResult<()> {
        self.run_migrations().await
    }

    async fn backup_to(&self, path: &std::path::Path) -> StoreResult<()> {
        self.backup_file(path).await
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn installation_fact(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM installation WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_installation_fact(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO installation (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
