"""FlaskBB's own pipeline, in-process: PluginAuthenticationManager with pluggy for
Authenticate (right and wrong password), and flaskbb_event_post_save_before through
five pluggy impls that mask words as flaskbbd's wordfilter does. Prints JSON: the
median seconds per call of each flow.

usage: python flaskbb_pipeline.py FLASKBB_CFG ROUNDS CONTENT
"""
import json
import os
import re
import statistics
import sys
import time

os.environ["FLASKBB_USE_DEFAULT_LOGGING"] = "False"

from pluggy import HookimplMarker  # noqa: E402

from flaskbb import create_app  # noqa: E402
from flaskbb.auth.services.authentication import PluginAuthenticationManager  # noqa: E402
from flaskbb.core.auth.authentication import StopAuthentication  # noqa: E402
from flaskbb.extensions import db  # noqa: E402
from flaskbb.forum.models import Post  # noqa: E402

hookimpl = HookimplMarker("flaskbb")


class WordFilter:
    """Masks whole words, case-insensitively, letter by letter."""

    def __init__(self, words):
        alternatives = "|".join(re.escape(w) for w in words)
        self.pattern = re.compile(r"\b(" + alternatives + r")\b", re.IGNORECASE)

    @hookimpl
    def flaskbb_event_post_save_before(self, post):
        post.content = self.pattern.sub(lambda m: "*" * len(m.group(0)), post.content)


def median_seconds(rounds, call):
    call()  # warm up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    cfg, rounds, content = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    app = create_app(cfg)
    pluggy = app.pluggy
    for i in range(5):
        pluggy.register(WordFilter([f"spam{i}", f"scam{i}", f"junk{i}"]), name=f"filter{i}")
    with app.app_context(), app.test_request_context():
        manager = PluginAuthenticationManager(pluggy, db.session)

        def right():
            assert manager.authenticate("alice", "AlicePass123") is not None

        def wrong():
            try:
                manager.authenticate("alice", "wrong")
            except StopAuthentication:
                return
            raise AssertionError("a wrong password was accepted")

        post = Post(content=content)

        def save_before():
            post.content = content
            pluggy.hook.flaskbb_event_post_save_before(post=post)
            assert "*****" in post.content.replace("\\", "")  # escaped by the daemon's wordfilter

        result = {
            "right": median_seconds(rounds, right),
            "wrong": median_seconds(rounds, wrong),
            "post_save_before": median_seconds(rounds * 50, save_before),
        }
        # Leave the counters as found, for the daemon's turn.
        manager.authenticate("alice", "AlicePass123")
    print(json.dumps(result))


main()
