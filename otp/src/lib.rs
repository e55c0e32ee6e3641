//! flaskbbd's second factor, in one place for the two that need it: the `totp`
//! plugin, which checks a member's code at login, and the daemon, which enrols
//! members (`org.flaskbb.Account`) and checks a secret before `flaskbbd store set`
//! keeps it. RFC 6238 codes come from the `totp-rs` crate; what is ours is where a
//! member's second factor lives in the plugin's key-value store, and the recovery
//! codes.
//!
//! Nothing here touches a store or a socket: every function is pure but for the
//! random numbers of [`new_secret`] and [`new_recovery_codes`].

#![forbid(unsafe_code)]

use constant_time_eq::constant_time_eq;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The refusal when an enrolled member sent no code.
pub const MISSING: &str = "A one-time code from your authenticator app is required.";
/// The refusal of a code that is not the current one (or an adjacent step's), nor an
/// unused recovery code.
pub const WRONG: &str = "The one-time code is wrong.";

/// The key of a member's enrolled base32 secret in the `totp` instance's store.
pub fn secret_key(user_id: i64) -> String {
    format!("secret:{user_id}")
}

/// The key of the last time step a member's code was accepted at (no code is
/// accepted twice).
pub fn last_step_key(user_id: i64) -> String {
    format!("last_step:{user_id}")
}

/// The key of a secret made by an enrolment that is not confirmed yet: the plugin
/// never reads it, so an unconfirmed enrolment changes nothing at login.
pub fn pending_key(user_id: i64) -> String {
    format!("pending:{user_id}")
}

/// The key of a member's recovery codes, hashed ([`RecoveryCodes`]).
pub fn recovery_key(user_id: i64) -> String {
    format!("recovery:{user_id}")
}

/// The HMAC hash, as RFC 6238 allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// HMAC-SHA1, what authenticator apps use.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    fn crate_algorithm(self) -> totp_rs::Algorithm {
        match self {
            Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
            Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
            Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

/// How codes are made and checked: the `totp` instance's `config` table, which the
/// daemon reads too, so that enrolment and login agree.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Digits of a code, 6 to 9.
    pub digits: u32,
    /// Seconds a code stands for.
    pub step_seconds: u64,
    /// Steps before and after the current one also accepted (clock skew).
    pub skew_steps: u64,
    /// The HMAC hash.
    pub algorithm: Algorithm,
    /// Refuse members who are not enrolled (the plugin's concern only).
    pub require: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            digits: 6,
            step_seconds: 30,
            skew_steps: 1,
            algorithm: Algorithm::Sha1,
            require: false,
        }
    }
}

impl Params {
    /// The parameters read from an instance's `config` (JSON), checked.
    pub fn from_json(config: &str) -> Result<Params, String> {
        let p: Params =
            serde_json::from_str(config).map_err(|e| format!("the totp instance's config: {e}"))?;
        p.check()?;
        Ok(p)
    }

    /// Refuses values no authenticator app could follow.
    pub fn check(&self) -> Result<(), String> {
        if !(6..=9).contains(&self.digits) {
            return Err("config key digits: use 6 to 9".into());
        }
        if self.step_seconds == 0 {
            return Err("config key step_seconds: must be at least 1".into());
        }
        // Each step either side is one more code that passes and one more HMAC per
        // guess; past a few minutes of clock drift, fix the clock instead.
        if self.skew_steps > MAX_SKEW_STEPS {
            return Err(format!(
                "config key skew_steps: use 0 to {MAX_SKEW_STEPS} (each step accepts one more code; fix the server's clock instead)"
            ));
        }
        Ok(())
    }

    fn totp(&self, key: &[u8]) -> totp_rs::TOTP {
        #[cfg(feature = "uri")]
        return totp_rs::TOTP::new_unchecked(
            self.algorithm.crate_algorithm(),
            self.digits as usize,
            0,
            self.step_seconds,
            key.to_vec(),
            None,
            String::new(),
        );
        #[cfg(not(feature = "uri"))]
        return totp_rs::TOTP::new_unchecked(
            self.algorithm.crate_algorithm(),
            self.digits as usize,
            0,
            self.step_seconds,
            key.to_vec(),
        );
    }

    /// The code of `key` at `unix_time`, zero-padded to `digits`.
    pub fn code_at(&self, key: &[u8], unix_time: u64) -> String {
        self.totp(key).generate(unix_time)
    }

    /// The time step whose code `code` is, among the current one (at `unix_time`)
    /// and `skew_steps` either side; `None` when none is.
    pub fn matching_step(&self, key: &[u8], code: &str, unix_time: u64) -> Option<u64> {
        let totp = self.totp(key);
        let current = unix_time / self.step_seconds;
        let code = code.trim();
        (current.saturating_sub(self.skew_steps)..=current + self.skew_steps).find(|&step| {
            let expected = totp.generate(step * self.step_seconds);
            constant_time_eq(expected.as_bytes(), code.as_bytes())
        })
    }

    /// The `otpauth://` URI an authenticator app reads (from a QR code): the secret,
    /// the issuer (the forum) and the account (the member), with these parameters.
    #[cfg(feature = "uri")]
    pub fn uri(&self, secret: &str, issuer: &str, account: &str) -> Result<String, String> {
        let key = decode_secret(secret)?;
        // The label's separator is ':', so neither part may hold one.
        let clean = |s: &str| s.replace(':', " ");
        let mut totp = self.totp(&key);
        totp.issuer = Some(clean(issuer));
        totp.account_name = clean(account);
        Ok(totp.get_url())
    }
}

/// The shortest secret [`decode_secret`] takes: 80 bits (16 base32 characters), as
/// RFC 4226's minimum of 128 bits is more than some existing enrolments have.
pub const MIN_SECRET_BYTES: usize = 10;

/// The most time steps either side of now a code may come from (`skew_steps`).
pub const MAX_SKEW_STEPS: u64 = 10;

/// Decodes a base32 secret as authenticator apps show it and checks that it is long
/// enough to be one ([`MIN_SECRET_BYTES`]): what a new secret must be. The error says
/// what is wrong with it, never the secret.
pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let key = decode_base32(text)?;
    if key.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "too short: {} bits, at least {} are needed (16 base32 characters)",
            key.len() * 8,
            MIN_SECRET_BYTES * 8
        ));
    }
    Ok(key)
}

/// Decodes base32 (RFC 4648; any case; spaces, dashes and `=` padding ignored), of
/// any length but empty: how a stored secret is read at login, so that secrets
/// enrolled before the length check keep working.
pub fn decode_base32(text: &str) -> Result<Vec<u8>, String> {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if let Some(bad) = clean.chars().find(|c| !matches!(c, 'A'..='Z' | '2'..='7')) {
        let what = if bad.is_ascii_graphic() {
            format!("{bad:?}")
        } else {
            "a character".to_owned()
        };
        return Err(format!(
            "not base32: {what} is not one of A-Z and 2-7 (RFC 4648)"
        ));
    }
    let key = totp_rs::Secret::Encoded(clean)
        .to_bytes()
        .map_err(|_| "not base32 (RFC 4648)".to_owned())?;
    if key.is_empty() {
        return Err("empty".into());
    }
    Ok(key)
}

/// Fills `buf` from the system's random source.
fn random(buf: &mut [u8]) -> Result<(), String> {
    getrandom::fill(buf).map_err(|e| format!("the system's random source failed: {e}"))
}

/// A new random secret of 160 bits (RFC 4226's recommendation), in base32.
pub fn new_secret() -> Result<String, String> {
    let mut key = [0u8; 20];
    random(&mut key)?;
    match totp_rs::Secret::Raw(key.to_vec()).to_encoded() {
        totp_rs::Secret::Encoded(s) => Ok(s),
        totp_rs::Secret::Raw(_) => Err("base32 encoding failed".into()),
    }
}

/// How many recovery codes a member gets at a time.
pub const RECOVERY_CODES: usize = 10;

/// The alphabet of recovery codes: lowercase letters and digits without the ones
/// people confuse (0/o, 1/l/i).
const RECOVERY_ALPHABET: &[u8; 31] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// New recovery codes, as the member sees them (`xxxx-xxxx-xxxx-xxxx`, 80 bits
/// each), and how they are stored ([`RecoveryCodes::to_stored`]).
pub fn new_recovery_codes() -> Result<(Vec<String>, RecoveryCodes), String> {
    let mut salt = [0u8; 16];
    random(&mut salt)?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut bytes = [0u8; 16];
        random(&mut bytes)?;
        // Nearly 5 bits a character: 16 of them make 79 bits.
        let chars: String = bytes
            .iter()
            .map(|b| RECOVERY_ALPHABET[(*b as usize) % 31] as char)
            .collect();
        codes.push(format!(
            "{}-{}-{}-{}",
            &chars[0..4],
            &chars[4..8],
            &chars[8..12],
            &chars[12..16]
        ));
    }
    let hashes = codes.iter().map(|c| hash_code(&salt, c)).collect();
    Ok((codes, RecoveryCodes { salt, hashes }))
}

/// A recovery code as typed, reduced to what identifies it: lowercase, without
/// spaces and dashes.
pub fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn hash_code(salt: &[u8; 16], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"flaskbbd recovery code v1\0");
    h.update(salt);
    h.update(normalize(code).as_bytes());
    h.finalize().into()
}

/// Whether `code` looks like a recovery code rather than a one-time code: the
/// plugin tries recovery codes only for such.
pub fn looks_like_recovery_code(code: &str) -> bool {
    let n = normalize(code);
    n.len() == 16 && n.chars().any(|c| c.is_ascii_alphabetic())
}

/// A member's unused recovery codes, as stored: a salt and one SHA-256 per code
/// (a code has 80 random bits, so a plain salted hash cannot be searched back). Never
/// the codes themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryCodes {
    salt: [u8; 16],
    hashes: Vec<[u8; 32]>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl RecoveryCodes {
    /// The stored text: `v1:<salt>:<hash>,<hash>,…` in hex.
    pub fn to_stored(&self) -> String {
        let hashes: Vec<String> = self.hashes.iter().map(|h| hex(h)).collect();
        format!("v1:{}:{}", hex(&self.salt), hashes.join(","))
    }

    /// Reads [`RecoveryCodes::to_stored`]'s text; `None` when it is not that.
    pub fn from_stored(text: &str) -> Option<RecoveryCodes> {
        let rest = text.strip_prefix("v1:")?;
        let (salt, hashes) = rest.split_once(':')?;
        Some(RecoveryCodes {
            salt: unhex(salt)?,
            hashes: if hashes.is_empty() {
                Vec::new()
            } else {
                hashes.split(',').map(unhex).collect::<Option<_>>()?
            },
        })
    }

    /// How many codes are left.
    pub fn left(&self) -> usize {
        self.hashes.len()
    }

    /// Uses `code`: the codes left without it, or `None` when it is not one of them.
    pub fn using(&self, code: &str) -> Option<RecoveryCodes> {
        let h = hash_code(&self.salt, code);
        let i = self.hashes.iter().position(|x| constant_time_eq(x, &h))?;
        let mut left = self.clone();
        left.hashes.remove(i);
        Some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the test seeds and the 8-digit codes at each time.
    #[test]
    fn rfc_6238_test_vectors() {
        let sha1 = b"12345678901234567890".to_vec();
        let sha256 = b"12345678901234567890123456789012".to_vec();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
        let p = |algorithm| Params {
            digits: 8,
            algorithm,
            ..Params::default()
        };
        let cases: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, a, b, c) in cases {
            assert_eq!(p(Algorithm::Sha1).code_at(&sha1, t), a, "SHA1 at {t}");
            assert_eq!(p(Algorithm::Sha256).code_at(&sha256, t), b, "SHA256 at {t}");
            assert_eq!(p(Algorithm::Sha512).code_at(&sha512, t), c, "SHA512 at {t}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_the_adjacent_ones_only() {
        let p = Params::default();
        let key = b"12345678901234567890";
        let now = 1_700_000_000;
        let code = p.code_at(key, now - 30);
        assert_eq!(p.matching_step(key, &code, now), Some(now / 30 - 1));
        assert_eq!(p.matching_step(key, &code, now + 60), None);
    }

    #[test]
    fn a_skew_past_the_bound_is_refused_naming_the_key() {
        let p = |skew_steps| Params {
            skew_steps,
            ..Params::default()
        };
        assert!(p(MAX_SKEW_STEPS).check().is_ok());
        let e = p(MAX_SKEW_STEPS + 1).check().unwrap_err();
        assert!(e.starts_with("config key skew_steps: use 0 to 10"), "{e}");
        assert!(p(u64::MAX).check().is_err());
    }

    #[test]
    fn secrets_are_checked_and_new_ones_decode() {
        assert_eq!(
            decode_secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
            b"12345678901234567890"
        );
        assert_eq!(decode_secret("gezd gnbv gy3t qojq").unwrap(), b"1234567890");
        assert!(decode_secret("not base32!")
            .unwrap_err()
            .contains("not base32"));
        assert!(decode_secret("MZXW6YTBOI")
            .unwrap_err()
            .contains("too short"));
        assert!(decode_secret("").is_err());
        assert_eq!(decode_base32("MZXW6YTBOI").unwrap(), b"foobar");
        assert!(decode_base32("").is_err());
        let s = new_secret().unwrap();
        assert_eq!(decode_secret(&s).unwrap().len(), 20);
    }

    #[test]
    fn a_recovery_code_works_once_and_is_stored_only_hashed() {
        let (codes, stored) = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let text = stored.to_stored();
        assert!(codes.iter().all(|c| !text.contains(&normalize(c))));
        let read = RecoveryCodes::from_stored(&text).unwrap();
        assert!(looks_like_recovery_code(&codes[3]));
        let left = read
            .using(&codes[3].to_uppercase().replace('-', " "))
            .unwrap();
        assert_eq!(left.left(), RECOVERY_CODES - 1);
        assert!(left.using(&codes[3]).is_none());
        assert!(left.using(&codes[4]).is_some());
        assert!(!looks_like_recovery_code("123456"));
    }
}
