//! Password hashing and verification: bcrypt, FlaskBB's 72-byte rule made explicit,
//! and the same cost for unknown users as for known ones.

/// bcrypt reads at most this many bytes of a secret; more would be silently ignored.
pub const MAX_SECRET_BYTES: usize = 72;

/// Why a password cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is longer than bcrypt's {MAX_SECRET_BYTES} bytes ({0} bytes); bcrypt would ignore the rest, so choose a shorter one")]
    TooLong(usize),
    #[error("the password is empty")]
    Empty,
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// Verifies secrets against stored hashes, spending the same bcrypt work whether or
/// not the user exists.
pub struct Verifier {
    cost: u32,
    dummy: String,
}

impl Verifier {
    /// Makes a verifier whose dummy hash has `cost`, the configured cost of new hashes.
    pub fn new(cost: u32) -> Result<Verifier, PasswordError> {
        let dummy = bcrypt::hash("flaskbbd: no such user", cost)
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        Ok(Verifier { cost, dummy })
    }

    /// Hashes a new password at the configured cost; refuses what bcrypt would truncate.
    pub fn hash(&self, secret: &str) -> Result<String, PasswordError> {
        if secret.is_empty() {
            return Err(PasswordError::Empty);
        }
        if secret.len() > MAX_SECRET_BYTES {
            return Err(PasswordError::TooLong(secret.len()));
        }
        bcrypt::hash(secret, self.cost).map_err(|e| PasswordError::Hash(e.to_string()))
    }

    /// True when `secret` matches `hash`. A missing hash, an over-long secret or a
    /// hash format this build cannot check all cost one dummy verify and answer false.
    pub fn verify(&self, secret: &str, hash: Option<&str>) -> bool {
        match hash {
            Some(h) if secret.len() <= MAX_SECRET_BYTES && is_bcrypt(h) => {
                bcrypt::verify(secret, h).unwrap_or(false)
            }
            Some(h) if !is_bcrypt(h) => {
                tracing::warn!(
                    "a stored password hash is not bcrypt ({}); it cannot be verified",
                    scheme_of(h)
                );
                self.dummy_verify(secret)
            }
            _ => self.dummy_verify(secret),
        }
    }

    fn dummy_verify(&self, secret: &str) -> bool {
        let s = if secret.len() > MAX_SECRET_BYTES {
            &secret[..secret.floor_char_boundary(MAX_SECRET_BYTES)]
        } else {
            secret
        };
        let _ = bcrypt::verify(s, &self.dummy);
        false
    }
}

fn is_bcrypt(h: &str) -> bool {
    ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|p| h.starts_with(p))
}

/// The scheme part of a hash, for logs (never the hash itself).
fn scheme_of(h: &str) -> &str {
    h.split(['$', ':'])
        .next()
        .filter(|s| !s.is_empty() && s.len() < 16)
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_secrets_are_refused_not_truncated() {
        let v = Verifier::new(4).unwrap();
        let long = "a".repeat(73);
        assert!(matches!(v.hash(&long), Err(PasswordError::TooLong(73))));
        let h = v.hash(&"a".repeat(72)).unwrap();
        assert!(v.verify(&"a".repeat(72), Some(&h)));
        // bcrypt alone would accept this one: same first 72 bytes.
        assert!(!v.verify(&long, Some(&h)));
    }

    #[test]
    fn unknown_users_and_wrong_passwords_fail() {
        let v = Verifier::new(4).unwrap();
        let h = v.hash("right").unwrap();
        assert!(v.verify("right", Some(&h)));
        assert!(!v.verify("wrong", Some(&h)));
        assert!(!v.verify("right", None));
        assert!(!v.verify("right", Some("pbkdf2:sha256:150000$x$y")));
    }
}
