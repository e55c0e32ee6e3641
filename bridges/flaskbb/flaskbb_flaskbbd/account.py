"""The member's "Security" settings page (the second factor, and passkeys: listed,
added through the bridge's script, removed), FlaskBB's password change and reset, and
the admins' sign-in page in FlaskBB's management area, all through the daemon's
``org.flaskbb.Account`` interface (the forum's uid must be in ``daemon.forum_uids``).

Secrets and recovery codes are shown on the one page that answers them and never
logged; the daemon keeps them (hashed, for recovery codes).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

import segno
from flask import Blueprint, Flask, abort, current_app, flash, jsonify, redirect, request, session, url_for
from flask.views import MethodView
from flask_allows import Permission
from flask_babelplus import gettext as _
from flask_babelplus import lazy_gettext
from flask_login import current_user, login_fresh, login_required
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from flaskbb.auth.services.password import ResetPasswordService
from flaskbb.auth.views import ResetPassword as FlaskBBResetPassword
from flaskbb.core.exceptions import StopValidation
from flaskbb.core.tokens import TokenActions, TokenError
from flaskbb.extensions import allows
from flaskbb.user.forms import ChangePasswordForm
from flaskbb.user.models import User
from flaskbb.utils.helpers import render_template
from flaskbb.utils.requirements import IsAdmin
from flaskbb.utils.settings import flaskbb_config

from . import stats
from .auth import note_passkeys
from .bridge import Bridge, active, log
from .client import AuthenticationFailed, Unavailable, VarlinkError, ceremony_options

#: What a member sees when the daemon cannot do what the security page asked.
ACCOUNT_UNAVAILABLE = "The security settings are unavailable right now; try again shortly."
#: bcrypt's limit, which the daemon enforces (it never truncates).
MAX_PASSWORD_BYTES = 72

#: What a member sees for each of ``org.flaskbb.Account``'s errors.
_MESSAGES = {
    "WrongCode": "The code is wrong.",
    "TooManyCodes": (
        "Too many wrong codes were tried for this account. Try again later, "
        "or ask an administrator to lift the lock."
    ),
    "AlreadyEnrolled": "Two-factor authentication is already on.",
    "NotEnrolling": "Start the set-up again: it was not started or has been replaced.",
    "NotEnrolled": "Two-factor authentication is not on.",
    "NoSuchUser": "No such member.",
    "SecondFactorUnavailable": "This forum does not offer two-factor authentication.",
    "PasskeysUnavailable": "This forum does not offer passkeys.",
    "CeremonyExpired": "Adding the passkey took too long or was started again elsewhere. Try again.",
    "PasskeyRefused": "The passkey could not be added. Try again, or with another device.",
    "NoSuchPasskey": "That passkey is not on your account (removed already?).",
}

#: The longest name a member gives a passkey.
MAX_PASSKEY_NAME = 64


def _address() -> Dict[str, str]:
    """The member's address, for the calls that check a password or a code: the
    daemon's lockout counts and judges them under it, as it does a login."""
    return {"remote_addr": request.remote_addr} if request.remote_addr else {}


def _bridge() -> Bridge:
    bridge = active()
    if bridge is None:
        abort(404)
        raise AssertionError("abort returned")  # abort always raises
    return bridge


def account_call(method: str, **parameters: Any) -> Dict[str, Any]:
    """``org.flaskbb.Account.<method>``; raises :class:`AccountRefused` with the
    member's message for what the daemon refused or could not do (the cause logged)."""
    try:
        return _bridge().client.account(method, **parameters)
    except AuthenticationFailed as e:
        raise AccountRefused(e.reason, "AuthenticationFailed") from None
    except VarlinkError as e:
        if e.name in ("PermissionDenied", "SecondFactorUnavailable"):
            log.error("flaskbbd refused org.flaskbb.Account.%s: %s", method, e.parameters.get("message", e.name))
        if e.name == "PasskeyRefused":
            # webauthn-rs's reason (the origin, the signature, ...): never the credential.
            log.warning("flaskbbd refused org.flaskbb.Account.%s: %s", method, e.parameters.get("reason", ""))
        if e.name in _MESSAGES:
            raise AccountRefused(_(_MESSAGES[e.name]), e.name) from None
        raise AccountRefused(_(ACCOUNT_UNAVAILABLE), e.name) from None
    except Unavailable as e:
        log.error("org.flaskbb.Account.%s failed, flaskbbd could not do it: %s", method, e.cause)
        raise AccountRefused(_(ACCOUNT_UNAVAILABLE), "Unavailable") from None


class AccountRefused(Exception):
    """The daemon refused (``name``: its error's short name) or could not answer;
    ``message`` is for the member."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.message = message
        self.name = name


def qr_svg(uri: str) -> Markup:
    """The ``otpauth://`` URI as a QR code, an inline SVG made on the server."""
    code = segno.make(uri, error="m")
    return Markup(code.svg_inline(scale=5, dark="#000", light="#fff", omitsize=False))


# -- the member's Security page --------------------------------------------------------


class BeginForm(FlaskForm):
    submit = SubmitField(lazy_gettext("Set up two-factor authentication"))


class ConfirmForm(FlaskForm):
    code = StringField(
        lazy_gettext("Code from the app"),
        validators=[DataRequired(message=lazy_gettext("Enter the code your app shows.")), Length(max=32)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )
    submit = SubmitField(lazy_gettext("Confirm"))


class RegenerateForm(FlaskForm):
    """New recovery codes: the password and a code (a password alone, with a stolen
    session, must not make codes that pass the second factor)."""

    password = PasswordField(
        lazy_gettext("Password"), validators=[DataRequired(message=lazy_gettext("Please enter your password."))]
    )
    code = StringField(
        lazy_gettext("Code or recovery code"),
        validators=[DataRequired(message=lazy_gettext("Enter a code from your app or a recovery code.")), Length(max=32)],
        render_kw={"autocomplete": "one-time-code"},
    )
    submit = SubmitField(lazy_gettext("Make new recovery codes"))


class DisableForm(FlaskForm):
    password = PasswordField(
        lazy_gettext("Password"), validators=[DataRequired(message=lazy_gettext("Please enter your password."))]
    )
    code = StringField(
        lazy_gettext("Code or recovery code"),
        validators=[DataRequired(message=lazy_gettext("Enter a code from your app or a recovery code.")), Length(max=32)],
        render_kw={"autocomplete": "one-time-code"},
    )
    submit = SubmitField(lazy_gettext("Turn off two-factor authentication"))


class AddPasskeyForm(FlaskForm):
    """The name of a passkey to add (the page's script does the rest)."""

    name = StringField(
        lazy_gettext("Name"),
        validators=[Length(max=MAX_PASSKEY_NAME)],
        render_kw={"placeholder": lazy_gettext("Laptop, phone, security key, ..."), "autocomplete": "off"},
    )
    submit = SubmitField(lazy_gettext("Add a passkey"))


class RemovePasskeyForm(FlaskForm):
    """One of the member's passkeys to remove (its id in a hidden field)."""

    id = HiddenField(validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField(lazy_gettext("Remove"))


def _forms() -> Dict[str, FlaskForm]:
    return {
        "begin": BeginForm(prefix="begin"),
        "confirm": ConfirmForm(prefix="confirm"),
        "regenerate": RegenerateForm(prefix="regenerate"),
        "disable": DisableForm(prefix="disable"),
        "add_passkey": AddPasskeyForm(prefix="passkey"),
        "remove_passkey": RemovePasskeyForm(prefix="passkey-remove"),
    }


def shown_time(value: Optional[str]) -> str:
    """An RFC 3339 time of the daemon's as the page shows it (UTC, to the minute)."""
    if not value:
        return ""
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return at.strftime("%Y-%m-%d %H:%M UTC")


class Security(MethodView):
    """``/user/settings/security``: the member's second factor. Needs a fresh login
    (FlaskBB asks for the password, and the code, again)."""

    decorators = [login_required]

    def dispatch_request(self, *args: Any, **kwargs: Any) -> Any:
        _bridge()
        if not login_fresh():
            return current_app.login_manager.needs_refresh()
        return super().dispatch_request(*args, **kwargs)

    def get(self) -> Any:
        return self.render(_forms())

    def post(self) -> Any:
        forms = _forms()
        user_id = current_user.id
        try:
            if forms["begin"].submit.data and forms["begin"].validate_on_submit():
                issuer = str(flaskbb_config["PROJECT_TITLE"] or "FlaskBB")
                begun = account_call("BeginTotp", user_id=user_id, issuer=issuer)
                return self.render(forms, secret=begun["secret"], qr=qr_svg(begun["uri"]))
            if forms["confirm"].submit.data and forms["confirm"].validate_on_submit():
                code = forms["confirm"].code.data.strip()
                codes = account_call("ConfirmTotp", user_id=user_id, code=code)["recovery_codes"]
                flash(_("Two-factor authentication is on."), "success")
                return self.render(forms, recovery_codes=codes)
            if forms["regenerate"].submit.data and forms["regenerate"].validate_on_submit():
                form = forms["regenerate"]
                codes = account_call(
                    "RegenerateRecoveryCodes",
                    user_id=user_id,
                    password=form.password.data,
                    code=form.code.data.strip(),
                    **_address(),
                )["recovery_codes"]
                flash(_("New recovery codes made; the old ones no longer work."), "success")
                return self.render(forms, recovery_codes=codes)
            if forms["disable"].submit.data and forms["disable"].validate_on_submit():
                form = forms["disable"]
                account_call(
                    "DisableTotp",
                    user_id=user_id,
                    password=form.password.data,
                    code=form.code.data.strip(),
                    **_address(),
                )
                flash(_("Two-factor authentication is off."), "success")
                return redirect(url_for("flaskbbd.security"))
            if forms["remove_passkey"].submit.data and forms["remove_passkey"].validate_on_submit():
                account_call("RemovePasskey", user_id=user_id, id=forms["remove_passkey"].id.data)
                log.info("user %d removed a passkey", user_id)
                flash(_("The passkey is removed: it no longer signs you in."), "success")
                return redirect(url_for("flaskbbd.security"))
            if forms["add_passkey"].submit.data:
                # The page's script posts to passkey_added; a form posted without it
                # (no JavaScript) cannot make a passkey.
                flash(_("Adding a passkey needs JavaScript in your browser."), "danger")
        except AccountRefused as e:
            flash(e.message, "danger")
        return self.render(forms)

    @staticmethod
    def render(forms: Dict[str, FlaskForm], **shown: Any) -> Any:
        try:
            state = account_call("GetSecondFactor", user_id=current_user.id)["second_factor"]
        except AccountRefused as e:
            flash(e.message, "danger")
            state = None
        passkeys: Optional[List[Dict[str, Any]]] = None
        try:
            passkeys = [
                {**p, "created": shown_time(p.get("created")), "last_used": shown_time(p.get("last_used"))}
                for p in account_call("ListPasskeys", user_id=current_user.id).get("passkeys", [])
            ]
            note_passkeys(True)
        except AccountRefused as e:
            if e.name == "PasskeysUnavailable":  # passkeys off: the page shows none
                note_passkeys(False)
            else:
                flash(e.message, "danger")
        return render_template("flaskbbd/security.html", state=state, forms=forms, passkeys=passkeys, **shown)


#: Where this browser's passkey registration waits between its two requests: the
#: daemon's ceremony id only (the challenge stays in the daemon, bound to the member).
REGISTER_CEREMONY = "flaskbbd_passkey_register"


def _fresh_member() -> Optional[Any]:
    """None when the passkey requests may go on; else the answer that sends the page
    to reauthentication (a passkey is added with a fresh login only, as the page)."""
    _bridge()
    if not login_fresh():
        return jsonify(available=False, redirect=url_for("auth.reauth", next=url_for("flaskbbd.security")))
    return None


@login_required
def passkey_begin() -> Any:
    """``POST .../settings/security/passkeys/options``: ``BeginPasskeyRegistration``'s
    options for the page's script; the ceremony waits in the session."""
    refused = _fresh_member()
    if refused is not None:
        return refused
    try:
        reply = account_call("BeginPasskeyRegistration", user_id=current_user.id)
        options, ceremony = ceremony_options("BeginPasskeyRegistration", reply)
    except AccountRefused as e:
        if e.name == "PasskeysUnavailable":
            log.error("a passkey cannot be added: flaskbbd has no [webauthn] table in flaskbb.toml")
        flash(e.message, "danger")
        return jsonify(available=False, redirect=url_for("flaskbbd.security"))
    except Unavailable as e:
        log.error("a passkey cannot be added: %s", e.cause)
        flash(_(ACCOUNT_UNAVAILABLE), "danger")
        return jsonify(available=False, redirect=url_for("flaskbbd.security"))
    session[REGISTER_CEREMONY] = ceremony
    return jsonify(available=True, options=options)


@login_required
def passkey_added() -> Any:
    """``POST .../settings/security/passkeys``: the browser's new credential to
    ``FinishPasskeyRegistration`` under the name the member gave; the outcome is
    flashed on the Security page, where the script goes next."""
    refused = _fresh_member()
    if refused is not None:
        return refused
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    ceremony = session.pop(REGISTER_CEREMONY, None)
    credential = body.get("credential")
    name = " ".join(str(body.get("name") or "").split())[:MAX_PASSKEY_NAME] or _("Passkey")
    done = jsonify(redirect=url_for("flaskbbd.security"))
    if not isinstance(ceremony, str) or not isinstance(credential, dict):
        log.info("user %d: passkey not added, %s", current_user.id, "no ceremony in the session" if ceremony is None else "no credential posted")
        flash(_(_MESSAGES["CeremonyExpired"]), "danger")
        return done
    try:
        account_call(
            "FinishPasskeyRegistration",
            user_id=current_user.id,
            ceremony=ceremony,
            name=name,
            credential=json.dumps(credential),
        )
    except AccountRefused as e:
        flash(e.message, "danger")
        return done
    log.info("user %d added a passkey", current_user.id)
    flash(_("Passkey %(name)s added: it signs you in without your password.", name=name), "success")
    return done


# -- FlaskBB's password change and reset ------------------------------------------------


class DaemonChangePasswordForm(ChangePasswordForm):
    """FlaskBB's form; the old password is checked by the daemon, not here."""

    def validate_old_password(self, field: Any) -> None:
        pass


def _too_long(password: str) -> bool:
    return len(password.encode()) > MAX_PASSWORD_BYTES


class ChangePassword(MethodView):
    """``/user/settings/password``: ``Account.ChangePassword`` (the old password
    checked by the daemon's reauthentication chain)."""

    decorators = [login_required]

    def get(self) -> Any:
        return render_template("user/change_password.html", form=DaemonChangePasswordForm())

    def post(self) -> Any:
        form = DaemonChangePasswordForm()
        if form.validate_on_submit():
            if _too_long(form.new_password.data):
                form.new_password.errors.append(_("A password may be at most 72 bytes long."))
            else:
                try:
                    account_call(
                        "ChangePassword",
                        user_id=current_user.id,
                        old_password=form.old_password.data,
                        new_password=form.new_password.data,
                        **_address(),
                    )
                except AccountRefused as e:
                    if e.name == "AuthenticationFailed":
                        form.old_password.errors.append(e.message)
                    else:
                        flash(e.message, "danger")
                else:
                    flash(_("Password updated."), "success")
        return render_template("user/change_password.html", form=form)


class DaemonResetPasswordService(ResetPasswordService):
    """FlaskBB's reset: its token and email checks, then ``Account.ResetPassword``,
    which sets the password and lifts the member's lock."""

    def reset_password(self, token: str, email: str, new_password: str) -> None:
        loaded = self.token_serializer.loads(token)
        if loaded.operation != TokenActions.RESET_PASSWORD:
            raise TokenError.invalid()
        self._verify_token(loaded, email)
        if _too_long(new_password):
            raise StopValidation([("password", _("A password may be at most 72 bytes long."))])
        try:
            account_call("ResetPassword", user_id=loaded.user_id, new_password=new_password)
        except AccountRefused as e:
            raise StopValidation([("password", e.message)]) from None


def reset_service_factory() -> DaemonResetPasswordService:
    """FlaskBB's own factory's service, with the daemon's last step."""
    from flaskbb.auth.services.factories import reset_service_factory as flaskbb_factory

    service = flaskbb_factory()
    return DaemonResetPasswordService(service.token_serializer, service.users, service.token_verifiers)


# -- the admins' page in FlaskBB's management area ------------------------------------


class LiftForm(FlaskForm):
    user_id = HiddenField()
    submit = SubmitField(lazy_gettext("Lift"))


class ResetFactorForm(FlaskForm):
    user_id = HiddenField()
    submit = SubmitField(lazy_gettext("Reset"))


class RemovePasskeysForm(FlaskForm):
    username = StringField(validators=[DataRequired(), Length(max=200)])
    submit = SubmitField(lazy_gettext("Remove their passkeys"))


def remove_passkeys(user_id: int) -> int:
    """Removes every passkey of the member (an admin's action); how many there were."""
    removed = 0
    for passkey in account_call("ListPasskeys", user_id=user_id).get("passkeys", []):
        try:
            account_call("RemovePasskey", user_id=user_id, id=passkey["id"])
        except AccountRefused as e:
            if e.name != "NoSuchPasskey":  # removed meanwhile: as good
                raise
        else:
            removed += 1
    return removed


class Management(MethodView):
    """``/admin/flaskbbd``: locked accounts (lift), members with a second factor
    (reset), the daemon's status and a chart of the last hour's logins. FlaskBB's
    admin permission (others get 403) and a fresh login, as FlaskBB's own admin pages."""

    decorators = [allows.requires(IsAdmin), login_required]

    def dispatch_request(self, *args: Any, **kwargs: Any) -> Any:
        _bridge()
        if not login_fresh():
            return current_app.login_manager.needs_refresh()
        return super().dispatch_request(*args, **kwargs)

    def get(self) -> Any:
        return self.render()

    def post(self) -> Any:
        action = request.form.get("action", "")
        if action == "passkeys":
            return self.remove_passkeys()
        form: FlaskForm = LiftForm() if action == "lift" else ResetFactorForm()
        if form.validate_on_submit() and action in ("lift", "reset"):
            try:
                user_id = int(form.user_id.data)
            except (TypeError, ValueError):
                abort(400)
            user = User.query.filter_by(id=user_id).first()
            name = user.username if user is not None else str(user_id)
            try:
                if action == "lift":
                    account_call("Unlock", user_id=user_id, address=None)
                    flash(_("The lock on %(name)s is lifted.", name=name), "success")
                else:
                    account_call("ResetSecondFactor", user_id=user_id)
                    flash(_("%(name)s's second factor is reset.", name=name), "success")
                log.info("admin %d: %s for user %d", current_user.id, action, user_id)
            except AccountRefused as e:
                flash(e.message, "danger")
        return redirect(url_for("flaskbbd.management"))

    @staticmethod
    def remove_passkeys() -> Any:
        form = RemovePasskeysForm()
        if form.validate_on_submit():
            user = User.query.filter_by(username=form.username.data.strip()).first()
            if user is None:
                flash(_("No such member."), "danger")
            else:
                try:
                    removed = remove_passkeys(user.id)
                    log.info("admin %d: removed %d passkeys of user %d", current_user.id, removed, user.id)
                    flash(_("Passkeys of %(name)s removed: %(n)d.", n=removed, name=user.username), "success")
                except AccountRefused as e:
                    flash(e.message, "danger")
        return redirect(url_for("flaskbbd.management"))

    @staticmethod
    def render() -> Any:
        locks: List[Dict[str, Any]] = []
        addresses: List[Dict[str, Any]] = []
        factors: List[Dict[str, Any]] = []
        codes: List[Dict[str, Any]] = []
        try:
            listed = account_call("ListLocks")
            locks = [a for a in listed.get("accounts", []) if _has_failures(a.get("lock", {}))]
            addresses = listed.get("addresses", [])
            codes = listed.get("second_factor", [])
            factors = account_call("ListSecondFactors").get("members", [])
        except AccountRefused as e:
            flash(e.message, "danger")
        status, status_error = _status()
        return render_template(
            "flaskbbd/management.html",
            locks=locks,
            addresses=addresses,
            factors=factors,
            codes=codes,
            status=status,
            status_error=status_error,
            chart=Markup(stats.chart_svg()),
            lift_form=LiftForm(),
            reset_form=ResetFactorForm(),
        )


def _has_failures(lock: Dict[str, Any]) -> bool:
    """True for a lock with a failure or a lock on it (the daemon also lists accounts
    whose live rows hold no failure, such as a successful login's)."""
    return bool(
        lock.get("locked")
        or lock.get("failures")
        or any(a.get("failures") or a.get("locked") for a in lock.get("addresses", []))
    )


def _status() -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """The daemon's ``Admin.GetStatus`` (allowed to ``daemon.admin_uids``), or why not."""
    try:
        status: Dict[str, Any] = _bridge().client.admin("GetStatus")["status"]
        return status, None
    except VarlinkError as e:
        if e.name == "PermissionDenied":
            return None, _("The daemon's status is for daemon.admin_uids: add FlaskBB's uid there to see it here.")
        return None, e.name
    except Unavailable as e:
        log.error("flaskbbd's status could not be read: %s", e.cause)
        return None, _("The daemon did not answer.")


# -- wiring ------------------------------------------------------------------------------


def add_routes(app: Flask, blueprint: Blueprint) -> None:
    """The Security page under FlaskBB's user settings, the admins' page under its
    management prefix (both answer 404 while the bridge is inactive)."""
    user_prefix = app.config.get("USER_URL_PREFIX", "/user")
    admin_prefix = app.config.get("ADMIN_URL_PREFIX", "/admin")
    blueprint.add_url_rule(f"{user_prefix}/settings/security", view_func=Security.as_view("security"))
    blueprint.add_url_rule(
        f"{user_prefix}/settings/security/passkeys/options", "passkey_begin", passkey_begin, methods=["POST"]
    )
    blueprint.add_url_rule(f"{user_prefix}/settings/security/passkeys", "passkey_added", passkey_added, methods=["POST"])
    blueprint.add_url_rule(f"{admin_prefix}/flaskbbd", view_func=Management.as_view("management"))


def install_views(app: Flask) -> None:
    """Puts the daemon's password change and reset at FlaskBB's endpoints."""
    for endpoint in ("user.change_password", "auth.reset_password"):
        if endpoint not in app.view_functions:
            raise RuntimeError(
                f"FlaskBB has no {endpoint!r} view to replace; this FlaskBB is not one the "
                "flaskbbd bridge knows (2.0.2 to 2.2)"
            )
    app.view_functions["user.change_password"] = ChangePassword.as_view("change_password")
    app.view_functions["auth.reset_password"] = FlaskBBResetPassword.as_view(
        "reset_password", password_reset_service_factory=reset_service_factory
    )


def settings_menu() -> List[Tuple[Optional[str], str]]:
    """The Security page in FlaskBB's settings menu, while the bridge is active."""
    return [("flaskbbd.security", "Security")] if active() is not None else []


def admin_menu(user: Any) -> List[Tuple[str, str, str]]:
    """The admins' page in FlaskBB's management tabs, for admins, while the bridge
    is active."""
    if active() is None or not Permission(IsAdmin, identity=user):
        return []
    return [("flaskbbd.management", "Sign-in", "fa fa-shield")]


__all__ = [
    "ChangePassword",
    "Management",
    "Security",
    "account_call",
    "add_routes",
    "admin_menu",
    "install_views",
    "qr_svg",
    "settings_menu",
]
