"""The registry's storage directory, read from disk: which blobs it holds and how big they are.

Storage: `<root>/docker/registry/v2/blobs/sha256/<2 hex>/<64 hex>/data` holds each blob,
`…/repositories/<name>/_manifests/revisions/sha256/<hex>/link` says a repository has a manifest.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from django.core.cache import cache

from .registry.names import NAME_RE

#: Any algorithm the registry may print, as `garbage-collect` does; the hex part at least 32 long.
DIGEST_PATTERN = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}"
DIGEST_RE = re.compile(DIGEST_PATTERN)

# -- the storage on disk ------------------------------------------------------------------------


def v2_root(storage_root: str | os.PathLike[str]) -> Path | None:
    """`<root>/docker/registry/v2` if it is a readable directory (also accepts that directory
    itself), else None."""
    root = Path(storage_root)
    for candidate in (root / "docker" / "registry" / "v2", root):
        if (candidate / "blobs").is_dir() or (candidate / "repositories").is_dir():
            return candidate if os.access(candidate, os.R_OK | os.X_OK) else None
    if (root / "docker" / "registry" / "v2").is_dir():  # an empty registry: no blobs yet
        return root / "docker" / "registry" / "v2"
    return None


def _split(digest: str) -> tuple[str, str]:
    if not DIGEST_RE.fullmatch(digest):
        raise ValueError(f"not a digest: {digest!r}")
    alg, hexpart = digest.split(":", 1)
    return alg, hexpart.lower()


def blob_data_path(storage_root: str | os.PathLike[str], digest: str) -> Path:
    """Where the filesystem driver keeps a blob's bytes (digest checked, so no path tricks)."""
    alg, hexpart = _split(digest)
    base = v2_root(storage_root) or Path(storage_root) / "docker" / "registry" / "v2"
    return base / "blobs" / alg / hexpart[:2] / hexpart / "data"


def manifest_link_path(storage_root: str | os.PathLike[str], repo: str, digest: str) -> Path:
    """The revision link that makes `digest` a manifest of `repo` (gone once it is deleted)."""
    alg, hexpart = _split(digest)
    if not NAME_RE.fullmatch(repo):
        raise ValueError(f"not a repository name: {repo!r}")
    base = v2_root(storage_root) or Path(storage_root) / "docker" / "registry" / "v2"
    return base / "repositories" / repo / "_manifests" / "revisions" / alg / hexpart / "link"


def layer_link_path(storage_root: str | os.PathLike[str], repo: str, digest: str) -> Path:
    """The link that makes blob `digest` readable in `repo` (garbage collection leaves it)."""
    alg, hexpart = _split(digest)
    if not NAME_RE.fullmatch(repo):
        raise ValueError(f"not a repository name: {repo!r}")
    base = v2_root(storage_root) or Path(storage_root) / "docker" / "registry" / "v2"
    return base / "repositories" / repo / "_layers" / alg / hexpart / "link"


def scan_blobs(storage_root: str | os.PathLike[str]) -> dict[str, int]:
    """Every blob in the storage and the size of its `data` file (a blob being written has
    no `data` yet and is left out). Empty when the storage cannot be read."""
    base = v2_root(storage_root)
    sizes: dict[str, int] = {}
    if base is None:
        return sizes
    blobs = base / "blobs"
    try:
        algs = list(os.scandir(blobs))
    except OSError:
        return sizes
    for alg in algs:
        if not alg.is_dir(follow_symlinks=False):
            continue
        try:
            prefixes = list(os.scandir(alg.path))
        except OSError:
            continue
        for prefix in prefixes:
            try:
                entries = list(os.scandir(prefix.path))
            except OSError:
                continue
            for entry in entries:
                try:
                    sizes[f"{alg.name}:{entry.name}"] = os.stat(os.path.join(entry.path, "data")).st_size
                except OSError:
                    continue  # removed meanwhile, or never completed
    return sizes


def storage_bytes(storage_root: str | os.PathLike[str]) -> int:
    """Bytes of blob data in the storage: what garbage collection can give back."""
    return sum(scan_blobs(storage_root).values())


def blob_sizes(storage_root: str | os.PathLike[str], digests: Iterable[str]) -> dict[str, int]:
    """Size of each blob's `data` file; blobs not on disk (or not digests) are left out."""
    sizes: dict[str, int] = {}
    for digest in digests:
        try:
            sizes[digest] = blob_data_path(storage_root, digest).stat().st_size
        except (OSError, ValueError):
            continue
    return sizes


# -- the totals, measured once per change --------------------------------------------------------

#: Bounds how long a measurement is kept; a change on disk replaces it at once (`blob_totals`).
TOTALS_TTL = 60


def blob_stamp(storage_root: str | os.PathLike[str]) -> str:
    """Changes whenever a blob is added or removed: the modification times of the blob
    directories' parents (`blobs/<alg>/` and `blobs/<alg>/<2 hex>/`, about 257 stat calls), which
    a push (a new blob directory) and a garbage collection (one removed) both touch."""
    base = v2_root(storage_root)
    if base is None:
        return ""
    parts: list[str] = []
    try:
        for alg in sorted(os.scandir(base / "blobs"), key=lambda d: d.name):
            if not alg.is_dir(follow_symlinks=False):
                continue
            parts.append(f"{alg.name}:{alg.stat().st_mtime_ns}")
            for prefix in os.scandir(alg.path):
                parts.append(f"{prefix.name}:{prefix.stat().st_mtime_ns}")
    except OSError:
        return ""  # unreadable: measured each time (the walk says what it can)
    return hashlib.sha256("|".join(sorted(parts)).encode()).hexdigest()[:20]


def blob_totals(storage_root: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(blob files, bytes) the storage holds, or None when it cannot be read. Walking every blob
    is slow on a big storage, so the reading is kept, but only while `blob_stamp` says nothing
    was added or removed: after a garbage collection (in the worker, another process) or a push,
    the next reading measures again, on every page that shows it."""
    if v2_root(storage_root) is None:
        return None
    root = os.path.realpath(storage_root)
    stamp = blob_stamp(root)
    key = f"rui:disk:{hashlib.sha256(root.encode()).hexdigest()[:12]}:{stamp}"
    found = cache.get(key) if stamp else None
    if found is None:
        sizes = scan_blobs(root)
        found = (len(sizes), sum(sizes.values()))
        if stamp:
            cache.set(key, found, TOTALS_TTL)
    return found
