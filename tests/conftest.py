"""The shared fixtures: a seeded Distribution registry per session, an empty one per test, the
dashboard pointed at it (`dashboard`), REGISTRYUI options for one test (`configure`), and the
browser fixtures (`browser`, `watch`, `app`, `context`, `page`). Helpers are in tests/helpers/.

Missing tools are a hard failure, not a skip: a green run that quietly skipped the registry
tests would prove nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.cache import cache
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from testbed import RegistryServer, Seeded, SeededRegistry, registry_binary, seed_standard, tool_binaries
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, App, Watch, new_context


def _require_tools() -> None:
    try:
        registry_binary()
        tool_binaries()
    except RuntimeError as exc:
        pytest.fail(f"real-registry test bed unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededRegistry]:
    """A registry seeded with ``seed_standard``; read-only: tests must not mutate it."""
    _require_tools()
    data_dir = tmp_path_factory.mktemp("registry")
    with RegistryServer(data_dir) as server:
        seeded = seed_standard(server.url, skopeo_workdir=data_dir / "skopeo")
        yield SeededRegistry(server, seeded)


@pytest.fixture
def empty_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A fresh, empty registry (delete enabled) for tests that push or delete."""
    _require_tools()
    with RegistryServer(tmp_path / "registry") as server:
        yield server


@pytest.fixture
def configure(settings) -> Callable[..., None]:
    """``configure(REGISTRY_URL=url, CATALOG_TTL=0)``: REGISTRYUI options for this test only, over
    the ones settings.py read (pytest-django's ``settings`` puts them back after the test)."""

    def apply(**options: object) -> None:
        settings.REGISTRYUI = {**settings.REGISTRYUI, **options}

    return apply


@pytest.fixture
def point_at(configure, settings) -> Callable[..., None]:
    """``point_at(url, ANONYMOUS_READ=False)``: the dashboard reads the registry at `url` with no
    catalog cache (and these options), answers any Host, and starts from an empty cache."""

    def apply(url: str, **options: object) -> None:
        configure(REGISTRY_URL=url, CATALOG_TTL=0, **options)
        settings.ALLOWED_HOSTS = ["*"]
        cache.clear()

    return apply


@pytest.fixture
def dashboard(registry: SeededRegistry, point_at, db):
    """The Django app pointed at the seeded session registry, with an empty cache.

    Browsing tests read as an anonymous visitor (REGISTRYUI_ANONYMOUS_READ); who may do what
    has its own tests with the default, closed setting.
    """
    point_at(registry.url, ANONYMOUS_READ=True)
    yield registry
    cache.clear()


@pytest.fixture
def seeded(dashboard: SeededRegistry) -> Seeded:
    """What the seed pushed (``dashboard.seeded``), for tests that need nothing else of it."""
    return dashboard.seeded


# -- a real browser ---------------------------------------------------------------------------------


@pytest.fixture
def app(live_server, transactional_db, registry: SeededRegistry, point_at) -> Iterator[App]:
    """pytest-django's in-process live server, pointed at the seeded registry like ``dashboard``."""
    point_at(registry.url, PULL_HOST="", ANONYMOUS_READ=True)
    yield App(url=live_server.url, registry=registry)
    cache.clear()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module."""
    # Playwright's sync API keeps an asyncio loop marked running on this thread, so Django would
    # refuse the live server's database flush between tests; allowed only while the browser lives.
    with pytest.MonkeyPatch.context() as mp, sync_playwright() as pw:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def context(browser: Browser, app: App, watch: Watch) -> Iterator[BrowserContext]:
    ctx = new_context(browser, watch)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, watch: Watch) -> Iterator[Page]:
    pg = context.new_page()
    yield pg
    watch.assert_clean(pg)
