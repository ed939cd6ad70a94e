//! PostgreSQL, for operators that outgrow one machine: several server nodes share one database.

use sqlx::postgres::PgPoolOptions;

use super::{StoreError, StoreResult};

type Db = sqlx::Postgres;

const BEGIN_WRITE: &str = "BEGIN";
const BACKEND: &str = "postgres";

// Compiled once per backend on purpose: one SQL text, two type-checked implementations.
#[allow(clippy::duplicate_mod)]
#[path = "shared_sql.rs"]
mod shared;

// Claiming outbox rows: PostgreSQL skips rows another node holds; SQLite has one writer.
// Reading a row to change it: PostgreSQL locks it; SQLite's writer holds the database.
const FOR_UPDATE: &str = " FOR UPDATE";

const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

/// The live certificates among `fingerprints`, with their devices (columns as
/// `shared::SESSION_COLUMNS`). The batch is one array parameter, and each fingerprint is looked
/// up on its own (`LATERAL`, kept apart from the outer query by `OFFSET 0`): two index probes per
/// certificate whatever the batch size. Joined as one, PostgreSQL's plan for a large batch read
/// every certificate or every device instead.
async fn live_certificates(
    pool: &sqlx::PgPool,
    fingerprints: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT live.* FROM unnest($2::text[]) AS wanted (fingerprint), LATERAL ( \
             SELECT {} FROM device_identities i JOIN devices d ON d.id = i.device_id \
             WHERE i.fingerprint = wanted.fingerprint AND i.revoked_at IS NULL \
             AND i.not_after > $1 OFFSET 0) AS live",
            shared::SESSION_COLUMNS
        )
    });
    sqlx::query(&SQL)
        .bind(now)
        .bind(fingerprints)
        .fetch_all(pool)
        .await
}

#[allow(clippy::duplicate_mod)]
#[path = "notices_sql.rs"]
mod notices_sql;

#[allow(clippy::duplicate_mod)]
#[path = "policies_sql.rs"]
mod policies_sql;

#[allow(clippy::duplicate_mod)]
#[path = "commands_sql.rs"]
mod commands_sql;

#[allow(clippy::duplicate_mod)]
#[path = "compliance_sql.rs"]
mod compliance_sql;

#[allow(clippy::duplicate_mod)]
#[path = "leasing_sql.rs"]
mod leasing_sql;

#[allow(clippy::duplicate_mod)]
#[path = "lost_cases_sql.rs"]
mod lost_cases_sql;

#[allow(clippy::duplicate_mod)]
#[path = "subscriptions_sql.rs"]
mod subscriptions_sql;

#[allow(clippy::duplicate_mod)]
#[path = "warranty_sql.rs"]
mod warranty_sql;

pub use shared::SqlStore as PgStore;

impl PgStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // sqlx would otherwise ping the database each time a connection is taken: a round
            // trip before every query, the check-in's certificate lookup included. A connection
            // that has died fails its query instead, and the pool replaces it.
            .test_before_acquire(false)
            .connect(url)
            .await?;
        Ok(PgStore::new(pool))
    }

    pub(crate) async fn run_migrations(&self) -> StoreResult<()> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn backup_file(&self, _path: &std::path::Path) -> StoreResult<()> {
        Err(StoreError::Unsupported(
            "PostgreSQL is backed up with its own tools: pg_dump --format=custom --file=mdm.dump \"$MDM_DATABASE_URL\"".to_string(),
        ))
    }
}
