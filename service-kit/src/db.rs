//! Databases: one URL picks the backend (PostgreSQL in the cluster, SQLite
//! for the embedded run), one r2d2 pool per service, one migration set that
//! runs on both.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use diesel::backend::Backend;
use diesel::connection::SimpleConnection;
use diesel::migration::{Migration, MigrationMetadata, MigrationName, MigrationSource, MigrationVersion};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::result::{DatabaseErrorKind, Error::DatabaseError};
use diesel::sqlite::Sqlite;
use diesel::{Connection, PgConnection, QueryResult, RunQueryDsl, SqliteConnection};
use diesel_migrations::MigrationHarness;

/// A connection to whichever database `DATABASE_URL` names.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = r2d2::Pool<Connector>;

/// Runs `$body` with `$c` bound to the concrete connection, so each query is
/// type-checked against each backend on its own.
#[macro_export]
macro_rules! with_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::AnyConnection::Postgresql($c) => $body,
            $crate::db::AnyConnection::Sqlite($c) => $body,
        }
    };
}

/// A write transaction. On SQLite it is `BEGIN IMMEDIATE`: a deferred
/// transaction that reads and then writes fails at once with "database is
/// locked" under concurrent writers, and `busy_timeout` does not retry it.
pub trait WriteTransaction: Sized {
    fn write_transaction<T, E, F>(&mut self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>;
}

impl WriteTransaction for PgConnection {
    fn write_transaction<T, E, F>(&mut self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.transaction(work)
    }
}

impl WriteTransaction for SqliteConnection {
    fn write_transaction<T, E, F>(&mut self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.immediate_transaction(work)
    }
}

/// `DATABASE_URL`, checked for a scheme we know before anything connects.
#[derive(Clone, PartialEq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(s.to_owned()))
        } else if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://data/users.db".into());
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else {
            let scheme = s.split(':').next().unwrap_or_default();
            Err(format!("unknown scheme '{scheme}': expected postgres://, postgresql:// or sqlite://"))
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl DatabaseUrl {
    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Postgres(_) => "postgresql",
            DatabaseUrl::Sqlite(_) => "sqlite",
        }
    }

    /// Connections per pool when `DATABASE_POOL_SIZE` is unset. SQLite
    /// writes one transaction at a time per file: with one connection,
    /// writers queue in the pool and wake the moment it is free, where
    /// several connections meet the file lock and sleep in SQLite's busy
    /// handler (1, 2, 5, … 100 ms), which measured as a long latency tail.
    pub fn default_pool_size(&self) -> u32 {
        match self {
            DatabaseUrl::Postgres(_) => 10,
            DatabaseUrl::Sqlite(_) => 1,
        }
    }

    /// The URL with any password replaced, fit for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    let creds = &url[scheme_end + 3..at];
                    let user = creds.split(':').next().unwrap_or_default();
                    let masked = if creds.contains(':') { ":***" } else { "" };
                    format!("{}{user}{masked}{}", &url[..scheme_end + 3], &url[at..])
                }
                _ => url.clone(),
            },
        }
    }
}

const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; \
     PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON;";

/// Opens connections for r2d2 by the URL's scheme. diesel's own
/// `MultiConnection::establish` tries each backend in turn and hides why the
/// right one failed; this reports the real cause.
#[derive(Debug)]
pub struct Connector {
    url: DatabaseUrl,
    /// Lives as long as the pool that owns this connector.
    checkpointer: Option<Checkpointer>,
}

impl Connector {
    pub fn new(url: DatabaseUrl) -> Self {
        Connector { url, checkpointer: None }
    }

    fn open(&self) -> Result<AnyConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                PgConnection::establish(url).map(AnyConnection::Postgresql).map_err(r2d2::Error::ConnectionError)
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn =
                    SqliteConnection::establish(&path.to_string_lossy()).map_err(r2d2::Error::ConnectionError)?;
                conn.batch_execute(SQLITE_PRAGMAS).map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }
}

/// How often the WAL is copied into an SQLite database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies SQLite's write-ahead log into the database file on a thread of
/// its own. Left to itself SQLite does that inside whichever commit takes
/// the log past 1000 pages, and that request waits for the copy and its
/// fsync. A passive checkpoint never blocks readers or writers. The thread
/// ends when the pool (which owns the sender) is dropped.
#[derive(Debug)]
struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    fn start(path: &std::path::Path) -> Result<Checkpointer, diesel::ConnectionError> {
        let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
        let (stop, stopped) = mpsc::channel::<()>();
        let name = path.display().to_string();
        std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                        log::warn!("checkpoint of {name} failed: {e}");
                    }
                }
            })
            .map_err(|e| diesel::ConnectionError::BadConnection(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { _stop: stop })
    }
}

impl ManageConnection for Connector {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        self.open()
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.ping().map(drop).map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// One migration: diesel's directory layout (`migrations/<name>/up.sql`),
/// embedded with `include_str!`.
pub struct SqlMigration {
    pub name: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

/// A service's [`Migrations`] from the names of its migration directories,
/// oldest first: each one's `up.sql` and `down.sql` are embedded from the
/// crate's `migrations/<name>/`. Called from the crate's `src/lib.rs` (the
/// paths are relative to the file that calls it).
#[macro_export]
macro_rules! migrations {
    ($($name:literal),+ $(,)?) => {
        $crate::db::Migrations(&[$(
            $crate::db::SqlMigration {
                name: $name,
                up: include_str!(concat!("../migrations/", $name, "/up.sql")),
                down: include_str!(concat!("../migrations/", $name, "/down.sql")),
            }
        ),+])
    };
}

/// A service's migrations, written once in the SQL both engines share. The
/// one construct they do not share, an auto-generated 64-bit key, is written
/// the PostgreSQL way and becomes `INTEGER PRIMARY KEY AUTOINCREMENT` on
/// SQLite (its 64-bit rowid; AUTOINCREMENT so ids are never reused). Where
/// the engines need different statements (SQLite cannot alter a constraint
/// and rebuilds the table instead; a rebuild would leave PostgreSQL's
/// identity sequence behind), a block after a line `-- on postgresql only`
/// or `-- on sqlite only` runs on that engine alone, until `-- on both`.
pub struct Migrations(pub &'static [SqlMigration]);

pub const PG_IDENTITY: &str = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
const SQLITE_IDENTITY: &str = "INTEGER PRIMARY KEY AUTOINCREMENT";

#[derive(Clone, Copy)]
enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    fn translate(self, sql: &'static str) -> Cow<'static, str> {
        let sql = self.own_blocks(sql);
        match self {
            Dialect::Postgres => sql,
            Dialect::Sqlite => Cow::Owned(sql.replace(PG_IDENTITY, SQLITE_IDENTITY)),
        }
    }

    /// The lines for this engine: the shared ones and its own blocks.
    fn own_blocks(self, sql: &'static str) -> Cow<'static, str> {
        if !sql.contains("-- on ") {
            return Cow::Borrowed(sql);
        }
        let mut keep = true;
        let mut out = String::with_capacity(sql.len());
        for line in sql.lines() {
            match line.trim() {
                "-- on postgresql only" => keep = matches!(self, Dialect::Postgres),
                "-- on sqlite only" => keep = matches!(self, Dialect::Sqlite),
                "-- on both" => keep = true,
                _ if keep => {
                    out.push_str(line);
                    out.push('\n');
                }
                _ => {}
            }
        }
        Cow::Owned(out)
    }
}

struct DialectMigration {
    name: MigrationLabel,
    up: Cow<'static, str>,
    down: Cow<'static, str>,
}

struct MigrationLabel(&'static str);

impl fmt::Display for MigrationLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl MigrationName for MigrationLabel {
    /// diesel's rule: the part before the first `_`, without dashes.
    fn version(&self) -> MigrationVersion<'_> {
        let stamp = self.0.split('_').next().unwrap_or(self.0);
        MigrationVersion::from(stamp.replace('-', ""))
    }
}

struct InTransaction;
impl MigrationMetadata for InTransaction {}

impl<DB: diesel::backend::Backend> Migration<DB> for DialectMigration {
    fn run(&self, conn: &mut dyn diesel::connection::BoxableConnection<DB>) -> diesel::migration::Result<()> {
        conn.batch_execute(&self.up)?;
        Ok(())
    }

    fn revert(&self, conn: &mut dyn diesel::connection::BoxableConnection<DB>) -> diesel::migration::Result<()> {
        conn.batch_execute(&self.down)?;
        Ok(())
    }

    fn metadata(&self) -> &dyn MigrationMetadata {
        &InTransaction
    }

    fn name(&self) -> &dyn MigrationName {
        &self.name
    }
}

impl Migrations {
    fn for_dialect<DB: diesel::backend::Backend>(&self, dialect: Dialect) -> Vec<Box<dyn Migration<DB>>> {
        self.0
            .iter()
            .map(|m| {
                Box::new(DialectMigration {
                    name: MigrationLabel(m.name),
                    up: dialect.translate(m.up),
                    down: dialect.translate(m.down),
                }) as Box<dyn Migration<DB>>
            })
            .collect()
    }
}

impl MigrationSource<Pg> for &Migrations {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<Pg>>>> {
        Ok(self.for_dialect(Dialect::Postgres))
    }
}

impl MigrationSource<Sqlite> for &Migrations {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<Sqlite>>>> {
        Ok(self.for_dialect(Dialect::Sqlite))
    }
}

/// A statement whose SQL text is the same on every call, kept prepared.
/// diesel caches SELECTs and plain INSERTs, but never an UPDATE, an upsert or
/// an `sql_query` (their text may vary with the values), so PostgreSQL parses
/// and plans those on every call: pgbench runs the same order statements 40 %
/// slower unprepared (`-M simple`). diesel keys this cache by the SQL text,
/// so wrap only statements whose text is fixed: no `eq_any` lists, no
/// changesets with optional fields. Use it with `get_result`/`load`: on
/// SQLite diesel hands `execute` its statement by reference, which hides the
/// wrapper, so there the statement is not kept.
#[derive(Debug, Clone, Copy)]
pub struct Prepared<Q>(Q);

pub trait KeepPrepared: Sized {
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q: QueryId> KeepPrepared for Q {}

impl<Q, DB> QueryFragment<DB> for Prepared<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for Prepared<Q> {}

/// Why a database could not be made ready at start-up.
#[derive(Debug, thiserror::Error)]
#[error("database {url}: {reason}")]
pub struct DatabaseSetupError {
    pub url: String,
    pub reason: String,
}

/// Any key works as long as every replica of a service uses the same one;
/// advisory locks are scoped to the database.
const MIGRATION_LOCK_KEY: i64 = 0x6f72_6465_7273;

/// How long start-up waits for the database to accept connections.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// Applies pending migrations, then opens the pool. On PostgreSQL an
/// advisory lock makes replicas that start together take turns.
pub fn connect(
    url: &DatabaseUrl,
    pool_size: Option<u32>,
    migrations: &Migrations,
) -> Result<DbPool, DatabaseSetupError> {
    let fail = |reason: String| DatabaseSetupError { url: url.redacted(), reason };
    if let DatabaseUrl::Sqlite(path) = url
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    }
    log::info!("database {}", url.redacted());
    let mut connector = Connector::new(url.clone());
    let mut conn = open_patiently(&connector).map_err(|e| fail(e.to_string()))?;
    migrate(&mut conn, migrations).map_err(|e| fail(format!("migrations failed: {e}")))?;
    drop(conn);
    if let DatabaseUrl::Sqlite(path) = url {
        connector.checkpointer = Some(Checkpointer::start(path).map_err(|e| fail(e.to_string()))?);
    }
    let pool_size = pool_size.unwrap_or_else(|| url.default_pool_size());
    r2d2::Pool::builder()
        .max_size(pool_size)
        .min_idle(Some(pool_size.min(2)))
        // No `SELECT 1` on every checkout: it was a quarter of all round
        // trips (docs/performance.md). A connection that died while idle
        // (a database restart) fails its next query instead, which answers
        // 503 (see `StorageError`); diesel then reports it broken and r2d2
        // replaces it.
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(5))
        .build(connector)
        .map_err(|e| fail(e.to_string()))
}

fn open_patiently(connector: &Connector) -> Result<AnyConnection, r2d2::Error> {
    let started = Instant::now();
    loop {
        match connector.open() {
            Ok(conn) => return Ok(conn),
            Err(e) if started.elapsed() < CONNECT_PATIENCE && matches!(connector.url, DatabaseUrl::Postgres(_)) => {
                log::warn!("database not reachable yet ({e}); retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

fn migrate(conn: &mut AnyConnection, migrations: &Migrations) -> diesel::migration::Result<()> {
    match conn {
        AnyConnection::Postgresql(pg) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")).execute(pg)?;
            let applied = pg.run_pending_migrations(migrations).map(|v| v.len());
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")).execute(pg)?;
            log_applied(applied?);
        }
        AnyConnection::Sqlite(lite) => {
            let applied = lite.run_pending_migrations(migrations)?.len();
            log_applied(applied);
        }
    }
    Ok(())
}

fn log_applied(count: usize) {
    if count > 0 {
        log::info!("applied {count} migration(s)");
    }
}

/// What can go wrong talking to the database at run time.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("the database task was cancelled")]
    Cancelled,
}

/// `From<diesel::result::Error>` for a service's error that has a
/// `From<StorageError>`: `?` on a query makes a failed query its storage
/// error.
#[macro_export]
macro_rules! from_query_error {
    ($error:ty) => {
        impl From<::diesel::result::Error> for $error {
            fn from(e: ::diesel::result::Error) -> Self {
                <$error>::from($crate::db::StorageError::Query(e))
            }
        }
    };
}

impl From<&StorageError> for crate::Problem {
    fn from(e: &StorageError) -> Self {
        match e {
            StorageError::Pool(_) | StorageError::Query(DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => {
                crate::Problem::unavailable("the database is not reachable right now")
            }
            _ => crate::Problem::internal("the database failed to answer"),
        }
    }
}

/// Runs blocking diesel work on the blocking pool, never on an async worker.
pub async fn run<T, E, F>(pool: &DbPool, work: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StorageError> + Send + 'static,
{
    let pool = pool.clone();
    let request = crate::request_id::current();
    actix_web::web::block(move || {
        crate::request_id::on_blocking_thread(request, || {
            let mut conn = pool.get().map_err(StorageError::from)?;
            work(&mut conn)
        })
    })
    .await
    .map_err(|_| E::from(StorageError::Cancelled))?
}

/// Whether the pool can hand out a working connection within a second.
pub fn is_reachable(pool: &DbPool) -> bool {
    pool.get_timeout(Duration::from_secs(1)).map(|mut conn| conn.ping().is_ok()).unwrap_or(false)
}

/// True when a diesel error is a unique-constraint violation.
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        assert!(matches!("postgres://u@h/db".parse(), Ok(DatabaseUrl::Postgres(_))));
        assert!(matches!("postgresql://u@h/db".parse(), Ok(DatabaseUrl::Postgres(_))));
        assert_eq!(
            "sqlite://data/users.db".parse::<DatabaseUrl>(),
            Ok(DatabaseUrl::Sqlite(PathBuf::from("data/users.db")))
        );
        assert_eq!("sqlite:///tmp/x.db".parse::<DatabaseUrl>(), Ok(DatabaseUrl::Sqlite(PathBuf::from("/tmp/x.db"))));
    }

    #[test]
    fn unknown_schemes_are_named() {
        let err = "mysql://root@h/db".parse::<DatabaseUrl>().unwrap_err();
        assert!(err.contains("unknown scheme 'mysql'"), "{err}");
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn passwords_never_reach_logs() {
        let url: DatabaseUrl = "postgres://app:s3cret@db:5432/users".parse().unwrap();
        assert_eq!(url.redacted(), "postgres://app:***@db:5432/users");
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn engine_blocks_go_to_their_engine_only() {
        let sql = "A;\n-- on postgresql only\nP;\n-- on sqlite only\nS;\n-- on both\nB;\n";
        assert_eq!(Dialect::Postgres.translate(sql), "A;\nP;\nB;\n");
        assert_eq!(Dialect::Sqlite.translate(sql), "A;\nS;\nB;\n");
    }

    #[test]
    fn identity_columns_translate_for_sqlite() {
        let sql = "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)";
        assert_eq!(Dialect::Postgres.translate(sql), sql);
        assert_eq!(Dialect::Sqlite.translate(sql), "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT)");
    }

    fn checkpoint_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .expect("Linux /proc")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "wal-checkpoint")
            .count()
    }

    #[test]
    fn sqlite_pools_checkpoint_in_the_background_until_dropped() {
        static NONE: Migrations = Migrations(&[]);
        let dir = std::env::temp_dir().join(format!("service-kit-checkpoint-{:x}", fastrand::u64(..)));
        let url: DatabaseUrl = format!("sqlite://{}", dir.join("db.sqlite").display()).parse().unwrap();
        let before = checkpoint_threads();
        let pool = connect(&url, None, &NONE).expect("sqlite pool");
        assert_eq!(pool.max_size(), 1, "SQLite's default pool");
        // A thread takes its name when it first runs: wait for it.
        let deadline = Instant::now() + Duration::from_secs(2);
        while checkpoint_threads() < before + 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(checkpoint_threads(), before + 1);
        let mut conn = pool.get().unwrap();
        conn.batch_execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);").unwrap();
        std::thread::sleep(CHECKPOINT_EVERY * 5);
        // The new table's pages have reached the database file itself (a
        // commit only appends to the log; SQLite's own checkpoint would wait
        // for 1000 pages of it).
        let file = std::fs::metadata(dir.join("db.sqlite")).unwrap().len();
        assert!(file >= 2 * 4096, "the database file still holds {file} bytes");
        drop(conn);
        drop(pool);
        let deadline = Instant::now() + Duration::from_secs(2);
        while checkpoint_threads() > before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(checkpoint_threads(), before, "the thread ends with its pool");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn prepared_statements_are_cached_once_and_reused() {
        use diesel::connection::InstrumentationEvent;
        use diesel::prelude::*;
        use std::sync::{Arc, Mutex};
        diesel::table! { t (id) { id -> Integer, x -> Integer } }
        let cached = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = cached.clone();
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                seen.lock().unwrap().push(sql.to_owned());
            }
        });
        conn.batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER); INSERT INTO t VALUES (1, 0);").unwrap();
        let bump = |x: i32| diesel::update(t::table.find(1)).set(t::x.eq(x)).returning(t::x);
        for x in 1..=3 {
            assert_eq!(bump(x).get_result::<i32>(&mut conn).unwrap(), x);
        }
        assert!(cached.lock().unwrap().is_empty(), "diesel itself never caches an UPDATE");
        for x in 4..=6 {
            assert_eq!(bump(x).prepared().get_result::<i32>(&mut conn).unwrap(), x);
        }
        let cached = cached.lock().unwrap();
        assert_eq!(cached.len(), 1, "prepared once, then reused: {cached:?}");
        assert!(cached[0].starts_with("UPDATE"), "{cached:?}");
    }

    #[test]
    fn versions_follow_diesels_rule() {
        let label = MigrationLabel("2026-11-25-000001_create_users");
        assert_eq!(label.version().to_string(), "20261125000001");
    }
}
