//! The diesel store, one code path for both backends: SQLite (a file beside the
//! configuration, WAL mode, a busy timeout) and PostgreSQL (for several daemons on
//! one store). Only the connection settings and the migration set differ.
//!
//! Connections come from an r2d2 pool that checks each one before handing it out, so
//! after a database restart broken connections are replaced and the daemon recovers
//! by itself; while the database is down, requests fail with an internal error after
//! `database.connect_timeout_ms`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::{DateTime, Utc};
use diesel::{
    connection::SimpleConnection,
    pg::PgConnection,
    prelude::*,
    r2d2::{CustomizeConnection, Pool, PooledConnection},
    result::{DatabaseErrorKind, Error as DieselError},
    sql_types::{BigInt, Integer, Nullable},
    upsert::excluded,
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{
    rfc3339, schema::*, NewUser, Op, Penalty, PenaltyKey, Schema, Store, StoreError, Timing,
    UserRecord,
};
use crate::proto::User;

/// SQLite's schema migrations, compiled into the binary.
pub(crate) const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// PostgreSQL's schema migrations, compiled into the binary.
pub(crate) const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The penalty table, made the same way in a FlaskBB database as the migration makes
/// it in ours (the SQL is the same for both backends, and may run again).
const PENALTIES_DDL: &str =
    include_str!("../../migrations/sqlite/2026-12-02-000001_penalties/up.sql");

/// How long a statement waits for a lock before the request fails.
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub(crate) enum AnyConnection {
    /// SQLite.
    Sqlite(SqliteConnection),
    /// PostgreSQL.
    Postgresql(PgConnection),
}

type Conn = PooledConnection<Manager>;

/// Makes the pool's connections with the backend the URL names, not through
/// `AnyConnection::establish` (which tries each backend in turn and, when all fail,
/// says only "Invalid connection url for multiconnection"): a failure keeps the
/// backend's own words (connection refused on host and port, no such database,
/// authentication failed), which [`Manager::why`] gives to the error the user sees.
struct Manager {
    url: String,
    postgres: bool,
    /// The last connection failure, on one line; `None` once one succeeds.
    last_error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// The URL without its password (r2d2's pool prints its manager in its own `Debug`).
impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("url", &redact_url(&self.url))
            .field("postgres", &self.postgres)
            .finish_non_exhaustive()
    }
}

impl Manager {
    fn new(url: &str) -> Manager {
        Manager {
            url: url.to_owned(),
            postgres: is_postgres(url),
            last_error: Default::default(),
        }
    }
}

/// What the last failed connection attempt said (kept in `last`), and what to do.
fn why(last: &std::sync::Mutex<Option<String>>, postgres: bool, waited: Duration) -> String {
    {
        let last = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match last {
            Some(e) => with_hint(&e, postgres),
            None => format!(
                "no connection within database.connect_timeout_ms ({} ms): is the server reachable? Check the host in database.url, or raise the timeout",
                waited.as_millis()
            ),
        }
    }
}

impl diesel::r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, diesel::r2d2::Error> {
        let made = establish(&self.url, self.postgres);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            made.as_ref().err().map(|e| one_line(&e.to_string()));
        made.map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        diesel::r2d2::R2D2Connection::ping(conn).map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

/// Whether `url` names a PostgreSQL database.
fn is_postgres(url: &str) -> bool {
    url.starts_with("postgresql://") || url.starts_with("postgres://")
}

/// One connection to `url` with its own backend.
fn establish(url: &str, postgres: bool) -> ConnectionResult<AnyConnection> {
    if postgres {
        PgConnection::establish(url).map(AnyConnection::Postgresql)
    } else {
        SqliteConnection::establish(url).map(AnyConnection::Sqlite)
    }
}

/// A driver's message on one line (libpq's span several, with tabs).
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A connection failure's message, with what to do about it when it is one we know.
fn with_hint(message: &str, postgres: bool) -> String {
    let m = message.to_ascii_lowercase();
    let hint = if !postgres {
        (m.contains("unable to open") || m.contains("readonly") || m.contains("read-only"))
            .then_some(
                "check that the file's directory exists and that the daemon's user may write both",
            )
    } else if m.contains("database") && m.contains("does not exist") {
        Some("create it (`createdb -O USER NAME`, as the PostgreSQL superuser) or correct the database name in database.url")
    } else if m.contains("password authentication failed")
        || m.contains("no password supplied")
        || m.contains("role") && m.contains("does not exist")
        || m.contains("pg_hba.conf")
    {
        Some("check the user and password in database.url, and the server's pg_hba.conf")
    } else if m.contains("connection refused")
        || m.contains("no such file or directory")
        || m.contains("could not connect")
    {
        Some("start PostgreSQL, or correct the host and port in database.url")
    } else if m.contains("could not translate host name") || m.contains("name or service not known")
    {
        Some("correct the host in database.url")
    } else {
        None
    };
    match hint {
        Some(h) => format!("{message} ({h})"),
        None => message.to_owned(),
    }
}

/// Runs `$body` with `reg` and `kv` naming the plugin tables of `$schema`: FlaskBB's
/// names in our own schema, `flaskbbd_*` ones inside FlaskBB's database.
macro_rules! with_plugin_tables {
    ($schema:expr, $body:block) => {
        match $schema {
            Schema::Flaskbbd => {
                #[allow(unused_imports)]
                use super::schema::{plugin_registry as reg, plugin_store as kv};
                $body
            }
            Schema::Flaskbb => {
                #[allow(unused_imports)]
                use super::schema::{flaskbbd_plugin_registry as reg, flaskbbd_plugin_store as kv};
                $body
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the concrete connection: for the statements diesel
/// cannot express across backends (`ON CONFLICT`, `RETURNING`), which both have.
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            AnyConnection::Sqlite($c) => $body,
            AnyConnection::Postgresql($c) => $body,
        }
    };
}

/// The store over a pool of connections to one database.
pub(crate) struct DbStore {
    pool: Pool<Manager>,
    /// What the pool's last failed connection said ([`Manager::last_error`]).
    last_error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    postgres: bool,
    /// The database as logs name it (never with a password).
    name: String,
    schema: Schema,
    /// SQLite only: this process's writes take turns (see [`WriteTurns`]).
    turns: Option<WriteTurns>,
}

/// This process's SQLite writes, one at a time, each waiting at most until its
/// deadline. SQLite has one writer per file; threads racing for it meet SQLITE_BUSY,
/// and its busy handler sleeps 1, 2, 5, … ms between tries, so a burst of commits
/// (logins whose verifications ended together) is spread over milliseconds and the
/// next batch of verifications splits. Taking turns here costs a write only the
/// writes before it. The wait is bounded: a write waits for its turn and then for
/// SQLite's lock within one [`LOCK_TIMEOUT`] in all, so a database locked from
/// outside fails each write after that long, as it does without turns.
struct WriteTurns {
    busy: std::sync::Mutex<bool>,
    freed: std::sync::Condvar,
}

/// A write's turn; the next writer's comes when it is dropped.
struct Turn<'a>(&'a WriteTurns);

impl WriteTurns {
    fn new() -> WriteTurns {
        WriteTurns {
            busy: std::sync::Mutex::new(false),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits for the turn until `deadline`; `None` when it did not come.
    fn take(&self, deadline: std::time::Instant) -> Option<Turn<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            busy = self
                .freed
                .wait_timeout(busy, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *busy = true;
        Some(Turn(self))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.freed.notify_one();
    }
}

#[derive(Debug)]
struct Settings;

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for Settings {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        let ms = LOCK_TIMEOUT.as_millis();
        let sql = match conn {
            AnyConnection::Sqlite(_) => format!(
                "PRAGMA busy_timeout = {ms}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
            ),
            // FlaskBB's timestamps are UTC; a statement never waits on a lock forever.
            AnyConnection::Postgresql(_) => {
                format!("SET TIME ZONE 'UTC'; SET lock_timeout = {ms}; SET statement_timeout = {};", ms * 2)
            }
        };
        conn.batch_execute(&sql)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// `url` with any password replaced by `***`, for what is printed or logged: the
/// password of `user:password@`, and the value of `password=` (or any key ending in
/// it, such as `sslpassword=`) in a query string (`?password=…&`) or a key-value
/// conninfo (`password=… host=…`, quoted or not).
pub(crate) fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    // userinfo: between "://" and the last '@' before the query, or, when there is
    // none, before the path (libpq takes `u:p?x@host`, a '?' in the password).
    if let Some(scheme) = out.find("://") {
        let head = out.find('?').unwrap_or(out.len());
        let path = out[scheme + 3..]
            .find('/')
            .map_or(out.len(), |at| scheme + 3 + at);
        let at = out[..head]
            .rfind('@')
            .or_else(|| out[..path].rfind('@'))
            .filter(|&at| at > scheme + 3);
        if let Some(at) = at {
            if let Some(colon) = out[scheme + 3..at].find(':') {
                out.replace_range(scheme + 3 + colon + 1..at, "***");
            }
        }
    }
    // password=VALUE, as a query parameter or a conninfo keyword; any keyword that
    // ends in "password" (libpq's `sslpassword` too).
    let mut from = 0;
    while let Some(found) = out[from..].to_ascii_lowercase().find("password") {
        let key = from + found;
        let word = out.as_bytes()[..key]
            .iter()
            .rposition(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
            .map_or(0, |at| at + 1);
        let boundary = word == 0 || {
            let b = out.as_bytes()[word - 1];
            matches!(b, b'?' | b'&' | b';') || b.is_ascii_whitespace()
        };
        let mut eq = key + "password".len();
        while out.as_bytes().get(eq) == Some(&b' ') {
            eq += 1;
        }
        if !boundary || out.as_bytes().get(eq) != Some(&b'=') {
            from = key + 1;
            continue;
        }
        let mut start = eq + 1;
        while out.as_bytes().get(start) == Some(&b' ') {
            start += 1;
        }
        let end = if out.as_bytes().get(start) == Some(&b'\'') {
            // A quoted conninfo value, with \' and \\ escapes.
            let b = out.as_bytes();
            let mut j = start + 1;
            while j < b.len() && b[j] != b'\'' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(b.len())
        } else {
            out[start..]
                .find(|c: char| matches!(c, '&' | '#' | ';') || c.is_ascii_whitespace())
                .map_or(out.len(), |at| start + at)
        };
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

/// Tries the database at `url` for `flaskbbd check` without creating or changing
/// anything: connects (PostgreSQL: within `timeout`; SQLite: an existing file, opened
/// without creating it, or else the directory it would be created in must be
/// writable), runs a query, and says how many of the daemon's migrations have run
/// (FlaskBB's schema: that its tables are there). The text says what was found.
pub(crate) fn probe(
    url: &str,
    schema: Schema,
    base_dir: &Path,
    timeout: Duration,
) -> Result<String, StoreError> {
    let postgres = is_postgres(url);
    let (name, mut conn) = if postgres {
        probe_connect_postgres(url, timeout)?
    } else {
        let rest = url.strip_prefix("sqlite://").unwrap_or(url);
        let path = path_from_url(rest, base_dir)?;
        let name = format!("SQLite database {}", path.display());
        if !path.exists() {
            return probe_sqlite_to_create(&name, &path, schema);
        }
        let conn = probe_open_sqlite(&name, &path)?;
        (name, conn)
    };
    probe_count(
        &mut conn,
        "SELECT COUNT(*) AS n FROM (SELECT 1 AS one) AS t",
    )
    .map_err(|e| {
        StoreError::Unavailable(format!(
            "{name} does not answer a query: {}",
            one_line(&e.to_string())
        ))
    })?;
    match schema {
        Schema::Flaskbb => {
            probe_count(&mut conn, "SELECT COUNT(*) AS n FROM users").map_err(|_| {
                StoreError::Unavailable(format!(
                    "database.schema = \"flaskbb\", but {name} has no table users: is database.url FlaskBB's database?"
                ))
            })?;
            Ok(format!("{name}: connected, FlaskBB's tables found"))
        }
        Schema::Flaskbbd => {
            use diesel::migration::MigrationSource;
            let all = if postgres {
                MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS).map(|m| m.len())
            } else {
                MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
                    .map(|m| m.len())
            }
            .unwrap_or(0) as i64;
            let ran = probe_count(
                &mut conn,
                "SELECT COUNT(*) AS n FROM __diesel_schema_migrations",
            )
            .unwrap_or(0);
            Ok(if ran >= all {
                format!("{name}: connected, schema up to date ({all} migrations)")
            } else {
                format!(
                    "{name}: connected, {} of {all} migrations to run (`flaskbbd migrate` runs them, as the daemon does at its start)",
                    all - ran
                )
            })
        }
    }
}

/// [`probe`]'s connection to the PostgreSQL database at `url`, with its name for the
/// messages, made within `timeout`.
fn probe_connect_postgres(
    url: &str,
    timeout: Duration,
) -> Result<(String, AnyConnection), StoreError> {
    openssl_sys::init();
    let name = format!("PostgreSQL database {}", redact_url(url));
    // libpq has no timeout of its own unless the URL sets one: wait at most
    // `timeout` for it, leaving a hung attempt behind (the command exits).
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = url.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(establish(&owned, true).map_err(|e| one_line(&e.to_string())));
    });
    let conn = match rx.recv_timeout(timeout) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(StoreError::Unavailable(format!(
                "cannot connect to {name}: {}",
                with_hint(&e, true)
            )))
        }
        Err(_) => {
            return Err(StoreError::Unavailable(format!(
                "cannot connect to {name}: no answer within database.connect_timeout_ms ({} ms): is the server reachable? Check the host in database.url",
                timeout.as_millis()
            )))
        }
    };
    Ok((name, conn))
}

/// [`probe`]'s word on the SQLite database `name` at `path`, which does not exist:
/// that it will be made, when the daemon's schema is wanted and this user may
/// create it in the nearest directory of its path that exists.
fn probe_sqlite_to_create(name: &str, path: &Path, schema: Schema) -> Result<String, StoreError> {
    if schema == Schema::Flaskbb {
        return Err(StoreError::Unavailable(format!(
            "database.schema = \"flaskbb\", but {} does not exist: point database.url at FlaskBB's database",
            path.display()
        )));
    }
    let Some(dir) = path.ancestors().skip(1).find(|a| a.exists()) else {
        return Err(StoreError::Unavailable(format!(
            "{name}: no directory of its path exists"
        )));
    };
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| StoreError::Unavailable(format!("{name}: the path holds a NUL byte")))?;
    // SAFETY: access only reads the NUL-terminated path it is given.
    if unsafe { libc::access(c_dir.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(StoreError::Unavailable(format!(
            "{name} does not exist, and this user cannot create it in {}: {} (run `flaskbbd check` as the daemon's user, or give it that directory)",
            dir.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(format!(
        "{name} does not exist yet; `flaskbbd migrate` (or the daemon at its start) creates it"
    ))
}

/// [`probe`]'s connection to the existing SQLite database `name` at `path`, opened
/// read-write but never created (mode=rw in a URI filename).
fn probe_open_sqlite(name: &str, path: &Path) -> Result<AnyConnection, StoreError> {
    let escaped = path
        .to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23");
    establish(&format!("file:{escaped}?mode=rw"), false).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot open {name}: {}",
            with_hint(&one_line(&e.to_string()), false)
        ))
    })
}

/// The count that `sql` (a `SELECT COUNT(*) AS n`) finds on `conn`, for [`probe`].
fn probe_count(conn: &mut AnyConnection, sql: &str) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .map(|c| c.n)
}

/// `sqlite:///relative` (to `base_dir`) or `sqlite:////absolute` → the file's path.
pub(crate) fn path_from_url(rest: &str, base_dir: &Path) -> Result<PathBuf, StoreError> {
    let Some(p) = rest.strip_prefix('/') else {
        return Err(StoreError::Unavailable(format!(
            "database.url sqlite://{rest}: write sqlite:///relative/path or sqlite:////absolute/path"
        )));
    };
    if p.is_empty() || p == ":memory:" {
        return Err(StoreError::Unavailable(
            "database.url: an in-memory SQLite database would lose every user at exit; name a file"
                .into(),
        ));
    }
    Ok(base_dir.join(p))
}

/// FlaskBB's Member group, as stored.
const MEMBER: i32 = super::MEMBER_GROUP as i32;

/// FlaskBB's ids are 32-bit in the database; the API's are 64-bit. An id that cannot
/// be stored names no row.
fn id32(id: i64) -> Result<i32, StoreError> {
    i32::try_from(id).map_err(|_| StoreError::NoSuchUser)
}

fn query_err(e: DieselError) -> StoreError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => StoreError::UserExists,
        other => StoreError::Query(other.to_string()),
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
struct UserRow {
    id: i32,
    username: String,
    email: String,
    password: Option<String>,
    date_joined: Option<chrono::NaiveDateTime>,
    last_failed_login: Option<chrono::NaiveDateTime>,
    login_attempts: Option<i32>,
    activated: Option<bool>,
    primary_group_id: i32,
}

impl DbStore {
    /// Opens the SQLite database at `path` (creating it and its directory when
    /// missing) and runs pending migrations.
    pub(crate) fn open_sqlite(
        path: &Path,
        schema: Schema,
        connect_timeout: Duration,
    ) -> Result<DbStore, StoreError> {
        if let Some(dir) = path.parent() {
            crate::files::create_private_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the directory {} for the database: {e}",
                    dir.display()
                ))
            })?;
        }
        if schema == Schema::Flaskbb && !path.exists() {
            return Err(StoreError::Unavailable(format!(
                "database.schema = \"flaskbb\", but {} does not exist: point database.url at FlaskBB's database",
                path.display()
            )));
        }
        // Made 0600 before SQLite opens it: SQLite creates its -wal, -shm and
        // -journal files with the database file's permissions.
        crate::files::create_private_file(path).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create the database {}: {e}",
                path.display()
            ))
        })?;
        let name = format!("SQLite database {}", path.display());
        Self::open(&path.to_string_lossy(), name, schema, connect_timeout)
    }

    /// Opens the PostgreSQL database at `url` and runs pending migrations.
    pub(crate) fn open_postgres(
        url: &str,
        schema: Schema,
        connect_timeout: Duration,
    ) -> Result<DbStore, StoreError> {
        // libpq uses OpenSSL, which by default frees its global state in an atexit
        // handler while the pool's threads may be mid-handshake: the process crashed
        // at exit. Initialising OpenSSL first without that handler prevents it (exit
        // reclaims the memory anyway); it must happen before libpq's first connection.
        openssl_sys::init();
        Self::open(
            url,
            format!("PostgreSQL database {}", redact_url(url)),
            schema,
            connect_timeout,
        )
    }

    fn open(
        url: &str,
        name: String,
        schema: Schema,
        connect_timeout: Duration,
    ) -> Result<DbStore, StoreError> {
        let manager = Manager::new(url);
        let (last_error, postgres) = (manager.last_error.clone(), manager.postgres);
        let pool = Pool::builder()
            .max_size(16)
            .min_idle(Some(1))
            .connection_timeout(connect_timeout)
            .test_on_check_out(true)
            .connection_customizer(Box::new(Settings))
            .build(manager)
            // A failure to connect: the backend's own words, not the pool's.
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "cannot open {name}: {}",
                    why(&last_error, postgres, connect_timeout)
                ))
            })?;
        // PostgreSQL locks rows, not the database: its writers need no turns.
        let turns = (!is_postgres(url)).then(WriteTurns::new);
        let store = DbStore {
            pool,
            last_error,
            postgres,
            name,
            schema,
            turns,
        };
        match schema {
            Schema::Flaskbbd => {
                store.migrate()?;
            }
            Schema::Flaskbb => store.adopt_flaskbb()?,
        }
        Ok(store)
    }

    /// Checks that this is FlaskBB's database and adds the daemon's two plugin tables
    /// when missing. FlaskBB's own tables are used as they are, never migrated.
    fn adopt_flaskbb(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        for table in ["users", "groups", "groups_users"] {
            if diesel::sql_query(format!("SELECT 1 FROM {table} WHERE 1 = 0"))
                .execute(&mut *conn)
                .is_err()
            {
                return Err(StoreError::Unavailable(format!(
                    "database.schema = \"flaskbb\", but {} has no table {table}: is database.url FlaskBB's database?",
                    self.name
                )));
            }
        }
        let ddl = match &mut *conn {
            AnyConnection::Sqlite(_) => {
                "CREATE TABLE IF NOT EXISTS flaskbbd_plugin_registry (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, \
                 name VARCHAR(255) NOT NULL UNIQUE, enabled BOOLEAN DEFAULT 1); \
                 CREATE TABLE IF NOT EXISTS flaskbbd_plugin_store (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, \
                 key VARCHAR(255) NOT NULL, value TEXT, value_type VARCHAR(20) NOT NULL DEFAULT 'string', \
                 plugin_id INTEGER REFERENCES flaskbbd_plugin_registry(id) ON DELETE CASCADE, UNIQUE (key, plugin_id)); \
                 CREATE TABLE IF NOT EXISTS flaskbbd_password_hashes (user_id INTEGER PRIMARY KEY NOT NULL \
                 REFERENCES users(id) ON DELETE CASCADE, hash VARCHAR(255) NOT NULL, replaces TEXT NOT NULL); {PENALTIES_DDL}"
            }
            AnyConnection::Postgresql(_) => {
                "CREATE TABLE IF NOT EXISTS flaskbbd_plugin_registry (id SERIAL PRIMARY KEY, \
                 name VARCHAR(255) NOT NULL UNIQUE, enabled BOOLEAN DEFAULT TRUE); \
                 CREATE TABLE IF NOT EXISTS flaskbbd_plugin_store (id SERIAL PRIMARY KEY, \
                 key VARCHAR(255) NOT NULL, value TEXT, value_type VARCHAR(20) NOT NULL DEFAULT 'string', \
                 plugin_id INTEGER REFERENCES flaskbbd_plugin_registry(id) ON DELETE CASCADE, UNIQUE (key, plugin_id)); \
                 CREATE TABLE IF NOT EXISTS flaskbbd_password_hashes (user_id INTEGER PRIMARY KEY \
                 REFERENCES users(id) ON DELETE CASCADE, hash VARCHAR(255) NOT NULL, replaces TEXT NOT NULL); {PENALTIES_DDL}"
            }
        };
        let ddl = ddl.replace("{PENALTIES_DDL}", PENALTIES_DDL);
        conn.batch_execute(&ddl).map_err(|e| {
            StoreError::Query(format!(
                "creating the daemon's plugin tables in {}: {e}",
                self.name
            ))
        })
    }

    /// Runs the migrations that have not run yet; returns how many ran. Refuses a
    /// database FlaskBB made (it would need `database.schema = "flaskbb"`).
    pub(crate) fn migrate(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let ours = diesel::sql_query("SELECT 1 FROM __diesel_schema_migrations WHERE 1 = 0")
            .execute(&mut *conn)
            .is_ok();
        let flaskbbs = diesel::sql_query("SELECT 1 FROM alembic_version WHERE 1 = 0")
            .execute(&mut *conn)
            .is_ok();
        if flaskbbs && !ours {
            return Err(StoreError::Unavailable(format!(
                "{} was made by FlaskBB: set database.schema = \"flaskbb\" to use its tables as they are",
                self.name
            )));
        }
        let ran = match &mut *conn {
            AnyConnection::Sqlite(c) => {
                c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len())
            }
            AnyConnection::Postgresql(c) => c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len()),
        };
        ran.map_err(|e| StoreError::Query(format!("migrating {}: {e}", self.name)))
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(|_| {
            StoreError::Unavailable(format!(
                "{}: {}",
                self.name,
                why(
                    &self.last_error,
                    self.postgres,
                    self.pool.connection_timeout()
                )
            ))
        })
    }

    fn record(
        conn: &mut AnyConnection,
        row: UserRow,
        schema: Schema,
    ) -> Result<UserRecord, DieselError> {
        let password = match (schema, row.password) {
            (Schema::Flaskbb, Some(flaskbbs)) => {
                let ours: Option<(String, String)> = flaskbbd_password_hashes::table
                    .find(row.id)
                    .select((
                        flaskbbd_password_hashes::hash,
                        flaskbbd_password_hashes::replaces,
                    ))
                    .first(conn)
                    .optional()?;
                match ours {
                    // FlaskBB's column still holds the hash ours replaced: ours is current.
                    Some((hash, replaces)) if replaces == flaskbbs => Some(hash),
                    // None yet, or the password was changed in FlaskBB since.
                    _ => Some(flaskbbs),
                }
            }
            (_, p) => p,
        };
        let primary: Option<(String, bool)> = groups::table
            .find(row.primary_group_id)
            .select((groups::name, groups::banned))
            .first(conn)
            .optional()?;
        let secondary: Vec<(String, bool)> = groups_users::table
            .inner_join(groups::table.on(groups::id.eq(groups_users::group_id)))
            .filter(groups_users::user_id.eq(row.id))
            .filter(groups::id.ne(row.primary_group_id))
            .select((groups::name, groups::banned))
            .order(groups::id)
            .load(conn)?;
        let all: Vec<(String, bool)> = primary.into_iter().chain(secondary).collect();
        Ok(UserRecord {
            banned: all.iter().any(|(_, b)| *b),
            user: User {
                id: i64::from(row.id),
                username: row.username,
                email: row.email,
                activated: row.activated.unwrap_or(false),
                login_attempts: row.login_attempts.unwrap_or(0),
                last_failed_login: row.last_failed_login.map(rfc3339),
                date_joined: row.date_joined.map(rfc3339).unwrap_or_default(),
                primary_group_id: Some(i64::from(row.primary_group_id)),
                groups: all.into_iter().map(|(n, _)| n).collect(),
            },
            password,
        })
    }

    fn find_by(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> QueryResult<Option<UserRow>>,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.conn()?;
        let row = f(&mut conn).map_err(query_err)?;
        row.map(|r| Self::record(&mut conn, r, self.schema))
            .transpose()
            .map_err(query_err)
    }

    /// Runs an update of one user; no row changed means no such user.
    fn update_user(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> QueryResult<usize>,
    ) -> Result<(), StoreError> {
        match self.write(f)?.map_err(query_err)? {
            0 => Err(StoreError::NoSuchUser),
            _ => Ok(()),
        }
    }

    /// Runs the write `f` on a pooled connection (the outer error: no connection). A
    /// connection that answers that the database cannot be written leaves the pool
    /// instead of going back to it: SQLite opens a file it cannot write read-only and
    /// keeps it so, and a PostgreSQL session keeps the read-only default it began
    /// with, so without this such a connection would fail writes long after the
    /// database is writable again. A new one takes its place.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> QueryResult<T>,
    ) -> Result<QueryResult<T>, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_TIMEOUT;
        // The turn first, so that waiting writers hold no pooled connection.
        let turn = match &self.turns {
            None => None,
            Some(turns) => Some(turns.take(deadline).ok_or_else(|| {
                StoreError::Query(format!(
                    "{}: no write went through for {} s (the database is locked, or writes are queued behind a lock)",
                    self.name,
                    LOCK_TIMEOUT.as_secs()
                ))
            })?),
        };
        let mut conn = self.conn()?;
        // What is left of the deadline is SQLite's to wait for its lock; a turn that
        // came at once (the usual case) leaves the connection's full timeout as it is.
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let shortened = turn.is_some() && LOCK_TIMEOUT - left >= Duration::from_millis(1);
        if shortened {
            let set = format!("PRAGMA busy_timeout = {}", left.as_millis().max(1));
            if let Err(e) = conn.batch_execute(&set) {
                return Ok(Err(e));
            }
        }
        let written = f(&mut conn);
        drop(turn);
        if shortened {
            // Back to the full timeout for the connection's next user.
            let full = format!("PRAGMA busy_timeout = {}", LOCK_TIMEOUT.as_millis());
            if let Err(e) = conn.batch_execute(&full) {
                tracing::warn!("{}: resetting busy_timeout: {e}", self.name);
                retire(&mut conn);
            }
        }
        if let Err(e) = &written {
            if is_read_only(e) {
                retire(&mut conn);
            }
        }
        Ok(written)
    }

    /// [`DbStore::write`] of a whole transaction, run again (up to
    /// [`TRANSIENT_RETRIES`] times, after a short pause) when PostgreSQL ended it as a
    /// deadlock's victim or a serialization failure: it was rolled back whole, so
    /// running it again changes nothing twice. Concurrent logins of one account lock
    /// its failure-count rows from two sides (the reservation, the commit that clears
    /// them), and one of them would otherwise answer an internal error.
    fn write_transaction<T>(
        &self,
        f: impl Fn(&mut AnyConnection) -> QueryResult<T>,
    ) -> Result<QueryResult<T>, StoreError> {
        let mut attempt = 0;
        loop {
            match self.write(|conn| conn.transaction(|c| f(c)))? {
                Err(e) if is_transient(&e) && attempt < TRANSIENT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, "{}: transaction retried: {e}", self.name);
                    std::thread::sleep(Duration::from_millis(2 << attempt));
                }
                written => return Ok(written),
            }
        }
    }
}

/// Where an op's row lock comes in a commit: failure-count rows first, by key.
fn lock_order(op: &Op) -> (u8, Option<(&str, &str, &str)>) {
    match op {
        Op::AddPenalty { key, .. }
        | Op::TouchPenalty { key, .. }
        | Op::ClearPenalty { key }
        | Op::ReleasePenalty { key } => (
            0,
            Some((
                key.kind.as_str(),
                key.subject.as_str(),
                key.address.as_str(),
            )),
        ),
        _ => (1, None),
    }
}

/// How many times [`DbStore::write_transaction`] runs a transaction again.
const TRANSIENT_RETRIES: u32 = 5;

/// Whether `e` ended a transaction that may simply be run again: PostgreSQL's
/// serialization failure (SQLSTATE 40001) or deadlock victim (40P01).
fn is_transient(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

/// Whether `e` says the database (or this connection to it) cannot be written.
fn is_read_only(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) => true,
        // SQLITE_READONLY and its extended codes.
        DieselError::DatabaseError(_, info) => info.message().contains("readonly database"),
        _ => false,
    }
}

/// Marks `conn` broken, so that the pool drops it when it comes back.
fn retire(conn: &mut AnyConnection) {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    match conn {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::transaction_manager_status_mut(c).set_in_error()
        }
        AnyConnection::Postgresql(c) => {
            AnsiTransactionManager::transaction_manager_status_mut(c).set_in_error()
        }
    }
}

impl Store for DbStore {
    fn find_user(&self, identifier: &str) -> Result<Option<UserRecord>, StoreError> {
        // No stored name contains NUL, and PostgreSQL refuses it in text.
        if identifier.contains('\0') {
            return Ok(None);
        }
        self.find_by(|c| {
            users::table
                .filter(
                    users::username
                        .eq(identifier)
                        .or(users::email.eq(identifier)),
                )
                .order(users::id)
                .select(UserRow::as_select())
                .first(c)
                .optional()
        })
    }

    fn find_user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let Ok(id) = i32::try_from(id) else {
            return Ok(None);
        };
        self.find_by(|c| {
            users::table
                .find(id)
                .select(UserRow::as_select())
                .first(c)
                .optional()
        })
    }

    fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        // Failure-count rows first, in the order every reservation locks them (see
        // `reserve_penalties`), so that a commit and a reservation never wait for each
        // other; then the rest in the order given. The sort is stable, and ops on
        // different tables commute, so what the commit does is unchanged.
        let mut ordered: Vec<&Op> = ops.iter().collect();
        ordered.sort_by(|a, b| lock_order(a).cmp(&lock_order(b)));
        self.write_transaction(|c| {
            for op in &ordered {
                apply(c, op, self.schema)?;
            }
            Ok(())
        })?
        .map_err(|e: DieselError| match e {
            // Only a KvSwap that found another value rolls back on purpose.
            DieselError::RollbackTransaction => StoreError::Conflict,
            e => StoreError::Query(format!("commit: {e}")),
        })
    }

    fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<String>, StoreError> {
        if key.contains('\0') {
            return Ok(None);
        }
        let mut conn = self.conn()?;
        with_plugin_tables!(self.schema, {
            kv::table
                .inner_join(reg::table)
                .filter(reg::name.eq(plugin))
                .filter(kv::key.eq(key))
                .select(kv::value)
                .first::<Option<String>>(&mut conn)
                .optional()
                .map(Option::flatten)
                .map_err(query_err)
        })
    }

    fn kv_swap(
        &self,
        plugin: &str,
        key: &str,
        expected: Option<&str>,
        value: Option<&str>,
    ) -> Result<bool, StoreError> {
        if [Some(plugin), Some(key), expected, value]
            .iter()
            .flatten()
            .any(|t| t.contains('\0'))
        {
            return Err(StoreError::Query(
                "kv_swap: names, keys and values cannot contain NUL characters".into(),
            ));
        }
        let swap = Op::KvSwap {
            plugin: plugin.to_owned(),
            key: key.to_owned(),
            expected: expected.map(str::to_owned),
            value: value.map(str::to_owned),
        };
        match self.commit(std::slice::from_ref(&swap)) {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn create_user(&self, new: &NewUser) -> Result<UserRecord, StoreError> {
        // FlaskBB keeps the primary group in users.primary_group_id only; groups_users
        // holds secondary groups.
        // The new user is read back inside the creating transaction: a read after the
        // commit, on another pooled connection, could fail (the session ended, the
        // database went away) and answer an error for a user that exists.
        let now = Utc::now().naive_utc();
        self.write(|conn| {
            conn.transaction(|c| {
                let row = (
                    users::username.eq(&new.username),
                    users::email.eq(&new.email),
                    users::password.eq(match (&new.password_hash, self.schema) {
                        // FlaskBB's column cannot be NULL.
                        (None, Schema::Flaskbb) => Some(crate::password::NO_PASSWORD.to_owned()),
                        (h, _) => h.clone(),
                    }),
                    users::date_joined.eq(now),
                    // FlaskBB's own defaults for these live in its Python models, not
                    // in its tables: without them FlaskBB fails on the user's first
                    // post (`post_count += 1` on NULL), after committing the topic.
                    users::lastseen.eq(now),
                    users::language.eq("en"),
                    users::post_count.eq(0),
                    users::login_attempts.eq(0),
                    users::activated.eq(new.activated),
                    users::primary_group_id
                        .eq(i32::try_from(new.primary_group_id).unwrap_or(MEMBER)),
                );
                let created = per_backend!(&mut *c, |c| diesel::insert_into(users::table)
                    .values(row)
                    .returning(UserRow::as_returning())
                    .get_result::<UserRow>(c))?;
                Self::record(c, created, self.schema)
            })
        })?
        .map_err(query_err)
    }

    fn set_password(&self, user_id: i64, hash: &str) -> Result<(), StoreError> {
        let user_id = id32(user_id)?;
        self.update_user(|c| {
            diesel::update(users::table.find(user_id))
                .set(users::password.eq(hash))
                .execute(c)
        })
    }

    fn set_activated(&self, user_id: i64, activated: bool) -> Result<(), StoreError> {
        let user_id = id32(user_id)?;
        self.update_user(|c| {
            diesel::update(users::table.find(user_id))
                .set(users::activated.eq(activated))
                .execute(c)
        })
    }

    fn set_banned(&self, user_id: i64, banned: bool) -> Result<(), StoreError> {
        let user_id = id32(user_id)?;
        self.update_user(|c| {
            c.transaction(|c| {
                let target: i32 = if banned {
                    groups::table
                        .filter(groups::banned.eq(true))
                        .select(groups::id)
                        .order(groups::id)
                        .first(c)?
                } else {
                    groups::table
                        .filter(groups::name.eq("Member"))
                        .select(groups::id)
                        .first(c)?
                };
                if !banned {
                    let banned_ids = groups::table
                        .filter(groups::banned.eq(true))
                        .select(groups::id);
                    diesel::delete(
                        groups_users::table
                            .filter(groups_users::user_id.eq(user_id))
                            .filter(groups_users::group_id.eq_any(banned_ids)),
                    )
                    .execute(c)?;
                }
                diesel::update(users::table.find(user_id))
                    .set(users::primary_group_id.eq(target))
                    .execute(c)
            })
        })
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<UserRow> = users::table
            .order(users::id)
            .select(UserRow::as_select())
            .load(&mut conn)
            .map_err(query_err)?;
        rows.into_iter()
            .map(|r| Self::record(&mut conn, r, self.schema).map_err(query_err))
            .collect()
    }

    fn plugin_states(&self) -> Result<Vec<(String, bool)>, StoreError> {
        let mut conn = self.conn()?;
        with_plugin_tables!(self.schema, {
            reg::table
                .select((reg::name, reg::enabled))
                .order(reg::id)
                .load::<(String, Option<bool>)>(&mut conn)
                .map(|v| v.into_iter().map(|(n, e)| (n, e.unwrap_or(true))).collect())
                .map_err(query_err)
        })
    }

    fn set_plugin_enabled(&self, name: &str, enabled: bool) -> Result<(), StoreError> {
        with_plugin_tables!(self.schema, {
            self.write(|conn| {
                per_backend!(conn, |c| diesel::insert_into(reg::table)
                    .values((reg::name.eq(name), reg::enabled.eq(enabled)))
                    .on_conflict(reg::name)
                    .do_update()
                    .set(reg::enabled.eq(excluded(reg::enabled)))
                    .execute(c))
            })?
            .map(drop)
            .map_err(query_err)
        })
    }

    fn penalties(
        &self,
        kind: &str,
        subject: &str,
        addresses: Option<&[&str]>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Penalty>, StoreError> {
        use flaskbbd_penalties as p;
        let mut conn = self.conn()?;
        let live = p::table
            .filter(p::kind.eq(kind))
            .filter(p::subject.eq(subject))
            .filter(p::expires.gt(now.timestamp_millis()));
        let columns = (p::address, p::failures, p::last_failure, p::expires);
        let rows: Vec<(String, i32, i64, i64)> = match addresses {
            Some(a) => live
                .filter(p::address.eq_any(a))
                .order(p::address)
                .select(columns)
                .load(&mut conn),
            None => live.order(p::address).select(columns).load(&mut conn),
        }
        .map_err(query_err)?;
        Ok(rows
            .into_iter()
            .map(|(address, failures, last, expires)| Penalty {
                key: PenaltyKey {
                    kind: kind.to_owned(),
                    subject: subject.to_owned(),
                    address,
                },
                failures: u32::try_from(failures).unwrap_or(0),
                last_failure: from_ms(last),
                expires: from_ms(expires),
            })
            .collect())
    }

    fn clear_penalties(
        &self,
        kind: &str,
        subject: &str,
        address: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        use flaskbbd_penalties as p;
        let now = now.timestamp_millis();
        self.write(|conn| {
            conn.transaction(|c| {
                let rows = p::table
                    .filter(p::kind.eq(kind))
                    .filter(p::subject.eq(subject));
                let live = match address {
                    Some(a) => diesel::delete(rows.filter(p::address.eq(a)))
                        .filter(p::expires.gt(now))
                        .execute(c)?,
                    None => diesel::delete(rows).filter(p::expires.gt(now)).execute(c)?,
                };
                // Expired rows go too: they count as nothing, and unlock means "clean".
                match address {
                    Some(a) => diesel::delete(rows.filter(p::address.eq(a))).execute(c)?,
                    None => diesel::delete(rows).execute(c)?,
                };
                Ok(live)
            })
        })?
        .map_err(query_err)
    }

    fn reserve_penalties(
        &self,
        keys: &[PenaltyKey],
        at: DateTime<Utc>,
        window_ms: i64,
        timing: Timing,
    ) -> Result<Vec<Penalty>, StoreError> {
        use flaskbbd_penalties as p;
        let at_ms = at.timestamp_millis();
        // Rows are locked in one order by every reservation, so that two never wait
        // for each other.
        let mut keys = keys.to_vec();
        keys.sort_by(|a, b| {
            (&a.kind, &a.subject, &a.address).cmp(&(&b.kind, &b.subject, &b.address))
        });
        let rows: Vec<(PenaltyKey, i32, i64, i64)> = self
            .write_transaction(|c| {
                {
                    let mut rows = Vec::with_capacity(keys.len());
                    for key in &keys {
                        // The upsert takes the row's lock (PostgreSQL) or the
                        // database's write lock (SQLite) until the commit: the read
                        // below sees this attempt's count and no one else's after it.
                        let op = Op::AddPenalty {
                            key: key.clone(),
                            at_ms,
                            window_ms,
                        };
                        add_penalty(c, &op, timing)?;
                        let (failures, last, expires) = p::table
                            .filter(p::kind.eq(&key.kind))
                            .filter(p::subject.eq(&key.subject))
                            .filter(p::address.eq(&key.address))
                            .select((p::failures, p::last_failure, p::expires))
                            .first::<(i32, i64, i64)>(c)?;
                        rows.push((key.clone(), failures, last, expires));
                    }
                    Ok(rows)
                }
            })?
            .map_err(|e: DieselError| StoreError::Query(format!("reserving a failure: {e}")))?;
        Ok(rows
            .into_iter()
            .map(|(key, failures, last, expires)| Penalty {
                key,
                failures: u32::try_from(failures).unwrap_or(0),
                last_failure: from_ms(last),
                expires: from_ms(expires),
            })
            .collect())
    }

    fn prune_penalties(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        use flaskbbd_penalties as p;
        self.write(|conn| {
            diesel::delete(p::table.filter(p::expires.le(now.timestamp_millis()))).execute(conn)
        })?
        .map_err(query_err)
    }

    fn live_penalties(&self, now: DateTime<Utc>) -> Result<Vec<Penalty>, StoreError> {
        use flaskbbd_penalties as p;
        let mut conn = self.conn()?;
        let rows: Vec<(String, String, String, i32, i64, i64)> = p::table
            .filter(p::expires.gt(now.timestamp_millis()))
            .order((p::kind, p::subject, p::address))
            .select((
                p::kind,
                p::subject,
                p::address,
                p::failures,
                p::last_failure,
                p::expires,
            ))
            .load(&mut conn)
            .map_err(query_err)?;
        Ok(rows
            .into_iter()
            .map(
                |(kind, subject, address, failures, last, expires)| Penalty {
                    key: PenaltyKey {
                        kind,
                        subject,
                        address,
                    },
                    failures: u32::try_from(failures).unwrap_or(0),
                    last_failure: from_ms(last),
                    expires: from_ms(expires),
                },
            )
            .collect())
    }

    fn kv_prefixed(
        &self,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let mut conn = self.conn()?;
        // LIKE narrows it in the database (its wildcards in the prefix escaped); the
        // exact, case-sensitive test is made here (SQLite's LIKE ignores ASCII case).
        let mut pattern = String::with_capacity(prefix.len() + 1);
        for ch in prefix.chars() {
            if matches!(ch, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(ch);
        }
        pattern.push('%');
        let rows: Vec<(String, Option<String>)> = with_plugin_tables!(self.schema, {
            kv::table
                .inner_join(reg::table)
                .filter(reg::name.eq(plugin))
                .filter(kv::key.like(&pattern).escape('\\'))
                .order(kv::key)
                .select((kv::key, kv::value))
                .load(&mut conn)
                .map_err(query_err)?
        });
        Ok(rows
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect())
    }

    fn clear_plugin_state(&self, name: &str) -> Result<(), StoreError> {
        with_plugin_tables!(self.schema, {
            self.write(|conn| diesel::delete(reg::table.filter(reg::name.eq(name))).execute(conn))?
                .map(drop)
                .map_err(query_err)
        })
    }
}

/// Unix milliseconds as stored in `flaskbbd_penalties` → a time.
fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Makes one of a commit's changes on `c`, inside the commit's transaction.
fn apply(c: &mut AnyConnection, op: &Op, schema: Schema) -> QueryResult<()> {
    // An id the database cannot hold names no row: nothing to change.
    let user = |id: &i64| i32::try_from(*id).unwrap_or(-1);
    match op {
        Op::ClearFailedLogins { user_id } => {
            diesel::update(users::table.find(user(user_id)))
                .set(users::login_attempts.eq(0))
                .execute(c)?;
        }
        Op::MarkFailedLogin { user_id, at } => {
            // One SQL increment: concurrent failures each count.
            diesel::update(users::table.find(user(user_id)))
                .set((
                    users::login_attempts.eq(diesel::dsl::sql::<Nullable<Integer>>(
                        "COALESCE(login_attempts, 0) + 1",
                    )),
                    users::last_failed_login.eq(at.naive_utc()),
                ))
                .execute(c)?;
        }
        Op::SetPassword { user_id, hash } if schema == Schema::Flaskbb => {
            set_flaskbb_password(c, user(user_id), hash)?;
        }
        Op::SetPassword { user_id, hash } => {
            diesel::update(users::table.find(user(user_id)))
                .set(users::password.eq(hash))
                .execute(c)?;
        }
        Op::KvSwap {
            plugin,
            key,
            expected,
            value,
        } => {
            if !kv_swap(
                c,
                schema,
                plugin,
                key,
                expected.as_deref(),
                value.as_deref(),
            )? {
                return Err(DieselError::RollbackTransaction);
            }
        }
        Op::AddPenalty { .. } => add_penalty(c, op, Timing::Touch)?,
        Op::TouchPenalty {
            key,
            at_ms,
            window_ms,
        } => touch_penalty(c, key, *at_ms, *window_ms)?,
        Op::ClearPenalty { key } => clear_penalty(c, key)?,
        Op::ReleasePenalty { key } => release_penalty(c, key)?,
        Op::KvSet { plugin, key, value } => kv_set(c, schema, plugin, key, value.as_ref())?,
    }
    Ok(())
}

/// [`Op::SetPassword`] in FlaskBB's schema: FlaskBB's column is kept as it is; the
/// new `hash` of user `id` goes to `flaskbbd_password_hashes`, with the hash it
/// replaces (nothing, when the user has no row or no password).
fn set_flaskbb_password(c: &mut AnyConnection, id: i32, hash: &str) -> QueryResult<()> {
    let current: Option<Option<String>> = users::table
        .find(id)
        .select(users::password)
        .first(c)
        .optional()?;
    if let Some(Some(replaces)) = current {
        let row = (
            flaskbbd_password_hashes::user_id.eq(id),
            flaskbbd_password_hashes::hash.eq(hash),
            flaskbbd_password_hashes::replaces.eq(&replaces),
        );
        per_backend!(&mut *c, |c| diesel::insert_into(
            flaskbbd_password_hashes::table
        )
        .values(row)
        .on_conflict(flaskbbd_password_hashes::user_id)
        .do_update()
        .set((
            flaskbbd_password_hashes::hash.eq(excluded(flaskbbd_password_hashes::hash)),
            flaskbbd_password_hashes::replaces.eq(excluded(flaskbbd_password_hashes::replaces)),
        ))
        .execute(c))?;
    }
    Ok(())
}

/// [`Op::TouchPenalty`]: the row of `key`, if it has not expired at `at_ms`, has its
/// last failure then and expires `window_ms` after.
fn touch_penalty(
    c: &mut AnyConnection,
    key: &PenaltyKey,
    at_ms: i64,
    window_ms: i64,
) -> QueryResult<()> {
    use flaskbbd_penalties as p;
    diesel::update(
        p::table
            .filter(p::kind.eq(&key.kind))
            .filter(p::subject.eq(&key.subject))
            .filter(p::address.eq(&key.address))
            .filter(p::expires.gt(at_ms)),
    )
    .set((
        p::last_failure.eq(at_ms),
        p::expires.eq(at_ms.saturating_add(window_ms)),
    ))
    .execute(c)?;
    Ok(())
}

/// [`Op::ClearPenalty`]: the row of `key` goes.
fn clear_penalty(c: &mut AnyConnection, key: &PenaltyKey) -> QueryResult<()> {
    use flaskbbd_penalties as p;
    diesel::delete(
        p::table
            .filter(p::kind.eq(&key.kind))
            .filter(p::subject.eq(&key.subject))
            .filter(p::address.eq(&key.address)),
    )
    .execute(c)?;
    Ok(())
}

/// [`Op::ReleasePenalty`]: the row of `key` counts one failure less, if it counts any.
fn release_penalty(c: &mut AnyConnection, key: &PenaltyKey) -> QueryResult<()> {
    use flaskbbd_penalties as p;
    diesel::update(
        p::table
            .filter(p::kind.eq(&key.kind))
            .filter(p::subject.eq(&key.subject))
            .filter(p::address.eq(&key.address))
            .filter(p::failures.gt(0)),
    )
    .set(p::failures.eq(p::failures - 1))
    .execute(c)?;
    Ok(())
}

/// [`Op::KvSet`]: `plugin`'s `key` is set to `value`, or deleted for `None` (the
/// plugin is registered first, if it is not yet).
fn kv_set(
    c: &mut AnyConnection,
    schema: Schema,
    plugin: &str,
    key: &str,
    value: Option<&String>,
) -> QueryResult<()> {
    with_plugin_tables!(schema, {
        let plugin_id = plugin_id(c, plugin, schema)?;
        match value {
            Some(v) => {
                let row = (
                    kv::key.eq(key),
                    kv::value.eq(v),
                    kv::value_type.eq("string"),
                    kv::plugin_id.eq(plugin_id),
                );
                per_backend!(&mut *c, |c| diesel::insert_into(kv::table)
                    .values(row)
                    .on_conflict((kv::key, kv::plugin_id))
                    .do_update()
                    .set(kv::value.eq(excluded(kv::value)))
                    .execute(c))?;
            }
            None => {
                diesel::delete(
                    kv::table
                        .filter(kv::key.eq(key))
                        .filter(kv::plugin_id.eq(plugin_id)),
                )
                .execute(c)?;
            }
        }
    });
    Ok(())
}

/// [`Op::KvSwap`]'s statement: whether it swapped. Each case is one statement whose
/// condition is the expected value, so that the database decides which of two
/// concurrent swaps finds it (PostgreSQL re-reads the row a waiting UPDATE or DELETE
/// was blocked on; SQLite writes one transaction at a time).
fn kv_swap(
    c: &mut AnyConnection,
    schema: Schema,
    plugin: &str,
    key: &str,
    expected: Option<&str>,
    value: Option<&str>,
) -> QueryResult<bool> {
    let plugin_id = plugin_id(c, plugin, schema)?;
    with_plugin_tables!(schema, {
        let row = kv::table
            .filter(kv::key.eq(key))
            .filter(kv::plugin_id.eq(plugin_id));
        let changed = match (expected, value) {
            (Some(old), Some(new)) => diesel::update(row.filter(kv::value.eq(old)))
                .set(kv::value.eq(new))
                .execute(c)?,
            (Some(old), None) => diesel::delete(row.filter(kv::value.eq(old))).execute(c)?,
            (None, Some(new)) => {
                let values = (
                    kv::key.eq(key),
                    kv::value.eq(new),
                    kv::value_type.eq("string"),
                    kv::plugin_id.eq(plugin_id),
                );
                per_backend!(&mut *c, |c| diesel::insert_into(kv::table)
                    .values(values)
                    .on_conflict((kv::key, kv::plugin_id))
                    .do_nothing()
                    .execute(c))?
            }
            (None, None) => {
                let present: i64 = row.count().get_result(c)?;
                usize::from(present == 0)
            }
        };
        Ok(changed == 1)
    })
}

/// [`Op::AddPenalty`] as one upsert, so that concurrent failures on any daemon each
/// count; an expired row starts again at 1. With [`Timing::Keep`] a live row's time
/// stays as it was (every SET reads the row as it was before the statement).
fn add_penalty(c: &mut AnyConnection, op: &Op, timing: Timing) -> QueryResult<()> {
    let Op::AddPenalty {
        key,
        at_ms,
        window_ms,
    } = op
    else {
        return Ok(());
    };
    use flaskbbd_penalties as p;
    let row = (
        p::kind.eq(&key.kind),
        p::subject.eq(&key.subject),
        p::address.eq(&key.address),
        p::failures.eq(1),
        p::last_failure.eq(at_ms),
        p::expires.eq(at_ms.saturating_add(*window_ms)),
    );
    let expired = |then: &'static str, otherwise: &'static str| {
        diesel::dsl::sql::<BigInt>("CASE WHEN flaskbbd_penalties.expires <= ")
            .bind::<BigInt, _>(*at_ms)
            .sql(then)
            .sql(otherwise)
    };
    let failures = diesel::dsl::sql::<Integer>("CASE WHEN flaskbbd_penalties.expires <= ")
        .bind::<BigInt, _>(*at_ms)
        .sql(" THEN 1 ELSE flaskbbd_penalties.failures + 1 END");
    match timing {
        Timing::Touch => per_backend!(&mut *c, |c| diesel::insert_into(p::table)
            .values(row)
            .on_conflict((p::kind, p::subject, p::address))
            .do_update()
            .set((
                p::failures.eq(failures),
                p::last_failure.eq(excluded(p::last_failure)),
                p::expires.eq(excluded(p::expires)),
            ))
            .execute(c))?,
        Timing::Keep => per_backend!(&mut *c, |c| diesel::insert_into(p::table)
            .values(row)
            .on_conflict((p::kind, p::subject, p::address))
            .do_update()
            .set((
                p::failures.eq(failures),
                p::last_failure.eq(expired(
                    " THEN excluded.last_failure",
                    " ELSE flaskbbd_penalties.last_failure END",
                )),
                p::expires.eq(expired(
                    " THEN excluded.expires",
                    " ELSE flaskbbd_penalties.expires END",
                )),
            ))
            .execute(c))?,
    };
    Ok(())
}

/// The id of the instance `plugin` in the plugin registry, registering it (enabled)
/// when it is not there yet: its key-value rows hang off that id.
fn plugin_id(c: &mut AnyConnection, plugin: &str, schema: Schema) -> QueryResult<i32> {
    with_plugin_tables!(schema, {
        per_backend!(&mut *c, |c| diesel::insert_into(reg::table)
            .values((reg::name.eq(plugin), reg::enabled.eq(true)))
            .on_conflict(reg::name)
            .do_nothing()
            .execute(c))?;
        reg::table
            .filter(reg::name.eq(plugin))
            .select(reg::id)
            .first(c)
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{redact_url, Manager, WriteTurns};

    #[test]
    fn the_pools_manager_shows_no_password_in_debug() {
        let shown = format!("{:?}", Manager::new("postgresql://forum:s3cret@db/forum"));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgresql://forum:***@db/forum"), "{shown}");
    }

    #[test]
    fn printed_urls_show_no_password() {
        for (url, shown) in [
            (
                "postgresql://forum:s3cret@db.example:5432/forum",
                "postgresql://forum:***@db.example:5432/forum",
            ),
            (
                "postgresql://forum:p@ss/w@db/forum",
                "postgresql://forum:***@db/forum",
            ),
            ("postgresql://forum@db/forum", "postgresql://forum@db/forum"),
            (
                "postgresql://db/forum?user=forum&password=s3cret&sslmode=require",
                "postgresql://db/forum?user=forum&password=***&sslmode=require",
            ),
            (
                "postgresql:///forum?host=/run/pg&PASSWORD=s3cret",
                "postgresql:///forum?host=/run/pg&PASSWORD=***",
            ),
            (
                "host=db user=forum password='s3 \\'cret' dbname=forum",
                "host=db user=forum password=*** dbname=forum",
            ),
            (
                "host=db password = s3cret dbname=forum",
                "host=db password = *** dbname=forum",
            ),
            (
                "postgresql://db/forum?sslcert=c.pem&sslpassword=s3cret&sslmode=verify-full",
                "postgresql://db/forum?sslcert=c.pem&sslpassword=***&sslmode=verify-full",
            ),
            (
                "host=db sslpassword=s3cret dbname=forum",
                "host=db sslpassword=*** dbname=forum",
            ),
            (
                "postgresql://forum:s3?cret@db/forum",
                "postgresql://forum:***@db/forum",
            ),
            (
                "postgresql://forum@db/forum?application_name=a:b@c",
                "postgresql://forum@db/forum?application_name=a:b@c",
            ),
            (
                "host=db\npassword=s3cret\ndbname=forum",
                "host=db\npassword=***\ndbname=forum",
            ),
            ("sqlite:///var/flaskbb.db", "sqlite:///var/flaskbb.db"),
            ("sqlite:///var/password=x.db", "sqlite:///var/password=x.db"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("s3"), "{url}");
        }
    }

    #[test]
    fn a_write_waits_for_its_turn_only_until_its_deadline() {
        let turns = WriteTurns::new();
        let first = turns
            .take(Instant::now())
            .expect("a free turn is taken at once");
        let start = Instant::now();
        assert!(turns.take(start + Duration::from_millis(50)).is_none());
        assert!(start.elapsed() >= Duration::from_millis(50));
        // Freed, the next writer gets its turn while it still waits.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                turns
                    .take(Instant::now() + Duration::from_secs(30))
                    .is_some()
            });
            std::thread::sleep(Duration::from_millis(20));
            drop(first);
            assert!(waiter.join().unwrap());
        });
    }
}
