"""Helpers every page uses: partial rendering for htmx, and the error pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def wants_partial(request: HttpRequest) -> bool:
    # A history restore (Back after a pushed URL) swaps the whole body: it needs the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request



def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "error.html", {"title": "Page not found",
                                          "error": "There is no page at this address."}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    # No context processors, no registry call: this page must render when everything else fails.
    from django.template import loader

    return HttpResponse(loader.get_template("500.html").render(), status=500)


