"""A real flaskbbd for the bridge's tests, on the forum's own database
(``database.schema = "flaskbb"``), started from the binary the workspace built."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from flaskbb_flaskbbd.client import ADMIN, Client, DaemonError


class Daemon:
    """flaskbbd in ``directory``, on the database at ``db_url``, with plugins from
    ``plugin_dirs``."""

    def __init__(self, binary: Path, plugin_dirs: List[Path], directory: Path, db_url: str) -> None:
        self.binary = binary
        self.plugin_dirs = plugin_dirs
        self.directory = directory
        self.db_url = db_url
        self.config_path = directory / "flaskbb.toml"
        self.socket = directory / "run" / "flaskbbd.sock"
        self.log_path = directory / "flaskbbd.log"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.client = Client(str(self.socket), 30)

    def configure(self, plugins: str = "", auth: str = "", database: Optional[str] = None) -> None:
        """Writes ``flaskbb.toml``: the forum's database (or the ``[database]`` keys
        given), bcrypt cost 4, and the given ``[[plugin]]`` tables and ``[auth]`` keys."""
        dirs = ", ".join(json.dumps(str(d)) for d in self.plugin_dirs)
        if database is None:
            database = f"url = {json.dumps(self.db_url)}\nschema = \"flaskbb\""
        self.config_path.write_text(
            f"[daemon]\nsocket = \"run/flaskbbd.sock\"\nhook_timeout_ms = 30000\n"
            f"[database]\n{database}\n"
            f"[auth]\nbcrypt_cost = 4\n{auth}\n"
            f"[plugins]\ndirs = [{dirs}]\n{plugins}"
        )

    def start(self) -> None:
        """Starts the daemon and waits until its socket answers."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": "info"},
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"flaskbbd exited ({self.process.returncode}):\n{self.log()}")
            probe = Client(str(self.socket), 5)
            try:
                probe.call("org.varlink.service.GetInfo", {})
                return
            except DaemonError:
                time.sleep(0.05)
            finally:
                probe.close()
        raise RuntimeError(f"flaskbbd did not answer on {self.socket} within 30 s:\n{self.log()}")

    def stop(self) -> None:
        self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def admin(self, method: str, **parameters: Any) -> Dict[str, Any]:
        """Calls ``org.flaskbb.Admin.<method>`` (this process is the daemon's owner)."""
        return self.client.call(f"{ADMIN}.{method}", parameters)

    def create_user(self, username: str, password: str, activated: bool = True) -> Dict[str, Any]:
        """A member, made through the daemon (a werkzeug hash in FlaskBB's table)."""
        user: Dict[str, Any] = self.admin(
            "CreateUser",
            username=username,
            email=f"{username}@example.org",
            password=password,
            activated=activated,
        )["user"]
        return user

    def user(self, identifier: str) -> Dict[str, Any]:
        user: Dict[str, Any] = self.admin("GetUser", identifier=identifier)["user"]
        return user

    def store_set(self, instance: str, key: str, value: str) -> None:
        """Sets a key of an instance's key-value store with the CLI (TOTP enrolment)."""
        out = subprocess.run(
            [str(self.binary), "store", "set", instance, key, "--config", str(self.config_path)],
            input=value + "\n",
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"flaskbbd store set failed: {out.stderr}")
