"""flaskbb-flaskbbd: a FlaskBB plugin that hands FlaskBB's login, reauthentication,
post and topic saves, new members, password changes and resets to flaskbbd, over its
Varlink socket, and adds a member's Security settings page and an admins' Sign-in
page (``account``).

FlaskBB finds this module through the ``flaskbb_plugins`` entry point and registers
the hook implementations below. Set ``FLASKBBD_SOCKET`` (and optionally
``FLASKBBD_TIMEOUT``, seconds) in FlaskBB's config to turn it on; without it the
plugin does nothing. ``docs/flaskbb.md`` in the flaskbbd repository is the guide.

Only hook implementations live at this module's top level: FlaskBB 2.0 treats every
function here whose name starts with ``flaskbb_`` as one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask
from pluggy import HookimplMarker

from . import account as _account
from . import auth as _auth
from . import bridge as _bridge
from . import events as _events

__version__ = "1.0.0"

_impl = HookimplMarker("flaskbb")


@_impl
def flaskbb_load_blueprints(app: Flask) -> None:
    """The bridge's templates, its script (``static/passkey.js``) and pages (the
    member's Security settings, the admins' sign-in page, the passkey sign-in's
    requests; the pages answer 404 while the bridge is inactive)."""
    blueprint = Blueprint(
        "flaskbbd", __name__, template_folder="templates", static_folder="static", static_url_path="/_flaskbbd"
    )
    _account.add_routes(app, blueprint)
    _auth.add_routes(app, blueprint)
    app.register_blueprint(blueprint)


@_impl
def flaskbb_tpl_profile_settings_menu() -> Any:
    """"Security" in the member's settings menu."""
    return _account.settings_menu()


@_impl
def flaskbb_tpl_admin_settings_menu(user: Any) -> Any:
    """"Sign-in" in the management tabs, for admins."""
    return _account.admin_menu(user)


@_impl
def flaskbb_errorhandlers(app: Flask) -> None:
    """A save refused in a model hook shows its reason instead of an error page."""
    _events.install_error_handler(app)


@_impl
def flaskbb_additional_setup(app: Flask, pluggy: Any) -> None:
    """Reads the bridge's settings; when it is active, puts the daemon's login,
    reauthentication, password change and reset views in place and its checks into
    the post forms."""
    if _bridge.install(app) is None:
        return
    _auth.install_views(app)
    _account.install_views(app)
    _events.install_form_checks()
    _events.install_quick_reply_page(app)


@_impl
def flaskbb_event_post_save_before(post: Any) -> None:
    """The daemon's post chain decides, and may change the content."""
    _events.post_save_before(post)


@_impl
def flaskbb_event_post_save_after(post: Any, is_new: bool) -> None:
    """Tells the daemon a post was saved."""
    _events.post_save_after(post, is_new)


@_impl
def flaskbb_event_topic_save_before(topic: Any) -> None:
    """The daemon's topic chain decides, and may change the title."""
    _events.topic_save_before(topic)


@_impl
def flaskbb_event_topic_save_after(topic: Any, is_new: bool) -> None:
    """Tells the daemon a topic was saved."""
    _events.topic_save_after(topic, is_new)


@_impl
def flaskbb_event_user_registered(username: str) -> None:
    """Tells the daemon of a new member (FlaskBB's own activation mail still goes)."""
    _events.user_registered(username)
