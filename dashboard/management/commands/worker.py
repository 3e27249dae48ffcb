"""`manage.py worker`: the task worker (django_tasks_db's `db_worker`, with the same options) that
starts the index's sync schedule itself.

Before it takes its first task it makes sure a sync is queued or running when
REGISTRYUI_SYNC_INTERVAL asks for one (`index.sync.ensure_scheduled`): now when the index was
never synced or its last full sync is older than the interval, else for one interval after it.
Without this the first sync waited for someone to open a page. The sync's lock row makes it
once, however many workers start (or restart): a second one finds the run queued or running
and adds nothing.

It also applies the registry's events in a thread of its own, every `--interval`: the worker
runs one task at a time, and a push must not wait behind a full sync or a garbage collection
(minutes on a big registry) for its tag to show. The events' own task (`apply_events`, which
`db_worker` alone still runs) then finds them applied. Several processes or threads applying
events at once is safe: each event is claimed by one (index.events).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from django.db import close_old_connections
from django.utils import timezone
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from django_tasks_db.management.commands.db_worker import Command as DbWorker

from dashboard.index import events, sync
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


def apply_events_meanwhile(interval: float, stop: threading.Event) -> None:
    """The events thread: apply new push and delete events every `interval` seconds until `stop`."""
    while not stop.wait(interval):
        try:
            close_old_connections()
            if events.fresh_pending():
                events.apply_pending()
        except Exception:  # the next look tries again; the events' own task is still queued
            log.exception("applying registry events beside the worker's task failed")


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
        # A batch worker runs what is queued and stops: the events' own tasks are among it. With
        # --reload the first process only restarts the second, which does the work.
        reloader = options.get("reload") and os.environ.get(DJANGO_AUTORELOAD_ENV) != "true"
        stop = threading.Event()
        if not options.get("batch") and not reloader:
            interval = max(0.1, float(options.get("interval") or 1))
            threading.Thread(
                target=apply_events_meanwhile, args=(interval, stop), name="registry-events", daemon=True
            ).start()
        try:
            super().handle(*args, **options)
        finally:
            stop.set()
