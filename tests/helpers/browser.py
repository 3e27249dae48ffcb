"""Driving headless Debian Chromium with Playwright: a watched context, screenshots, signing in.

The fixtures built on these (``browser``, ``watch``, ``app``, ``context``, ``page``) are in
tests/conftest.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from playwright.sync_api import Browser, BrowserContext, Page, expect

from testbed import Seeded, SeededRegistry

if TYPE_CHECKING:
    from django.contrib.auth.models import User

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TIMEOUT_MS = 10_000

# Records CSP violations into window (per document) and forwards them to the test (across navigations).
WATCH_SCRIPT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  var text = e.violatedDirective + " blocked " + (e.blockedURI || "inline") + " at " + e.sourceFile + ":" +
             e.lineNumber + " sample=" + JSON.stringify(e.sample || "");
  window.__cspViolations.push(text);
  if (window.__reportCsp) window.__reportCsp(text);
}, true);
"""


@dataclass
class App:
    url: str
    registry: SeededRegistry

    @property
    def seeded(self) -> Seeded:
        return self.registry.seeded

    @property
    def host(self) -> str:
        return self.registry.host

    def repo_url(self, name: str, query: str = "") -> str:
        return f"{self.url}/r/{name}/{query}"


@dataclass
class Watch:
    """What went wrong on any page of one context."""

    problems: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console.{m.type}: {m.text} @ {page.url}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc} @ {page.url}"))
        # An htmx request cut short by the user following a link is not a problem.
        page.on(
            "requestfailed",
            lambda r: (
                self.problems.append(f"request failed: {r.method} {r.url} {r.failure}")
                if r.failure != "net::ERR_ABORTED"
                else None
            ),
        )
        page.on(
            "response",
            lambda r: self.problems.append(f"HTTP {r.status}: {r.request.method} {r.url}") if r.status >= 400 else None,
        )

        def on_dialog(dialog) -> None:
            self.problems.append(f"dialog {dialog.type}: {dialog.message!r} @ {page.url}")
            dialog.dismiss()

        page.on("dialog", on_dialog)

    def assert_clean(self, page: Page | None = None) -> None:
        in_window = page.evaluate("window.__cspViolations || []") if page is not None and not page.is_closed() else []
        assert not self.csp and not in_window, f"CSP violations: {self.csp + in_window}"
        assert not self.problems, "browser problems:\n" + "\n".join(self.problems)


def new_context(browser: Browser, watch: Watch, **kwargs) -> BrowserContext:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, **kwargs)
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.expose_binding("__reportCsp", lambda source, text: watch.csp.append(f"{text} @ {source['page'].url}"))
    ctx.add_init_script(WATCH_SCRIPT)
    ctx.on("page", watch.attach)
    return ctx


@contextmanager
def watched_page(browser: Browser, watch: Watch | None = None) -> Iterator[Page]:
    """A page in a new context, checked by `watch` when the block ends; the context closed after."""
    watch = watch or Watch()
    ctx = new_context(browser, watch)
    try:
        pg = ctx.new_page()
        yield pg
        watch.assert_clean(pg)
    finally:
        ctx.close()


def mark_document(page: Page) -> None:
    """Tag the current document; `same_document` tells whether a full reload happened since."""
    page.evaluate("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    return page.evaluate("window.__sameDocument === true")


def shown_tags(page: Page) -> list[str]:
    return page.locator("#tags tr.tag-row").evaluate_all("rows => rows.map(r => r.dataset.tag)")


def wait_for_details(page: Page) -> None:
    expect(page.locator("#tags")).to_have_attribute("aria-busy", "false")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def is_semver(tag: str) -> bool:
    return re.fullmatch(r"\d+\.\d+\.\d+", tag) is not None


def semver(tag: str) -> tuple[int, ...]:
    return tuple(int(n) for n in tag.split("."))


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page, animations="disabled")


def no_sideways_scroll(page: Page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {page.url}"


# -- signing in --------------------------------------------------------------------------------

PASSWORDS = {"mia": "pw-mia-browser-1", "vic": "pw-vic-browser-1"}


def make_user(username: str, group: str) -> User:
    from django.contrib.auth.models import Group, User

    from dashboard.auth import ensure_roles

    ensure_roles()  # the groups come from post_migrate; make sure after a flush, too
    user = User.objects.create_user(username, password=PASSWORDS[username])
    user.groups.add(Group.objects.get(name=group))
    return user


def shots(page: Page, name: str, *, full_page: bool = True, prefix: str = "delete-") -> None:
    """The same state in light and in dark."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        shot(page, f"{prefix}{name}-{scheme}", full_page=full_page)
    page.emulate_media(color_scheme="light")


def sign_in(page: Page, base: str, user: User, path: str, *, screenshot: bool = False) -> None:
    """Open `path`, get sent to the login form, sign in there and land back on `path`."""
    page.goto(base + path)
    expect(page).to_have_url(re.compile(re.escape(f"{base}/-/login/?next=") + ".+"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    if screenshot:
        shots(page, "login")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORDS[user.username])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + path)
    expect(page.locator(".usernav .who")).to_have_text(user.username)
