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
