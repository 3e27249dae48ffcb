"""Storage and activity: what the registry holds and what happened to it, read from the index."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from operator import attrgetter
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from .. import conf, remote
from ..models import IndexedRepository, RegistryEvent, SyncRun
from ..ordering import DESC, STORAGE_REPOSITORIES, STORAGE_TAGS
from ..web import page_of, render_page, wants_partial
from . import figures
from . import search as searching

REPOSITORIES_PER_PAGE = 100
TAGS_PER_PAGE = 100
EVENTS_PER_PAGE = 50
# Up to this many pulls in the chart's month are counted in the page itself (well under 100 ms).
PULLS_INLINE = 20_000
PULLS_TTL = 5 * 60


def _sorted(rows: Sequence[Any], column: str, order: str) -> list[Any]:
    key = attrgetter(column)  # each column sorts by the row's attribute of that name
    # Rows with nothing to count (a manifest not indexed yet) stay at the end either way.
    known = [r for r in rows if key(r) is not None]
    unknown = [r for r in rows if key(r) is None]
    # Ties fall back to the name, so a page never reshuffles between two loads.
    known.sort(key=lambda r: getattr(r, "name", getattr(r, "tag", "")))
    return sorted(known, key=key, reverse=order == DESC) + unknown


def _freshness() -> dict[str, object]:
    last = SyncRun.objects.filter(state=SyncRun.State.SUCCEEDED).exclude(finished_at=None).order_by(
        "-finished_at").values_list("finished_at", flat=True).first()
    latest_event = RegistryEvent.objects.filter(source=RegistryEvent.Source.REGISTRY).order_by("-at").values_list(
        "at", flat=True).first()
    return {"last_sync": last, "last_event": latest_event}


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def storage(request: HttpRequest) -> HttpResponse:
    measured = request.GET.get("measure") == "1"
    if measured and wants_partial(request):
        return render(request, "insight/storage.html#disk", {"disk": figures.disk_files(), "measured": True,
                                                             "totals": figures.overview().totals})
    name = request.GET.get("repository", "").strip()
    if name:
        return _repository_storage(request, name[:300])
    overview = figures.overview()
    query = request.GET.get("q", "").strip()[:200]
    rows = [r for r in overview.repositories if query.lower() in r.name.lower()] if query else overview.repositories
    sort, order = STORAGE_REPOSITORIES.parse(request.GET.get("sort", ""), request.GET.get("order", ""))
    page = page_of(_sorted(rows, sort, order), REPOSITORIES_PER_PAGE, request.GET.get("page"))
    biggest = max((r.total for r in overview.repositories), default=0)
    context = {
        "overview": overview, "totals": overview.totals, "page": page, "query": query, "matching": len(rows),
        "sort": sort, "order": order, "following": STORAGE_REPOSITORIES.following(sort, order),
        "rows": [_Proportion.of(r, biggest) for r in page],
        "chart": figures.largest_chart(overview.repositories), "storage_configured": bool(conf.get().storage_path),
        "measured": measured, "disk": figures.disk_files() if measured else None, **_freshness(),
    }
    return render_page(request, "insight/storage.html", "repo-table", context)


@dataclass(frozen=True)
class _Proportion:
    """A row and the widths of its small bar (unique, then shared), out of 100."""

    row: Any
    unique_width: float
    shared_width: float

    @classmethod
    def of(cls, row: Any, biggest: int) -> _Proportion:
        if not biggest or row.total is None:
            return cls(row, 0.0, 0.0)
        return cls(row, round(100 * (row.unique or 0) / biggest, 2), round(100 * (row.shared or 0) / biggest, 2))


def _repository_storage(request: HttpRequest, name: str) -> HttpResponse:
    repo = IndexedRepository.objects.filter(name=name).first()
    version = figures.stamp()
    usage = figures.repository_usage(name, version) if repo else None
    if repo is None or usage is None:
        return render(request, "error.html", {
            "title": "Not in the index",
            "error": f"The index holds nothing for “{name}”: no such repository, or its manifests were removed by "
                     "garbage collection. A sync brings the index up to date."}, status=404)
    tags = figures.tag_usage(repo, version)
    sort, order = STORAGE_TAGS.parse(request.GET.get("sort", ""), request.GET.get("order", ""))
    column = "version_key" if sort == "name" else sort  # by name: in version order, as the index stores it
    page = page_of(_sorted(tags, column, order), TAGS_PER_PAGE, request.GET.get("page"))
    biggest = max((t.total or 0 for t in tags), default=0)
    unreached, unreached_count = figures.unreached(repo, version=version)
    context = {
        "name": name, "usage": usage, "page": page,
        "rows": [_Proportion.of(t, biggest) for t in page],
        "sort": sort, "order": order, "following": STORAGE_TAGS.following(sort, order), "unreached": unreached,
        "unreached_count": unreached_count, "not_indexed": sum(1 for t in tags if t.total is None),
        **_freshness(),
    }
    return render_page(request, "insight/storage.html", "tag-table", context)


# -- activity ------------------------------------------------------------------------------------


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request", "HX-Target")  # the pager's feed, or the filter's body
def activity(request: HttpRequest) -> HttpResponse:
    action = request.GET.get("action", "")
    if action not in RegistryEvent.Action.values:
        action = ""
    repository = request.GET.get("repository", "").strip()[:255]
    actor = request.GET.get("actor", "").strip()[:150]
    filters = {"action": action, "repository": repository, "actor": actor}
    if wants_partial(request) and request.GET.get("chart") == "1":
        return render(request, "insight/activity.html#pulls", _pulls_context(compute=True, **filters))
    try:
        number = min(max(int(request.GET.get("page", "1")), 1), 100_000)
    except ValueError:
        number = 1
    start = (number - 1) * EVENTS_PER_PAGE
    # One more than a page says whether there is an older one, without counting a big table.
    found = list(figures.events(action=action, repository=repository, actor=actor)[start:start + EVENTS_PER_PAGE + 1])
    context: dict[str, object] = {
        "rows": found[:EVENTS_PER_PAGE], "number": number,
        "has_next": len(found) > EVENTS_PER_PAGE, "has_previous": number > 1,
        "action": action, "repository": repository, "actor": actor, "filtered": bool(action or repository or actor),
        "actions": RegistryEvent.Action.choices, "anonymous": figures.ANONYMOUS,
    }
    # The pager swaps the feed alone; the filters swap the charts with it, which they filter too.
    if wants_partial(request) and request.htmx.target == "feed":
        return render(request, "insight/activity.html#feed", context)
    context.update(any_events=bool(found) or RegistryEvent.objects.exists(),
                   stale=figures.stale_tags(repository=repository, actor=actor),
                   **_pulls_context(compute=request.GET.get("chart") == "1", **filters))
    if wants_partial(request):
        return render(request, "insight/activity.html#body", context)
    return render(request, "insight/activity.html", context)


def _pulls_context(*, compute: bool, action: str = "", repository: str = "", actor: str = "") -> dict[str, object]:
    """The pulls chart (of the filter's action, repository and user). A month of pulls on a busy
    registry is hundreds of thousands of rows to count, seconds on SQLite: then the chart is
    counted once every PULLS_TTL and arrives after the page (htmx), and a quiet registry's chart
    is counted fresh, in the page."""
    filters = {"action": action, "repository": repository, "actor": actor}
    scope = hashlib.sha256(repr(sorted(filters.items())).encode()).hexdigest()[:16]
    key = remote.cache_key("activity", f"pulls:{timezone.localdate()}:{timezone.get_current_timezone_name()}:{scope}")
    counted_at, chart = cache.get(key) or (None, None)
    if chart is None:
        since = timezone.now() - timedelta(days=figures.PULL_DAYS)
        counted = figures.events(**{**filters, "action": action or RegistryEvent.Action.PULL}).filter(at__gte=since)
        if counted.order_by().count() <= PULLS_INLINE:
            chart = figures.pulls_per_day(**filters)
        elif compute:
            counted_at, chart = timezone.now(), figures.pulls_per_day(**filters)
            cache.set(key, (counted_at, chart), PULLS_TTL)
    noun = _NOUNS.get(action or RegistryEvent.Action.PULL, ("event", "events"))
    return {"chart": chart, "counted_at": counted_at, "chart_noun": noun}


#: What the chart counts, in one and in many, by the filter's action.
_NOUNS = {"push": ("push", "pushes"), "pull": ("pull", "pulls"), "delete": ("delete", "deletes"),
          "mount": ("mount", "mounts")}


# -- search ------------------------------------------------------------


RESULTS_PER_GROUP = 50


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def search(request: HttpRequest) -> HttpResponse:
    results = searching.search(request.GET.get("q", ""), limit=RESULTS_PER_GROUP)
    # The top bar's box keeps what was searched for.
    context = {"q": results.query, "results": results, "global_query": results.query}
    return render_page(request, "insight/search.html", "results", context)
