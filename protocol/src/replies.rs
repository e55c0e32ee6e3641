//! What flaskbbd's methods answer, typed: one reply struct per method of
//! `org.flaskbb.Auth` and `org.flaskbb.Admin` that returns something, the parameters
//! of their errors, and every interface's error names. The daemon builds its replies
//! from these and the client reads them back into the same types, so neither end
//! picks fields by name nor spells an error's name itself.

use serde::{Deserialize, Serialize};

use crate::types::{HookChain, LockState, PluginInfo, Status, User};

/// The errors of `org.flaskbb.Auth`.
pub mod auth {
    /// A wrong password, an unknown or refused account, or a second step to take.
    pub const AUTHENTICATION_FAILED: &str = "org.flaskbb.Auth.AuthenticationFailed";
    /// The logged-in user must be logged out.
    pub const FORCE_LOGOUT: &str = "org.flaskbb.Auth.ForceLogout";
    /// The daemon failed (a plugin, the store, a timeout): it fails closed.
    pub const INTERNAL_ERROR: &str = "org.flaskbb.Auth.InternalError";
}

/// The errors of `org.flaskbb.Events`.
pub mod events {
    /// A plugin instance refused the event.
    pub const REJECTED: &str = "org.flaskbb.Events.Rejected";
    /// The daemon failed (a plugin, the store, a timeout).
    pub const INTERNAL_ERROR: &str = "org.flaskbb.Events.InternalError";
}

/// The errors of `org.flaskbb.Admin`.
pub mod admin {
    /// The caller is not in `daemon.admin_uids`.
    pub const PERMISSION_DENIED: &str = "org.flaskbb.Admin.PermissionDenied";
    /// No user has that id, name or email address.
    pub const NO_SUCH_USER: &str = "org.flaskbb.Admin.NoSuchUser";
    /// The username or email address is taken.
    pub const USER_EXISTS: &str = "org.flaskbb.Admin.UserExists";
    /// No instance of that name is configured.
    pub const NO_SUCH_PLUGIN: &str = "org.flaskbb.Admin.NoSuchPlugin";
    /// The new generation could not be built; the current one keeps serving.
    pub const RELOAD_FAILED: &str = "org.flaskbb.Admin.ReloadFailed";
    /// The daemon failed (the store, a timeout).
    pub const INTERNAL_ERROR: &str = "org.flaskbb.Admin.InternalError";
}

/// The errors of `org.flaskbb.Account` the daemon names outside the interface's own
/// handlers.
pub mod account {
    /// The caller is not in `daemon.forum_uids`.
    pub const PERMISSION_DENIED: &str = "org.flaskbb.Account.PermissionDenied";
}

/// `org.flaskbb.Auth.Authenticate`'s reply, and `org.flaskbb.Admin.CreateUser`'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReply {
    /// The user the chain accepted, or the one created.
    pub user: User,
}

/// `org.flaskbb.Admin.GetUser`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetUserReply {
    /// The account's failure counts and locks.
    pub lock: LockState,
    /// The user.
    pub user: User,
}

/// `org.flaskbb.Admin.Unlock`'s reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockReply {
    /// How many live failure counts it removed.
    pub cleared: u64,
}

/// `org.flaskbb.Admin.ListPlugins`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPluginsReply {
    /// The instances of the current generation.
    pub plugins: Vec<PluginInfo>,
}

/// `org.flaskbb.Admin.ListHooks`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListHooksReply {
    /// Every hook's chain in call order.
    pub hooks: Vec<HookChain>,
}

/// `org.flaskbb.Admin.GetMetrics`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetMetricsReply {
    /// The metrics in the Prometheus text format.
    pub text: String,
}

/// `org.flaskbb.Admin.GetStatus`'s reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetStatusReply {
    /// What the daemon is doing now.
    pub status: Status,
}

/// The parameters of `org.flaskbb.Auth.AuthenticationFailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticationFailed {
    /// What the person is shown.
    pub reason: String,
    /// The context keys a plugin asked for (`otp`), when any did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<Vec<String>>,
    /// The token that carries a right password to its second step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_login: Option<String>,
}

/// The parameters of an error that carries only a `reason` (`ForceLogout`,
/// `ReloadFailed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Why.
    pub reason: String,
}

/// The parameters of `org.flaskbb.Events.Rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The instance that refused.
    pub plugin: String,
    /// Why, for the person.
    pub reason: String,
}

/// The parameters of an interface's `InternalError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalError {
    /// What failed (the log has the cause too).
    pub message: String,
}

/// The name of `interface`'s `InternalError`.
pub fn internal_error(interface: &str) -> String {
    format!("{interface}.InternalError")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::INTERFACES;

    /// The errors (`error Name`) and methods (`method Name`) an interface declares.
    fn declared(interface: &str, what: &str) -> Vec<String> {
        let (_, text) = INTERFACES
            .iter()
            .find(|(name, _)| *name == interface)
            .unwrap();
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix(what)?.strip_prefix(' '))
            .map(|rest| {
                rest.split(|c: char| !c.is_alphanumeric())
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn every_error_name_here_is_declared_by_its_interface() {
        let names = [
            auth::AUTHENTICATION_FAILED,
            auth::FORCE_LOGOUT,
            auth::INTERNAL_ERROR,
            events::REJECTED,
            events::INTERNAL_ERROR,
            admin::PERMISSION_DENIED,
            admin::NO_SUCH_USER,
            admin::USER_EXISTS,
            admin::NO_SUCH_PLUGIN,
            admin::RELOAD_FAILED,
            admin::INTERNAL_ERROR,
            account::PERMISSION_DENIED,
        ];
        for name in names {
            let (interface, error) = name.rsplit_once('.').unwrap();
            assert!(
                declared(interface, "error").iter().any(|e| e == error),
                "{name} is not declared in {interface}.varlink"
            );
        }
    }

    #[test]
    fn authentication_failed_leaves_out_what_it_does_not_carry() {
        let failed = AuthenticationFailed {
            reason: "Wrong password.".into(),
            ask: None,
            pending_login: None,
        };
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({ "reason": "Wrong password." })
        );
    }
}
