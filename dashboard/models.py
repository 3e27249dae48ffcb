"""What the dashboard keeps: a record of every deletion, enough to undo it."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Deletion(models.Model):
    """One delete the dashboard made: who, when, what, and the manifest bytes to restore it."""

    class Action(models.TextChoices):
        UNTAG = "untag", "Untagged"
        DELETE = "delete", "Deleted image"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    # Kept as text too: the record must outlive the user account.
    username = models.CharField(max_length=150)
    registry = models.CharField(max_length=500)
    repository = models.CharField(max_length=255, db_index=True)
    action = models.CharField(max_length=10, choices=Action.choices)
    tags = models.JSONField(default=list)
    digest = models.CharField(max_length=200)
    media_type = models.CharField(max_length=200)
    manifest = models.BinaryField()
    method = models.CharField(max_length=20, blank=True, help_text="How the registry was asked: tag-delete, throwaway, digest")
    restored_at = models.DateTimeField(null=True, blank=True)
    restored_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("browse_registry", "Can browse the registry"),
            ("delete_from_registry", "Can delete and restore tags and images"),
        ]

    def __str__(self) -> str:
        what = ", ".join(self.tags) or self.digest
        return f"{self.get_action_display()} {self.repository}: {what}"


class GCRun(models.Model):
    """One garbage collection (or preview), start to end: who, what it would or did delete, and
    the command's output. Doubles as the lock: at most one row is `active`, enforced by the
    database (a partial unique index, on SQLite and PostgreSQL alike), so one run at a time
    across every process and instance."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    #: What `phase` says, in order ("checking" only with --delete-untagged).
    PHASES = ("queued", "checking", "before hook", "marking", "sweeping", "after hook", "done")
    #: How much output is kept: the last ~200 KB (a big registry prints a line per blob).
    OUTPUT_LIMIT = 200_000

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    # Kept as text too: the record must outlive the user account ("manage.py" from the shell).
    username = models.CharField(max_length=150, blank=True)
    dry_run = models.BooleanField(default=True)
    delete_untagged = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    active = models.BooleanField(default=True)
    phase = models.CharField(max_length=20, default="queued")
    exit_code = models.IntegerField(null=True, blank=True)
    output = models.TextField(blank=True)
    hook_output = models.TextField(blank=True)
    marked = models.IntegerField(default=0)
    eligible_blobs = models.IntegerField(default=0)
    eligible_manifests = models.IntegerField(default=0)
    deleted_blobs = models.IntegerField(default=0)
    deleted_manifests = models.IntegerField(default=0)
    bytes_eligible = models.BigIntegerField(null=True, blank=True)
    bytes_before = models.BigIntegerField(null=True, blank=True)
    bytes_after = models.BigIntegerField(null=True, blank=True)
    report = models.JSONField(default=dict, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    preview = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="The dry run this run was offered from")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "garbage collection run"
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="gc_one_active_run"),
        ]

    def __str__(self) -> str:
        kind = "preview" if self.dry_run else "garbage collection"
        return f"{kind} #{self.pk} by {self.username or '?'}: {self.state}"

    @property
    def finished(self) -> bool:
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)

    @property
    def seconds(self) -> float | None:
        """How long it ran, for the history."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def bytes_freed(self) -> int | None:
        if self.bytes_before is None or self.bytes_after is None:
            return None
        return self.bytes_before - self.bytes_after

    @property
    def tail(self) -> str:
        """The last 40 lines of output."""
        return "\n".join(self.output.rstrip("\n").splitlines()[-40:])
