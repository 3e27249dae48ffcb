"""Every REGISTRYUI_* setting of the dashboard, typed, each with its default in one place.

`registryui/settings.py` reads the environment into `settings.REGISTRYUI` with these defaults;
the code reads `conf.get()`, a typed view of that dict (tests override the dict, as Django's
settings always allow). Django's own settings (hosts, cookies, HTTPS) stay in settings.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .registry.models import RegistryConfig


@dataclass(frozen=True)
class Config:
    """What each setting means is written once, in .env.example (the README and a test keep the
    three in step). GC_* commands run in the task worker, never in a request."""

    #: How to reach the registry: REGISTRY_URL, USERNAME, PASSWORD, CA_BUNDLE, INSECURE,
    #: CONNECT_TIMEOUT, READ_TIMEOUT and CONCURRENCY (requests one page may have in flight).
    registry: RegistryConfig = RegistryConfig(url="http://localhost:5000")
    pull_host: str = ""
    catalog_ttl: float = 10.0
    #: registryui's own version (registryui/__init__.py), sent in the User-Agent.
    version: str = ""
    anonymous_read: bool = False
    gc_command: str = ""
    gc_before_command: str = ""
    gc_after_command: str = ""
    gc_hook_timeout: float = 600.0
    gc_timeout: float = 0.0
    gc_stale_seconds: float = 60.0
    storage_path: str = ""
    debug_url: str = ""
    storage_warn_percent: float = 85.0
    health_interval: float = 15.0
    metrics_token: str = ""
    events_token: str = ""
    sync_interval: float = 900.0
    sync_stale_seconds: float = 120.0

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Config:
        """From `settings.REGISTRYUI` (upper-case keys); a missing key or a value of the wrong
        type gets the default, so a typo in an override cannot break a page."""
        registry = replace(
            DEFAULTS.registry, **_typed(DEFAULTS.registry, raw, {"url": "REGISTRY_URL", "pool_size": "CONCURRENCY"})
        )
        return cls(**_typed(DEFAULTS, raw, {}), registry=registry)


def _typed(defaults: object, raw: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """The values `raw` has for the fields of `defaults` (key: the field's name in upper case, or
    `keys[name]`), each of its default's type; skipped when missing or not convertible."""
    values: dict[str, Any] = {}
    for f in fields(defaults):  # type: ignore[arg-type]
        value, kind = raw.get(keys.get(f.name, f.name.upper())), type(getattr(defaults, f.name))
        if value is None or kind not in (str, bool, int, float):
            continue
        try:
            values[f.name] = (
                value
                if kind is bool and isinstance(value, bool)
                else (str(value).strip() if kind is str and f.name != "password" else kind(value))
            )
        except (TypeError, ValueError):
            pass
    return values


DEFAULTS = Config()
_seen: tuple[object, Config] | None = None


def get() -> Config:
    """The settings in force, typed; re-read when `settings.REGISTRYUI` is replaced."""
    global _seen
    from django.conf import settings

    raw = settings.REGISTRYUI
    seen = _seen
    if seen is not None and seen[0] is raw:
        return seen[1]
    config = Config.from_mapping(raw)
    # Holding `raw` keeps its identity from being reused by a later dict.
    _seen = (raw, config)
    return config
