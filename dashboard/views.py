"""One view per page, each short: the work is in `browse` and the registry client."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import browse, deleting, gc, health, metrics, services
from .index import queries, store
from .auth import can_delete
from .models import Deletion, GCRun
from .registry.errors import NotRestorable, RegistryError
from .registry.names import check_digest, check_name, check_reference, check_tag

CATALOG_PAGE_SIZE = 100
TAG_PAGE_SIZE = 100


def wants_partial(request: HttpRequest) -> bool:
    # A history restore (Back after a pushed URL) swaps the whole body: it needs the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")  # a fragment or the page: never mix them up in a cache
def catalog(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    if queries.index_has_repositories():
        # The index knows every repository and its tag count: no registry call at all.
        page = Paginator(queries.catalog_repositories(query), CATALOG_PAGE_SIZE).get_page(request.GET.get("page"))
        context = {"query": query, "page": page, "total": page.paginator.count, "with_counts": True,
                   "rows": queries.catalog_entries(page), "indexed": True,
                   "freshness": queries.registry_freshness()}
    else:
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
    indexed = store.is_indexed(name)
    # Live, names paint at once; details (one GET per tag, cached configs) follow via htmx,
    # or inline when a sort needs them or JavaScript is off (?details=1). The index has them all.
    detailed = (indexed or bool(request.htmx) or sort in ("created", "size", "image")
                or request.GET.get("details") == "1")
    context = _repository_context(request, name, sort, order, detailed, params=request.GET, indexed=indexed)
    if wants_partial(request):
        return render(request, "repository.html#tags", context)
    if indexed:
        context["facets"] = queries.facets(name)
    return render(request, "repository.html", context)


@require_GET
def manifest(request: HttpRequest, name: str, reference: str) -> HttpResponse:
    check_name(name)
    check_reference(reference)
    return render(request, "manifest.html", {"name": name, "page": browse.manifest_page(name, reference),
                                             "can_delete": can_delete(request)})


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


# -- deleting ------------------------------------------------------------------------------


def _require_delete(request: HttpRequest) -> None:
    if not can_delete(request):
        raise PermissionDenied("Only maintainers may delete or restore.")


def _after_change(request: HttpRequest, name: str, results: list[deleting.TagResult] | None = None) -> HttpResponse:
    """htmx: the refreshed tag table, the confirmation region cleared (or per-tag results), and
    the messages; without JavaScript: back to the repository page."""
    if not request.htmx:
        return redirect("repository", name=name)
    # Keep the order the user was looking at: htmx says which page the request came from.
    query = parse_qs(urlsplit(request.htmx.current_url or "").query)
    context = _repository_context(request, name, query.get("sort", ["name"])[0], query.get("order", [""])[0])
    context.update(results=results, oob=True)
    html = (render_to_string("repository.html#tags", context, request)
            + render_to_string("repository.html#confirm", context, request)
            + render_to_string("base.html#messages", context, request))
    return HttpResponse(html)


def _repository_context(request: HttpRequest, name: str, sort: str = "name", order: str = "",
                        detailed: bool = True, params: QueryDict | None = None,
                        indexed: bool | None = None) -> dict[str, object]:
    """The tag table's context: from the index when a sync has read the repository, else live.
    `params` (filters, page) default to those of the page the request came from, so a table
    re-rendered after an untag keeps what the user was looking at, and so do its links."""
    if params is None:
        origin = urlsplit(request.htmx.current_url or "").query if request.htmx else ""
        params = QueryDict(origin) if request.method != "GET" else request.GET
    if store.is_indexed(name) if indexed is None else indexed:
        page = queries.tag_page(name, sort=sort, order=order, q=params.get("q", ""),
                                platform=params.get("platform", ""), kind=params.get("kind", ""),
                                page=params.get("page", 1), per_page=TAG_PAGE_SIZE)
        note = "" if page.tag_count else ("This repository has no tags: every tag was deleted. "
                                          "Its data stays until garbage collection.")
        return {"name": name, "indexed": True, "view": page, "tagpage": page, "rows": page.rows, "tagquery": params,
                "sort": page.sort, "order": page.order, "note": note, "freshness": queries.freshness(name),
                **queries.next_orders(page.sort, page.order), **_delete_context(request, name)}
    tags, note = browse.repository_tags(name)
    view = browse.resolve(name, tags) if detailed else browse.names_only(name, tags)
    return {"name": name, "view": view, "rows": browse.sort_rows(view.rows, sort, order), "sort": sort,
            "order": browse.effective_order(sort, order), "note": note, "tagquery": params,
            **browse.next_orders(sort, order), **_delete_context(request, name, probe=detailed)}


def _delete_context(request: HttpRequest, name: str, probe: bool = True) -> dict[str, object]:
    """May this user delete here, and does the registry allow it (with the reason if not)."""
    allowed = can_delete(request)
    return {"can_delete": allowed, "deletable": allowed and probe,
            "support": deleting.delete_support(name) if allowed and probe else None}


@require_http_methods(["GET", "POST"])
def tag_delete(request: HttpRequest, name: str, tag: str) -> HttpResponse:
    check_name(name)
    check_tag(tag)
    if request.method == "POST":
        _require_delete(request)
        result = deleting.untag(request.user, name, tag, request.POST.get("digest", ""))
        if result.ok:
            messages.success(request, f"{name}: untagged {tag}")
        else:
            messages.error(request, f"{name}:{tag}: {result.message}")
        return _after_change(request, name)
    digest = services.client().head_manifest(name, tag).digest
    context = {"name": name, "tag": tag, "digest": digest, **_delete_context(request, name),
               "siblings": [t for t in deleting.tags_of(name, digest) if t != tag]}
    return render(request, "confirm_untag.html#confirm" if request.htmx else "confirm_untag.html", context)


@require_http_methods(["GET", "POST"])
def bulk_untag(request: HttpRequest, name: str) -> HttpResponse:
    check_name(name)
    data = request.POST if request.method == "POST" else request.GET
    tags = sorted(set(t for t in data.getlist("tag") if t), key=browse.version_key)
    for tag in tags:
        check_tag(tag)
    if request.method == "POST":
        _require_delete(request)
        results = deleting.untag_many(request.user, name, tags)
        done = [r.tag for r in results if r.ok]
        if done:
            messages.success(request, f"{name}: untagged {', '.join(done)}")
        for r in results:
            if not r.ok:
                messages.error(request, f"{name}:{r.tag}: {r.message}")
        return _after_change(request, name, results)
    context = {"name": name, "tags": tags, **_delete_context(request, name)}
    return render(request, "confirm_bulk.html#confirm" if request.htmx else "confirm_bulk.html", context)


@require_http_methods(["GET", "POST"])
def image_delete(request: HttpRequest, name: str, digest: str) -> HttpResponse:
    check_name(name)
    check_digest(digest)
    changed = False
    if request.method == "POST":
        _require_delete(request)
        try:
            deleting.delete_image(request.user, name, digest, request.POST.getlist("tag"))
        except deleting.TagsChanged:
            changed = True
        else:
            messages.success(request, f"{name}: deleted image {digest[:19]}…")
            return HttpResponseClientRedirect(reverse("repository", args=[name])) if request.htmx \
                else redirect("repository", name=name)
    manifest = services.manifest(name, digest)
    context = {"name": name, "manifest": manifest, "tags": deleting.tags_of(name, digest), "changed": changed,
               **_delete_context(request, name)}
    return render(request, "confirm_delete.html", context, status=409 if changed else 200)


@require_GET
def deleted(request: HttpRequest) -> HttpResponse:
    _require_delete(request)
    records = Deletion.objects.filter(registry=services.registry_url())
    page = Paginator(records, 50).get_page(request.GET.get("page"))
    return render(request, "deleted.html", {"page": page, "can_delete": can_delete(request)})


@require_POST
def restore(request: HttpRequest, pk: int) -> HttpResponse:
    _require_delete(request)
    record = get_object_or_404(Deletion, pk=pk, registry=services.registry_url())
    if record.restored_at:
        messages.info(request, f"{record.repository}: already restored on {record.restored_at:%Y-%m-%d %H:%M}")
    else:
        try:
            deleting.restore(request.user, record)
        except NotRestorable as exc:
            messages.error(request, f"{record.repository}: cannot restore — {exc}")
        except RegistryError as exc:
            messages.error(request, f"{record.repository}: the restore failed — {exc}")
        else:
            what = ", ".join(record.tags) or record.digest[:19]
            messages.success(request, f"{record.repository}: restored {what}")
    return redirect("deleted")


# -- garbage collection ----------------------------------------------------------------------


@require_GET
def gc_page(request: HttpRequest) -> HttpResponse:
    _require_delete(request)
    ok, reason = gc.configured()
    active = gc.active_run()
    preview = GCRun.objects.filter(dry_run=True, state=GCRun.State.SUCCEEDED).first()
    context = {"configured": ok, "reason": reason, "active": active, "preview": preview,
               "refusal": gc.refusal(preview) if preview else "", "history": GCRun.objects.all()[:20],
               "hooks": _gc_hooks()}
    return render(request, "gc.html", context)


@require_POST
def gc_start(request: HttpRequest) -> HttpResponse:
    _require_delete(request)
    dry_run = request.POST.get("mode") != "run"
    preview = None
    delete_untagged = request.POST.get("delete_untagged") == "on"
    if not dry_run:
        # A real run is only ever the one a preview showed, with that preview's options.
        preview = get_object_or_404(GCRun, pk=request.POST.get("preview") or 0, dry_run=True,
                                    state=GCRun.State.SUCCEEDED)
        delete_untagged = preview.delete_untagged
    try:
        run = gc.start(request.user, dry_run=dry_run, delete_untagged=delete_untagged, preview=preview)
    except gc.AlreadyRunning as exc:
        messages.error(request, f"A garbage collection is already running (started by {exc.run.username} "
                                f"at {exc.run.created_at:%H:%M:%S}); only one runs at a time.")
        return redirect("gc_run", pk=exc.run.pk)
    except gc.Refused as exc:
        messages.error(request, f"Not started: {exc}")
        return redirect("gc")
    return redirect("gc_run", pk=run.pk)


@require_GET
def gc_run(request: HttpRequest, pk: int) -> HttpResponse:
    _require_delete(request)
    gc.active_run()  # marks a run whose worker died as failed before it is shown
    run = get_object_or_404(GCRun, pk=pk)
    context = {"run": run, "hooks": _gc_hooks(), "refusal": gc.refusal(run) if run.dry_run else ""}
    if wants_partial(request):
        response = render(request, "gc_run.html#status", context)
        # 286 tells htmx to stop polling: the run is over.
        response.status_code = 286 if run.finished else 200
        return response
    return render(request, "gc_run.html", context)


def _gc_hooks() -> dict[str, str]:
    cfg = settings.REGISTRYUI
    return {"before": cfg.get("GC_BEFORE_COMMAND", ""), "after": cfg.get("GC_AFTER_COMMAND", "")}


# -- health --------------------------------------------------------------------------------


@require_GET
def health_page(request: HttpRequest) -> HttpResponse:
    context = {"report": health.run_checks(), "interval": settings.REGISTRYUI["HEALTH_INTERVAL"],
               "compact": request.GET.get("compact") == "1"}
    return render(request, "health.html#panels" if wants_partial(request) else "health.html", context)


@login_not_required
@require_GET
def health_json(request: HttpRequest) -> JsonResponse:
    """For compose and Kubernetes: 503 while the registry cannot be reached."""
    report = health.run_checks()
    return JsonResponse(report.as_json(), status=200 if report.registry_reachable else 503)


@login_not_required
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """Liveness: the dashboard process answers. Touches neither the registry nor the database."""
    return JsonResponse({"status": "ok"})


@login_not_required
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.REGISTRYUI["METRICS_TOKEN"]
    if not token:
        raise Http404("metrics are off")
    given = request.headers.get("Authorization", "")
    if not constant_time_compare(given, f"Bearer {token}"):
        return HttpResponse("a bearer token is needed\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": "Bearer"})
    return HttpResponse(generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST)
