"""The browsing pages: catalog, repository, manifest, blob (and its download)."""

from __future__ import annotations

import itertools

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from .. import remote
from ..auth import can_delete
from ..index import store
from ..insight import figures
from ..registry.names import check_digest, check_name, check_reference
from ..web import page_of, render_page, wants_partial
from . import indexed, live
from .tags import repository_context

CATALOG_PAGE_SIZE = 100


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")  # a fragment or the page: never mix them up in a cache
def catalog(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    if indexed.index_has_repositories():
        # The index knows every repository and its tag count: no registry call at all.
        totals = indexed.namespace_totals()
        repos = indexed.catalog_repositories(query, live.folded_namespaces(totals))
        page = page_of(repos, CATALOG_PAGE_SIZE, request.GET.get("page"))
        rows = indexed.catalog_entries(page)
        context = {"query": query, "page": page, "total": page.paginator.count, "with_counts": True,
                   "rows": rows, "indexed": True, "freshness": indexed.registry_freshness(),
                   "segments": live.catalog_segments(rows, totals)}
    else:
        every = remote.catalog()
        totals = live.namespace_totals(every)
        names = live.filter_names(every, query, live.folded_namespaces(totals))
        page = page_of(names, CATALOG_PAGE_SIZE, request.GET.get("page"))
        with_counts = request.GET.get("counts") == "1"
        counts = live.tag_counts(list(page)) if with_counts else None  # as the index counts: TagCount
        rows = live.catalog_rows(list(page), counts)
        context = {"query": query, "page": page, "total": len(names), "with_counts": with_counts,
                   "rows": rows, "segments": live.catalog_segments(rows, totals)}
    return render_page(request, "browse/catalog.html", "repo-list", context)


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def repository(request: HttpRequest, name: str) -> HttpResponse:
    check_name(name)
    sort, order = request.GET.get("sort", "name"), request.GET.get("order", "")
    in_index = store.is_indexed(name)
    # Live, names paint at once; details (one GET per tag, cached configs) follow via htmx,
    # or inline when a sort needs them or JavaScript is off (?details=1). The index has them all.
    detailed = (in_index or bool(request.htmx) or sort in ("created", "size", "image")
                or request.GET.get("details") == "1")
    context = repository_context(request, name, sort, order, detailed, params=request.GET, in_index=in_index,
                                 whole_page=not wants_partial(request))
    if wants_partial(request):
        return render(request, "browse/repository.html#tags", context)
    if in_index:
        # The storage page's figure for it, from the same computation (cached until the index changes).
        context["usage"] = figures.repository_usage(name)
    return render(request, "browse/repository.html", context)


@require_GET
def manifest(request: HttpRequest, name: str, reference: str) -> HttpResponse:
    check_name(name)
    check_reference(reference)
    return render(request, "browse/manifest.html", {"name": name, "page": live.manifest_page(name, reference),
                                             "can_delete": can_delete(request)})


@require_GET
def blob(request: HttpRequest, name: str, digest: str) -> HttpResponse:
    check_name(name)
    check_digest(digest)
    return render(request, "browse/blob.html", {"name": name, "page": live.blob_page(name, digest)})


@require_GET
def blob_download(request: HttpRequest, name: str, digest: str) -> StreamingHttpResponse:
    check_name(name)
    check_digest(digest)
    stream = remote.client().open_blob(name, digest)
    # The registry serves every blob as octet-stream: the index knows the media type a manifest
    # gave it; else the blob page's link says it (it only picks an extension from a fixed set);
    # else the first bytes do.
    media_type = indexed.blob_media_type(digest) or request.GET.get("type", "")[:200]
    chunks = iter(stream)
    head = next(chunks, b"")
    response = StreamingHttpResponse(itertools.chain([head], chunks), content_type="application/octet-stream")
    if stream.size:
        response["Content-Length"] = str(stream.size)
    response["Content-Disposition"] = live.content_disposition(live.blob_filename(name, digest, media_type, head))
    return response
