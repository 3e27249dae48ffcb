"""Prometheus metrics of the dashboard itself: its requests, its registry calls, its cache, GC runs.

Served at /metrics only when REGISTRYUI_METRICS_TOKEN is set, to callers that send it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("registryui_http_requests_total", "Dashboard requests", ["view", "method", "status"],
                   registry=REGISTRY)
REQUEST_SECONDS = Histogram("registryui_http_request_seconds", "Dashboard request latency", ["view"],
                            registry=REGISTRY)
REGISTRY_CALLS = Counter("registryui_registry_requests_total", "Requests to the registry",
                         ["endpoint", "method", "status"], registry=REGISTRY)
REGISTRY_SECONDS = Histogram("registryui_registry_request_seconds", "Registry request latency", ["endpoint"],
                             registry=REGISTRY)
CACHE = Counter("registryui_cache_lookups_total", "Digest cache lookups", ["kind", "result"], registry=REGISTRY)


def observe_registry(method: str, endpoint: str, status: str, seconds: float) -> None:
    REGISTRY_CALLS.labels(endpoint, method, status).inc()
    REGISTRY_SECONDS.labels(endpoint).observe(seconds)


def cache_lookup(kind: str, hits: int, misses: int) -> None:
    if hits:
        CACHE.labels(kind, "hit").inc(hits)
    if misses:
        CACHE.labels(kind, "miss").inc(misses)


class _GCRuns:
    """GC runs by kind and state, read from the database at scrape time (every process agrees)."""

    def describe(self) -> list[GaugeMetricFamily]:
        # Without this, registering would call collect() and query the database at import time.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count

        from .models import GCRun

        family = GaugeMetricFamily("registryui_gc_runs", "Garbage-collection runs", labels=["kind", "state"])
        for row in GCRun.objects.values("dry_run", "state").annotate(n=Count("id")):
            family.add_metric(["preview" if row["dry_run"] else "run", row["state"]], row["n"])
        yield family


REGISTRY.register(_GCRuns())


class MetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        # The URL name, never the path: repository names would make a label per repository.
        view = match.url_name if match and match.url_name else ("static" if request.path.startswith("/static/")
                                                                 else "unmatched")
        REQUESTS.labels(view, request.method, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(view).observe(time.perf_counter() - started)
        return response
