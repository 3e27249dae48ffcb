"""Background tasks, run by the task worker (`python manage.py db_worker`), never in a request."""

from __future__ import annotations

from django.tasks import task

from . import gc


@task
def run_gc(run_id: int) -> None:
    """Run a queued garbage collection (see dashboard.gc.execute)."""
    gc.execute(run_id)


@task
def apply_events() -> int:
    """Apply the registry events the endpoint stored (see dashboard.index.events.apply_pending)."""
    from .index import events

    return events.apply_pending()


@task
def run_sync(run_id: int) -> None:
    """Reconcile the index with the registry (see dashboard.index.sync.execute)."""
    from .index import sync

    sync.execute(run_id)
