"""What every bridge test module shares: where the daemon, its plugins and FlaskBB
are (from the environment the Rust runner sets), one forum per module (its own
database, made by FlaskBB; its own FlaskBB server with the bridge on), a daemon on
that database, and helpers to read the database and the daemon's trace."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import secrets
import shutil
import struct
import time
import unittest
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import sqlalchemy as sa

from testing.browser import Browser
from testing.daemon import Daemon
from testing.forum import Forum

#: What the daemon's chain answers for a wrong password or an unknown user.
WRONG = "Wrong username or password."
#: The `scripted` plugin traces every call into this file (in the daemon's directory).
TRACE = "trace.jsonl"
TRACE_PLUGIN = (
    f'[[plugin]]\nname = "trace"\nlibrary = "scripted"\nconfig = {{ trace = "{TRACE}" }}\n'
    f'sandbox = {{ write = ["{TRACE}"] }}\n'
)
#: The `audit` plugin writes each chain's outcome and request context to this file.
AUDIT = "audit.jsonl"
AUDIT_PLUGIN = (
    f'[[plugin]]\nname = "audit"\nlibrary = "audit"\nconfig = {{ path = "{AUDIT}" }}\n'
    f'sandbox = {{ write = ["{AUDIT}"] }}\n'
)


@dataclass(frozen=True)
class Environment:
    """Set by the Rust runner: ``FLASKBBD_BIN`` (the daemon), ``FLASKBBD_PLUGIN_DIRS``
    (``:``-separated), ``FLASKBB_INSTALL`` (install-flaskbb.sh's directory),
    ``FLASKBBD_TEST_SCRATCH`` (a directory for this run), ``FLASKBBD_TEST_DB``
    (``sqlite`` or ``postgres``) and, for PostgreSQL, ``FLASKBBD_TEST_PG`` (the
    server's URL, trust authentication)."""

    daemon: Path
    plugin_dirs: List[Path]
    flaskbb: Path
    scratch: Path
    backend: str
    pg_server: str

    @staticmethod
    def read() -> "Environment":
        missing = [k for k in ("FLASKBBD_BIN", "FLASKBBD_PLUGIN_DIRS", "FLASKBB_INSTALL", "FLASKBBD_TEST_SCRATCH") if k not in os.environ]
        if missing:
            raise RuntimeError(
                f"{', '.join(missing)} not set: run these tests with `cargo test --workspace` "
                "(tests/tests/flaskbb_bridge.rs), which builds and installs what they need"
            )
        return Environment(
            daemon=Path(os.environ["FLASKBBD_BIN"]),
            plugin_dirs=[Path(p) for p in os.environ["FLASKBBD_PLUGIN_DIRS"].split(":")],
            flaskbb=Path(os.environ["FLASKBB_INSTALL"]),
            scratch=Path(os.environ["FLASKBBD_TEST_SCRATCH"]),
            backend=os.environ.get("FLASKBBD_TEST_DB", "sqlite"),
            pg_server=os.environ.get("FLASKBBD_TEST_PG", "postgresql://postgres@127.0.0.1:5432"),
        )


class Site:
    """One forum with the bridge, and the daemon it talks to."""

    def __init__(self, label: str, bridge: Optional[Dict[str, object]] = None, daemon: bool = True) -> None:
        env = Environment.read()
        self.env = env
        self.directory = env.scratch / label
        shutil.rmtree(self.directory, ignore_errors=True)
        (self.directory / "run").mkdir(parents=True)
        self.pg_database: Optional[str] = None
        if env.backend == "postgres":
            self.pg_database = f"fbb_{label}_{os.getpid()}"
            self._pg_admin(f"DROP DATABASE IF EXISTS {self.pg_database}")
            self._pg_admin(f"CREATE DATABASE {self.pg_database}")
            self.db_uri = f"{env.pg_server}/{self.pg_database}"
        else:
            self.db_uri = f"sqlite:///{self.directory / 'forum.sqlite'}"
        self.engine = sa.create_engine(self.db_uri)
        self.forum = Forum(env.flaskbb, self.directory, self.db_uri)
        self.daemon = Daemon(env.daemon, env.plugin_dirs, self.directory, self.db_uri)
        # FlaskBB makes its database first (the daemon runs on it), as an operator
        # would; then the bridge is configured.
        self.forum.write_config({})
        self.forum.make_database()
        # A password the daemon sets on FlaskBB's schema is werkzeug's pbkdf2 (600,000
        # rounds), which a loaded CI machine can take seconds to check: the bridge waits
        # longer than the tests' daemon (testing/daemon.py) gives a hook, so that a slow
        # check is the daemon's answer, not the bridge giving up.
        settings: Dict[str, object] = (
            {"FLASKBBD_SOCKET": str(self.daemon.socket), "FLASKBBD_TIMEOUT": 40} if daemon else {}
        )
        settings.update(bridge or {})
        self.forum.write_config(settings)
        self._names = itertools.count(1)

    def _pg_admin(self, statement: str) -> None:
        engine = sa.create_engine(f"{self.env.pg_server}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(sa.text(statement))
        engine.dispose()

    def start(self, plugins: str = TRACE_PLUGIN, auth: str = "") -> None:
        self.configure_daemon(plugins, auth)
        self.forum.start()

    def configure_daemon(self, plugins: str = TRACE_PLUGIN, auth: str = "", database: Optional[str] = None) -> None:
        """(Re)starts the daemon with these ``[[plugin]]`` tables, ``[auth]`` keys and
        (if given) ``[database]`` keys; FlaskBB keeps running (the bridge reconnects)."""
        self.daemon.stop()
        self.daemon.configure(plugins, auth, database)
        (self.directory / TRACE).unlink(missing_ok=True)
        (self.directory / AUDIT).unlink(missing_ok=True)
        self.daemon.start()

    def stop(self) -> None:
        self.forum.stop()
        self.daemon.stop()
        self.engine.dispose()
        if self.pg_database is not None:
            self._pg_admin(f"DROP DATABASE IF EXISTS {self.pg_database} WITH (FORCE)")

    # -- people -----------------------------------------------------------------------

    def browser(self) -> Browser:
        return Browser(self.forum.url)

    def member(self, password: str = "Secret123!") -> Tuple[str, str]:
        """A new activated member (username, password), written into FlaskBB's table as
        an old FlaskBB would have: with a werkzeug pbkdf2 hash (of few rounds, for the
        tests' speed; FlaskBB and the daemon read the rounds from the hash)."""
        name = f"m{next(self._names)}_{os.getpid() % 10000}"
        salt = secrets.token_hex(4)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1000).hex()
        with self.engine.begin() as c:
            c.execute(
                sa.text(
                    "INSERT INTO users (username, email, password, date_joined, lastseen, "
                    "login_attempts, activated, language, post_count, primary_group_id) "
                    "VALUES (:n, :e, :p, :d, :d, 0, :a, 'en', 0, "
                    "(SELECT id FROM groups WHERE name = 'Member'))"
                ),
                n=name,
                e=f"{name}@example.org",
                p=f"pbkdf2:sha256:1000${salt}${digest}",
                d=datetime.now(timezone.utc).replace(tzinfo=None),
                a=True,
            )
        return name, password

    def logged_in(self, password: str = "Secret123!", remember: bool = False) -> Tuple[Browser, str]:
        """A browser of a new member who has logged in."""
        name, password = self.member(password)
        browser = self.browser()
        page = browser.login(name, password, remember=remember)
        if not page.logged_in:
            raise AssertionError(f"{name} could not log in: {page!r}")
        return browser, name

    def asked_to_reauthenticate(self, password: str = "Secret123!") -> Tuple[Browser, str]:
        """A browser of a member who logged in with "remember me" some time ago and
        came back: logged in, but FlaskBB wants the password again."""
        browser, name = self.logged_in(password, remember=True)
        browser.close_and_reopen()
        page = browser.get("/auth/reauth")
        if not (page.logged_in and "password" in page.fields):
            raise AssertionError(f"FlaskBB did not ask {name} to reauthenticate: {page!r}")
        return browser, name

    # -- what the forum's database and the daemon hold ------------------------------

    def rows(self, query: str, **params: Any) -> List[Tuple[Any, ...]]:
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(query), **params)]

    def value(self, query: str, **params: Any) -> Any:
        rows = self.rows(query, **params)
        return rows[0][0] if rows else None

    def snapshot(self) -> Dict[str, List[Tuple[Any, ...]]]:
        """Every row a login or a save could change, for "nothing changed" checks."""
        return {
            "users": self.rows("SELECT id, username, login_attempts, last_failed_login, lastseen FROM users ORDER BY id"),
            "topics": self.rows("SELECT id, title, post_count, first_post_id FROM topics ORDER BY id"),
            "posts": self.rows("SELECT id, topic_id, content FROM posts ORDER BY id"),
            "forums": self.rows("SELECT id, topic_count, post_count FROM forums ORDER BY id"),
        }

    def trace(self) -> List[Dict[str, Any]]:
        """The calls the daemon's `trace` instance saw, in order."""
        path = self.directory / TRACE
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def audit(self) -> List[Dict[str, Any]]:
        """The records the daemon's `audit` instance wrote, in order."""
        path = self.directory / AUDIT
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def traced(self, hook: str) -> List[Dict[str, Any]]:
        """The arguments of each traced call of ``hook``."""
        return [t["args"] for t in self.trace() if t["hook"] == hook]


def totp(secret: str, at: Optional[float] = None) -> str:
    """The RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret at ``at``."""
    key = base64.b32decode(secret)
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


class SiteTestCase(unittest.TestCase):
    """A test case on the module's site (``site`` is set by ``setUpModule``)."""

    site: Site

    def assertFlashed(self, page: Any, category: str, message: str) -> None:
        self.assertIn(message, page.flash(category), f"{page!r}")
