"""A real browser on the forum's pages: headless Chromium driven by Selenium through
Debian's ``chromedriver`` (``/usr/bin/chromedriver``; nothing is downloaded), for the
tests where what a person sees matters: what a page renders, which text stays in a
box, what is shown in red.

:class:`BrowserTestCase` opens one browser per test and, when a test fails, leaves a
screenshot and the page's HTML beside the test's files and names them in its output.
"""

from __future__ import annotations

import os
import re
import shutil
import unittest
from pathlib import Path
from typing import Any, Callable, List, Optional

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

#: Debian's chromedriver and browser (`.ci/run` installs chromium-driver).
CHROMEDRIVER = os.environ.get("FLASKBBD_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM = os.environ.get("FLASKBBD_CHROMIUM", "/usr/bin/chromium")

#: How long a page may take to show what a test waits for.
WAIT_SECONDS = 30


def _missing() -> Optional[str]:
    for path in (CHROMEDRIVER, CHROMIUM):
        if shutil.which(path) is None:
            return f"{path} not found: install Debian's chromium and chromium-driver (.ci/run does)"
    return None


class Chrome:
    """One person's headless Chromium on the forum at ``base``."""

    def __init__(self, base: str, downloads: Path) -> None:
        missing = _missing()
        if missing is not None:
            raise RuntimeError(missing)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            # Root in a container: Chromium's own sandbox needs user namespaces.
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,1024",
            "--no-first-run",
            "--disable-background-networking",
        ):
            options.add_argument(arg)
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
        service = Service(CHROMEDRIVER, log_output=str(downloads / "chromedriver.log"))
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_page_load_timeout(WAIT_SECONDS * 2)
        self.base = base

    def quit(self) -> None:
        self.driver.quit()

    # -- going places -----------------------------------------------------------------

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    @property
    def path(self) -> str:
        url: str = self.driver.current_url
        return url[len(self.base) :] if url.startswith(self.base) else url

    def wait(self, what: str, done: Callable[[], Any]) -> Any:
        """Waits until ``done()`` is truthy; fails naming ``what``."""
        return WebDriverWait(self.driver, WAIT_SECONDS).until(lambda _: done(), f"waited for {what}")

    # -- what a person sees ------------------------------------------------------------

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> List[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str = "body") -> str:
        """The visible text of the first element matching ``css``."""
        return str(self.find(css).text)

    def field(self, name: str, form: str = "") -> WebElement:
        return self.find(f'{form} [name="{name}"]'.strip())

    def value(self, name: str, form: str = "") -> str:
        return str(self.field(name, form).get_attribute("value") or "")

    def flashes(self, category: str) -> List[str]:
        """The messages FlaskBB flashed, of ``category`` (``danger``, ``success``)."""
        return [" ".join(e.text.replace("×", "").split()) for e in self.find_all(f".alert.alert-{category}")]

    def color(self, element: WebElement) -> str:
        """The element's computed text colour, as ``rgb(r, g, b)``."""
        value = str(element.value_of_css_property("color"))
        found = re.match(r"rgba?\((\d+),\s*(\d+),\s*(\d+)", value)
        return f"rgb({found.group(1)}, {found.group(2)}, {found.group(3)})" if found else value

    # -- doing things -------------------------------------------------------------------

    def type(self, name: str, text: str, form: str = "") -> None:
        """Types into a form's field as a person does (FlaskBB's Markdown editor
        included: it keeps the textarea itself)."""
        element = self.field(name, form)
        element.clear()
        element.send_keys(text)

    def press(self, css: str) -> None:
        """Clicks ``css`` and waits for the page it leads to."""
        old = self.find("html")
        self.find(css).click()
        self.wait("the next page", lambda: _stale(old))

    def login(self, name: str, password: str) -> None:
        self.open("/auth/login")
        self.type("login", name)
        self.type("password", password)
        self.press('form [name="submit"]')

    def screenshot(self, directory: Path, name: str) -> List[Path]:
        """The page as it is now: a PNG and its HTML, in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        png = directory / f"{name}.png"
        page = directory / f"{name}.html"
        self.driver.save_screenshot(str(png))
        page.write_text(self.driver.page_source)
        return [png, page]


def _stale(element: WebElement) -> bool:
    """True once ``element`` belongs to a page that is gone (a new one loaded)."""
    try:
        element.is_enabled()
    except WebDriverException:
        return True
    return False


class BrowserTestCase(unittest.TestCase):
    """A test with a fresh browser (``self.chrome``) on ``forum_url``; a failure leaves
    a screenshot and the page's HTML in ``artifacts`` and names them."""

    forum_url: str
    artifacts: Path

    def setUp(self) -> None:
        super().setUp()
        downloads = self.artifacts / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        self.chrome = Chrome(self.forum_url, downloads)
        self.addCleanup(self.chrome.quit)

    def _callTestMethod(self, method: Callable[[], Any]) -> None:
        # unittest's own hook around the test method: the browser is still open here.
        try:
            method()
        except BaseException:
            name = self.id().rsplit(".", 1)[-1]
            try:
                saved = self.chrome.screenshot(self.artifacts / "screenshots", name)
                print(f"\n{name} failed on {self.chrome.driver.current_url}; screenshot: {saved[0]}; page: {saved[1]}")
            except WebDriverException as e:
                print(f"\n{name} failed; no screenshot: {e}")
            raise
