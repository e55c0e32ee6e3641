//! The user and plugin store: one seam ([`Store`]) over FlaskBB's tables, on SQLite
//! or PostgreSQL ([`db`]).
//!
//! Reads happen as a request needs them; writes a request makes are collected as
//! [`Op`]s and applied by [`Store::commit`] in one transaction at the request's end
//! (FlaskBB's one commit per request). Increments are SQL increments, never
//! read-modify-write, so concurrent requests lose no count.

pub(crate) mod db;
pub(crate) mod schema;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::proto::User;

/// A store failure, phrased for logs (never with a secret or a hash).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StoreError {
    /// The database could not be reached or opened.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("database error: {0}")]
    Query(String),
    /// The username or email is taken.
    #[error("a user with that username or email already exists")]
    UserExists,
    /// The user does not exist.
    #[error("no such user")]
    NoSuchUser,
    /// An [`Op::KvSwap`] found another value than it expected: the commit changed
    /// nothing.
    #[error("a value changed under this request; nothing was written")]
    Conflict,
}

/// A user with what only the daemon sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserRecord {
    /// The user as the wire shows it.
    pub user: User,
    /// The password hash (bcrypt, or werkzeug's in a FlaskBB database).
    pub password: Option<String>,
    /// Whether any of the user's groups is a banned group.
    pub banned: bool,
}

/// One change a request makes, applied at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// FlaskBB's ClearFailedLogins: `login_attempts = 0`.
    ClearFailedLogins { user_id: i64 },
    /// FlaskBB's MarkFailedLogin: `login_attempts + 1`, `last_failed_login = at`.
    MarkFailedLogin { user_id: i64, at: DateTime<Utc> },
    /// Replace the user's password hash (a rehash on login).
    SetPassword { user_id: i64, hash: String },
    /// A plugin's key-value store: set, or delete with `None`.
    KvSet {
        plugin: String,
        key: String,
        value: Option<String>,
    },
    /// One more failure for a penalty row, in one upsert: the count restarts at 1
    /// when the row has expired, and the row then expires `window_ms` after `at_ms`.
    AddPenalty {
        key: PenaltyKey,
        at_ms: i64,
        window_ms: i64,
    },
    /// Forgets a penalty row.
    ClearPenalty { key: PenaltyKey },
    /// Replaces a plugin instance's value for `key` only if it is still `expected`
    /// (`None`: absent); otherwise the whole commit changes nothing and answers
    /// [`StoreError::Conflict`] (see [`Store::kv_swap`]).
    KvSwap {
        plugin: String,
        key: String,
        expected: Option<String>,
        value: Option<String>,
    },
    /// Restarts a live row's window at `at_ms` (`last_failure = at_ms`, expiring
    /// `window_ms` after it) without counting: what a failure reserved with
    /// [`Timing::Keep`] does once it turns out a failure.
    TouchPenalty {
        key: PenaltyKey,
        at_ms: i64,
        window_ms: i64,
    },
    /// Gives back one failure a reservation ([`Store::reserve_penalties`]) counted
    /// for an attempt that succeeded (never below zero).
    ReleasePenalty { key: PenaltyKey },
}

/// What a reservation ([`Store::reserve_penalties`]) does to a row's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timing {
    /// The reservation is the failure's time: `last_failure` and `expires` move to it.
    Touch,
    /// The row's time stays (unless the row is new or expired, which starts it at
    /// the reservation): an attempt that may turn out no failure must not keep old
    /// failures alive. [`Op::TouchPenalty`] moves it once it does turn out one.
    Keep,
}

/// Names one row of failure counts: whose it is, what it counts, and for which
/// client address (`""`: from anywhere).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PenaltyKey {
    /// `"lockout"`, or `"plugin:<instance>"`.
    pub kind: String,
    /// What is counted: an account (`user:<id>`, `name:<identifier>`), a plugin's key.
    pub subject: String,
    /// The client address (an IPv6 /64) it is counted for, or `""` for all.
    pub address: String,
}

/// Longest `subject` a penalty row holds (the column is `VARCHAR(255)`).
pub(crate) const MAX_PENALTY_SUBJECT: usize = 255;

impl PenaltyKey {
    /// A key whose subject and address fit their columns: NUL (which PostgreSQL
    /// refuses in text) becomes U+FFFD, and a subject is cut to
    /// [`MAX_PENALTY_SUBJECT`] bytes, an address to 64, at a character boundary.
    pub(crate) fn new(kind: &str, subject: &str, address: &str) -> PenaltyKey {
        fn fit(s: &str, max: usize) -> String {
            let mut end = s.len().min(max);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let cut = s[..end].replace('\0', "\u{fffd}");
            // U+FFFD is 3 bytes where NUL was 1: cut again if that overflowed.
            if cut.len() > max {
                fit(&cut, max)
            } else {
                cut
            }
        }
        PenaltyKey {
            kind: kind.to_owned(),
            subject: fit(subject, MAX_PENALTY_SUBJECT),
            address: fit(address, 64),
        }
    }
}

/// One live row of failure counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Penalty {
    /// Whose failures these are.
    pub key: PenaltyKey,
    /// Failures counted since the row last started (or expired).
    pub failures: u32,
    /// When the last failure was counted.
    pub last_failure: DateTime<Utc>,
    /// When the row stops counting unless another failure comes first.
    pub expires: DateTime<Utc>,
}

/// Whose tables the store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schema {
    /// The daemon's own database, created and migrated by it.
    Flaskbbd,
    /// A database FlaskBB made: its tables as they are, never migrated.
    Flaskbb,
}

/// FlaskBB's Member group.
pub(crate) const MEMBER_GROUP: i64 = 4;

/// A user to create.
#[derive(Debug, Clone)]
pub(crate) struct NewUser {
    /// The user's name.
    pub username: String,
    /// The user's email address.
    pub email: String,
    /// `None` for users who cannot log in with a local password (provisioned ones).
    pub password_hash: Option<String>,
    /// Whether the account starts activated.
    pub activated: bool,
    /// FlaskBB's group id; 4 is Member.
    pub primary_group_id: i64,
}

/// The seam every backend implements. Calls block: the daemon makes them on its worker
/// pool, except a plugin's own reads during an event chain that runs on a connection's
/// task (short by measure, and under the hook timeout's watch); commits always on the
/// pool.
pub(crate) trait Store: Send + Sync {
    /// A user whose username or email equals `identifier`.
    fn find_user(&self, identifier: &str) -> Result<Option<UserRecord>, StoreError>;
    /// A user by id.
    fn find_user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError>;
    /// Applies a request's changes in one transaction, all or nothing.
    fn commit(&self, ops: &[Op]) -> Result<(), StoreError>;
    /// A value from a plugin instance's key-value store.
    fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<String>, StoreError>;
    /// Replaces a plugin instance's value for `key` with `value` (or with `None`,
    /// deletes it) only if it is still `expected` (`None`: absent), at once and in one
    /// atomic step, not at a request's commit; answers whether it did. Of two
    /// concurrent swaps from the same value, on one daemon or several on one
    /// database, exactly one succeeds: what makes a one-time code single-use.
    fn kv_swap(
        &self,
        plugin: &str,
        key: &str,
        expected: Option<&str>,
        value: Option<&str>,
    ) -> Result<bool, StoreError>;
    fn create_user(&self, new: &NewUser) -> Result<UserRecord, StoreError>;
    fn set_password(&self, user_id: i64, hash: &str) -> Result<(), StoreError>;
    fn set_activated(&self, user_id: i64, activated: bool) -> Result<(), StoreError>;
    /// Moves the user into FlaskBB's Banned group, or back to Member.
    fn set_banned(&self, user_id: i64, banned: bool) -> Result<(), StoreError>;
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// `plugin_registry`: instance name → enabled, for every instance ever recorded.
    fn plugin_states(&self) -> Result<Vec<(String, bool)>, StoreError>;
    fn set_plugin_enabled(&self, name: &str, enabled: bool) -> Result<(), StoreError>;
    /// Forgets the run-time state of an instance: `flaskbb.toml` decides again.
    fn clear_plugin_state(&self, name: &str) -> Result<(), StoreError>;
    /// The live (unexpired at `now`) penalty rows of `kind` and `subject`: those for
    /// the given addresses, or with `None` every address's.
    fn penalties(
        &self,
        kind: &str,
        subject: &str,
        addresses: Option<&[&str]>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Penalty>, StoreError>;
    /// Deletes the penalty rows of `kind` and `subject` (only `address`'s when given),
    /// at once; returns how many live rows went.
    fn clear_penalties(
        &self,
        kind: &str,
        subject: &str,
        address: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;
    /// Counts one more failure in each of `keys` (as [`Op::AddPenalty`]) and answers
    /// the rows as they stand after it, in one transaction committed before this
    /// returns: concurrent callers, on this daemon or another on the same database,
    /// each see a different count, so a check made against the answer is made once
    /// per attempt. The keys share a kind and subject; rows are locked (and answered)
    /// in the keys' sorted order, whatever order they are given in.
    fn reserve_penalties(
        &self,
        keys: &[PenaltyKey],
        at: DateTime<Utc>,
        window_ms: i64,
        timing: Timing,
    ) -> Result<Vec<Penalty>, StoreError>;
    /// Deletes the rows that expired before `now`; returns how many.
    fn prune_penalties(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Every live (unexpired at `now`) penalty row, of every kind: what an admin page
    /// lists (the table holds live rows and those of the last ten minutes only).
    fn live_penalties(&self, now: DateTime<Utc>) -> Result<Vec<Penalty>, StoreError>;
    /// The keys of a plugin instance's key-value store that start with `prefix`, with
    /// their values, in key order.
    fn kv_prefixed(
        &self,
        plugin: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Option<String>)>, StoreError>;
}

/// Opens the store named by `url` (SQLAlchemy style: `sqlite:///relative`,
/// `sqlite:////absolute`, `postgresql://user@host/db`), relative to `base_dir`, and
/// brings its schema up to date.
pub(crate) fn open(
    url: &str,
    schema: Schema,
    base_dir: &std::path::Path,
    connect_timeout: std::time::Duration,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = db::path_from_url(rest, base_dir)?;
        return Ok(std::sync::Arc::new(db::DbStore::open_sqlite(
            &path,
            schema,
            connect_timeout,
        )?));
    }
    if url.starts_with("postgresql://") || url.starts_with("postgres://") {
        return Ok(std::sync::Arc::new(db::DbStore::open_postgres(
            url,
            schema,
            connect_timeout,
        )?));
    }
    Err(StoreError::Unavailable(format!(
        "database.url {}: use sqlite:///path or postgresql://user@host/db",
        db::redact_url(url)
    )))
}

/// Warnings for the database files at `url` (SQLite: the file and its `-wal`, `-shm`
/// and `-journal` siblings) that exist and that other local users can read: any group
/// or other permission in the daemon's own database, any other permission in
/// FlaskBB's (which FlaskBB's group may need). They are not changed: what the daemon
/// creates is private ([`crate::files`]), an existing file's mode is its operator's.
pub(crate) fn loose_files(url: &str, schema: Schema, base_dir: &std::path::Path) -> Vec<String> {
    let Some(path) = url
        .strip_prefix("sqlite://")
        .and_then(|rest| db::path_from_url(rest, base_dir).ok())
    else {
        return Vec::new();
    };
    let forbidden = match schema {
        Schema::Flaskbbd => 0o077,
        Schema::Flaskbb => 0o007,
    };
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .filter_map(|suffix| {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            crate::files::loose_mode(std::path::Path::new(&p), forbidden, "the database file")
        })
        .collect()
}

/// A UTC timestamp as stored (FlaskBB keeps naive UTC) → RFC 3339.
pub(crate) fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
