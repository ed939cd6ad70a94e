//! The embedded default: one SQLite file in the data directory, WAL mode.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

use super::{StoreError, StoreResult};

type Db = sqlx::Sqlite;

/// Write transactions take the write lock at once, so two writers queue on the busy timeout
/// instead of failing halfway through.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
const BACKEND: &str = "sqlite";

// Compiled once per backend on purpose: one SQL text, two type-checked implementations.
#[allow(clippy::duplicate_mod)]
#[path = "shared_sql.rs"]
mod shared;

// Claiming outbox rows: PostgreSQL skips rows another node holds; SQLite has one writer.
// Reading a row to change it: PostgreSQL locks it; SQLite's writer holds the database.
const FOR_UPDATE: &str = "";

const SKIP_LOCKED: &str = "";

/// The live-certificate lookup for `width` fingerprints (`$2` on; `$1` is now); "live" is
/// `domain::device::identity_is_live`.
fn live_certificates_sql(width: usize) -> String {
    let placeholders = (0..width)
        .map(|i| format!("${}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {} FROM device_identities i JOIN devices d ON d.id = i.device_id \
         WHERE i.fingerprint IN ({placeholders}) AND i.revoked_at IS NULL AND i.not_after > $1",
        shared::SESSION_COLUMNS
    )
}

/// The live certificates among `fingerprints`, with their devices (columns as
/// `shared::SESSION_COLUMNS`): one seek in the fingerprint index each. The list is padded to a
/// power of two (repeating its last entry), so a handful of statement texts serve every batch
/// size and stay in the statement cache.
async fn live_certificates(
    conn: &mut sqlx::SqliteConnection,
    fingerprints: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<sqlx::sqlite::SqliteRow>, sqlx::Error> {
    let Some(last) = fingerprints.last() else {
        return Ok(Vec::new());
    };
    let width = fingerprints.len().next_power_of_two();
    let sql = live_certificates_sql(width);
    let mut query = sqlx::query(&sql).bind(now);
    for i in 0..width {
        query = query.bind(fingerprints.get(i).unwrap_or(last));
    }
    query.fetch_all(conn).await
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

pub use shared::SqlStore as SqliteStore;

impl SqliteStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        keep_private(options.get_filename())
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // sqlx would otherwise test each connection before handing it out, a round trip to
            // its worker thread. SQLite's connections live in this process, and nothing outside
            // can cut them; one that fails anyway fails its query, and the pool replaces it.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(SqliteStore::new(pool))
    }

    pub(crate) async fn run_migrations(&self) -> StoreResult<()> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// `VACUUM INTO` writes a consistent snapshot of the live database to a new file. SQLite
    /// accepts an empty file there, so the file is made first, readable by the server's user
    /// only, like the database it copies.
    pub(crate) async fn backup_file(&self, path: &std::path::Path) -> StoreResult<()> {
        private_file(path).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_string_lossy().to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The database holds password hashes and TOTP secrets: a folder made for it is the server
/// user's only (0700), and the database with its WAL and shared-memory files is readable by that
/// user only (0600). SQLite gives the files it makes beside the database the database's mode, so
/// the database is made empty with 0600 before SQLite opens it; files an older version left
/// readable are tightened.
fn keep_private(db: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if db.as_os_str().is_empty() || db.to_string_lossy().starts_with(':') {
        return Ok(()); // in memory
    }
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o700);
        builder.create(parent)?;
    }
    if !db.exists() {
        return private_file(db);
    }
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Makes a new empty file readable and writable by the server's user only.
fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite has no statistics here, and an index over every certificate's `revoked_at` looked
    /// as selective to it as the fingerprints: it read every live certificate on each check-in.
    #[tokio::test]
    async fn the_live_certificate_lookup_seeks_each_fingerprint_and_reads_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("plan.sqlite3").display());
        let store = SqliteStore::connect(&url).await.expect("store");
        store.run_migrations().await.expect("migrations");
        let sql = format!("EXPLAIN QUERY PLAN {}", live_certificates_sql(128));
        let mut query = sqlx::query(&sql).bind(chrono::Utc::now());
        for i in 0..128 {
            query = query.bind(format!("{i:064x}"));
        }
        let plan: Vec<String> = query
            .fetch_all(&store.pool)
            .await
            .expect("plan")
            .iter()
            .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
            .collect();
        let certificates: Vec<&String> = plan
            .iter()
            .filter(|step| step.contains(" i ") || step.ends_with(" i"))
            .collect();
        assert_eq!(certificates.len(), 1, "{plan:?}");
        assert!(
            certificates[0].starts_with("SEARCH i USING INDEX")
                && certificates[0].contains("(fingerprint=?)"),
            "{plan:?}"
        );
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH d USING INTEGER PRIMARY KEY")),
            "{plan:?}"
        );
    }
}
