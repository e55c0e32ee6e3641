"""FlaskBB's login and reauthentication pages, decided by the daemon.

The views replace FlaskBB's own at the same endpoints (``auth.login`` and
``auth.reauth``), so FlaskBB's links, rate limits and ``next=`` redirects keep
working. FlaskBB's ``PluginAuthenticationManager`` is then never used: the daemon's
chain is the one pipeline, and a failed login is counted once, by the daemon.
"""

from __future__ import annotations

from typing import Any, Dict, Type

from flask import Flask, flash, request, url_for
from flask.views import MethodView
from flask_babelplus import gettext as _
from flask_babelplus import lazy_gettext
from flask_login import confirm_login, current_user, login_fresh, login_required, login_user
from wtforms import StringField
from wtforms.validators import Length, Optional

from flaskbb.auth.forms import LoginForm, LoginRecaptchaForm, ReauthForm
from flaskbb.core.auth.authentication import ForceLogout as FlaskBBForceLogout
from flaskbb.extensions import limiter
from flaskbb.user.models import User
from flaskbb.utils.helpers import anonymous_required, enforce_recaptcha, redirect_or_next, render_template

from .bridge import SIGN_IN_UNAVAILABLE, Bridge, active, log
from .client import AuthenticationFailed, ForceLogout, Unavailable

#: The context key the daemon's second-factor plugins ask for.
OTP = "otp"

#: FlaskBB's own message for an account that is not activated.
NOT_ACTIVATED = (
    "In order to use your account you have to activate it through the link we have "
    "sent to your email address."
)


def _otp_field() -> StringField:
    return StringField(
        lazy_gettext("One-time code"),
        validators=[Optional(), Length(max=32)],
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


class Login(MethodView):
    """``/auth/login``: the daemon's ``Authenticate`` decides."""

    decorators = [anonymous_required]

    @staticmethod
    def form() -> LoginForm:
        form_class: Type[LoginForm] = DaemonLoginForm
        if enforce_recaptcha(limiter):
            form_class = DaemonLoginRecaptchaForm
        return form_class()

    def get(self) -> str:
        return self.render(self.form(), ask_otp=False)

    def post(self) -> Any:
        form = self.form()
        ask_otp = bool(form.otp.data)
        if form.validate_on_submit():
            extra = {OTP: form.otp.data.strip()} if form.otp.data else {}
            try:
                answer = _bridge().client.authenticate(
                    form.login.data, form.password.data, request_context(**extra)
                )
            except AuthenticationFailed as e:
                flash(e.reason, "danger")
                ask_otp = ask_otp or OTP in e.ask
            except Unavailable as e:
                log.error("login refused, flaskbbd could not decide it: %s", e.cause)
                flash(_(SIGN_IN_UNAVAILABLE), "danger")
            else:
                user = _forum_user(answer)
                if user is None:
                    flash(_(SIGN_IN_UNAVAILABLE), "danger")
                elif not login_user(user, remember=form.remember_me.data):
                    log.warning(
                        "flaskbbd accepted user %d (%r), whom FlaskBB holds inactive: set "
                        "auth.activate_account in flaskbb.toml as FlaskBB's ACTIVATE_ACCOUNT",
                        user.id,
                        user.username,
                    )
                    flash(_(NOT_ACTIVATED), "danger")
                else:
                    return redirect_or_next(url_for("forum.index"))
        return self.render(form, ask_otp=ask_otp)

    @staticmethod
    def render(form: LoginForm, ask_otp: bool) -> str:
        page: str = render_template("flaskbbd/login.html", form=form, ask_otp=ask_otp)
        return page


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
    goes to FlaskBB's own handler, which logs the person out and shows the reason."""

    decorators = [login_required, limiter.exempt]

    def get(self) -> Any:
        if not login_fresh():
            return render_template("auth/reauth.html", form=ReauthForm())
        return redirect_or_next(current_user.url)

    def post(self) -> Any:
        form = ReauthForm()
        if form.validate_on_submit():
            try:
                _bridge().client.reauthenticate(
                    current_user.id, form.password.data, request_context()
                )
            except AuthenticationFailed as e:
                flash(e.reason, "danger")
            except ForceLogout as e:
                raise FlaskBBForceLogout(e.reason) from None
            except Unavailable as e:
                log.error("reauthentication refused, flaskbbd could not decide it: %s", e.cause)
                flash(_(SIGN_IN_UNAVAILABLE), "danger")
            else:
                confirm_login()
                flash(_("Reauthenticated."), "success")
                return redirect_or_next(current_user.url)
        return render_template("auth/reauth.html", form=form)


def install_views(app: Flask) -> None:
    """Puts the daemon's login and reauthentication views at FlaskBB's endpoints."""
    for endpoint, view in (("auth.login", Login), ("auth.reauth", Reauth)):
        if endpoint not in app.view_functions:
            raise RuntimeError(
                f"FlaskBB has no {endpoint!r} view to replace; this FlaskBB is not one the "
                "flaskbbd bridge knows (2.0.2 to 2.2)"
            )
        app.view_functions[endpoint] = view.as_view(endpoint.split(".")[1])


__all__ = ["Login", "Reauth", "install_views", "request_context"]
