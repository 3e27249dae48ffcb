"""A task backend for browser tests: runs each task in a thread of the live server's process,
so the page can watch a garbage collection while it runs (the database worker of production
is another process, which an in-memory test database cannot be shared with)."""

from __future__ import annotations

import threading

from django.db import connection
from django.tasks.backends.immediate import ImmediateBackend


class ThreadBackend(ImmediateBackend):
    def _execute_task(self, task_result) -> None:
        def run() -> None:
            try:
                super(ThreadBackend, self)._execute_task(task_result)
            finally:
                connection.close()

        threading.Thread(target=run, daemon=True).start()
