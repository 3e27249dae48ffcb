"""`manage.py sync [--repository NAME ...]`: reconcile the index with the registry, here and now.

The same run as the worker's (recorded as a SyncRun by "manage.py", the same lock, resumed
after a failed run's cursor), printing progress as it goes and a summary at the end. A sync
that waits for its scheduled time is taken over. Exit code 1 when the sync fails or another
one is running.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.index import sync
from dashboard.models import SyncRun


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def counts(run: SyncRun) -> str:
    return (f"{run.repositories_done}/{_plural(run.repositories_total, 'repository', 'repositories')} · "
            f"{_plural(run.tags_seen, 'tag', 'tags')} · "
            f"{_plural(run.heads, 'HEAD', 'HEADs')} · "
            f"{_plural(run.manifests_fetched, 'manifest', 'manifests')} fetched · "
            f"{_plural(run.tags_changed, 'tag changed', 'tags changed')}")


class Command(BaseCommand):
    help = ("Reconcile the index with the registry now: every repository's tags, one HEAD per tag, and only "
            "the manifests the index does not know yet. --repository limits it to the repositories named.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repository", action="append", default=[], metavar="NAME",
                            help="sync only this repository (repeat for more)")

    def handle(self, *args: object, repository: list[str] | None = None, **options: object) -> None:
        names = sorted(set(repository or []))
        shown = {"at": 0.0}

        def on_progress(run: SyncRun) -> None:
            # A line a second at most: 10,000 repositories would otherwise print 150 lines.
            now = time.monotonic()
            if now - shown["at"] >= 1.0 or run.repositories_done == run.repositories_total:
                shown["at"] = now
                self.stdout.write(f"  {counts(run)}")

        try:
            run = sync.run_now(trigger="command", repositories=names or None, on_progress=on_progress)
        except sync.AlreadyRunning as exc:
            raise CommandError(f"not started: {exc}.") from None
        what = ", ".join(names) if names else "the whole registry"
        took = sync.progress(run).elapsed
        self.stdout.write(f"sync #{run.pk} of {what}: {run.state} in {took or 0:.1f} s — {counts(run)}")
        details = run.details or {}
        for name, problem in sorted((details.get("problems") or {}).items()):
            self.stderr.write(f"  {name}: {problem}")
        if details.get("removed_count"):
            removed = _plural(details["removed_count"], "repository", "repositories")
            self.stdout.write(f"  {removed} left the catalog and {'was' if details['removed_count'] == 1 else 'were'} "
                              "dropped from the index")
        if run.state != SyncRun.State.SUCCEEDED:
            raise CommandError(run.error or f"sync #{run.pk} failed", returncode=1)
