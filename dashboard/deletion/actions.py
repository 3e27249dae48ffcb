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
from ..registry.names import attachment_target, is_tag
from . import restorable


class TagsChanged(Exception):
    """The tags of an image changed between the confirmation and the delete: ask again."""

    def __init__(self, current: list[str]) -> None:
        super().__init__("the tags pointing at this image changed since you confirmed")
        self.current = current


class NotConfirmed(e.RegistryError):
    """The registry accepted a change, but reading it back shows something else: the message says
    what it answered."""


def tag_digests(name: str) -> dict[str, str]:
    """Every tag of `name` and the digest it points at now, read live (one HEAD per tag, bounded)."""
    tags = [t for t in remote.client().tags(name) if is_tag(t)]
    refs = run_bounded(lambda t: remote.client().head_manifest(name, t), tags, remote.concurrency())
    return {t: r.digest for t, r in zip(tags, refs, strict=True) if not isinstance(r, BaseException)}


def tags_of(name: str, digest: str, current: dict[str, str] | None = None) -> list[str]:
    """Every tag that points at `digest` now, read live (or from `current`, just read)."""
    found = tag_digests(name) if current is None else current
    return sorted(t for t, d in found.items() if d == digest)


@dataclass(frozen=True)
class Attachment:
    """A cosign (`sha256-<hex>.sig`, `.att`, `.sbom`) or OCI referrers-fallback (`sha256-<hex>`) tag
    that names an image by digest: deleting the image leaves it pointing at nothing."""

    tag: str
    kind: str
    digest: str


def attachments_of(name: str, digest: str, current: dict[str, str] | None = None) -> list[Attachment]:
    """The attachment tags of the image `digest`, with the digest each points at now."""
    found = tag_digests(name) if current is None else current
    out: list[Attachment] = []
    for tag, at in sorted(found.items()):
        target = attachment_target(tag)
        if target and target[0] == digest:
            out.append(Attachment(tag=tag, kind=target[1], digest=at))
    return out


@dataclass(frozen=True)
class TagResult:
    tag: str
    ok: bool
    message: str


def untag(user: User, name: str, tag: str, expected_digest: str = "") -> TagResult:
    """Remove exactly one tag, keep its manifest bytes in the audit log; "untagged" only once the
    registry answers 404 for the tag."""
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
    still = _still_answering(name, [tag])
    if still:
        return TagResult(tag, False, f"the registry accepted the untag, but {still[0]}")
    return TagResult(tag, True, "untagged")


def untag_many(user: User, name: str, tags: list[str]) -> list[TagResult]:
    # One at a time: each untag reads, rewrites and deletes, and a failure of one must not hide
    # the others; a handful of tags takes well under a second.
    return [untag(user, name, tag) for tag in tags]


def delete_image(user: User, name: str, digest: str, confirmed_tags: list[str]) -> Deletion:
    """Delete a manifest by digest, which removes every tag on it: only if those are the tags
    the user was shown. Raises NotConfirmed when the registry still serves any of it after."""
    current = tags_of(name, digest)
    if sorted(current) != sorted(confirmed_tags):
        raise TagsChanged(current)
    return _delete(user, name, digest, current)


def _delete(user: User, name: str, digest: str, tags: list[str]) -> Deletion:
    client = remote.client()
    raw, media_type, _ = client.manifest_bytes(name, digest)
    try:
        client.delete_manifest(name, digest)
    except e.UnsupportedOperation:
        remote.forget_delete_support()
        raise
    record = _record(user, name, Deletion.Action.DELETE, tags, digest, media_type, raw, "digest")
    store.remove_manifest(name, digest, source="dashboard", actor=user.get_username())
    store.record_dashboard_event("delete", name, digest=digest, actor=user.get_username(), media_type=media_type)
    still = _still_answering(name, [digest, *tags])
    if still:
        raise NotConfirmed(f"the registry accepted the delete of {name}@{digest[:19]}…, but {'; '.join(still)}")
    return record


def _still_answering(name: str, refs: list[str]) -> list[str]:
    """What of these tags or digests the registry still serves (each a sentence); empty when every
    one answers 404, as it should after a delete."""
    answers = run_bounded(lambda ref: remote.client().head_manifest(name, ref), refs, remote.concurrency())
    still: list[str] = []
    for ref, got in zip(refs, answers, strict=True):
        shown = f"{ref[:19]}…" if ":" in ref else f"“{ref}”"
        if isinstance(got, e.NotFound):
            continue
        if isinstance(got, BaseException):
            still.append(f"reading {shown} back failed: {got}")
        else:
            still.append(f"it still serves {shown}" if got.digest == ref else
                         f"it still serves {shown}, on {got.digest[:19]}…")
    return still


def remove_attachments(user: User, name: str, image: str, confirmed: list[tuple[str, str]]) -> list[TagResult]:
    """Remove the attachment tags (tag, digest) the user confirmed for the deleted image `image`:
    an attachment manifest carrying no other tag is deleted by digest, else only its tag goes.
    One that moved since the confirmation stays. Every removal is audited like any other."""
    current = tag_digests(name)
    wanted = {tag: digest for tag, digest in confirmed if (t := attachment_target(tag)) and t[0] == image}
    results: list[TagResult] = []
    by_digest: dict[str, list[str]] = {}
    for tag, digest in sorted(wanted.items()):
        now = current.get(tag)
        if now is None:
            results.append(TagResult(tag, True, "already gone"))
        elif now != digest:
            results.append(TagResult(tag, False, f"now points at {now[:19]}…, not at what you confirmed: left alone"))
        else:
            by_digest.setdefault(digest, []).append(tag)
    for digest, tags in by_digest.items():
        others = [t for t in tags_of(name, digest, current) if t not in tags]
        if others:
            # The manifest is tagged for something else too: only the attachment tags go.
            results.extend(untag(user, name, t, digest) for t in tags)
            continue
        try:
            _delete(user, name, digest, tags)
        except e.RegistryError as exc:
            results.extend(TagResult(t, False, str(exc)) for t in tags)
        else:
            results.extend(TagResult(t, True, "deleted") for t in tags)
    return sorted(results, key=lambda r: r.tag)


@dataclass(frozen=True)
class Restored:
    """A restore the registry confirmed: it serves the manifest by digest and under every tag."""

    digest: str
    tags: list[str]


def restore(user: User, deletion: Deletion) -> Restored:
    """Put a deleted manifest back with its tags, if everything it needs still answers.

    Raises NotRestorable (nothing changed) when garbage collection removed some of it, and a
    RegistryError when the registry could not be asked or refused. Once the registry accepted
    it, the manifest is read back by digest and by tag and its blobs probed again; if any of it
    does not answer, what the restore changed is undone and NotConfirmed says what the registry
    answered.
    """
    client = remote.client()
    name, digest, raw, media_type = deletion.repository, deletion.digest, bytes(deletion.manifest), deletion.media_type
    tags = list(dict.fromkeys(deletion.tags))
    before = restorable.check(name, raw, media_type)
    restorable.remember(name, digest, before)
    if before.missing:
        raise e.NotRestorable(restorable.refusal(deletion, before), missing=list(before.missing))
    if before.problem:
        raise e.RegistryError(f"could not check that the registry still has what the image needs "
                              f"({before.problem}). Nothing was changed.")
    existed, previous = _before_restore(name, digest, tags)
    try:
        ops.restore(client, name, raw, media_type, digest, tags, checked=True)
    except (e.UnsupportedOperation, e.Unauthorized):
        raise  # writes refused (read-only, no permission): the first PUT already was, nothing changed
    except e.RegistryError as exc:
        # The manifest may be back already while a tag was refused: a restore is whole or not at all.
        raise NotConfirmed(f"{exc} {_undo_restore(name, digest, existed, previous)}") from exc
    wrong, hint = restorable.confirm_restored(deletion)
    if wrong:
        restorable.forget(name, digest)
        undone = _undo_restore(name, digest, existed, previous)
        raise NotConfirmed(" ".join(filter(None, [f"the registry accepted it, but {wrong}.", undone, hint])))
    deletion.restored_at = timezone.now()
    deletion.restored_by = user.get_username()
    deletion.save(update_fields=["restored_at", "restored_by"])
    who = user.get_username()
    if tags:
        store.set_tags(name, dict.fromkeys(tags, digest), source="dashboard", actor=who)
    try:
        store.fetch_and_index(name, [digest])
    except e.RegistryError:
        pass  # the next sync indexes it; the restore itself was read back above
    for tag in tags or [""]:
        store.record_dashboard_event("push", name, tag=tag, digest=digest, actor=who, media_type=media_type)
    return Restored(digest=digest, tags=tags)


def _before_restore(name: str, digest: str, tags: list[str]) -> tuple[bool, dict[str, tuple[bytes, str, str]]]:
    """Whether the manifest is in the registry already, and the manifests the tags point at now
    (those pushed again since: bytes, media type, digest), to put back if the restore is undone."""
    client = remote.client()
    refs = [digest, *tags]
    answers = run_bounded(lambda ref: client.manifest_bytes(name, ref), refs, remote.concurrency())
    existed = not isinstance(answers[0], BaseException)
    previous = {tag: got for tag, got in zip(tags, answers[1:], strict=True)
                if not isinstance(got, BaseException) and got[2] != digest}
    return existed, previous


def _undo_restore(name: str, digest: str, existed: bool, previous: dict[str, tuple[bytes, str, str]]) -> str:
    """Take back what a restore that did not go through changed; says what was done."""
    client = remote.client()
    failed: list[str] = []
    changed = False
    if not existed:
        # Deleted even when it does not answer: a registry with a stale blob-descriptor cache keeps
        # the tags and the revision of a manifest it cannot serve, and the DELETE removes them.
        try:
            client.delete_manifest(name, digest)  # its tags go with it
            changed = True
        except e.NotFound:
            pass
        except e.RegistryError as exc:
            failed.append(f"deleting {digest[:19]}… again failed ({exc})")
    now = tag_digests(name) if previous else {}
    for tag, (raw, media_type, was) in previous.items():
        if now.get(tag) == was:
            continue
        try:
            client.put_manifest(name, tag, raw, media_type)
            changed = True
        except e.RegistryError as exc:
            failed.append(f"putting “{tag}” back on {was[:19]}… failed ({exc})")
    if failed:
        return "Undoing it did not fully work: " + "; ".join(failed) + "."
    return "The dashboard took the restore back: the registry is as it was." if changed else "Nothing was changed."


@transaction.atomic
def _record(user: User, name: str, action: str, tags: list[str], digest: str, media_type: str, raw: bytes,
            method: str) -> Deletion:
    return Deletion.objects.create(
        user=user if user.is_authenticated else None, username=user.get_username(),
        registry=remote.registry_url(), repository=name, action=action, tags=tags, digest=digest,
        media_type=media_type, manifest=raw, method=method)
