"""A FlaskBB forum for tests: its config file, its database (made by FlaskBB's own
``install`` command), and its own HTTP server (``flaskbb run``).

Also a command, for the Rust tests and benchmarks::

    python -m testing.forum make --install DIR --dir FORUM_DIR --db URI

makes ``FORUM_DIR/flaskbb.cfg`` and the database at ``URI`` with ``admin`` /
``AdminPass123`` (Administrator) and ``alice`` / ``AlicePass123`` (Member).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import requests

ADMIN = ("admin", "AdminPass123")
ALICE = ("alice", "AlicePass123")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Forum:
    """A FlaskBB forum in ``directory``: config, database at ``db_uri``, server."""

    def __init__(self, install: Path, directory: Path, db_uri: str) -> None:
        self.install = install
        self.directory = directory
        self.db_uri = db_uri
        self.config_path = directory / "flaskbb.cfg"
        self.log_path = directory / "flaskbb.log"
        self.port = free_port()
        self.process: Optional[subprocess.Popen[bytes]] = None
        self._secret = secrets.token_hex(24)

    @property
    def secret_key(self) -> str:
        """FlaskBB's ``SECRET_KEY``, which signs its tokens (a password reset's)."""
        return self._secret

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bin(self, name: str) -> str:
        return str(self.install / "venv" / "bin" / name)

    def write_config(self, bridge: Dict[str, object]) -> None:
        """FlaskBB's config: defaults for a test forum, and ``bridge``'s keys (such as
        ``FLASKBBD_SOCKET``) as they would be written by an operator."""
        lines = [
            "import logging, sys",
            "logging.basicConfig(level=logging.WARNING, stream=sys.stderr,",
            "    format='%(asctime)s %(levelname)s %(name)s: %(message)s')",
            "logging.getLogger('flaskbb_flaskbbd').setLevel(logging.INFO)",
            f"SQLALCHEMY_DATABASE_URI = {self.db_uri!r}",
            f"SECRET_KEY = {self._secret!r}",
            f"WTF_CSRF_SECRET_KEY = {self._secret[::-1]!r}",
            "SERVER_NAME = None",
            "USE_DEFAULT_LOGGING = False",
            "from flaskbb.configs.default import DefaultConfig",
            f"ALEMBIC = dict(DefaultConfig.ALEMBIC, script_location={str(self.install / 'migrations')!r})",
            f"WHOOSHEE_DIR = {str(self.directory / 'whoosh')!r}",
            # Activation mails run in-process and are not sent.
            "CELERY_ALWAYS_EAGER = True",
            "MAIL_SUPPRESS_SEND = True",
            "REDIS_ENABLED = False",
            # The tests log in far more than FlaskBB's 20 /auth requests per 15 minutes.
            "RATELIMIT_ENABLED = False",
        ]
        lines += [f"{key} = {value!r}" for key, value in bridge.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def env(self) -> Dict[str, str]:
        # FlaskBB runs helpers (pybabel) by name: its virtualenv comes first on PATH.
        path = f"{self.install / 'venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "PATH": path, "FLASKBB_USE_DEFAULT_LOGGING": "False"}

    def flaskbb(self, *args: str) -> str:
        """Runs a ``flaskbb`` command on this forum; its output, or an error with it."""
        out = subprocess.run(
            [self.bin("flaskbb"), "--config", str(self.config_path), *args],
            env=self.env(),
            cwd=self.directory,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"flaskbb {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def make_database(self) -> None:
        """The database, made by FlaskBB itself, with ``admin`` and ``alice``."""
        self.flaskbb("install", "-f", "-u", ADMIN[0], "-e", "admin@example.org", "-p", ADMIN[1])
        self.flaskbb("users", "new", "-u", ALICE[0], "-e", "alice@example.org", "-p", ALICE[1], "-g", "member")

    def start(self) -> None:
        """Starts FlaskBB's own server and waits until it answers."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.bin("flaskbb"), "--config", str(self.config_path), "run",
             "--host", "127.0.0.1", "--port", str(self.port), "--no-reload", "--with-threads"],
            env=self.env(),
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"FlaskBB exited ({self.process.returncode}):\n{self.log()}")
            try:
                if requests.get(self.url + "/", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"FlaskBB did not answer on {self.url} within 90 s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        """What FlaskBB's server printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m testing.forum")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="make a forum's config and database")
    make.add_argument("--install", required=True, type=Path, help="install-flaskbb.sh's DIR")
    make.add_argument("--dir", required=True, type=Path, help="where flaskbb.cfg goes")
    make.add_argument("--db", required=True, help="SQLAlchemy URI of the database to make")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    forum = Forum(args.install, args.dir, args.db)
    forum.write_config({})
    forum.make_database()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
