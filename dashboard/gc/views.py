"""The garbage collection pages: preview, run, progress."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from .. import conf
from ..auth import require_delete
from ..models import GCRun
from ..web import wants_partial
from . import runner, stale


@require_GET
def gc_page(request: HttpRequest) -> HttpResponse:
    require_delete(request)
    ok, reason = runner.configured()
    active = runner.active_run()
    preview = GCRun.objects.filter(dry_run=True, state=GCRun.State.SUCCEEDED).first()
    history = list(GCRun.objects.all()[:20])
    standings = runner.standings([*history, *([preview] if preview else [])])
    context = {"configured": ok, "reason": reason, "active": active, "preview": preview,
               "offer": standings.get(preview.pk) if preview else None,
               "history": [(run, standings[run.pk]) for run in history], "hooks": _gc_hooks(),
               "stale_runs": stale.pending(), "diagnosis": stale.DIAGNOSIS}
    return render(request, "gc/gc.html", context)


@require_POST
def gc_start(request: HttpRequest) -> HttpResponse:
    require_delete(request)
    dry_run = request.POST.get("mode") != "run"
    preview = None
    delete_untagged = request.POST.get("delete_untagged") == "on"
    if not dry_run:
        # A real run is only ever the one a preview showed, with that preview's options.
        preview = get_object_or_404(GCRun, pk=request.POST.get("preview") or 0, dry_run=True,
                                    state=GCRun.State.SUCCEEDED)
        delete_untagged = preview.delete_untagged
    try:
        run = runner.start(request.user, dry_run=dry_run, delete_untagged=delete_untagged, preview=preview)
    except runner.AlreadyRunning as exc:
        messages.error(request, f"A garbage collection is already running (started by {exc.run.username} "
                                f"at {exc.run.created_at:%H:%M:%S}); only one runs at a time.")
        return redirect("gc_run", pk=exc.run.pk)
    except runner.Refused as exc:
        messages.error(request, f"Not started: {exc}")
        return redirect("gc")
    return redirect("gc_run", pk=run.pk)


@require_GET
def gc_run(request: HttpRequest, pk: int) -> HttpResponse:
    require_delete(request)
    runner.active_run()  # marks a run whose worker died as failed before it is shown
    run = get_object_or_404(GCRun, pk=pk)
    context = {"run": run, "hooks": _gc_hooks(), "standing": runner.standing(run),
               # Re-checked on every look: the warning goes once the registry no longer serves them.
               "stale_cache": stale.is_pending(run) and stale.recheck(run), "diagnosis": stale.DIAGNOSIS}
    if wants_partial(request):
        response = render(request, "gc/gc_run.html#status", context)
        # 286 tells htmx to stop polling: the run is over.
        response.status_code = 286 if run.finished else 200
        return response
    return render(request, "gc/gc_run.html", context)


def _gc_hooks() -> dict[str, str]:
    cfg = conf.get()
    return {"before": cfg.gc_before_command, "after": cfg.gc_after_command}
