"""The sync page: the index's size and freshness, the current sync live, the last ones, the
registry's notifications set-up, and "Sync now" for maintainers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from .. import conf
from ..auth import can_delete
from ..index import events, sync
from ..models import IndexedManifest, IndexedRepository, IndexedTag, RegistryEvent, SyncRun
from ..web import ago, duration, wants_partial

HISTORY = 20
#: Seconds between polls of a run that is running or due, and of one waiting for its time.
POLL_ACTIVE = 1
POLL_WAITING = 30


def _run_context(run: SyncRun | None) -> dict[str, Any]:
    if run is None:
        return {"run": None, "poll": 0}
    progress = sync.progress(run)
    details = run.details or {}
    problems = details.get("problems") or {}
    waiting = run.state == SyncRun.State.QUEUED and run.not_before is not None and run.not_before > timezone.now()
    poll = 0 if run.finished else POLL_WAITING if waiting else POLL_ACTIVE
    return {
        "run": run, "poll": poll, "waiting": waiting, "percent": progress.percent,
        "elapsed": duration(progress.elapsed), "remaining": duration(progress.remaining),
        "problems": sorted(problems.items()), "problem_count": details.get("problem_count", len(problems)),
        "resumed_after": details.get("resumed_after", ""), "removed_count": details.get("removed_count", 0),
    }


def _events_context(request: HttpRequest) -> dict[str, Any]:
    last = RegistryEvent.objects.filter(source=RegistryEvent.Source.REGISTRY).order_by("-received_at").first()
    url = request.build_absolute_uri(reverse("events"))
    # The token is a secret: the snippet names where it goes, never what it is.
    snippet = (
        "notifications:\n"
        "  endpoints:\n"
        "    - name: registryui\n"
        f"      url: {url}\n"
        "      headers:\n"
        "        Authorization: [Bearer <REGISTRYUI_EVENTS_TOKEN>]\n"
        "      timeout: 2s\n"
        "      threshold: 5\n"
        "      backoff: 2s\n"
        "      ignoredmediatypes:\n"
        "        - application/octet-stream\n"
    )
    last_event = last.received_at if last else None
    return {"events_token_set": bool(conf.get().events_token), "last_event": last_event,
            "last_event_ago": ago(last_event), "events_yaml": snippet}


def _next_scheduled(active: SyncRun | None) -> datetime | None:
    if active is not None and active.state == SyncRun.State.QUEUED:
        return active.not_before or active.created_at
    if active is not None:
        return None  # one is running; the next is planned when it ends
    return sync.next_due()


@require_GET
def sync_page(request: HttpRequest) -> HttpResponse:
    active = sync.active_run()
    run = active or SyncRun.objects.first()
    every = sync.interval()
    last_success = sync.last_full_run(succeeded=True)
    context = {
        **_run_context(run), **_events_context(request),
        "can_sync": can_delete(request), "active": active,
        "history": [(r, duration(sync.progress(r).elapsed) if r.finished else "")
                    for r in SyncRun.objects.all()[:HISTORY]],
        "repositories": IndexedRepository.objects.filter(tag_count__gt=0).count(),
        "tags": IndexedTag.objects.count(), "manifests": IndexedManifest.objects.count(),
        "last_success": last_success, "last_success_ago": ago(last_success.finished_at if last_success else None),
        "interval": duration(every) if every else "", "next_at": _next_scheduled(active) if every else None,
        "stale_seconds": int(sync.stale_seconds()),
    }
    return render(request, "sync/sync.html", context)


@require_POST
def sync_start(request: HttpRequest) -> HttpResponse:
    if not can_delete(request):
        raise PermissionDenied("Only maintainers may start a sync.")
    active = sync.active_run()
    if active is not None and active.state == SyncRun.State.RUNNING:
        messages.info(request, f"A sync is already running (#{active.pk}, started "
                               f"{active.started_at:%H:%M:%S}); only one runs at a time.")
        return redirect("sync_run", pk=active.pk)
    run = sync.request_sync(trigger="manual", user=request.user)
    if run.state == SyncRun.State.FAILED:
        messages.error(request, f"Sync #{run.pk} failed: {run.error}")
    return redirect("sync_run", pk=run.pk)


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def sync_run(request: HttpRequest, pk: int) -> HttpResponse:
    sync.active_run()  # marks a run whose worker died as failed before it is shown
    run = get_object_or_404(SyncRun, pk=pk)
    context = {**_run_context(run), "can_sync": can_delete(request), "run_page": True}
    if wants_partial(request):
        response = render(request, "sync/sync.html#status", context)
        response.status_code = 286 if run.finished else 200
        return response
    return render(request, "sync/sync.html", context)


# -- the registry's notifications endpoint ----------------------------------------


def _plain(message: str, status: int, **headers: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8", headers=headers)


def _bearer(request: HttpRequest) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


@csrf_exempt
@login_not_required
@require_POST
def receive(request: HttpRequest) -> HttpResponse:
    """Store the envelope's events and answer at once: the registry holds every later event
    until this one gets a 2xx, and resends it forever. The index work happens in the worker."""
    token = conf.get().events_token
    if not token:
        return _plain("registry events are off: set REGISTRYUI_EVENTS_TOKEN, and send it from the registry's "
                      "notifications.endpoints[].headers as “Authorization: Bearer <token>”", 503)
    if not constant_time_compare(_bearer(request), token):
        return _plain("a bearer token is needed (REGISTRYUI_EVENTS_TOKEN)", 401, **{"WWW-Authenticate": "Bearer"})
    media_type = request.content_type.lower()
    if media_type not in events.ENVELOPE_TYPES:
        return _plain(f"expected an event envelope ({', '.join(sorted(events.ENVELOPE_TYPES))})", 415)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    too_big = _plain(f"an envelope may have at most {events.MAX_BODY} bytes", 413)
    if declared > events.MAX_BODY:
        return too_big
    body = request.read(events.MAX_BODY + 1)
    if len(body) > events.MAX_BODY:
        return too_big
    try:
        received = events.receive(events.parse_envelope(body))
    except events.EnvelopeError as exc:
        return _plain(f"not an event envelope: {exc}", 400)
    return JsonResponse(received.as_dict())
