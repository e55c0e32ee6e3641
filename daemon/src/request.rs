//! One request's state while its chains run: the client's context, the changes it
//! will commit, and which hook impl is running (so a hung one can be named and the
//! request abandoned).
//!
//! A request is RUNNING until its worker finishes it or the async side gives up on it
//! at a timeout; exactly one of the two wins. Giving up is ABANDONED when the hung call
//! runs on in its thread, or CANCELLED when the call could be ended (an isolated
//! instance's host is killed), so the worker comes back. After either, a late plugin
//! call can no longer change what the request commits.

use std::{
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Instant,
};

use plugin_abi::sdk::HookError;

use crate::{
    hook::Hook,
    proto::Context,
    store::{Op, Store, StoreError, UserRecord},
};

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;
const CANCELLED: u8 = 3;

/// How a request's worker found it when done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// It finished first: its answer is the one given.
    Finished,
    /// The waiter abandoned it to a hung call (this thread was counted as stuck).
    Abandoned,
    /// The waiter cancelled its hung call (the thread was never counted as stuck).
    Cancelled,
}

/// Ends the hook call in flight at once (an isolated instance's kills its host).
#[derive(Clone)]
pub(crate) struct Cancel(pub Arc<dyn Fn() + Send + Sync>);

/// What [`Request::give_up`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GaveUp {
    /// The call was ended with its cancel (an isolated call's host killed).
    Cancelled,
    /// The call had no cancel: the request is given up, its call goes on where it runs.
    Abandoned,
    /// The request finished first.
    Finished,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cancel")
    }
}

/// Which instance a call in flight is in now, when one call serves several (a run of
/// impls in one plugin host): asked when the call is blamed for a timeout.
#[derive(Clone)]
pub(crate) struct Blame(pub Arc<dyn Fn() -> Option<Arc<str>> + Send + Sync>);

impl std::fmt::Debug for Blame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Blame")
    }
}

/// A request's changes could not be written; it answers an internal error.
#[derive(Debug, thiserror::Error)]
#[error("the request's changes could not be saved: {0}")]
pub(crate) struct CommitError(pub StoreError);

/// The impl a request is waiting on.
#[derive(Debug, Clone)]
pub(crate) struct CurrentCall {
    /// The instance called.
    pub instance: Arc<str>,
    /// The hook called.
    pub hook: Hook,
    /// When the call started.
    pub since: Instant,
    /// How to end the call, when it can be ended.
    pub cancel: Option<Cancel>,
    /// Who is running now, when the call serves several instances.
    pub blame: Option<Blame>,
}

/// One request's state, shared by its worker and its async waiter.
pub(crate) struct Request {
    /// The client's context (without what only the daemon may say).
    pub context: Context,
    /// The database, which the request's changes are committed to.
    pub store: Arc<dyn Store>,
    pending: Mutex<Vec<Op>>,
    current: Mutex<Option<CurrentCall>>,
    state: AtomicU8,
    /// The longest answer delay a plugin asked for, in milliseconds.
    delay_ms: std::sync::atomic::AtomicU64,
    /// Whether the lockout reserved this request's attempt as a failure up front
    /// (so that the failure hook does not count it twice, and a success gives it back).
    failure_reserved: Mutex<Vec<crate::store::PenaltyKey>>,
    /// Context keys plugins asked the client for (`Host::ask_for`), in order, once each.
    asked: Mutex<Vec<String>>,
    /// The user whose password a pending-login token proved (the second step of a
    /// two-step login): the built-in provider answers them without a password.
    preauthenticated: Mutex<Option<i64>>,
    /// Whether a reauthentication must also pass the member's second factor (a code
    /// in the context) before anything a success clears is queued.
    second_factor: std::sync::atomic::AtomicBool,
    /// Users looked up by identifier during this request. The request's own writes
    /// wait for its commit, so within it a lookup's answer does not change: the
    /// lockout, the provider and the failure hook share one lookup.
    users: Mutex<std::collections::HashMap<String, Option<UserRecord>>>,
    /// The daemon was serving nothing else when this request came: the plugin hosts
    /// it crosses to run beside its thread ([`crate::ipc::placement`]).
    near: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these short locks leaves consistent data; go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Request {
    /// A new request with the client's `context` (a passkey's verification removed:
    /// only the daemon says that).
    pub(crate) fn new(store: Arc<dyn Store>, mut context: Context) -> Arc<Request> {
        // Only the daemon says a passkey was verified (`after_passkey`).
        context.remove(crate::webauthn::AUTHENTICATED_BY);
        Request::build(store, context)
    }

    /// A request for the member a verified passkey names: its context says so
    /// (`authenticated_by = passkey`), which the second factor honours.
    pub(crate) fn after_passkey(store: Arc<dyn Store>, mut context: Context) -> Arc<Request> {
        context.insert(
            crate::webauthn::AUTHENTICATED_BY.to_owned(),
            crate::webauthn::PASSKEY.to_owned(),
        );
        Request::build(store, context)
    }

    fn build(store: Arc<dyn Store>, context: Context) -> Arc<Request> {
        Arc::new(Request {
            context,
            store,
            pending: Mutex::new(Vec::new()),
            current: Mutex::new(None),
            state: AtomicU8::new(RUNNING),
            delay_ms: std::sync::atomic::AtomicU64::new(0),
            failure_reserved: Mutex::new(Vec::new()),
            asked: Mutex::new(Vec::new()),
            preauthenticated: Mutex::new(None),
            second_factor: std::sync::atomic::AtomicBool::new(false),
            users: Mutex::new(std::collections::HashMap::new()),
            near: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Says whether the daemon was serving nothing else when this request came.
    pub(crate) fn set_near(&self, near: bool) {
        self.near.store(near, Ordering::Relaxed);
    }

    /// Whether the plugin hosts this request crosses to should run beside its thread.
    pub(crate) fn is_near(&self) -> bool {
        self.near.load(Ordering::Relaxed)
    }

    /// A user by username or email, looked up once per request.
    pub(crate) fn find_user(&self, identifier: &str) -> Result<Option<UserRecord>, StoreError> {
        if let Some(found) = lock(&self.users).get(identifier) {
            return Ok(found.clone());
        }
        let found = self.store.find_user(identifier)?;
        lock(&self.users).insert(identifier.to_owned(), found.clone());
        Ok(found)
    }

    /// Forgets a cached lookup (a user was just created under that name).
    pub(crate) fn forget_user(&self, identifier: &str) {
        lock(&self.users).remove(identifier);
    }

    /// Queues a change for the request's commit.
    pub(crate) fn push(&self, op: Op) -> Result<(), HookError> {
        if self.is_abandoned() {
            return Err(HookError::failed(
                "the request this call belongs to has already ended (it timed out)",
            ));
        }
        lock(&self.pending).push(op);
        Ok(())
    }

    /// How many changes are queued now: a mark for [`Request::discard_since`].
    pub(crate) fn mark(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Forgets the changes queued after `mark`: what a chain queued for a login that
    /// has not happened yet (the second step is still to come).
    pub(crate) fn discard_since(&self, mark: usize) {
        lock(&self.pending).truncate(mark);
    }

    /// Records that a pending-login token proved `user_id`'s password.
    /// Asks that a reauthentication of an enrolled member also checks the code in
    /// the context (`otp`), between the password and the success hooks.
    pub(crate) fn require_second_factor(&self) {
        self.second_factor.store(true, Ordering::Release);
    }

    /// Whether [`Request::require_second_factor`] was asked.
    pub(crate) fn second_factor_required(&self) -> bool {
        self.second_factor.load(Ordering::Acquire)
    }

    /// Records that a pending-login token proved `user_id`'s password.
    pub(crate) fn set_preauthenticated(&self, user_id: i64) {
        *lock(&self.preauthenticated) = Some(user_id);
    }

    /// The user a pending-login token proved the password of, if any.
    pub(crate) fn preauthenticated(&self) -> Option<i64> {
        *lock(&self.preauthenticated)
    }

    /// Whether changes wait for the request's commit.
    pub(crate) fn has_changes(&self) -> bool {
        !lock(&self.pending).is_empty()
    }

    /// How many changes wait for the request's commit.
    #[cfg(test)]
    pub(crate) fn pending_changes(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Commits the changes the request queued, in one transaction, and forgets them.
    /// This is the one place a request's changes are written: at its end, success or
    /// failure, and after a timeout (for what was queued before the hung call).
    pub(crate) fn commit(&self) -> Result<(), CommitError> {
        let ops = std::mem::take(&mut *lock(&self.pending));
        if ops.is_empty() {
            return Ok(());
        }
        self.store.commit(&ops).map_err(|e| {
            tracing::error!("commit of {} change(s) failed: {e}", ops.len());
            CommitError(e)
        })
    }

    /// A plugin's key-value read, seeing the request's own pending writes first.
    pub(crate) fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<String>, HookError> {
        let pending = lock(&self.pending).iter().rev().find_map(|op| match op {
            Op::KvSet {
                plugin: p,
                key: k,
                value,
            } if p == plugin && k == key => Some(value.clone()),
            _ => None,
        });
        match pending {
            Some(v) => Ok(v),
            None => self
                .store
                .kv_get(plugin, key)
                .map_err(|e| HookError::failed(e.to_string())),
        }
    }

    /// Records that this request's attempt was counted as a failure in `keys`
    /// before it was checked (the lockout's reservation).
    pub(crate) fn mark_failure_reserved(&self, keys: Vec<crate::store::PenaltyKey>) {
        *lock(&self.failure_reserved) = keys;
    }

    /// Whether [`Request::mark_failure_reserved`] was called.
    pub(crate) fn failure_reserved(&self) -> bool {
        !lock(&self.failure_reserved).is_empty()
    }

    /// Gives the reservation back (at the commit): the attempt reached no verdict
    /// (a plugin or the store failed), so it is no failure of the member's.
    pub(crate) fn release_reservation(&self) {
        let keys = std::mem::take(&mut *lock(&self.failure_reserved));
        lock(&self.pending).extend(keys.into_iter().map(|key| Op::ReleasePenalty { key }));
    }

    /// Asks for the answer to be held back by at least `ms`.
    pub(crate) fn delay_answer(&self, ms: u64) {
        self.delay_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// How long the answer must be held back.
    pub(crate) fn answer_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.delay_ms.load(Ordering::Acquire))
    }

    /// Records that a plugin asked the client for the context key `key`. Keys are
    /// short names (`otp`); anything else is ignored with a warning naming `instance`.
    pub(crate) fn ask_for(&self, instance: &str, key: &str) {
        let valid = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !valid {
            tracing::warn!(
                instance,
                "ignored ask_for({key:?}): a context key is 1-64 characters of letters, digits, '_', '-' or '.'"
            );
            return;
        }
        let mut asked = lock(&self.asked);
        if !asked.iter().any(|k| k == key) {
            asked.push(key.to_owned());
        }
    }

    /// The context keys plugins asked the client for.
    pub(crate) fn asked(&self) -> Vec<String> {
        lock(&self.asked).clone()
    }

    /// Marks `instance` as running `hook` now.
    pub(crate) fn enter(&self, instance: &Arc<str>, hook: Hook) {
        *lock(&self.current) = Some(CurrentCall {
            instance: instance.clone(),
            hook,
            since: Instant::now(),
            cancel: None,
            blame: None,
        });
    }

    /// Says how the call running now can be ended if it runs past its timeout; false
    /// when the request was given up already (its timeout passed while the call was
    /// getting ready, a plugin host starting): the call must then not start, since
    /// nothing would end it. Decided under the same lock as
    /// [`Request::give_up`], so a call is either armed before the watch looks (and
    /// ended by its cancel) or learns here that it was given up.
    #[must_use]
    pub(crate) fn arm_cancel(&self, cancel: Cancel) -> bool {
        let mut current = lock(&self.current);
        if self.state.load(Ordering::Acquire) != RUNNING {
            return false;
        }
        if let Some(c) = current.as_mut() {
            c.cancel = Some(cancel);
        }
        true
    }

    /// Gives up on the request whose call ran past its timeout: ends the call with its
    /// cancel when it has one, else abandons the request. Whether the call has a
    /// cancel is decided under the lock [`Request::arm_cancel`] takes, so a call armed
    /// meanwhile is ended, and one armed after learns that the request was given up.
    pub(crate) fn give_up(&self) -> GaveUp {
        let cancel = {
            let current = lock(&self.current);
            match current.as_ref().and_then(|c| c.cancel.clone()) {
                Some(cancel) => cancel,
                None if self.abandon() => return GaveUp::Abandoned,
                None => return GaveUp::Finished,
            }
        };
        if self.cancel(&cancel) {
            GaveUp::Cancelled
        } else {
            GaveUp::Finished
        }
    }

    /// Says how to learn which instance the call running now is in (a run of several
    /// impls in one plugin host): [`Request::current`] names that one.
    pub(crate) fn arm_blame(&self, blame: Blame) {
        if let Some(c) = lock(&self.current).as_mut() {
            c.blame = Some(blame);
        }
    }

    /// Marks that no impl is running.
    pub(crate) fn leave(&self) {
        *lock(&self.current) = None;
    }

    /// The impl running now, if any: in a run of several impls, the one the run is in.
    pub(crate) fn current(&self) -> Option<CurrentCall> {
        let mut c = lock(&self.current).clone()?;
        if let Some(now) = c.blame.as_ref().and_then(|b| (b.0)()) {
            c.instance = now;
        }
        Some(c)
    }

    /// The worker is done with the request: whether it finished first, or the waiter
    /// gave up on it before.
    pub(crate) fn finish(&self) -> Finish {
        match self
            .state
            .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Finish::Finished,
            Err(CANCELLED) => Finish::Cancelled,
            Err(_) => Finish::Abandoned,
        }
    }

    /// The waiter gives up on the request and ends its hung call with `cancel`;
    /// false when the worker finished first.
    fn cancel(&self, cancel: &Cancel) -> bool {
        let won = self
            .state
            .compare_exchange(RUNNING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            (cancel.0)();
        }
        won
    }

    /// The waiter gives up on the request; false when the worker finished first.
    fn abandon(&self) -> bool {
        self.state
            .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the waiter gave up on the request (abandoned or cancelled).
    pub(crate) fn is_abandoned(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), ABANDONED | CANCELLED)
    }
}
