//! The hooks the daemon dispatches, and what each one's chain does with results and
//! errors (PRODUCT.md's hook table). Names are FlaskBB's, in everything users see.

use std::fmt;

use plugin_abi::hooks;

/// One FlaskBB hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Authenticate,
    PostAuthenticate,
    AuthenticationFailed,
    ReauthAttempt,
    PostReauth,
    ReauthFailed,
    PostSaveBefore,
    PostSaveAfter,
    TopicSaveBefore,
    TopicSaveAfter,
    UserRegistered,
}

/// The control-flow error a hook's chain accepts from an impl (others fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    Stop,
    ForceLogout,
    Rejected,
    Nothing,
}

impl Hook {
    /// Every hook, in FlaskBB's spec order.
    pub const ALL: [Hook; 11] = [
        Hook::Authenticate,
        Hook::PostAuthenticate,
        Hook::AuthenticationFailed,
        Hook::ReauthAttempt,
        Hook::PostReauth,
        Hook::ReauthFailed,
        Hook::PostSaveBefore,
        Hook::PostSaveAfter,
        Hook::TopicSaveBefore,
        Hook::TopicSaveAfter,
        Hook::UserRegistered,
    ];

    /// FlaskBB's name, e.g. `flaskbb_authenticate`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Authenticate => hooks::AUTHENTICATE,
            Hook::PostAuthenticate => hooks::POST_AUTHENTICATE,
            Hook::AuthenticationFailed => hooks::AUTHENTICATION_FAILED,
            Hook::ReauthAttempt => hooks::REAUTH_ATTEMPT,
            Hook::PostReauth => hooks::POST_REAUTH,
            Hook::ReauthFailed => hooks::REAUTH_FAILED,
            Hook::PostSaveBefore => hooks::POST_SAVE_BEFORE,
            Hook::PostSaveAfter => hooks::POST_SAVE_AFTER,
            Hook::TopicSaveBefore => hooks::TOPIC_SAVE_BEFORE,
            Hook::TopicSaveAfter => hooks::TOPIC_SAVE_AFTER,
            Hook::UserRegistered => hooks::USER_REGISTERED,
        }
    }

    /// The hook called `name`.
    pub fn from_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }

    /// pluggy's `firstresult`: the chain stops at the first result.
    pub fn firstresult(self) -> bool {
        matches!(self, Hook::Authenticate | Hook::ReauthAttempt)
    }

    /// The control-flow error that ends this hook's chain with its reason.
    pub fn accepts(self) -> Accepts {
        match self {
            Hook::Authenticate
            | Hook::PostAuthenticate
            | Hook::ReauthAttempt
            | Hook::PostReauth => Accepts::Stop,
            Hook::ReauthFailed => Accepts::ForceLogout,
            Hook::PostSaveBefore | Hook::TopicSaveBefore => Accepts::Rejected,
            _ => Accepts::Nothing,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
