//! A member's second factor as the daemon checks it: which `totp` instance members
//! enrol in, and the check of a one-time or recovery code against the store, under
//! the lockout and the account's code limit. `auth`'s reauthentication asks for the
//! code through it, and `account` (`org.flaskbb.Account`) reads and changes the
//! enrolment with it; it knows neither.

use chrono::Utc;
use flaskbbd_otp::{Params, RecoveryCodes};

use crate::{
    config::Config,
    lockout,
    store::{Op, Store, StoreError},
};

/// Why a second-factor step did not pass: what its callers answer (`account`'s
/// refusals of the same names, `auth`'s failed reauthentication).
#[derive(Debug)]
pub(crate) enum CodeRefusal {
    /// The store has no such member.
    NoSuchUser,
    /// No `totp` instance is configured: the message says how to add one.
    Unavailable(String),
    /// The code was not one of the member's.
    WrongCode,
    /// The account's wrong codes reached the code limit: no code is checked.
    TooManyCodes,
    /// The store or a stored value failed: the message says what.
    Internal(String),
}

impl From<StoreError> for CodeRefusal {
    fn from(e: StoreError) -> CodeRefusal {
        match e {
            StoreError::NoSuchUser => CodeRefusal::NoSuchUser,
            other => CodeRefusal::Internal(other.to_string()),
        }
    }
}

/// The `totp` instance members enrol in: its name and its code parameters.
pub(crate) fn totp_instance(config: &Config) -> Result<(String, Params), CodeRefusal> {
    let p = config.plugin.iter().find(|p| p.is_totp()).ok_or_else(|| {
        CodeRefusal::Unavailable(
            "no totp instance is configured: add [[plugin]] name = \"totp\", library = \"totp\" to flaskbb.toml and reload".into(),
        )
    })?;
    let params = Params::from_json(&p.config_json()).map_err(CodeRefusal::Internal)?;
    Ok((p.name.get_ref().clone(), params))
}

/// A member's second-factor codes, checked against the store: what `DisableTotp`
/// and a reauthentication share.
pub(crate) struct Codes<'a> {
    /// The store the codes are kept in.
    pub(crate) store: &'a dyn Store,
    /// The configuration (the lockout's and the code limit's settings).
    pub(crate) config: &'a Config,
}

impl Codes<'_> {
    fn store(&self) -> &dyn Store {
        self.store
    }

    /// The value under `key` in the key-value store of the plugin instance
    /// `instance` (the `totp` instance's secrets, pending secrets, last steps and
    /// recovery codes) as committed, or `None` if there is none.
    pub(crate) fn kv(&self, instance: &str, key: &str) -> Result<Option<String>, CodeRefusal> {
        Ok(self.store.kv_get(instance, key)?)
    }

    /// Sets (`Some`) or removes (`None`) each of `changes`' keys in the key-value
    /// store of the plugin instance `instance`, in one transaction: all or none.
    pub(crate) fn kv_set(
        &self,
        instance: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), CodeRefusal> {
        let ops: Vec<Op> = changes
            .iter()
            .map(|(key, value)| Op::KvSet {
                plugin: instance.to_owned(),
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        Ok(self.store.commit(&ops)?)
    }

    /// Checks `code` against the member's enrolled second factor, a current one-time
    /// code not used before or an unused recovery code, and uses it up: each is taken
    /// with one atomic swap in the store ([`Store::kv_swap`]), so that of concurrent
    /// uses of one code (a login, a reauthentication, another daemon) exactly one
    /// passes.
    pub(crate) fn check_code(
        &self,
        instance: &str,
        params: &Params,
        user_id: i64,
        secret: &str,
        code: &str,
    ) -> Result<(), CodeRefusal> {
        let key = flaskbbd_otp::decode_base32(secret).map_err(|e| {
            CodeRefusal::Internal(format!(
                "the stored secret of user {user_id} is {e}: reset the member's second factor"
            ))
        })?;
        if let Some(step) = params.matching_step(&key, code, now_secs()?) {
            let last_key = flaskbbd_otp::last_step_key(user_id);
            let stored = self.kv(instance, &last_key)?;
            let last = stored.as_deref().and_then(|s| s.parse::<u64>().ok());
            if last.is_none_or(|l| step > l)
                && self.store.kv_swap(
                    instance,
                    &last_key,
                    stored.as_deref(),
                    Some(&step.to_string()),
                )?
            {
                return Ok(());
            }
        }
        if flaskbbd_otp::looks_like_recovery_code(code)
            && self.use_recovery(instance, user_id, code)?
        {
            return Ok(());
        }
        tracing::info!(user_id, "account: second-factor code refused");
        Err(CodeRefusal::WrongCode)
    }

    /// Uses `code` if it is one of the member's unused recovery codes (see
    /// [`Codes::check_code`]); whether it was one. A concurrent use of another of the
    /// member's codes changes the stored codes: they are read again.
    fn use_recovery(&self, instance: &str, user_id: i64, code: &str) -> Result<bool, CodeRefusal> {
        let key = flaskbbd_otp::recovery_key(user_id);
        for _ in 0..RECOVERY_RETRIES {
            let Some(stored) = self.kv(instance, &key)? else {
                return Ok(false);
            };
            let Some(left) = RecoveryCodes::from_stored(&stored).and_then(|c| c.using(code)) else {
                return Ok(false);
            };
            if self
                .store
                .kv_swap(instance, &key, Some(&stored), Some(&left.to_stored()))?
            {
                return Ok(true);
            }
        }
        Err(CodeRefusal::Internal(format!(
            "the recovery codes of user {user_id} kept changing while one was used: try again"
        )))
    }

    /// Runs a code check under the lockout, as a login's is: the attempt is counted
    /// before the check (for the account, and from the address [`CODE_CHECKS`]: the
    /// forum sends none here, and a right password's reauthentication clears the
    /// `unknown` address's count), a locked account is refused without a check, and
    /// only a wrong code keeps its count. So a session with the password cannot guess
    /// codes here faster than at the login form.
    pub(crate) fn guarded<T>(
        &self,
        user_id: i64,
        check: impl FnOnce() -> Result<T, CodeRefusal>,
    ) -> Result<T, CodeRefusal> {
        let policy = lockout::Policy::new(&self.config.auth.lockout);
        let (subject, address, now) = (lockout::user_subject(user_id), CODE_CHECKS, Utc::now());
        let rows = policy.reserve(self.store(), &subject, address, now)?;
        let outcome = match policy.judge(&rows, address, now) {
            lockout::Verdict::Locked => {
                tracing::info!(
                    user_id,
                    "account: code check refused, the account is locked"
                );
                Err(CodeRefusal::WrongCode)
            }
            lockout::Verdict::Open { .. } => self.within_code_limit(user_id, now, check),
        };
        if !matches!(outcome, Err(CodeRefusal::WrongCode)) {
            let ops: Vec<Op> = policy
                .keys(&subject, address)
                .into_iter()
                .map(|key| Op::ReleasePenalty { key })
                .collect();
            self.store().commit(&ops)?;
        }
        outcome
    }
}

impl Codes<'_> {
    /// Runs `check` only within the account's code limit ([`lockout::CodeLimit`]):
    /// counted before, given back unless the code was wrong; refused unchecked
    /// (TooManyCodes) past the limit.
    fn within_code_limit<T>(
        &self,
        user_id: i64,
        now: chrono::DateTime<Utc>,
        check: impl FnOnce() -> Result<T, CodeRefusal>,
    ) -> Result<T, CodeRefusal> {
        let limit = lockout::CodeLimit::new(&self.config.auth.lockout);
        if limit.reserve(self.store(), user_id, now)? == lockout::CodeCheck::Refused {
            return Err(CodeRefusal::TooManyCodes);
        }
        let outcome = check();
        let op = match outcome {
            Err(CodeRefusal::WrongCode) => limit.wrong(user_id, now),
            _ => lockout::CodeLimit::release(user_id),
        };
        self.store().commit(&[op])?;
        outcome
    }
}

/// The time now in seconds since 1970, what a one-time code's time step is taken
/// from; an error if the system clock is set before 1970.
pub(crate) fn now_secs() -> Result<u64, CodeRefusal> {
    u64::try_from(Utc::now().timestamp())
        .map_err(|_| CodeRefusal::Internal("the system clock is before 1970".into()))
}

/// How many times a recovery code's use is tried again when another use of the same
/// member's codes changed them in between.
const RECOVERY_RETRIES: usize = 8;

/// The address the lockout counts `org.flaskbb.Account`'s code checks under (shown
/// as such by `ListLocks` and `GetUser`).
pub(crate) const CODE_CHECKS: &str = "account-code-checks";
