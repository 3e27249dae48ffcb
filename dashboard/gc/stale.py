"""A registry whose blob-descriptor cache went stale in garbage collection: found, recorded, cleared.

registry:2's default config keeps `storage.cache.blobdescriptor: inmemory`. The collector runs
as another process, so that cache still says the blobs it removed exist: a HEAD answers 200
and a re-push of the same layers uploads nothing, leaving an image whose blobs are gone. After a
real run the worker HEADs a few of the removed blobs, in a repository that held them, through
the registry (`probe`); a 200 for a blob whose file is gone is the stale cache, kept in the
run's `report["blob_cache"]`. Until every such blob answers 404 (the registry was restarted),
`pending()` says so to the GC pages, the health page and `/-/health.json`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from django.utils import timezone

from .. import disk, remote
from ..models import GCRun, RepositoryManifest
from ..registry import errors as e

log = logging.getLogger(__name__)

#: Removed blobs HEADed after a run: a cache holds what was pushed or read since the registry
#: started, so one blob may be unknown to it while the next is stale.
PROBES = 20
#: Stale blobs HEADed again on each look (health page, health.json, the run's page).
RECHECKS = 3
#: Bounds the storage walk that finds a repository linking a blob (stat calls).
LINK_LOOKUPS = 20_000
#: An after hook may restart the registry: wait this long for it to answer again.
UP_WAIT = 10.0
UP_POLL = 0.5

DIAGNOSIS = (
    "the registry still serves blobs garbage collection removed: its blob-descriptor cache is stale; restart the "
    "registry (or set REGISTRYUI_GC_AFTER_COMMAND to restart it after each run, see the README's “Garbage "
    "collection”)"
)


def repositories_of(digests: Iterable[str]) -> dict[str, list[str]]:
    """Which repositories the index says hold each blob (read before the index forgets them)."""
    found: dict[str, list[str]] = {}
    rows = (
        RepositoryManifest.objects.filter(manifest__blob_links__blob__digest__in=list(digests))
        .values_list("manifest__blob_links__blob__digest", "repository__name")
        .distinct()
    )
    for digest, repo in rows:
        found.setdefault(digest, []).append(repo)
    return found


def _linked_in(root: Path | None, digest: str, repositories: Iterable[str], budget: list[int]) -> str:
    """A repository whose storage links the blob (garbage collection leaves the link), or ""."""
    if root is None:
        return ""
    for repo in repositories:
        if budget[0] <= 0:
            return ""
        budget[0] -= 1
        try:
            if disk.layer_link_path(root, repo, digest).exists():
                return repo
        except (OSError, ValueError):
            continue
    return ""


def _head(repo: str, digest: str) -> str:
    """ "present", "absent", or why the registry could not say."""
    try:
        remote.client().head_blob(repo, digest)
    except e.NotFound:
        return "absent"
    except e.RegistryError as exc:
        return str(exc) or type(exc).__name__
    return "present"


def probe(
    removed: list[str],
    *,
    root: Path | None,
    repositories: list[str],
    known: dict[str, list[str]],
    wait: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """HEAD up to PROBES removed blobs in a repository that held each; what to keep on the run.

    `removed`: blobs the run removed (their files are gone); `repositories`: every repository the
    collector listed; `known`: the index's repositories per blob (`repositories_of`)."""
    record: dict[str, Any] = {
        "checked": [],
        "stale": [],
        "error": "",
        "checked_at": timezone.now().isoformat(),
        "cleared_at": None,
    }
    budget = [LINK_LOOKUPS]
    targets: list[tuple[str, str]] = []
    for digest in removed:
        if len(targets) >= PROBES:
            break
        repo = next(iter(known.get(digest, ())), "") or _linked_in(root, digest, repositories, budget)
        if repo:
            targets.append((repo, digest))
    deadline = time.monotonic() + UP_WAIT
    for repo, digest in targets:
        answer = _head(repo, digest)
        while answer not in ("present", "absent") and time.monotonic() < deadline:
            wait(UP_POLL)  # an after hook restarting the registry: give it a moment
            answer = _head(repo, digest)
        if answer not in ("present", "absent"):
            record["error"] = f"could not ask the registry whether removed blobs still answer: {answer}"
            break
        record["checked"].append({"repo": repo, "digest": digest, "answer": answer})
        if answer == "present":
            record["stale"].append({"repo": repo, "digest": digest})
    return record


def is_pending(run: GCRun) -> bool:
    """The run found removed blobs still served, and nobody has seen them gone since."""
    found = (run.report or {}).get("blob_cache") or {}
    return bool(found.get("stale")) and not found.get("cleared_at")


def recheck(run: GCRun) -> bool:
    """HEAD the run's stale blobs again; once every one answers 404 the registry no longer serves
    them (it was restarted), which is recorded. True while it still does (or cannot be asked)."""
    found = dict((run.report or {}).get("blob_cache") or {})
    # A few are enough (a restart empties the whole cache), and the first still served settles it.
    if any(_head(s["repo"], s["digest"]) != "absent" for s in found.get("stale", ())[:RECHECKS]):
        return True
    found["cleared_at"] = timezone.now().isoformat()
    run.report = {**(run.report or {}), "blob_cache": found}
    # Only the report: the rest of the row is the finished run's and stays as it was.
    GCRun.objects.filter(pk=run.pk).update(report=run.report)
    return False


def pending(limit: int = 20) -> list[GCRun]:
    """The recent real runs whose stale cache still serves removed blobs, re-checked now."""
    # Only runs that found some (a JSON lookup both databases answer), without their output.
    found = GCRun.objects.filter(dry_run=False, active=False, report__blob_cache__stale__0__isnull=False)
    recent = found.defer("output", "hook_output").order_by("-created_at", "-id")[:limit]
    return [run for run in recent if is_pending(run) and recheck(run)]
