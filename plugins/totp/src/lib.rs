//! `totp`: a second factor in `flaskbb_post_authenticate`. After the password checked
//! out, the request context's `otp` must hold the RFC 6238 code of the user's secret
//! for the current time step (or an adjacent one, for clock skew), and no code may
//! be used twice; or one of the member's unused recovery codes, which is then used up.
//!
//! Enrolment lives in the instance's key-value store: `secret:<user id>` holds the
//! user's base32 secret (as authenticator apps show it), e.g.
//! `flaskbbd store set totp secret:42 JBSWY3DPEHPK3PXP`, or put there by the daemon's
//! `org.flaskbb.Account.ConfirmTotp`; `recovery:<user id>` the recovery codes, hashed.
//! The last step used is kept in `last_step:<user id>`. Users without a secret pass
//! unless `require = true`. The codes themselves are `flaskbbd-otp`'s, shared with the
//! daemon so that enrolment and login agree.
//!
//! A sign-in with a verified passkey is a second factor already: the daemon marks
//! its request `authenticated_by = passkey` (a mark it removes from any context a
//! client sends), and no code is asked for then.

#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

pub use flaskbbd_otp::Algorithm;
use flaskbbd_otp::{Params, RecoveryCodes};
use plugin_abi::prelude::*;

/// The refusal when an enrolled user sent no code.
pub const MISSING: &str = flaskbbd_otp::MISSING;
/// The refusal of a code that is not the current one (or an adjacent step's), nor an
/// unused recovery code.
pub const WRONG: &str = flaskbbd_otp::WRONG;
/// The refusal of a code (or an earlier one) already used.
pub const REUSED: &str = "This one-time code was already used. Wait for the next one.";
/// The refusal, with `require`, of a user who is not enrolled.
pub const NOT_ENROLLED: &str =
    "Two-factor authentication is required, but it is not set up for this account.";

/// The context key (and its value) by which the daemon says the member signed in
/// with a verified passkey.
pub const PASSKEY_MARK: (&str, &str) = ("authenticated_by", "passkey");

/// How many times a recovery code's use is tried again when another use of the same
/// member's codes changed them in between.
const RECOVERY_RETRIES: usize = 8;

/// RFC 6238's TOTP value of `key` at `unix_time`, zero-padded to `digits`.
pub fn totp(
    key: &[u8],
    unix_time: u64,
    step_seconds: u64,
    digits: u32,
    algorithm: Algorithm,
) -> String {
    Params {
        digits,
        step_seconds,
        algorithm,
        ..Params::default()
    }
    .code_at(key, unix_time)
}

/// Decodes a base32 secret (any case; spaces, dashes and `=` padding ignored); `None`
/// when it is not base32 or empty.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    flaskbbd_otp::decode_base32(text).ok()
}

/// One configured instance. It keeps nothing in memory: which step and which
/// recovery codes were used lives in the store, and each is taken with one atomic
/// swap (`Ctx::store_swap`), so that of concurrent uses of one code, on one daemon or
/// several on one database, exactly one passes.
pub struct Totp {
    config: Params,
}

impl PluginInstance for Totp {
    fn new(init: &Init) -> Result<Self, String> {
        let config: Params = init.config()?;
        config.check()?;
        Ok(Totp { config })
    }
}

/// A swap the daemon cannot make: this plugin needs plugin-abi 1.4.0's `store_swap`.
fn swap_failed(e: HookError) -> HookError {
    match e {
        HookError::NotImplemented => HookError::failed(
            "this daemon cannot mark a code used atomically (store_swap, plugin-abi 1.4.0): upgrade flaskbbd",
        ),
        other => other,
    }
}

impl PostAuthenticationHandler for Totp {
    fn handle_post_auth(&self, cx: &Ctx<'_>, user: &User) -> HookResult<()> {
        let c = &self.config;
        if cx.context(PASSKEY_MARK.0).as_deref() == Some(PASSKEY_MARK.1) {
            // A passkey is possession and user verification in one: the factor is met.
            return Ok(());
        }
        let Some(secret) = cx.store_get(&flaskbbd_otp::secret_key(user.id))? else {
            return if c.require {
                Err(HookError::stop(NOT_ENROLLED))
            } else {
                Ok(())
            };
        };
        let key = flaskbbd_otp::decode_base32(&secret).map_err(|e| {
            HookError::failed(format!(
                "the stored secret of user {} (key {}) is {e}: set it again, or reset the member's second factor",
                user.id,
                flaskbbd_otp::secret_key(user.id)
            ))
        })?;
        let code = cx
            .context("otp")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        // Every refusal from here on is about the code: ask the forum for (another) one.
        let refuse = |reason: &str| {
            cx.ask_for("otp");
            Err(HookError::stop(reason))
        };
        if code.is_empty() {
            return refuse(MISSING);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| HookError::failed(e.to_string()))?
            .as_secs();
        let Some(step) = c.matching_step(&key, &code, now) else {
            if flaskbbd_otp::looks_like_recovery_code(&code)
                && self.use_recovery(cx, user, &code)?
            {
                return Ok(());
            }
            return refuse(WRONG);
        };
        let last_key = flaskbbd_otp::last_step_key(user.id);
        let stored = cx.store_get(&last_key)?;
        let used = stored.as_deref().and_then(|s| s.parse::<u64>().ok());
        if used.is_some_and(|u| step <= u) {
            return refuse(REUSED);
        }
        // Taken only if no other use moved the last step since it was read: a
        // concurrent login or reauthentication with this code finds it moved.
        let taken = cx
            .store_swap(&last_key, stored.as_deref(), Some(&step.to_string()))
            .map_err(swap_failed)?;
        if !taken {
            return refuse(REUSED);
        }
        Ok(())
    }
}

impl Totp {
    /// Uses `code` if it is one of the member's unused recovery codes: swaps the
    /// stored codes for those left, and answers whether it was one. When another use
    /// changed the stored codes in between, it reads them again (a different code used
    /// at the same moment must not make this one fail or come back).
    fn use_recovery(&self, cx: &Ctx<'_>, user: &User, code: &str) -> HookResult<bool> {
        let key = flaskbbd_otp::recovery_key(user.id);
        for _ in 0..RECOVERY_RETRIES {
            let Some(stored) = cx.store_get(&key)? else {
                return Ok(false);
            };
            let codes = RecoveryCodes::from_stored(&stored).ok_or_else(|| {
                HookError::failed(format!(
                    "the stored recovery codes of user {} (key {key}) are unreadable: make new ones",
                    user.id
                ))
            })?;
            let Some(left) = codes.using(code) else {
                return Ok(false);
            };
            if cx
                .store_swap(&key, Some(&stored), Some(&left.to_stored()))
                .map_err(swap_failed)?
            {
                return Ok(true);
            }
        }
        Err(HookError::failed(format!(
            "the recovery codes of user {} kept changing while one was used: try again",
            user.id
        )))
    }
}

export_plugin! {
    plugin: Totp,
    name: "totp",
    description: "RFC 6238 one-time codes (context key otp) as a second factor after the password",
    hooks: [PostAuthenticationHandler],
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
        let cases: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, a, b, c) in cases {
            assert_eq!(totp(&sha1, t, 30, 8, Algorithm::Sha1), a, "SHA1 at {t}");
            assert_eq!(
                totp(&sha256, t, 30, 8, Algorithm::Sha256),
                b,
                "SHA256 at {t}"
            );
            assert_eq!(
                totp(&sha512, t, 30, 8, Algorithm::Sha512),
                c,
                "SHA512 at {t}"
            );
        }
    }

    fn instance() -> Totp {
        Totp {
            config: Params::default(),
        }
    }

    #[test]
    fn refusals_about_the_code_ask_the_client_for_otp() {
        use plugin_abi::testing::TestHost;
        let user = TestHost::user(7, "cat");
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        for otp in [None, Some("000000x")] {
            let mut host = TestHost::new("totp").with_stored("secret:7", secret);
            if let Some(code) = otp {
                host = host.with_context("otp", code);
            }
            let refused = instance().handle_post_auth(&host.ctx(), &user);
            assert!(matches!(refused, Err(HookError::StopAuthentication { .. })));
            assert_eq!(host.asked(), ["otp"], "otp {otp:?}");
        }
        // A user without a secret passes, and nothing is asked of the client.
        let host = TestHost::new("totp");
        assert_eq!(instance().handle_post_auth(&host.ctx(), &user), Ok(()));
        assert!(host.asked().is_empty());
    }

    #[test]
    fn secrets_must_be_base32() {
        assert_eq!(
            base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
            b"12345678901234567890"
        );
        assert_eq!(base32_decode("gezd gnbv gy3t qojq").unwrap(), b"1234567890");
        assert!(base32_decode("not base32!").is_none());
        // Short secrets enrolled before `store set` checked the length still work.
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
    }

    #[test]
    fn a_code_passes_once() {
        use plugin_abi::testing::TestHost;
        let user = TestHost::user(7, "cat");
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let code = Params::default().code_at(&base32_decode(secret).unwrap(), now);
        let host = TestHost::new("totp")
            .with_stored("secret:7", secret)
            .with_context("otp", &code);
        let t = instance();
        assert_eq!(t.handle_post_auth(&host.ctx(), &user), Ok(()));
        assert_eq!(
            t.handle_post_auth(&host.ctx(), &user),
            Err(HookError::stop(REUSED))
        );
    }

    #[test]
    fn a_recovery_code_passes_once_in_place_of_a_code() {
        use plugin_abi::testing::TestHost;
        let user = TestHost::user(7, "cat");
        let (codes, stored) = flaskbbd_otp::new_recovery_codes().unwrap();
        let host = TestHost::new("totp")
            .with_stored("secret:7", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
            .with_stored("recovery:7", &stored.to_stored())
            .with_context("otp", &codes[0]);
        let t = instance();
        assert_eq!(t.handle_post_auth(&host.ctx(), &user), Ok(()));
        // The same code again, from the same stored codes: refused.
        assert!(t.handle_post_auth(&host.ctx(), &user).is_err());
    }
}
