"""Deleting without surprises: exactly what the user confirmed, recorded, and undoable.

Plain functions over the registry client and the audit model; views stay thin.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from .. import remote
from ..auth import User
from ..index import store
from ..models import Deletion
from ..registry import errors as e
from ..registry import ops
from ..registry.client import run_bounded


class TagsChanged(Exception):
    """The tags of an image changed between the confirmation and the delete: ask again."""

    def __init__(self, current: list[str]) -> None:
        super().__init__("the tags pointing at this image changed since you confirmed")
        self.current = current


def tags_of(name: str, digest: str) -> list[str]:
    """Every tag that points at `digest` now, read live."""
    tags = remote.client().tags(name)
    refs = run_bounded(lambda t: remote.client().head_manifest(name, t), tags, remote.concurrency())
    return sorted(t for t, r in zip(tags, refs, strict=True)
                  if not isinstance(r, e.RegistryError) and r.digest == digest)


@dataclass(frozen=True)
class TagResult:
    tag: str
    ok: bool
    message: str


def untag(user: User, name: str, tag: str, expected_digest: str = "") -> TagResult:
    """Remove exactly one tag, keep its manifest bytes in the audit log."""
    client = remote.client()
    try:
        raw, media_type, digest = client.manifest_bytes(name, tag)
        if expected_digest and digest != expected_digest:
            raise e.Conflict(f"“{tag}” now points at {digest[:19]}…, not at the image you confirmed; "
                             "nothing was changed")
        result, tag_delete = ops.untag(client, name, tag, expected_digest=digest, tag_delete=remote.tag_delete_known())
    except e.RegistryError as exc:
        if isinstance(exc, e.UnsupportedOperation):
            remote.forget_delete_support()
        return TagResult(tag, False, str(exc))
    remote.learn_tag_delete(tag_delete)
    _record(user, name, Deletion.Action.UNTAG, [tag], digest, media_type, raw, result.method)
    # The index learns at once, events or not.
    store.remove_tag(name, tag, source="dashboard", actor=user.get_username())
    store.record_dashboard_event("delete", name, tag=tag, digest=digest, actor=user.get_username(),
                                 media_type=media_type)
    return TagResult(tag, True, "untagged")


def untag_many(user: User, name: str, tags: list[str]) -> list[TagResult]:
    # One at a time: each untag reads, rewrites and deletes, and a failure of one must not hide
    # the others; a handful of tags takes well under a second.
    return [untag(user, name, tag) for tag in tags]


def delete_image(user: User, name: str, digest: str, confirmed_tags: list[str]) -> Deletion:
    """Delete a manifest by digest, which removes every tag on it: only if those are the tags
    the user was shown."""
    client = remote.client()
    current = tags_of(name, digest)
    if sorted(current) != sorted(confirmed_tags):
        raise TagsChanged(current)
    raw, media_type, _ = client.manifest_bytes(name, digest)
    try:
        client.delete_manifest(name, digest)
    except e.UnsupportedOperation:
        remote.forget_delete_support()
        raise
    record = _record(user, name, Deletion.Action.DELETE, current, digest, media_type, raw, "digest")
    store.remove_manifest(name, digest, source="dashboard", actor=user.get_username())
    store.record_dashboard_event("delete", name, digest=digest, actor=user.get_username(), media_type=media_type)
    return record


def restore(user: User, deletion: Deletion) -> None:
    ops.restore(remote.client(), deletion.repository, bytes(deletion.manifest), deletion.media_type,
                deletion.digest, list(deletion.tags))
    deletion.restored_at = timezone.now()
    deletion.restored_by = user.get_username()
    deletion.save(update_fields=["restored_at", "restored_by"])
    name, who = deletion.repository, user.get_username()
    if deletion.tags:
        store.set_tags(name, dict.fromkeys(deletion.tags, deletion.digest), source="dashboard", actor=who)
    try:
        store.fetch_and_index(name, [deletion.digest])
    except e.RegistryError:
        pass  # the next sync indexes it; the restore itself worked
    for tag in deletion.tags or [""]:
        store.record_dashboard_event("push", name, tag=tag, digest=deletion.digest, actor=who,
                                     media_type=deletion.media_type)


@transaction.atomic
def _record(user: User, name: str, action: str, tags: list[str], digest: str, media_type: str, raw: bytes,
            method: str) -> Deletion:
    return Deletion.objects.create(
        user=user if user.is_authenticated else None, username=user.get_username(),
        registry=remote.registry_url(), repository=name, action=action, tags=tags, digest=digest,
        media_type=media_type, manifest=raw, method=method)
