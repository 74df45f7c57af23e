"""Browser fixtures: Debian's Chromium driven by Playwright, and a recorded widget page.

A missing Chromium or Playwright FAILS the browser tests, it does not skip them.
"""

from __future__ import annotations

import os
import re

import pytest

try:  # imported here for expect(); a missing package fails the `browser` fixture, not collection
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover
    expect = None

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# -- the browser ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"The Python package `playwright` is required for the browser tests: {exc}", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium is required for the browser tests at {CHROMIUM} (Debian package `chromium`).", pytrace=False
        )
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


RECORD_PROBLEMS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


class Widget:
    """One page of the widget with everything that went wrong in it recorded.

    Waits use locators and expect(), never page.wait_for_function("..."): Playwright
    evaluates string predicates with eval() inside the page, which this CSP forbids.
    """

    def __init__(self, page, stub) -> None:
        self.page = page
        self.stub = stub  # anything with a base_url: the stub server or a running Relay
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.set_default_timeout(15_000)

    def open(self) -> None:
        self.page.goto(f"{self.stub.base_url}/")
        self.wait_ready()

    def wait_ready(self) -> None:
        expect(self.page.locator("#status")).to_have_text(re.compile(r"^Ready"))

    def send(self, message: str) -> None:
        """Types into the labelled field and presses Enter, as a keyboard user would."""
        count = self.page.locator("#transcript .msg.assistant").count()
        self.page.get_by_label("Message").focus()
        self.page.keyboard.type(message)
        self.page.keyboard.press("Enter")
        self.page.locator("#transcript .msg.assistant").nth(count).wait_for()

    def reply(self, index: int = -1):
        return self.page.locator("#transcript .msg.assistant").nth(index)

    def wait_idle(self) -> None:
        """The widget is idle again: Send enabled, Stop disabled."""
        expect(self.page.locator("#send")).to_be_enabled()
        expect(self.page.locator("#stop")).to_be_disabled()

    def csp_violations(self) -> list[str]:
        return self.page.evaluate("window.__cspViolations")

    def assert_clean(self, allowed_console: re.Pattern | None = None) -> None:
        console = [m for m in self.console_errors if not (allowed_console and allowed_console.search(m))]
        assert console == [], f"console errors: {console}"
        assert self.page_errors == [], f"page errors: {self.page_errors}"
        assert self.dialogs == [], f"dialogs (script ran?): {self.dialogs}"
        assert self.csp_violations() == [], f"CSP violations: {self.csp_violations()}"
