//! Pending logins: the token between the two steps of a login with a second factor.
//! After a right password, when a second factor asks for a code the client did not
//! send, the daemon answers a token instead of a failure; the client sends it back
//! with the code alone (context `pending_login`), and the password is not asked for
//! again.
//!
//! A token is 256 random bits, good once, for five minutes, for the account it was
//! made for and from the address (as the lockout counts it) it was made for. It is
//! kept as a row of `flaskbbd_penalties` (kind `pending-login`) whose subject is the
//! token's SHA-256 and the account, and whose address is the client's: so every
//! daemon on a shared database knows it, taking it is one `DELETE` (of two
//! concurrent uses exactly one deletes the row), it expires and is pruned like any
//! count, and the database never holds a usable token.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::{
    request::Request,
    store::{Op, PenaltyKey, Store, StoreError},
};

/// The `kind` of pending-login rows.
pub(crate) const KIND: &str = "pending-login";

/// The context key the client sends the token back in.
pub(crate) const CONTEXT_KEY: &str = "pending_login";

/// How long a token is good for.
pub(crate) const LIFETIME_MS: i64 = 5 * 60 * 1000;

fn subject(token: &str, user_id: i64) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}:{user_id}")
}

/// Makes a token for `user_id` from `address` and queues its row for the request's
/// commit; the token, to answer once.
pub(crate) fn issue(req: &Request, user_id: i64, address: &str) -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the system's random source failed: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    req.push(Op::AddPenalty {
        key: PenaltyKey::new(KIND, &subject(&token, user_id), address),
        at_ms: Utc::now().timestamp_millis(),
        window_ms: LIFETIME_MS,
    })
    .map_err(|e| e.to_string())?;
    Ok(token)
}

/// Takes `token` for `user_id` from `address`: true when it was good (it is gone
/// now), false when it is unknown, used, expired, or another account's or address's.
pub(crate) fn redeem(
    store: &dyn Store,
    token: &str,
    user_id: i64,
    address: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let key = PenaltyKey::new(KIND, &subject(token, user_id), address);
    Ok(store.clear_penalties(KIND, &key.subject, Some(&key.address), now)? == 1)
}

/// The changes that end every pending second step of `user_id`'s logins: what a
/// password change or reset does, so that a token the old password earned cannot
/// complete a login after it.
pub(crate) fn forget(
    store: &dyn Store,
    user_id: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Op>, StoreError> {
    let suffix = format!(":{user_id}");
    Ok(store
        .live_penalties(now)?
        .into_iter()
        .filter(|p| p.key.kind == KIND && p.key.subject.ends_with(&suffix))
        .map(|p| Op::ClearPenalty { key: p.key })
        .collect())
}
