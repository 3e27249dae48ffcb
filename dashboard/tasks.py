"""Background tasks, run by the task worker (`python manage.py db_worker`), never in a request."""

from __future__ import annotations

from django.tasks import task

from . import gc


@task
def run_gc(run_id: int) -> None:
    """Run a queued garbage collection (see dashboard.gc.execute)."""
    gc.execute(run_id)
