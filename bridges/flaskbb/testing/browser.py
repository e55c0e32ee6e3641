"""A browser for FlaskBB's pages: keeps its cookies, fills in the CSRF token a form
carries, follows redirects, and reads what FlaskBB shows (flashed messages, form
errors, which fields a form has)."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from typing import Dict, List, Optional, Tuple

import requests


class _PageParser(HTMLParser):
    """Collects a page's flashed messages, form fields and field errors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.flashes: List[Tuple[str, str]] = []
        self.fields: Dict[str, str] = {}
        self.errors: List[str] = []
        self._alert: Optional[str] = None
        self._alert_text: List[str] = []
        self._in_button = False
        self._help = False

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "div" and "alert" in classes:
            category = next((c[len("alert-"):] for c in classes if c.startswith("alert-")), "")
            self._alert, self._alert_text = category, []
        elif tag == "button" and self._alert is not None:
            self._in_button = True
        elif tag in ("input", "textarea", "select") and "name" in a:
            self.fields.setdefault(a["name"], a.get("value", ""))
        elif tag == "span" and "help-block" in classes:
            self._help = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._in_button = False
        elif tag == "div" and self._alert is not None:
            self.flashes.append((self._alert, " ".join("".join(self._alert_text).split())))
            self._alert = None
        elif tag == "span":
            self._help = False

    def handle_data(self, data: str) -> None:
        if self._alert is not None and not self._in_button:
            self._alert_text.append(data)
        if self._help and data.strip():
            self.errors.append(" ".join(data.split()))


class Page:
    """One response as a person sees it."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.url = response.url
        self.text = response.text
        parser = _PageParser()
        parser.feed(self.text)
        self.flashes = parser.flashes
        self.fields = parser.fields
        self.errors = parser.errors

    @property
    def logged_in(self) -> bool:
        """FlaskBB's navigation offers "Logout" only to a logged-in person."""
        return "/auth/logout" in self.text

    def flash(self, category: str) -> List[str]:
        """The flashed messages of ``category`` (``danger``, ``success``, ...)."""
        return [text for c, text in self.flashes if c == category]

    def __repr__(self) -> str:
        return f"<Page {self.status} {self.url} flashes={self.flashes} errors={self.errors}>"


class Browser:
    """A person's browser on the forum at ``base``."""

    def __init__(self, base: str, user_agent: str = "flaskbbd-bridge-tests") -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent

    def get(self, path: str) -> Page:
        return Page(self.session.get(self.base + path, timeout=60))

    def submit(self, path: str, fields: Dict[str, str], button: str = "submit") -> Page:
        """Opens the form at ``path`` and posts ``fields`` with its CSRF token, as
        pressing ``button`` would; returns the page the browser ends on."""
        form = self.get(path)
        if form.status != 200:
            raise AssertionError(f"the form at {path} did not open: {form!r}")
        data = {"csrf_token": html.unescape(form.fields.get("csrf_token", "")), **fields, button: "1"}
        return Page(self.session.post(self.base + path, data=data, timeout=60, headers={"Referer": self.base + path}))

    def login(self, login: str, password: str, otp: Optional[str] = None, remember: bool = False) -> Page:
        fields = {"login": login, "password": password}
        if otp is not None:
            fields["otp"] = otp
        if remember:
            fields["remember_me"] = "y"
        return self.submit("/auth/login", fields)

    def close_and_reopen(self) -> None:
        """What closing the browser does: the session cookie goes, a "remember me"
        cookie stays. The next page logs the person in again from it, but not
        freshly: FlaskBB then asks for the password again before sensitive pages."""
        self.session.cookies.clear(domain="127.0.0.1", path="/", name="session")

    def logout(self) -> Page:
        return self.get("/auth/logout")
