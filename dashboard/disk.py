"""The registry's storage directory, read from disk: which blobs it holds and how big they are.

Storage: `<root>/docker/registry/v2/blobs/sha256/<2 hex>/<64 hex>/data` holds each blob,
`…/repositories/<name>/_manifests/revisions/sha256/<hex>/link` says a repository has a manifest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

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
