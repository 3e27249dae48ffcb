"""What the dashboard keeps: a record of every deletion, enough to undo it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

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
    method = models.CharField(max_length=20, blank=True,
                              help_text="How the registry was asked: tag-delete, throwaway, digest")
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


class BackgroundRun(models.Model):
    """What every long job run in the background records (dashboard.runs works on it): when it
    was queued, started, last heard of and finished, who asked, how it ended. The row doubles as
    the lock: at most one row of a kind is `active`, enforced by the database (a partial unique
    index on `active`, which each kind names in its Meta), so one run at a time across every
    process and instance."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    #: Set together with a finished state whenever a run of this kind ends (GC: its phase).
    DONE: ClassVar[dict[str, Any]] = {}

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Kept as text: the record must outlive the user account ("manage.py" from the shell).
    username = models.CharField(max_length=150, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    active = models.BooleanField(default=True)
    error = models.TextField(blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

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
    def described(self) -> str:
        """What "… is already running" names."""
        return f"run #{self.pk}"

    @classmethod
    def overdue(cls, cutoff: datetime) -> models.Q:
        """A queued run nobody picked up by `cutoff` (with the row's own `due_at`)."""
        return models.Q(created_at__lt=cutoff)

    @property
    def due_at(self) -> datetime:
        """Since when a queued run waits for a worker."""
        return self.created_at


class GCRun(BackgroundRun):
    """One garbage collection (or preview), start to end: who, what it would or did delete, and
    the command's output. Doubles as the lock (BackgroundRun): one run at a time."""

    #: What `phase` says, in order ("checking" only with --delete-untagged).
    PHASES = ("queued", "checking", "before hook", "marking", "sweeping", "after hook", "done")
    #: How much output is kept: the last ~200 KB (a big registry prints a line per blob).
    OUTPUT_LIMIT = 200_000
    DONE: ClassVar[dict[str, Any]] = {"phase": "done"}

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    dry_run = models.BooleanField(default=True)
    delete_untagged = models.BooleanField(default=False)
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
    preview = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="The dry run this run was offered from")

    class Meta(BackgroundRun.Meta):
        verbose_name = "garbage collection run"
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="gc_one_active_run"),
        ]

    def __str__(self) -> str:
        kind = "preview" if self.dry_run else "garbage collection"
        return f"{kind} #{self.pk} by {self.username or '?'}: {self.state}"

    @property
    def described(self) -> str:
        kind = "preview" if self.dry_run else "garbage collection"
        return f"a {kind} (#{self.pk}, started by {self.username or 'someone'})"

    @property
    def bytes_freed(self) -> int | None:
        if self.bytes_before is None or self.bytes_after is None:
            return None
        return self.bytes_before - self.bytes_after

    @property
    def tail(self) -> str:
        """The last 40 lines of output."""
        return "\n".join(self.output.rstrip("\n").splitlines()[-40:])


# -- the index: what the dashboard knows of the whole registry ------------------------------
#
# Digest-addressed rows (IndexedManifest, IndexedBlob and their links) never change once written:
# a digest names its bytes. Tags and repository membership are the mutable part, kept fresh by
# registry events (dashboard.index.events) and reconciled by a sync (dashboard.index.sync).


class IndexedRepository(models.Model):
    name = models.CharField(max_length=255, unique=True)
    #: Everything before the last "/": the catalog lists each namespace's repositories together.
    namespace = models.CharField(max_length=255, blank=True, default="")
    #: The last time a sync read this repository's whole tag list (None: known from events only).
    synced_at = models.DateTimeField(null=True, blank=True)
    #: The last change the index saw here (a push, a delete, a tag that moved).
    changed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    tag_count = models.IntegerField(default=0)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "indexed repositories"

    def __str__(self) -> str:
        return self.name


class IndexedManifest(models.Model):
    digest = models.CharField(max_length=100, unique=True)
    media_type = models.CharField(max_length=200, blank=True)
    #: Bytes of the manifest itself (it is a blob file on disk too).
    size = models.BigIntegerField(default=0)
    #: dashboard.registry.kinds: image, index, signature, sbom, attestation, artifact, …
    kind = models.CharField(max_length=20, blank=True)
    created = models.DateTimeField(null=True, blank=True)
    #: What the tag table shows: the layers (an index: its platforms' layers, attestations aside).
    image_size = models.BigIntegerField(default=0)
    #: Space-separated platform strings ("linux/amd64 linux/arm64/v8"), for display and filter.
    platforms = models.CharField(max_length=1000, blank=True)
    config_digest = models.CharField(max_length=100, blank=True)
    artifact_type = models.CharField(max_length=200, blank=True)
    subject = models.CharField(max_length=100, blank=True, db_index=True)
    labels = models.JSONField(default=dict, blank=True)
    #: "key=value" lines of labels and annotations, for search.
    labels_text = models.TextField(blank=True)
    problem = models.TextField(blank=True)
    indexed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "indexed manifest"

    def __str__(self) -> str:
        return self.digest


class IndexedBlob(models.Model):
    digest = models.CharField(max_length=100, unique=True)
    size = models.BigIntegerField(default=0)
    media_type = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return self.digest


class ManifestBlob(models.Model):  # noqa: DJ008 - a link row, never shown on its own
    """A layer or config a manifest names (an index names manifests: ManifestChild)."""

    manifest = models.ForeignKey(IndexedManifest, on_delete=models.CASCADE, related_name="blob_links")
    blob = models.ForeignKey(IndexedBlob, on_delete=models.CASCADE, related_name="manifest_links")
    role = models.CharField(max_length=10)  # "config" or "layer"

    class Meta:
        constraints = [models.UniqueConstraint(fields=["manifest", "blob"], name="index_manifest_blob_once")]


class ManifestChild(models.Model):  # noqa: DJ008 - a link row, never shown on its own
    """A manifest an index lists (the child may not be indexed yet: the digest says which)."""

    parent = models.ForeignKey(IndexedManifest, on_delete=models.CASCADE, related_name="child_links")
    digest = models.CharField(max_length=100, db_index=True)
    platform = models.CharField(max_length=100, blank=True)
    attestation = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["parent", "digest"], name="index_child_once")]


class RepositoryManifest(models.Model):  # noqa: DJ008 - a link row, never shown on its own
    """A manifest is in a repository (tagged or not). A delete keeps the row with `deleted_at`:
    its blobs stay on disk until garbage collection, and the storage page counts them."""

    repository = models.ForeignKey(IndexedRepository, on_delete=models.CASCADE, related_name="manifest_links")
    manifest = models.ForeignKey(IndexedManifest, on_delete=models.CASCADE, related_name="repository_links")
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repository", "manifest"], name="index_repo_manifest_once")]


class IndexedTag(models.Model):
    repository = models.ForeignKey(IndexedRepository, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=128)
    digest = models.CharField(max_length=100, db_index=True)
    #: Null until the manifest is indexed (an event names the digest before it is fetched).
    manifest = models.ForeignKey(IndexedManifest, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="tags")
    #: dashboard.ordering.version_sort_key: semver-aware order as a plain string, so the
    #: database sorts 20,000 tags without Python.
    is_version = models.BooleanField(default=False)
    version_key = models.TextField(default="")
    #: When the tag last moved to this digest (push time, or first seen by a sync).
    updated_at = models.DateTimeField()
    last_pulled_at = models.DateTimeField(null=True, blank=True)
    pull_count = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repository", "name"], name="index_tag_once")]
        indexes = [models.Index(fields=["repository", "is_version", "version_key"], name="index_tag_version")]

    def __str__(self) -> str:
        return f"{self.repository.name}:{self.name}"


class TagHistory(models.Model):  # noqa: DJ008 - shown as a table of its fields, never by name
    """Every digest a tag has pointed at, newest last: what a roll back offers."""

    class Source(models.TextChoices):
        EVENT = "event", "Push event"
        SYNC = "sync", "Sync"
        DASHBOARD = "dashboard", "Dashboard"
        ROLLBACK = "rollback", "Roll back"

    repository = models.CharField(max_length=255)
    tag = models.CharField(max_length=128)
    #: Empty: the tag was removed.
    digest = models.CharField(max_length=100, blank=True)
    at = models.DateTimeField()
    source = models.CharField(max_length=10, choices=Source.choices)
    actor = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["repository", "tag", "at"], name="index_tag_history")]


class RegistryEvent(models.Model):
    """The activity feed: a push, pull or delete the registry reported (or a sync inferred)."""

    class Action(models.TextChoices):
        PUSH = "push", "Push"
        PULL = "pull", "Pull"
        DELETE = "delete", "Delete"
        MOUNT = "mount", "Mount"

    class Source(models.TextChoices):
        REGISTRY = "registry", "Registry event"
        SYNC = "sync", "Found by a sync"
        DASHBOARD = "dashboard", "Dashboard"

    #: The registry's event id (idempotency: it retries until it gets a 2xx).
    event_id = models.CharField(max_length=100, unique=True)
    action = models.CharField(max_length=10, choices=Action.choices)
    repository = models.CharField(max_length=255)
    tag = models.CharField(max_length=128, blank=True)
    digest = models.CharField(max_length=100, blank=True)
    media_type = models.CharField(max_length=200, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    actor = models.CharField(max_length=150, blank=True)
    address = models.CharField(max_length=100, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    at = models.DateTimeField(db_index=True)
    received_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.REGISTRY)
    #: Push and delete events change the index; False until that work is done.
    applied = models.BooleanField(default=False)
    #: Whatever else the event said that the feed may show (request host, source instance).
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["repository", "at"], name="index_event_repo_at"),
            models.Index(fields=["action", "at"], name="index_event_action_at"),
            models.Index(fields=["applied"], condition=models.Q(applied=False), name="index_event_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.repository}:{self.tag or self.digest}"


class SyncRun(BackgroundRun):
    """One reconcile of the index with the registry. Like GCRun, doubles as the lock: at most one
    queued or running sync across every process (BackgroundRun)."""

    #: A scheduled sync waits until then; "Sync now" brings it forward.
    not_before = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=20, default="manual")  # manual, schedule, command, change
    #: Only these repositories (empty: the whole catalog).
    repositories = models.JSONField(default=list, blank=True)
    #: The last repository finished, in catalog order: a resumed sync starts after it.
    cursor = models.CharField(max_length=255, blank=True)
    repositories_total = models.IntegerField(default=0)
    repositories_done = models.IntegerField(default=0)
    tags_seen = models.IntegerField(default=0)
    heads = models.IntegerField(default=0)
    manifests_fetched = models.IntegerField(default=0)
    tags_changed = models.IntegerField(default=0)
    #: Whatever else the run reports (per-repository problems, timings).
    details = models.JSONField(default=dict, blank=True)

    class Meta(BackgroundRun.Meta):
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="sync_one_active_run"),
        ]

    def __str__(self) -> str:
        return f"sync #{self.pk} ({self.trigger}): {self.state}"

    @property
    def described(self) -> str:
        return f"sync #{self.pk} ({self.trigger}{', by ' + self.username if self.username else ''})"

    @classmethod
    def overdue(cls, cutoff: datetime) -> models.Q:
        # A scheduled sync waits for its time first.
        return models.Q(created_at__lt=cutoff) & (models.Q(not_before__isnull=True) | models.Q(not_before__lt=cutoff))

    @property
    def due_at(self) -> datetime:
        return max(self.created_at, self.not_before or self.created_at)


class Rollback(models.Model):
    """A tag re-pointed to an earlier digest by a maintainer: the audit record."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    username = models.CharField(max_length=150)
    registry = models.CharField(max_length=500)
    repository = models.CharField(max_length=255)
    tag = models.CharField(max_length=128)
    from_digest = models.CharField(max_length=100, blank=True)
    to_digest = models.CharField(max_length=100)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag} → {self.to_digest[:19]}"
