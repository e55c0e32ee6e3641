//! The typed calls the tests send (`TestDaemon::send`, `Client::send`), built short:
//! every method is the protocol crate's own type, so a test spells no method name
//! and the daemon parses exactly what the client and the bridge would send.

use flaskbbd_protocol::{
    methods::{AccountCall, AdminCall, AuthCall, EventCall, ServiceCall},
    passkey::PasskeyCall,
    types::{Context, Post, Topic},
};
use serde::{de::DeserializeOwned, Serialize};

/// `value` (a `json!` literal, or the typed value itself) as the type `T`.
fn typed<T: DeserializeOwned>(value: impl Serialize) -> T {
    serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap()
}

/// A request context from a `json!` object of strings (or a context).
pub fn context_of(value: impl Serialize) -> Context {
    typed(value)
}

/// `org.flaskbb.Auth.Authenticate` with an empty context.
pub fn authenticate(identifier: impl Into<String>, secret: impl Into<String>) -> AuthCall {
    authenticate_in(identifier, secret, Context::new())
}

/// `org.flaskbb.Auth.Authenticate` with `context`.
pub fn authenticate_in(
    identifier: impl Into<String>,
    secret: impl Into<String>,
    context: Context,
) -> AuthCall {
    AuthCall::Authenticate {
        identifier: identifier.into(),
        secret: secret.into(),
        context,
    }
}

/// `org.flaskbb.Auth.Reauthenticate` with an empty context.
pub fn reauthenticate(user_id: i64, secret: impl Into<String>) -> AuthCall {
    reauthenticate_in(user_id, secret, Context::new())
}

/// `org.flaskbb.Auth.Reauthenticate` with `context`.
pub fn reauthenticate_in(user_id: i64, secret: impl Into<String>, context: Context) -> AuthCall {
    AuthCall::Reauthenticate {
        user_id,
        secret: secret.into(),
        context,
    }
}

/// `org.flaskbb.Events.PostSaveBefore` of `post` (a `json!` object or a [`Post`]).
pub fn post_save_before(post: impl Serialize) -> EventCall {
    EventCall::PostSaveBefore { post: typed(post) }
}

/// `org.flaskbb.Events.PostSaveAfter`.
pub fn post_save_after(post: impl Serialize, is_new: bool) -> EventCall {
    EventCall::PostSaveAfter {
        post: typed::<Post>(post),
        is_new,
    }
}

/// `org.flaskbb.Events.TopicSaveBefore` of `topic` (a `json!` object or a [`Topic`]).
pub fn topic_save_before(topic: impl Serialize) -> EventCall {
    EventCall::TopicSaveBefore {
        topic: typed(topic),
    }
}

/// `org.flaskbb.Events.TopicSaveAfter`.
pub fn topic_save_after(topic: impl Serialize, is_new: bool) -> EventCall {
    EventCall::TopicSaveAfter {
        topic: typed::<Topic>(topic),
        is_new,
    }
}

/// `org.flaskbb.Events.UserRegistered`.
pub fn user_registered(username: impl Into<String>) -> EventCall {
    EventCall::UserRegistered {
        username: username.into(),
    }
}

/// `org.flaskbb.Admin.CreateUser`.
pub fn create_user(
    username: impl Into<String>,
    email: impl Into<String>,
    password: impl Into<String>,
    activated: bool,
) -> AdminCall {
    AdminCall::CreateUser {
        username: username.into(),
        email: email.into(),
        password: password.into(),
        activated,
    }
}

/// `org.flaskbb.Admin.GetUser`.
pub fn get_user(identifier: impl Into<String>) -> AdminCall {
    AdminCall::GetUser {
        identifier: identifier.into(),
    }
}

/// `org.flaskbb.Admin.Unlock`, everywhere.
pub fn unlock(identifier: impl Into<String>) -> AdminCall {
    AdminCall::Unlock {
        identifier: identifier.into(),
        address: None,
    }
}

/// `org.flaskbb.Admin.SetPassword`.
pub fn set_password(user_id: i64, password: impl Into<String>) -> AdminCall {
    AdminCall::SetPassword {
        user_id,
        password: password.into(),
    }
}

/// `org.flaskbb.Admin.SetActivated`.
pub fn set_activated(user_id: i64, activated: bool) -> AdminCall {
    AdminCall::SetActivated { user_id, activated }
}

/// `org.flaskbb.Admin.SetBanned`.
pub fn set_banned(user_id: i64, banned: bool) -> AdminCall {
    AdminCall::SetBanned { user_id, banned }
}

/// `org.flaskbb.Admin.SetPluginEnabled`.
pub fn set_plugin_enabled(name: impl Into<String>, enabled: bool) -> AdminCall {
    AdminCall::SetPluginEnabled {
        name: name.into(),
        enabled,
    }
}

/// `org.flaskbb.Admin.Reload`.
pub fn reload() -> AdminCall {
    AdminCall::Reload
}

/// `org.flaskbb.Admin.ListHooks`.
pub fn list_hooks() -> AdminCall {
    AdminCall::ListHooks
}

/// `org.flaskbb.Admin.ListPlugins`.
pub fn list_plugins() -> AdminCall {
    AdminCall::ListPlugins
}

/// `org.flaskbb.Admin.GetMetrics`.
pub fn get_metrics() -> AdminCall {
    AdminCall::GetMetrics
}

/// `org.varlink.service.GetInfo`.
pub fn get_info() -> ServiceCall {
    ServiceCall::GetInfo
}

/// `org.varlink.service.GetInterfaceDescription`.
pub fn get_interface_description(interface: impl Into<String>) -> ServiceCall {
    ServiceCall::GetInterfaceDescription {
        interface: interface.into(),
    }
}

/// `org.flaskbb.Account.BeginTotp`.
pub fn begin_totp(user_id: i64, issuer: impl Into<String>) -> AccountCall {
    AccountCall::BeginTotp {
        user_id,
        issuer: issuer.into(),
    }
}

/// `org.flaskbb.Account.ConfirmTotp`.
pub fn confirm_totp(user_id: i64, code: impl Into<String>) -> AccountCall {
    AccountCall::ConfirmTotp {
        user_id,
        code: code.into(),
    }
}

/// `org.flaskbb.Account.DisableTotp` without a `remote_addr`.
pub fn disable_totp(
    user_id: i64,
    password: impl Into<String>,
    code: impl Into<String>,
) -> AccountCall {
    AccountCall::DisableTotp {
        user_id,
        password: password.into(),
        code: code.into(),
        remote_addr: None,
    }
}

/// `org.flaskbb.Account.DisableTotp` from the member's address `remote_addr`.
pub fn disable_totp_from(
    user_id: i64,
    password: impl Into<String>,
    code: impl Into<String>,
    remote_addr: impl Into<String>,
) -> AccountCall {
    AccountCall::DisableTotp {
        user_id,
        password: password.into(),
        code: code.into(),
        remote_addr: Some(remote_addr.into()),
    }
}

/// `org.flaskbb.Account.RegenerateRecoveryCodes` without a `remote_addr`.
pub fn regenerate_recovery_codes(
    user_id: i64,
    password: impl Into<String>,
    code: impl Into<String>,
) -> AccountCall {
    AccountCall::RegenerateRecoveryCodes {
        user_id,
        password: password.into(),
        code: code.into(),
        remote_addr: None,
    }
}

/// `org.flaskbb.Account.ChangePassword` without a `remote_addr`.
pub fn change_password(
    user_id: i64,
    old_password: impl Into<String>,
    new_password: impl Into<String>,
) -> AccountCall {
    AccountCall::ChangePassword {
        user_id,
        old_password: old_password.into(),
        new_password: new_password.into(),
        remote_addr: None,
    }
}

/// `org.flaskbb.Account.ChangePassword` from the member's address `remote_addr`.
pub fn change_password_from(
    user_id: i64,
    old_password: impl Into<String>,
    new_password: impl Into<String>,
    remote_addr: impl Into<String>,
) -> AccountCall {
    AccountCall::ChangePassword {
        user_id,
        old_password: old_password.into(),
        new_password: new_password.into(),
        remote_addr: Some(remote_addr.into()),
    }
}

/// `org.flaskbb.Account.ResetPassword`.
pub fn reset_password(user_id: i64, new_password: impl Into<String>) -> AccountCall {
    AccountCall::ResetPassword {
        user_id,
        new_password: new_password.into(),
    }
}

/// `org.flaskbb.Account.GetSecondFactor`.
pub fn get_second_factor(user_id: i64) -> AccountCall {
    AccountCall::GetSecondFactor { user_id }
}

/// `org.flaskbb.Account.ListSecondFactors`.
pub fn list_second_factors() -> AccountCall {
    AccountCall::ListSecondFactors
}

/// `org.flaskbb.Account.ListLocks`.
pub fn list_locks() -> AccountCall {
    AccountCall::ListLocks
}

/// `org.flaskbb.Account.Unlock`, everywhere (`Admin.Unlock` is [`unlock`]).
pub fn unlock_member(user_id: i64) -> AccountCall {
    AccountCall::Unlock {
        user_id,
        address: None,
    }
}

/// `org.flaskbb.Account.ResetSecondFactor`.
pub fn reset_second_factor(user_id: i64) -> AccountCall {
    AccountCall::ResetSecondFactor { user_id }
}

/// `org.flaskbb.Account.BeginPasskeyRegistration`.
pub fn begin_passkey_registration(user_id: i64) -> PasskeyCall {
    PasskeyCall::BeginRegistration { user_id }
}

/// `org.flaskbb.Account.FinishPasskeyRegistration` of the browser's `credential` (JSON).
pub fn finish_passkey_registration(
    user_id: i64,
    ceremony: impl Into<String>,
    name: impl Into<String>,
    credential: impl Into<String>,
) -> PasskeyCall {
    PasskeyCall::FinishRegistration {
        user_id,
        ceremony: ceremony.into(),
        name: name.into(),
        credential: credential.into(),
    }
}

/// `org.flaskbb.Account.ListPasskeys`.
pub fn list_passkeys(user_id: i64) -> PasskeyCall {
    PasskeyCall::List { user_id }
}

/// `org.flaskbb.Account.RemovePasskey` of the passkey `id` (as listed).
pub fn remove_passkey(user_id: i64, id: impl Into<String>) -> PasskeyCall {
    PasskeyCall::Remove {
        user_id,
        id: id.into(),
    }
}

/// `org.flaskbb.Auth.BeginPasskeySignIn` with `context`.
pub fn begin_passkey_sign_in(context: Context) -> PasskeyCall {
    PasskeyCall::BeginSignIn { context }
}

/// `org.flaskbb.Auth.FinishPasskeySignIn` of the browser's `credential` (JSON).
pub fn finish_passkey_sign_in(
    ceremony: impl Into<String>,
    credential: impl Into<String>,
    context: Context,
) -> PasskeyCall {
    PasskeyCall::FinishSignIn {
        ceremony: ceremony.into(),
        credential: credential.into(),
        context,
    }
}
