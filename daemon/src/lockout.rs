//! The lockout's policy: what the failure counts in `flaskbbd_penalties` mean under
//! `[auth.lockout]`, for the built-in that enforces it and for the operators who look
//! at and lift locks (`GetUser`, `Unlock`, `flaskbbd user list|unlock`).
//!
//! Counts live in the store, one row per account (all failures) and, under
//! `scope = "account_and_address"`, one per account and address. Accounts are counted
//! by id (`user:<id>`, whether named by username or email) and names no account has
//! by the name (`name:<identifier>`), so that an unknown name locks as a known one
//! does and no answer tells them apart.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use plugin_abi::sdk::address_bucket;

use crate::{
    config::{LockoutConfig, LockoutScope},
    proto::{AddressLock, LockState},
    store::{Op, Penalty, PenaltyKey, Store, StoreError, Timing, UserRecord},
};

/// The `kind` of the lockout's rows.
pub(crate) const KIND: &str = "lockout";

/// The address of requests that carry no `remote_addr`: they count as one client.
pub(crate) const UNKNOWN_ADDRESS: &str = "unknown";

/// `[auth.lockout]` as the built-in and the admin views apply it.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    attempts: u32,
    window: ChronoDuration,
    /// What a run of failures locks.
    pub scope: LockoutScope,
    /// Whether a lock answers with FlaskBB's own message.
    pub reveal: bool,
    account_attempts: u32,
    account_delay_ms: u64,
    account_max_delay_ms: u64,
}

/// What the counts say about one login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on, holding the answer back by this long (zero: not at all).
    Open { delay_ms: u64 },
    /// Refuse.
    Locked,
}

impl Policy {
    /// The policy of a validated configuration.
    pub(crate) fn new(c: &LockoutConfig) -> Policy {
        Policy {
            attempts: u32::try_from(c.attempts).unwrap_or(1).max(1),
            window: ChronoDuration::minutes(c.window_minutes),
            scope: c.scope,
            reveal: c.reveal,
            account_attempts: u32::try_from(c.account_attempts).unwrap_or(u32::MAX),
            account_delay_ms: c.account_delay_ms,
            account_max_delay_ms: c.account_max_delay_ms,
        }
    }

    /// The window in milliseconds, as penalty rows store it.
    fn window_ms(&self) -> i64 {
        self.window.num_milliseconds()
    }

    /// The address whose row a request counts in: its `remote_addr` as
    /// [`address_bucket`] groups it, or [`UNKNOWN_ADDRESS`].
    pub(crate) fn address(remote_addr: Option<&str>) -> String {
        match remote_addr.map(address_bucket) {
            Some(a) if !a.is_empty() => a,
            _ => UNKNOWN_ADDRESS.to_owned(),
        }
    }

    /// The rows a request reads and counts in: the account's, and under
    /// `account_and_address` the account's for `address`.
    pub(crate) fn keys(&self, subject: &str, address: &str) -> Vec<PenaltyKey> {
        let mut keys = vec![PenaltyKey::new(KIND, subject, "")];
        if self.scope == LockoutScope::AccountAndAddress {
            keys.push(PenaltyKey::new(KIND, subject, address));
        }
        keys
    }

    /// Reserves one attempt: counts it as a failure in every row it counts in, at
    /// once and committed ([`Store::reserve_penalties`]), and answers the rows as
    /// they stood before it, for [`Policy::judge`]. Concurrent attempts each see the
    /// ones reserved before them, so a burst gets at most `attempts` checks per row,
    /// on one daemon or several on one database. A success gives the reservation back
    /// ([`Policy::clear_on_success`]); a failure keeps it as its count.
    pub(crate) fn reserve(
        &self,
        store: &dyn Store,
        subject: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Penalty>, StoreError> {
        let keys = self.keys(subject, address);
        let mut rows = store.reserve_penalties(&keys, now, self.window_ms(), Timing::Touch)?;
        for row in &mut rows {
            row.failures = row.failures.saturating_sub(1);
        }
        Ok(rows)
    }

    /// Whether `p` still counts at `now` under this window (the window may have
    /// changed since the row was written).
    fn live(&self, p: &Penalty, now: DateTime<Utc>) -> bool {
        p.last_failure + self.window >= now
    }

    /// Whether `p`'s failures lock what it counts.
    fn locks(&self, p: &Penalty, now: DateTime<Utc>) -> bool {
        p.failures >= self.attempts && self.live(p, now)
    }

    /// The delay the account-wide count `p` asks for, under `account_and_address`.
    fn delay(&self, p: &Penalty, now: DateTime<Utc>) -> u64 {
        if self.scope != LockoutScope::AccountAndAddress
            || p.failures < self.account_attempts
            || !self.live(p, now)
        {
            return 0;
        }
        let doublings = (p.failures - self.account_attempts).min(32);
        self.account_delay_ms
            .saturating_mul(1u64 << doublings)
            .min(self.account_max_delay_ms)
    }

    /// What the rows of one login's account and address say.
    pub(crate) fn judge(&self, rows: &[Penalty], address: &str, now: DateTime<Utc>) -> Verdict {
        let account = rows.iter().find(|p| p.key.address.is_empty());
        let locked = match self.scope {
            LockoutScope::Account => account.is_some_and(|p| self.locks(p, now)),
            LockoutScope::AccountAndAddress => rows
                .iter()
                .any(|p| p.key.address == address && self.locks(p, now)),
        };
        if locked {
            return Verdict::Locked;
        }
        Verdict::Open {
            delay_ms: account.map_or(0, |p| self.delay(p, now)),
        }
    }

    /// The changes one failure makes: one more in each of the rows it counts in.
    pub(crate) fn count_failure(
        &self,
        subject: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Vec<Op> {
        self.keys(subject, address)
            .into_iter()
            .map(|key| Op::AddPenalty {
                key,
                at_ms: now.timestamp_millis(),
                window_ms: self.window_ms(),
            })
            .collect()
    }

    /// The changes a successful login makes: under `account` the account's count
    /// goes (FlaskBB's ClearFailedLogins); under `account_and_address` only the count
    /// of the address that proved itself, while the account-wide count, which others
    /// may be running up, runs out with its window (less the one failure this login
    /// reserved, when `reserved`: it was no failure).
    pub(crate) fn clear_on_success(&self, subject: &str, address: &str, reserved: bool) -> Vec<Op> {
        match self.scope {
            LockoutScope::Account => vec![Op::ClearPenalty {
                key: PenaltyKey::new(KIND, subject, ""),
            }],
            LockoutScope::AccountAndAddress => {
                let mut ops = vec![Op::ClearPenalty {
                    key: PenaltyKey::new(KIND, subject, address),
                }];
                if reserved {
                    ops.push(Op::ReleasePenalty {
                        key: PenaltyKey::new(KIND, subject, ""),
                    });
                }
                ops
            }
        }
    }

    /// The lock state of an account, from all its live rows, for operators.
    pub(crate) fn state(&self, rows: &[Penalty], now: DateTime<Utc>) -> LockState {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let until = |p: &Penalty| {
            self.locks(p, now)
                .then(|| time(p.last_failure + self.window))
        };
        let mut state = LockState::default();
        for p in rows.iter().filter(|p| self.live(p, now)) {
            if p.key.address.is_empty() {
                state.failures = p.failures;
                state.last_failure = Some(time(p.last_failure));
                state.delay_ms = self.delay(p, now);
                if self.scope == LockoutScope::Account {
                    state.locked_until = until(p);
                    state.locked = state.locked_until.is_some();
                }
            } else {
                let locked_until = match self.scope {
                    LockoutScope::AccountAndAddress => until(p),
                    LockoutScope::Account => None,
                };
                state.addresses.push(AddressLock {
                    address: p.key.address.clone(),
                    failures: p.failures,
                    last_failure: time(p.last_failure),
                    locked: locked_until.is_some(),
                    locked_until,
                });
            }
        }
        state
    }
}

/// The `kind` of the rows that count wrong second-factor codes.
pub(crate) const CODE_KIND: &str = "second-factor";

/// `[auth.lockout] code_attempts` and `code_window_hours`: the account-wide limit on
/// second-factor code checks. Whoever reaches the code step knows the password; the
/// lockout's rows (per address under `account_and_address`) would let them guess codes
/// from many addresses, so every wrong code of the account, from anywhere and on any
/// route (the login's second step, a reauthentication, `org.flaskbb.Account`), also
/// counts in one row per account. Past `code_attempts` within the window no code is
/// checked at all. A right code gives back only its own attempt; a password reset
/// (which a mailbox alone can make) leaves the row alone; an admin's unlock and a
/// reset of the member's second factor clear it.
#[derive(Debug, Clone)]
pub(crate) struct CodeLimit {
    attempts: u32,
    window: ChronoDuration,
}

/// Whether a code may be checked, after [`CodeLimit::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeCheck {
    /// Check it; the attempt is counted until [`CodeLimit::release`] gives it back.
    Allowed,
    /// Too many wrong codes: refuse it unchecked (the attempt was given back).
    Refused,
}

impl CodeLimit {
    /// The limit of a validated configuration.
    pub(crate) fn new(c: &LockoutConfig) -> CodeLimit {
        CodeLimit {
            attempts: u32::try_from(c.code_attempts).unwrap_or(1).max(1),
            window: ChronoDuration::hours(c.code_window_hours),
        }
    }

    /// The row of `user_id`'s code checks.
    pub(crate) fn key(user_id: i64) -> PenaltyKey {
        PenaltyKey::new(CODE_KIND, &user_subject(user_id), "")
    }

    /// Counts one code check of `user_id`, committed before the check so that a
    /// burst of concurrent guesses gets at most `code_attempts` checks, on one daemon
    /// or several on one database; whether the check may go on. A refused attempt is
    /// given back at once. The window runs from the last wrong code.
    pub(crate) fn reserve(
        &self,
        store: &dyn Store,
        user_id: i64,
        now: DateTime<Utc>,
    ) -> Result<CodeCheck, StoreError> {
        let key = CodeLimit::key(user_id);
        // The row's time stays: only a code that turns out wrong restarts the window
        // ([`CodeLimit::wrong`]), so right codes and refused attempts keep no old
        // mistake alive.
        let rows = store.reserve_penalties(
            std::slice::from_ref(&key),
            now,
            self.window.num_milliseconds(),
            Timing::Keep,
        )?;
        let before = rows.first().map_or(0, |p| p.failures.saturating_sub(1));
        if before < self.attempts {
            return Ok(CodeCheck::Allowed);
        }
        store.commit(&[CodeLimit::release(user_id)])?;
        tracing::warn!(
            user_id,
            "a second-factor code was refused unchecked: too many wrong codes for the account"
        );
        Ok(CodeCheck::Refused)
    }

    /// The change that makes a reserved check a wrong code's: the window restarts
    /// from it.
    pub(crate) fn wrong(&self, user_id: i64, now: DateTime<Utc>) -> Op {
        Op::TouchPenalty {
            key: CodeLimit::key(user_id),
            at_ms: now.timestamp_millis(),
            window_ms: self.window.num_milliseconds(),
        }
    }

    /// The change that gives back one reserved check (a right code, or a check that
    /// reached no verdict).
    pub(crate) fn release(user_id: i64) -> Op {
        Op::ReleasePenalty {
            key: CodeLimit::key(user_id),
        }
    }

    /// The code-check state of one row, for the admin views: failures, last one, and
    /// until when codes are refused (when they are).
    pub(crate) fn state(&self, p: &Penalty, now: DateTime<Utc>) -> Option<CodeLock> {
        if p.last_failure + self.window < now || p.failures == 0 {
            return None;
        }
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Some(CodeLock {
            failures: p.failures,
            last_failure: time(p.last_failure),
            locked_until: (p.failures >= self.attempts).then(|| time(p.last_failure + self.window)),
        })
    }
}

/// One account's wrong second-factor codes, as the admin views show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeLock {
    /// Wrong codes counted within the window.
    pub failures: u32,
    /// When the last was counted.
    pub last_failure: String,
    /// Until when every code is refused unchecked, when the limit is reached.
    pub locked_until: Option<String>,
}

/// The subject an account's failures are counted under: its id when it exists, else
/// the name as given.
pub(crate) fn subject(record: Option<&UserRecord>, identifier: &str) -> String {
    match record {
        Some(r) => user_subject(r.user.id),
        None => format!("name:{identifier}"),
    }
}

/// The subject of the account with id `id`.
pub(crate) fn user_subject(id: i64) -> String {
    format!("user:{id}")
}

/// The lock state of the account with id `user_id`, read from the store.
pub(crate) fn lock_state(
    policy: &Policy,
    store: &dyn Store,
    user_id: i64,
    now: DateTime<Utc>,
) -> Result<LockState, StoreError> {
    let rows = store.penalties(KIND, &user_subject(user_id), None, now)?;
    Ok(policy.state(&rows, now))
}

/// What lifting a lock changes, read from the store and not yet written: the rows
/// that go, as one commit's changes, and how many live counts they hold.
#[derive(Debug, Default)]
pub(crate) struct Lift {
    /// The changes, for one [`Store::commit`] (with others, when the caller has any).
    pub ops: Vec<Op>,
    /// How many live counts go.
    pub cleared: usize,
}

/// Reads what lifting the lock of the account `identifier` names changes, and of the
/// name itself (the same name may have been counted before the account existed):
/// every count, or only `address`'s. The addresses whose counts go lose their
/// rate-limit penalties too (the rows plugins such as `ratelimit` keep per address),
/// so that the next login is not held back; lifting every count also clears the
/// account's failed-login counter (`users.login_attempts`, what `user list` shows)
/// and, with `codes`, its count of wrong second-factor codes ([`CodeLimit`]).
pub(crate) fn lift(
    store: &dyn Store,
    identifier: &str,
    address: Option<&str>,
    codes: bool,
    now: DateTime<Utc>,
) -> Result<Lift, StoreError> {
    let record = store.find_user(identifier)?;
    let address = address.map(|a| Policy::address(Some(a)));
    let mut subjects = vec![subject(None, identifier)];
    if record.is_some() {
        subjects.push(subject(record.as_ref(), identifier));
    }
    let mut lift = Lift::default();
    let mut addresses = std::collections::BTreeSet::new();
    for s in subjects {
        let only = address
            .as_ref()
            .map(|a| PenaltyKey::new(KIND, &s, a).address);
        for p in store.penalties(KIND, &PenaltyKey::new(KIND, &s, "").subject, None, now)? {
            if only.as_ref().is_some_and(|a| *a != p.key.address) {
                continue;
            }
            if !p.key.address.is_empty() {
                addresses.insert(p.key.address.clone());
            }
            lift.cleared += 1;
            lift.ops.push(Op::ClearPenalty { key: p.key });
        }
    }
    let whole = address.is_none();
    if let Some(a) = address {
        addresses.insert(a);
    }
    for p in address_penalties(store, &addresses, now)? {
        lift.cleared += 1;
        lift.ops.push(Op::ClearPenalty { key: p.key });
    }
    if let (Some(r), true) = (&record, whole) {
        if codes {
            for p in store.penalties(CODE_KIND, &user_subject(r.user.id), None, now)? {
                lift.cleared += 1;
                lift.ops.push(Op::ClearPenalty { key: p.key });
            }
        }
        lift.ops.push(Op::ClearFailedLogins { user_id: r.user.id });
    }
    Ok(lift)
}

/// Lifts the lock of the account `identifier` names ([`lift`], the count of wrong
/// codes included when every count goes), in one commit; how many live counts went.
pub(crate) fn unlock(
    store: &dyn Store,
    identifier: &str,
    address: Option<&str>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let lift = lift(store, identifier, address, address.is_none(), now)?;
    store.commit(&lift.ops)?;
    Ok(lift.cleared)
}

/// The plugins' live penalty rows (`plugin:<instance>`) counted for each of
/// `addresses`: the per-address rows of a rate limiter, keyed by the address as the
/// lockout counts it.
fn address_penalties(
    store: &dyn Store,
    addresses: &std::collections::BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<Vec<Penalty>, StoreError> {
    if addresses.is_empty() {
        return Ok(Vec::new());
    }
    Ok(store
        .live_penalties(now)?
        .into_iter()
        .filter(|p| {
            p.key.kind.starts_with("plugin:")
                && p.key.address.is_empty()
                && addresses.contains(&p.key.subject)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(scope: LockoutScope) -> Policy {
        Policy::new(&LockoutConfig {
            scope,
            attempts: 3,
            account_attempts: 10,
            account_delay_ms: 1000,
            account_max_delay_ms: 8000,
            ..LockoutConfig::default()
        })
    }

    fn row(address: &str, failures: u32, ago_minutes: i64, now: DateTime<Utc>) -> Penalty {
        let last = now - ChronoDuration::minutes(ago_minutes);
        Penalty {
            key: PenaltyKey::new(KIND, "user:1", address),
            failures,
            last_failure: last,
            expires: last + ChronoDuration::minutes(15),
        }
    }

    #[test]
    fn under_account_scope_the_account_count_locks_everywhere() {
        let (p, now) = (policy(LockoutScope::Account), Utc::now());
        assert_eq!(
            p.judge(&[row("", 3, 1, now)], "1.2.3.4", now),
            Verdict::Locked
        );
        assert_eq!(
            p.judge(&[row("", 2, 1, now)], "1.2.3.4", now),
            Verdict::Open { delay_ms: 0 }
        );
        // Past the window a count no longer locks, whatever it says.
        assert_eq!(
            p.judge(&[row("", 9, 16, now)], "1.2.3.4", now),
            Verdict::Open { delay_ms: 0 }
        );
        assert_eq!(p.keys("user:1", "1.2.3.4").len(), 1);
    }

    #[test]
    fn under_account_and_address_scope_only_the_failing_address_is_locked() {
        let (p, now) = (policy(LockoutScope::AccountAndAddress), Utc::now());
        let rows = [row("", 3, 1, now), row("6.6.6.6", 3, 1, now)];
        assert_eq!(p.judge(&rows, "6.6.6.6", now), Verdict::Locked);
        assert_eq!(
            p.judge(&rows[..1], "1.2.3.4", now),
            Verdict::Open { delay_ms: 0 }
        );
        // Many addresses together bring delays, doubling up to the maximum, no lock.
        let delay = |n| match p.judge(&[row("", n, 1, now)], "1.2.3.4", now) {
            Verdict::Open { delay_ms } => delay_ms,
            Verdict::Locked => panic!("locked"),
        };
        assert_eq!(
            [
                delay(9),
                delay(10),
                delay(11),
                delay(12),
                delay(13),
                delay(40)
            ],
            [0, 1000, 2000, 4000, 8000, 8000]
        );
    }

    #[test]
    fn the_state_shows_the_locks_and_their_end() {
        let (p, now) = (policy(LockoutScope::AccountAndAddress), Utc::now());
        let s = p.state(
            &[
                row("", 11, 1, now),
                row("6.6.6.6", 3, 1, now),
                row("7.7.7.7", 1, 2, now),
            ],
            now,
        );
        assert!(!s.locked);
        assert_eq!((s.failures, s.delay_ms), (11, 2000));
        assert_eq!(s.addresses.len(), 2);
        assert!(s.addresses[0].locked && s.addresses[0].locked_until.is_some());
        assert!(!s.addresses[1].locked && s.addresses[1].locked_until.is_none());
    }
}
