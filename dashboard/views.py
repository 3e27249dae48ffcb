"""One view per page, each short: the work is in `browse` and the registry client."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from . import browse, services
from .registry.names import check_digest, check_name, check_reference

CATALOG_PAGE_SIZE = 100


def wants_partial(request: HttpRequest) -> bool:
    # A history restore (Back after a pushed URL) swaps the whole body: it needs the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")  # a fragment or the page: never mix them up in a cache
def catalog(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    names = browse.filter_names(services.catalog(), query)
    page = Paginator(names, CATALOG_PAGE_SIZE).get_page(request.GET.get("page"))
    with_counts = request.GET.get("counts") == "1"
    counts = browse.tag_counts(list(page)) if with_counts else None
    context = {"query": query, "page": page, "total": len(names), "with_counts": with_counts,
               "rows": browse.catalog_rows(list(page), counts)}
    template = "catalog.html#repo-list" if wants_partial(request) else "catalog.html"
    return render(request, template, context)


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def repository(request: HttpRequest, name: str) -> HttpResponse:
    check_name(name)
    sort, order = request.GET.get("sort", "name"), request.GET.get("order", "")
    tags, note = browse.repository_tags(name)
    # Names paint at once; details (one HEAD per tag, cached manifests) follow via htmx,
    # or inline when a sort needs them or JavaScript is off (?details=1).
    detailed = bool(request.htmx) or sort in ("created", "size", "image") or request.GET.get("details") == "1"
    view = browse.resolve(name, tags) if detailed else browse.names_only(name, tags)
    rows = browse.sort_rows(view.rows, sort, order)
    context = {"name": name, "view": view, "rows": rows, "sort": sort, "order": browse.effective_order(sort, order),
               "note": note, **browse.next_orders(sort, order)}
    template = "repository.html#tags" if wants_partial(request) else "repository.html"
    return render(request, template, context)


@require_GET
def manifest(request: HttpRequest, name: str, reference: str) -> HttpResponse:
    check_name(name)
    check_reference(reference)
    return render(request, "manifest.html", {"name": name, "page": browse.manifest_page(name, reference)})


@require_GET
def blob(request: HttpRequest, name: str, digest: str) -> HttpResponse:
    check_name(name)
    check_digest(digest)
    return render(request, "blob.html", {"name": name, "page": browse.blob_page(name, digest)})


@require_GET
def blob_download(request: HttpRequest, name: str, digest: str) -> StreamingHttpResponse:
    check_name(name)
    check_digest(digest)
    stream = services.client().open_blob(name, digest)
    response = StreamingHttpResponse(stream, content_type="application/octet-stream")
    if stream.size:
        response["Content-Length"] = str(stream.size)
    filename = f"{name.replace('/', '_')}-{digest.split(':', 1)[1][:12]}.blob"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "error.html", {"title": "Page not found",
                                          "error": "There is no page at this address."}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    # No context processors, no registry call: this page must render when everything else fails.
    from django.template import loader

    return HttpResponse(loader.get_template("500.html").render(), status=500)
