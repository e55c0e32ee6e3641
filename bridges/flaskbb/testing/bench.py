"""What the bridge costs a forum: the same FlaskBB database served twice, by a plain
FlaskBB and by one with the bridge (and a daemon on that database), and the same
login and topic post timed on both, interleaved so that both see the same machine.

    python -m testing.bench --install DIR --dir WORK --daemon BIN --plugins DIR [--rounds N]

prints one JSON object with the medians (ms) and their ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import requests

from testing.browser import Browser
from testing.daemon import Daemon
from testing.forum import ALICE, Forum


def timed(action: Callable[[], requests.Response], expect: int) -> float:
    """Milliseconds one request took; fails unless it answered ``expect``."""
    started = time.perf_counter()
    response = action()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != expect:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code}, expected {expect}")
    return elapsed


def login_once(forum: Forum) -> float:
    """A person's login: the form's POST, until FlaskBB answers the redirect."""
    browser = Browser(forum.url)
    form = browser.get("/auth/login")
    data = {"csrf_token": form.fields["csrf_token"], "login": ALICE[0], "password": ALICE[1], "submit": "1"}
    return timed(lambda: browser.session.post(forum.url + "/auth/login", data=data, allow_redirects=False), 302)


def post_once(browser: Browser, n: int) -> float:
    """A new topic: the form's POST, until FlaskBB answers the redirect to it."""
    form = browser.get("/1/topic/new")
    data = {
        "csrf_token": form.fields["csrf_token"],
        "title": f"Benchmark topic {n}",
        "content": "A forum-sized post: " + "lorem ipsum dolor sit amet " * 40,
        "submit": "1",
    }
    return timed(lambda: browser.session.post(browser.base + "/1/topic/new", data=data, allow_redirects=False), 302)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m testing.bench")
    parser.add_argument("--install", required=True, type=Path)
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--daemon", required=True, type=Path)
    parser.add_argument("--plugins", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)

    db = f"sqlite:///{args.dir / 'forum.sqlite'}"
    (args.dir / "plain").mkdir(parents=True, exist_ok=True)
    (args.dir / "bridged" / "run").mkdir(parents=True, exist_ok=True)
    plain = Forum(args.install, args.dir / "plain", db)
    plain.write_config({})
    plain.make_database()
    daemon = Daemon(args.daemon, [args.plugins], args.dir / "bridged", db)
    daemon.configure(auth="lockout = { enabled = false }\n")
    bridged = Forum(args.install, args.dir / "bridged", db)
    bridged.write_config({"FLASKBBD_SOCKET": str(daemon.socket)})
    try:
        daemon.start()
        plain.start()
        bridged.start()
        writers = {}
        for name, forum in (("plain", plain), ("bridged", bridged)):
            writers[name] = Browser(forum.url)
            if not writers[name].login(*ALICE).logged_in:
                raise RuntimeError(f"alice cannot log in to the {name} forum")
        samples: Dict[str, List[float]] = {k: [] for k in ("login_plain", "login_bridged", "post_plain", "post_bridged")}
        for n in range(args.rounds + 3):
            # Alternate which forum goes first, so that neither always follows the other.
            order = ["plain", "bridged"] if n % 2 == 0 else ["bridged", "plain"]
            round_ = {}
            for name in order:
                round_[f"login_{name}"] = login_once(plain if name == "plain" else bridged)
            for name in order:
                round_[f"post_{name}"] = post_once(writers[name], n)
            if n >= 3:  # the first rounds warm caches and connections
                for key, value in round_.items():
                    samples[key].append(value)
    finally:
        bridged.stop()
        plain.stop()
        daemon.stop()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "median_ms": medians,
                "login_ratio": medians["login_bridged"] / medians["login_plain"],
                "post_ratio": medians["post_bridged"] / medians["post_plain"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
