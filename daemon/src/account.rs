//! `org.flaskbb.Account`: what the forum does for its members and admins through the
//! daemon. Second-factor enrolment (the secret is the daemon's to make and is stored,
//! once confirmed, where the `totp` plugin reads it), recovery codes (kept hashed),
//! password change and reset, and an admin page's view of locks and second factors.
//!
//! Who may call is decided before a call gets here (`daemon.forum_uids`, see
//! `server::methods`); which member a call is for is the forum's word. Every change
//! is logged with the member's id and what changed, never a secret, a code or a
//! password.

use std::{collections::BTreeMap, sync::Arc};

use chrono::Utc;
use flaskbbd_otp::RecoveryCodes;
use flaskbbd_protocol::{
    methods::{AccountCall, ACCOUNT},
    replies::{
        account as errors, BeginTotpReply, GetSecondFactorReply, ListLocksReply,
        ListSecondFactorsReply, Message, NoParameters, Reason, RecoveryCodesReply, UnlockReply,
    },
    wire::Reply,
};
use serde_json::json;

use crate::{
    answer::{run_request, Answer, Failure},
    auth::{AuthError, PluginAuthenticationManager, ReauthenticateManager},
    config::Config,
    daemon::Daemon,
    lockout, password, pending,
    proto::{CodeLockedAccount, Context, LockedAccount, PenalisedAddress, SecondFactor},
    request::Request,
    second_factor::{now_secs, totp_instance, CodeRefusal, Codes},
    store::{Op, Store, StoreError, UserRecord},
};

/// Why an Account call did not do what it was asked: each is one of the interface's
/// named errors, but `Internal`.
#[derive(Debug)]
enum Refusal {
    NoSuchUser,
    Unavailable(String),
    AlreadyEnrolled,
    NotEnrolling,
    NotEnrolled,
    WrongCode,
    /// The account's wrong codes reached the code limit: no code is checked.
    TooManyCodes,
    AuthenticationFailed(String),
    /// The parameter, refused as `InvalidParameter`.
    Invalid(&'static str),
    Internal(String),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        match e {
            StoreError::NoSuchUser => Refusal::NoSuchUser,
            other => Refusal::Internal(other.to_string()),
        }
    }
}

impl From<CodeRefusal> for Refusal {
    fn from(r: CodeRefusal) -> Refusal {
        match r {
            CodeRefusal::NoSuchUser => Refusal::NoSuchUser,
            CodeRefusal::Unavailable(message) => Refusal::Unavailable(message),
            CodeRefusal::WrongCode => Refusal::WrongCode,
            CodeRefusal::TooManyCodes => Refusal::TooManyCodes,
            CodeRefusal::Internal(message) => Refusal::Internal(message),
        }
    }
}

impl From<Refusal> for Answer {
    fn from(r: Refusal) -> Answer {
        let named = |name: &str, parameters| Answer::Reply(Reply::error(name, parameters));
        let bare = |name: &str| named(name, json!(NoParameters {}));
        match r {
            Refusal::NoSuchUser => bare(errors::NO_SUCH_USER),
            Refusal::Unavailable(message) => named(
                errors::SECOND_FACTOR_UNAVAILABLE,
                json!(Message { message }),
            ),
            Refusal::AlreadyEnrolled => bare(errors::ALREADY_ENROLLED),
            Refusal::NotEnrolling => bare(errors::NOT_ENROLLING),
            Refusal::NotEnrolled => bare(errors::NOT_ENROLLED),
            Refusal::WrongCode => bare(errors::WRONG_CODE),
            Refusal::TooManyCodes => bare(errors::TOO_MANY_CODES),
            Refusal::AuthenticationFailed(reason) => {
                named(errors::AUTHENTICATION_FAILED, json!(Reason { reason }))
            }
            Refusal::Invalid(parameter) => Answer::Reply(Reply::invalid(parameter)),
            Refusal::Internal(message) => Answer::Failed(Failure::new(ACCOUNT, message)),
        }
    }
}

type Outcome = Result<Reply, Refusal>;

/// Everything a call needs, moved onto a worker thread (calls check passwords and
/// write the store: they block).
struct Job {
    d: Arc<Daemon>,
    config: Arc<Config>,
    req: Arc<Request>,
}

/// The request context of a call that checks a password: the member's address (so
/// that the lockout counts and judges it as a login's) and the code, where sent.
fn context_of(call: &AccountCall) -> Context {
    let (remote_addr, code) = match call {
        AccountCall::DisableTotp {
            remote_addr, code, ..
        }
        | AccountCall::RegenerateRecoveryCodes {
            remote_addr, code, ..
        } => (remote_addr, Some(code)),
        AccountCall::ChangePassword { remote_addr, .. } => (remote_addr, None),
        _ => return Context::new(),
    };
    let mut context = Context::new();
    if let Some(a) = remote_addr {
        context.insert("remote_addr".to_owned(), a.clone());
    }
    if let Some(code) = code {
        context.insert("otp".to_owned(), code.clone());
    }
    context
}

/// Handles one `org.flaskbb.Account` call. A refused password or code is held back
/// by `auth.failure_delay_ms`, as a failed login is, and by any delay the lockout
/// asked for.
pub(crate) async fn call(d: &Arc<Daemon>, call: AccountCall) -> Answer {
    let req = Request::new(d.store.clone(), context_of(&call));
    let job = Job {
        d: d.clone(),
        config: d.config(),
        req: req.clone(),
    };
    let delay = job.config.auth.failure_delay_ms;
    let outcome = run_request(d, ACCOUNT, req, move || job.run(call)).await;
    let refused = matches!(
        outcome,
        Ok(Err(Refusal::AuthenticationFailed(_)
            | Refusal::WrongCode
            | Refusal::TooManyCodes))
    );
    if delay > 0 && refused {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    match outcome {
        Ok(Ok(reply)) => reply.into(),
        Ok(Err(refusal)) => refusal.into(),
        Err(failure) => failure.into(),
    }
}

/// A login name no account has, as an admin page shows it: its first character and
/// its length only. What was typed in the name field is often a password typed in
/// the wrong field, and the forum's admins are not root.
fn masked_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => format!(
            "{first}… ({} characters, no such member)",
            1 + chars.count()
        ),
        None => "(empty name, no such member)".to_owned(),
    }
}

impl Job {
    fn store(&self) -> &dyn Store {
        &*self.d.store
    }

    fn run(self, call: AccountCall) -> Outcome {
        match call {
            AccountCall::BeginTotp { user_id, issuer } => self.begin_totp(user_id, &issuer),
            AccountCall::ConfirmTotp { user_id, code } => self.confirm_totp(user_id, &code),
            AccountCall::DisableTotp {
                user_id, password, ..
            } => self.disable_totp(user_id, &password),
            AccountCall::RegenerateRecoveryCodes {
                user_id, password, ..
            } => self.regenerate_recovery_codes(user_id, &password),
            AccountCall::ChangePassword {
                user_id,
                old_password,
                new_password,
                ..
            } => self.change_password(user_id, &old_password, &new_password),
            AccountCall::ResetPassword {
                user_id,
                new_password,
            } => self.reset_password(user_id, &new_password),
            AccountCall::GetSecondFactor { user_id } => {
                let user = self.user(user_id)?;
                let state = self.second_factor(&user)?;
                Ok(Reply::ok(GetSecondFactorReply {
                    second_factor: state,
                }))
            }
            AccountCall::ListSecondFactors => self.list_second_factors(),
            AccountCall::ListLocks => self.list_locks(),
            AccountCall::Unlock { user_id, address } => {
                let user = self.user(user_id)?;
                let cleared = lockout::unlock(
                    self.store(),
                    &user.user.username,
                    address.as_deref(),
                    Utc::now(),
                )?;
                if cleared > 0 {
                    crate::metrics::global().lockout(crate::metrics::LockoutAction::Unlocked);
                }
                tracing::info!(
                    user_id,
                    only_address = address.is_some(),
                    cleared,
                    "account: lock lifted by the forum"
                );
                Ok(Reply::ok(UnlockReply {
                    cleared: u64::try_from(cleared).unwrap_or(u64::MAX),
                }))
            }
            AccountCall::ResetSecondFactor { user_id } => self.reset_second_factor(user_id),
        }
    }

    /// An admin's reset of a member's second factors (a lost phone or security key):
    /// the TOTP secret, recovery codes and count of wrong codes, and every passkey.
    fn reset_second_factor(&self, user_id: i64) -> Outcome {
        self.user(user_id)?;
        let passkeys =
            crate::webauthn::forget_all(self.store(), user_id).map_err(Refusal::Internal)?;
        let instance = match totp_instance(&self.config) {
            Ok((instance, _)) => instance,
            Err(CodeRefusal::Unavailable(_)) if passkeys > 0 => {
                tracing::warn!(user_id, passkeys, "account: passkeys removed by an admin");
                return Ok(Reply::empty());
            }
            Err(e) => return Err(e.into()),
        };
        self.forget_second_factor(&instance, user_id)?;
        // A new factor starts with no wrong codes held against it.
        self.store().clear_penalties(
            lockout::CODE_KIND,
            &lockout::user_subject(user_id),
            None,
            Utc::now(),
        )?;
        tracing::warn!(
            user_id,
            instance,
            passkeys,
            "account: second factor, recovery codes and passkeys removed by an admin"
        );
        Ok(Reply::empty())
    }

    fn user(&self, user_id: i64) -> Result<UserRecord, Refusal> {
        self.store()
            .find_user_by_id(user_id)?
            .ok_or(Refusal::NoSuchUser)
    }

    /// The code checks, over this call's store and configuration.
    fn codes(&self) -> Codes<'_> {
        Codes {
            store: self.store(),
            config: &self.config,
        }
    }

    fn kv(&self, instance: &str, key: &str) -> Result<Option<String>, Refusal> {
        Ok(self.codes().kv(instance, key)?)
    }

    fn kv_set(&self, instance: &str, changes: &[(String, Option<String>)]) -> Result<(), Refusal> {
        Ok(self.codes().kv_set(instance, changes)?)
    }

    /// Checks the member's password through the reauthentication chain (which
    /// judges and counts it under the lockout as FlaskBB counts a failed
    /// reauthentication), in this call's request (its `remote_addr`).
    fn check_password(&self, user_id: i64, password: &str) -> Result<(), Refusal> {
        self.reauthenticate(&self.req, user_id, password)
    }

    /// Checks the password and then, before anything a right password clears, the
    /// second factor's code (the request context's `otp`: a one-time code or an
    /// unused recovery code), as `org.flaskbb.Auth.Reauthenticate` does: a known
    /// password resets no count between code guesses. A wrong code answers WrongCode.
    fn check_password_and_code(&self, user_id: i64, password: &str) -> Result<(), Refusal> {
        self.req.require_second_factor();
        match self.reauthenticate(&self.req, user_id, password) {
            Err(Refusal::AuthenticationFailed(reason))
                if reason == flaskbbd_otp::WRONG || reason == flaskbbd_otp::MISSING =>
            {
                tracing::info!(user_id, "account: code refused");
                Err(Refusal::WrongCode)
            }
            Err(Refusal::AuthenticationFailed(reason))
                if reason == crate::builtins::messages::TOO_MANY_CODES =>
            {
                Err(Refusal::TooManyCodes)
            }
            other => other,
        }
    }

    fn reauthenticate(&self, req: &Request, user_id: i64, password: &str) -> Result<(), Refusal> {
        let g = self.d.generation();
        match PluginAuthenticationManager.reauthenticate(&g, req, user_id, password) {
            Ok(()) => Ok(()),
            Err(
                AuthError::Failed { reason }
                | AuthError::ForceLogout { reason }
                | AuthError::SecondStep { reason, .. },
            ) => {
                tracing::info!(user_id, "account: password refused");
                Err(Refusal::AuthenticationFailed(reason))
            }
            Err(AuthError::Internal { message }) => Err(Refusal::Internal(message)),
        }
    }

    /// The new password's hash, as the configured schema stores it.
    fn hash(&self, password: &str, parameter: &'static str) -> Result<String, Refusal> {
        self.d
            .generation()
            .verifier
            .hash_for(self.config.database.schema, password)
            .map_err(|_| Refusal::Invalid(parameter))
    }

    fn begin_totp(&self, user_id: i64, issuer: &str) -> Outcome {
        let user = self.user(user_id)?;
        let (instance, params) = totp_instance(&self.config)?;
        if self
            .kv(&instance, &flaskbbd_otp::secret_key(user_id))?
            .is_some()
        {
            return Err(Refusal::AlreadyEnrolled);
        }
        let secret = flaskbbd_otp::new_secret().map_err(Refusal::Internal)?;
        let uri = params
            .uri(&secret, issuer, &user.user.username)
            .map_err(Refusal::Internal)?;
        self.kv_set(
            &instance,
            &[(flaskbbd_otp::pending_key(user_id), Some(secret.clone()))],
        )?;
        tracing::info!(user_id, instance, "account: second-factor enrolment begun");
        Ok(Reply::ok(BeginTotpReply { secret, uri }))
    }

    fn confirm_totp(&self, user_id: i64, code: &str) -> Outcome {
        self.user(user_id)?;
        let (instance, params) = totp_instance(&self.config)?;
        // A confirmation racing an earlier one must not replace the factor in use.
        if self
            .kv(&instance, &flaskbbd_otp::secret_key(user_id))?
            .is_some()
        {
            return Err(Refusal::AlreadyEnrolled);
        }
        let Some(pending) = self.kv(&instance, &flaskbbd_otp::pending_key(user_id))? else {
            return Err(Refusal::NotEnrolling);
        };
        let key = flaskbbd_otp::decode_secret(&pending).map_err(|e| {
            Refusal::Internal(format!(
                "the pending secret of user {user_id} is {e}: begin the enrolment again"
            ))
        })?;
        let Some(step) = params.matching_step(&key, code, now_secs()?) else {
            tracing::info!(user_id, "account: enrolment code refused");
            return Err(Refusal::WrongCode);
        };
        let (codes, hashed) = flaskbbd_otp::new_recovery_codes().map_err(Refusal::Internal)?;
        // Enrolled in one transaction, all or nothing: the secret only where there is
        // none (of two confirmations at once, one finds the factor already there),
        // with the recovery codes and the step just shown (which cannot open a login).
        let set = |key: String, value: Option<String>| Op::KvSet {
            plugin: instance.clone(),
            key,
            value,
        };
        let ops = [
            Op::KvSwap {
                plugin: instance.clone(),
                key: flaskbbd_otp::secret_key(user_id),
                expected: None,
                value: Some(pending),
            },
            set(flaskbbd_otp::pending_key(user_id), None),
            set(flaskbbd_otp::last_step_key(user_id), Some(step.to_string())),
            set(
                flaskbbd_otp::recovery_key(user_id),
                Some(hashed.to_stored()),
            ),
        ];
        match self.store().commit(&ops) {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(Refusal::AlreadyEnrolled),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(
            user_id,
            instance,
            recovery_codes = codes.len(),
            "account: second factor enrolled"
        );
        Ok(Reply::ok(RecoveryCodesReply {
            recovery_codes: codes,
        }))
    }

    fn forget_second_factor(&self, instance: &str, user_id: i64) -> Result<(), Refusal> {
        self.kv_set(
            instance,
            &[
                (flaskbbd_otp::secret_key(user_id), None),
                (flaskbbd_otp::pending_key(user_id), None),
                (flaskbbd_otp::recovery_key(user_id), None),
                (flaskbbd_otp::last_step_key(user_id), None),
            ],
        )
    }

    /// The totp instance holding `user_id`'s confirmed second factor; NotEnrolled
    /// without one (and NoSuchUser without the member).
    fn enrolled_instance(&self, user_id: i64) -> Result<String, Refusal> {
        self.user(user_id)?;
        let (instance, _) = totp_instance(&self.config)?;
        if self
            .kv(&instance, &flaskbbd_otp::secret_key(user_id))?
            .is_none()
        {
            return Err(Refusal::NotEnrolled);
        }
        Ok(instance)
    }

    fn disable_totp(&self, user_id: i64, password: &str) -> Outcome {
        let instance = self.enrolled_instance(user_id)?;
        self.check_password_and_code(user_id, password)?;
        self.forget_second_factor(&instance, user_id)?;
        tracing::info!(
            user_id,
            instance,
            "account: second factor turned off by the member"
        );
        Ok(Reply::empty())
    }

    fn regenerate_recovery_codes(&self, user_id: i64, password: &str) -> Outcome {
        let instance = self.enrolled_instance(user_id)?;
        self.check_password_and_code(user_id, password)?;
        let (codes, hashed) = flaskbbd_otp::new_recovery_codes().map_err(Refusal::Internal)?;
        self.kv_set(
            &instance,
            &[(
                flaskbbd_otp::recovery_key(user_id),
                Some(hashed.to_stored()),
            )],
        )?;
        tracing::info!(
            user_id,
            instance,
            recovery_codes = codes.len(),
            "account: recovery codes made again; the old ones no longer work"
        );
        Ok(Reply::ok(RecoveryCodesReply {
            recovery_codes: codes,
        }))
    }

    fn change_password(&self, user_id: i64, old: &str, new: &str) -> Outcome {
        self.user(user_id)?;
        // What bcrypt refuses is refused before the old password is checked (and
        // counted), and a wrong old password costs no hash of the new one.
        if !password::acceptable(self.config.database.schema, new) {
            return Err(Refusal::Invalid("new_password"));
        }
        self.check_password(user_id, old)?;
        let hash = self.hash(new, "new_password")?;
        let mut ops = vec![Op::SetPassword { user_id, hash }];
        ops.extend(pending::forget(self.store(), user_id, Utc::now())?);
        self.store().commit(&ops)?;
        tracing::info!(user_id, "account: password changed by the member");
        Ok(Reply::empty())
    }

    /// The new password, the lifted lock (not the count of wrong codes: a mailbox
    /// alone must not buy more code guesses) and the end of pending second steps, in
    /// one commit: all or nothing.
    fn reset_password(&self, user_id: i64, new: &str) -> Outcome {
        let user = self.user(user_id)?;
        let hash = self.hash(new, "new_password")?;
        let now = Utc::now();
        let lift = lockout::lift(self.store(), &user.user.username, None, false, now)?;
        let mut ops = vec![Op::SetPassword { user_id, hash }];
        ops.extend(lift.ops);
        ops.extend(pending::forget(self.store(), user_id, now)?);
        self.store().commit(&ops)?;
        if lift.cleared > 0 {
            crate::metrics::global().lockout(crate::metrics::LockoutAction::Unlocked);
        }
        tracing::info!(
            user_id,
            cleared = lift.cleared,
            "account: password set after the forum's reset token; lock lifted"
        );
        Ok(Reply::ok(UnlockReply {
            cleared: u64::try_from(lift.cleared).unwrap_or(u64::MAX),
        }))
    }

    fn second_factor(&self, user: &UserRecord) -> Result<SecondFactor, Refusal> {
        let (instance, _) = totp_instance(&self.config)?;
        let id = user.user.id;
        let enrolled = self.kv(&instance, &flaskbbd_otp::secret_key(id))?.is_some();
        let pending = self
            .kv(&instance, &flaskbbd_otp::pending_key(id))?
            .is_some();
        let left = self
            .kv(&instance, &flaskbbd_otp::recovery_key(id))?
            .as_deref()
            .and_then(RecoveryCodes::from_stored)
            .map_or(0, |c| c.left());
        Ok(SecondFactor {
            user_id: id,
            username: user.user.username.clone(),
            state: state_name(enrolled, pending).into(),
            recovery_codes_left: u32::try_from(left).unwrap_or(u32::MAX),
        })
    }

    fn list_second_factors(&self) -> Outcome {
        let (instance, _) = totp_instance(&self.config)?;
        // user id → (enrolled, pending, recovery codes left)
        let mut members: BTreeMap<i64, (bool, bool, usize)> = BTreeMap::new();
        for (key, value) in self.store().kv_prefixed(&instance, "")? {
            let Some((kind, id)) = key.split_once(':') else {
                continue;
            };
            let Ok(id) = id.parse::<i64>() else { continue };
            match kind {
                "secret" => members.entry(id).or_default().0 = true,
                "pending" => members.entry(id).or_default().1 = true,
                "recovery" => {
                    members.entry(id).or_default().2 = value
                        .as_deref()
                        .and_then(RecoveryCodes::from_stored)
                        .map_or(0, |c| c.left())
                }
                _ => {}
            }
        }
        let mut list = Vec::new();
        for (id, (enrolled, pending, left)) in members {
            if !enrolled && !pending {
                continue;
            }
            let Some(user) = self.store().find_user_by_id(id)? else {
                continue;
            };
            list.push(SecondFactor {
                user_id: id,
                username: user.user.username,
                state: state_name(enrolled, pending).into(),
                recovery_codes_left: u32::try_from(left).unwrap_or(u32::MAX),
            });
        }
        Ok(Reply::ok(ListSecondFactorsReply { members: list }))
    }

    fn list_locks(&self) -> Outcome {
        let now = Utc::now();
        let policy = lockout::Policy::new(&self.config.auth.lockout);
        let time = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let codes = lockout::CodeLimit::new(&self.config.auth.lockout);
        let mut accounts: BTreeMap<String, Vec<crate::store::Penalty>> = BTreeMap::new();
        let mut addresses = Vec::new();
        let mut second_factor = Vec::new();
        for p in self.store().live_penalties(now)? {
            if p.key.kind == lockout::CODE_KIND {
                let id = p.key.subject.strip_prefix("user:").map(str::parse::<i64>);
                if let (Some(Ok(id)), Some(state)) = (id, codes.state(&p, now)) {
                    let name = self
                        .store()
                        .find_user_by_id(id)?
                        .map_or_else(|| p.key.subject.clone(), |u| u.user.username);
                    second_factor.push(CodeLockedAccount {
                        user_id: id,
                        name,
                        failures: state.failures,
                        last_failure: state.last_failure,
                        locked_until: state.locked_until,
                    });
                }
            } else if p.key.kind == lockout::KIND {
                accounts.entry(p.key.subject.clone()).or_default().push(p);
            } else if let Some(instance) = p.key.kind.strip_prefix("plugin:") {
                if p.key.address.is_empty() {
                    addresses.push(PenalisedAddress {
                        address: p.key.subject.clone(),
                        instance: instance.to_owned(),
                        failures: p.failures,
                        last_failure: time(p.last_failure),
                        expires: time(p.expires),
                    });
                }
            }
        }
        let mut list = Vec::new();
        for (subject, rows) in accounts {
            let (user_id, name) = match subject.strip_prefix("user:").map(str::parse::<i64>) {
                Some(Ok(id)) => {
                    let name = self
                        .store()
                        .find_user_by_id(id)?
                        .map_or_else(|| subject.clone(), |u| u.user.username);
                    (Some(id), name)
                }
                _ => (
                    None,
                    masked_name(subject.strip_prefix("name:").unwrap_or(&subject)),
                ),
            };
            list.push(LockedAccount {
                user_id,
                name,
                lock: policy.state(&rows, now),
            });
        }
        Ok(Reply::ok(ListLocksReply {
            accounts: list,
            addresses,
            second_factor,
        }))
    }
}

fn state_name(enrolled: bool, pending: bool) -> &'static str {
    match (enrolled, pending) {
        (true, _) => "enrolled",
        (false, true) => "pending",
        (false, false) => "none",
    }
}
