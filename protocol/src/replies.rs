//! What flaskbbd's methods answer, typed: one reply struct per method of
//! `org.varlink.service`, `org.flaskbb.Auth`, `org.flaskbb.Admin` and
//! `org.flaskbb.Account` that returns something, the parameters of their errors, and
//! every interface's error names. The daemon builds its replies
//! from these and the client reads them back into the same types, so neither end
//! picks fields by name nor spells an error's name itself.

use serde::{Deserialize, Serialize};

use crate::types::{
    CodeLockedAccount, HookChain, LockState, LockedAccount, PenalisedAddress, PluginInfo,
    SecondFactor, Status, User,
};

/// The errors of `org.flaskbb.Auth`.
pub mod auth {
    /// A wrong password, an unknown or refused account, or a second step to take.
    pub const AUTHENTICATION_FAILED: &str = "org.flaskbb.Auth.AuthenticationFailed";
    /// The logged-in user must be logged out.
    pub const FORCE_LOGOUT: &str = "org.flaskbb.Auth.ForceLogout";
    /// The daemon failed (a plugin, the store, a timeout): it fails closed.
    pub const INTERNAL_ERROR: &str = "org.flaskbb.Auth.InternalError";
    /// Passkeys are off (no `[webauthn]` table); the message says what to add.
    pub const PASSKEYS_UNAVAILABLE: &str = "org.flaskbb.Auth.PasskeysUnavailable";
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

/// The errors of `org.flaskbb.Account`.
pub mod account {
    /// The caller is not in `daemon.forum_uids`.
    pub const PERMISSION_DENIED: &str = "org.flaskbb.Account.PermissionDenied";
    /// No member has that id.
    pub const NO_SUCH_USER: &str = "org.flaskbb.Account.NoSuchUser";
    /// No `totp` instance is configured; the message says what to add.
    pub const SECOND_FACTOR_UNAVAILABLE: &str = "org.flaskbb.Account.SecondFactorUnavailable";
    /// The member's second factor is confirmed already (it is never replaced).
    pub const ALREADY_ENROLLED: &str = "org.flaskbb.Account.AlreadyEnrolled";
    /// `ConfirmTotp` without a pending secret (no `BeginTotp` before).
    pub const NOT_ENROLLING: &str = "org.flaskbb.Account.NotEnrolling";
    /// The member has no confirmed second factor.
    pub const NOT_ENROLLED: &str = "org.flaskbb.Account.NotEnrolled";
    /// Neither a current one-time code nor an unused recovery code.
    pub const WRONG_CODE: &str = "org.flaskbb.Account.WrongCode";
    /// The account's wrong codes reached the code limit: no code is checked.
    pub const TOO_MANY_CODES: &str = "org.flaskbb.Account.TooManyCodes";
    /// The password was wrong (or the reauthentication chain refused).
    pub const AUTHENTICATION_FAILED: &str = "org.flaskbb.Account.AuthenticationFailed";
    /// A plugin, the store or the random source failed.
    pub const INTERNAL_ERROR: &str = "org.flaskbb.Account.InternalError";
    /// Passkeys are off (no `[webauthn]` table); the message says what to add.
    pub const PASSKEYS_UNAVAILABLE: &str = "org.flaskbb.Account.PasskeysUnavailable";
    /// The passkey ceremony is unknown, used, expired or another member's.
    pub const CEREMONY_EXPIRED: &str = "org.flaskbb.Account.CeremonyExpired";
    /// The browser's answer did not verify; the reason says why.
    pub const PASSKEY_REFUSED: &str = "org.flaskbb.Account.PasskeyRefused";
    /// The member has no passkey of that id.
    pub const NO_SUCH_PASSKEY: &str = "org.flaskbb.Account.NoSuchPasskey";
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

/// `org.flaskbb.Admin.Unlock`'s reply, and `org.flaskbb.Account.Unlock`'s and
/// `org.flaskbb.Account.ResetPassword`'s.
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

/// `org.varlink.service.GetInfo`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetInfoReply {
    /// Who makes the service.
    pub vendor: String,
    /// The service's name.
    pub product: String,
    /// Its version.
    pub version: String,
    /// Where to read about it.
    pub url: String,
    /// Every interface it provides.
    pub interfaces: Vec<String>,
}

/// `org.varlink.service.GetInterfaceDescription`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetInterfaceDescriptionReply {
    /// The interface's Varlink description.
    pub description: String,
}

/// `org.flaskbb.Account.BeginTotp`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeginTotpReply {
    /// The pending secret, in base32.
    pub secret: String,
    /// The `otpauth://` URI an authenticator app reads.
    pub uri: String,
}

/// `org.flaskbb.Account.ConfirmTotp`'s and `RegenerateRecoveryCodes`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryCodesReply {
    /// The member's new recovery codes, shown this once.
    pub recovery_codes: Vec<String>,
}

/// `org.flaskbb.Account.GetSecondFactor`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetSecondFactorReply {
    /// The member's second-factor state.
    pub second_factor: SecondFactor,
}

/// `org.flaskbb.Account.ListSecondFactors`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSecondFactorsReply {
    /// Every member whose state is not `none`.
    pub members: Vec<SecondFactor>,
}

/// `org.flaskbb.Account.ListLocks`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListLocksReply {
    /// Every account (or name no account has) with live failure counts.
    pub accounts: Vec<LockedAccount>,
    /// Every address a plugin penalises.
    pub addresses: Vec<PenalisedAddress>,
    /// Every member with wrong second-factor codes counted.
    pub second_factor: Vec<CodeLockedAccount>,
}

/// One of a member's passkeys, as `org.flaskbb.Account` answers it (never its public
/// key). `last_used` is sent as `null` when it was never used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passkey {
    /// The credential id (base64url).
    pub id: String,
    /// The member's name for it.
    pub name: String,
    /// When it was registered (RFC 3339, UTC).
    pub created: String,
    /// When it last signed in (RFC 3339, UTC).
    pub last_used: Option<String>,
    /// The authenticator's last signature counter (0 for the many that keep none).
    pub counter: u32,
    /// The authenticator's backup-eligible flag.
    pub backup_eligible: bool,
    /// The authenticator's backed-up flag (a synced passkey is both).
    pub backed_up: bool,
}

/// `org.flaskbb.Account.BeginPasskeyRegistration`'s reply, and
/// `org.flaskbb.Auth.BeginPasskeySignIn`'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CeremonyReply {
    /// The JSON of the options for `navigator.credentials`.
    pub options: String,
    /// The ceremony's id, for the finish call.
    pub ceremony: String,
}

/// `org.flaskbb.Account.FinishPasskeyRegistration`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyReply {
    /// The passkey kept.
    pub passkey: Passkey,
}

/// `org.flaskbb.Account.ListPasskeys`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPasskeysReply {
    /// The member's passkeys, oldest first.
    pub passkeys: Vec<Passkey>,
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
/// `ReloadFailed`, `Account.AuthenticationFailed`, `PasskeyRefused`).
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

/// The parameters of an error that carries only a `message`: an interface's
/// `InternalError`, `Account.PermissionDenied`, `SecondFactorUnavailable`,
/// `PasskeysUnavailable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// What failed or what to do (the log has the cause too).
    pub message: String,
}

/// The parameters of an interface's `InternalError`.
pub type InternalError = Message;

/// The parameters of an error that carries none (`NoSuchUser`, `WrongCode`, ...):
/// `{}` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NoParameters {}

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
            auth::PASSKEYS_UNAVAILABLE,
        ];
        for name in names.iter().chain(ACCOUNT_ERRORS) {
            let (interface, error) = name.rsplit_once('.').unwrap();
            assert!(
                declared(interface, "error").iter().any(|e| e == error),
                "{name} is not declared in {interface}.varlink"
            );
        }
    }

    /// Every `org.flaskbb.Account` error name this module gives a constant.
    const ACCOUNT_ERRORS: &[&str] = &[
        account::PERMISSION_DENIED,
        account::NO_SUCH_USER,
        account::SECOND_FACTOR_UNAVAILABLE,
        account::ALREADY_ENROLLED,
        account::NOT_ENROLLING,
        account::NOT_ENROLLED,
        account::WRONG_CODE,
        account::TOO_MANY_CODES,
        account::AUTHENTICATION_FAILED,
        account::INTERNAL_ERROR,
        account::PASSKEYS_UNAVAILABLE,
        account::CEREMONY_EXPIRED,
        account::PASSKEY_REFUSED,
        account::NO_SUCH_PASSKEY,
    ];

    #[test]
    fn every_account_error_declared_has_its_name_here() {
        let named = ACCOUNT_ERRORS;
        for error in declared(crate::methods::ACCOUNT, "error") {
            let full = format!("{}.{error}", crate::methods::ACCOUNT);
            assert!(named.contains(&full.as_str()), "{full} has no constant");
        }
    }

    #[test]
    fn a_passkey_never_used_says_so_with_null() {
        let passkey = Passkey {
            id: "AAEC".into(),
            name: "laptop".into(),
            created: "2026-01-01T00:00:00Z".into(),
            last_used: None,
            counter: 0,
            backup_eligible: true,
            backed_up: false,
        };
        assert_eq!(
            serde_json::to_value(&passkey).unwrap()["last_used"],
            serde_json::Value::Null
        );
        assert_eq!(
            serde_json::to_value(NoParameters {}).unwrap(),
            serde_json::json!({})
        );
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
