//! The FlaskBB bridge (`bridges/flaskbb`), tested as a person uses a forum: a real
//! FlaskBB 2.0.2 with the bridge installed (`pip install ./bridges/flaskbb`), its own
//! HTTP server, a real daemon on the forum's database, and a browser with cookies and
//! CSRF tokens. The tests themselves are Python (`bridges/flaskbb/tests/`, one module
//! per test here); `flaskbb::bridge_tests` builds and installs what they need and runs
//! them.

use flaskbbd_tests::flaskbb::bridge_tests as python_tests;

#[test]
fn login_reauth_second_factor_and_force_logout() {
    python_tests("test_login");
}

#[test]
fn posts_and_topics_masked_rejected_and_announced() {
    python_tests("test_posts");
}

/// In headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium).
#[test]
fn a_member_sees_masks_and_refusals_in_a_real_browser() {
    python_tests("test_post_pages");
}

/// In headless Chromium: the Security settings page (enrolment, recovery codes), the
/// second step at login and reauthentication, password change and reset, and the
/// admins' sign-in page in FlaskBB's management area.
#[test]
fn members_and_admins_run_their_sign_in_from_the_forums_pages() {
    python_tests("test_account_pages");
}

#[test]
fn daemon_away_failing_slow_or_misconfigured_fails_closed() {
    python_tests("test_outage");
}

#[test]
fn without_a_socket_the_bridge_stays_out_of_the_way() {
    python_tests("test_inactive");
}

/// In headless Chromium with its virtual authenticator, the forum at
/// `http://localhost:PORT` and the daemon's `[webauthn]` for it: a member adds a
/// passkey from the Security page and signs in with it alone; a banned member's and a
/// removed passkey are refused; a passkey stands for a TOTP member's code and for the
/// password at reauthentication.
#[test]
fn members_sign_in_with_passkeys_from_the_forums_pages() {
    python_tests("test_passkey_pages");
}
