"""Is the registry healthy, and if not, what to do: small checks with a `run()` each
(django-health-check's shape), shown as panels and served as JSON."""

from __future__ import annotations

import re
import shutil
import statistics
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import requests
from django.core.cache import cache
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

from .. import conf, remote
from ..browse import indexed, live
from ..gc import stale
from ..index import sync
from ..insight import figures
from ..models import Deletion, GCRun, RegistryEvent, SyncRun
from ..registry import errors as e
from ..web import ago

OK, WARNING, FAILING, OFF = "ok", "warning", "failing", "off"
_RANK = {OK: 0, OFF: 0, WARNING: 1, FAILING: 2}
# The deletion probe needs a repository name; any valid one will do, it need not exist.
PROBE_REPOSITORY = "registryui/health-probe"


@dataclass(frozen=True)
class Result:
    key: str
    name: str
    status: str
    figure: str
    explanation: str
    detail: dict[str, Any] = field(default_factory=dict)
    #: What is wrong in one line, for the front page's strip, when the explanation says more
    #: around it (empty: the explanation is that line).
    summary: str = ""

    @property
    def diagnosis(self) -> str:
        return self.summary or self.explanation


def _key(what: str) -> str:
    return remote.cache_key("health", what)


@dataclass
class ApiCheck:
    key: str = "api"
    name: str = "Registry API"

    def run(self) -> Result:
        url = remote.registry_url()
        try:
            ping = remote.client().ping()
        except e.RegistryError as exc:
            return Result(self.key, self.name, FAILING, type(exc).__name__.replace("Registry", ""), str(exc),
                          {"url": url})
        samples = (cache.get(_key("latency")) or [])[-4:] + [ping.latency_ms]
        cache.set(_key("latency"), samples, None)
        median = statistics.median(samples)
        auth = "credentials accepted" if conf.get().registry.username else "open, no credentials needed"
        version = ping.api_version or "no Docker-Distribution-Api-Version header"
        return Result(self.key, self.name, OK, f"{median:.0f} ms", f"GET {url}/v2/ answers · {version} · {auth}",
                      {"url": url, "latency_ms": round(median, 1), "api_version": ping.api_version, "auth": auth})


_METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|\+Inf)")
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        match = _METRIC_RE.match(line)
        if not match or line.startswith("#"):
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        samples.append((match.group(1), dict(_LABEL_RE.findall(match.group(2) or "")), value))
    return samples


@dataclass
class DebugCheck:
    """The registry's own view: /debug/health (storage driver) and /metrics, on http.debug.addr."""

    key: str = "debug"
    name: str = "Registry health endpoint"

    def run(self) -> Result:
        base = conf.get().debug_url
        if not base:
            return Result(self.key, self.name, OFF, "not configured",
                          "Set REGISTRYUI_REGISTRY_DEBUG_URL to the registry's http.debug.addr to see its storage "
                          "health and request rates.")
        try:
            health = requests.get(f"{base}/debug/health", timeout=5)
        except requests.RequestException:
            return Result(self.key, self.name, FAILING, "unreachable",
                          f"nothing answers at {base}/debug/health — is http.debug.addr set in the registry's config?")
        if health.status_code != 200:
            return Result(self.key, self.name, FAILING, f"HTTP {health.status_code}",
                          f"the registry's own health check fails ({health.text.strip()[:300]}) — while it fails "
                          "the registry answers 503 to everything: check its storage", {"body": health.text[:1000]})
        rates = self._rates(base)
        return Result(self.key, self.name, OK, rates.get("figure", "healthy"),
                      "storage driver healthy" + (f" · {rates['explanation']}" if rates.get("explanation") else ""),
                      rates.get("detail", {}))

    def _rates(self, base: str) -> dict[str, Any]:
        try:
            text = requests.get(f"{base}/metrics", timeout=5).text
        except requests.RequestException:
            return {}
        requests_by_code: dict[str, float] = {}
        storage_sum = storage_count = 0.0
        for name, labels, value in parse_prometheus(text):
            if name == "registry_http_requests_total":
                code = labels.get("code", "?")
                requests_by_code[code] = requests_by_code.get(code, 0) + value
            elif name == "registry_storage_action_seconds_sum":
                storage_sum += value
            elif name == "registry_storage_action_seconds_count":
                storage_count += value
        now = time.time()
        current = {"t": now, "codes": requests_by_code, "ssum": storage_sum, "scount": storage_count}
        previous = cache.get(_key("metrics"))
        cache.set(_key("metrics"), current, None)
        if not previous or now - previous["t"] <= 0:
            return {"figure": "healthy", "explanation": "request rates from the next look on"}
        span = now - previous["t"]
        delta = {c: v - previous["codes"].get(c, 0) for c, v in requests_by_code.items()}
        total = sum(max(v, 0) for v in delta.values())
        errors = sum(max(v, 0) for c, v in delta.items() if c[:1] in ("4", "5"))
        scount = storage_count - previous["scount"]
        storage_ms = (storage_sum - previous["ssum"]) / scount * 1000 if scount > 0 else None
        explanation = (f"{total / span:.1f} req/s, {errors / total:.0%} errors" if total
                       else "no requests since the last look")
        if storage_ms is not None:
            explanation += f" · storage actions {storage_ms:.1f} ms"
        return {"figure": f"{total / span:.1f} req/s", "explanation": explanation,
                "detail": {"requests_per_second": round(total / span, 3), "by_code": delta,
                           "storage_action_ms": storage_ms}}


@dataclass
class StorageCheck:
    key: str = "storage"
    name: str = "Storage"

    def run(self) -> Result:
        path = conf.get().storage_path
        if not path:
            return Result(self.key, self.name, OFF, "not mounted",
                          "Mount the registry's storage into the dashboard and set REGISTRYUI_STORAGE_PATH to see "
                          "disk use.")
        try:
            usage = shutil.disk_usage(path)
        except OSError as exc:
            return Result(self.key, self.name, FAILING, "unreadable", f"cannot read {path}: {exc.strerror}")
        # The storage page's reading: one measurement, taken again once a blob came or went.
        blobs = figures.disk_files() or (0, 0)
        used = usage.used / usage.total * 100 if usage.total else 0.0
        threshold = conf.get().storage_warn_percent
        figure = f"{used:.0f}% used"
        text = (f"{filesizeformat(usage.free)} free of {filesizeformat(usage.total)} · {blobs[0]} blobs, "
                f"{filesizeformat(blobs[1])}")
        status, why = OK, ""
        if used >= threshold:
            status = WARNING
            reason = f"over {threshold:.0f}%: delete tags you no longer need, then run garbage collection"
            why, text = f"{figure}, {reason}", f"{text} — {reason}"
        return Result(self.key, self.name, status, figure, text,
                      {"total": usage.total, "free": usage.free, "used_percent": round(used, 1),
                       "blob_count": blobs[0], "blob_bytes": blobs[1]}, summary=why)


@dataclass
class ContentCheck:
    key: str = "content"
    name: str = "Content"

    def run(self) -> Result:
        try:
            names = remote.catalog()
        except e.RegistryError as exc:
            return Result(self.key, self.name, FAILING, "unknown", f"the catalog cannot be read: {exc}")
        tags = cache.get(_key("tag-counts"))
        if tags is None:
            # Counted as the catalog and the repository pages count them: attachment tags apart.
            counts = [c for c in live.tag_counts(names).values() if isinstance(c, live.TagCount)]
            tags = live.TagCount(sum(c.tags for c in counts), sum(c.attachments for c in counts))
            cache.set(_key("tag-counts"), tags, 60)
        repos = f"{len(names)} repositor{'y' if len(names) == 1 else 'ies'}"
        text = f"{repos}, {tags.tags} tag{'' if tags.tags == 1 else 's'}"
        if tags.attachments:
            text += f" + {tags.attachments} attachment tag{'' if tags.attachments == 1 else 's'}"
        return Result(self.key, self.name, OK, repos, text,
                      {"repositories": len(names), "tags": tags.tags, "attachments": tags.attachments})


@dataclass
class DeletionCheck:
    key: str = "deletion"
    name: str = "Deletion"

    def run(self) -> Result:
        support = remote.delete_support(PROBE_REPOSITORY)
        if support.enabled:
            return Result(self.key, self.name, OK, "enabled", "the registry accepts deletes (learned from its answer)")
        return Result(self.key, self.name, WARNING, "read-only" if support.read_only else "disabled", support.reason)


@dataclass
class GCCheck:
    key: str = "gc"
    name: str = "Garbage collection"

    def run(self) -> Result:
        # A stale blob-descriptor cache first: re-checked each time, so the warning goes as soon
        # as the registry (restarted) answers 404 for what garbage collection removed.
        if stale_runs := stale.pending():
            found = stale_runs[0].report["blob_cache"]["stale"]
            return Result(self.key, self.name, WARNING, "stale blob cache", stale.DIAGNOSIS,
                          {"stale_blob_cache": {"gc_run": stale_runs[0].pk, "still_served": found}})
        last = GCRun.objects.filter(dry_run=False, state=GCRun.State.SUCCEEDED).first()
        since = Deletion.objects.filter(registry=remote.registry_url())
        if last and last.finished_at:
            since = since.filter(created_at__gt=last.finished_at)
        pending = since.count()
        figure = f"{timesince(last.finished_at, timezone.now())} ago" if last and last.finished_at else "never run"
        if pending:
            return Result(self.key, self.name, WARNING, figure,
                          f"{pending} deletion{'s' if pending != 1 else ''} since the last garbage collection hold "
                          "space: run it to free that space", {"deletions_since": pending})
        return Result(self.key, self.name, OK, figure, "nothing deleted since the last run", {"deletions_since": 0})


@dataclass
class IndexCheck:
    """The index: is it fed (events), reconciled (sync), and is the worker keeping up."""

    key: str = "index"
    name: str = "Index"

    def run(self) -> Result:
        with suppress(Exception):  # a health check reports, it never fails the page
            sync.ensure_scheduled()
        now = timezone.now()
        # The catalog's count (attachment tags apart), from the same function.
        counted = indexed.tag_counts().values()
        tags, attachments = sum(c.tags for c in counted), sum(c.attachments for c in counted)
        last = SyncRun.objects.filter(state__in=[SyncRun.State.SUCCEEDED, SyncRun.State.FAILED]).first()
        active = SyncRun.objects.filter(active=True).first()
        event = RegistryEvent.objects.filter(source=RegistryEvent.Source.REGISTRY).order_by("-received_at").first()
        stuck = RegistryEvent.objects.filter(applied=False, received_at__lt=now - timedelta(minutes=2)).count()
        also = f" + {attachments} attachment tag{'' if attachments == 1 else 's'}" if attachments else ""
        parts = [f"{tags} tag{'' if tags == 1 else 's'}{also} indexed"]
        if last and last.finished_at:
            failed = " failed" if last.state == SyncRun.State.FAILED else ""
            parts.append(f"last sync {ago(last.finished_at)}{failed}")
        if active and active.state == SyncRun.State.RUNNING:
            parts.append("a sync is running")
        elif active and active.not_before and active.not_before > now:
            parts.append(f"next sync in {timeuntil(active.not_before, now)}")
        elif active:
            parts.append("a sync is queued")
        if not conf.get().events_token:
            parts.append("registry events off (set REGISTRYUI_EVENTS_TOKEN and the registry's notifications)")
        elif event:
            parts.append(f"last event {ago(event.received_at)}")
        else:
            parts.append("no registry event received yet")
        detail = {"tags": tags, "attachments": attachments, "events_pending": stuck,
                  "last_sync_state": last.state if last else None,
                  "last_event_at": event.received_at.isoformat() if event else None}
        figure = f"{tags} tag{'' if tags == 1 else 's'}"
        if stuck:
            waiting = "1 registry event waits" if stuck == 1 else f"{stuck} registry events wait"
            why = f"{waiting} to be applied: is the worker (manage.py worker) running?"
            return Result(self.key, self.name, WARNING, figure, " · ".join(parts) + f" — {why}", detail, summary=why)
        if last and last.state == SyncRun.State.FAILED and not active:
            why = f"the last sync failed: {last.error[:300]}"
            return Result(self.key, self.name, WARNING, figure, " · ".join(parts) + f" — {last.error[:300]}", detail,
                          summary=why)
        return Result(self.key, self.name, OK, figure, " · ".join(parts), detail)


@dataclass(frozen=True)
class Report:
    status: str
    results: tuple[Result, ...]

    @property
    def registry_reachable(self) -> bool:
        return self.results[0].status != FAILING

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "registry": remote.registry_url(),
                "checks": {r.key: asdict(r) for r in self.results}}


def run_checks() -> Report:
    api = ApiCheck().run()
    if api.status == FAILING:
        # These ask the registry API too: say it once, on the panel that explains it.
        content, deletion = (Result(c.key, c.name, OFF, "—", "waiting for the registry API")
                             for c in (ContentCheck(), DeletionCheck()))
    else:
        content, deletion = ContentCheck().run(), DeletionCheck().run()
    results = (api, DebugCheck().run(), StorageCheck().run(), content, deletion, GCCheck().run(), IndexCheck().run())
    worst = max((r.status for r in results), key=lambda s: _RANK[s])
    return Report(status=OK if worst == OFF else worst, results=results)
