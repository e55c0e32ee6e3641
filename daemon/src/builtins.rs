//! FlaskBB's default authentication impls, registered as internal instances in the
//! same chains as plugins (they can be disabled or reordered like any other), with
//! FlaskBB's defects fixed: unknown users cost a real bcrypt verify, the lockout is
//! actually registered, and banned users are refused.

use std::sync::Arc;

use chrono::Utc;
use plugin_abi::{
    abi::{self, Tier},
    sdk::{HookError, HookResult},
};

use crate::{
    config::Config,
    hook::Hook,
    instance::{CallCx, Hooks},
    lockout,
    metrics::{self, LockoutAction},
    password,
    proto::convert,
    store::{Op, StoreError, UserRecord},
};

/// FlaskBB's exact messages.
pub(crate) mod messages {
    /// A failed login (unknown user or wrong password: the same words for both).
    pub(crate) const WRONG_CREDENTIALS: &str = "Wrong username or password.";
    /// A reauthentication's wrong password.
    pub(crate) const WRONG_PASSWORD: &str = "Wrong password.";
    /// A login by a member who has not activated the account.
    pub(crate) const NOT_ACTIVATED: &str =
        "In order to use your account you have to activate it through the link we have sent to your email address.";
    /// A login to a locked-out account, where the lockout says so.
    pub(crate) const LOCKED_OUT: &str =
        "Your account is currently locked out due to too many failed login attempts";
    /// FlaskBB has no message here: it lets banned users in.
    pub(crate) const BANNED: &str = "Your account has been banned.";
    /// A second step whose pending-login token is unknown, used, expired, or from
    /// another address or for another account.
    pub(crate) const SIGN_IN_AGAIN: &str = "Your sign-in has expired. Please sign in again.";
    /// A second-factor code refused unchecked: the account's wrong codes reached
    /// `auth.lockout.code_attempts` within `code_window_hours`.
    pub(crate) const TOO_MANY_CODES: &str = "Too many wrong codes were tried for this account. Try again later, or ask an administrator to lift the lock.";
}

fn db(e: StoreError) -> HookError {
    HookError::failed(e.to_string())
}

/// One built-in: its name, the hooks it implements with their default order, whether
/// the configuration turns it on, and how it is made.
pub(crate) struct Builtin {
    /// Its instance name (`[builtins.<name>]` in `flaskbb.toml`), one of
    /// [`BUILTIN_NAMES`](crate::config::BUILTIN_NAMES).
    pub name: &'static str,
    /// The hooks it implements, with their default tier.
    pub hooks: &'static [(Hook, Tier)],
    /// Whether the `[auth]` settings want it (before `[builtins.<name>] enabled` and
    /// the run-time states in `plugin_registry`, which can turn it off).
    pub gate: fn(&Config) -> bool,
    /// Makes the impl for one generation.
    pub make: fn(&Config, &Arc<password::Verifier>) -> Box<dyn Hooks>,
}

/// Every built-in, in registration order: one row for each of the names
/// configuration knows ([`BUILTIN_NAMES`](crate::config::BUILTIN_NAMES)), in that
/// list's order.
///
/// Registration order matters only among impls of one hook with equal tier and
/// priority, where pluggy runs the newest first: so the post_authenticate handlers
/// are registered block_banned, block_unactivated, clear_failed_logins, making
/// FlaskBB's call order clear → unactivated → banned.
pub(crate) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "default_provider",
        hooks: &[(Hook::Authenticate, Tier::TRYLAST)],
        gate: |_| true,
        make: |config, verifier| {
            Box::new(DefaultProvider {
                verifier: verifier.clone(),
                rehash: config.auth.rehash_on_login,
            })
        },
    },
    Builtin {
        name: "lockout",
        // The check first; the clearing last, so that nothing after it can still
        // refuse a login it cleared for (a second factor's refusal counts).
        hooks: &[
            (Hook::Authenticate, Tier::TRYFIRST),
            (Hook::PostAuthenticate, Tier::TRYLAST),
            (Hook::AuthenticationFailed, Tier::NORMAL),
            (Hook::ReauthAttempt, Tier::TRYFIRST),
            (Hook::PostReauth, Tier::TRYLAST),
            (Hook::ReauthFailed, Tier::NORMAL),
        ],
        gate: |config| config.auth.lockout.enabled,
        make: |config, verifier| {
            Box::new(Lockout {
                policy: lockout::Policy::new(&config.auth.lockout),
                verifier: verifier.clone(),
            })
        },
    },
    Builtin {
        name: "block_banned",
        hooks: &[(Hook::PostAuthenticate, Tier::TRYFIRST)],
        gate: |_| true,
        make: |_, _| Box::new(BlockBanned),
    },
    Builtin {
        name: "block_unactivated",
        hooks: &[(Hook::PostAuthenticate, Tier::TRYFIRST)],
        gate: |config| config.auth.activate_account,
        make: |_, _| Box::new(BlockUnactivated),
    },
    Builtin {
        name: "clear_failed_logins",
        hooks: &[(Hook::PostAuthenticate, Tier::TRYFIRST)],
        gate: |_| true,
        make: |_, _| Box::new(ClearFailedLogins),
    },
    Builtin {
        name: "mark_failed_login",
        hooks: &[(Hook::AuthenticationFailed, Tier::NORMAL)],
        gate: |_| true,
        make: |_, _| Box::new(MarkFailedLogin),
    },
    Builtin {
        name: "default_reauth",
        hooks: &[(Hook::ReauthAttempt, Tier::TRYLAST)],
        gate: |_| true,
        make: |config, verifier| {
            Box::new(DefaultReauth {
                verifier: verifier.clone(),
                rehash: config.auth.rehash_on_login,
            })
        },
    },
    Builtin {
        name: "clear_failed_logins_on_reauth",
        hooks: &[(Hook::PostReauth, Tier::NORMAL)],
        gate: |_| true,
        make: |_, _| Box::new(ClearFailedLogins),
    },
    Builtin {
        name: "mark_failed_reauth",
        hooks: &[(Hook::ReauthFailed, Tier::NORMAL)],
        gate: |_| true,
        make: |_, _| Box::new(MarkFailedLogin),
    },
];

/// FlaskBB's DefaultFlaskBBAuthProvider: user by username or email, then a password
/// check. An unknown user is checked against a dummy hash of the same cost, so both
/// paths take the same time.
struct DefaultProvider {
    verifier: Arc<password::Verifier>,
    rehash: bool,
}

/// Checks `secret` against the stored hash; when it matched a werkzeug hash and
/// `rehash` is on, queues the bcrypt hash that replaces it at the request's commit.
fn check_password(
    cx: &CallCx<'_>,
    verifier: &password::Verifier,
    rehash: bool,
    record: Option<&UserRecord>,
    secret: &str,
) -> HookResult<bool> {
    let verdict = verifier.verdict(secret, record.and_then(|r| r.password.as_deref()));
    if let (true, true, Some(r)) = (verdict.ok && verdict.rehash, rehash, record) {
        match verifier.hash(secret) {
            Ok(hash) => cx.req.push(Op::SetPassword {
                user_id: r.user.id,
                hash,
            })?,
            Err(e) => tracing::warn!(user_id = r.user.id, "cannot rehash to bcrypt: {e}"),
        }
    }
    Ok(verdict.ok)
}

impl Hooks for DefaultProvider {
    fn authenticate(
        &self,
        cx: &CallCx<'_>,
        identifier: &str,
        secret: &str,
    ) -> HookResult<Option<abi::User>> {
        let record = cx.req.find_user(identifier).map_err(db)?;
        // The second step of a two-step login: the password was proved by the step
        // before, whose token names this very user (see `auth`).
        if let (Some(id), Some(r)) = (cx.req.preauthenticated(), &record) {
            if r.user.id == id {
                return Ok(Some(to_abi(r)));
            }
        }
        if check_password(cx, &self.verifier, self.rehash, record.as_ref(), secret)? {
            Ok(record.map(|r| to_abi(&r)))
        } else {
            Ok(None)
        }
    }
}

/// FlaskBB's DefaultFlaskBBReauthProvider.
struct DefaultReauth {
    verifier: Arc<password::Verifier>,
    rehash: bool,
}

impl Hooks for DefaultReauth {
    fn reauth_attempt(&self, cx: &CallCx<'_>, user: &abi::User, secret: &str) -> HookResult<bool> {
        let record = cx.req.store.find_user_by_id(user.id).map_err(db)?;
        check_password(cx, &self.verifier, self.rehash, record.as_ref(), secret)
    }
}

fn to_abi(r: &UserRecord) -> abi::User {
    convert::user_to_abi(&r.user, r.banned)
}

/// FlaskBB's BlockTooManyFailedLogins, which FlaskBB itself never registers, with
/// its counts in the store ([`lockout`]): it refuses a locked login before any other
/// impl runs, counts each failure, and clears on success.
struct Lockout {
    policy: lockout::Policy,
    verifier: Arc<password::Verifier>,
}

impl Lockout {
    /// The request's client as its rows count it.
    fn address(cx: &CallCx<'_>) -> String {
        lockout::Policy::address(cx.req.context.get("remote_addr").map(String::as_str))
    }

    fn subject_of(cx: &CallCx<'_>, identifier: &str) -> HookResult<(Option<UserRecord>, String)> {
        let record = cx.req.find_user(identifier).map_err(db)?;
        let subject = lockout::subject(record.as_ref(), identifier);
        Ok((record, subject))
    }

    fn count_failure(&self, cx: &CallCx<'_>, subject: &str) -> HookResult<()> {
        metrics::global().lockout(LockoutAction::Counted);
        for op in self
            .policy
            .count_failure(subject, &Self::address(cx), Utc::now())
        {
            cx.req.push(op)?;
        }
        Ok(())
    }
}

impl Lockout {
    /// Reserves this attempt in the rows of `subject` and the request's address and
    /// judges it: holds the answer back when the account-wide count asks, refuses a
    /// locked one (with FlaskBB's message when `reveal`, else exactly as a wrong
    /// password: the same bcrypt work against the same hash, or the dummy one, whose
    /// verdict is not used, then `wrong`).
    fn admit(
        &self,
        cx: &CallCx<'_>,
        record: Option<&UserRecord>,
        subject: &str,
        secret: &str,
        wrong: &str,
    ) -> HookResult<()> {
        let (address, now) = (Self::address(cx), Utc::now());
        // Counted before it is checked, committed at once: a burst of concurrent
        // guesses cannot all read the count from before any of them.
        let rows = self
            .policy
            .reserve(&*cx.req.store, subject, &address, now)
            .map_err(db)?;
        cx.req
            .mark_failure_reserved(self.policy.keys(subject, &address));
        match self.policy.judge(&rows, &address, now) {
            lockout::Verdict::Open { delay_ms } => {
                if delay_ms > 0 {
                    metrics::global().lockout(LockoutAction::Delayed);
                    cx.req.delay_answer(delay_ms);
                }
                Ok(())
            }
            lockout::Verdict::Locked if self.policy.reveal => {
                metrics::global().lockout(LockoutAction::Refused);
                Err(HookError::stop(messages::LOCKED_OUT))
            }
            lockout::Verdict::Locked => {
                metrics::global().lockout(LockoutAction::Refused);
                let _ = self
                    .verifier
                    .verdict(secret, record.and_then(|r| r.password.as_deref()));
                Err(HookError::stop(wrong))
            }
        }
    }
}

impl Hooks for Lockout {
    fn authenticate(
        &self,
        cx: &CallCx<'_>,
        identifier: &str,
        secret: &str,
    ) -> HookResult<Option<abi::User>> {
        let (record, subject) = Self::subject_of(cx, identifier)?;
        self.admit(
            cx,
            record.as_ref(),
            &subject,
            secret,
            messages::WRONG_CREDENTIALS,
        )?;
        Ok(None)
    }

    fn post_authenticate(&self, cx: &CallCx<'_>, user: &abi::User) -> HookResult<()> {
        let subject = lockout::user_subject(user.id);
        let reserved = cx.req.failure_reserved();
        for op in self
            .policy
            .clear_on_success(&subject, &Self::address(cx), reserved)
        {
            cx.req.push(op)?;
        }
        Ok(())
    }

    fn authentication_failed(&self, cx: &CallCx<'_>, identifier: &str) -> HookResult<()> {
        if cx.req.failure_reserved() {
            // Counted when it was reserved.
            metrics::global().lockout(LockoutAction::Counted);
            return Ok(());
        }
        let (_, subject) = Self::subject_of(cx, identifier)?;
        self.count_failure(cx, &subject)
    }

    /// A reauthentication is judged as a login is: a logged-in session (a stolen
    /// cookie, a remembered one) must not guess the password past the lockout.
    fn reauth_attempt(&self, cx: &CallCx<'_>, user: &abi::User, secret: &str) -> HookResult<bool> {
        let record = cx.req.store.find_user_by_id(user.id).map_err(db)?;
        let subject = lockout::user_subject(user.id);
        self.admit(
            cx,
            record.as_ref(),
            &subject,
            secret,
            messages::WRONG_PASSWORD,
        )?;
        Ok(false)
    }

    fn post_reauth(&self, cx: &CallCx<'_>, user: &abi::User) -> HookResult<()> {
        self.post_authenticate(cx, user)
    }

    fn reauth_failed(&self, cx: &CallCx<'_>, user: &abi::User) -> HookResult<()> {
        if cx.req.failure_reserved() {
            // Counted when it was reserved.
            metrics::global().lockout(LockoutAction::Counted);
            return Ok(());
        }
        self.count_failure(cx, &lockout::user_subject(user.id))
    }
}

/// FlaskBB's ClearFailedLogins and ClearFailedLoginsOnReauth.
struct ClearFailedLogins;

impl Hooks for ClearFailedLogins {
    fn post_authenticate(&self, cx: &CallCx<'_>, user: &abi::User) -> HookResult<()> {
        cx.req.push(Op::ClearFailedLogins { user_id: user.id })
    }
    fn post_reauth(&self, cx: &CallCx<'_>, user: &abi::User) -> HookResult<()> {
        cx.req.push(Op::ClearFailedLogins { user_id: user.id })
    }
}

/// FlaskBB's BlockUnactivatedUser (in the chain only when `auth.activate_account`).
struct BlockUnactivated;

impl Hooks for BlockUnactivated {
    fn post_authenticate(&self, _cx: &CallCx<'_>, user: &abi::User) -> HookResult<()> {
        if user.activated {
            Ok(())
        } else {
            Err(HookError::stop(messages::NOT_ACTIVATED))
        }
    }
}

/// Refuses users in a banned group.
struct BlockBanned;

impl Hooks for BlockBanned {
    fn post_authenticate(&self, _cx: &CallCx<'_>, user: &abi::User) -> HookResult<()> {
        if user.banned {
            Err(HookError::stop(messages::BANNED))
        } else {
            Ok(())
        }
    }
}

/// FlaskBB's MarkFailedLogin and MarkFailedReauth: one atomic SQL increment at commit.
struct MarkFailedLogin;

impl Hooks for MarkFailedLogin {
    fn authentication_failed(&self, cx: &CallCx<'_>, identifier: &str) -> HookResult<()> {
        match cx.req.find_user(identifier).map_err(db)? {
            Some(r) => cx.req.push(Op::MarkFailedLogin {
                user_id: r.user.id,
                at: Utc::now(),
            }),
            None => Ok(()),
        }
    }
    fn reauth_failed(&self, cx: &CallCx<'_>, user: &abi::User) -> HookResult<()> {
        cx.req.push(Op::MarkFailedLogin {
            user_id: user.id,
            at: Utc::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtins_are_the_names_configuration_knows_in_its_order() {
        let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
        assert_eq!(names, crate::config::BUILTIN_NAMES);
    }
}
