"""/-/events/: the registry's notifications endpoint (a machine, not a person, calls it)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .index import events


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
    token = settings.REGISTRYUI.get("EVENTS_TOKEN", "")
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
