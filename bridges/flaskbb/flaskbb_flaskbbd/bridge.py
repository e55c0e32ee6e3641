"""The bridge's state for one FlaskBB app: its two settings, read from FlaskBB's own
config file, and the client that talks to the daemon.

An app without ``FLASKBBD_SOCKET`` has no bridge: FlaskBB then authenticates and runs
its hooks itself, exactly as without this package.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Optional

from flask import Flask, current_app

from .client import Client

log = logging.getLogger("flaskbb_flaskbbd")

SOCKET_KEY = "FLASKBBD_SOCKET"
TIMEOUT_KEY = "FLASKBBD_TIMEOUT"
DEFAULT_TIMEOUT = 10.0
_EXTENSION = "flaskbbd"

#: What a person sees when the daemon cannot decide a sign-in (its cause is logged).
SIGN_IN_UNAVAILABLE = "The sign-in service is unavailable; try again shortly."
#: What a person sees when the daemon cannot check a post or topic before it is saved.
SAVE_UNAVAILABLE = "Your post could not be checked, so it was not saved. Try again shortly."


class ConfigError(ValueError):
    """A bridge setting in FlaskBB's config is wrong; the message names the key."""


class Bridge:
    """The daemon's socket, the time a call may take, and the client for both."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.client = Client(socket_path, timeout)


def from_config(config: Mapping[str, Any]) -> Optional[Bridge]:
    """The bridge FlaskBB's ``config`` asks for, or None when ``FLASKBBD_SOCKET`` is
    not set. Raises :class:`ConfigError` for a value that cannot work."""
    path = config.get(SOCKET_KEY)
    if path is None or path == "":
        return None
    if not isinstance(path, str):
        raise ConfigError(
            f"{SOCKET_KEY} in FlaskBB's config must be the path of flaskbbd's socket "
            f"(a string such as \"/run/flaskbbd/flaskbbd.sock\"), not {path!r}"
        )
    raw = config.get(TIMEOUT_KEY, DEFAULT_TIMEOUT)
    try:
        timeout = float(raw)
    except (TypeError, ValueError):
        timeout = math.nan
    if isinstance(raw, bool) or not math.isfinite(timeout) or timeout <= 0:
        raise ConfigError(
            f"{TIMEOUT_KEY} in FlaskBB's config must be a number of seconds above 0 "
            f"(default {DEFAULT_TIMEOUT:g}), not {raw!r}"
        )
    return Bridge(path, timeout)


def install(app: Flask) -> Optional[Bridge]:
    """Reads the bridge's settings from ``app``'s config and keeps the bridge on the
    app; logs once whether it is active."""
    bridge = from_config(app.config)
    if bridge is None:
        log.info(
            "flaskbbd bridge inactive: %s is not set in FlaskBB's config, so FlaskBB "
            "authenticates and runs its hooks itself",
            SOCKET_KEY,
        )
        return None
    app.extensions[_EXTENSION] = bridge
    log.info(
        "flaskbbd bridge active: logins, reauthentication and post/topic saves go to %s "
        "(timeout %g s)",
        bridge.socket_path,
        bridge.timeout,
    )
    return bridge


def active() -> Optional[Bridge]:
    """The current app's bridge, or None when it has none."""
    bridge: Optional[Bridge] = current_app.extensions.get(_EXTENSION)
    return bridge
