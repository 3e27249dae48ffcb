"""Real-registry fixtures: a seeded Distribution registry per session, an empty one per test.

Missing tools are a hard failure, not a skip: a green run that quietly skipped the registry
tests would prove nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The repo root holds `testbed/`; pytest-django puts it on sys.path (next to manage.py), but
# `-p no:django` runs and plain `pytest` from elsewhere would not find it.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from testbed import RegistryServer, SeededRegistry, registry_binary, seed_standard, tool_binaries  # noqa: E402


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
def dashboard(registry: SeededRegistry, settings, db):  # noqa: ANN001 - pytest-django's settings fixture
    """The Django app pointed at the seeded session registry, with an empty cache.

    Browsing tests read as an anonymous visitor (REGISTRYUI_ANONYMOUS_READ); who may do what
    has its own tests with the default, closed setting.
    """
    from django.core.cache import cache

    settings.REGISTRYUI = {**settings.REGISTRYUI, "REGISTRY_URL": registry.url, "CATALOG_TTL": 0,
                          "ANONYMOUS_READ": True}
    settings.ALLOWED_HOSTS = ["*"]
    cache.clear()
    yield registry
    cache.clear()
