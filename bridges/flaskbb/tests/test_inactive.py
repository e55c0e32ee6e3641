"""The bridge installed but not configured: FlaskBB as it was, and one line saying so."""

from __future__ import annotations

import unittest

from tests.support import WRONG, Site, SiteTestCase

site: Site


def setUpModule() -> None:
    global site
    site = Site("inactive", daemon=False)
    site.forum.start()
    SiteTestCase.site = site


def tearDownModule() -> None:
    site.stop()


class WithoutASocket(SiteTestCase):
    def test_flaskbb_logs_in_by_itself_and_says_the_bridge_is_inactive(self) -> None:
        name, password = site.member()
        page = site.browser().login(name, "wrong")
        # FlaskBB's own pipeline, with its own counter (no daemon runs at all).
        self.assertEqual(page.flash("danger"), [WRONG])
        self.assertEqual(int(site.value("SELECT login_attempts FROM users WHERE username = :n", n=name)), 1)
        self.assertTrue(site.browser().login(name, password).logged_in)
        self.assertEqual(site.forum.log().count("flaskbbd bridge inactive: FLASKBBD_SOCKET is not set"), 1)

    def test_posts_are_saved_by_flaskbb_alone(self) -> None:
        browser, _ = site.logged_in()
        page = browser.submit("/1/topic/new", {"title": "Plain", "content": "No daemon here."})
        self.assertEqual(page.status, 200)
        self.assertEqual(site.value("SELECT count(*) FROM topics WHERE title = 'Plain'"), 1)


class BadSettings(SiteTestCase):
    def test_a_bad_timeout_stops_flaskbb_with_a_message_naming_the_key(self) -> None:
        site.forum.write_config({"FLASKBBD_SOCKET": "/run/flaskbbd/flaskbbd.sock", "FLASKBBD_TIMEOUT": "ten"})
        try:
            with self.assertRaises(RuntimeError) as failed:
                site.forum.flaskbb("urls")
        finally:
            site.forum.write_config({})
        self.assertIn(
            "FLASKBBD_TIMEOUT in FlaskBB's config must be a number of seconds above 0 (default 10), not 'ten'",
            str(failed.exception),
        )

    def test_each_setting_is_checked(self) -> None:
        from flaskbb_flaskbbd.bridge import ConfigError, from_config

        for bad in ("ten", 0, -1, float("nan"), float("inf"), True, None):
            with self.assertRaises(ConfigError, msg=repr(bad)):
                from_config({"FLASKBBD_SOCKET": "/run/flaskbbd/flaskbbd.sock", "FLASKBBD_TIMEOUT": bad})
        with self.assertRaises(ConfigError) as caught:
            from_config({"FLASKBBD_SOCKET": 42})
        self.assertIn("FLASKBBD_SOCKET in FlaskBB's config must be the path", str(caught.exception))
        self.assertIsNone(from_config({}))
        self.assertIsNone(from_config({"FLASKBBD_SOCKET": ""}))
        bridge = from_config({"FLASKBBD_SOCKET": "/s", "FLASKBBD_TIMEOUT": "2.5"})
        assert bridge is not None
        self.assertEqual((bridge.socket_path, bridge.timeout), ("/s", 2.5))


if __name__ == "__main__":
    unittest.main()
