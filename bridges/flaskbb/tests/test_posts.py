"""Topics, replies and edits on FlaskBB's own pages, checked by the daemon's event
chains before FlaskBB saves them; new members announced to it."""

from __future__ import annotations

import re
import unittest
from typing import Any, Dict, Tuple

from testing.browser import Browser
from tests.support import TRACE_PLUGIN, Site, SiteTestCase

REJECTED = 'The text contains a word that is not allowed here: "forbidden".'

site: Site


DAEMON_PLUGINS = (
    TRACE_PLUGIN
    + '[[plugin]]\nname = "masker"\nlibrary = "wordfilter"\nconfig = { words = ["darn"] }\n'
    + '[[plugin]]\nname = "rejecter"\nlibrary = "wordfilter"\n'
    + 'config = { words = ["forbidden"], action = "reject" }\n'
)


def setUpModule() -> None:
    global site
    site = Site("posts")
    site.start(DAEMON_PLUGINS)
    SiteTestCase.site = site


def tearDownModule() -> None:
    site.stop()


def topic_id(page_url: str) -> int:
    found = re.search(r"/topic/(\d+)", page_url)
    if found is None:
        raise AssertionError(f"not a topic page: {page_url}")
    return int(found.group(1))


class Saves(SiteTestCase):
    def new_topic(self, title: str, content: str) -> Tuple[Browser, int]:
        """A new member's browser, and the topic they posted."""
        browser, _ = site.logged_in()
        page = browser.submit("/1/topic/new", {"title": title, "content": content})
        self.assertEqual(page.status, 200, page)
        return browser, topic_id(page.url)

    def assertNothingSaved(self, before: Dict[str, Any]) -> None:
        after = site.snapshot()
        for table in ("topics", "posts", "forums"):
            self.assertEqual(after[table], before[table], table)

    def test_a_masked_word_is_saved_masked(self) -> None:
        browser, _ = site.logged_in()
        page = browser.submit("/1/topic/new", {"title": "A darn title", "content": "Well, darn it."})
        topic = topic_id(page.url)
        self.assertEqual(site.value("SELECT title FROM topics WHERE id = :t", t=topic), "A **** title")
        self.assertEqual(
            site.value("SELECT p.content FROM posts p JOIN topics t ON t.first_post_id = p.id WHERE t.id = :t", t=topic),
            r"Well, \*\*\*\* it.",
        )
        # A reply, a quick reply on the topic's page, and an edit: masked too.
        browser.submit(f"/topic/{topic}/post/new", {"content": "darn again"})
        browser.submit(f"/topic/{topic}", {"content": "quick darn"})
        contents = [r[0] for r in site.rows("SELECT content FROM posts WHERE topic_id = :t ORDER BY id", t=topic)]
        self.assertEqual(contents, [r"Well, \*\*\*\* it.", r"\*\*\*\* again", r"quick \*\*\*\*"])
        post = site.value("SELECT max(id) FROM posts WHERE topic_id = :t", t=topic)
        browser.submit(f"/post/{post}/edit", {"content": "edited, darn"})
        self.assertEqual(site.value("SELECT content FROM posts WHERE id = :p", p=post), r"edited, \*\*\*\*")

    def test_a_rejected_topic_saves_nothing_and_its_form_shows_why(self) -> None:
        browser, _ = site.logged_in()
        before = site.snapshot()
        page = browser.submit("/1/topic/new", {"title": "Hello", "content": "Something forbidden here."})
        # The form again, with the person's text and the daemon's reason on it.
        self.assertEqual(page.status, 200)
        self.assertTrue(page.url.endswith("/1/topic/new"), page.url)
        self.assertIn(REJECTED, page.errors)
        self.assertIn("Something forbidden here.", page.text)
        self.assertEqual(page.fields.get("title"), "Hello")
        self.assertNothingSaved(before)
        # Every page still answers.
        for path in ["/", "/forum/1", "/1/topic/new"] + [f"/topic/{t}" for (t, *_) in before["topics"]]:
            self.assertEqual(browser.get(path).status, 200, path)

    def test_a_rejected_title_saves_nothing(self) -> None:
        browser, _ = site.logged_in()
        before = site.snapshot()
        page = browser.submit("/1/topic/new", {"title": "forbidden title", "content": "Fine text."})
        self.assertIn(REJECTED, page.errors)
        self.assertNothingSaved(before)

    def test_rejected_replies_and_edits_save_nothing(self) -> None:
        browser, topic = self.new_topic("Replies", "First.")
        first = site.value("SELECT first_post_id FROM topics WHERE id = :t", t=topic)
        before = site.snapshot()
        page = browser.submit(f"/topic/{topic}/post/new", {"content": "a forbidden reply"})
        self.assertIn(REJECTED, page.errors)
        self.assertIn("a forbidden reply", page.text)
        # The quick reply form sits on the topic's page: shown again there, the text in
        # its box and the reason under it (test_post_pages looks at it in a browser).
        page = browser.submit(f"/topic/{topic}", {"content": "a forbidden quick reply"})
        self.assertIn(REJECTED, page.errors)
        self.assertIn("a forbidden quick reply", page.text)
        self.assertEqual(page.flash("danger"), [])
        self.assertEqual(topic_id(page.url), topic)
        page = browser.submit(f"/post/{first}/edit", {"content": "now forbidden"})
        self.assertIn(REJECTED, page.errors)
        self.assertNothingSaved(before)
        self.assertEqual(site.value("SELECT content FROM posts WHERE id = :p", p=first), "First.")
        self.assertEqual(browser.get(f"/topic/{topic}").status, 200)

    def test_saves_reach_the_daemon_after_they_happen(self) -> None:
        _, topic = self.new_topic("Announced", "Hello there.")
        post = site.value("SELECT first_post_id FROM topics WHERE id = :t", t=topic)
        self.assertIn({"is_new": True, "topic": {"id": topic, "title": "Announced"}}, site.traced("flaskbb_event_topic_save_after"))
        self.assertIn({"is_new": True, "post": {"id": post, "content": "Hello there."}}, site.traced("flaskbb_event_post_save_after"))
        # One chain run per save: the form's check is not repeated by FlaskBB's hook.
        befores = site.traced("flaskbb_event_post_save_before")
        self.assertEqual([b for b in befores if b["post"].get("content") == "Hello there."], [{"post": {"content": "Hello there.", "id": None}}])


class WordAddedLater(SiteTestCase):
    """A word that becomes forbidden after a topic used it: the topic stays readable.
    FlaskBB saves a topic on every view (to count it); a save that changes only the
    view counter is not sent to the daemon at all (any other save that brings no new
    text is told to the daemon but never refused)."""

    def test_old_topics_stay_readable_and_their_views_counted(self) -> None:
        browser, _ = site.logged_in()
        page = browser.submit("/1/topic/new", {"title": "Breaking news", "content": "Read all about it."})
        topic = topic_id(page.url)
        views = site.value("SELECT views FROM topics WHERE id = :t", t=topic)
        site.configure_daemon(
            TRACE_PLUGIN + '[[plugin]]\nname = "rejecter"\nlibrary = "wordfilter"\n'
            'config = { words = ["forbidden", "news"], action = "reject" }\n'
        )
        try:
            page = browser.get(f"/topic/{topic}")
            self.assertEqual(page.status, 200)
            self.assertEqual(page.flash("danger"), [])
            self.assertEqual(site.value("SELECT views FROM topics WHERE id = :t", t=topic), views + 1)
            # The view was counted without asking the daemon (restarted above, so its
            # counters start from nothing).
            metrics = site.daemon.admin("GetMetrics")["text"]
            self.assertNotIn('flaskbbd_requests_total{method="org.flaskbb.Events.TopicSave', metrics)
            self.assertNotIn(f"topic {topic}", site.forum.log())
        finally:
            site.configure_daemon(DAEMON_PLUGINS)


class Registration(SiteTestCase):
    def test_a_new_member_is_announced_and_flaskbbs_own_welcome_still_runs(self) -> None:
        browser = site.browser()
        page = browser.submit(
            "/auth/register",
            {
                "username": "newcomer",
                "email": "newcomer@example.org",
                "password": "Welcome123!",
                "confirm_password": "Welcome123!",
                "accept_tos": "y",
                "language": "en",
            },
        )
        self.assertEqual(page.status, 200, page)
        self.assertIn({"username": "newcomer"}, site.traced("flaskbb_event_user_registered"))
        # FlaskBB's own handler of the same hook (activation mail) ran as before.
        self.assertEqual(
            page.flash("success"), ["An account activation email has been sent to newcomer@example.org"]
        )


if __name__ == "__main__":
    unittest.main()
