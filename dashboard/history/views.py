"""A tag's history of digests and the roll back: thin views over dashboard.history.rollback."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from ..auth import can_delete, client_address
from ..registry.errors import InvalidReference, RegistryError
from ..registry.names import check_digest, check_name, check_tag
from ..templatetags.registryui import short_digest
from ..web import error_page, render_page
from . import rollback


@require_GET
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
def tag_history(request: HttpRequest, name: str, tag: str) -> HttpResponse:
    check_name(name)
    check_tag(tag)
    context = {"name": name, "tag": tag, "history": rollback.history(name, tag, request.GET.get("page")),
               "can_roll_back": can_delete(request)}
    return render_page(request, "history/tag_history.html", "history", context)


@require_http_methods(["GET", "POST"])
def tag_rollback(request: HttpRequest, name: str, tag: str) -> HttpResponse:
    check_name(name)
    check_tag(tag)
    data = request.POST if request.method == "POST" else request.GET
    to, seen = data.get("to", ""), data.get("from", "")
    # A bad digest is a bad request, not a missing page: nothing was looked up.
    # `from` is empty when the tag did not exist as the user saw it.
    for value in [to] + ([seen] if request.method == "POST" and seen else []):
        try:
            check_digest(value)
        except InvalidReference as exc:
            return error_page(request, "Not a valid digest", exc, 400)
    problem, status = "", 200
    if request.method == "POST":
        if not can_delete(request):
            raise PermissionDenied("Only maintainers may roll a tag back.")
        try:
            record = rollback.roll_back(request.user, name, tag, to=to, expected=seen,
                                        address=client_address(request))
        except rollback.NotInHistory:
            return _not_in_history(request, name, tag, to)
        except (rollback.TagMoved, rollback.TargetGone) as exc:
            problem, status = str(exc), exc.status
        except RegistryError as exc:
            problem = f"The registry did not take the change: {exc}"
            status = exc.http_status
        else:
            if record is None:
                messages.info(request, f"{name}:{tag} already points at {short_digest(to)}; nothing to do")
            else:
                # record.to_digest is what the registry served when the tag was read back.
                was = short_digest(record.from_digest) if record.from_digest else "absent"
                messages.success(request, f"{name}:{tag} rolled back: it now points at "
                                          f"{short_digest(record.to_digest)} (was {was}), read back from the registry")
            url = reverse("tag_history", args=[name, tag])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    try:
        plan = rollback.plan(name, tag, to)
    except rollback.NotInHistory:
        return _not_in_history(request, name, tag, to)
    context = {"name": name, "tag": tag, "plan": plan, "problem": problem, "can_roll_back": can_delete(request)}
    return render_page(request, "history/confirm_rollback.html", "confirm", context, status)


def _not_in_history(request: HttpRequest, name: str, tag: str, to: str) -> HttpResponse:
    return error_page(request, "Not in this tag’s history",
                      f"{to} is not a digest “{tag}” of {name} pointed at before, as far as the dashboard’s history "
                      "knows: a roll back only goes back to one of those.", 404)
