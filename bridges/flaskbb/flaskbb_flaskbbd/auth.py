"""FlaskBB's login and reauthentication pages, decided by the daemon.

The views replace FlaskBB's own at the same endpoints (``auth.login`` and
``auth.reauth``), so FlaskBB's links, rate limits and ``next=`` redirects keep
working. FlaskBB's ``PluginAuthenticationManager`` is then never used: the daemon's
chain is the one pipeline, and a failed login is counted once, by the daemon.

Passkeys: the bridge's script (``static/passkey.js``) on the login, code-step and
reauthentication pages asks ``passkey_options`` for a sign-in's options
(``BeginPasskeySignIn``) and posts the browser's assertion to ``passkey_finish``
(``FinishPasskeySignIn``), which logs the member in as the password login does, or,
at reauthentication, confirms the login of the member signed in.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Type

from flask import Blueprint, Flask, abort, flash, jsonify, request, session, url_for
from flask.views import MethodView
from flask_babelplus import gettext as _
from flask_babelplus import lazy_gettext
from flask_login import confirm_login, current_user, login_fresh, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length
from wtforms.validators import Optional as OptionalField

from flaskbb.auth.forms import LoginForm, LoginRecaptchaForm, ReauthForm
from flaskbb.core.auth.authentication import ForceLogout as FlaskBBForceLogout
from flaskbb.extensions import limiter
from flaskbb.user.models import User
from flaskbb.utils.helpers import anonymous_required, enforce_recaptcha, redirect_or_next, render_template

from . import stats
from .bridge import SIGN_IN_UNAVAILABLE, Bridge, active, log
from .client import AuthenticationFailed, ForceLogout, PasskeysOff, Unavailable

#: The context key the daemon's second-factor plugins ask for.
OTP = "otp"

#: The context key the daemon's pending-login token goes back in.
PENDING_LOGIN = "pending_login"

#: FlaskBB's own message for an account that is not activated.
NOT_ACTIVATED = (
    "In order to use your account you have to activate it through the link we have "
    "sent to your email address."
)


def _otp_field() -> StringField:
    return StringField(
        lazy_gettext("One-time code"),
        validators=[OptionalField(), Length(max=32)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )


class DaemonLoginForm(LoginForm):
    """FlaskBB's login form and a field for a one-time code."""

    otp = _otp_field()


class DaemonLoginRecaptchaForm(LoginRecaptchaForm):
    """FlaskBB's login form with its captcha, and a field for a one-time code."""

    otp = _otp_field()


def request_context(**extra: str) -> Dict[str, str]:
    """What the forum knows of this request, for the daemon's plugins (a rate limiter
    reads ``remote_addr``); empty values are left out."""
    context = {
        "remote_addr": request.remote_addr or "",
        "user_agent": request.headers.get("User-Agent", ""),
        **extra,
    }
    return {k: v for k, v in context.items() if v}


def _bridge() -> Bridge:
    bridge = active()
    if bridge is None:  # the views are only installed on an app with a bridge
        raise RuntimeError("the flaskbbd views are installed but the app has no bridge")
    return bridge


#: Where the pending second step of this browser's login or reauthentication is kept:
#: in FlaskBB's session (a signed cookie, never in a page), so that the password is
#: typed once and the code step needs nothing else.
PENDING = "flaskbbd_second_step"


class SecondStepForm(FlaskForm):
    """The second step alone: a one-time code (or a recovery code)."""

    otp = StringField(
        lazy_gettext("One-time code"),
        validators=[DataRequired(message=lazy_gettext("Enter the code from your authenticator app.")), Length(max=32)],
        render_kw={"autocomplete": "one-time-code", "autofocus": True},
    )
    submit = SubmitField(lazy_gettext("Verify"))


def pending(kind: str) -> Optional[Dict[str, Any]]:
    """This browser's pending second step of ``kind`` (``login`` or ``reauth``)."""
    step = session.get(PENDING)
    if isinstance(step, dict) and step.get("kind") == kind and isinstance(step.get("token"), str):
        if kind == "reauth" and step.get("user_id") != getattr(current_user, "id", None):
            return None
        return step
    return None


def _keep_pending(kind: str, identifier: str, token: str, **extra: Any) -> None:
    session[PENDING] = {"kind": kind, "identifier": identifier, "token": token, **extra}


def drop_pending() -> None:
    """Forgets this browser's pending second step."""
    session.pop(PENDING, None)


def _second_step(step: Dict[str, Any], form: SecondStepForm) -> Optional[Dict[str, Any]]:
    """Sends the code with the pending token: the daemon's user on success; None
    (with the reason flashed, and the step kept or dropped as the daemon said) when
    it refused or could not decide."""
    try:
        return _bridge().client.authenticate(
            step["identifier"],
            "",
            request_context(**{OTP: form.otp.data.strip(), PENDING_LOGIN: step["token"]}),
        )
    except AuthenticationFailed as e:
        flash(e.reason, "danger")
        stats.record(False)
        if e.pending_login is not None:
            step["token"] = e.pending_login
            session[PENDING] = step
        else:
            # Used, expired, or the account is locked now: the password again.
            drop_pending()
    except Unavailable as e:
        log.error("second step refused, flaskbbd could not decide it: %s", e.cause)
        flash(_(SIGN_IN_UNAVAILABLE), "danger")
    return None


def render_second_step(form: SecondStepForm, kind: str) -> str:
    page: str = render_template("flaskbbd/second_step.html", form=form, kind=kind)
    return page


class Login(MethodView):
    """``/auth/login``: the daemon's ``Authenticate`` decides. After a right password
    of an enrolled member the page asks for the code alone (the daemon's pending
    login token waits in the session); ``?restart=1`` starts over."""

    decorators = [anonymous_required]

    @staticmethod
    def form() -> LoginForm:
        form_class: Type[LoginForm] = DaemonLoginForm
        if enforce_recaptcha(limiter):
            form_class = DaemonLoginRecaptchaForm
        form = form_class()
        # The browser's passkey autofill (conditional mediation) offers itself here.
        form.login.render_kw = {**(form.login.render_kw or {}), "autocomplete": "username webauthn"}
        return form

    def get(self) -> str:
        if request.args.get("restart"):
            drop_pending()
        if pending("login") is not None:
            return render_second_step(SecondStepForm(), "login")
        return self.render(self.form(), ask_otp=False)

    def post(self) -> Any:
        step = pending("login")
        if step is not None and "password" not in request.form:
            code_form = SecondStepForm()
            if code_form.validate_on_submit():
                answer = _second_step(step, code_form)
                if answer is not None:
                    drop_pending()
                    done = self.logged_in(answer, bool(step.get("remember")))
                    if done is not None:
                        return done
                if pending("login") is None:
                    return self.render(self.form(), ask_otp=False)
            return render_second_step(code_form, "login")
        drop_pending()
        form = self.form()
        ask_otp = bool(form.otp.data)
        failed = False
        if form.validate_on_submit():
            extra = {OTP: form.otp.data.strip()} if form.otp.data else {}
            try:
                answer = _bridge().client.authenticate(
                    form.login.data, form.password.data, request_context(**extra)
                )
            except AuthenticationFailed as e:
                # A right password whose code is still to come is no failure: the
                # request for the code is shown as information, not as an error.
                asked_code = e.pending_login is not None and not form.otp.data
                flash(e.reason, "info" if asked_code else "danger")
                if e.pending_login is None or form.otp.data:
                    stats.record(False)
                    failed = True
                if e.pending_login is not None:
                    _keep_pending("login", form.login.data, e.pending_login, remember=bool(form.remember_me.data))
                    return render_second_step(SecondStepForm(formdata=None), "login")
                ask_otp = ask_otp or OTP in e.ask
            except Unavailable as e:
                log.error("login refused, flaskbbd could not decide it: %s", e.cause)
                flash(_(SIGN_IN_UNAVAILABLE), "danger")
            else:
                done = self.logged_in(answer, bool(form.remember_me.data))
                if done is not None:
                    return done
        return self.render(form, ask_otp=ask_otp, failed=failed)

    @staticmethod
    def logged_in(answer: Dict[str, Any], remember: bool) -> Any:
        """Logs the daemon's user in: the redirect, or None (flashed why not)."""
        if log_in(answer, remember):
            return redirect_or_next(url_for("forum.index"))
        return None

    @staticmethod
    def render(form: LoginForm, ask_otp: bool, failed: bool = False) -> str:
        page: str = render_template("flaskbbd/login.html", form=form, ask_otp=ask_otp, failed=failed)
        return page


def log_in(answer: Dict[str, Any], remember: bool) -> bool:
    """Logs the daemon's user in as FlaskBB's login does (``remember`` sets its
    remember-me cookie); False, with why flashed, when FlaskBB would not."""
    user = _forum_user(answer)
    if user is None:
        flash(_(SIGN_IN_UNAVAILABLE), "danger")
    elif not login_user(user, remember=remember):
        log.warning(
            "flaskbbd accepted user %d (%r), whom FlaskBB holds inactive: set "
            "auth.activate_account in flaskbb.toml as FlaskBB's ACTIVATE_ACCOUNT",
            user.id,
            user.username,
        )
        flash(_(NOT_ACTIVATED), "danger")
    else:
        stats.record(True)
        return True
    return False


def _forum_user(answer: Dict[str, Any]) -> Any:
    """FlaskBB's user for the daemon's answer, or None (logged) when this forum's
    database does not hold that very user: the daemon runs on another database."""
    user = User.query.filter_by(id=answer["id"]).first()
    if user is None or user.username != answer.get("username"):
        log.error(
            "login refused: flaskbbd accepted user %d (%r), but this forum's database has "
            "%s; run the daemon on the forum's database (database.url, and "
            "database.schema = \"flaskbb\" in flaskbb.toml)",
            answer["id"],
            answer.get("username"),
            "no such user" if user is None else f"user {user.username!r} under that id",
        )
        return None
    return user


class Reauth(MethodView):
    """``/auth/reauth``: the daemon's ``Reauthenticate`` decides; its ``ForceLogout``
    goes to FlaskBB's own handler, which logs the person out and shows the reason.
    A member with a second factor is asked for the code too: the daemon's
    ``Reauthenticate`` answers a right password without a code by asking for ``otp``
    (counting nothing); the bridge then asks ``Authenticate`` with the same password
    for a pending second step, and the page asks for the code alone."""

    decorators = [login_required, limiter.exempt]

    def get(self) -> Any:
        if not login_fresh():
            if pending("reauth") is not None:
                return render_second_step(SecondStepForm(), "reauth")
            return render_template("flaskbbd/reauth.html", form=ReauthForm())
        return redirect_or_next(current_user.url)

    def post(self) -> Any:
        step = pending("reauth")
        if step is not None and "password" not in request.form:
            code_form = SecondStepForm()
            if code_form.validate_on_submit():
                answer = _second_step(step, code_form)
                if answer is not None:
                    drop_pending()
                    if answer.get("id") == current_user.id:
                        return self.confirmed()
                    flash(_(SIGN_IN_UNAVAILABLE), "danger")
                if pending("reauth") is None:
                    return render_template("flaskbbd/reauth.html", form=ReauthForm(formdata=None))
            return render_second_step(code_form, "reauth")
        drop_pending()
        form = ReauthForm()
        if form.validate_on_submit():
            client = _bridge().client
            try:
                try:
                    client.reauthenticate(current_user.id, form.password.data, request_context())
                except AuthenticationFailed as asked:
                    if OTP not in asked.ask:
                        raise
                    # The password was right and a code is due: the login chain, with
                    # the same password, answers the pending second step (a token), so
                    # that the next page asks for the code alone.
                    client.authenticate(current_user.username, form.password.data, request_context())
                    # A login chain that asks no code where reauthentication did: the
                    # daemon's configuration disagrees with itself; fail closed.
                    raise Unavailable(
                        "Reauthenticate asked for a code that Authenticate did not: the daemon's "
                        "reauthentication and login chains disagree about the second factor"
                    ) from None
            except AuthenticationFailed as e:
                flash(e.reason, "info" if e.pending_login is not None else "danger")
                if e.pending_login is not None:
                    _keep_pending("reauth", current_user.username, e.pending_login, user_id=current_user.id)
                    return render_second_step(SecondStepForm(formdata=None), "reauth")
            except ForceLogout as e:
                raise FlaskBBForceLogout(e.reason) from None
            except Unavailable as e:
                log.error("reauthentication refused, flaskbbd could not decide it: %s", e.cause)
                flash(_(SIGN_IN_UNAVAILABLE), "danger")
            else:
                return self.confirmed()
        return render_template("flaskbbd/reauth.html", form=form)

    @staticmethod
    def confirmed() -> Any:
        confirm_login()
        flash(_("Reauthenticated."), "success")
        return redirect_or_next(current_user.url)


# -- passkeys -------------------------------------------------------------------------

#: Where this browser's passkey sign-in waits between its two requests: the daemon's
#: ceremony id only (the challenge stays in the daemon, bound to this address).
SIGN_IN_CEREMONY = "flaskbbd_passkey_sign_in"

#: What a member sees when an answer the browser gave cannot be used at all.
PASSKEY_FAILED = "The passkey could not be used. Try again, or sign in with your password."


class _Offered:
    """Whether the daemon offers passkeys, as its last passkey answer in this process
    said (None: not asked yet); the pages leave the passkey button out once it said
    no (a ``[webauthn]`` added later shows again at the next answer that says yes)."""

    value: Optional[bool] = None


def note_passkeys(offered: bool) -> None:
    """Records what the daemon's last passkey answer said of passkeys being on."""
    _Offered.value = offered


def passkeys_offered() -> bool:
    """False once the daemon answered that it has no passkeys (its ``[webauthn]``
    table is missing); the pages' templates ask (``flaskbbd_passkeys_offered()``)."""
    return active() is not None and _Offered.value is not False


def _passkey_bridge() -> Bridge:
    bridge = active()
    if bridge is None:
        abort(404)
        raise AssertionError("abort returned")  # abort always raises
    return bridge


def _next_or(fallback: str) -> str:
    """``?next=`` when it is a path on this forum, else ``fallback``."""
    target = str(request.args.get("next", ""))
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback


def passkey_options() -> Any:
    """``POST /auth/passkey/options``: the daemon's ``BeginPasskeySignIn`` options for
    the page's script (``available`` false when the daemon offers no passkeys, and the
    page then shows none); the ceremony waits in the session."""
    bridge = _passkey_bridge()
    try:
        options, ceremony = bridge.client.begin_passkey_sign_in(request_context())
    except PasskeysOff as e:
        log.info("no passkey sign-in offered: %s", e.message)
        note_passkeys(False)
        return jsonify(available=False)
    except AuthenticationFailed as e:
        # Too many sign-ins begun from this address: the reason says what to do.
        return jsonify(available=False, message=e.reason)
    except Unavailable as e:
        log.error("passkey sign-in not offered, flaskbbd could not begin it: %s", e.cause)
        return jsonify(available=False, message=_(SIGN_IN_UNAVAILABLE))
    note_passkeys(True)
    session[SIGN_IN_CEREMONY] = ceremony
    return jsonify(available=True, options=options)


def passkey_finish() -> Any:
    """``POST /auth/passkey``: the browser's assertion to the daemon's
    ``FinishPasskeySignIn``. Signed out (the login page, or its code step), the member
    it answers is logged in as by the password; signed in (reauthentication), it must
    be the member signed in. Answers where the page goes next; a refusal is flashed
    there, as the password login's are."""
    bridge = _passkey_bridge()
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    credential = body.get("credential")
    ceremony = session.pop(SIGN_IN_CEREMONY, None)
    reauth = bool(current_user.is_authenticated)
    back = url_for("auth.reauth" if reauth else "auth.login", next=request.args.get("next") or None)
    if not isinstance(credential, dict) or not isinstance(ceremony, str):
        log.info("passkey sign-in refused: %s", "no ceremony in the session" if ceremony is None else "no credential posted")
        flash(_(PASSKEY_FAILED), "danger")
        return jsonify(redirect=back)
    try:
        answer = bridge.client.finish_passkey_sign_in(ceremony, json.dumps(credential), request_context())
    except AuthenticationFailed as e:
        flash(e.reason, "danger")
        stats.record(False)
        return jsonify(redirect=back)
    except ForceLogout as e:
        logout_user()
        flash(e.reason, "danger")
        return jsonify(redirect=url_for("auth.login"))
    except PasskeysOff as e:
        log.error("passkey sign-in refused, flaskbbd offers no passkeys: %s", e.message)
        note_passkeys(False)
        flash(_(SIGN_IN_UNAVAILABLE), "danger")
        return jsonify(redirect=back)
    except Unavailable as e:
        log.error("passkey sign-in refused, flaskbbd could not decide it: %s", e.cause)
        flash(_(SIGN_IN_UNAVAILABLE), "danger")
        return jsonify(redirect=back)
    if reauth:
        if answer.get("id") != current_user.id:
            log.warning(
                "reauthentication of user %d refused: the passkey is user %d's", current_user.id, answer.get("id")
            )
            flash(_("That passkey is another account's. Use one of yours."), "danger")
            return jsonify(redirect=back)
        drop_pending()
        confirm_login()
        flash(_("Reauthenticated."), "success")
        return jsonify(redirect=_next_or(current_user.url))
    step = pending("login")
    remember = bool(body.get("remember")) or bool(step is not None and step.get("remember"))
    drop_pending()
    if log_in(answer, remember):
        return jsonify(redirect=_next_or(url_for("forum.index")))
    return jsonify(redirect=back)


def add_routes(app: Flask, blueprint: Blueprint) -> None:
    """The passkey sign-in's two requests, under FlaskBB's auth prefix (404 while the
    bridge is inactive)."""
    app.jinja_env.globals["flaskbbd_passkeys_offered"] = passkeys_offered
    prefix = app.config.get("AUTH_URL_PREFIX", "/auth")
    blueprint.add_url_rule(f"{prefix}/passkey/options", "passkey_options", passkey_options, methods=["POST"])
    blueprint.add_url_rule(f"{prefix}/passkey", "passkey_finish", passkey_finish, methods=["POST"])


def install_views(app: Flask) -> None:
    """Puts the daemon's login and reauthentication views at FlaskBB's endpoints."""
    for endpoint, view in (("auth.login", Login), ("auth.reauth", Reauth)):
        if endpoint not in app.view_functions:
            raise RuntimeError(
                f"FlaskBB has no {endpoint!r} view to replace; this FlaskBB is not one the "
                "flaskbbd bridge knows (2.0.2 to 2.2)"
            )
        app.view_functions[endpoint] = view.as_view(endpoint.split(".")[1])


__all__ = [
    "Login",
    "Reauth",
    "SecondStepForm",
    "add_routes",
    "drop_pending",
    "install_views",
    "log_in",
    "note_passkeys",
    "passkey_finish",
    "passkey_options",
    "passkeys_offered",
    "pending",
    "request_context",
]
