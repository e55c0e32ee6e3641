"""FlaskBB's post and topic saves and its new members, sent to the daemon.

A save goes through the daemon's ``save_before`` chain once, and FlaskBB saves what
the chain returned (a word filter's masked text). A refusal must leave nothing
behind, and FlaskBB commits a new topic's row *before* its first post's hook runs,
so the chains run where nothing has been written yet:

1. Forms: when FlaskBB validates a new topic, a reply, a quick reply or an edit, the
   bridge runs the chains from the content field's validator. ``Rejected`` (or a
   daemon that cannot answer) is then a validation error on that field, shown in red
   under the editor as FlaskBB shows a form's errors: FlaskBB shows the form again,
   with the person's text and the reason, and saves nothing. FlaskBB answers a failed
   quick reply with a redirect to the topic, an empty box and the reason flashed at
   the top; the bridge shows the topic page at once instead, the text still in the
   box and the reason under it. A new topic runs the topic chain and its first post's
   chain there, together.
2. Models: FlaskBB's ``flaskbb_event_*_save_before`` hooks. A save the form step
   already checked passes through (the chain is not run twice). Any other save runs
   its chain here. If it carries new text (another plugin's code saving a post), a
   refusal stops it before its commit with :class:`SaveRefused`, which the bridge's
   error handler turns into the reason on the page the person came from. If it
   changes no text (FlaskBB saves a topic on every view to count it; moderators lock
   and move topics), it is never refused: the daemon is told, and what it answers is
   applied, but a forum stays readable while the daemon is away. A save that changes
   nothing but FlaskBB's view counter (every topic view) is not sent at all, neither
   before nor after: a page view is not an event, and no shipped plugin counts views.

``save_after`` and ``user_registered`` tell the daemon what happened; if it cannot be
told, the cause is logged (the save itself has already happened), at most once a
minute while the daemon stays away.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

from flask import Flask, flash, g, redirect, request, session, url_for
from flask_babelplus import gettext as _
from flask_login import current_user
from markupsafe import Markup
from wtforms.validators import ValidationError

from flaskbb.extensions import db

from .bridge import SAVE_UNAVAILABLE, Bridge, active, log
from .client import DaemonError, Rejected, Unavailable

_APPROVED = "flaskbbd_approved"
#: A quick reply the daemon refused on this request: the error shown under its box.
_QUICK_REFUSED = "flaskbbd_quick_refused"
#: Topics whose save on this request changed only the view counter.
_VIEWS_ONLY = "flaskbbd_views_only"
#: The endpoint of FlaskBB's topic page, which also takes the quick reply.
_VIEW_TOPIC = "forum.view_topic"


class SaveRefused(Exception):
    """A save the daemon refused (or could not check), raised from a model hook before
    FlaskBB commits it; ``reason`` is for the person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _timestamp(value: Optional[datetime]) -> Optional[str]:
    """RFC 3339 in UTC (FlaskBB stores UTC; naive values are UTC too)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _drop_none(values: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def post_message(post: Any) -> Dict[str, Any]:
    """A FlaskBB ``Post`` as the daemon's ``Post``: what FlaskBB has set on it so far
    (a new post's hook runs before its user, topic and id are set)."""
    return _drop_none(
        {
            "id": post.id,
            "topic_id": post.topic_id,
            "user_id": post.user_id,
            "username": post.username,
            "content": post.content or "",
            "date_created": _timestamp(post.date_created),
        }
    )


def topic_message(topic: Any, content: Optional[str] = None) -> Dict[str, Any]:
    """A FlaskBB ``Topic`` as the daemon's ``Topic``; ``content`` is its first post's."""
    first = getattr(topic, "first_post", None)
    if content is None and first is not None:
        content = first.content
    return _drop_none(
        {
            "id": topic.id,
            "forum_id": topic.forum_id,
            "title": topic.title or "",
            "user_id": topic.user_id,
            "username": topic.username,
            "content": content,
        }
    )


# -- checked saves: what the form step approved, for the model hooks -----------------


def _approve(kind: str, text: str) -> None:
    approved: List[Tuple[str, str]] = g.setdefault(_APPROVED, [])
    approved.append((kind, text))


def _take_approval(kind: str, text: str) -> bool:
    """True (once) when the form step already ran ``kind``'s chain on this very text."""
    approved: List[Tuple[str, str]] = g.get(_APPROVED, [])
    if (kind, text) in approved:
        approved.remove((kind, text))
        return True
    return False


# -- 1. forms ---------------------------------------------------------------------


def _form_is_saving(form: Any, field: Any) -> bool:
    """True when this validation leads to a save: not a preview, and no other field
    has failed (the form would be shown again anyway)."""
    if "preview" in request.form:
        return False
    return not any(f.errors for f in form if f is not field)


def _author() -> Dict[str, Any]:
    if current_user and current_user.is_authenticated:
        return {"user_id": current_user.id, "username": current_user.username}
    return {}


def field_error(reason: str) -> Markup:
    """``reason`` (escaped) as FlaskBB shows a form's error: FlaskBB's editor prints
    its field's errors as grey help text, so the bridge's are marked up as Bootstrap's
    ``text-danger``, the red of FlaskBB's other fields in error."""
    return Markup('<span class="text-danger flaskbbd-refused" role="alert">{}</span>').format(reason)


def _validate_reply(form: Any, field: Any) -> None:
    """The content validator of FlaskBB's reply, quick reply and edit forms."""
    bridge = active()
    if bridge is None or not _form_is_saving(form, field):
        return
    args = request.view_args or {}
    post: Dict[str, Any] = {"content": field.data or ""}
    if request.endpoint == "forum.edit_post" and "post_id" in args:
        from flaskbb.forum.models import Post

        existing = Post.query.filter_by(id=args["post_id"]).first()
        if existing is not None:
            post = {**post_message(existing), "content": field.data or ""}
    else:
        post.update(_author())
        if "topic_id" in args:
            post["topic_id"] = args["topic_id"]
    try:
        checked = _check(bridge, lambda: bridge.client.post_save_before(_drop_none(post)))
    except ValidationError as refused:
        if request.endpoint == _VIEW_TOPIC:
            g.setdefault(_QUICK_REFUSED, refused.args[0])
        raise
    field.data = checked["content"]
    _approve("post", field.data)


def _validate_new_topic(form: Any, field: Any) -> None:
    """The content validator of FlaskBB's new-topic form: the topic's chain, then its
    first post's, before FlaskBB writes either."""
    bridge = active()
    if bridge is None or not _form_is_saving(form, field):
        return
    args = request.view_args or {}
    topic = {"title": form.title.data or "", "content": field.data or "", **_author()}
    if "forum_id" in args:
        topic["forum_id"] = args["forum_id"]
    checked_topic = _check(bridge, lambda: bridge.client.topic_save_before(topic))
    content = checked_topic.get("content", field.data or "")
    post = {"content": content, **_author()}
    checked_post = _check(bridge, lambda: bridge.client.post_save_before(post))
    form.title.data = checked_topic["title"]
    field.data = checked_post["content"]
    _approve("topic", form.title.data)
    _approve("post", field.data)


def _check(bridge: Bridge, call: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """Runs a ``save_before`` call for a form: a refusal becomes the field's error."""
    try:
        return call()
    except Rejected as e:
        log.info("save refused by flaskbbd's plugin %r: %s", e.plugin, e.reason)
        raise ValidationError(field_error(e.reason)) from None
    except Unavailable as e:
        log.error("save refused, flaskbbd could not check it: %s", e.cause)
        raise ValidationError(field_error(_(SAVE_UNAVAILABLE))) from None


def _with_inline_validator(form_class: Any, validator: Callable[[Any, Any], None]) -> None:
    """Makes ``validator`` part of ``form_class``'s content validation, after any
    inline validator the class (or another plugin) already has. Idempotent."""
    existing = form_class.__dict__.get("validate_content")
    if getattr(existing, "_flaskbbd", False):
        return

    def validate_content(form: Any, field: Any) -> None:
        if existing is not None:
            existing(form, field)
        validator(form, field)

    validate_content._flaskbbd = True  # type: ignore[attr-defined]
    form_class.validate_content = validate_content


def install_form_checks() -> None:
    """Adds the daemon's checks to FlaskBB's topic, reply and quick-reply forms.

    FlaskBB hands the topic and reply form classes to plugins for extension
    (``flaskbb_form_new_topic``, ``flaskbb_form_new_post``) but has no such hook for
    the quick reply, so the bridge extends the three classes once, here; the
    validators do nothing in an app without a bridge."""
    from flaskbb.forum import forms

    _with_inline_validator(forms.NewTopicForm, _validate_new_topic)
    _with_inline_validator(forms.ReplyForm, _validate_reply)
    quick = getattr(forms, "QuickreplyForm", None)
    if quick is not None:
        _with_inline_validator(quick, _validate_reply)
        _show_quick_reply_errors(quick)


def _show_quick_reply_errors(form_class: Any) -> None:
    """Makes the quick reply form that the topic page shows after a refusal carry
    the refusal as its content's error. Idempotent."""
    original = form_class.__init__
    if getattr(original, "_flaskbbd", False):
        return

    def __init__(form: Any, *args: Any, **kwargs: Any) -> None:
        original(form, *args, **kwargs)
        refused = g.get(_QUICK_REFUSED) if request.method == "POST" else None
        if refused is not None:
            form.content.errors = [refused]

    __init__._flaskbbd = True  # type: ignore[attr-defined]
    form_class.__init__ = __init__


def install_quick_reply_page(app: Flask) -> None:
    """A quick reply the daemon refused shows the topic page again at once, the text
    in the box and the reason under it, rather than FlaskBB's redirect to an empty box
    with the reason flashed at the top. FlaskBB's page itself makes the page: on this
    POST its quick reply form reads the text back from the request."""
    original = app.view_functions.get(_VIEW_TOPIC)
    view_class = getattr(original, "view_class", None)
    if original is None or view_class is None or getattr(original, "_flaskbbd", False):
        if original is None or view_class is None:
            log.warning("FlaskBB has no %s view: a refused quick reply is shown as FlaskBB shows it", _VIEW_TOPIC)
        return

    def view_topic(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        refused = g.get(_QUICK_REFUSED)
        if request.method != "POST" or refused is None:
            return response
        _unflash(refused)
        return view_class().get(*args, **kwargs)

    view_topic._flaskbbd = True  # type: ignore[attr-defined]
    view_topic.view_class = view_class  # type: ignore[attr-defined]
    app.view_functions[_VIEW_TOPIC] = view_topic


def _unflash(message: Any) -> None:
    """Takes back a message FlaskBB flashed on this request (it is shown on the page
    instead)."""
    flashes = session.get("_flashes")
    if not flashes:
        return
    kept = [(category, text) for category, text in flashes if text != message]
    if len(kept) != len(flashes):
        session["_flashes"] = kept


# -- 2. models --------------------------------------------------------------------


def _text_changed(obj: Any, attribute: str) -> bool:
    """True for a new object, or one whose ``attribute`` (the text a person writes)
    changed since it was loaded."""
    if obj.id is None:
        return True
    from sqlalchemy import inspect

    return bool(inspect(obj).attrs[attribute].history.has_changes())


#: After a call could not reach the daemon, calls that may be skipped (events about
#: what already happened, saves without new text) are skipped for this long rather
#: than each waiting out ``FLASKBBD_TIMEOUT`` against a daemon that hangs.
SKIP_AFTER_FAILURE = 5.0


def post_save_before(post: Any) -> None:
    """FlaskBB's ``flaskbb_event_post_save_before``."""
    bridge = active()
    if bridge is None or _take_approval("post", post.content or ""):
        return
    checked = _run_before(
        bridge,
        f"post {post.id}",
        _text_changed(post, "content"),
        lambda: bridge.client.post_save_before(post_message(post)),
    )
    if checked is not None:
        post.content = checked["content"]


def _views_only(topic: Any) -> bool:
    """True for a saved topic whose only change is FlaskBB's view counter (FlaskBB
    saves the topic on every view to count it)."""
    if topic.id is None:
        return False
    from sqlalchemy import inspect

    changed = {attr.key for attr in inspect(topic).attrs if attr.history.has_changes()}
    return changed == {"views"}


def topic_save_before(topic: Any) -> None:
    """FlaskBB's ``flaskbb_event_topic_save_before``."""
    bridge = active()
    if bridge is None or _take_approval("topic", topic.title or ""):
        return
    if _views_only(topic):
        views_only: List[int] = g.setdefault(_VIEWS_ONLY, [])
        views_only.append(topic.id)
        return
    checked = _run_before(
        bridge,
        f"topic {topic.id}",
        _text_changed(topic, "title"),
        lambda: bridge.client.topic_save_before(topic_message(topic)),
    )
    if checked is not None:
        topic.title = checked["title"]


def _run_before(
    bridge: Bridge, what: str, new_text: bool, call: Callable[[], Dict[str, Any]]
) -> Optional[Dict[str, Any]]:
    """Runs a ``save_before`` chain from a model hook. A save that carries new text is
    refused (:class:`SaveRefused`) when the daemon rejects it or cannot answer. A save
    that changes no text (FlaskBB saves a topic on every view to count it; moderators
    lock and move topics) is never refused: there is nothing new to check, and a
    forum must stay readable while the daemon is away. Its failure is logged, and
    None returned."""
    if not new_text and bridge.client.failed_within(SKIP_AFTER_FAILURE):
        _unreported.note(f"the save of {what}", "skipped: the daemon failed moments ago")
        return None
    try:
        return call()
    except Rejected as e:
        if new_text:
            log.info("save refused by flaskbbd's plugin %r: %s", e.plugin, e.reason)
            raise SaveRefused(e.reason) from None
        log.info("flaskbbd's plugin %r rejected %s, whose text is unchanged; saved: %s", e.plugin, what, e.reason)
    except Unavailable as e:
        if new_text:
            log.error("save refused, flaskbbd could not check it: %s", e.cause)
            raise SaveRefused(_(SAVE_UNAVAILABLE)) from None
        _unreported.note(f"the save of {what}", e.cause)
    return None


class _Unreported:
    """Logs events the daemon could not be told of: the first at once, then at most
    one line a minute with the count, so an outage does not flood the log (each
    topic view is one such event)."""

    INTERVAL = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -self.INTERVAL
        self._missed = 0

    def note(self, what: str, cause: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.INTERVAL:
                self._missed += 1
                return
            missed, self._missed, self._last = self._missed, 0, now
        more = f" ({missed} more since the last report)" if missed else ""
        log.error("flaskbbd was not told of %s: %s%s", what, cause, more)


_unreported = _Unreported()


def _tell(bridge: Bridge, what: str, call: Callable[[], None]) -> None:
    """Sends an event about something FlaskBB already did; a failure is logged."""
    if bridge.client.failed_within(SKIP_AFTER_FAILURE):
        _unreported.note(what, "skipped: the daemon failed moments ago")
        return
    try:
        call()
    except Unavailable as e:
        _unreported.note(what, e.cause)
    except DaemonError as e:
        log.error("flaskbbd did not take %s: %s", what, e)


def post_save_after(post: Any, is_new: bool) -> None:
    """FlaskBB's ``flaskbb_event_post_save_after``."""
    bridge = active()
    if bridge is not None:
        _tell(bridge, f"post {post.id}", lambda: bridge.client.post_save_after(post_message(post), is_new))


def topic_save_after(topic: Any, is_new: bool) -> None:
    """FlaskBB's ``flaskbb_event_topic_save_after``; not for a view counted."""
    bridge = active()
    views_only: List[int] = g.get(_VIEWS_ONLY, [])
    if not is_new and topic.id in views_only:
        views_only.remove(topic.id)
        return
    if bridge is not None:
        _tell(bridge, f"topic {topic.id}", lambda: bridge.client.topic_save_after(topic_message(topic), is_new))


def user_registered(username: str) -> None:
    """FlaskBB's ``flaskbb_event_user_registered``."""
    bridge = active()
    if bridge is not None:
        _tell(bridge, f"new member {username!r}", lambda: bridge.client.user_registered(username))


def install_error_handler(app: Flask) -> None:
    """Shows a refused save's reason on the page the person came from; nothing of the
    save is kept."""

    @app.errorhandler(SaveRefused)
    def refused(error: SaveRefused) -> Any:
        db.session.rollback()
        flash(error.reason, "danger")
        return redirect(request.referrer or url_for("forum.index"))
