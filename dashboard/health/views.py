"""Health: the page, the JSON for orchestrators, liveness, and the dashboard's own /metrics."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import conf, metrics
from ..web import render_page
from . import checks

# -- health --------------------------------------------------------------------------------


@require_GET
def health_page(request: HttpRequest) -> HttpResponse:
    report = checks.run_checks()
    context = {"report": report, "interval": conf.get().health_interval, "compact": request.GET.get("compact") == "1",
               **_headline(report)}
    return render_page(request, "health/health.html", "panels", context)


def _headline(report: checks.Report) -> dict[str, object]:
    """What the front page's one-line strip names: the first check in the worst state (the
    panels' order puts the registry API first, which explains the rest when it fails), and how
    many others need attention too."""
    troubled = [r for r in report.results if r.status in (checks.FAILING, checks.WARNING)]
    worst = next((r for r in troubled if r.status == report.status), None)
    return {"headline": worst, "more": len(troubled) - 1 if worst is not None else 0}


@login_not_required
@require_GET
def health_json(request: HttpRequest) -> JsonResponse:
    """For compose and Kubernetes: 503 while the registry cannot be reached."""
    report = checks.run_checks()
    return JsonResponse(report.as_json(), status=200 if report.registry_reachable else 503)


@login_not_required
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """Liveness: the dashboard process answers. Touches neither the registry nor the database."""
    return JsonResponse({"status": "ok"})


@login_not_required
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = conf.get().metrics_token
    if not token:
        raise Http404("metrics are off")
    given = request.headers.get("Authorization", "")
    if not constant_time_compare(given, f"Bearer {token}"):
        return HttpResponse("a bearer token is needed\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": "Bearer"})
    return HttpResponse(generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST)
