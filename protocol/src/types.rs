//! The values of the Varlink interfaces, in one place: the daemon encodes them, the
//! CLI client and the tests decode the very same types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A user as `org.flaskbb.*` answers it. Never carries the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id (FlaskBB's `users.id`).
    pub id: i64,
    /// The username.
    pub username: String,
    /// The email address.
    pub email: String,
    /// Whether the account is activated.
    pub activated: bool,
    /// Failed logins since the last success.
    pub login_attempts: i32,
    /// RFC 3339, UTC.
    pub last_failed_login: Option<String>,
    /// RFC 3339, UTC.
    pub date_joined: String,
    /// The primary group's id.
    pub primary_group_id: Option<i64>,
    /// Names of the primary and secondary groups.
    pub groups: Vec<String>,
}

/// What the lockout holds against one account (`org.flaskbb.Admin.GetUser`,
/// `flaskbbd user list`), under the daemon's current `auth.lockout` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LockState {
    /// Whether logins to the account are refused from every address.
    pub locked: bool,
    /// Failures counted against the account from any address, within the window.
    pub failures: u32,
    /// RFC 3339, UTC: the last counted failure.
    pub last_failure: Option<String>,
    /// RFC 3339, UTC: when the lock ends unless another failure comes first.
    pub locked_until: Option<String>,
    /// How long every answer for the account is held back now (`account_attempts`
    /// reached under `scope = "account_and_address"`), in milliseconds.
    pub delay_ms: u64,
    /// Addresses (IPv6: /64 networks) with failures against the account, counted
    /// under `scope = "account_and_address"`.
    pub addresses: Vec<AddressLock>,
}

/// Failures against one account from one address (or IPv6 /64 network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressLock {
    /// The address, or `a:b:c:d::/64`, or `unknown` for requests without `remote_addr`.
    pub address: String,
    /// Failures counted within the window.
    pub failures: u32,
    /// RFC 3339, UTC.
    pub last_failure: String,
    /// Whether logins to the account from this address are refused.
    pub locked: bool,
    /// RFC 3339, UTC: when the lock ends unless another failure comes first.
    pub locked_until: Option<String>,
}

/// A post, as `org.flaskbb.Events` takes and answers it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Post {
    /// The post's id, once saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// The topic it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<i64>,
    /// The author's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// The author's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The text (Markdown, as FlaskBB stores it).
    pub content: String,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_created: Option<String>,
}

/// A topic, as `org.flaskbb.Events` takes and answers it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// The topic's id, once saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// The forum it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forum_id: Option<i64>,
    /// The title.
    pub title: String,
    /// The author's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// The author's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The first post's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// What the client knows of the request (`remote_addr`, `user_agent`, `otp`, …).
pub type Context = BTreeMap<String, String>;

/// One impl in a chain, as `ListHooks` and `flaskbbd hooks` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    /// The instance's name (`builtin:...` for built-ins).
    pub instance: String,
    /// `tryfirst`, normal or `trylast`, as pluggy orders them.
    pub tier: String,
    /// The priority within its tier (higher runs first).
    pub priority: i32,
    /// Whether it wraps the chain (pluggy's hookwrapper).
    pub wrapper: bool,
    /// `builtin`, or the plugin library's path.
    pub origin: String,
}

/// One hook's chain in call order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookChain {
    /// The hook's name, as FlaskBB spells it.
    pub hook: String,
    /// Its impls in call order.
    pub impls: Vec<ChainEntry>,
}

/// One plugin instance, as `ListPlugins` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The instance's name in `flaskbb.toml`.
    pub name: String,
    /// `builtin`, or the library's path.
    pub origin: String,
    /// The library the instance was loaded from (`None` for built-ins).
    pub library: Option<String>,
    /// The plugin's own version.
    pub version: Option<String>,
    /// What the plugin says it does.
    pub description: Option<String>,
    /// The plugin ABI version the plugin was built against.
    pub abi_version: Option<String>,
    /// Whether the instance is in the chains.
    pub enabled: bool,
    /// The hooks it implements.
    pub hooks: Vec<String>,
    /// Where a plugin instance runs: `none` (in the daemon's process) or `process`
    /// (in a plugin host of its own). Absent for built-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    /// An isolated instance's host: its state, pid, restarts and last exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<PluginHost>,
}

/// An isolated instance's plugin host, as `ListPlugins` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginHost {
    /// `running`, `stopped` (a new host starts at the next call) or `backed-off`
    /// (it died too often; the instance fails closed for a while).
    pub state: String,
    /// The running host's process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Hosts started after the first.
    pub restarts: u32,
    /// How the last host ended ("was killed by signal 11 (SIGSEGV)", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// How far landlock narrowed the host's filesystem on this kernel.
    pub landlock: String,
    /// Round trips to the instance's hosts so far (one host serves every isolated
    /// instance of a library with the same sandbox; a run of several of their impls
    /// in one chain is one round trip).
    #[serde(default)]
    pub round_trips: u64,
    /// Of those, the runs the daemon sent down the host's pipe behind another still
    /// unanswered, for the host to take without a wake-up (docs/isolation.md).
    #[serde(default)]
    pub pipelined: u64,
    /// The other instances its host serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
}

/// What the running daemon is doing, as `GetStatus` answers and `flaskbbd status`
/// shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version.
    pub version: String,
    /// The plugin generation serving.
    pub generation: u64,
    /// Seconds since the daemon started.
    pub uptime_seconds: f64,
    /// Open connections.
    pub connections: u64,
    /// Requests being served right now.
    pub in_flight: u64,
    /// Requests waiting for a worker thread.
    pub queued: u64,
    /// Passwords waiting for a bcrypt lane.
    pub hashes_queued: u64,
    /// Hook calls hung past their timeout right now.
    pub stuck_calls: u64,
    /// The requests of the last full minute.
    pub last_minute: RequestWindow,
    /// Every configured instance with its calls.
    pub plugins: Vec<PluginStatus>,
}

/// The requests answered in a window of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestWindow {
    /// The window's length.
    pub seconds: u64,
    /// Requests answered.
    pub requests: u64,
    /// Of those, answered with one of the interfaces' named errors (a wrong password,
    /// a rejected post, an invalid parameter, ...).
    pub refused: u64,
    /// Of those, failed (`InternalError`: a plugin, the store, a timeout).
    pub failed: u64,
}

/// One instance and its hook calls since the daemon started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// The instance, as `ListPlugins` shows it.
    pub plugin: PluginInfo,
    /// Hook calls made.
    pub calls: u64,
    /// Of those, the ones that failed (an error, a panic, a timeout).
    pub failed: u64,
    /// Their mean time, in milliseconds.
    pub mean_ms: f64,
}

/// A member's second factor (`org.flaskbb.Account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondFactor {
    /// The member.
    pub user_id: i64,
    /// The member's username.
    pub username: String,
    /// `none`, `pending` (begun, not confirmed) or `enrolled`.
    pub state: String,
    /// Recovery codes not used yet.
    pub recovery_codes_left: u32,
}

/// An account (or a name no account has) with live failure counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedAccount {
    /// The account, or `None` for a name no account has.
    pub user_id: Option<i64>,
    /// Its username, or the name as it was tried.
    pub name: String,
    /// What the lockout holds against it.
    pub lock: LockState,
}

/// A member's wrong second-factor codes, from every address and route together,
/// as the account's code limit counts them (`auth.lockout.code_attempts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeLockedAccount {
    /// The member.
    pub user_id: i64,
    /// Their username.
    pub name: String,
    /// Wrong codes counted within the window.
    pub failures: u32,
    /// When the last was counted (RFC 3339).
    pub last_failure: String,
    /// Until when every code is refused unchecked (RFC 3339), once the limit is
    /// reached; lifted by `Unlock` (without an address) or `ResetSecondFactor`.
    pub locked_until: Option<String>,
}

/// An address a plugin (a rate limiter) counts failures for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenalisedAddress {
    /// The address as counted (an IPv6 address by its /64).
    pub address: String,
    /// The instance that counts it.
    pub instance: String,
    /// Failures within the instance's window.
    pub failures: u32,
    /// When the last one was counted (RFC 3339).
    pub last_failure: String,
    /// When the count ends unless another failure comes (RFC 3339).
    pub expires: String,
}
