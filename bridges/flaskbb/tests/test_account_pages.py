"""What members and admins do with their sign-in from the forum's own pages, in a real
browser (headless Chromium): a member enrols a second factor from the Security
settings, signs in with the password once and then the code, uses a recovery code
once, is asked for the code at reauthentication; a locked member resets the password
by FlaskBB's token and signs in; an admin lifts a lock and resets a member's second
factor from the management page, which a member who is not an admin cannot open."""

from __future__ import annotations

import time
from typing import List, Tuple

from flaskbb.tokens.serializer import FlaskBBTokenSerializer
from flaskbb.core.tokens import Token, TokenActions

from testing.chrome import BrowserTestCase
import sqlalchemy as sa

from tests.support import AUDIT_PLUGIN, WRONG, Site, totp

MISSING = "A one-time code from your authenticator app is required."
WRONG_CODE = "The one-time code is wrong."
REUSED = "This one-time code was already used. Wait for the next one."
TOO_MANY = (
    "Too many wrong codes were tried for this account. Try again later, "
    "or ask an administrator to lift the lock."
)
DAEMON_PLUGINS = AUDIT_PLUGIN + '[[plugin]]\nname = "totp"\nlibrary = "totp"\n'

site: Site


def setUpModule() -> None:
    global site
    site = Site("account_pages")
    # Four wrong codes of one account, from anywhere, and no code is checked (fewer
    # than the lockout's five per address, so that the code limit is what refuses).
    site.start(DAEMON_PLUGINS, auth="lockout = { code_attempts = 4 }")
    AccountPages.forum_url = site.forum.url
    AccountPages.artifacts = site.directory / "browser"


def tearDownModule() -> None:
    site.stop()


def admin() -> Tuple[str, str]:
    """A new member of FlaskBB's Administrator group (with the tests' cheap hash;
    FlaskBB's own admin's hash may take the debug daemon past its hook timeout)."""
    name, password = site.member()
    with site.engine.begin() as c:
        c.execute(
            sa.text("UPDATE users SET primary_group_id = (SELECT id FROM groups WHERE admin = :t) WHERE username = :n"),
            t=True,
            n=name,
        )
    return name, password


class Codes:
    """One-time codes of a secret that the daemon takes: each of a later time step
    than the last one used (it refuses a step used before), within one step of now
    (waiting for the clock when needed)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.used = int(time.time() // 30)  # ConfirmTotp used the current step

    def next(self) -> str:
        # A later step than the last one used, and never one the daemon no longer
        # takes (older than one step before now: a slow, loaded run may have passed
        # several steps since the last code).
        step = max(self.used + 1, int(time.time() // 30))
        while step > int(time.time() // 30) + 1:
            time.sleep(0.5)
        self.used = step
        return totp(self.secret, step * 30)


class AccountPages(BrowserTestCase):
    def sign_in(self, name: str, password: str, remember: bool = False) -> None:
        self.chrome.open("/auth/login?restart=1")
        self.chrome.type("login", name)
        self.chrome.type("password", password)
        if remember:
            self.chrome.field("remember_me").click()
        self.chrome.press('form [name="submit"]')

    def signed_in(self) -> bool:
        return bool(self.chrome.find_all('a[href$="/auth/logout"]'))

    def code(self, code: str) -> None:
        """Types a code on the second step's page, which asks for nothing else."""
        self.assertEqual(self.chrome.find_all('[name="password"]'), [], "the code step asks for the password again")
        self.chrome.type("otp", code)
        self.chrome.press('form.flaskbbd-second-step [name="submit"]')

    def enrol(self, name: str, password: str) -> Tuple[str, List[str], Codes]:
        """Signs in and enrols from the Security page: the secret read from the page,
        the recovery codes as shown once."""
        self.sign_in(name, password)
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))
        self.chrome.open("/")
        self.chrome.find('a[href$="/user/settings/general"], a[href*="/settings"]')
        self.chrome.open("/user/settings/general")
        self.assertTrue(self.chrome.find_all('a[href$="/user/settings/security"]'), "no Security entry in the settings menu")
        self.chrome.press('a[href$="/user/settings/security"]')
        self.assertIn("Two-factor authentication is off", self.chrome.text(".flaskbbd-state"))
        self.chrome.press('form.flaskbbd-begin [name="begin-submit"]')
        secret = self.chrome.text(".flaskbbd-secret").strip()
        self.assertTrue(self.chrome.find_all(".flaskbbd-qr svg path"), "no QR code")
        self.chrome.type("confirm-code", totp(secret))
        self.chrome.press('[name="confirm-submit"]')
        self.assertEqual(self.chrome.flashes("success"), ["Two-factor authentication is on."])
        codes = [e.text.strip() for e in self.chrome.find_all(".flaskbbd-recovery-codes li")]
        self.assertEqual(len(codes), 10, codes)
        # Once only: the page after it shows neither the secret nor a code.
        self.chrome.press(".flaskbbd-security a.btn")
        self.assertIn("Recovery codes left: 10.", self.chrome.text(".flaskbbd-state"))
        self.assertNoSecrets(secret, codes)
        return secret, codes, Codes(secret)

    def assertNoSecrets(self, secret: str, codes: List[str]) -> None:
        page = self.chrome.driver.page_source
        for text in [secret, *codes]:
            self.assertNotIn(text, page)

    def test_a_member_enrols_then_signs_in_with_the_password_once_and_the_code(self) -> None:
        name, password = site.member()
        secret, codes, fresh = self.enrol(name, password)
        self.chrome.open("/auth/logout")
        self.assertFalse(self.signed_in())

        # The password, then the code alone.
        self.sign_in(name, password)
        self.assertFalse(self.signed_in())
        self.assertEqual(self.chrome.flashes("info"), [MISSING])
        self.assertEqual(self.chrome.flashes("danger"), [])
        self.assertNoSecrets(secret, codes)
        wrong = "000000" if totp(secret) != "000000" else "111111"
        self.code(wrong)
        self.assertEqual(self.chrome.flashes("danger"), [WRONG_CODE])
        login_code = fresh.next()
        self.code(login_code)
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))
        self.chrome.open("/auth/logout")

        # The same code again: refused.
        self.sign_in(name, password)
        self.code(login_code)
        self.assertEqual(self.chrome.flashes("danger"), [REUSED])
        self.assertFalse(self.signed_in())

        # A recovery code instead: once.
        self.code(codes[0])
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))
        self.chrome.open("/auth/logout")
        self.sign_in(name, password)
        self.code(codes[0])
        self.assertEqual(self.chrome.flashes("danger"), [WRONG_CODE])
        self.assertFalse(self.signed_in())
        self.code(fresh.next())
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))

        # Nothing secret in FlaskBB's log, the daemon's log or its audit file.
        logs = site.forum.log() + site.daemon.log() + (site.directory / "audit.jsonl").read_text()
        for text in [secret, *codes, login_code]:
            self.assertNotIn(text, logs)

    def test_reauthentication_asks_an_enrolled_member_for_the_code(self) -> None:
        name, password = site.member()
        _, codes, fresh = self.enrol(name, password)
        self.chrome.open("/auth/logout")
        self.sign_in(name, password, remember=True)
        self.code(fresh.next())
        self.assertTrue(self.signed_in())
        # The browser closed and opened again: the remember-me cookie signs in, not freshly.
        self.chrome.driver.delete_cookie("session")
        self.chrome.open("/user/settings/security")
        self.assertIn("/auth/reauth", self.chrome.path)
        self.chrome.type("password", password)
        self.chrome.press('form [name="submit"]')
        self.assertEqual(self.chrome.flashes("info"), [MISSING])
        self.assertEqual(self.chrome.flashes("danger"), [])
        self.assertEqual(self.chrome.flashes("success"), [])
        self.code(fresh.next())
        self.assertEqual(self.chrome.flashes("success"), ["Reauthenticated."])
        # Back where the member was going, freshly signed in.
        self.assertIn("/user/settings/security", self.chrome.path)
        self.assertIn("Recovery codes left: 10.", self.chrome.text(".flaskbbd-state"))

    def test_a_member_makes_new_recovery_codes_and_turns_the_factor_off(self) -> None:
        name, password = site.member()
        _, old, fresh = self.enrol(name, password)
        self.chrome.type("regenerate-password", "not the password")
        self.chrome.type("regenerate-code", fresh.next())
        self.chrome.press('[name="regenerate-submit"]')
        self.assertEqual(self.chrome.flashes("danger"), ["Wrong password."])
        # The password alone makes no codes: a wrong code is refused.
        self.chrome.type("regenerate-password", password)
        self.chrome.type("regenerate-code", "000000")
        self.chrome.press('[name="regenerate-submit"]')
        self.assertEqual(self.chrome.flashes("danger"), ["The code is wrong."])
        self.assertEqual(self.chrome.find_all(".flaskbbd-recovery-codes li"), [])
        self.chrome.type("regenerate-password", password)
        self.chrome.type("regenerate-code", old[0])
        self.chrome.press('[name="regenerate-submit"]')
        new = [e.text.strip() for e in self.chrome.find_all(".flaskbbd-recovery-codes li")]
        self.assertEqual(len(new), 10)
        self.assertFalse(set(new) & set(old))
        self.chrome.open("/user/settings/security")
        self.chrome.type("disable-password", password)
        self.chrome.type("disable-code", fresh.next())
        self.chrome.press('[name="disable-submit"]')
        self.assertEqual(self.chrome.flashes("success"), ["Two-factor authentication is off."])
        self.chrome.open("/auth/logout")
        self.sign_in(name, password)
        self.assertTrue(self.signed_in())

    def test_a_locked_member_resets_the_password_by_flaskbbs_token_and_signs_in(self) -> None:
        name, password = site.member()
        for _ in range(5):
            self.sign_in(name, "wrong")
            self.assertEqual(self.chrome.flashes("danger"), [WRONG])
        # Locked (reveal = false): the right password gets the same answer, and the
        # page points to the reset.
        self.sign_in(name, password)
        self.assertFalse(self.signed_in())
        self.assertEqual(self.chrome.flashes("danger"), [WRONG])
        self.chrome.press(".flaskbbd-reset-hint a")
        self.assertIn("/auth/reset-password", self.chrome.path)
        # FlaskBB mails the token; the test forum suppresses mail, so the test makes
        # the token FlaskBB would have sent.
        user_id = site.daemon.user(name)["id"]
        raw = FlaskBBTokenSerializer(site.forum.secret_key).dumps(Token(user_id=user_id, operation=TokenActions.RESET_PASSWORD))
        token = raw.decode() if isinstance(raw, bytes) else str(raw)
        self.chrome.open(f"/auth/reset-password/{token}")
        self.chrome.type("email", f"{name}@example.org")
        self.chrome.type("password", "NewSecret456!")
        self.chrome.type("confirm_password", "NewSecret456!")
        self.chrome.press('form [name="submit"]')
        self.assertEqual(self.chrome.flashes("success"), ["Your password has been updated."])
        self.sign_in(name, "NewSecret456!")
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))
        self.chrome.open("/auth/logout")
        self.sign_in(name, password)
        self.assertFalse(self.signed_in())

    def test_a_member_changes_the_password_through_the_daemon(self) -> None:
        name, password = site.member()
        self.sign_in(name, password)
        self.chrome.open("/user/settings/password")
        self.chrome.type("old_password", "not it")
        self.chrome.type("new_password", "Changed789!")
        self.chrome.type("confirm_new_password", "Changed789!")
        self.chrome.press('form [name="submit"]')
        self.assertIn("Wrong password.", self.chrome.text(".has-error"))
        self.chrome.type("old_password", password)
        self.chrome.type("new_password", "Changed789!")
        self.chrome.type("confirm_new_password", "Changed789!")
        self.chrome.press('form [name="submit"]')
        self.assertEqual(self.chrome.flashes("success"), ["Password updated."])
        self.chrome.open("/auth/logout")
        self.sign_in(name, "Changed789!")
        self.assertTrue(self.signed_in())

    def test_an_admin_lifts_a_lock_and_resets_a_second_factor(self) -> None:
        locked, locked_password = site.member()
        for _ in range(5):
            self.sign_in(locked, "wrong")
        enrolled, enrolled_password = site.member()
        secret, codes, _ = self.enrol(enrolled, enrolled_password)
        self.chrome.open("/auth/logout")

        self.sign_in(*admin())
        self.assertTrue(self.signed_in())
        self.chrome.open("/admin/")
        self.chrome.press('a[href$="/admin/flaskbbd"]')
        row = self.chrome.find(f'.flaskbbd-lock[data-name="{locked}"]')
        self.assertIn("locked", row.text)
        self.assertTrue(self.chrome.find_all(".flaskbbd-chart"), "no chart")
        self.assertTrue(self.chrome.find_all(".flaskbbd-generation"), "no daemon status")
        self.assertNoSecrets(secret, codes)
        self.chrome.press(f'.flaskbbd-lock[data-name="{locked}"] .flaskbbd-lift')
        self.assertEqual(self.chrome.flashes("success"), [f"The lock on {locked} is lifted."])
        self.assertEqual(self.chrome.find_all(f'.flaskbbd-lock[data-name="{locked}"]'), [])
        self.chrome.press(f'.flaskbbd-factor[data-name="{enrolled}"] .flaskbbd-reset')
        self.assertEqual(self.chrome.flashes("success"), [f"{enrolled}'s second factor is reset."])
        self.assertEqual(self.chrome.find_all(f'.flaskbbd-factor[data-name="{enrolled}"]'), [])
        self.chrome.open("/auth/logout")

        # Both sign in with the password alone now.
        self.sign_in(locked, locked_password)
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))
        self.chrome.open("/auth/logout")
        self.sign_in(enrolled, enrolled_password)
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))

    def test_guessed_codes_stop_the_code_step_until_an_admin_lifts_it(self) -> None:
        name, password = site.member()
        secret, codes, fresh = self.enrol(name, password)
        self.chrome.open("/auth/logout")
        # Whoever knows the password guesses codes: past the account's limit even the
        # right code is refused unchecked, and the member is told what to do.
        self.sign_in(name, password)
        wrong = "000000" if totp(secret) != "000000" else "111111"
        for _ in range(4):
            self.code(wrong)
            self.assertEqual(self.chrome.flashes("danger"), [WRONG_CODE])
        self.code(fresh.next())
        self.assertEqual(self.chrome.flashes("danger"), [TOO_MANY])
        self.assertFalse(self.signed_in())

        # The admin sees it on the management page and lifts it.
        self.sign_in(*admin())
        self.assertTrue(self.signed_in())
        self.chrome.open("/admin/flaskbbd")
        row = self.chrome.find(f'.flaskbbd-code-lock[data-name="{name}"]')
        self.assertIn(" 4 ", f" {row.text} ")
        self.assertNoSecrets(secret, codes)
        self.chrome.press(f'.flaskbbd-code-lock[data-name="{name}"] .flaskbbd-lift')
        self.assertEqual(self.chrome.flashes("success"), [f"The lock on {name} is lifted."])
        self.assertEqual(self.chrome.find_all(f'.flaskbbd-code-lock[data-name="{name}"]'), [])
        self.chrome.open("/auth/logout")

        # The member signs in with the password and a code again.
        self.sign_in(name, password)
        self.code(fresh.next())
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))

    def test_a_member_who_is_not_an_admin_gets_403_on_the_management_page(self) -> None:
        name, password = site.member()
        self.sign_in(name, password)
        self.assertTrue(self.signed_in())
        status = self.chrome.driver.execute_script(
            "var r = new XMLHttpRequest(); r.open('GET', '/admin/flaskbbd', false); r.send(); return r.status;"
        )
        self.assertEqual(status, 403)
        self.chrome.open("/admin/flaskbbd")
        self.assertEqual(self.chrome.find_all(".flaskbbd-locks"), [])
