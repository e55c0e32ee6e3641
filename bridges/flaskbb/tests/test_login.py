"""Logging in and reauthenticating on FlaskBB's own pages, decided by the daemon."""

from __future__ import annotations

import unittest

import sqlalchemy as sa

from tests.support import AUDIT_PLUGIN, TRACE_PLUGIN, WRONG, Site, SiteTestCase, totp

LOCKED = "Your account is currently locked out due to too many failed login attempts"
OTP_MISSING = "A one-time code from your authenticator app is required."
OTP_WRONG = "The one-time code is wrong."
SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

site: Site


def setUpModule() -> None:
    global site
    site = Site("login")
    site.start()
    SiteTestCase.site = site


def tearDownModule() -> None:
    site.stop()


def attempts(name: str) -> int:
    """FlaskBB's own failed-login counter, read from the forum's database."""
    return int(site.value("SELECT login_attempts FROM users WHERE username = :n", n=name))


class Login(SiteTestCase):
    """The daemon's default chain: built-ins, a tracer, and TOTP for enrolled members."""

    @classmethod
    def setUpClass(cls) -> None:
        site.configure_daemon(
            TRACE_PLUGIN + AUDIT_PLUGIN + '[[plugin]]\nname = "totp"\nlibrary = "totp"\n'
        )

    def test_the_right_password_logs_in_and_the_daemons_chain_saw_it(self) -> None:
        name, password = site.member()
        page = site.browser().login(name, password)
        self.assertTrue(page.logged_in, page)
        self.assertTrue(page.url.endswith("/"), page.url)
        self.assertIn({"identifier": name}, site.traced("flaskbb_authenticate"))
        self.assertIn(name, [a["user"]["username"] for a in site.traced("flaskbb_post_authenticate")])

    def test_the_login_carries_the_address_browser_and_code_to_the_daemon(self) -> None:
        name, password = site.member()
        browser = site.browser()
        browser.session.headers["User-Agent"] = "Lynx/2.9"
        browser.login(name, password, otp="123456")
        contexts = [r["context"] for r in site.audit() if r["hook"] == "flaskbb_authenticate"]
        self.assertIn({"remote_addr": "127.0.0.1", "user_agent": "Lynx/2.9", "otp": "[redacted]"}, contexts)

    def test_a_wrong_password_shows_flaskbbs_message_and_counts_once(self) -> None:
        name, _ = site.member()
        page = site.browser().login(name, "not the password")
        self.assertFalse(page.logged_in)
        self.assertEqual(page.flash("danger"), [WRONG])
        self.assertEqual(attempts(name), 1)
        self.assertEqual(site.traced("flaskbb_authentication_failed").count({"identifier": name}), 1)

    def test_an_unknown_user_gets_the_same_message_and_no_row_changes(self) -> None:
        before = site.snapshot()["users"]
        page = site.browser().login("nobody-at-all", "whatever")
        self.assertEqual(page.flash("danger"), [WRONG])
        self.assertFalse(page.logged_in)
        self.assertEqual(site.snapshot()["users"], before)

    def test_a_banned_member_cannot_log_in(self) -> None:
        # FlaskBB itself lets members of a banned group log in; the daemon does not.
        name, password = site.member()
        with site.engine.begin() as c:
            c.execute(
                sa.text("UPDATE users SET primary_group_id = (SELECT id FROM groups WHERE banned = :t) WHERE username = :n"),
                t=True,
                n=name,
            )
        page = site.browser().login(name, password)
        self.assertFalse(page.logged_in)
        self.assertEqual(page.flash("danger"), ["Your account has been banned."])

    def test_the_daemons_lockout_locks_the_account_for_the_guessing_address(self) -> None:
        name, password = site.member()
        browser = site.browser()
        for _ in range(5):
            self.assertEqual(browser.login(name, "wrong").flash("danger"), [WRONG])
        # The defaults (scope "account_and_address", reveal = false): the right password
        # from the address that guessed is refused in the words of a wrong one...
        page = browser.login(name, password)
        self.assertFalse(page.logged_in)
        self.assertEqual(page.flash("danger"), [WRONG])
        self.assertNotEqual(page.flash("danger"), [LOCKED])
        # ...because the forum sent the client's address, which the daemon locked.
        lock = site.daemon.admin("GetUser", identifier=name)["lock"]
        self.assertEqual(
            [(a["address"], a["locked"]) for a in lock["addresses"]], [("127.0.0.1", True)]
        )
        self.assertFalse(lock["locked"])
        site.daemon.admin("Unlock", identifier=name)
        self.assertTrue(browser.login(name, password).logged_in)

    def test_an_enrolled_member_types_the_password_once_then_the_code_alone(self) -> None:
        name, password = site.member()
        user_id = site.daemon.user(name)["id"]
        site.daemon.store_set("totp", f"secret:{user_id}", SECRET)
        browser = site.browser()
        # The password alone: the daemon asks for the code, the page asks for it alone
        # (no password field), and the right password counted as no failure.
        page = browser.login(name, password)
        self.assertFalse(page.logged_in)
        self.assertEqual(page.flash("info"), [OTP_MISSING])
        self.assertEqual(page.flash("danger"), [])
        self.assertIn("otp", page.fields)
        self.assertNotIn("password", page.fields)
        self.assertEqual(attempts(name), 0)
        self.assertNotIn("otp", site.browser().get("/auth/login").fields)
        # A wrong code: refused and counted, and the code step stays.
        page = browser.submit("/auth/login", {"otp": "000000" if totp(SECRET) != "000000" else "111111"})
        self.assertEqual(page.flash("danger"), [OTP_WRONG])
        self.assertIn("otp", page.fields)
        self.assertNotIn("password", page.fields)
        self.assertEqual(attempts(name), 1)
        # The right code alone logs in, and the count is cleared.
        page = browser.submit("/auth/login", {"otp": totp(SECRET)})
        self.assertTrue(page.logged_in, page)
        self.assertEqual(attempts(name), 0)
        # The token is nowhere in what the pages showed.
        self.assertNotIn("pending_login", page.text)

    def test_password_and_code_together_still_log_in(self) -> None:
        name, password = site.member()
        user_id = site.daemon.user(name)["id"]
        site.daemon.store_set("totp", f"secret:{user_id}", SECRET)
        page = site.browser().login(name, password, otp=totp(SECRET))
        self.assertTrue(page.logged_in, page)

    def test_the_code_step_stays_until_the_member_starts_over(self) -> None:
        name, password = site.member()
        user_id = site.daemon.user(name)["id"]
        site.daemon.store_set("totp", f"secret:{user_id}", SECRET)
        browser = site.browser()
        browser.login(name, password)
        # Coming back to the login page: still the code step.
        page = browser.get("/auth/login")
        self.assertIn("otp", page.fields)
        self.assertNotIn("password", page.fields)
        # "Sign in as someone else": the password form again.
        page = browser.get("/auth/login?restart=1")
        self.assertIn("password", page.fields)
        self.assertNotIn("otp", page.fields)

    def test_reauthentication_of_an_enrolled_member_asks_for_the_code(self) -> None:
        browser, name = site.asked_to_reauthenticate()
        user_id = site.daemon.user(name)["id"]
        site.daemon.store_set("totp", f"secret:{user_id}", SECRET)
        page = browser.submit("/auth/reauth", {"password": "Secret123!"})
        self.assertEqual(page.flash("info"), [OTP_MISSING])
        self.assertEqual(page.flash("danger"), [])
        self.assertEqual(page.flash("success"), [])
        self.assertIn("otp", page.fields)
        self.assertNotIn("password", page.fields)
        # Still not fresh: FlaskBB's admin-only pages would ask again.
        self.assertIn("otp", browser.get("/auth/reauth").fields)
        page = browser.submit("/auth/reauth", {"otp": totp(SECRET)})
        self.assertEqual(page.flash("success"), ["Reauthenticated."])
        self.assertTrue(page.logged_in)


class RateLimited(SiteTestCase):
    """The daemon's per-address rate limit, fed by the address the bridge sends."""

    TOO_MANY = "Too many failed login attempts from your address. Try again later."

    @classmethod
    def setUpClass(cls) -> None:
        site.configure_daemon(
            TRACE_PLUGIN + '[[plugin]]\nname = "ratelimit"\nlibrary = "ratelimit"\n'
            "config = { free_failures = 1, base_delay_ms = 100, max_delay_ms = 200, refuse_after = 3 }\n"
        )

    def test_failures_from_one_address_are_refused_after_a_while(self) -> None:
        name, password = site.member()
        browser = site.browser()
        for _ in range(3):
            self.assertEqual(browser.login(name, "wrong").flash("danger"), [WRONG])
        page = browser.login(name, password)
        self.assertFalse(page.logged_in)
        self.assertEqual(page.flash("danger"), [self.TOO_MANY])


class Reauth(SiteTestCase):
    """``/auth/reauth`` through the daemon's ``Reauthenticate``."""

    @classmethod
    def setUpClass(cls) -> None:
        site.configure_daemon()

    def test_the_right_password_reauthenticates(self) -> None:
        browser, name = site.asked_to_reauthenticate("Reauth123!")
        page = browser.submit("/auth/reauth", {"password": "Reauth123!"})
        self.assertEqual(page.flash("success"), ["Reauthenticated."])
        self.assertTrue(page.logged_in)
        self.assertIn(name, [a["user"]["username"] for a in site.traced("flaskbb_reauth_attempt")])

    def test_a_wrong_password_is_refused_and_counted_once(self) -> None:
        browser, name = site.asked_to_reauthenticate()
        page = browser.submit("/auth/reauth", {"password": "wrong"})
        self.assertEqual(page.flash("danger"), ["Wrong password."])
        self.assertTrue(page.logged_in)
        self.assertEqual(attempts(name), 1)


class ForceLogout(SiteTestCase):
    """A ``ForceLogout`` from the daemon's ``flaskbb_reauth_failed`` chain."""

    REASON = "You were signed out to keep your account safe."

    @classmethod
    def setUpClass(cls) -> None:
        site.configure_daemon(
            TRACE_PLUGIN + '[[plugin]]\nname = "guard"\nlibrary = "scripted"\n'
            f'config = {{ on = {{ flaskbb_reauth_failed = {{ action = "force_logout", reason = "{cls.REASON}" }} }} }}\n'
        )

    def test_force_logout_logs_the_person_out_and_shows_the_reason(self) -> None:
        browser, _ = site.asked_to_reauthenticate()
        page = browser.submit("/auth/reauth", {"password": "wrong"})
        self.assertFalse(page.logged_in, page)
        self.assertEqual(page.flash("danger"), [self.REASON])
        self.assertFalse(browser.get("/").logged_in)


class ScriptedStop(SiteTestCase):
    """A plugin in the daemon's chain that stops every login."""

    REASON = "The forum is closed for maintenance."

    @classmethod
    def setUpClass(cls) -> None:
        site.configure_daemon(
            TRACE_PLUGIN + '[[plugin]]\nname = "closed"\nlibrary = "scripted"\n'
            f'config = {{ on = {{ flaskbb_authenticate = {{ action = "stop", reason = "{cls.REASON}" }} }} }}\n'
            '[plugin.hooks.flaskbb_authenticate]\ntier = "tryfirst"\n'
        )

    def test_a_stop_refuses_the_right_password_with_its_reason(self) -> None:
        name, password = site.member()
        page = site.browser().login(name, password)
        self.assertFalse(page.logged_in)
        self.assertEqual(page.flash("danger"), [self.REASON])
        # A StopAuthentication is a failed login: counted once, by the daemon.
        self.assertEqual(attempts(name), 1)


if __name__ == "__main__":
    unittest.main()
