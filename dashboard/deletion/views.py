"""Untag, delete by digest, bulk untag; what was deleted, and restore."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from .. import remote
from ..auth import can_delete, require_delete
from ..browse.tags import delete_context, repository_context
from ..models import Deletion
from ..ordering import version_key
from ..registry.errors import NotRestorable, RegistryError
from ..registry.names import check_digest, check_name, check_tag
from ..web import page_of
from . import actions, restorable

# -- deleting ------------------------------------------------------------------------------


def _after_change(request: HttpRequest, name: str, results: list[actions.TagResult] | None = None) -> HttpResponse:
    """htmx: the refreshed tag table, the confirmation region cleared (or per-tag results), and
    the messages; without JavaScript: back to the repository page."""
    if not request.htmx:
        return redirect("repository", name=name)
    # Keep the order the user was looking at: htmx says which page the request came from.
    query = parse_qs(urlsplit(request.htmx.current_url or "").query)
    context = repository_context(request, name, query.get("sort", ["name"])[0], query.get("order", [""])[0])
    context.update(results=results, oob=True)
    html = (render_to_string("browse/repository.html#tags", context, request)
            + render_to_string("browse/repository.html#confirm", context, request)
            + render_to_string("base.html#messages", context, request))
    return HttpResponse(html)


@require_http_methods(["GET", "POST"])
def tag_delete(request: HttpRequest, name: str, tag: str) -> HttpResponse:
    check_name(name)
    check_tag(tag)
    if request.method == "POST":
        require_delete(request)
        result = actions.untag(request.user, name, tag, request.POST.get("digest", ""))
        if result.ok:
            messages.success(request, f"{name}: untagged {tag}")
        else:
            messages.error(request, f"{name}:{tag}: {result.message}")
        return _after_change(request, name)
    digest = remote.client().head_manifest(name, tag).digest
    context = {"name": name, "tag": tag, "digest": digest, **delete_context(request, name),
               "siblings": [t for t in actions.tags_of(name, digest) if t != tag]}
    template = "deletion/confirm_untag.html"
    return render(request, f"{template}#confirm" if request.htmx else template, context)


@require_http_methods(["GET", "POST"])
def bulk_untag(request: HttpRequest, name: str) -> HttpResponse:
    check_name(name)
    data = request.POST if request.method == "POST" else request.GET
    tags = sorted({t for t in data.getlist("tag") if t}, key=version_key)
    for tag in tags:
        check_tag(tag)
    if request.method == "POST":
        require_delete(request)
        results = actions.untag_many(request.user, name, tags)
        done = [r.tag for r in results if r.ok]
        if done:
            messages.success(request, f"{name}: untagged {', '.join(done)}")
        for r in results:
            if not r.ok:
                messages.error(request, f"{name}:{r.tag}: {r.message}")
        return _after_change(request, name, results)
    context = {"name": name, "tags": tags, **delete_context(request, name)}
    template = "deletion/confirm_bulk.html"
    return render(request, f"{template}#confirm" if request.htmx else template, context)


@require_http_methods(["GET", "POST"])
def image_delete(request: HttpRequest, name: str, digest: str) -> HttpResponse:
    check_name(name)
    check_digest(digest)
    changed, problem, status = False, "", 200
    if request.method == "POST":
        require_delete(request)
        attachments = _confirmed_attachments(request) if request.POST.get("with_attachments") else []
        try:
            actions.delete_image(request.user, name, digest, request.POST.getlist("tag"))
        except actions.TagsChanged:
            changed, status = True, 409
        except RegistryError as exc:
            problem, status = str(exc), exc.http_status
        else:
            confirmed = request.POST.getlist("tag")
            gone = f" and its tag{pluralize(len(confirmed))} {', '.join(confirmed)}" if confirmed else ""
            # delete_image read it back: every one of them answers 404 now.
            messages.success(request, f"{name}: deleted image {digest[:19]}…{gone} — the registry no longer "
                                      f"serves {'them' if confirmed else 'it'}")
            if attachments:
                _remove_attachments(request, name, digest, attachments)
            return HttpResponseClientRedirect(reverse("repository", args=[name])) if request.htmx \
                else redirect("repository", name=name)
    manifest = remote.manifest(name, digest)
    current = actions.tag_digests(name)
    context = {"name": name, "manifest": manifest, "tags": actions.tags_of(name, digest, current),
               "attachments": actions.attachments_of(name, digest, current), "changed": changed,
               "problem": problem, **delete_context(request, name)}
    return render(request, "deletion/confirm_delete.html", context, status=status)


def _confirmed_attachments(request: HttpRequest) -> list[tuple[str, str]]:
    """The attachments the user saw on the confirmation ("tag@digest"), checked before anything
    is deleted."""
    confirmed: list[tuple[str, str]] = []
    for value in request.POST.getlist("attachment"):
        tag, _, at = value.rpartition("@")
        confirmed.append((check_tag(tag), check_digest(at)))
    return confirmed


def _remove_attachments(request: HttpRequest, name: str, digest: str, confirmed: list[tuple[str, str]]) -> None:
    """Remove the attachments the user confirmed with the image: each result as a message."""
    results = actions.remove_attachments(request.user, name, digest, confirmed)
    done = [r.tag for r in results if r.ok]
    if done:
        messages.success(request, f"{name}: removed {len(done)} attachment{pluralize(len(done))} with it: "
                                  f"{', '.join(done)}")
    for r in results:
        if not r.ok:
            messages.error(request, f"{name}:{r.tag}: {r.message}")


@require_GET
def deleted(request: HttpRequest) -> HttpResponse:
    require_delete(request)
    records = Deletion.objects.filter(registry=remote.registry_url())
    page = page_of(records, 50, request.GET.get("page"))
    states = restorable.states(list(page.object_list))
    rows = [(record, states.get(record.pk)) for record in page.object_list]
    return render(request, "deletion/deleted.html", {"page": page, "rows": rows, "can_delete": can_delete(request)})


@require_POST
def restore(request: HttpRequest, pk: int) -> HttpResponse:
    require_delete(request)
    record = get_object_or_404(Deletion, pk=pk, registry=remote.registry_url())
    if record.restored_at:
        messages.info(request, f"{record.repository}: already restored on {record.restored_at:%Y-%m-%d %H:%M}")
        return redirect("deleted")
    try:
        done = actions.restore(request.user, record)
    except NotRestorable as exc:
        messages.error(request, str(exc))
    except RegistryError as exc:
        messages.error(request, f"{record.repository}: the restore failed — {exc}")
    else:
        what = ", ".join(done.tags) or done.digest[:19] + "…"
        messages.success(request, f"{record.repository}: restored {what} — the registry serves "
                                  f"{'them' if done.tags else 'it'} again, with every blob it needs")
    return redirect("deleted")
