"""The global search: repositories, tags, digests and labels, answered by the index alone."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from .index import queries
from .views import wants_partial

RESULTS_PER_GROUP = 50


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def search(request: HttpRequest) -> HttpResponse:
    results = queries.search(request.GET.get("q", ""), limit=RESULTS_PER_GROUP)
    # The top bar's box keeps what was searched for.
    context = {"q": results.query, "results": results, "global_query": results.query}
    return render(request, "search.html#results" if wants_partial(request) else "search.html", context)
