//! The authentication and reauthentication flows: FlaskBB's
//! `PluginAuthenticationManager` and `PluginReauthenticationManager`, behind the
//! [`AuthenticationManager`] and [`ReauthenticateManager`] seams so another flow can
//! replace them.
//!
//! Both run on a worker thread (they call bcrypt and plugins), and commit the
//! request's changes exactly once at the end, success or failure.

use std::{cell::Cell, sync::Arc};

use chrono::Utc;
use plugin_abi::{
    abi,
    sdk::{HookError, Value},
};

use crate::{
    builtins::messages,
    chain::{ChainOutcome, Input},
    config::Config,
    generation::Generation,
    hook::Hook,
    lockout, pending,
    proto::{self, convert},
    request::Request,
    second_factor::{totp_instance, CodeRefusal, Codes},
    store::Store,
};

/// How an authentication request ended, when not with a user. Its `Debug` leaves
/// the pending-login token out: a token in a log line would be a usable credential.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// `StopAuthentication` (or no provider answered): the reason is for the user.
    #[error("authentication failed: {reason}")]
    Failed { reason: String },
    /// The password was right, and a second factor asks for a code: the client
    /// sends `token` back (context `pending_login`) with the code alone. `counted`:
    /// a code was sent and was wrong (a failure, as a wrong password is); without
    /// one, the password step is no failure.
    #[error("second step: {reason}")]
    SecondStep {
        reason: String,
        token: String,
        counted: bool,
    },
    /// `ForceLogout` from `flaskbb_reauth_failed`.
    #[error("force logout: {reason}")]
    ForceLogout { reason: String },
    /// A plugin failed, or the store did: the request failed closed.
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl std::fmt::Debug for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Failed { reason } => {
                f.debug_struct("Failed").field("reason", reason).finish()
            }
            AuthError::SecondStep {
                reason, counted, ..
            } => f
                .debug_struct("SecondStep")
                .field("reason", reason)
                .field("token", &"<redacted>")
                .field("counted", counted)
                .finish(),
            AuthError::ForceLogout { reason } => f
                .debug_struct("ForceLogout")
                .field("reason", reason)
                .finish(),
            AuthError::Internal { message } => f
                .debug_struct("Internal")
                .field("message", message)
                .finish(),
        }
    }
}

/// Turns a failed chain into an internal error naming the instance and hook.
pub(crate) fn internal(hook: &str, outcome_instance: Option<&str>, message: &str) -> AuthError {
    AuthError::Internal {
        message: match outcome_instance {
            Some(i) => format!("instance {i:?} failed in {hook}: {message}"),
            None => format!("{hook}: {message}"),
        },
    }
}

/// Where a flow left its chains: the hook, the instance that decided, and the error.
struct Stopped {
    hook: Hook,
    decided_by: Option<Arc<str>>,
    error: HookError,
}

impl Stopped {
    fn from(hook: Hook, o: &ChainOutcome, error: HookError) -> Stopped {
        Stopped {
            hook,
            decided_by: o.decided_by.clone(),
            error,
        }
    }

    /// A failed chain as an internal error naming the instance and hook; logged.
    fn internal(&self) -> AuthError {
        let message = match &self.error {
            HookError::Failed { message } => message.clone(),
            other => other.to_string(),
        };
        let err = internal(self.hook.name(), self.decided_by.as_deref(), &message);
        tracing::error!(
            hook = self.hook.name(),
            instance = self.decided_by.as_deref().unwrap_or("-"),
            "{err}"
        );
        err
    }
}

/// Commits the request's changes; a failed commit turns any answer into an internal error.
fn commit(req: &Request) -> Result<(), AuthError> {
    req.commit().map_err(|e| AuthError::Internal {
        message: e.to_string(),
    })
}

/// Replaces FlaskBB's authentication flow.
pub(crate) trait AuthenticationManager: Send + Sync {
    /// A fully authenticated (not yet logged in) user, or why not.
    fn authenticate(
        &self,
        g: &Generation,
        req: &Request,
        identifier: &str,
        secret: &str,
    ) -> Result<proto::User, AuthError>;
}

/// Replaces FlaskBB's reauthentication flow.
pub(crate) trait ReauthenticateManager: Send + Sync {
    fn reauthenticate(
        &self,
        g: &Generation,
        req: &Request,
        user_id: i64,
        secret: &str,
    ) -> Result<(), AuthError>;
}

/// FlaskBB's flow through the hook chains.
pub(crate) struct PluginAuthenticationManager;

impl AuthenticationManager for PluginAuthenticationManager {
    fn authenticate(
        &self,
        g: &Generation,
        req: &Request,
        identifier: &str,
        secret: &str,
    ) -> Result<proto::User, AuthError> {
        let login = Login::new(g, req, identifier);
        if let Some(token) = req.context.get(pending::CONTEXT_KEY) {
            login.redeem(token)?;
        }
        let stopped = login.chains(secret);
        let code_op = login.code_op(&stopped);
        let answer = login.answer(stopped);
        if let Some(op) = code_op {
            req.push(op).map_err(|e| AuthError::Internal {
                message: e.to_string(),
            })?;
        }
        commit(req)?;
        let user = answer?;
        // Answer the user as committed (e.g. with the failed-login counter cleared).
        match req.store.find_user_by_id(user.id) {
            Ok(Some(r)) => Ok(r.user),
            _ => Ok(convert::user_from_abi(&user)),
        }
    }
}

/// One login through the chains, in named steps: what the steps learn of it on the
/// way (whose login it is, where the post-authentication chain began queueing, what
/// the account's code limit said).
struct Login<'a> {
    g: &'a Generation,
    req: &'a Request,
    identifier: &'a str,
    /// The client address, as the lockout and pending tokens count it.
    address: String,
    codes: lockout::CodeLimit,
    /// Whether the client sent a second-factor code (`otp`).
    code_sent: bool,
    /// Where the post-authentication chain began queueing.
    mark: Cell<usize>,
    /// Whose login it is, once the authentication chain answered.
    user_id: Cell<Option<i64>>,
    /// Whether the code sent was counted against the account's code limit.
    code_counted: Cell<bool>,
    /// Whether the code limit refused the code unchecked.
    codes_refused: Cell<bool>,
}

impl<'a> Login<'a> {
    fn new(g: &'a Generation, req: &'a Request, identifier: &'a str) -> Login<'a> {
        Login {
            g,
            req,
            identifier,
            address: lockout::Policy::address(req.context.get("remote_addr").map(String::as_str)),
            codes: lockout::CodeLimit::new(&g.config.auth.lockout),
            code_sent: req.context.get("otp").is_some_and(|c| !c.trim().is_empty()),
            mark: Cell::new(0),
            user_id: Cell::new(None),
            code_counted: Cell::new(false),
            codes_refused: Cell::new(false),
        }
    }

    /// The second step of a two-step login: the pending-login token stands for the
    /// password. An unknown name takes the same path (a token of no account, which no
    /// row holds), so that its answer comes no sooner than a known name's.
    fn redeem(&self, token: &str) -> Result<(), AuthError> {
        let store_failed = |e: crate::store::StoreError| AuthError::Internal {
            message: e.to_string(),
        };
        let record = self.req.find_user(self.identifier).map_err(store_failed)?;
        let id = record.as_ref().map_or(-1, |r| r.user.id);
        let good = pending::redeem(&*self.req.store, token, id, &self.address, Utc::now())
            .map_err(store_failed)?;
        match (good, &record) {
            (true, Some(r)) => {
                self.req.set_preauthenticated(r.user.id);
                Ok(())
            }
            _ => {
                tracing::info!("second step with an unknown, used or expired pending-login token");
                Err(AuthError::Failed {
                    reason: messages::SIGN_IN_AGAIN.into(),
                })
            }
        }
    }

    /// The authentication chain, then (with a code sent, within the account's code
    /// limit) the post-authentication chain: the user, or where the flow stopped.
    fn chains(&self, secret: &str) -> Result<abi::User, Stopped> {
        let (g, req) = (self.g, self.req);
        let o = g.call(
            req,
            Input::Authenticate {
                identifier: self.identifier,
                secret,
            },
        );
        let user = match &o.result {
            Ok(Value::User(u)) => u.clone(),
            Ok(_) => {
                return Err(Stopped::from(
                    Hook::Authenticate,
                    &o,
                    HookError::stop(messages::WRONG_CREDENTIALS),
                ))
            }
            Err(e) => return Err(Stopped::from(Hook::Authenticate, &o, e.clone())),
        };
        // A step before (a pending-login token, a verified passkey) proved one member:
        // the chain must have answered that member, no other.
        if let Some(proved) = req.preauthenticated() {
            if proved != user.id {
                return Err(Stopped {
                    hook: Hook::Authenticate,
                    decided_by: o.decided_by.clone(),
                    error: HookError::failed(format!(
                        "the login chain answered member {} where the step before proved member {proved}",
                        user.id
                    )),
                });
            }
        }
        self.mark.set(req.mark());
        self.user_id.set(Some(user.id));
        if self.code_sent {
            self.reserve_code(user.id)?;
        }
        let o = g.call(req, Input::PostAuthenticate { user: &user });
        match &o.result {
            Ok(_) => Ok(user),
            Err(e) => Err(Stopped::from(Hook::PostAuthenticate, &o, e.clone())),
        }
    }

    /// Counts the code sent against the account's code limit before any second factor
    /// checks it (a burst of guesses from many addresses gets at most the limit's
    /// checks); past the limit, the login stops unchecked.
    fn reserve_code(&self, user_id: i64) -> Result<(), Stopped> {
        let stop = |error| Stopped {
            hook: Hook::PostAuthenticate,
            decided_by: None,
            error,
        };
        match self.codes.reserve(&*self.req.store, user_id, Utc::now()) {
            Ok(lockout::CodeCheck::Allowed) => {
                self.code_counted.set(true);
                Ok(())
            }
            Ok(lockout::CodeCheck::Refused) => {
                self.codes_refused.set(true);
                Err(stop(HookError::stop(messages::TOO_MANY_CODES)))
            }
            Err(e) => Err(stop(HookError::failed(format!(
                "the second-factor code limit: {e}"
            )))),
        }
    }

    /// The code limit's change for this login: a wrong code keeps its count and
    /// restarts the window; a right one, or a check that reached no verdict on the
    /// code, gives its count back. Queued after the answer's own changes (a pending
    /// second step drops what the chain queued since its mark).
    fn code_op(&self, stopped: &Result<abi::User, Stopped>) -> Option<crate::store::Op> {
        let wrong_code = matches!(
            stopped,
            Err(Stopped {
                hook: Hook::PostAuthenticate,
                error: HookError::StopAuthentication { .. },
                ..
            }) if self.req.asked().iter().any(|k| k == "otp")
        );
        match (self.code_counted.get(), self.user_id.get()) {
            (true, Some(id)) if wrong_code => Some(self.codes.wrong(id, Utc::now())),
            (true, Some(id)) => Some(lockout::CodeLimit::release(id)),
            _ => None,
        }
    }

    /// What the login answers, from where the chains stopped.
    fn answer(&self, stopped: Result<abi::User, Stopped>) -> Result<abi::User, AuthError> {
        match stopped {
            Ok(user) => Ok(user),
            Err(_) if self.codes_refused.get() => {
                // The password was right and no code was checked: no failure of either.
                self.req.release_reservation();
                Err(AuthError::Failed {
                    reason: messages::TOO_MANY_CODES.into(),
                })
            }
            Err(Stopped {
                hook: Hook::PostAuthenticate,
                error: HookError::StopAuthentication { reason },
                ..
            }) if !self.req.asked().is_empty() => self.second_step(reason),
            Err(Stopped {
                error: HookError::StopAuthentication { reason },
                ..
            }) => {
                // Only StopAuthentication runs the failure hook (FlaskBB).
                self.failure_hooks()?;
                Err(AuthError::Failed { reason })
            }
            Err(stopped) => {
                // No verdict: the lockout's count of this attempt is given back, so
                // that a plugin's outage locks no one out.
                self.req.release_reservation();
                Err(stopped.internal())
            }
        }
    }

    /// The password was right and a second factor asks for a code: what the chain
    /// queued for a login (clearing counts) waits for the code, and the client gets a
    /// pending-login token. Without a code sent the password step is no failure; a
    /// wrong code is one, as a wrong password is.
    fn second_step(&self, reason: String) -> Result<abi::User, AuthError> {
        let req = self.req;
        req.discard_since(self.mark.get());
        let missing = req
            .asked()
            .iter()
            .all(|k| req.context.get(k).is_none_or(|v| v.trim().is_empty()));
        if missing {
            req.release_reservation();
        } else {
            self.failure_hooks()?;
        }
        let id = self.user_id.get().unwrap_or_default();
        let token = pending::issue(req, id, &self.address)
            .map_err(|message| AuthError::Internal { message })?;
        tracing::info!(
            user_id = id,
            code_sent = !missing,
            "password right; the second step is pending"
        );
        Err(AuthError::SecondStep {
            reason,
            token,
            counted: !missing,
        })
    }

    /// FlaskBB's `flaskbb_authentication_failed` chain; a failure of it is the
    /// login's internal error.
    fn failure_hooks(&self) -> Result<(), AuthError> {
        let f = self.g.call(
            self.req,
            Input::AuthenticationFailed {
                identifier: self.identifier,
            },
        );
        match &f.result {
            Err(e) => Err(Stopped::from(Hook::AuthenticationFailed, &f, e.clone()).internal()),
            Ok(_) => Ok(()),
        }
    }
}

impl ReauthenticateManager for PluginAuthenticationManager {
    fn reauthenticate(
        &self,
        g: &Generation,
        req: &Request,
        user_id: i64,
        secret: &str,
    ) -> Result<(), AuthError> {
        let record = req
            .store
            .find_user_by_id(user_id)
            .map_err(|e| AuthError::Internal {
                message: e.to_string(),
            })?;
        let Some(record) = record else {
            // No such user: spend the same bcrypt work, then fail like a wrong password.
            g.verifier.verify(secret, None);
            return Err(AuthError::Failed {
                reason: messages::WRONG_PASSWORD.into(),
            });
        };
        let user: abi::User = convert::user_to_abi(&record.user, record.banned);
        let password = reauth_password(g, req, &user, secret);
        // An enrolled member's code comes after a right password and before the
        // success hooks, whose clears (the lockout's, FlaskBB's counter) would
        // otherwise let a known password reset the count between code guesses. A
        // missing or wrong code is no failed password: the attempt's reservation is
        // given back, and a wrong code counts where code guesses count.
        if password.is_ok() && req.second_factor_required() {
            if let Err(e) = reauth_second_factor(&*req.store, &g.config, req, user_id) {
                req.release_reservation();
                commit(req)?;
                return Err(e);
            }
        }
        let stopped = password.and_then(|()| {
            let o = g.call(req, Input::PostReauth { user: &user });
            match &o.result {
                Ok(_) => Ok(()),
                Err(e) => Err(Stopped::from(Hook::PostReauth, &o, e.clone())),
            }
        });
        let answer = reauth_answer(g, req, &user, stopped);
        commit(req)?;
        answer
    }
}

/// The second factor of a reauthentication (`org.flaskbb.Auth.Reauthenticate`), once
/// the password was right: a member enrolled in the `totp` instance must also send a
/// current code or an unused recovery code in the context's `otp`, checked under the
/// lockout as `DisableTotp`'s is (FlaskBB's reauthentication guards its admin pages:
/// the password alone must not open them). Without one, or with a wrong one, the
/// answer asks for `otp`.
fn reauth_second_factor(
    store: &dyn Store,
    config: &Config,
    req: &Request,
    user_id: i64,
) -> Result<(), AuthError> {
    let internal = |r: CodeRefusal| AuthError::Internal {
        message: match r {
            CodeRefusal::Internal(message) => message,
            other => format!("the second factor's check: {other:?}"),
        },
    };
    // Without a totp instance there is no second factor to ask for; a totp instance
    // whose configuration cannot be read fails closed.
    let (instance, params) = match totp_instance(config) {
        Ok(found) => found,
        Err(CodeRefusal::Unavailable(_)) => return Ok(()),
        Err(other) => return Err(internal(other)),
    };
    let codes = Codes { store, config };
    let secret = match codes.kv(&instance, &flaskbbd_otp::secret_key(user_id)) {
        Ok(Some(secret)) => secret,
        Ok(None) => return Ok(()),
        Err(e) => return Err(internal(e)),
    };
    let code = req
        .context
        .get("otp")
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
    let ask = |reason: &str| {
        req.ask_for(&instance, "otp");
        Err(AuthError::Failed {
            reason: reason.to_owned(),
        })
    };
    if code.is_empty() {
        return ask(flaskbbd_otp::MISSING);
    }
    let checked = codes.guarded(user_id, || {
        codes.check_code(&instance, &params, user_id, &secret, &code)
    });
    match checked {
        Ok(()) => Ok(()),
        Err(CodeRefusal::WrongCode) => ask(flaskbbd_otp::WRONG),
        Err(CodeRefusal::TooManyCodes) => Err(AuthError::Failed {
            reason: crate::builtins::messages::TOO_MANY_CODES.into(),
        }),
        Err(other) => Err(internal(other)),
    }
}

/// The reauthentication's `flaskbb_reauth_attempt` chain: whether `secret` is
/// `user`'s password (an answer other than `True` is a wrong one).
fn reauth_password(
    g: &Generation,
    req: &Request,
    user: &abi::User,
    secret: &str,
) -> Result<(), Stopped> {
    let o = g.call(req, Input::ReauthAttempt { user, secret });
    match &o.result {
        Ok(Value::True) => Ok(()),
        Ok(_) => Err(Stopped::from(
            Hook::ReauthAttempt,
            &o,
            HookError::stop(messages::WRONG_PASSWORD),
        )),
        Err(e) => Err(Stopped::from(Hook::ReauthAttempt, &o, e.clone())),
    }
}

/// The reauthentication's answer, from where its chains `stopped` (if they did):
/// a refusal runs `flaskbb_reauth_failed` for `user` (which may turn it into a forced
/// logout); a chain that failed is an internal error, and gives the lockout's count
/// of this attempt back, so that an outage locks no one out.
fn reauth_answer(
    g: &Generation,
    req: &Request,
    user: &abi::User,
    stopped: Result<(), Stopped>,
) -> Result<(), AuthError> {
    match stopped {
        Ok(()) => Ok(()),
        Err(Stopped {
            error: HookError::StopAuthentication { reason },
            ..
        }) => {
            let f = g.call(req, Input::ReauthFailed { user });
            match &f.result {
                Err(HookError::ForceLogout { reason }) => Err(AuthError::ForceLogout {
                    reason: reason.clone(),
                }),
                Err(e) => Err(Stopped::from(Hook::ReauthFailed, &f, e.clone()).internal()),
                Ok(_) => Err(AuthError::Failed { reason }),
            }
        }
        Err(stopped) => {
            // No verdict (a plugin or the store failed): the lockout's count of
            // this attempt is given back, so that an outage locks no one out.
            req.release_reservation();
            Err(stopped.internal())
        }
    }
}

#[cfg(test)]
mod tests {
    //! FlaskBB's two flows over the built-in chains, on a real SQLite store.

    use super::*;
    use crate::testing::Setup;

    fn login(s: &Setup, identifier: &str, secret: &str) -> Result<proto::User, AuthError> {
        PluginAuthenticationManager.authenticate(&s.generation, &s.request(), identifier, secret)
    }

    fn failed(reason: &str) -> Result<proto::User, AuthError> {
        Err(AuthError::Failed {
            reason: reason.into(),
        })
    }

    #[test]
    fn the_right_password_answers_the_user_with_failures_cleared() {
        let s = Setup::new("auth-ok", "");
        s.user("ann", "Secret123", true);
        assert!(login(&s, "ann", "nope").is_err());
        let user = login(&s, "ann@example.org", "Secret123").unwrap();
        assert_eq!((user.username.as_str(), user.login_attempts), ("ann", 0));
    }

    #[test]
    fn wrong_and_unknown_answer_alike_and_a_failure_is_counted_once() {
        let s = Setup::new("auth-wrong", "");
        s.user("ann", "Secret123", true);
        assert_eq!(
            login(&s, "ann", "nope"),
            failed(messages::WRONG_CREDENTIALS)
        );
        assert_eq!(
            login(&s, "nobody", "nope"),
            failed(messages::WRONG_CREDENTIALS)
        );
        assert_eq!(s.attempts("ann"), 1);
    }

    #[test]
    fn an_unactivated_user_is_refused_and_counted_after_the_clear() {
        let s = Setup::new("auth-unactivated", "");
        s.user("bob", "Secret123", false);
        assert_eq!(
            login(&s, "bob", "Secret123"),
            failed(messages::NOT_ACTIVATED)
        );
        // FlaskBB's order: cleared, refused, then counted by the failure hook.
        assert_eq!(s.attempts("bob"), 1);
    }

    #[test]
    fn the_lockout_refuses_even_the_right_password() {
        let s = Setup::new(
            "auth-lockout",
            "[auth]\nbcrypt_cost = 4\nlockout = { attempts = 2, window_minutes = 5, scope = \"account\", reveal = true }\n",
        );
        s.user("ann", "Secret123", true);
        for _ in 0..2 {
            assert!(login(&s, "ann", "nope").is_err());
        }
        assert_eq!(login(&s, "ann", "Secret123"), failed(messages::LOCKED_OUT));
    }

    #[test]
    fn by_default_a_locked_account_and_an_unknown_name_answer_as_a_wrong_password() {
        let s = Setup::new(
            "auth-lockout-hidden",
            "[auth]\nbcrypt_cost = 4\nlockout = { attempts = 2, account_attempts = 10 }\n",
        );
        s.user("ann", "Secret123", true);
        for who in ["ann", "nobody"] {
            for _ in 0..2 {
                assert_eq!(login(&s, who, "nope"), failed(messages::WRONG_CREDENTIALS));
            }
        }
        // Locked: the right password is refused, in the same words, and still counted.
        assert_eq!(
            login(&s, "ann", "Secret123"),
            failed(messages::WRONG_CREDENTIALS)
        );
        assert_eq!(s.attempts("ann"), 3);
        let now = chrono::Utc::now();
        let count = |subject: &str| {
            s.store
                .penalties(crate::lockout::KIND, subject, None, now)
                .unwrap()
        };
        let ann = format!(
            "user:{}",
            s.store.find_user("ann").unwrap().unwrap().user.id
        );
        let failures = |rows: Vec<crate::store::Penalty>| -> Vec<(String, u32)> {
            rows.into_iter()
                .map(|p| (p.key.address, p.failures))
                .collect()
        };
        assert_eq!(
            failures(count(&ann)),
            [(String::new(), 3), ("unknown".into(), 3)]
        );
        assert_eq!(
            failures(count("name:nobody")),
            [(String::new(), 2), ("unknown".into(), 2)]
        );
    }

    #[test]
    fn reauthentication_checks_the_password_and_counts_a_failure() {
        let s = Setup::new("auth-reauth", "");
        let id = s.user("ann", "Secret123", true);
        let reauth = |secret: &str| {
            PluginAuthenticationManager.reauthenticate(&s.generation, &s.request(), id, secret)
        };
        assert_eq!(
            reauth("nope"),
            Err(AuthError::Failed {
                reason: messages::WRONG_PASSWORD.into()
            })
        );
        assert_eq!(s.attempts("ann"), 1);
        assert_eq!(reauth("Secret123"), Ok(()));
        assert_eq!(s.attempts("ann"), 0);
        // An id nobody has answers as a wrong password.
        assert_eq!(
            PluginAuthenticationManager.reauthenticate(&s.generation, &s.request(), 999, "x"),
            Err(AuthError::Failed {
                reason: messages::WRONG_PASSWORD.into()
            })
        );
    }

    #[test]
    fn every_change_a_request_queued_is_committed_by_its_end() {
        let s = Setup::new("auth-commit", "");
        s.user("ann", "Secret123", true);
        assert!(login(&s, "ann", "nope").is_err());
        // The clear of that failure is queued during the chain and written at the end.
        let req = s.request();
        assert!(PluginAuthenticationManager
            .authenticate(&s.generation, &req, "ann", "Secret123")
            .is_ok());
        assert_eq!((req.pending_changes(), s.attempts("ann")), (0, 0));
    }
}
