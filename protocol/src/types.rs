//! The values of the Varlink interfaces, in one place: the daemon encodes them, the
//! CLI client and the tests decode the very same types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A user as `org.flaskbb.*` answers it. Never carries the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub activated: bool,
    pub login_attempts: i32,
    /// RFC 3339, UTC.
    pub last_failed_login: Option<String>,
    /// RFC 3339, UTC.
    pub date_joined: String,
    pub primary_group_id: Option<i64>,
    /// Names of the primary and secondary groups.
    pub groups: Vec<String>,
}

/// A post, as `org.flaskbb.Events` takes and answers it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Post {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_created: Option<String>,
}

/// A topic, as `org.flaskbb.Events` takes and answers it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forum_id: Option<i64>,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// What the client knows of the request (`remote_addr`, `user_agent`, `otp`, …).
pub type Context = BTreeMap<String, String>;

/// One impl in a chain, as `ListHooks` and `flaskbbd hooks` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    pub instance: String,
    pub tier: String,
    pub priority: i32,
    pub wrapper: bool,
    /// `builtin`, or the plugin library's path.
    pub origin: String,
}

/// One hook's chain in call order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookChain {
    pub hook: String,
    pub impls: Vec<ChainEntry>,
}

/// One plugin instance, as `ListPlugins` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    /// `builtin`, or the library's path.
    pub origin: String,
    pub library: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    pub abi_version: Option<String>,
    pub enabled: bool,
    pub hooks: Vec<String>,
}
