"""What a garbage collection frees, in the words of the deletions that caused it.

The collector lists bare blob digests. The deletion audit says which images were deleted (by
digest, with the tags they had, by whom); each deleted manifest is a blob file itself and names
its config and layers (an index: its platforms' manifests, whose blobs the index knows). A blob
the collector lists and a deleted image names is that image's to free; the rest (content deleted
outside the dashboard, interrupted uploads) is counted apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .. import remote
from ..models import Deletion, GCRun, IndexedManifest, ManifestBlob
from ..registry.parse import parse_manifest

#: Deleted images listed on a run (the counts cover them all).
LIST_LIMIT = 200


def _last_collection() -> datetime | None:
    last = GCRun.objects.filter(dry_run=False, exit_code=0).exclude(finished_at=None).order_by("-finished_at").first()
    return last.finished_at if last else None


def _files(deletion: Deletion) -> set[str]:
    """The blob files a deleted manifest holds: itself, its config and layers, and for an index its
    manifests and (as far as the index knows them) theirs."""
    manifest = parse_manifest(bytes(deletion.manifest), media_type=deletion.media_type, digest=deletion.digest)
    files = {deletion.digest}
    files.update(d.digest for d in ((manifest.config,) if manifest.config else ()) + manifest.layers)
    children = [d.digest for d in manifest.manifests]
    files.update(children)
    if children:
        files.update(ManifestBlob.objects.filter(manifest__digest__in=children).values_list("blob__digest", flat=True))
        files.update(
            c for c in IndexedManifest.objects.filter(digest__in=children).values_list("config_digest", flat=True) if c
        )
    return files


def attribute(eligible: Iterable[str], sizes: dict[str, int], *, before: datetime | None = None) -> dict[str, Any]:
    """The eligible blobs by deleted image and by repository, with counts and bytes (bytes only of
    blobs whose size is known), from the deletions since the last collection that deleted."""
    eligible = set(eligible)
    deletions = Deletion.objects.filter(registry=remote.registry_url(), restored_at__isnull=True)
    if since := _last_collection():
        deletions = deletions.filter(created_at__gt=since)
    if before is not None:
        deletions = deletions.filter(created_at__lte=before)
    images: list[dict[str, Any]] = []
    by_repo: dict[str, set[str]] = {}
    counted: dict[tuple[str, str], dict[str, Any]] = {}
    for deletion in deletions.order_by("created_at", "id"):
        frees = _files(deletion) & eligible
        if not frees:
            continue
        key = (deletion.repository, deletion.digest)
        if key in counted:  # untagged, then deleted: one image, every tag it had
            seen = counted[key]
            seen["tags"] += [t for t in deletion.tags if t not in seen["tags"]]
            continue
        counted[key] = {
            "repo": deletion.repository,
            "digest": deletion.digest,
            "tags": list(deletion.tags),
            "action": deletion.action,
            "by": deletion.username,
            "deleted_at": deletion.created_at.isoformat(),
            "blobs": len(frees),
            "bytes": sum(sizes.get(d, 0) for d in frees),
        }
        images.append(counted[key])
        by_repo.setdefault(deletion.repository, set()).update(frees)
    accounted = set().union(*by_repo.values()) if by_repo else set()
    other = eligible - accounted
    images.sort(key=lambda i: (-i["bytes"], i["repo"], i["digest"]))
    return {
        "images": images[:LIST_LIMIT],
        "image_count": len(images),
        "repositories": sorted(
            (
                {
                    "repo": repo,
                    "images": sum(1 for i in images if i["repo"] == repo),
                    "blobs": len(blobs),
                    "bytes": sum(sizes.get(d, 0) for d in blobs),
                }
                for repo, blobs in by_repo.items()
            ),
            key=lambda r: (-r["bytes"], r["repo"]),
        ),
        "other": {"blobs": len(other), "bytes": sum(sizes.get(d, 0) for d in other)},
    }
