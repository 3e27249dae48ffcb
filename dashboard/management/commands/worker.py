"""`manage.py worker`: the task worker (django_tasks_db's `db_worker`, with the same options) that
starts the index's sync schedule itself.

Before it takes its first task it makes sure a sync is queued or running when
REGISTRYUI_SYNC_INTERVAL asks for one (`index.sync.ensure_scheduled`): now when the index was
never synced or its last full sync is older than the interval, else for one interval after it.
Without this the first sync waited for someone to open a page. The sync's lock row makes it
once, however many workers start (or restart): a second one finds the run queued or running
and adds nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Command as DbWorker

from dashboard.index import sync
from dashboard.models import SyncRun

log = logging.getLogger(__name__)


def describe(run: SyncRun | None) -> str:
    """One line for the worker's output: what the schedule holds now."""
    if run is None:
        return "sync schedule: off (REGISTRYUI_SYNC_INTERVAL is 0); the sync page or `manage.py sync` fills the index"
    if run.state == SyncRun.State.RUNNING:
        return f"sync schedule: sync #{run.pk} is running"
    if run.state == SyncRun.State.QUEUED:
        if run.not_before is not None and run.not_before > timezone.now():
            when = timezone.localtime(run.not_before).strftime("%Y-%m-%d %H:%M:%S %Z")
            return f"sync schedule: sync #{run.pk} is queued for {when}"
        return f"sync schedule: sync #{run.pk} is queued to run now"
    return f"sync schedule: sync #{run.pk} {run.state}"


class Command(DbWorker):
    help = (
        "Run the task worker (garbage collection, syncs, registry events): db_worker, after queueing the "
        "index's scheduled sync when none is queued or running (the first one at once)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = sync.ensure_scheduled()
        except Exception as exc:  # the worker still starts: the next page or finished sync schedules one
            log.exception("could not schedule the index's sync at the worker's start")
            self.stderr.write(f"sync schedule: not queued ({type(exc).__name__}: {exc}); the next page view does it")
        else:
            if options.get("verbosity", 1):
                self.stdout.write(describe(run))
        super().handle(*args, **options)
