//! `flaskbb.toml`: its shape, defaults, and validation.
//!
//! Every key has a default, relative paths are relative to the file, and every error
//! names the file, the line and the key. This module only reads and checks; it loads
//! no plugin and opens no database.

use std::{
    collections::BTreeMap,
    fmt, fs,
    path::{Path, PathBuf},
};

use plugin_abi::{abi::Tier, hooks};
use serde::Deserialize;
use toml::Spanned;

/// A configuration problem, already phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub String);

/// The whole configuration, with paths resolved. Its `Debug` shows no secret: the
/// database URL without its password, plugins' `config` tables with the values of
/// secret keys as `***`, and not the file's text.
#[derive(Clone)]
pub(crate) struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    /// Its directory: what relative paths are relative to.
    pub base_dir: PathBuf,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[plugins]`.
    pub plugins: PluginsConfig,
    /// `[builtins.<name>]` tables, by built-in instance name.
    pub builtins: BTreeMap<String, BuiltinConfig>,
    /// `[[plugin]]` tables, in registration order.
    pub plugin: Vec<PluginConfig>,
    /// `[log]`.
    pub log: LogConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[webauthn]`: the relying party of passkeys; without it, passkeys are off.
    pub webauthn: Option<crate::webauthn::WebauthnConfig>,
    source: String,
}

/// `[daemon]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DaemonConfig {
    /// The socket path (ignored under socket activation).
    pub socket: PathBuf,
    /// Octal permission bits for the socket file, e.g. `"0660"`.
    pub socket_mode: String,
    /// Peers allowed `org.flaskbb.Admin` (the daemon's own uid always is).
    pub admin_uids: Vec<u32>,
    /// Peers allowed `org.flaskbb.Account`: the forum's own uid(s), the user FlaskBB
    /// runs as (the daemon's own uid always is; `admin_uids` are not, unless listed).
    pub forum_uids: Vec<u32>,
    /// How long a hook call may take before the request gives up on it.
    pub hook_timeout_ms: u64,
    /// The largest message a client may send on the socket.
    pub max_message_bytes: usize,
    /// Cores that compute bcrypt (each up to four hashes at once); the pool that runs
    /// requests off the async threads has four threads per core. 0 means every core.
    pub workers: usize,
    /// Concurrent connections; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Concurrent connections of one peer uid; more of that uid are refused. Unset:
    /// a quarter of `max_connections` ([`DaemonConfig::per_uid_limit`]), so that one
    /// local user cannot take every connection.
    pub max_connections_per_uid: Option<usize>,
    /// How long a message may stay unfinished (its first byte read, its NUL not yet)
    /// before the connection is closed. Connections idle between messages have no
    /// limit but `max_connections_per_uid`.
    pub message_timeout_ms: u64,
    /// Hook calls that may hang past their timeout before new calls are refused.
    pub max_stuck_calls: usize,
    /// How often to look for instances enabled or disabled through another daemon on
    /// the same database (`plugin_registry`); 0 turns it off.
    pub registry_poll_ms: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from("run/flaskbbd.sock"),
            socket_mode: "0660".into(),
            admin_uids: vec![0],
            forum_uids: Vec::new(),
            hook_timeout_ms: 5000,
            max_message_bytes: 65536,
            workers: 0,
            max_connections: 16384,
            max_connections_per_uid: None,
            message_timeout_ms: 10_000,
            max_stuck_calls: 16,
            registry_poll_ms: 2000,
        }
    }
}

impl DaemonConfig {
    /// The socket mode as permission bits.
    pub(crate) fn socket_mode_bits(&self) -> u32 {
        // Validated in `Config::validate`.
        u32::from_str_radix(&self.socket_mode, 8).unwrap_or(0o660)
    }
    /// Connections one peer uid may hold: `max_connections_per_uid`, or a quarter of
    /// `max_connections` when unset.
    pub(crate) fn per_uid_limit(&self) -> usize {
        self.max_connections_per_uid
            .unwrap_or((self.max_connections / 4).max(1))
    }

    /// Worker threads, resolving 0 to the number of cores.
    pub(crate) fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
    }
}

/// `[database]` (its `Debug` shows the URL without its password).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DatabaseConfig {
    /// SQLAlchemy-style URL: `sqlite:///relative`, `sqlite:////absolute`,
    /// `postgresql://user@host/db`.
    pub url: String,
    /// How long a request waits for a database connection before it fails.
    pub connect_timeout_ms: u64,
    /// `flaskbbd` (the daemon's own database, migrated by it) or `flaskbb` (a
    /// database FlaskBB made, used as it is).
    pub schema: crate::store::Schema,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite:///var/flaskbb.db".into(),
            connect_timeout_ms: 3000,
            schema: crate::store::Schema::Flaskbbd,
        }
    }
}

impl DatabaseConfig {
    /// `connect_timeout_ms` as a duration.
    pub(crate) fn connect_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.connect_timeout_ms)
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AuthConfig {
    /// The bcrypt cost of the hashes the daemon writes.
    pub bcrypt_cost: u32,
    /// bcrypt computations each core interleaves (docs/benchmarks.md: more lanes,
    /// more logins per second; on a shared host, a wider spread of answer times).
    pub bcrypt_lanes: usize,
    /// Whether a new account must be activated before it may log in (FlaskBB's
    /// "Enable Account Activation").
    pub activate_account: bool,
    /// How long a failed login (or a refused account password or code) is held back.
    pub failure_delay_ms: u64,
    /// `[auth.lockout]`.
    pub lockout: LockoutConfig,
    /// Replace a werkzeug hash (FlaskBB's) by bcrypt when its user logs in.
    pub rehash_on_login: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            bcrypt_cost: 12,
            bcrypt_lanes: crate::password::lanes::DEFAULT_LANES,
            activate_account: true,
            failure_delay_ms: 0,
            lockout: LockoutConfig::default(),
            rehash_on_login: false,
        }
    }
}

/// `[auth.lockout]`: FlaskBB's BlockTooManyFailedLogins, hardened against being
/// turned on members and against telling which accounts exist (`docs/security.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LockoutConfig {
    /// Whether the `lockout` built-in is in the chains at all.
    pub enabled: bool,
    /// Failures within the window that lock (the account, or under
    /// `account_and_address` the account for that address).
    pub attempts: i32,
    /// How long failures count, from the last one.
    pub window_minutes: i64,
    /// What a run of failures locks.
    pub scope: LockoutScope,
    /// Whether a locked account says so (FlaskBB's message, answered at once), or
    /// answers exactly as a wrong password does.
    pub reveal: bool,
    /// Under `account_and_address`: failures against the account from all addresses
    /// within the window past which every answer for it is held back.
    pub account_attempts: i32,
    /// The first such delay; it doubles with each further failure.
    pub account_delay_ms: u64,
    /// The longest such delay.
    pub account_max_delay_ms: u64,
    /// Wrong second-factor codes of one account, from every address together, within
    /// `code_window_hours`, past which no code is checked ([`crate::lockout::CodeLimit`]).
    pub code_attempts: i32,
    /// How long wrong codes count, from the last one, in hours.
    pub code_window_hours: i64,
}

/// `auth.lockout.scope`: what a run of failures locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LockoutScope {
    /// The account, from everywhere (FlaskBB's meaning): anyone who knows a name can
    /// keep its member out.
    Account,
    /// The account for the address (IPv6: the /64) the failures came from; failures
    /// from all addresses together bring growing delays, never a lock.
    AccountAndAddress,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            enabled: true,
            attempts: 5,
            window_minutes: 15,
            scope: LockoutScope::AccountAndAddress,
            reveal: false,
            account_attempts: 20,
            account_delay_ms: 1000,
            account_max_delay_ms: 8000,
            code_attempts: 10,
            code_window_hours: 24,
        }
    }
}

/// `[plugins]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PluginsConfig {
    /// Directories searched for `lib<library>.so`, in order.
    pub dirs: Vec<PathBuf>,
    /// Where the daemon keeps the content-addressed copies it loads plugins from.
    pub cache_dir: PathBuf,
    /// Where a `[[plugin]]` instance runs unless its table says otherwise.
    pub isolation: Isolation,
    /// The memory limit of a plugin host process, in MiB, unless the instance's
    /// `sandbox.memory_mb` says otherwise.
    pub host_memory_mb: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dirs: vec![PathBuf::from("target/release")],
            cache_dir: PathBuf::from("var/plugin-cache"),
            isolation: Isolation::Process,
            host_memory_mb: 256,
        }
    }
}

/// Where a plugin instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Isolation {
    /// In the daemon's own process: the fastest call, but a crash in the plugin is a
    /// crash of the daemon, and a call that hangs keeps its thread.
    None,
    /// In a plugin host process, shared with the isolated instances of the same
    /// library and sandbox: a crash costs the calls in flight in that host, a hung
    /// call is ended by killing the host.
    Process,
}

impl Isolation {
    /// The name used in `flaskbb.toml` and in `flaskbbd plugins`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Isolation::None => "none",
            Isolation::Process => "process",
        }
    }
}

/// `[plugin.sandbox]`: what an isolated instance's host may do beyond serving its
/// calls. Paths are relative to `flaskbb.toml`'s directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SandboxConfig {
    /// May open network sockets (an LDAP client does).
    pub network: bool,
    /// Files and directories it may read (a directory: everything under it).
    pub read: Vec<PathBuf>,
    /// Files and directories it may read and write (an audit log).
    pub write: Vec<PathBuf>,
    /// Its memory limit in MiB (else `plugins.host_memory_mb`).
    pub memory_mb: Option<u64>,
    /// A host of its own, even where other instances of its library have the same
    /// sandbox (by default they share one: docs/isolation.md).
    pub own_host: bool,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LogConfig {
    /// A `RUST_LOG`-style filter; the `RUST_LOG` environment variable wins.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// The TCP address (`host:port`) to serve `GET /metrics` on; none by default. Read
    /// at start (a reload does not move it). The metrics name no user or address, but
    /// say how busy the forum is: keep it on loopback or behind a firewall.
    pub listen: Option<String>,
}

impl MetricsConfig {
    /// The address to listen on, when set (validated by `Config::load`).
    pub(crate) fn address(&self) -> Option<std::net::SocketAddr> {
        self.listen.as_deref().and_then(|a| a.parse().ok())
    }
}

/// Overrides of one impl's ordering, per instance and hook.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HookOverride {
    /// The impl's tier (`tryfirst`, `normal`, `trylast`) instead of the declared one.
    pub tier: Option<Spanned<String>>,
    /// Its priority within the tier instead of the declared one.
    pub priority: Option<i32>,
    /// Instances it must run before.
    pub before: Option<Vec<Spanned<String>>>,
    /// Instances it must run after.
    pub after: Option<Vec<Spanned<String>>>,
    /// Whether it is a wrapper.
    pub wrapper: Option<bool>,
    /// `false` takes this instance out of this hook's chain.
    pub enabled: Option<bool>,
}

/// `[builtins.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BuiltinConfig {
    /// `false` takes the built-in out of every chain.
    pub enabled: bool,
    /// Ordering overrides, by hook name.
    pub hooks: BTreeMap<Spanned<String>, HookOverride>,
}

impl Default for BuiltinConfig {
    fn default() -> Self {
        BuiltinConfig {
            enabled: true,
            hooks: BTreeMap::new(),
        }
    }
}

/// The built-ins' instance names, in registration order: the `[builtins.<name>]`
/// tables the file may have, and names no `[[plugin]]` may take. `builtins::BUILTINS`
/// has one row for each, in this order (a unit test there keeps them so).
pub(crate) const BUILTIN_NAMES: &[&str] = &[
    "default_provider",
    "lockout",
    "block_banned",
    "block_unactivated",
    "clear_failed_logins",
    "mark_failed_login",
    "default_reauth",
    "clear_failed_logins_on_reauth",
    "mark_failed_reauth",
];

/// Whether `name` is a built-in's.
fn is_builtin(name: &str) -> bool {
    BUILTIN_NAMES.contains(&name)
}

/// The built-ins' names, for messages.
fn builtin_names() -> String {
    BUILTIN_NAMES.join(", ")
}

/// One `[[plugin]]` table: one plugin instance (its `Debug` shows the `config` table
/// with the values of secret keys as `***` and URLs without their passwords).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PluginConfig {
    /// The instance's name.
    pub name: Spanned<String>,
    /// The plugin library's path.
    pub library: Spanned<String>,
    /// `false` leaves the instance out (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The `config` table given to the instance.
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
    /// Ordering overrides, by hook name.
    #[serde(default)]
    pub hooks: BTreeMap<Spanned<String>, HookOverride>,
    /// Where the instance runs; `plugins.isolation` when absent.
    #[serde(default)]
    pub isolation: Option<Spanned<Isolation>>,
    /// What its host process may do (only with `isolation = "process"`).
    #[serde(default)]
    pub sandbox: Option<Spanned<SandboxConfig>>,
}

fn yes() -> bool {
    true
}

impl PluginConfig {
    /// The instance's `config` table as the JSON the plugin receives.
    pub(crate) fn config_json(&self) -> String {
        let table = self
            .config
            .as_ref()
            .map(|t| t.get_ref().clone())
            .unwrap_or_default();
        serde_json::to_string(&table).unwrap_or_else(|_| "{}".into())
    }

    /// Whether the instance is of the shipped `totp` plugin (`library = "totp"`, or a
    /// path to `libtotp.so`): the second factor `org.flaskbb.Account` enrols members
    /// in, and whose secrets `flaskbbd store set` checks.
    pub(crate) fn is_totp(&self) -> bool {
        let library = std::path::Path::new(self.library.get_ref());
        let stem = library
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        stem.strip_prefix("lib").unwrap_or(stem) == "totp"
    }

    /// Where the instance runs: its own `isolation`, else the `[plugins]` default.
    pub(crate) fn isolation(&self, plugins: &PluginsConfig) -> Isolation {
        self.isolation
            .as_ref()
            .map(|i| *i.get_ref())
            .unwrap_or(plugins.isolation)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: DaemonConfig,
    #[serde(default)]
    database: DatabaseConfig,
    #[serde(default)]
    auth: AuthConfig,
    #[serde(default)]
    plugins: PluginsConfig,
    #[serde(default)]
    builtins: BTreeMap<Spanned<String>, BuiltinConfig>,
    #[serde(default)]
    plugin: Vec<PluginConfig>,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    webauthn: Option<crate::webauthn::WebauthnConfig>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "{}: cannot read the configuration: {e} (pass --config FILE, or create flaskbb.toml)",
                path.display()
            ))
        })?;
        Config::parse(path, &source)
    }

    /// Parses and validates `source` as if read from `path`.
    pub(crate) fn parse(path: &Path, source: &str) -> Result<Config, ConfigError> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let raw: RawConfig = toml::from_str(source).map_err(|e| {
            ConfigError(format!(
                "{}: {}",
                path.display(),
                render_toml_error(source, &e)
            ))
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Config {
            path,
            base_dir,
            daemon: raw.daemon,
            database: raw.database,
            auth: raw.auth,
            plugins: raw.plugins,
            builtins: BTreeMap::new(),
            plugin: raw.plugin,
            log: raw.log,
            metrics: raw.metrics,
            webauthn: raw.webauthn,
            source: source.to_owned(),
        };
        for (name, builtin) in raw.builtins {
            if !is_builtin(name.get_ref()) {
                return Err(config.error_at(
                    name.span(),
                    &format!("builtins.{}", name.get_ref()),
                    &format!(
                        "no built-in of that name; built-ins are {}",
                        builtin_names()
                    ),
                ));
            }
            config.builtins.insert(name.into_inner(), builtin);
        }
        config.daemon.socket = config.resolve(&config.daemon.socket);
        config.plugins.dirs = config
            .plugins
            .dirs
            .iter()
            .map(|d| config.resolve(d))
            .collect();
        config.plugins.cache_dir = config.resolve(&config.plugins.cache_dir);
        config.validate()?;
        Ok(config)
    }

    /// `p` made absolute against the configuration file's directory.
    pub(crate) fn resolve(&self, p: &Path) -> PathBuf {
        self.base_dir.join(p)
    }

    /// 1-based line of a byte offset in the file.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.source[..offset.min(self.source.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The line of `flaskbb.toml` where the key `path` (dotted, as a plugin names it in
    /// "config key words: ...") of `plugin`'s `config` table is written, if found.
    pub(crate) fn config_key_line(&self, plugin: &PluginConfig, path: &str) -> Option<usize> {
        let span = plugin.config.as_ref()?.span();
        let text = self.source.get(span.clone())?;
        let key = path.rsplit('.').next().filter(|k| !k.is_empty())?;
        let is_key_at = |at: usize| {
            let before = text[..at].chars().next_back();
            let after = text[at + key.len()..].trim_start();
            before.is_none_or(|c| c.is_whitespace() || "{,.[\"".contains(c))
                && (after.starts_with('=')
                    || after.starts_with('.')
                    || after.starts_with(']')
                    || after.starts_with('"'))
        };
        text.match_indices(key)
            .map(|(at, _)| at)
            .find(|&at| is_key_at(at))
            .map(|at| self.line_of(span.start + at))
    }

    /// An error naming the file, the line of `span`, and `key`.
    pub(crate) fn error_at(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        msg: &str,
    ) -> ConfigError {
        ConfigError(format!(
            "{}:{}: {key}: {msg}",
            self.path.display(),
            self.line_of(span.start)
        ))
    }

    fn error_key(&self, key: &str, msg: &str) -> ConfigError {
        // Point at the line where the key (its last segment) is written, when found.
        let last = key.rsplit('.').next().unwrap_or(key);
        let line = self
            .source
            .lines()
            .position(|l| {
                let t = l.trim_start();
                t.starts_with(last) && t[last.len()..].trim_start().starts_with('=')
            })
            .map(|i| format!(":{}", i + 1))
            .unwrap_or_default();
        ConfigError(format!("{}{line}: {key}: {msg}", self.path.display()))
    }

    /// Checks what parsing cannot: ranges, formats, names. The first problem found is
    /// the error, in the order of the file's tables.
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_metrics()?;
        self.validate_webauthn()?;
        self.validate_daemon()?;
        self.validate_auth()?;
        self.validate_database()?;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &self.plugin {
            self.validate_plugin(p, &mut seen)?;
        }
        if self.plugins.host_memory_mb < 16 {
            return Err(self.error_key("plugins.host_memory_mb", "must be at least 16 (MiB)"));
        }
        for b in self.builtins.values() {
            self.validate_overrides("builtins", &b.hooks)?;
        }
        Ok(())
    }

    fn validate_webauthn(&self) -> Result<(), ConfigError> {
        if let Some(w) = &self.webauthn {
            w.validate()
                .map_err(|(key, msg)| self.error_key(&format!("webauthn.{key}"), &msg))?;
        }
        Ok(())
    }

    fn validate_metrics(&self) -> Result<(), ConfigError> {
        if let Some(listen) = &self.metrics.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(self.error_key(
                    "metrics.listen",
                    &format!(
                        "{listen:?} is not an IP address and port such as \"127.0.0.1:9187\" or \"[::1]:9187\""
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_daemon(&self) -> Result<(), ConfigError> {
        let d = &self.daemon;
        if u32::from_str_radix(&d.socket_mode, 8).map_or(true, |m| m > 0o777) {
            return Err(self.error_key(
                "daemon.socket_mode",
                &format!(
                    "{:?} is not an octal permission such as \"0660\"",
                    d.socket_mode
                ),
            ));
        }
        if d.hook_timeout_ms == 0 {
            return Err(self.error_key("daemon.hook_timeout_ms", "must be at least 1"));
        }
        if d.max_message_bytes < 1024 {
            return Err(self.error_key("daemon.max_message_bytes", "must be at least 1024"));
        }
        if d.max_connections < 1 {
            return Err(self.error_key("daemon.max_connections", "must be at least 1"));
        }
        if let Some(n) = d.max_connections_per_uid {
            if n < 1 || n > d.max_connections {
                return Err(self.error_key(
                    "daemon.max_connections_per_uid",
                    &format!(
                        "must be between 1 and daemon.max_connections ({}); unset, it is a quarter of max_connections",
                        d.max_connections
                    ),
                ));
            }
        }
        if !(100..=3_600_000).contains(&d.message_timeout_ms) {
            return Err(self.error_key(
                "daemon.message_timeout_ms",
                "must be between 100 and 3600000 (an hour); the default is 10000",
            ));
        }
        Ok(())
    }

    /// `[auth]`: bcrypt's cost and lanes, the lockout.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        if !(4..=31).contains(&self.auth.bcrypt_cost) {
            return Err(self.error_key(
                "auth.bcrypt_cost",
                "must be between 4 and 31 (FlaskBB uses 12)",
            ));
        }
        if !(1..=flaskbbd_bcrypt::MAX_LANES).contains(&self.auth.bcrypt_lanes) {
            return Err(self.error_key(
                "auth.bcrypt_lanes",
                &format!(
                    "must be between 1 and {} ({} unless measured otherwise: docs/benchmarks.md)",
                    flaskbbd_bcrypt::MAX_LANES,
                    crate::password::lanes::DEFAULT_LANES
                ),
            ));
        }
        let l = &self.auth.lockout;
        if l.attempts < 1 {
            return Err(self.error_key("auth.lockout.attempts", "must be at least 1"));
        }
        if !(1..=60 * 24 * 366).contains(&l.window_minutes) {
            return Err(self.error_key(
                "auth.lockout.window_minutes",
                "must be between 1 and 527040 (a year)",
            ));
        }
        if l.scope == LockoutScope::AccountAndAddress && l.account_attempts <= l.attempts {
            return Err(self.error_key(
                "auth.lockout.account_attempts",
                "must be larger than auth.lockout.attempts: it counts the failures of all addresses together",
            ));
        }
        if l.account_max_delay_ms > 600_000 || l.account_delay_ms > l.account_max_delay_ms {
            return Err(self.error_key(
                "auth.lockout.account_delay_ms",
                "must be at most auth.lockout.account_max_delay_ms, which must be at most 600000 (10 minutes)",
            ));
        }
        if !(1..=1000).contains(&l.code_attempts) {
            return Err(self.error_key(
                "auth.lockout.code_attempts",
                "must be between 1 and 1000 (wrong second-factor codes per account, from every address, within code_window_hours)",
            ));
        }
        if !(1..=24 * 366).contains(&l.code_window_hours) {
            return Err(self.error_key(
                "auth.lockout.code_window_hours",
                "must be between 1 and 8784 (a year)",
            ));
        }
        Ok(())
    }

    fn validate_database(&self) -> Result<(), ConfigError> {
        if self.database.connect_timeout_ms == 0 {
            return Err(self.error_key("database.connect_timeout_ms", "must be at least 1"));
        }
        if !self.database.url.starts_with("sqlite://")
            && !self.database.url.starts_with("postgresql://")
            && !self.database.url.starts_with("postgres://")
        {
            return Err(self.error_key(
                "database.url",
                "must start with sqlite:// (sqlite:///relative or sqlite:////absolute) or postgresql://",
            ));
        }
        Ok(())
    }

    /// One `[[plugin]]`: its name (valid, not a built-in's, unique: `seen` holds the
    /// names before it), its hook overrides, its sandbox.
    fn validate_plugin<'a>(
        &self,
        p: &'a PluginConfig,
        seen: &mut BTreeMap<&'a str, usize>,
    ) -> Result<(), ConfigError> {
        let name = p.name.get_ref();
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(self.error_at(
                p.name.span(),
                "plugin.name",
                &format!("{name:?}: use letters, digits, '_' and '-' only"),
            ));
        }
        if is_builtin(name) {
            return Err(self.error_at(
                p.name.span(),
                "plugin.name",
                &format!("{name:?} is the name of a built-in; choose another"),
            ));
        }
        if let Some(first) = seen.insert(name, p.name.span().start) {
            return Err(self.error_at(
                p.name.span(),
                "plugin.name",
                &format!(
                    "{name:?} is already used on line {}; instance names must be unique",
                    self.line_of(first)
                ),
            ));
        }
        self.validate_overrides(&format!("plugin {name:?}"), &p.hooks)?;
        if let Some(sandbox) = &p.sandbox {
            if p.isolation(&self.plugins) == Isolation::None {
                return Err(self.error_at(
                    sandbox.span(),
                    "plugin.sandbox",
                    &format!(
                        "instance {name:?} runs with isolation = \"none\", in the daemon's own process, which no sandbox narrows; \
                         set isolation = \"process\" or remove the sandbox table"
                    ),
                ));
            }
            if sandbox.get_ref().memory_mb.is_some_and(|m| m < 16) {
                return Err(self.error_at(
                    sandbox.span(),
                    "plugin.sandbox.memory_mb",
                    &format!("instance {name:?}: must be at least 16 (MiB)"),
                ));
            }
        }
        Ok(())
    }

    fn validate_overrides(
        &self,
        owner: &str,
        hooks_: &BTreeMap<Spanned<String>, HookOverride>,
    ) -> Result<(), ConfigError> {
        for (hook, o) in hooks_ {
            if !hooks::ALL.contains(&hook.get_ref().as_str()) {
                return Err(self.error_at(
                    hook.span(),
                    &format!("hooks.{}", hook.get_ref()),
                    &format!("{owner}: no such hook; hooks are {}", hooks::ALL.join(", ")),
                ));
            }
            if let Some(t) = &o.tier {
                if Tier::from_name(t.get_ref()).is_none() {
                    return Err(self.error_at(
                        t.span(),
                        &format!("hooks.{}.tier", hook.get_ref()),
                        &format!("{:?}: use tryfirst, normal or trylast", t.get_ref()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// All configured instance names (built-in and plugin, enabled or not).
    pub(crate) fn known_instance_names(&self) -> Vec<String> {
        BUILTIN_NAMES
            .iter()
            .map(|b| b.to_string())
            .chain(self.plugin.iter().map(|p| p.name.get_ref().clone()))
            .collect()
    }
}

/// A store's schema decides how new passwords are hashed: bcrypt in the daemon's own
/// database, werkzeug's in FlaskBB's (so that FlaskBB's own login verifies them too).
impl From<crate::store::Schema> for crate::password::HashFormat {
    fn from(schema: crate::store::Schema) -> crate::password::HashFormat {
        match schema {
            crate::store::Schema::Flaskbbd => crate::password::HashFormat::Bcrypt,
            crate::store::Schema::Flaskbb => crate::password::HashFormat::Werkzeug,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            path,
            base_dir,
            daemon,
            database,
            auth,
            plugins,
            builtins,
            plugin,
            log,
            metrics,
            webauthn,
            source,
        } = self;
        f.debug_struct("Config")
            .field("path", path)
            .field("base_dir", base_dir)
            .field("daemon", daemon)
            .field("database", database)
            .field("auth", auth)
            .field("plugins", plugins)
            .field("builtins", builtins)
            .field("plugin", plugin)
            .field("log", log)
            .field("metrics", metrics)
            .field("webauthn", webauthn)
            .field(
                "source",
                &format_args!("({} bytes, not shown)", source.len()),
            )
            .finish()
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let DatabaseConfig {
            url,
            connect_timeout_ms,
            schema,
        } = self;
        f.debug_struct("DatabaseConfig")
            .field("url", &crate::store::db::redact_url(url))
            .field("connect_timeout_ms", connect_timeout_ms)
            .field("schema", schema)
            .finish()
    }
}

impl fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PluginConfig {
            name,
            library,
            enabled,
            config,
            hooks,
            isolation,
            sandbox,
        } = self;
        let config = config.as_ref().map(|t| redact_table(t.get_ref()));
        f.debug_struct("PluginConfig")
            .field("name", name)
            .field("library", library)
            .field("enabled", enabled)
            .field("config", &config)
            .field("hooks", hooks)
            .field("isolation", isolation)
            .field("sandbox", sandbox)
            .finish()
    }
}

/// `table` with the values of secret keys as `***` and URLs without their
/// passwords, at any depth: what may be shown of a plugin's `config`.
fn redact_table(table: &toml::Table) -> toml::Table {
    table
        .iter()
        .map(|(key, value)| (key.clone(), redact_value(key, value)))
        .collect()
}

/// A secret key's value goes whole, whatever it holds (a table of credentials, a
/// list of tokens); any string elsewhere loses a URL's or conninfo's password,
/// whatever its key is called (`server = "ldaps://admin:pw@host"`).
fn redact_value(key: &str, value: &toml::Value) -> toml::Value {
    match value {
        _ if is_secret_key(key) => toml::Value::String("***".into()),
        toml::Value::Table(t) => toml::Value::Table(redact_table(t)),
        toml::Value::Array(a) => {
            toml::Value::Array(a.iter().map(|v| redact_value(key, v)).collect())
        }
        toml::Value::String(s) => {
            toml::Value::String(shown_value(key, s).unwrap_or_else(|| s.clone()))
        }
        other => other.clone(),
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

/// Whether a key (its last dotted part, unquoted) names a secret whose value is
/// never shown: a password or passphrase (`pass`, `pwd`, `bindpw`, `*_pw`), a secret,
/// token or credential, or a key (`api_key`, `private-key`, `signing_key`, `key`).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    let contains = [
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "credential",
        "apikey",
    ]
    .iter()
    .any(|s| k.contains(s));
    let word = |w: &str| k == w || k.ends_with(&format!("_{w}"));
    contains || k.ends_with("pw") || word("pass") || word("key")
}

/// What may be shown of the value `value` of `key` where it differs from the value:
/// `***` for a secret key's, a URL's or conninfo's without its password whatever the
/// key is called (`server = "ldaps://admin:pw@host"`); `None` to show it as it is.
/// The one rule of both the TOML errors' lines and `Debug`.
fn shown_value(key: &str, value: &str) -> Option<String> {
    if is_secret_key(key) {
        return Some("***".into());
    }
    let shown = crate::store::db::redact_url(value);
    (shown != value).then_some(shown)
}

/// The key before a TOML line's `=` (`before` is the line up to it): its last dotted
/// part, quotes and spaces dropped.
fn key_before(before: &str) -> &str {
    let before = before.trim_end();
    let key_start = before
        .rfind(|c: char| c == '{' || c == ',' || c == '[' || c.is_whitespace())
        .map_or(0, |at| at + 1);
    before[key_start..]
        .rsplit('.')
        .next()
        .unwrap_or("")
        .trim_matches(|c| c == '"' || c == '\'')
}

/// Where the value after a TOML line's `=` lies, from byte `from`: its text's start
/// and end, and where to look for the next key. A quoted string runs to its closing
/// quote (or the line's end when it has none); an inline table or array is entered
/// (its keys are looked at in turn); anything else runs up to a separator.
fn value_after(line: &str, from: usize) -> (usize, usize, usize) {
    let b = line.as_bytes();
    let mut start = from;
    while start < b.len() && (b[start] == b' ' || b[start] == b'\t') {
        start += 1;
    }
    match b.get(start) {
        // An inline table or array: its keys are looked at in turn.
        Some(b'{' | b'[') => (start, start, start + 1),
        Some(&q) if q == b'"' || q == b'\'' => {
            let triple = line[start..].starts_with(if q == b'"' { "\"\"\"" } else { "'''" });
            let open = if triple { 3 } else { 1 };
            let mut j = start + open;
            let mut end = None;
            while j < b.len() {
                if q == b'"' && b[j] == b'\\' {
                    j += 2;
                    continue;
                }
                if b[j] == q && (!triple || line[j..].starts_with(&line[start..start + 3])) {
                    end = Some(j);
                    break;
                }
                j += 1;
            }
            match end {
                Some(e) => (start + open, e, e + open),
                None => (start + open, b.len(), b.len()),
            }
        }
        _ => {
            let e = line[start..]
                .find([',', '}', ']', '#'])
                .map_or(b.len(), |at| start + at);
            let e = start + line[start..e].trim_end().len();
            (start, e, e)
        }
    }
}

/// One line of `flaskbb.toml` with the values of secret keys replaced by `***` (URLs
/// keep all but their password); the byte ranges replaced, each with its
/// replacement's length, and the values taken out.
fn redact_toml_line(line: &str) -> (String, Vec<(usize, usize, usize)>, Vec<String>) {
    let b = line.as_bytes();
    let mut cuts: Vec<(usize, usize, String)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let Some(eq) = line[i..].find('=').map(|at| i + at) else {
            break;
        };
        let key = key_before(&line[..eq]);
        let (inner_start, inner_end, next) = value_after(line, eq + 1);
        let inner_end = inner_end.min(b.len());
        let value = line.get(inner_start..inner_end).unwrap_or("");
        if let Some(shown) = shown_value(key, value).filter(|_| !value.is_empty()) {
            cuts.push((inner_start, inner_end, shown));
        }
        i = next.max(eq + 1);
    }
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    let mut ranges = Vec::new();
    let mut taken = Vec::new();
    for (s, e, with) in cuts {
        out.push_str(&line[at..s]);
        out.push_str(&with);
        ranges.push((s, e, with.len()));
        taken.push(line[s..e].to_owned());
        at = e;
    }
    out.push_str(&line[at..]);
    (out, ranges, taken)
}

/// A TOML error as the toml crate words it (line and column, the line, a caret
/// under the column, the message), but with the values of secret keys on the line
/// shown as `***`: a password typed into a broken line is not printed back.
fn render_toml_error(source: &str, e: &toml::de::Error) -> String {
    let mut message = e.message().trim_end().to_owned();
    let Some(span) = e.span() else {
        return message;
    };
    let offset = span.start.min(source.len());
    let line_start = source[..offset].rfind('\n').map_or(0, |at| at + 1);
    let line_end = source[offset..]
        .find('\n')
        .map_or(source.len(), |at| offset + at);
    let line = source[line_start..line_end].trim_end_matches('\r');
    let line_no = source[..line_start].matches('\n').count() + 1;
    let column = source[line_start..offset].chars().count() + 1;
    let (shown, ranges, taken) = redact_toml_line(line);
    for value in taken.iter().filter(|v| !v.is_empty()) {
        message = message.replace(value.as_str(), "***");
    }
    // Where the caret goes on the line as shown.
    let mut caret = (offset - line_start).min(line.len());
    let mut shift: isize = 0;
    for &(s, e, len) in &ranges {
        if caret >= e {
            shift += len as isize - (e - s) as isize;
        } else if caret >= s {
            caret = s;
        }
    }
    let caret = (caret as isize + shift).max(0) as usize;
    let caret_col = shown
        .get(..caret.min(shown.len()))
        .map_or(0, |s| s.chars().count());
    let gutter = " ".repeat(line_no.to_string().len());
    format!(
        "TOML parse error at line {line_no}, column {column}\n{gutter} |\n{line_no} | {shown}\n{gutter} | {}^\n{message}",
        " ".repeat(caret_col)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/flaskbbd/flaskbb.toml"), s)
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let c = parse(
            "[database]\nurl = \"postgresql://forum:hunter2@db/forum?sslpassword=pw2\"\n\
             [[plugin]]\nname = \"ldap\"\nlibrary = \"ldap\"\n\
             [plugin.config]\nbind_password = \"s3cret\"\nserver_url = \"ldaps://admin:pw3@ldap\"\n\
             tokens = [\"t0k1\", \"t0k2\"]\nnested = { api_key = 7771, host = \"ldap.example\" }\n\
             credentials = { user = \"u\", pass = \"pw4\" }\nservers = [\"ldaps://admin:pw5@h1\"]\n\
             bind-pw = \"pw6\"\nsigning_key = \"pw7\"\nsecrets = [{ id = \"a\", value = \"pw8\" }]\n",
        )
        .unwrap();
        for shown in [
            format!("{c:?}"),
            format!("{c:#?}"),
            format!("{:?}", c.database),
            format!("{:?}", c.plugin[0]),
        ] {
            for secret in [
                "hunter2", "pw2", "s3cret", "pw3", "t0k1", "t0k2", "7771", "pw4", "pw5", "pw6",
                "pw7", "pw8",
            ] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
        // What is not secret is still there to debug with.
        let shown = format!("{c:?}");
        for kept in [
            "postgresql://forum:***@db/forum",
            "ldaps://admin:***@ldap",
            "ldaps://admin:***@h1",
            "ldap.example",
            "bind_password",
            "/etc/flaskbbd/flaskbb.toml",
        ] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
    }

    #[test]
    fn toml_errors_keep_line_column_and_message_but_not_secret_values() {
        // Broken after the value: the line is shown with the value as ***, the caret
        // still under what broke.
        let e = parse("[database]\nurl = \"postgresql://forum:hunter2@db/forum\" x\n")
            .unwrap_err()
            .0;
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("line 2, column"), "{e}");
        assert!(
            e.contains("url = \"postgresql://forum:***@db/forum\" x"),
            "{e}"
        );
        let lines: Vec<&str> = e.lines().collect();
        let shown = lines.iter().position(|l| l.starts_with("2 | ")).unwrap();
        let caret = lines[shown + 1].find('^').unwrap();
        assert_eq!(&lines[shown][caret..caret + 1], "x", "{e}");
        // An unterminated string, in a plugin's config table.
        let e = parse(
            "[[plugin]]\nname = \"ldap\"\nlibrary = \"ldap\"\n[plugin.config]\nbind_password = \"hunter2\n",
        )
        .unwrap_err()
        .0;
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("bind_password = \"***"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        // Inline tables, and a type error whose message would quote the value.
        let e = parse(
            "[[plugin]]\nname = \"x\"\nlibrary = \"x\"\nconfig = { user = \"a\", api_token = \"hunter2\" } oops\n",
        )
        .unwrap_err()
        .0;
        assert!(
            !e.contains("hunter2") && e.contains("api_token = \"***\""),
            "{e}"
        );
        let e = parse("[daemon]\nsocket_mode = \"0660\"\nadmin_uids = \"hunter2\"\n[x]\n")
            .unwrap_err()
            .0;
        assert!(
            e.contains("hunter2"),
            "not a secret key: shown as it is: {e}"
        );
        // A URL's password, whatever its key is called.
        let e = parse(
            "[[plugin]]\nname = \"x\"\nlibrary = \"x\"\n[plugin.config]\nserver = \"ldaps://admin:hunter2@h\" x\n",
        )
        .unwrap_err()
        .0;
        assert!(
            !e.contains("hunter2") && e.contains("server = \"ldaps://admin:***@h\""),
            "{e}"
        );
        let e = parse("[metrics]\nlisten = 5\nsecret_token = \"hunter2\" \"\n")
            .unwrap_err()
            .0;
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn empty_file_gives_every_default_with_paths_beside_the_file() {
        let c = parse("").unwrap();
        assert_eq!(
            c.daemon.socket,
            PathBuf::from("/etc/flaskbbd/run/flaskbbd.sock")
        );
        assert_eq!(c.daemon.socket_mode_bits(), 0o660);
        assert_eq!(c.auth.bcrypt_cost, 12);
        assert_eq!(c.auth.bcrypt_lanes, 2);
        assert!(c.auth.lockout.enabled);
        assert_eq!(
            c.plugins.dirs,
            vec![PathBuf::from("/etc/flaskbbd/target/release")]
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse("[daemon]\nsocket = \"x\"\nsokcet_mode = \"0600\"\n")
            .unwrap_err()
            .0;
        assert!(e.contains("/etc/flaskbbd/flaskbb.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("sokcet_mode"), "{e}");
    }

    #[test]
    fn connection_limits_default_to_a_share_and_bad_values_name_their_key() {
        let c = parse("").unwrap();
        assert_eq!(c.daemon.per_uid_limit(), 4096);
        assert_eq!(c.daemon.message_timeout_ms, 10_000);
        let c = parse("[daemon]\nmax_connections = 100\n").unwrap();
        assert_eq!(c.daemon.per_uid_limit(), 25);
        let c = parse("[daemon]\nmax_connections = 100\nmax_connections_per_uid = 100\n").unwrap();
        assert_eq!(c.daemon.per_uid_limit(), 100);
        for (text, line, key) in [
            (
                "[daemon]\nmax_connections = 100\nmax_connections_per_uid = 101\n",
                3,
                "daemon.max_connections_per_uid",
            ),
            (
                "[daemon]\nmax_connections_per_uid = 0\n",
                2,
                "daemon.max_connections_per_uid",
            ),
            (
                "[daemon]\nmessage_timeout_ms = 0\n",
                2,
                "daemon.message_timeout_ms",
            ),
            (
                "[daemon]\nmax_connections = 0\n",
                2,
                "daemon.max_connections",
            ),
        ] {
            let e = parse(text).unwrap_err().0;
            assert!(
                e.contains(&format!("flaskbb.toml:{line}: {key}: must be")),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_tier_names_line_and_key() {
        let e = parse("[[plugin]]\nname = \"a\"\nlibrary = \"scripted\"\n[plugin.hooks.flaskbb_authenticate]\ntier = \"first\"\n")
            .unwrap_err()
            .0;
        assert_eq!(e, "/etc/flaskbbd/flaskbb.toml:5: hooks.flaskbb_authenticate.tier: \"first\": use tryfirst, normal or trylast");
    }

    #[test]
    fn duplicate_instance_names_are_refused() {
        let e = parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n[[plugin]]\nname = \"a\"\nlibrary = \"y\"\n")
            .unwrap_err()
            .0;
        assert!(
            e.contains(":5: plugin.name: \"a\" is already used on line 2"),
            "{e}"
        );
    }

    #[test]
    fn unknown_hook_and_builtin_are_refused() {
        let e = parse("[builtins.lockot]\nenabled = false\n").unwrap_err().0;
        assert!(
            e.contains(":1: builtins.lockot: no built-in of that name"),
            "{e}"
        );
        let e = parse("[builtins.lockout.hooks.flaskbb_authenticat]\npriority = 1\n")
            .unwrap_err()
            .0;
        assert!(
            e.contains("hooks.flaskbb_authenticat: builtins: no such hook"),
            "{e}"
        );
    }

    #[test]
    fn isolation_defaults_to_process_and_each_instance_may_choose() {
        let c = parse(
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n\
             [[plugin]]\nname = \"b\"\nlibrary = \"x\"\nisolation = \"none\"\n",
        )
        .unwrap();
        assert_eq!(c.plugins.isolation, Isolation::Process);
        assert_eq!(c.plugins.host_memory_mb, 256);
        assert_eq!(c.plugin[0].isolation(&c.plugins), Isolation::Process);
        assert_eq!(c.plugin[1].isolation(&c.plugins), Isolation::None);
        let c =
            parse("[plugins]\nisolation = \"none\"\n[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n")
                .unwrap();
        assert_eq!(c.plugin[0].isolation(&c.plugins), Isolation::None);
    }

    #[test]
    fn a_sandbox_needs_a_plugin_host_and_sane_limits() {
        let e = parse(
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nisolation = \"none\"\nsandbox = { network = true }\n",
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains(":5: plugin.sandbox: instance \"a\" runs with isolation = \"none\""),
            "{e}"
        );
        let e = parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsandbox = { memory_mb = 8 }\n")
            .unwrap_err()
            .0;
        assert!(
            e.contains("plugin.sandbox.memory_mb: instance \"a\": must be at least 16"),
            "{e}"
        );
        let e = parse("[plugins]\nhost_memory_mb = 1\n").unwrap_err().0;
        assert!(
            e.contains(":2: plugins.host_memory_mb: must be at least 16"),
            "{e}"
        );
        let e = parse(
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsandbox = { network = true, wirte = [] }\n",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("wirte"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = parse("[auth]\nbcrypt_cost = 40\n").unwrap_err().0;
        assert!(
            e.contains(":2: auth.bcrypt_cost: must be between 4 and 31"),
            "{e}"
        );
        for lanes in [0, 5] {
            let e = parse(&format!(
                "[auth]\nbcrypt_cost = 10\nbcrypt_lanes = {lanes}\n"
            ))
            .unwrap_err()
            .0;
            assert!(
                e.contains(
                    ":3: auth.bcrypt_lanes: must be between 1 and 4 (2 unless measured otherwise"
                ),
                "{e}"
            );
        }
        let e = parse("[daemon]\nsocket_mode = \"rw\"\n").unwrap_err().0;
        assert!(e.contains(":2: daemon.socket_mode"), "{e}");
    }
}
