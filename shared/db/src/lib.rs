//! Database access every service shares: one sea-orm connection pool on PostgreSQL
//! (production) or a SQLite file (embedded default), and migrations that run on both.

use std::path::Path;
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::MigratorTrait;

pub mod audit;
pub mod filter_sql;
pub mod schema;

pub use schema::create_index;
pub mod idempotency;

pub use sea_orm;
pub use sea_orm_migration;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database connection failed: {0}")]
    Connect(#[source] DbErr),
    #[error("migrations failed: {0}")]
    Migrate(#[source] DbErr),
    #[error("could not prepare the SQLite directory {0}: {1}")]
    Directory(String, std::io::Error),
}

/// Pool settings; mirrors `retention_config::DatabaseSettings`.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
}

impl DbOptions {
    pub fn from_settings(s: &retention_config::DatabaseSettings) -> Self {
        DbOptions {
            url: s.url.clone(),
            max_connections: s.max_connections,
            min_connections: s.min_connections,
            connect_timeout: Duration::from_millis(s.connect_timeout_ms),
            acquire_timeout: Duration::from_millis(s.acquire_timeout_ms),
        }
    }

    pub fn new(url: impl Into<String>) -> Self {
        DbOptions {
            url: url.into(),
            max_connections: 16,
            min_connections: 1,
            connect_timeout: Duration::from_secs(3),
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// Opens the pool. For SQLite the file's directory is created and the pool is a
/// single WAL connection, so writers queue instead of failing with "database is
/// locked".
pub async fn connect(opts: &DbOptions) -> Result<DatabaseConnection, DbError> {
    let is_sqlite = opts.url.starts_with("sqlite:");
    if is_sqlite {
        ensure_sqlite_dir(&opts.url)?;
    }
    let mut co = ConnectOptions::new(opts.url.clone());
    co.max_connections(opts.max_connections)
        .min_connections(opts.min_connections)
        .connect_timeout(opts.connect_timeout)
        .acquire_timeout(opts.acquire_timeout)
        // Detects connections a database restart killed before handing them out.
        .test_before_acquire(true)
        .sqlx_logging(false);
    if is_sqlite {
        // One connection: SQLite has one writer anyway, and a deferred transaction
        // that reads before it writes fails with SQLITE_BUSY_SNAPSHOT (not retried
        // by the busy timeout) when another connection wrote in between.
        co.max_connections(1).min_connections(1);
        co.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
        });
    }
    sea_orm::Database::connect(co)
        .await
        .map_err(DbError::Connect)
}

fn ensure_sqlite_dir(url: &str) -> Result<(), DbError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbError::Directory(dir.display().to_string(), e))?;
    }
    Ok(())
}

/// Applies all pending migrations of `M`.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), DbError> {
    M::up(db, None).await.map_err(DbError::Migrate)
}

/// `<service binary> migrate`: connects, applies the pending migrations and
/// closes. A Kubernetes init container runs it before a replica serves, so the
/// schema is in place before any traffic (replicas also migrate at start, which
/// is then a no-op).
pub async fn migrate_only<M: MigratorTrait>(
    s: &retention_config::DatabaseSettings,
) -> Result<(), DbError> {
    let db = connect(&DbOptions::from_settings(s)).await?;
    migrate::<M>(&db).await?;
    let _ = db.close().await;
    Ok(())
}

/// Cheap liveness query for readiness probes.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.ping().await.is_ok()
}

pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// True for errors that mean "the database is not reachable right now" (map to
/// UNAVAILABLE) rather than a bug or a constraint violation.
pub fn is_unavailable(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(e) | DbErr::Query(e) => looks_unavailable(&e.to_string()),
        // Errors that crossed a string boundary (e.g. a cache loader) keep the text.
        DbErr::Custom(msg) => looks_unavailable(msg),
        _ => false,
    }
}

fn looks_unavailable(msg: &str) -> bool {
    let msg = msg.to_ascii_lowercase();
    [
        "connection",
        "timed out",
        "pool",
        "refused",
        "broken pipe",
        // sqlx's I/O errors: a server that went away mid-query (found by the
        // profile fault test restarting PostgreSQL under load).
        "error communicating with database",
        "at eof",
        // "the database system is shutting down / starting up / in recovery mode"
        "database system is",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

/// True when `err` is a unique-constraint violation on either backend.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_directory_is_derived_from_the_url() {
        let dir = std::env::temp_dir().join(format!("retention-db-{}", std::process::id()));
        let url = format!("sqlite://{}/nested/x.sqlite?mode=rwc", dir.display());
        ensure_sqlite_dir(&url).unwrap();
        assert!(dir.join("nested").is_dir());
        std::fs::remove_dir_all(dir).ok();
        ensure_sqlite_dir("sqlite::memory:").unwrap();
    }

    #[test]
    fn outages_are_told_from_bugs() {
        assert!(is_unavailable(&DbErr::Custom(
            "Connection refused (os error 111)".into()
        )));
        assert!(is_unavailable(&DbErr::Custom(
            "pool timed out while waiting for an open connection".into()
        )));
        assert!(is_unavailable(&DbErr::Custom(
            "Query Error: error communicating with database: expected to read 5 bytes, got 0 bytes at EOF".into()
        )));
        assert!(is_unavailable(&DbErr::Custom(
            "error returned from database: the database system is starting up".into()
        )));
        assert!(!is_unavailable(&DbErr::Custom(
            "duplicate key value".into()
        )));
        assert!(!is_unavailable(&DbErr::RecordNotFound("x".into())));
    }

    #[tokio::test]
    async fn sqlite_connects_and_pings() {
        let db = connect(&DbOptions::new("sqlite::memory:")).await.unwrap();
        assert!(ping(&db).await);
        assert!(!is_postgres(&db));
    }
}
