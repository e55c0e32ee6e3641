"""The bridge's Varlink client against a real daemon: connections per thread and per
process (never shared across a fork), and a daemon that restarts between calls."""

from __future__ import annotations

import os
import shutil
import threading
import unittest
from typing import List

from flaskbb_flaskbbd.client import Client, Unavailable
from testing.daemon import Daemon
from tests.support import Environment

daemon: Daemon


def setUpModule() -> None:
    global daemon
    env = Environment.read()
    directory = env.scratch / "client"
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "run").mkdir(parents=True)
    daemon = Daemon(env.daemon, env.plugin_dirs, directory, "")
    daemon.configure(database='url = "sqlite:///client.db"')
    daemon.start()


def tearDownModule() -> None:
    daemon.stop()


def describe(client: Client, interface: str) -> str:
    reply = client.call("org.varlink.service.GetInterfaceDescription", {"interface": interface})
    description: str = reply["description"]
    return description


class Connections(unittest.TestCase):
    def test_threads_each_get_their_own_answers(self) -> None:
        client = Client(str(daemon.socket), 10)
        wrong: List[str] = []

        def ask(interface: str) -> None:
            for _ in range(30):
                if f"interface {interface}" not in describe(client, interface):
                    wrong.append(interface)

        threads = [threading.Thread(target=ask, args=(i,)) for i in ["org.flaskbb.Auth", "org.flaskbb.Events"] * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(wrong, [])
        client.close()

    def test_a_forked_child_opens_its_own_connection(self) -> None:
        client = Client(str(daemon.socket), 10)
        describe(client, "org.flaskbb.Auth")  # the parent's connection now exists
        pid = os.fork()
        if pid == 0:  # the child: its answers must be its own
            ok = all("interface org.flaskbb.Events" in describe(client, "org.flaskbb.Events") for _ in range(50))
            os._exit(0 if ok else 1)
        answers = [describe(client, "org.flaskbb.Auth") for _ in range(50)]
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, "the child got answers meant for another")
        self.assertTrue(all("interface org.flaskbb.Auth" in a for a in answers))
        # The child's exit closed nothing of the parent's.
        self.assertIn("interface org.flaskbb.Auth", describe(client, "org.flaskbb.Auth"))
        client.close()

    def test_a_restarted_daemon_is_reconnected_to_and_a_stopped_one_is_unavailable(self) -> None:
        client = Client(str(daemon.socket), 10)
        describe(client, "org.flaskbb.Auth")
        daemon.stop()
        with self.assertRaises(Unavailable) as away:
            describe(client, "org.flaskbb.Auth")
        self.assertIn(f"cannot connect to {daemon.socket}", away.exception.cause)
        daemon.start()
        describe(client, "org.flaskbb.Auth")
        daemon.restart()  # between two calls on a kept connection
        self.assertIn("interface org.flaskbb.Auth", describe(client, "org.flaskbb.Auth"))
        client.close()


if __name__ == "__main__":
    unittest.main()


class Errors(unittest.TestCase):
    """How the daemon's named errors reach the bridge's pages."""

    def test_a_pending_second_step_carries_its_token(self) -> None:
        from flaskbb_flaskbbd.client import AuthenticationFailed, _error

        e = _error(
            "org.flaskbb.Auth.Authenticate",
            "org.flaskbb.Auth.AuthenticationFailed",
            {"reason": "code?", "ask": ["otp"], "pending_login": "ab12"},
        )
        assert isinstance(e, AuthenticationFailed)
        self.assertEqual((e.reason, e.ask, e.pending_login), ("code?", ("otp",), "ab12"))
        plain = _error("m", "org.flaskbb.Auth.AuthenticationFailed", {"reason": "Wrong username or password."})
        assert isinstance(plain, AuthenticationFailed)
        self.assertIsNone(plain.pending_login)

    def test_account_errors_are_named_and_its_internal_error_is_an_outage(self) -> None:
        from flaskbb_flaskbbd.client import AuthenticationFailed, VarlinkError, _error

        wrong = _error("m", "org.flaskbb.Account.WrongCode", {})
        assert isinstance(wrong, VarlinkError)
        self.assertEqual(wrong.name, "WrongCode")
        self.assertIsInstance(_error("m", "org.flaskbb.Account.AuthenticationFailed", {"reason": "Wrong password."}), AuthenticationFailed)
        self.assertIsInstance(_error("m", "org.flaskbb.Account.InternalError", {"message": "x"}), Unavailable)

    def test_the_forums_uid_may_call_the_account_interface(self) -> None:
        # This process runs as the daemon's own uid, which org.flaskbb.Account allows.
        client = Client(str(daemon.socket), 10)
        try:
            from flaskbb_flaskbbd.client import VarlinkError

            with self.assertRaises(VarlinkError) as caught:
                client.account("GetSecondFactor", user_id=999999)
            self.assertIn(caught.exception.name, ("NoSuchUser", "SecondFactorUnavailable"))
        finally:
            client.close()
