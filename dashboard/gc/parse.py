"""Reading what Distribution's `garbage-collect` prints, and what its storage holds on disk.

Plain Python (no Django), so it can be tested on captured output. The format is registry
2.8.2's (`docker-registry garbage-collect [--dry-run] [--delete-untagged] config.yml`); 3.x
prints the same lines. On stdout, in this order:

    acme/a                                                      one line per repository, then
    acme/a: marking manifest sha256:6b4a…                       (trailing space) a tagged or kept manifest
    acme/a: marking blob sha256:5f34…                           its config, layers, or index children
    manifest eligible for deletion: sha256:f0a2…                only with --delete-untagged: an untagged
                                                                manifest of the repository above
    <blank line>
    10 blobs marked, 3 blobs and 0 manifests eligible for deletion
    blob eligible for deletion: sha256:2b58…                    one per unreferenced blob; a real run
                                                                deletes each right after printing it

A real run also logs what it removes, but only when the config's `log.level` is `info` or
lower (registry:2's default config says `info`; a `warn` config logs nothing). On stderr,
logrus text or JSON:

    time="…" level=info msg="deleting manifest: /docker/…/repositories/acme/multi/_manifests/revisions/sha256/f0a2…" …
    time="…" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/2b/2b58…" …

A failure is one line on stderr and exit code 1, e.g. `configuration error: open /x.yml: no
such file or directory` (followed by the usage text) or `failed to garbage collect: …` (no
trailing newline).

Storage: `<root>/docker/registry/v2/blobs/sha256/<2 hex>/<64 hex>/data` holds each blob,
`…/repositories/<name>/_manifests/revisions/sha256/<hex>/link` says a repository has a manifest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..disk import DIGEST_PATTERN as _DIGEST

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_LINE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_MARKING = re.compile(rf"(?P<repo>\S+): marking (?P<kind>manifest|blob) (?P<digest>{_DIGEST})\s*")
_ELIGIBLE_MANIFEST = re.compile(rf"manifest eligible for deletion: (?P<digest>{_DIGEST})\s*")
_SUMMARY = re.compile(r"(?P<marked>\d+) blobs marked, (?P<blobs>\d+) blobs and (?P<manifests>\d+) "
                      r"manifests eligible for deletion\s*")
_ELIGIBLE_BLOB = re.compile(rf"blob eligible for deletion: (?P<digest>{_DIGEST})\s*")
# Log lines (stderr, logrus text or JSON): what a real run removed, when it logs at info.
_DELETING_BLOB = re.compile(r"Deleting blob: \S*?/blobs/(?P<alg>[a-z0-9]+)/[0-9a-f]{2}/(?P<hex>[0-9a-f]{32,})")
_DELETING_MANIFEST = re.compile(r"deleting manifest: \S*?/repositories/(?P<repo>\S+?)/_manifests/revisions/"
                                r"(?P<alg>[a-z0-9]+)/(?P<hex>[0-9a-f]{32,})")
_FAILURE = re.compile(r"(?:failed to garbage collect|configuration error|failed to construct \S+ driver"
                      r"|unable to \S+ )[^\n]*|.*\blevel=(?:error|fatal|panic)\b.*"
                      r"|.*\"level\":\s*\"(?:error|fatal|panic)\".*")


@dataclass(frozen=True)
class ManifestRef:
    """A manifest in one repository (what --delete-untagged removes is per repository)."""

    repo: str
    digest: str

    def __str__(self) -> str:
        return f"{self.repo}@{self.digest}"


@dataclass(frozen=True)
class Summary:
    """The line between marking and sweeping: `N blobs marked, M blobs and K manifests eligible…`."""

    marked: int
    blobs: int
    manifests: int


@dataclass(frozen=True)
class GCReport:
    """Everything one run's output says, in the order it said it."""

    repositories: tuple[str, ...] = ()
    #: unique digests marked (in use) per repository, manifests and blobs alike; 0 for a
    #: repository that holds nothing in use any more
    marked_by_repo: Mapping[str, int] = field(default_factory=dict)
    #: unique digests marked across the registry (what the summary line counts)
    marked_digests: int = 0
    eligible_manifests: tuple[ManifestRef, ...] = ()
    eligible_blobs: tuple[str, ...] = ()
    summary: Summary | None = None
    #: from info-level log lines of a real run; empty when the registry logs at warn or above
    deleted_manifests: tuple[ManifestRef, ...] = ()
    deleted_blobs: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def marked(self) -> int:
        return self.summary.marked if self.summary else self.marked_digests

    @property
    def sweeping(self) -> bool:
        """Marking is over: the summary line came (a real run deletes from here on)."""
        return self.summary is not None

    @property
    def phase(self) -> str:
        return "sweeping" if self.sweeping else "marking"


class Parser:
    """Fed line by line while the command runs: counters are right at any moment, and memory
    stays bounded by what is kept (digests), not by the output's length."""

    def __init__(self) -> None:
        self._repo = ""
        self._repos: list[str] = []
        self._marked: dict[str, set[str]] = {}
        self._all_marked: set[str] = set()
        self._eligible_manifests: dict[ManifestRef, None] = {}
        self._eligible_blobs: dict[str, None] = {}
        self._deleted_manifests: dict[ManifestRef, None] = {}
        self._deleted_blobs: dict[str, None] = {}
        self._summary: Summary | None = None
        self._errors: list[str] = []

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if not line.strip():
            return
        if m := _MARKING.fullmatch(line):
            repo, digest = m["repo"], m["digest"]
            self._marked.setdefault(repo, set()).add(digest)
            self._all_marked.add(digest)
        elif m := _ELIGIBLE_BLOB.fullmatch(line):
            self._eligible_blobs[m["digest"]] = None
        elif m := _ELIGIBLE_MANIFEST.fullmatch(line):
            self._eligible_manifests[ManifestRef(self._repo, m["digest"])] = None
        elif m := _SUMMARY.fullmatch(line):
            self._summary = Summary(int(m["marked"]), int(m["blobs"]), int(m["manifests"]))
        elif self._summary is None and _REPO_LINE.fullmatch(line):
            # The repository header: only before the summary, so a stray word later is not one.
            self._repo = line
            if line not in self._marked:
                self._repos.append(line)
                self._marked[line] = set()
        elif m := _DELETING_BLOB.search(line):
            self._deleted_blobs[f"{m['alg']}:{m['hex']}"] = None
        elif m := _DELETING_MANIFEST.search(line):
            self._deleted_manifests[ManifestRef(m["repo"], f"{m['alg']}:{m['hex']}")] = None
        elif _FAILURE.fullmatch(line):
            self._errors.append(line.strip())

    @property
    def sweeping(self) -> bool:
        return self._summary is not None

    def progress(self) -> tuple[int, int, int]:
        """(marked, eligible blobs, eligible manifests) so far, without building a report."""
        if self._summary is not None:
            return self._summary.marked, self._summary.blobs, self._summary.manifests
        return len(self._all_marked), len(self._eligible_blobs), len(self._eligible_manifests)

    def feed_all(self, lines: Iterable[str]) -> Parser:
        for line in lines:
            self.feed(line)
        return self

    def report(self) -> GCReport:
        repos = list(self._repos) + [r for r in self._marked if r not in self._repos]
        return GCReport(
            repositories=tuple(repos),
            marked_by_repo={r: len(self._marked[r]) for r in repos},
            marked_digests=len(self._all_marked),
            eligible_manifests=tuple(self._eligible_manifests),
            eligible_blobs=tuple(self._eligible_blobs),
            summary=self._summary,
            deleted_manifests=tuple(self._deleted_manifests),
            deleted_blobs=tuple(self._deleted_blobs),
            errors=tuple(self._errors),
        )


def parse(text: str) -> GCReport:
    """The report of a whole output (stdout and stderr, in any interleaving)."""
    return Parser().feed_all(text.splitlines()).report()
