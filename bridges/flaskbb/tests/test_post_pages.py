"""What a member sees in a real browser (headless Chromium) when the daemon masks or
refuses a post: the mask rendered as a mask, the text kept in every form, the reason
in red under the box; and topic views that never wait for the daemon."""

from __future__ import annotations

import re
from typing import Dict, Tuple

from testing.chrome import BrowserTestCase
from tests.support import Site

REJECTED = 'The text contains a word that is not allowed here: "forbidden".'
UNAVAILABLE = "Your post could not be checked, so it was not saved. Try again shortly."
#: Bootstrap's danger red, the colour of FlaskBB's fields in error (`has-error`).
DANGER_RED = "rgb(169, 68, 66)"

DAEMON_PLUGINS = (
    '[[plugin]]\nname = "masker"\nlibrary = "wordfilter"\nconfig = { words = ["darn"], action = "mask" }\n'
    '[[plugin]]\nname = "rejecter"\nlibrary = "wordfilter"\n'
    'config = { words = ["forbidden"], action = "reject" }\n'
)

site: Site


def setUpModule() -> None:
    global site
    site = Site("post_pages")
    site.start(DAEMON_PLUGINS)
    PostPages.forum_url = site.forum.url
    PostPages.artifacts = site.directory / "browser"


def tearDownModule() -> None:
    site.stop()


def event_calls() -> Dict[str, float]:
    """``flaskbbd_requests_total`` of each Events method, from the daemon's metrics."""
    text: str = site.daemon.admin("GetMetrics")["text"]
    calls: Dict[str, float] = {}
    for line in text.splitlines():
        found = re.match(r'flaskbbd_requests_total\{[^}]*method="org\.flaskbb\.Events\.(\w+)"[^}]*\} (\S+)', line)
        if found:
            calls[found.group(1)] = calls.get(found.group(1), 0.0) + float(found.group(2))
    return calls


class PostPages(BrowserTestCase):
    def member(self) -> str:
        name, password = site.member()
        self.chrome.login(name, password)
        self.assertTrue(self.chrome.find_all('a[href$="/auth/logout"]'), f"{name} is not logged in")
        return name

    def submit_editor(self) -> None:
        self.chrome.press('.editor-submit [name="submit"]')

    def new_topic(self, title: str, content: str) -> int:
        self.chrome.open("/1/topic/new")
        self.chrome.type("title", title)
        self.chrome.type("content", content)
        self.submit_editor()
        found = re.search(r"/topic/(\d+)", self.chrome.path)
        if found is None:
            raise AssertionError(f"no topic page after posting: {self.chrome.path}")
        return int(found.group(1))

    def posts(self, topic: int) -> Tuple[str, ...]:
        return tuple(r[0] for r in site.rows("SELECT content FROM posts WHERE topic_id = :t ORDER BY id", t=topic))

    def assertRefusedInPlace(self, reason: str, text: str) -> None:
        """The form is shown again with the member's text in its box and the reason
        under it, in red; nothing flashed at the top."""
        box = self.chrome.field("content")
        self.assertEqual(box.get_attribute("value"), text)
        errors = self.chrome.find_all(".flaskbbd-refused")
        self.assertEqual([e.text for e in errors], [reason])
        self.assertTrue(errors[0].is_displayed())
        self.assertEqual(self.chrome.color(errors[0]), DANGER_RED)
        # Under the box it belongs to: the same form, after the text area.
        same_form = self.chrome.driver.execute_script(
            "return arguments[0].form === arguments[1].closest('form') && "
            "(arguments[0].compareDocumentPosition(arguments[1]) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0;",
            box,
            errors[0],
        )
        self.assertTrue(same_form, "the reason is not under the member's text box")
        self.assertEqual(self.chrome.flashes("danger"), [])

    def test_a_masked_post_renders_the_mask_without_stray_emphasis(self) -> None:
        self.member()
        topic = self.new_topic("A darn day", "What a darn day. Darn it!")
        self.assertEqual(self.chrome.text(".breadcrumb li.active"), "A **** day")
        first = self.chrome.find(".post-content")
        self.assertEqual(first.text.strip(), "What a **** day. **** it!")
        self.assertEqual(first.find_elements("css selector", "strong, em, b, i, del, code, h1, h2, h3"), [])
        # A reply and a quick reply render the same way; a word in the member's own
        # emphasis is masked too (and emphasised, as the member wrote it).
        self.chrome.open(f"/topic/{topic}/post/new")
        self.chrome.type("content", "darn it, _darn_")
        self.submit_editor()
        self.chrome.type("content", "quick darn, darn")
        self.submit_editor()
        posts = self.chrome.find_all(".post-content")
        self.assertEqual([e.text.strip() for e in posts[1:]], ["**** it, ****", "quick ****, ****"])
        self.assertEqual([e.text for e in posts[1].find_elements("css selector", "em")], ["****"])
        # What is stored is Markdown that says so; the title is plain text.
        self.assertEqual(self.posts(topic)[0], r"What a \*\*\*\* day. \*\*\*\* it!")
        self.assertEqual(site.value("SELECT title FROM topics WHERE id = :t", t=topic), "A **** day")

    def test_a_refused_quick_reply_keeps_the_text_and_shows_the_reason_under_it(self) -> None:
        self.member()
        topic = self.new_topic("Quick replies", "First.")
        self.chrome.type("content", "a forbidden quick reply")
        self.submit_editor()
        self.assertIn(f"/topic/{topic}", self.chrome.path)
        self.assertRefusedInPlace(REJECTED, "a forbidden quick reply")
        self.assertEqual(self.posts(topic), ("First.",))
        # Fixed and sent again from the same box: saved.
        self.chrome.type("content", "a fine quick reply")
        self.submit_editor()
        self.assertEqual(self.posts(topic), ("First.", "a fine quick reply"))
        self.assertEqual(self.chrome.find_all(".flaskbbd-refused"), [])

    def test_refused_replies_topics_and_edits_keep_the_text_and_show_the_reason(self) -> None:
        self.member()
        topic = self.new_topic("Full forms", "First.")
        first = site.value("SELECT first_post_id FROM topics WHERE id = :t", t=topic)
        topics = site.value("SELECT count(*) FROM topics")
        for path, text in [
            (f"/topic/{topic}/post/new", "a forbidden reply"),
            ("/1/topic/new", "a forbidden topic"),
            (f"/post/{first}/edit", "now forbidden"),
        ]:
            with self.subTest(path=path):
                self.chrome.open(path)
                if path.endswith("/topic/new"):
                    self.chrome.type("title", "A title")
                self.chrome.type("content", text)
                self.submit_editor()
                self.assertRefusedInPlace(REJECTED, text)
        self.assertEqual(self.posts(topic), ("First.",))
        self.assertEqual(site.value("SELECT count(*) FROM topics"), topics)

    def test_with_the_daemon_away_a_quick_reply_keeps_the_text(self) -> None:
        self.member()
        topic = self.new_topic("Outage", "First.")
        site.daemon.stop()
        try:
            self.chrome.type("content", "written during an outage")
            self.submit_editor()
            self.assertRefusedInPlace(UNAVAILABLE, "written during an outage")
        finally:
            site.daemon.start()
        self.assertEqual(self.posts(topic), ("First.",))

    def test_viewing_a_topic_sends_the_daemon_nothing(self) -> None:
        self.member()
        before = event_calls()
        topic = self.new_topic("Views", "Read me.")
        made = event_calls()
        # Counting works: the new topic was checked and announced.
        self.assertGreaterEqual(made.get("TopicSaveBefore", 0) - before.get("TopicSaveBefore", 0), 1)
        self.assertGreaterEqual(made.get("TopicSaveAfter", 0) - before.get("TopicSaveAfter", 0), 1)
        views = site.value("SELECT views FROM topics WHERE id = :t", t=topic)
        for _ in range(20):
            self.chrome.open(f"/topic/{topic}")
            self.assertEqual(self.chrome.text(".breadcrumb li.active"), "Views")
        after = event_calls()
        self.assertEqual(site.value("SELECT views FROM topics WHERE id = :t", t=topic), views + 20)
        for method in ("TopicSaveBefore", "TopicSaveAfter", "PostSaveBefore", "PostSaveAfter"):
            self.assertEqual(after.get(method, 0), made.get(method, 0), method)
