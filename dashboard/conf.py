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
    # -- the registry
    registry_url: str = "http://localhost:5000"
    username: str = ""
    password: str = ""
    ca_bundle: str = ""
    insecure: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    #: How many registry requests one page may have in flight at once.
    concurrency: int = 16
    #: The host people `docker pull` from, when it differs from the URL the dashboard uses.
    pull_host: str = ""
    #: The catalog is re-read at most this often while people filter it keystroke by keystroke.
    catalog_ttl: float = 10.0
    #: registryui's own version (registryui/__init__.py), sent in the User-Agent.
    version: str = ""
    #: Off by default: a dashboard that can delete must not be open. On: anyone may browse (read-only).
    anonymous_read: bool = False
    # -- garbage collection: runs in the task worker (`manage.py db_worker`), never in a request.
    #: The registry's own command, e.g. `registry garbage-collect /etc/docker/registry/config.yml`;
    #: split like a shell would (no shell runs it). --dry-run / --delete-untagged go right after
    #: the word `garbage-collect`, or at the end when the command has no such word (a wrapper
    #: script gets them in "$@"). Unset: the dashboard explains how to set it.
    gc_command: str = ""
    #: Shell commands run before and after each run (e.g. switch the registry to read-only and
    #: back, restart it); they see REGISTRYUI_GC_DRY_RUN, REGISTRYUI_GC_DELETE_UNTAGGED,
    #: REGISTRYUI_GC_RUN_ID, and after the run REGISTRYUI_GC_EXIT_CODE. The after hook runs
    #: even when the before hook or the command failed.
    gc_before_command: str = ""
    gc_after_command: str = ""
    gc_hook_timeout: float = 600.0
    #: Seconds the command may run before it is stopped; 0 means no limit.
    gc_timeout: float = 0.0
    #: A run whose worker has not reported for this long is marked failed and frees the lock.
    gc_stale_seconds: float = 60.0
    #: The registry's storage root (the directory holding docker/registry/v2), readable by the
    #: dashboard: sizes of what a run would free and did free. Unset: counts only.
    storage_path: str = ""
    #: The registry's http.debug.addr (e.g. http://registry:5001): /debug/health and /metrics.
    debug_url: str = ""
    #: Warn when the storage volume is this full.
    storage_warn_percent: float = 85.0
    #: Seconds between refreshes of the health panels.
    health_interval: float = 15.0
    #: /metrics answers only to `Authorization: Bearer <token>`; unset, there is no /metrics.
    metrics_token: str = ""
    # -- the index (dashboard.index): registry events in, a reconcile sync on a schedule.
    #: The registry's notifications endpoint sends `Authorization: Bearer <token>` (its
    #: notifications.endpoints[].headers); unset, /-/events/ refuses every event.
    events_token: str = ""
    #: Seconds between scheduled syncs (the worker runs them); 0 turns the schedule off.
    sync_interval: float = 900.0
    #: A sync whose worker has not reported for this long is marked failed (a new one resumes it).
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
