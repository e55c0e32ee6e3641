//! `totp`: a second factor in `flaskbb_post_authenticate`. After the password checked
//! out, the request context's `otp` must hold the RFC 6238 code of the user's secret
//! for the current time step (or an adjacent one, for clock skew), and no code may
//! be used twice.
//!
//! Enrolment lives in the instance's key-value store: `secret:<user id>` holds the
//! user's base32 secret (as authenticator apps show it), e.g.
//! `flaskbbd store set totp secret:42 JBSWY3DPEHPK3PXP`. The last step used is kept
//! in `last_step:<user id>`. Users without a secret pass unless `require = true`.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use hmac::{Hmac, Mac};
use plugin_abi::prelude::*;
use serde::Deserialize;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    digits: u32,
    step_seconds: u64,
    skew_steps: u64,
    algorithm: Algorithm,
    require: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            digits: 6,
            step_seconds: 30,
            skew_steps: 1,
            algorithm: Algorithm::Sha1,
            require: false,
        }
    }
}

/// The refusal when an enrolled user sent no code.
pub const MISSING: &str = "A one-time code from your authenticator app is required.";
/// The refusal of a code that is not the current one (or an adjacent step's).
pub const WRONG: &str = "The one-time code is wrong.";
/// The refusal of a code (or an earlier one) already used.
pub const REUSED: &str = "This one-time code was already used. Wait for the next one.";
/// The refusal, with `require`, of a user who is not enrolled.
pub const NOT_ENROLLED: &str =
    "Two-factor authentication is required, but it is not set up for this account.";

/// RFC 4226's HOTP value of `key` at `counter`.
pub fn hotp(key: &[u8], counter: u64, digits: u32, algorithm: Algorithm) -> u32 {
    // HMAC takes keys of any length: new_from_slice cannot fail here.
    #[allow(clippy::expect_used)]
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut m =
            <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }
    let msg = counter.to_be_bytes();
    let h = match algorithm {
        Algorithm::Sha1 => mac::<Hmac<sha1::Sha1>>(key, &msg),
        Algorithm::Sha256 => mac::<Hmac<sha2::Sha256>>(key, &msg),
        Algorithm::Sha512 => mac::<Hmac<sha2::Sha512>>(key, &msg),
    };
    let offset = (h[h.len() - 1] & 0x0f) as usize;
    let bin =
        u32::from_be_bytes([h[offset], h[offset + 1], h[offset + 2], h[offset + 3]]) & 0x7fff_ffff;
    bin % 10u32.pow(digits)
}

/// RFC 6238's TOTP value of `key` at `unix_time`, zero-padded to `digits`.
pub fn totp(
    key: &[u8],
    unix_time: u64,
    step_seconds: u64,
    digits: u32,
    algorithm: Algorithm,
) -> String {
    format!(
        "{:0width$}",
        hotp(key, unix_time / step_seconds, digits, algorithm),
        width = digits as usize
    )
}

/// Decodes RFC 4648 base32 (any case; spaces and `=` padding ignored).
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits: u64 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
    {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u64 - 'A' as u64,
            c @ '2'..='7' => c as u64 - '2' as u64 + 26,
            _ => return None,
        };
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// One configured instance.
pub struct Totp {
    config: Config,
    /// The last step accepted per user: the authority within this daemon, so two
    /// concurrent logins cannot both use one code.
    last_step: Mutex<HashMap<i64, u64>>,
}

impl PluginInstance for Totp {
    fn new(init: &Init) -> Result<Self, String> {
        let config: Config = init.config()?;
        if !(6..=9).contains(&config.digits) {
            return Err("config key digits: use 6 to 9".into());
        }
        if config.step_seconds == 0 {
            return Err("config key step_seconds: must be at least 1".into());
        }
        Ok(Totp {
            config,
            last_step: Mutex::new(HashMap::new()),
        })
    }
}

impl PostAuthenticationHandler for Totp {
    fn handle_post_auth(&self, cx: &Ctx<'_>, user: &User) -> HookResult<()> {
        let c = &self.config;
        let Some(secret) = cx.store_get(&format!("secret:{}", user.id))? else {
            return if c.require {
                Err(HookError::stop(NOT_ENROLLED))
            } else {
                Ok(())
            };
        };
        let key = base32_decode(&secret).ok_or_else(|| {
            HookError::failed(format!(
                "the stored secret of user {} is not base32",
                user.id
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
        let current = now / c.step_seconds;
        let matched =
            (current.saturating_sub(c.skew_steps)..=current + c.skew_steps).find(|&step| {
                totp(
                    &key,
                    step * c.step_seconds,
                    c.step_seconds,
                    c.digits,
                    c.algorithm,
                ) == code
            });
        let Some(step) = matched else {
            return refuse(WRONG);
        };
        let mut last = self.last_step.lock().unwrap_or_else(|e| e.into_inner());
        let stored = cx
            .store_get(&format!("last_step:{}", user.id))?
            .and_then(|s| s.parse::<u64>().ok());
        let used = last.get(&user.id).copied().max(stored);
        if used.is_some_and(|u| step <= u) {
            return refuse(REUSED);
        }
        last.insert(user.id, step);
        cx.store_set(&format!("last_step:{}", user.id), &step.to_string())
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
            config: Config::default(),
            last_step: Mutex::new(HashMap::new()),
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
    fn base32_round_trips_rfc_4648_examples() {
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw 6ytb oi").unwrap(), b"foobar");
        assert_eq!(
            base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
            b"12345678901234567890"
        );
        assert!(base32_decode("not base32!").is_none());
    }
}
