"""A blocking Varlink client for flaskbbd's socket.

Each thread of each process has its own connection, opened on first use and kept for
the next call. A connection is never shared across a fork (a child opens its own),
and one the daemon has closed (it restarted) is noticed before it is used and
replaced. A call that fails part-way is never sent again: the daemon may have acted
on it (counted a failed login), so the caller gets :class:`Unavailable` instead.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import weakref
from typing import Any, Dict, List, Mapping, Optional, Tuple

AUTH = "org.flaskbb.Auth"
EVENTS = "org.flaskbb.Events"
ADMIN = "org.flaskbb.Admin"
ACCOUNT = "org.flaskbb.Account"

#: Replies larger than this are refused as a protocol error (the daemon's own
#: ``daemon.max_message_bytes`` bounds what it sends back; this is a safety net).
MAX_REPLY_BYTES = 16 * 1024 * 1024


class DaemonError(Exception):
    """Anything the daemon answered other than success, or a failure to ask it."""


class Unavailable(DaemonError):
    """The daemon could not answer: unreachable, too slow, a protocol error, or its
    own ``InternalError`` (a plugin or its database failed). ``cause`` says which, for
    the log; it is not for the person at the keyboard."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class AuthenticationFailed(DaemonError):
    """``org.flaskbb.Auth.AuthenticationFailed`` (or ``org.flaskbb.Account``'s, for a
    wrong password there): ``reason`` is for the person; ``ask`` lists context keys a
    plugin asked for (``otp`` for a second factor); ``pending_login`` is the token of
    a pending second step (the password was right), to send back with the code. The
    token is never shown on a page nor logged."""

    def __init__(self, reason: str, ask: Tuple[str, ...] = (), pending_login: Optional[str] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ask = ask
        self.pending_login = pending_login


class ForceLogout(DaemonError):
    """``org.flaskbb.Auth.ForceLogout``: log the person out and show ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PasskeysOff(DaemonError):
    """``PasskeysUnavailable``: the daemon has no ``[webauthn]`` table, so the forum
    offers no passkeys; ``message`` says what the operator adds (for the log)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Rejected(DaemonError):
    """``org.flaskbb.Events.Rejected``: the plugin instance ``plugin`` refused the
    save; ``reason`` is for the person."""

    def __init__(self, plugin: str, reason: str) -> None:
        super().__init__(f"{plugin}: {reason}")
        self.plugin = plugin
        self.reason = reason


class VarlinkError(DaemonError):
    """Any other named error of the admin and account interfaces (``NoSuchUser``,
    ``PermissionDenied``, ``WrongCode``, ...): ``name`` is the error's short name."""

    def __init__(self, error: str, parameters: Dict[str, Any]) -> None:
        super().__init__(f"{error} {json.dumps(parameters)}")
        self.error = error
        self.parameters = parameters
        self.name = error.rsplit(".", 1)[-1]


class _Connection:
    """One open socket and the process that opened it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pid = os.getpid()
        self.buffer = b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __del__(self) -> None:
        # A worker thread ended: its connection goes with it. (Closing a copy
        # inherited across a fork only closes this process's descriptor.)
        self.close()

    def unusable(self) -> bool:
        """True when this idle connection cannot carry another call: the daemon
        closed it (it restarted), or it holds bytes nobody asked for."""
        if self.buffer:
            return True
        try:
            # Non-blocking: with a timeout set, recv would first wait for data.
            self.sock.setblocking(False)
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return True


class Client:
    """Calls the daemon at ``path`` (a Unix socket), each call bounded by
    ``timeout`` seconds from connecting to the last byte of the reply."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._local = threading.local()
        self._last_failure = -math.inf
        # Every thread's connection, for close(); a thread's own ends with the thread.
        self._open: "weakref.WeakSet[_Connection]" = weakref.WeakSet()

    def failed_within(self, seconds: float) -> bool:
        """True when a call could not reach the daemon (or timed out) in the last
        ``seconds``: callers skip calls that may be skipped rather than wait again."""
        return time.monotonic() - self._last_failure < seconds

    # -- the daemon's methods -------------------------------------------------------

    def authenticate(self, identifier: str, secret: str, context: Mapping[str, str]) -> Dict[str, Any]:
        """``Authenticate``: the user the daemon's chain accepted (a dict with ``id``,
        ``username``, ...), or :class:`AuthenticationFailed`."""
        reply = self.call(
            f"{AUTH}.Authenticate",
            {"identifier": identifier, "secret": secret, "context": dict(context)},
        )
        user = reply.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise Unavailable(f"{AUTH}.Authenticate answered without a user: {sorted(reply)}")
        return user

    def reauthenticate(self, user_id: int, secret: str, context: Mapping[str, str]) -> None:
        """``Reauthenticate``: returns when the password was right; raises
        :class:`AuthenticationFailed` or :class:`ForceLogout` otherwise."""
        self.call(
            f"{AUTH}.Reauthenticate",
            {"user_id": user_id, "secret": secret, "context": dict(context)},
        )

    def begin_passkey_sign_in(self, context: Mapping[str, str]) -> Tuple[Dict[str, Any], str]:
        """``BeginPasskeySignIn``: the options for ``navigator.credentials.get`` (the
        JSON parsed) and the ceremony id, or :class:`PasskeysOff`."""
        reply = self.call(f"{AUTH}.BeginPasskeySignIn", {"context": dict(context)})
        return ceremony_options(f"{AUTH}.BeginPasskeySignIn", reply)

    def finish_passkey_sign_in(self, ceremony: str, credential: str, context: Mapping[str, str]) -> Dict[str, Any]:
        """``FinishPasskeySignIn``: the member the daemon signed in with the assertion
        ``credential`` (JSON), answered as :meth:`authenticate` is."""
        reply = self.call(
            f"{AUTH}.FinishPasskeySignIn",
            {"ceremony": ceremony, "credential": credential, "context": dict(context)},
        )
        user = reply.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise Unavailable(f"{AUTH}.FinishPasskeySignIn answered without a user: {sorted(reply)}")
        return user

    # -- org.flaskbb.Account: what the forum's own pages do for members and admins --

    def account(self, method: str, **parameters: Any) -> Dict[str, Any]:
        """Calls ``org.flaskbb.Account.<method>``; raises :class:`VarlinkError` for its
        named errors (``WrongCode``, ``NotEnrolled``, ``PermissionDenied``, ...),
        :class:`AuthenticationFailed` for a wrong password, :class:`Unavailable` when
        the daemon could not answer."""
        return self.call(f"{ACCOUNT}.{method}", parameters)

    def admin(self, method: str, **parameters: Any) -> Dict[str, Any]:
        """Calls ``org.flaskbb.Admin.<method>`` (allowed to ``daemon.admin_uids``)."""
        return self.call(f"{ADMIN}.{method}", parameters)

    def post_save_before(self, post: Dict[str, Any]) -> Dict[str, Any]:
        """``PostSaveBefore``: the post as the chain left it, or :class:`Rejected`."""
        return self._returned(f"{EVENTS}.PostSaveBefore", "post", post)

    def topic_save_before(self, topic: Dict[str, Any]) -> Dict[str, Any]:
        """``TopicSaveBefore``: the topic as the chain left it, or :class:`Rejected`."""
        return self._returned(f"{EVENTS}.TopicSaveBefore", "topic", topic)

    def post_save_after(self, post: Dict[str, Any], is_new: bool) -> None:
        """``PostSaveAfter``."""
        self.call(f"{EVENTS}.PostSaveAfter", {"post": post, "is_new": is_new})

    def topic_save_after(self, topic: Dict[str, Any], is_new: bool) -> None:
        """``TopicSaveAfter``."""
        self.call(f"{EVENTS}.TopicSaveAfter", {"topic": topic, "is_new": is_new})

    def user_registered(self, username: str) -> None:
        """``UserRegistered``."""
        self.call(f"{EVENTS}.UserRegistered", {"username": username})

    def _returned(self, method: str, key: str, value: Dict[str, Any]) -> Dict[str, Any]:
        reply = self.call(method, {key: value})
        returned = reply.get(key)
        if not isinstance(returned, dict):
            raise Unavailable(f"{method} answered without a {key}")
        return returned

    # -- the wire -------------------------------------------------------------------

    def call(self, method: str, parameters: Dict[str, Any]) -> Dict[str, Any]:
        """Sends one call and returns its reply's parameters; raises the error the
        daemon named (see the classes above) or :class:`Unavailable`."""
        message = json.dumps({"method": method, "parameters": parameters}).encode() + b"\0"
        deadline = time.monotonic() + self.timeout
        conn = self._connection(deadline)
        try:
            self._remaining(conn, deadline)
            conn.sock.sendall(message)
            raw = self._read_reply(conn, deadline)
        except socket.timeout:
            self._drop()
            self._last_failure = time.monotonic()
            raise Unavailable(f"{method}: no answer from {self.path} within {self.timeout:g} s") from None
        except OSError as e:
            self._drop()
            self._last_failure = time.monotonic()
            raise Unavailable(f"{method}: the connection to {self.path} failed: {e}") from None
        try:
            reply = json.loads(raw)
        except ValueError as e:
            self._drop()
            raise Unavailable(f"{method}: the daemon's reply is not JSON: {e}") from None
        if not isinstance(reply, dict):
            self._drop()
            raise Unavailable(f"{method}: the daemon's reply is not a JSON object")
        params = reply.get("parameters") or {}
        error = reply.get("error")
        if error is None:
            return params if isinstance(params, dict) else {}
        raise _error(method, str(error), params if isinstance(params, dict) else {})

    def _connection(self, deadline: float) -> _Connection:
        conn: Optional[_Connection] = getattr(self._local, "conn", None)
        if conn is not None and (conn.pid != os.getpid() or conn.unusable()):
            # Inherited across a fork (the parent keeps using it), or the daemon went
            # away since the last call (restarted): open a new one.
            if conn.pid == os.getpid():
                conn.close()
            conn = None
        if conn is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock.connect(self.path)
            except socket.timeout:
                sock.close()
                self._last_failure = time.monotonic()
                raise Unavailable(f"connecting to {self.path} took longer than {self.timeout:g} s") from None
            except OSError as e:
                sock.close()
                self._last_failure = time.monotonic()
                raise Unavailable(f"cannot connect to {self.path}: {e.strerror or e}") from None
            conn = _Connection(sock)
            self._local.conn = conn
            self._open.add(conn)
        return conn

    def close(self) -> None:
        """Closes every connection this process opened (the next call opens anew)."""
        for conn in list(self._open):
            if conn.pid == os.getpid():
                conn.close()
        self._local.conn = None

    def _drop(self) -> None:
        """Closes this thread's connection: after a failure its state is unknown (a
        late reply would answer the next call)."""
        conn: Optional[_Connection] = getattr(self._local, "conn", None)
        if conn is not None and conn.pid == os.getpid():
            conn.close()
        self._local.conn = None

    @staticmethod
    def _remaining(conn: _Connection, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        conn.sock.settimeout(left)

    def _read_reply(self, conn: _Connection, deadline: float) -> bytes:
        while b"\0" not in conn.buffer:
            self._remaining(conn, deadline)
            chunk = conn.sock.recv(65536)
            if not chunk:
                raise OSError("the daemon closed the connection before answering")
            conn.buffer += chunk
            if len(conn.buffer) > MAX_REPLY_BYTES:
                raise OSError(f"the reply is longer than {MAX_REPLY_BYTES} bytes")
        raw, _, conn.buffer = conn.buffer.partition(b"\0")
        return raw


def ceremony_options(method: str, reply: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
    """A ceremony's begin reply: its options (parsed) and its id."""
    ceremony = reply.get("ceremony")
    try:
        options = json.loads(str(reply.get("options", "")))
    except ValueError as e:
        raise Unavailable(f"{method}: the options are not JSON: {e}") from None
    if not isinstance(options, dict) or not isinstance(ceremony, str) or not ceremony:
        raise Unavailable(f"{method} answered without options or a ceremony")
    return options, ceremony


def _error(method: str, error: str, params: Dict[str, Any]) -> DaemonError:
    """The exception for the error ``error`` the daemon answered to ``method``."""
    if error == f"{AUTH}.AuthenticationFailed":
        ask = params.get("ask")
        keys: List[str] = [k for k in ask if isinstance(k, str)] if isinstance(ask, list) else []
        token = params.get("pending_login")
        return AuthenticationFailed(
            str(params.get("reason", "")), tuple(keys), token if isinstance(token, str) and token else None
        )
    if error == f"{ACCOUNT}.AuthenticationFailed":
        return AuthenticationFailed(str(params.get("reason", "")))
    if error == f"{AUTH}.PasskeysUnavailable":
        return PasskeysOff(str(params.get("message", "")))
    if error == f"{AUTH}.ForceLogout":
        return ForceLogout(str(params.get("reason", "")))
    if error == f"{EVENTS}.Rejected":
        return Rejected(str(params.get("plugin", "")), str(params.get("reason", "")))
    if error.endswith(".InternalError"):
        return Unavailable(f"{method}: the daemon failed: {params.get('message', '')}")
    if error == "org.varlink.service.InvalidParameter" and params.get("parameter") == "message":
        return Unavailable(
            f"{method}: the daemon refused the message: {params.get('reason', '')} "
            "(a post longer than the daemon's daemon.max_message_bytes? raise it in flaskbb.toml)"
        )
    if error.startswith(ADMIN + ".") or error.startswith(ACCOUNT + "."):
        return VarlinkError(error, params)
    return Unavailable(f"{method}: the daemon answered {error} {json.dumps(params)}")
