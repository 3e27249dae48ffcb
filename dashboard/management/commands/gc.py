"""`manage.py gc [--dry-run] [--delete-untagged]`: garbage collection from a shell or cron.

The same run as the dashboard's (recorded as a GCRun by "manage.py", the same lock, the same
hooks and safety check), but synchronous, with the output printed as it comes. Exit code 1
when the run fails, is refused, or another run holds the lock.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import filesizeformat

from dashboard.gc import runner, stale
from dashboard.models import GCRun


class Command(BaseCommand):
    help = ("Run the registry's garbage collection (REGISTRYUI_GC_COMMAND) now, here, with the dashboard's "
            "lock, hooks and safety checks; --dry-run only reports what it would delete.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="delete nothing; report what would be deleted")
        parser.add_argument("--delete-untagged", action="store_true",
                            help="also delete manifests no tag points at (refused when that would delete the "
                                 "platform manifests of a tagged multi-arch image, which registry 2.8 does)")

    def handle(self, *args: object, dry_run: bool = False, delete_untagged: bool = False, **options: object) -> None:
        ok, reason = runner.configured()
        if not ok:
            raise CommandError(reason)
        try:
            run = runner.create_run(None, username="manage.py", dry_run=dry_run, delete_untagged=delete_untagged)
        except runner.AlreadyRunning as exc:
            raise CommandError(f"not started: {exc}.") from None
        kind = "preview (dry run)" if dry_run else "garbage collection"
        self.stderr.write(f"registryui: {kind} #{run.pk} started")
        run = runner.execute(run.pk, on_line=self.stdout.write)
        if run.exit_code is not None:  # the command ran: say what it found or did
            self.stdout.write(summary(run))
        if stale.is_pending(run):
            self.stderr.write(f"registryui: warning: {stale.DIAGNOSIS}")
        if run.state != run.State.SUCCEEDED:
            raise CommandError(run.error or f"{kind} #{run.pk} failed", returncode=1)


def _plural(n: int | None, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(run: GCRun) -> str:
    """One line: what a preview would delete, or what a run deleted and freed."""
    if run.dry_run:
        size = f" ({filesizeformat(run.bytes_eligible)})" if run.bytes_eligible is not None else ""
        text = f"preview #{run.pk}: {run.marked} in use, {_plural(run.eligible_blobs, 'blob')}{size}"
        if run.delete_untagged:
            text += f" and {_plural(run.eligible_manifests, 'manifest')}"
        return text + " would be deleted"
    text = f"garbage collection #{run.pk}: deleted {_plural(run.deleted_blobs, 'blob')}"
    if run.delete_untagged:
        text += f" and {_plural(run.deleted_manifests, 'manifest')}"
    if run.bytes_freed is not None:
        text += f", freed {filesizeformat(run.bytes_freed)}"
    return text + f" ({run.state})"
