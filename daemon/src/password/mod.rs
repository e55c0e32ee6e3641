//! Password hashing and verification: bcrypt, FlaskBB's 72-byte rule made explicit,
//! and the same cost for unknown users as for known ones.
//!
//! New hashes come from the `bcrypt` crate (`$2b$`). Verification, the daemon's whole
//! cost, runs in the verification pool ([`lanes`]): verifications that queue under load
//! are computed several at once on one core by the daemon's own engine
//! ([`flaskbbd_bcrypt`], bit for bit the system's libxcrypt); a verification alone on
//! its lane is computed by the system's libxcrypt, the faster engine for one hash on
//! the machines measured, or by the daemon's engine when libxcrypt is missing. A
//! property test checks the engine against libxcrypt and the crate; the comparison
//! with the stored hash is constant-time (`flaskbbd_bcrypt::constant_time_eq`).
//! libxcrypt is loaded in one place (`daemon/bcrypt/support/libxcrypt.rs`, which this
//! module, the engine's equivalence test and its benchmark include).

pub(crate) mod lanes;

use std::{
    cell::RefCell,
    ffi::{CStr, CString},
    sync::{Arc, OnceLock},
};

/// bcrypt reads at most this many bytes of a secret; more would be silently ignored.
pub(crate) const MAX_SECRET_BYTES: usize = flaskbbd_bcrypt::MAX_KEY_BYTES;

/// Why a password cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Over bcrypt's 72 bytes (the length given).
    #[error("the password is longer than bcrypt's {MAX_SECRET_BYTES} bytes ({0} bytes); bcrypt would ignore the rest, so choose a shorter one")]
    TooLong(usize),
    /// Empty.
    #[error("the password is empty")]
    Empty,
    /// With a NUL byte.
    #[error("the password contains a NUL character, which bcrypt cannot hash")]
    Nul,
    /// The hash function itself failed.
    #[error("hashing failed: {0}")]
    Hash(String),
}

#[path = "../../bcrypt/support/libxcrypt.rs"]
mod libxcrypt_lib;

use libxcrypt_lib::{Libxcrypt, CRYPT_DATA_SIZE};

/// The system's libxcrypt, loaded once (`None`, and a warning, when it is missing).
fn libxcrypt() -> Option<&'static Libxcrypt> {
    static LIB: OnceLock<Option<Libxcrypt>> = OnceLock::new();
    LIB.get_or_init(|| {
        Libxcrypt::load()
            .map_err(|e| {
                tracing::warn!("{e}: a lone verification runs on the daemon's own engine, one lane, about 5 % slower")
            })
            .ok()
    })
    .as_ref()
}

thread_local! {
    /// libxcrypt's scratch space; one per worker thread, zeroed once.
    static CRYPT_DATA: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; CRYPT_DATA_SIZE].into_boxed_slice());
}

/// libxcrypt's `crypt(secret, setting)` in this thread's scratch space, which is
/// cleared after (it held the key's schedule and the input).
fn crypt_here(lib: &Libxcrypt, secret: &[u8], setting: &str) -> Option<String> {
    let secret = zeroize::Zeroizing::new(CString::new(secret).ok()?.into_bytes_with_nul());
    let key = CStr::from_bytes_with_nul(&secret).ok()?;
    let setting = CString::new(setting).ok()?;
    CRYPT_DATA.with(|data| {
        let mut data = data.borrow_mut();
        let hash = lib.crypt(key, &setting, &mut data[..]);
        zeroize::Zeroize::zeroize(&mut data[..]);
        hash
    })
}

/// How a new password is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// bcrypt (`$2b$`), which the daemon verifies.
    Bcrypt,
    /// werkzeug's scrypt, which FlaskBB's own login verifies too.
    Werkzeug,
}

/// What verifying a secret found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the secret matched.
    pub ok: bool,
    /// The secret matched a hash that is not bcrypt: store a bcrypt hash instead
    /// (when configured).
    pub rehash: bool,
}

/// werkzeug's hash formats: `Some(matches)`, or `None` when `hash` is none of them.
fn verify_werkzeug(secret: &str, hash: &str) -> Option<bool> {
    let mut parts = hash.splitn(3, '$');
    let (method, salt, hex) = (parts.next()?, parts.next()?, parts.next()?);
    let mut m = method.split(':');
    let expected: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let (pw, salt) = (secret.as_bytes(), salt.as_bytes());
    let mut out = vec![0u8; expected.len()];
    match m.next()? {
        "pbkdf2" => {
            let digest = m.next().unwrap_or("sha256");
            // werkzeug wrote the iterations into the method from 0.15 on; 150000 before.
            let rounds: u32 = m
                .next()
                .map(str::parse)
                .transpose()
                .ok()?
                .unwrap_or(150_000);
            match digest {
                "sha256" => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(pw, salt, rounds, &mut out),
                "sha512" => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(pw, salt, rounds, &mut out),
                "sha1" => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(pw, salt, rounds, &mut out),
                _ => return None,
            }
        }
        "scrypt" => {
            let n: u64 = m.next()?.parse().ok()?;
            let r: u32 = m.next()?.parse().ok()?;
            let p: u32 = m.next()?.parse().ok()?;
            if !n.is_power_of_two() || n < 2 {
                return None;
            }
            let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p, out.len()).ok()?;
            scrypt::scrypt(pw, salt, &params, &mut out).ok()?;
        }
        _ => return None,
    }
    Some(!expected.is_empty() && constant_time_eq(&out, &expected))
}

/// Whether `secret` can be a new password stored in `format`: what
/// [`Verifier::hash_for`] would refuse, decided without hashing (so that a caller can
/// refuse it before any other work).
pub(crate) fn acceptable(format: impl Into<HashFormat>, secret: &str) -> bool {
    match format.into() {
        HashFormat::Bcrypt => {
            !secret.is_empty() && secret.len() <= MAX_SECRET_BYTES && !secret.contains('\0')
        }
        HashFormat::Werkzeug => !secret.is_empty(),
    }
}

/// werkzeug's `pbkdf2:sha256:600000$salt$hex` (its default before scrypt), which
/// every FlaskBB version verifies.
pub(crate) fn hash_werkzeug(secret: &str) -> Result<String, PasswordError> {
    if secret.is_empty() {
        return Err(PasswordError::Empty);
    }
    const SALT_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw)
        .map_err(|e| PasswordError::Hash(format!("no randomness for a salt: {e}")))?;
    let salt: String = raw
        .iter()
        .map(|b| SALT_CHARS[usize::from(*b) % SALT_CHARS.len()] as char)
        .collect();
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(secret.as_bytes(), salt.as_bytes(), 600_000, &mut out);
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("pbkdf2:sha256:600000${salt}${hex}"))
}

/// The marker stored for users with no local password where the column cannot be
/// NULL (FlaskBB's): no hash ever matches it.
pub(crate) const NO_PASSWORD: &str = "!";

/// Which implementation verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The daemon's own engine through the verification pool, batching what queues.
    Lanes,
    /// The system's libxcrypt (`crypt_rn`), one hash at a time (for comparisons).
    Libxcrypt,
    /// The `bcrypt` crate.
    BcryptCrate,
}

use flaskbbd_bcrypt::constant_time_eq;

/// Verifies secrets against stored hashes, spending the same bcrypt work whether or
/// not the user exists.
pub struct Verifier {
    cost: u32,
    dummy: String,
    engine: Engine,
    pool: Arc<lanes::Lanes>,
}

impl Verifier {
    /// Makes a verifier whose dummy hash has `cost`, the configured cost of new hashes,
    /// with its own verification pool of one slot per core.
    pub fn new(cost: u32) -> Result<Verifier, PasswordError> {
        Self::with_pool(cost, Arc::new(lanes::Lanes::per_core()))
    }

    /// A verifier computing on `pool` (a daemon shares one pool between the
    /// verifiers of its generations).
    pub fn with_pool(cost: u32, pool: Arc<lanes::Lanes>) -> Result<Verifier, PasswordError> {
        Self::build(cost, Engine::Lanes, pool)
    }

    /// A verifier on a given engine (for benchmarks and the equivalence test).
    pub fn with_engine(cost: u32, engine: Engine) -> Result<Verifier, PasswordError> {
        Self::build(cost, engine, Arc::new(lanes::Lanes::per_core()))
    }

    fn build(
        cost: u32,
        engine: Engine,
        pool: Arc<lanes::Lanes>,
    ) -> Result<Verifier, PasswordError> {
        if !(4..=31).contains(&cost) {
            return Err(PasswordError::Hash(format!(
                "bcrypt cost {cost} is outside 4..=31"
            )));
        }
        let dummy = dummy_hash(cost)?;
        if engine == Engine::Libxcrypt && libxcrypt().is_none() {
            return Err(PasswordError::Hash(
                "libxcrypt (libcrypt.so.1) is not available".into(),
            ));
        }
        Ok(Verifier {
            cost,
            dummy,
            engine,
            pool,
        })
    }

    /// The verification pool this verifier computes on.
    pub fn pool(&self) -> &Arc<lanes::Lanes> {
        &self.pool
    }

    /// The engine that verifies.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// A new password's hash in `format` (a store's schema says which: see
    /// `config`'s conversion): bcrypt, or inside FlaskBB's database a werkzeug hash
    /// FlaskBB's own login can verify too.
    pub fn hash_for(
        &self,
        format: impl Into<HashFormat>,
        secret: &str,
    ) -> Result<String, PasswordError> {
        match format.into() {
            HashFormat::Bcrypt => self.hash(secret),
            HashFormat::Werkzeug => hash_werkzeug(secret),
        }
    }

    /// Hashes a new password at the configured cost; refuses what bcrypt would
    /// truncate or could not hash.
    pub fn hash(&self, secret: &str) -> Result<String, PasswordError> {
        if secret.is_empty() {
            return Err(PasswordError::Empty);
        }
        if secret.len() > MAX_SECRET_BYTES {
            return Err(PasswordError::TooLong(secret.len()));
        }
        if secret.contains('\0') {
            return Err(PasswordError::Nul);
        }
        bcrypt::hash(secret, self.cost).map_err(|e| PasswordError::Hash(e.to_string()))
    }

    /// True when `secret` matches `hash`. A missing hash, a secret bcrypt cannot take
    /// whole (over 72 bytes, or with a NUL), or a hash format this build cannot check
    /// all cost one dummy verify and answer false.
    pub fn verify(&self, secret: &str, hash: Option<&str>) -> bool {
        self.verdict(secret, hash).ok
    }

    /// As [`Verifier::verify`], and whether the hash should be replaced by bcrypt.
    pub fn verdict(&self, secret: &str, hash: Option<&str>) -> Verdict {
        let whole = secret.len() <= MAX_SECRET_BYTES && !secret.contains('\0');
        let no = Verdict {
            ok: false,
            rehash: false,
        };
        match hash {
            Some(h) if is_bcrypt(h) && whole => Verdict {
                ok: self.check(secret, h),
                rehash: false,
            },
            Some(h) if is_bcrypt(h) => {
                self.dummy_verify(secret);
                no
            }
            Some(h) if h.starts_with(NO_PASSWORD) => {
                self.dummy_verify(secret);
                no
            }
            Some(h) => match verify_werkzeug(secret, h) {
                // werkzeug takes any length; bcrypt could not, so no rehash then.
                Some(ok) => Verdict {
                    ok,
                    rehash: ok && whole,
                },
                None => {
                    tracing::warn!(
                        "a stored password hash has a format this daemon cannot check ({})",
                        scheme_of(h)
                    );
                    self.dummy_verify(secret);
                    no
                }
            },
            None => {
                self.dummy_verify(secret);
                no
            }
        }
    }

    /// Whether `secret` (whole: at most 72 bytes, no NUL) matches the bcrypt `hash`.
    /// A hash that is not a setting bcrypt computes (a `$2x$` one, a bad cost or salt)
    /// costs a dummy verification and is logged, by its scheme only.
    fn check(&self, secret: &str, hash: &str) -> bool {
        match flaskbbd_bcrypt::Setting::parse(hash) {
            Ok(setting) => self.crypt_matches(secret, setting, hash),
            Err(e) => {
                tracing::warn!(
                    "a stored password hash ({}) cannot be checked: {e}",
                    scheme_of(hash)
                );
                self.dummy_verify(secret);
                false
            }
        }
    }

    fn crypt_matches(&self, secret: &str, setting: flaskbbd_bcrypt::Setting, hash: &str) -> bool {
        match (self.engine, libxcrypt()) {
            (Engine::Lanes, _) => self
                .pool
                .crypt(secret.as_bytes(), setting)
                .is_some_and(|out| constant_time_eq(out.as_bytes(), hash.as_bytes())),
            (Engine::Libxcrypt, Some(x)) => crypt_here(x, secret.as_bytes(), hash)
                .is_some_and(|out| constant_time_eq(out.as_bytes(), hash.as_bytes())),
            _ => bcrypt::verify(secret, hash).unwrap_or(false),
        }
    }

    /// Spends one verification's work on the dummy hash, through the same path as a
    /// real one.
    fn dummy_verify(&self, secret: &str) -> bool {
        let s: String = secret.chars().filter(|&c| c != '\0').collect();
        let s = &s[..s.floor_char_boundary(MAX_SECRET_BYTES)];
        if let Ok(setting) = flaskbbd_bcrypt::Setting::parse(&self.dummy) {
            let _ = self.crypt_matches(s, setting, &self.dummy);
        }
        false
    }
}

/// A well-formed bcrypt hash of `cost` that no secret matches, made without running
/// bcrypt (which at cost 12 took most of the daemon's start-up): a random salt in
/// bcrypt's own base64, and a random checksum. Checking a secret against it costs
/// exactly what checking against a real hash of that cost does, since the work is
/// all in deriving the checksum from the salt.
fn dummy_hash(cost: u32) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    let mut sum = [0u8; 23];
    getrandom::fill(&mut salt)
        .and_then(|()| getrandom::fill(&mut sum))
        .map_err(|e| PasswordError::Hash(format!("no randomness for the dummy hash: {e}")))?;
    Ok(format!(
        "$2b${cost:02}${}{}",
        flaskbbd_bcrypt::encode_base64(&salt),
        flaskbbd_bcrypt::encode_base64(&sum)
    ))
}

/// The system's libxcrypt `crypt(secret, setting)`, for benchmarks and the
/// equivalence test; `None` when libxcrypt is missing or refuses.
pub fn libxcrypt_crypt(secret: &str, setting: &str) -> Option<String> {
    crypt_here(libxcrypt()?, secret.as_bytes(), setting)
}

/// libxcrypt's hash of `key` with `setting` (the faster engine for a lone hash on the
/// machines measured), or `None` when it is missing or refuses.
pub(crate) fn libxcrypt_single(key: &[u8], setting: &str) -> Option<String> {
    crypt_here(libxcrypt()?, key, setting)
}

fn is_bcrypt(h: &str) -> bool {
    ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|p| h.starts_with(p))
}

/// The scheme part of a hash, for logs (never the hash itself).
fn scheme_of(h: &str) -> &str {
    // A crypt hash: `$id$...`, named by `$id`; werkzeug's: `method:...$salt$hash`.
    let name = match h.strip_prefix('$') {
        Some(rest) => rest.find('$').map(|end| &h[..=end]),
        None => h.split(['$', ':']).next(),
    };
    name.filter(|s| !s.is_empty() && s.len() < 16)
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engines() -> Vec<Verifier> {
        let mut v = vec![
            Verifier::new(4).unwrap(),
            Verifier::with_engine(4, Engine::BcryptCrate).unwrap(),
        ];
        if let Ok(x) = Verifier::with_engine(4, Engine::Libxcrypt) {
            v.push(x);
        }
        v
    }

    #[test]
    fn the_dummy_hash_is_one_every_engine_really_checks() {
        for cost in [4, 5] {
            let d = dummy_hash(cost).unwrap();
            assert_eq!(d.len(), 60, "{d}");
            assert!(d.starts_with(&format!("$2b${cost:02}$")));
            assert!(matches!(d.as_bytes()[28], b'.' | b'O' | b'e' | b'u'), "{d}");
            // The crate parses it and computes (a malformed hash would be an error).
            assert_eq!(bcrypt::verify("anything", &d).ok(), Some(false));
            // libxcrypt accepts it as a setting: it computes a hash of the same salt.
            if let Some(out) = libxcrypt_crypt("anything", &d) {
                assert_eq!(out[..29], d[..29]);
                assert_ne!(out, d);
            }
        }
        assert_ne!(dummy_hash(4).unwrap(), dummy_hash(4).unwrap());
    }

    #[test]
    fn long_secrets_are_refused_not_truncated() {
        for v in engines() {
            let long = "a".repeat(73);
            assert!(matches!(v.hash(&long), Err(PasswordError::TooLong(73))));
            let h = v.hash(&"a".repeat(72)).unwrap();
            assert!(v.verify(&"a".repeat(72), Some(&h)));
            // bcrypt alone would accept this one: same first 72 bytes.
            assert!(!v.verify(&long, Some(&h)), "{:?}", v.engine());
        }
    }

    #[test]
    fn unknown_users_wrong_passwords_and_nul_fail() {
        for v in engines() {
            let h = v.hash("right").unwrap();
            assert!(v.verify("right", Some(&h)), "{:?}", v.engine());
            assert!(!v.verify("wrong", Some(&h)));
            assert!(!v.verify("right", None));
            assert!(!v.verify("right\0", Some(&h)));
            assert!(matches!(v.hash("a\0b"), Err(PasswordError::Nul)));
            assert!(!v.verify("right", Some("pbkdf2:sha256:150000$x$y")));
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn werkzeug_hashes_verify_and_ask_for_a_rehash() {
        let v = Verifier::new(4).unwrap();
        // werkzeug's formats, computed with Python's hashlib as werkzeug does.
        let pbkdf2 = "pbkdf2:sha256:150000$Vj6IoFPt$3b761e61f8cc3809d2f613f38f64cca00675c1801a3add68a698d932c81c315f";
        let verdict = v.verdict("AlicePass123", Some(pbkdf2));
        assert_eq!(
            verdict,
            Verdict {
                ok: true,
                rehash: true
            },
            "pbkdf2"
        );
        assert!(!v.verify("AlicePass124", Some(pbkdf2)));
        let scrypt = "scrypt:32768:8:1$qn7LgFvJIl84DOPk$73293bc0224f0c436dfa3574b14761d68b4471108b97aa63bf7fe11133a61dd3cbd5ccff87da3741038b5f1a4c7d30848a20b7a3559260e6994f063a70bf73a6";
        assert_eq!(
            v.verdict("AlicePass123", Some(scrypt)),
            Verdict {
                ok: true,
                rehash: true
            },
            "scrypt"
        );
        assert!(!v.verify("alicepass123", Some(scrypt)));
        assert_eq!(
            v.verdict("x", Some("md5$salt$abc")),
            Verdict {
                ok: false,
                rehash: false
            }
        );
    }

    #[test]
    fn werkzeug_hashes_we_make_verify_and_no_password_never_matches() {
        let v = Verifier::new(4).unwrap();
        let h = hash_werkzeug("Secret123").unwrap();
        assert!(
            h.starts_with("pbkdf2:sha256:600000$") && h.len() == 21 + 16 + 1 + 64,
            "{h}"
        );
        assert!(v.verify("Secret123", Some(&h)));
        assert!(!v.verify("Secret124", Some(&h)));
        assert_ne!(h, hash_werkzeug("Secret123").unwrap(), "salted");
        assert!(!v.verify("", Some(NO_PASSWORD)));
        assert!(!v.verify("!", Some(NO_PASSWORD)));
    }

    #[test]
    fn the_daemon_verifies_on_its_own_engine_and_libxcrypt_is_there_to_compare() {
        assert_eq!(Verifier::new(4).unwrap().engine(), Engine::Lanes);
        // Debian's libcrypt1 is a required package: the equivalence test needs it.
        assert!(Verifier::with_engine(4, Engine::Libxcrypt).is_ok());
    }

    #[test]
    fn buggy_and_malformed_bcrypt_hashes_never_match() {
        let v = Verifier::new(4).unwrap();
        let good = "$2b$04$abcdefghijklmnopqrstuuBYyE5fvzi3mZlZSz3X9KbqbnJFjY3Hp6";
        let pw = "pw";
        let real = v.hash(pw).unwrap();
        assert!(v.verify(pw, Some(&real)));
        // libxcrypt would compute this $2x$ one; the daemon refuses the bug.
        let x = real.replacen("$2b$", "$2x$", 1);
        assert!(!v.verify(pw, Some(&x)));
        for bad in ["$2b$99$abcdefghijklmnopqrstuu", "$2b$04$abc", &good[..20]] {
            assert!(!v.verify(pw, Some(bad)), "{bad}");
        }
    }
}

/// The bcrypt crate (which hashes new passwords), the system's libxcrypt and the
/// daemon's engine (which verifies them; daemon/bcrypt/tests has its own test
/// against libxcrypt on arbitrary bytes and lanes) agree bit for bit: random passwords, random salts, costs 4 to 8,
/// and every variant `$2a$`, `$2b$`, `$2y$`, in both directions.
#[cfg(test)]
mod equivalence {
    use bcrypt::Version;

    use super::{libxcrypt_crypt, Engine, Verifier};

    /// xorshift64*: a fixed, reproducible stream (set FLASKBBD_SEED to explore others).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A password of 1 to 72 bytes mixing ASCII, accented letters, symbols and emoji.
    fn password(rng: &mut Rng) -> String {
        const ALPHABET: &[&str] = &[
            "a", "Z", "7", " ", "~", "$", "é", "ß", "€", "中", "😀", "\u{7f}", "\t", "'", "\"",
        ];
        let target = 1 + rng.below(72) as usize;
        let mut s = String::new();
        loop {
            let piece = ALPHABET[rng.below(ALPHABET.len() as u64) as usize];
            if s.len() + piece.len() > target {
                break;
            }
            s.push_str(piece);
        }
        if s.is_empty() {
            s.push('x');
        }
        s
    }

    /// bcrypt's base64 alphabet; a 22-character salt's last character carries 2 bits.
    const BCRYPT64: &[u8] = flaskbbd_bcrypt::BASE64_ALPHABET;

    #[test]
    fn crate_and_libxcrypt_hashes_agree_bit_for_bit() {
        assert!(
            libxcrypt_crypt("x", "$2b$04$......................").is_some(),
            "libxcrypt is not available"
        );
        let seed = std::env::var("FLASKBBD_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_f1a5_0b0b_d00d);
        let mut rng = Rng(seed);
        let ours = Verifier::with_engine(4, Engine::Libxcrypt).unwrap();
        let crate_engine = Verifier::with_engine(4, Engine::BcryptCrate).unwrap();
        let lanes = Verifier::new(4).unwrap();
        let variant = |i: usize| match i % 3 {
            0 => (Version::TwoA, "2a"),
            1 => (Version::TwoB, "2b"),
            _ => (Version::TwoY, "2y"),
        };
        for case in 0..90 {
            let pw = password(&mut rng);
            let cost = 4 + (case % 5) as u32;
            let (version, tag) = variant(case);

            // The crate's hash, checked by libxcrypt.
            let mut salt = [0u8; 16];
            salt.iter_mut().for_each(|b| *b = rng.next() as u8);
            let by_crate = bcrypt::hash_with_salt(&pw, cost, salt)
                .unwrap()
                .format_for_version(version);
            assert_eq!(
                libxcrypt_crypt(&pw, &by_crate).as_deref(),
                Some(by_crate.as_str()),
                "case {case}: {pw:?} {by_crate}"
            );
            assert!(ours.verify(&pw, Some(&by_crate)), "case {case}");
            assert!(lanes.verify(&pw, Some(&by_crate)), "case {case}");
            assert!(
                !ours.verify(&format!("{pw}!"), Some(&by_crate)) || pw.len() >= 72,
                "case {case}"
            );

            // libxcrypt's hash from a random setting, checked by the crate.
            let mut setting = format!("${tag}${cost:02}$");
            for i in 0..22 {
                let c = if i == 21 {
                    b".Oeu"[rng.below(4) as usize]
                } else {
                    BCRYPT64[rng.below(64) as usize]
                };
                setting.push(c as char);
            }
            let by_libxcrypt = libxcrypt_crypt(&pw, &setting)
                .unwrap_or_else(|| panic!("case {case}: libxcrypt refused {setting}"));
            assert_eq!(by_libxcrypt.len(), 60);
            assert!(
                bcrypt::verify(&pw, &by_libxcrypt).unwrap(),
                "case {case}: {pw:?} {by_libxcrypt}"
            );
            assert!(crate_engine.verify(&pw, Some(&by_libxcrypt)), "case {case}");
            assert!(lanes.verify(&pw, Some(&by_libxcrypt)), "case {case}");
            assert!(
                !bcrypt::verify(format!("{pw}!"), &by_libxcrypt).unwrap() || pw.len() >= 72,
                "case {case}"
            );
        }
    }
}
