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

/// The live-certificate lookup: `$1` is now, `$2` the fingerprints; "live" is
/// `domain::device::identity_is_live`.
static LIVE_CERTIFICATES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT live.* FROM unnest($2::text[]) AS wanted (fingerprint), LATERAL ( \
         SELECT {} FROM device_identities i JOIN devices d ON d.id = i.device_id \
         WHERE i.fingerprint = wanted.fingerprint AND i.revoked_at IS NULL \
         AND i.not_after > $1 OFFSET 0) AS live",
        shared::SESSION_COLUMNS
    )
});

/// The live certificates among `fingerprints`, with their devices (columns as
/// `shared::SESSION_COLUMNS`). The batch is one array parameter, and each fingerprint is looked
/// up on its own (`LATERAL`, kept apart from the outer query by `OFFSET 0`): two index probes per
/// certificate whatever the batch size. Joined as one, PostgreSQL's plan for a large batch read
/// every certificate or every device instead.
async fn live_certificates(
    conn: &mut sqlx::PgConnection,
    fingerprints: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    sqlx::query(&LIVE_CERTIFICATES)
        .bind(now)
        .bind(fingerprints)
        .fetch_all(conn)
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

#[allow(clippy::duplicate_mod)]
#[path = "apple_sql.rs"]
mod apple_sql;

#[allow(clippy::duplicate_mod)]
#[path = "steps_sql.rs"]
mod steps_sql;

pub use shared::SqlStore as PgStore;

impl PgStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // sqlx's default, kept: each connection is tested with a round trip before it is
            // handed out, so that after PostgreSQL restarts or cuts connections, requests get
            // fresh ones instead of failing once for each dead one. The check-in's certificate
            // lookup, the one query on every device request, does not take its connections from
            // the pool each time (`SqlStore::look_up_sessions`), so it does not pay for this.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database on the suite's PostgreSQL server (`scripts/test` starts one). Without
    /// one the test says it was skipped, unless `TEST_REQUIRE_POSTGRES` (set by `scripts/test`)
    /// says PostgreSQL must run.
    async fn fresh_store() -> Option<PgStore> {
        let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("TEST_REQUIRE_POSTGRES").is_none(),
                "TEST_POSTGRES_URL is not set, and TEST_REQUIRE_POSTGRES says PostgreSQL must run"
            );
            eprintln!("skipped: TEST_POSTGRES_URL is not set; scripts/test runs this test");
            return None;
        };
        let name = format!("mdm_unit_{}", rand::random::<u64>());
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("admin connection");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("create database");
        pool.close().await;
        let mut url = url::Url::parse(&admin).expect("url");
        url.set_path(&name);
        let store = PgStore::connect(url.as_str()).await.expect("store");
        store.run_migrations().await.expect("migrations");
        Some(store)
    }

    /// Joined as one query, a batch of 128 fingerprints made PostgreSQL read every certificate
    /// (a hash join) instead of probing for each.
    #[tokio::test]
    async fn a_large_batch_of_certificates_is_looked_up_by_index_one_by_one() {
        let Some(store) = fresh_store().await else {
            return;
        };
        for statement in [
            "INSERT INTO device_models (platform, name, created_at) VALUES ('ios', 'iPhone 16', now())",
            "INSERT INTO devices (serial, imei, imei_tail, model_id, platform, created_at, updated_at) \
             SELECT 'S' || g, lpad(g::text, 15, '0'), reverse(lpad(g::text, 15, '0')), \
             (SELECT id FROM device_models), 'ios', now(), now() FROM generate_series(1, 5000) g",
            "INSERT INTO device_identities (serial, device_id, fingerprint, key_kind, not_before, \
             not_after, created_at) SELECT 'C' || id, id, md5(serial) || md5(imei), 'p256', now(), \
             now() + interval '1 year', now() FROM devices",
            "ANALYZE",
        ] {
            sqlx::query(statement)
                .execute(&store.pool)
                .await
                .expect(statement);
        }
        let fingerprints: Vec<String> = sqlx::query_scalar(
            "SELECT fingerprint FROM device_identities ORDER BY serial LIMIT 128",
        )
        .fetch_all(&store.pool)
        .await
        .expect("fingerprints");
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {}", *LIVE_CERTIFICATES))
            .bind(chrono::Utc::now())
            .bind(&fingerprints)
            .fetch_all(&store.pool)
            .await
            .expect("plan");
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(!plan.contains("Hash"), "{plan}");
        assert!(
            plan.contains("Index Scan using device_identities_fingerprint_key"),
            "{plan}"
        );
        let mut conn = store.pool.acquire().await.expect("connection");
        let found = live_certificates(&mut conn, &fingerprints, chrono::Utc::now())
            .await
            .expect("lookup");
        assert_eq!(found.len(), 128);
    }
}
