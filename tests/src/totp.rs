//! The member's side of the second factor, for the tests of `org.flaskbb.Account`
//! and of what a second factor guards: the `totp` instance's configuration, the
//! current code of a secret (as an authenticator app shows it), and a whole
//! enrolment.

use flaskbbd_otp::Params;
use flaskbbd_protocol::replies::{BeginTotpReply, RecoveryCodesReply};

use crate::{
    calls::{begin_totp, confirm_totp},
    daemon::TestDaemon,
};

/// The `totp` instance members enrol in, with its default parameters.
pub const TOTP: &str = "[[plugin]]\nname = \"totp\"\nlibrary = \"totp\"\n";

/// The code of `secret` (base32) `steps` time steps (of 30 s) from now.
pub fn code(secret: &str, steps: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = flaskbbd_otp::decode_secret(secret).unwrap();
    Params::default().code_at(&key, (now as i64 + steps * 30) as u64)
}

/// Enrols `user_id` (`BeginTotp` for the issuer "Cat Forum", then `ConfirmTotp` with
/// the current code); the secret and the recovery codes.
pub fn enrol(d: &TestDaemon, user_id: i64) -> (String, Vec<String>) {
    let mut c = d.client();
    let begun: BeginTotpReply = c.request(&begin_totp(user_id, "Cat Forum")).unwrap();
    let confirmed: RecoveryCodesReply = c
        .request(&confirm_totp(user_id, code(&begun.secret, 0)))
        .unwrap();
    (begun.secret, confirmed.recovery_codes)
}
