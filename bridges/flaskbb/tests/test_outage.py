"""The daemon away, failing or slow: nobody signs in, nothing is saved unchecked,
every page still answers, FlaskBB logs the cause; and once the daemon is back, all
works again without restarting FlaskBB."""

from __future__ import annotations

import time
import unittest

from flaskbb_flaskbbd.bridge import SAVE_UNAVAILABLE, SIGN_IN_UNAVAILABLE
from testing.browser import Browser
from tests.support import TRACE_PLUGIN, Site, SiteTestCase

site: Site


def setUpModule() -> None:
    global site
    # A short timeout, for the slow-daemon case.
    site = Site("outage", bridge={"FLASKBBD_TIMEOUT": 2})
    site.start()
    SiteTestCase.site = site


def tearDownModule() -> None:
    site.stop()


class DaemonStopped(SiteTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        site.configure_daemon()

    def test_nothing_works_unchecked_while_it_is_away_and_all_works_once_it_is_back(self) -> None:
        name, password = site.member()
        poster, _ = site.logged_in()
        # A connection exists from earlier calls: the restart must be noticed.
        reauther, _ = site.asked_to_reauthenticate()
        topics = [t for (t, *_) in site.snapshot()["topics"]]
        site.daemon.stop()
        log_mark = len(site.forum.log())
        before = site.snapshot()

        page = site.browser().login(name, password)
        self.assertFalse(page.logged_in)
        self.assertEqual(page.flash("danger"), [SIGN_IN_UNAVAILABLE])
        page = reauther.submit("/auth/reauth", {"password": "Secret123!"})
        self.assertEqual(page.flash("danger"), [SIGN_IN_UNAVAILABLE])
        page = poster.submit("/1/topic/new", {"title": "While away", "content": "Hello?"})
        self.assertIn(SAVE_UNAVAILABLE, page.errors)
        self.assertIn("Hello?", page.text)
        # Reading goes on.
        for path in ["/", "/forum/1"] + [f"/topic/{t}" for t in topics]:
            self.assertEqual(poster.get(path).status, 200, path)
        after = site.snapshot()
        self.assertEqual(after["topics"], [(t, title, n, first) for (t, title, n, first) in before["topics"]])
        self.assertEqual(after["posts"], before["posts"])
        self.assertEqual(
            [u[:4] for u in after["users"]], [u[:4] for u in before["users"]], "no login counter moved"
        )
        log = site.forum.log()[log_mark:]
        self.assertIn("login refused, flaskbbd could not decide it: cannot connect to", log)
        self.assertIn("reauthentication refused, flaskbbd could not decide it", log)
        self.assertIn("save refused, flaskbbd could not check it", log)

        site.daemon.start()
        page = site.browser().login(name, password)
        self.assertTrue(page.logged_in, page)
        page = poster.submit("/1/topic/new", {"title": "Back again", "content": "Hello!"})
        self.assertEqual(page.status, 200)
        self.assertEqual(site.value("SELECT count(*) FROM topics WHERE title = 'Back again'"), 1)
        page = reauther.submit("/auth/reauth", {"password": "Secret123!"})
        self.assertEqual(page.flash("success"), ["Reauthenticated."])


class DaemonFails(SiteTestCase):
    """The daemon answers InternalError: a plugin in its chain failed."""

    poster: Browser

    @classmethod
    def setUpClass(cls) -> None:
        site.configure_daemon()
        cls.poster, _ = site.logged_in()
        site.configure_daemon(
            TRACE_PLUGIN + '[[plugin]]\nname = "broken"\nlibrary = "scripted"\n'
            'config = { on = { flaskbb_authenticate = { action = "error", message = "directory unreachable" },'
            ' flaskbb_event_post_save_before = { action = "error", message = "filter list unreadable" } } }\n'
        )

    def test_a_failing_chain_fails_closed_and_its_cause_is_logged(self) -> None:
        name, password = site.member()
        log_mark = len(site.forum.log())
        before = site.snapshot()
        page = site.browser().login(name, password)
        self.assertFalse(page.logged_in)
        self.assertEqual(page.flash("danger"), [SIGN_IN_UNAVAILABLE])
        page = self.poster.submit("/1/topic/new", {"title": "Checked?", "content": "Not without a filter."})
        self.assertIn(SAVE_UNAVAILABLE, page.errors)
        after = site.snapshot()
        self.assertEqual((after["topics"], after["posts"]), (before["topics"], before["posts"]))
        self.assertEqual(int(site.value("SELECT login_attempts FROM users WHERE username = :n", n=name)), 0)
        log = site.forum.log()[log_mark:]
        self.assertIn('instance "broken" failed in flaskbb_authenticate: directory unreachable', log)
        self.assertIn('instance "broken" failed in flaskbb_event_post_save_before: filter list unreadable', log)


class DaemonOnAnotherDatabase(SiteTestCase):
    """A misconfigured daemon: its own database instead of the forum's."""

    @classmethod
    def setUpClass(cls) -> None:
        site.configure_daemon(database='url = "sqlite:///elsewhere.db"')

    @classmethod
    def tearDownClass(cls) -> None:
        site.configure_daemon()

    def test_a_user_the_forum_does_not_have_is_not_logged_in(self) -> None:
        # Id 1 in the daemon's database is someone else than the forum's user 1.
        site.daemon.create_user("stranger", "Stranger123!")
        log_mark = len(site.forum.log())
        page = site.browser().login("stranger", "Stranger123!")
        self.assertFalse(page.logged_in)
        self.assertEqual(page.flash("danger"), [SIGN_IN_UNAVAILABLE])
        self.assertIn(
            "login refused: flaskbbd accepted user 1 ('stranger'), but this forum's database has user 'admin' "
            "under that id; run the daemon on the forum's database",
            site.forum.log()[log_mark:],
        )


class DaemonSlow(SiteTestCase):
    """The daemon takes longer than FLASKBBD_TIMEOUT (2 s here)."""

    @classmethod
    def setUpClass(cls) -> None:
        site.configure_daemon(
            TRACE_PLUGIN + '[[plugin]]\nname = "slow"\nlibrary = "scripted"\n'
            'config = { on = { flaskbb_authenticate = { action = "sleep", ms = 4000 } } }\n'
        )

    def test_a_slow_answer_is_given_up_on_and_the_next_request_is_not_confused(self) -> None:
        name, password = site.member()
        log_mark = len(site.forum.log())
        started = time.monotonic()
        page = site.browser().login(name, password)
        self.assertFalse(page.logged_in)
        self.assertEqual(page.flash("danger"), [SIGN_IN_UNAVAILABLE])
        self.assertIn("no answer from", site.forum.log()[log_mark:])
        self.assertIn("within 2 s", site.forum.log()[log_mark:])
        # The late answer must not be taken as the next call's: the forum's next page
        # (any call on the same worker thread) gets its own answer.
        site.configure_daemon()
        page = site.browser().login(name, password)
        self.assertTrue(page.logged_in, page)
        self.assertLess(time.monotonic() - started, 60)


if __name__ == "__main__":
    unittest.main()
