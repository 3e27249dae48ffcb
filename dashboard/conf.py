"""Every REGISTRYUI_* setting of the dashboard, typed, each with its default in one place.

`registryui/settings.py` reads the environment into `settings.REGISTRYUI` with these defaults;
the code reads `conf.get()`, a typed view of that dict (tests override the dict, as Django's
settings always allow). Django's own settings (hosts, cookies, HTTPS) stay in settings.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Config:
    """What each setting means is written once, in .env.example (the README and a test keep the
    three in step). GC_* commands run in the task worker, never in a request."""

    registry_url: str = "http://localhost:5000"
    username: str = ""
    password: str = ""
    ca_bundle: str = ""
    insecure: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    concurrency: int = 16
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
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = raw.get(f.name.upper())
            if value is None:
                continue
            kind = type(f.default)
            try:
                values[f.name] = value if kind is bool and isinstance(value, bool) else (
                    str(value).strip() if kind is str and f.name != "password" else kind(value))
            except (TypeError, ValueError):
                pass
        return cls(**values)


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
