"""Passkeys on the forum's pages, in a real browser (headless Chromium with its
virtual authenticator: CTAP2, built in, discoverable credentials, user verification),
the forum at ``http://localhost:PORT`` (WebAuthn refuses an IP address as origin) and
the daemon's ``[webauthn]`` for it: a member adds a passkey from the Security page,
signs out and signs in with the passkey alone; a banned member's passkey gets
FlaskBB's ban message; a removed passkey no longer signs in; a passkey stands for the
code of a member enrolled in TOTP, and for the password at reauthentication; an
admin removes a member's passkeys; an assertion sent again, or made by the browser
for another origin (a copy of the login page elsewhere), is refused."""

from __future__ import annotations

import base64
import http.server
import json
import tempfile
import threading
from typing import Any, Dict, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from selenium.webdriver.common.virtual_authenticator import (
    Protocol,
    Transport,
    VirtualAuthenticatorOptions,
)

from flaskbb_flaskbbd.client import AuthenticationFailed, Client
from testing.chrome import BrowserTestCase
from tests.support import AUDIT_PLUGIN, Site, totp

BANNED = "Your account has been banned."
NOT_REGISTERED = "This passkey is not registered here. Sign in with your password, or use another passkey."
REFUSED = "The passkey could not be verified. Try again, or sign in with your password."
MISSING = "A one-time code from your authenticator app is required."

site: Site


def setUpModule() -> None:
    global site
    site = Site("passkey_pages")
    origin = f"http://localhost:{site.forum.port}"
    webauthn = f'[webauthn]\nrp_id = "localhost"\norigins = ["{origin}"]\nrp_name = "Test Forum"\n'
    site.start(AUDIT_PLUGIN + '[[plugin]]\nname = "totp"\nlibrary = "totp"\n' + webauthn)
    PasskeyPages.forum_url = origin
    PasskeyPages.artifacts = site.directory / "browser"


def tearDownModule() -> None:
    site.stop()


@contextmanager
def other_origin() -> Iterator[str]:
    """A blank page served from another origin than the forum's
    (``http://localhost:OTHER``), as a copy of the login page elsewhere would be."""
    page = tempfile.TemporaryDirectory()
    with open(f"{page.name}/index.html", "w") as f:
        f.write("<!doctype html><title>Not the forum</title><p>elsewhere</p>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=page.name, **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        page.cleanup()


#: Asks the browser's authenticator for an assertion to the daemon's options (the
#: JSON of ``BeginPasskeySignIn``), as the page it runs in; answers the credential as
#: WebAuthn's JSON (base64url fields), or ``{error}``.
ASSERT_SCRIPT = """
const done = arguments[arguments.length - 1];
const options = arguments[0].publicKey;
const bytes = (b64) => Uint8Array.from(atob(b64.replace(/-/g, '+').replace(/_/g, '/')), c => c.charCodeAt(0));
const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
  .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
const publicKey = Object.assign({}, options, {
  challenge: bytes(options.challenge),
  allowCredentials: (options.allowCredentials || []).map(c => Object.assign({}, c, {id: bytes(c.id)})),
});
navigator.credentials.get({publicKey}).then(c => done({
  id: c.id, rawId: b64(c.rawId), type: c.type, extensions: {},
  response: {
    authenticatorData: b64(c.response.authenticatorData),
    clientDataJSON: b64(c.response.clientDataJSON),
    signature: b64(c.response.signature),
    userHandle: c.response.userHandle ? b64(c.response.userHandle) : null,
  },
}), e => done({error: String(e)}));
"""


class PasskeyPages(BrowserTestCase):
    def setUp(self) -> None:
        super().setUp()
        # The person's own authenticator, as a phone or a laptop's would be.
        self.chrome.driver.add_virtual_authenticator(
            VirtualAuthenticatorOptions(
                protocol=Protocol.CTAP2,
                transport=Transport.INTERNAL,
                has_resident_key=True,
                has_user_verification=True,
                is_user_consenting=True,
                is_user_verified=True,
            )
        )
        self.autofill_off = self.without_autofill()

    def without_autofill(self) -> str:
        """Makes the pages see a browser that offers no passkey autofill (conditional
        mediation): the virtual authenticator answers an autofill request at once, as
        if the person had picked the passkey, so a page opened with it signs in by
        itself (and a refused one again and again). The tests press the button, as a
        person whose browser has no autofill does; one test lets autofill sign in."""
        added = self.chrome.driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument",
            {"source": "PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);"},
        )
        return str(added["identifier"])

    def with_autofill(self) -> None:
        self.chrome.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": self.autofill_off})

    # -- what a person does ----------------------------------------------------------

    def sign_in(self, name: str, password: str, remember: bool = False) -> None:
        self.chrome.open("/auth/login?restart=1")
        self.chrome.type("login", name)
        self.chrome.type("password", password)
        if remember:
            self.chrome.field("remember_me").click()
        self.chrome.press('form [name="submit"]')

    def signed_in(self) -> bool:
        return bool(self.chrome.find_all('a[href$="/auth/logout"]'))

    def use_passkey(self) -> None:
        """Presses the page's passkey button once it shows, and waits for the page the
        sign-in leads to."""
        self.chrome.wait("the passkey button", lambda: self.chrome.find(".flaskbbd-passkey-button").is_displayed())
        self.chrome.press(".flaskbbd-passkey-button")

    def add_passkey(self, name: str) -> str:
        """Adds a passkey named ``name`` from the Security page; the credential id the
        authenticator made (base64url)."""
        self.chrome.open("/user/settings/security")
        before = {c.id for c in self.chrome.driver.get_credentials()}
        self.chrome.wait("the add form", lambda: self.chrome.find("form.flaskbbd-passkey-add").is_displayed())
        self.chrome.type("passkey-name", name)
        self.chrome.press('form.flaskbbd-passkey-add [name="passkey-submit"]')
        self.assertEqual(
            self.chrome.flashes("success"), [f"Passkey {name} added: it signs you in without your password."]
        )
        self.assertEqual(self.chrome.flashes("danger"), [])
        made = [c.id for c in self.chrome.driver.get_credentials() if c.id not in before]
        self.assertEqual(len(made), 1, "the authenticator made no passkey")
        row = self.chrome.find(f'.flaskbbd-passkey[data-name="{name}"]')
        self.assertIn("never", row.find_element("css selector", ".flaskbbd-passkey-used").text)
        return base64.urlsafe_b64encode(base64.urlsafe_b64decode(made[0] + "==")).decode().rstrip("=")

    def sign_out(self) -> None:
        self.chrome.open("/auth/logout")
        self.assertFalse(self.signed_in())

    # -- the tests ---------------------------------------------------------------------

    def test_a_member_adds_a_passkey_then_signs_in_with_it_alone(self) -> None:
        name, password = site.member()
        self.sign_in(name, password)
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))
        self.chrome.open("/user/settings/security")
        self.assertIn("no passkey", self.chrome.text(".flaskbbd-passkeys"))
        credential_id = self.add_passkey("Laptop")
        self.sign_out()

        # Without JavaScript the page is the password form as ever: the passkey
        # button is there, hidden (the script shows it), and the password signs in.
        plain = site.browser()
        page = plain.get("/auth/login")
        self.assertRegex(page.text, r'class="form-group flaskbbd-passkey-signin" hidden')
        self.assertTrue(plain.login(name, password).logged_in)

        # The login page offers it as the login field's autofill, and as a button.
        self.chrome.open("/auth/login")
        self.assertEqual(self.chrome.field("login").get_attribute("autocomplete"), "username webauthn")
        self.chrome.field("remember_me").click()
        audited = len(site.audit())
        self.use_passkey()
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))
        self.assertEqual(self.chrome.flashes("danger"), [])
        # Remember me, as with the password.
        self.assertIsNotNone(self.chrome.driver.get_cookie("remember_token"))
        # The forum's member is the one signed in, and the page shows when it was used.
        self.assertIn(name, self.chrome.text(".navbar"))
        self.sign_out()

        # Where the browser offers passkeys as the login field's autofill, picking it
        # there signs in (the virtual authenticator picks it at once).
        self.with_autofill()
        self.chrome.open("/auth/login")
        self.chrome.wait("the autofill's sign-in", self.signed_in)
        self.assertIn(name, self.chrome.text(".navbar"))
        self.chrome.open("/user/settings/security")
        used = self.chrome.find('.flaskbbd-passkey[data-name="Laptop"] .flaskbbd-passkey-used').text
        self.assertRegex(used, r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")
        # The daemon ran FlaskBB's login chain for it (the audit plugin's record).
        hooks = [r["hook"] for r in site.audit()[audited:]]
        self.assertIn("flaskbb_post_authenticate", hooks)
        # No credential in FlaskBB's log or the daemon's.
        logs = site.forum.log() + site.daemon.log()
        self.assertNotIn(credential_id, logs)

    def test_a_banned_members_passkey_gets_flaskbbs_ban_message(self) -> None:
        name, password = site.member()
        self.sign_in(name, password)
        self.add_passkey("Phone")
        self.sign_out()
        with site.engine.begin() as c:
            c.execute(
                sa.text("UPDATE users SET primary_group_id = (SELECT id FROM groups WHERE banned = :t) WHERE username = :n"),
                t=True,
                n=name,
            )
        self.chrome.open("/auth/login")
        self.use_passkey()
        self.assertFalse(self.signed_in())
        self.assertEqual(self.chrome.flashes("danger"), [BANNED])
        self.assertIn("/auth/login", self.chrome.path)

    def test_a_removed_passkey_no_longer_signs_in(self) -> None:
        name, password = site.member()
        self.sign_in(name, password)
        self.add_passkey("Key")
        self.chrome.press('.flaskbbd-passkey[data-name="Key"] [name="passkey-remove-submit"]')
        self.assertEqual(self.chrome.flashes("success"), ["The passkey is removed: it no longer signs you in."])
        self.assertEqual(self.chrome.find_all(".flaskbbd-passkey"), [])
        self.sign_out()
        # The authenticator still has it; the daemon no longer knows it.
        self.assertEqual(len(self.chrome.driver.get_credentials()), 1)
        self.chrome.open("/auth/login")
        self.use_passkey()
        self.assertFalse(self.signed_in())
        self.assertEqual(self.chrome.flashes("danger"), [NOT_REGISTERED])
        # The password still signs in.
        self.sign_in(name, password)
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))

    def test_a_passkey_stands_for_the_code_of_a_member_enrolled_in_totp(self) -> None:
        name, password = site.member()
        self.sign_in(name, password)
        self.add_passkey("Laptop")
        user_id = site.daemon.user(name)["id"]
        secret = site.daemon.client.account("BeginTotp", user_id=user_id, issuer="Test Forum")["secret"]
        site.daemon.client.account("ConfirmTotp", user_id=user_id, code=totp(secret))
        self.sign_out()

        # The password, then the passkey in place of the code.
        self.sign_in(name, password)
        self.assertFalse(self.signed_in())
        self.assertEqual(self.chrome.flashes("info"), [MISSING])
        self.use_passkey()
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))
        self.sign_out()

        # The passkey alone: no code asked.
        self.chrome.open("/auth/login")
        self.use_passkey()
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))
        self.assertEqual(self.chrome.find_all('[name="otp"]'), [])

    def test_a_passkey_satisfies_reauthentication(self) -> None:
        name, password = site.member()
        self.sign_in(name, password, remember=True)
        self.add_passkey("Laptop")
        # The browser closed and opened again: the remember-me cookie signs in, not freshly.
        self.chrome.driver.delete_cookie("session")
        self.chrome.open("/user/settings/security")
        self.assertIn("/auth/reauth", self.chrome.path)
        self.use_passkey()
        self.assertEqual(self.chrome.flashes("success"), ["Reauthenticated."])
        self.assertEqual(self.chrome.flashes("danger"), [])
        # Back where the member was going, freshly signed in.
        self.assertIn("/user/settings/security", self.chrome.path)
        self.assertTrue(self.chrome.find_all('.flaskbbd-passkey[data-name="Laptop"]'))

    def test_an_admin_removes_a_members_passkeys(self) -> None:
        name, password = site.member()
        self.sign_in(name, password)
        self.add_passkey("Lost phone")
        self.sign_out()
        admin, admin_password = site.member()
        with site.engine.begin() as c:
            c.execute(
                sa.text("UPDATE users SET primary_group_id = (SELECT id FROM groups WHERE admin = :t) WHERE username = :n"),
                t=True,
                n=admin,
            )
        self.sign_in(admin, admin_password)
        self.chrome.open("/admin/flaskbbd")
        self.chrome.type("username", name, "form.flaskbbd-remove-passkeys")
        self.chrome.press('form.flaskbbd-remove-passkeys [name="submit"]')
        self.assertEqual(self.chrome.flashes("success"), [f"Passkeys of {name} removed: 1."])
        self.sign_out()
        self.chrome.open("/auth/login")
        self.use_passkey()
        self.assertFalse(self.signed_in())
        self.assertEqual(self.chrome.flashes("danger"), [NOT_REGISTERED])

    def test_an_assertion_sent_again_is_refused(self) -> None:
        name, password = site.member()
        self.sign_in(name, password)
        self.add_passkey("Laptop")
        self.sign_out()
        self.chrome.open("/auth/login")
        self.chrome.wait("the passkey button", lambda: self.chrome.find(".flaskbbd-passkey-button").is_displayed())
        # Keep what the page posts: the browser's signed answer to this sign-in.
        self.chrome.driver.execute_script(
            "const post = window.fetch;"
            "window.fetch = (url, init) => {"
            "  if (/\\/auth\\/passkey(\\?|$)/.test(String(url))) { localStorage.setItem('kept', init.body); }"
            "  return post(url, init); };"
        )
        self.use_passkey()
        self.assertTrue(self.signed_in(), self.chrome.flashes("danger"))
        self.sign_out()
        # Whoever got hold of it sends it again, in a sign-in of their own.
        self.chrome.open("/auth/login")
        self.chrome.wait("the passkey button", lambda: self.chrome.find(".flaskbbd-passkey-button").is_displayed())
        answer = self.chrome.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const token = document.querySelector('meta[name=\"csrf-token\"]').content;"
            "const post = (url, body) => fetch(url, {method: 'POST', credentials: 'same-origin',"
            "  headers: {'Content-Type': 'application/json', 'X-CSRFToken': token}, body: body});"
            "post('/auth/passkey/options', '{}')"
            "  .then(() => post('/auth/passkey', localStorage.getItem('kept')))"
            "  .then(r => r.json()).then(done, e => done({error: String(e)}));"
        )
        self.assertIn("redirect", answer)
        self.chrome.open(answer["redirect"])
        self.assertFalse(self.signed_in())
        self.assertEqual(self.chrome.flashes("danger"), [REFUSED])

    def assertion_at(self, origin: str, client: Client) -> Dict[str, Any]:
        """The daemon's answer to an assertion the browser's authenticator makes at
        ``origin`` for a sign-in begun with the daemon: the member, or raises."""
        context = {"remote_addr": "127.0.0.1"}
        options, ceremony = client.begin_passkey_sign_in(context)
        self.chrome.driver.get(origin + "/")
        credential = self.chrome.driver.execute_async_script(ASSERT_SCRIPT, options)
        self.assertNotIn("error", credential, credential)
        return client.finish_passkey_sign_in(ceremony, json.dumps(credential), context)

    def test_an_assertion_made_for_another_origin_is_refused(self) -> None:
        name, password = site.member()
        self.sign_in(name, password)
        self.add_passkey("Laptop")
        self.sign_out()
        client = Client(str(site.daemon.socket), 10)
        try:
            # From the forum's own origin the same steps sign the member in ...
            self.assertEqual(self.assertion_at(self.forum_url, client)["username"], name)
            # ... from another origin (a copy of the forum's page elsewhere, whose
            # visitors' browsers sign for that origin) the daemon refuses it.
            with other_origin() as elsewhere:
                with self.assertRaises(AuthenticationFailed) as refused:
                    self.assertion_at(elsewhere, client)
            self.assertEqual(refused.exception.reason, REFUSED)
        finally:
            client.close()
