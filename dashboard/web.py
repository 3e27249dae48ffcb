"""Helpers every page uses: partial rendering for htmx, pages of a list, "… ago" and durations, the error pages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import loader
from django.utils import timezone


def wants_partial(request: HttpRequest) -> bool:
    # A history restore (Back after a pushed URL) swaps the whole body: it needs the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


def render_page(
    request: HttpRequest, template: str, partial: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """The page, or for htmx only its `partial` (a partialdef of the template)."""
    return render(request, f"{template}#{partial}" if wants_partial(request) else template, context, status=status)


def error_page(
    request: HttpRequest,
    title: str,
    error: Exception | str,
    status: int,
    repository: str = "",
    *,
    no_registry: bool = False,
) -> HttpResponse:
    """What went wrong, with the way on (back to `repository`, when there is one to go back to;
    `no_registry`: nothing answers, so suggest `make demo` to someone who has no registry yet)."""
    context = {"title": title, "error": error, "repository": repository, "no_registry": no_registry}
    return render_page(request, "error.html", "message", context, status)


def page_of[T](items: Sequence[T], per_page: int, number: object) -> Page[T]:
    """One page of `items`; a missing, malformed or out-of-range number gives the first or last page."""
    return Paginator(items, per_page).get_page(number)


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """“12 s ago”, “4 min ago”, “3 h ago”, “2 days ago”: short enough for a status line."""
    if when is None:
        return ""
    seconds = int(((now or timezone.now()) - when).total_seconds())
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    days = seconds // 86400
    return f"{days} day{'s' if days != 1 else ''} ago"


def duration(seconds: float | None) -> str:
    """“4 s”, “2 min 05 s”, “1 h 03 min”: precise while short, rounded when long."""
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(
        request, "error.html", {"title": "Page not found", "error": "There is no page at this address."}, status=404
    )


def server_error(request: HttpRequest) -> HttpResponse:
    # No context processors, no registry call: this page must render when everything else fails.
    return HttpResponse(loader.get_template("500.html").render(), status=500)
