"""The global search: repositories, tags, digests and labels, answered by the index alone."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Case, Count, Q, Value, When

from ..models import (IndexedBlob, IndexedManifest, IndexedRepository, IndexedTag, ManifestBlob, ManifestChild,
                      RepositoryManifest)
from ..browse import indexed
from ..browse.live import TagCount
from ..ordering import by_version, c_order, version_key
from ..registry.names import is_digest, is_name, is_tag

# -- search ------------------------------------------------------------------------------------

_DIGEST_TERM = re.compile(r"(?:(sha256|sha512)[:-])?([0-9a-f]+)")
_HEX = "0123456789abcdef"


@dataclass(frozen=True)
class RepoHit:
    name: str
    #: Counted as the catalog counts (browse.indexed.tag_counts).
    counts: TagCount
    changed_at: datetime | None


@dataclass(frozen=True)
class TagHit:
    repository: str
    tag: str
    digest: str
    kind: str
    created: datetime | None
    size: int

    @property
    def valid(self) -> bool:
        # What a hostile registry lists is shown, but never put into a URL.
        return is_name(self.repository) and is_tag(self.tag) and (not self.digest or is_digest(self.digest))


@dataclass(frozen=True)
class Place:
    """Where a manifest is: a repository, and the tags that reach it there (`via`: through this
    index, when the manifest is one platform of a multi-arch image)."""

    repository: str
    tags: tuple[str, ...]
    via: str = ""


@dataclass
class ManifestHit:
    digest: str
    kind: str
    media_type: str
    size: int
    created: datetime | None
    places: list[Place] = field(default_factory=list)
    places_more: int = 0
    #: For a label search: the label or annotation lines that matched.
    lines: list[str] = field(default_factory=list)

    @property
    def repository(self) -> str:
        """A repository to open the manifest in ("" when no repository holds it any more)."""
        return self.places[0].repository if self.places else ""


@dataclass
class BlobUse:
    manifest: ManifestHit
    role: str


@dataclass
class BlobHit:
    digest: str
    size: int
    media_type: str
    uses: list[BlobUse] = field(default_factory=list)
    uses_total: int = 0

    @property
    def repository(self) -> str:
        """A repository to open the blob in: the registry serves a blob only by a repository."""
        return next((u.manifest.repository for u in self.uses if u.manifest.repository), "")


@dataclass
class SearchResults:
    query: str
    repositories: list[RepoHit] = field(default_factory=list)
    repositories_total: int = 0
    tags: list[TagHit] = field(default_factory=list)
    tags_total: int = 0
    #: The query read as a digest (prefix), when it can be one.
    digest_prefix: str = ""
    manifests: list[ManifestHit] = field(default_factory=list)
    blobs: list[BlobHit] = field(default_factory=list)
    labels: list[ManifestHit] = field(default_factory=list)
    labels_total: int = 0
    index_empty: bool = False

    @property
    def total(self) -> int:
        return (self.repositories_total + self.tags_total + len(self.manifests) + len(self.blobs)
                + self.labels_total)


def digest_prefixes(term: str) -> list[str]:
    """The digest prefixes a search term can mean: `sha256:ab12…` (or cosign's `sha256-ab12…`)
    with any number of hex digits, or 6 and more bare hex digits."""
    match = _DIGEST_TERM.fullmatch(term.lower())
    if not match:
        return []
    algorithm, hexpart = match.groups()
    if algorithm:
        return [f"{algorithm}:{hexpart}"] if hexpart else []
    if len(hexpart) < 6:
        return []
    return [f"sha256:{hexpart}"] + ([f"sha512:{hexpart}"] if len(hexpart) > 64 else [])


def _prefix_q(prefixes: list[str], field_name: str = "digest") -> Q:
    """digest >= prefix and < the next prefix: a range on the unique index, never a LIKE scan.
    Digests are lowercase hex after the algorithm, so the next prefix stays in that alphabet."""
    q = Q(pk__in=[])
    for prefix in prefixes:
        last = prefix[-1]
        upper = prefix[:-1] + (_HEX[_HEX.index(last) + 1] if last in _HEX[:-1] else "g")
        q |= Q(**{f"{field_name}__gte": prefix, f"{field_name}__lt": upper})
    return q


def search(q: str, *, limit: int = 50) -> SearchResults:
    """Repositories, tags, digests (manifests and blobs) and labels matching `q`."""
    q = " ".join(q.split())[:200]
    results = SearchResults(query=q)
    if not q:
        results.index_empty = not IndexedRepository.objects.exists()
        return results
    terms = q.lower().split()

    repos = IndexedRepository.objects.all()
    for term in terms:
        repos = repos.filter(name__contains=term)
    results.repositories_total = repos.count()
    if results.repositories_total:
        found = list(repos.order_by(c_order("name")).values_list("id", "name", "changed_at", "tag_count")[:limit])
        counts = indexed.tag_counts([row[0] for row in found], totals={row[0]: row[3] for row in found})
        results.repositories = [RepoHit(name, counts.get(pk, TagCount(0)), changed_at)
                                for pk, name, changed_at, _ in found]
    elif not IndexedRepository.objects.exists():
        results.index_empty = True
        return results

    results.tags, results.tags_total = _search_tags(terms, limit)

    prefixes = [p for t in terms for p in digest_prefixes(t)]
    if prefixes:
        results.digest_prefix = prefixes[0]
        results.manifests = _search_manifests(prefixes, limit)
        results.blobs = _search_blobs(prefixes, limit)

    labels = IndexedManifest.objects.all()
    for term in terms:
        labels = labels.filter(labels_text__icontains=term)
    results.labels_total = labels.count()
    if results.labels_total:
        hits = [ManifestHit(digest=d, kind=k, media_type=mt, size=s, created=c,
                            lines=_matching_lines(text, terms))
                for d, k, mt, s, c, text in labels.order_by("-created", "digest").values_list(
                    "digest", "kind", "media_type", "image_size", "created", "labels_text")[:limit]]
        _place(hits, limit)
        results.labels = hits
    return results


def _search_tags(terms: list[str], limit: int) -> tuple[list[TagHit], int]:
    # Every word in the tag or its repository's name, one at least in the tag: "web 1.10" finds
    # acme/web:1.10.0 and not every tag of acme/web. The repository's words go through a
    # subquery of ids, so the count and the cut read one table and need no join plan.
    tags = IndexedTag.objects.filter(Q(*[Q(name__icontains=t) for t in terms], _connector=Q.OR))
    if len(terms) > 1:
        for term in terms:
            in_repo = IndexedRepository.objects.filter(name__contains=term).values("id")
            tags = tags.filter(Q(name__icontains=term) | Q(repository_id__in=in_repo))
    total = tags.count()
    if not total:
        return [], 0
    exact = Case(When(name__in=terms, then=Value(0)), default=Value(1))
    ids = list(tags.order_by(exact, c_order("name"), "repository_id").values_list("id", flat=True)[:limit])
    found = (IndexedTag.objects.filter(id__in=ids)
             .values_list("repository__name", "name", "digest", "manifest__kind", "manifest__created",
                          "manifest__image_size"))
    hits = [TagHit(repository=r, tag=t, digest=d, kind=k or "", created=c, size=s or 0) for r, t, d, k, c, s in found]
    # The page's hits: exact names first, then by repository, newest version first (two stable sorts).
    hits.sort(key=lambda h: version_key(h.tag), reverse=True)
    hits.sort(key=lambda h: (h.tag not in terms, h.repository))
    return hits, total


def _matching_lines(text: str, terms: list[str]) -> list[str]:
    lines = [line for line in text.splitlines() if any(t in line.lower() for t in terms)]
    return [line[:300] for line in lines[:8]]


def _search_manifests(prefixes: list[str], limit: int) -> list[ManifestHit]:
    hits = [ManifestHit(digest=d, kind=k, media_type=mt, size=s, created=c)
            for d, k, mt, s, c in IndexedManifest.objects.filter(_prefix_q(prefixes)).order_by("digest")
            .values_list("digest", "kind", "media_type", "image_size", "created")[:limit]
            # The range is exact on bytes; a collation may widen it: keep true prefixes only.
            if any(d.startswith(p) for p in prefixes)]
    _place(hits, limit)
    return hits


def _search_blobs(prefixes: list[str], limit: int) -> list[BlobHit]:
    blobs = [BlobHit(digest=d, size=s, media_type=mt)
             for pk, d, s, mt in IndexedBlob.objects.filter(_prefix_q(prefixes)).order_by("digest")
             .values_list("id", "digest", "size", "media_type")[:limit] if any(d.startswith(p) for p in prefixes)]
    if not blobs:
        return []
    by_digest = {b.digest: b for b in blobs}
    totals = dict(ManifestBlob.objects.filter(blob__digest__in=list(by_digest)).values("blob__digest")
                  .annotate(n=Count("id")).values_list("blob__digest", "n"))
    uses = list(ManifestBlob.objects.filter(blob__digest__in=list(by_digest))
                .order_by("blob__digest", "-manifest__created", "manifest__digest")
                .values_list("blob__digest", "role", "manifest__digest", "manifest__kind", "manifest__media_type",
                             "manifest__image_size", "manifest__created")[:limit * len(blobs)])
    manifests: dict[str, ManifestHit] = {}
    per_blob: dict[str, int] = {}
    for blob_digest, role, digest, kind, media_type, size, created in uses:
        if per_blob.get(blob_digest, 0) >= limit:
            continue
        per_blob[blob_digest] = per_blob.get(blob_digest, 0) + 1
        hit = manifests.setdefault(digest, ManifestHit(digest=digest, kind=kind, media_type=media_type, size=size,
                                                       created=created))
        by_digest[blob_digest].uses.append(BlobUse(manifest=hit, role=role))
    _place(list(manifests.values()), limit)
    for blob in blobs:
        blob.uses_total = totals.get(blob.digest, 0)
    return blobs


def _place(hits: list[ManifestHit], limit: int) -> None:
    """Fill each hit's places: the repositories that hold the manifest and the tags reaching it
    there, directly or through a multi-arch index that lists it. A fixed number of queries."""
    if not hits:
        return
    digests = [h.digest for h in hits]
    ids = dict(IndexedManifest.objects.filter(digest__in=digests).values_list("digest", "id"))
    parents: dict[str, list[tuple[int, str]]] = {}
    for child, parent_id, parent in ManifestChild.objects.filter(digest__in=digests).values_list(
            "digest", "parent_id", "parent__digest"):
        parents.setdefault(child, []).append((parent_id, parent))
    parent_digest = {pid: pd for links in parents.values() for pid, pd in links}
    tags: dict[tuple[int, str], list[str]] = {}  # (manifest id, repository) -> tags
    wanted = set(ids.values()) | set(parent_digest)
    for manifest_id, repo, tag in (IndexedTag.objects.filter(manifest_id__in=wanted)
                                   .order_by(c_order("repository__name"), *by_version(descending=True))
                                   .values_list("manifest_id", "repository__name", "name")[:limit * 20]):
        if is_tag(tag):
            tags.setdefault((manifest_id, repo), []).append(tag)
    counts = dict(RepositoryManifest.objects.filter(manifest_id__in=ids.values(), deleted_at__isnull=True)
                  .values("manifest_id").annotate(n=Count("id")).values_list("manifest_id", "n"))
    repos: dict[int, list[str]] = {}
    for manifest_id, repo in (RepositoryManifest.objects.filter(manifest_id__in=ids.values(), deleted_at__isnull=True)
                              .order_by(c_order("repository__name"))
                              .values_list("manifest_id", "repository__name")[:limit * len(ids)]):
        if len(repos.get(manifest_id, ())) < limit and is_name(repo):
            repos.setdefault(manifest_id, []).append(repo)
    for hit in hits:
        pk = ids.get(hit.digest)
        if pk is None:
            continue
        for repo in repos.get(pk, ()):
            direct = tags.get((pk, repo), [])
            through = [Place(repository=repo, tags=tuple(tags[(parent_id, repo)]), via=parent)
                       for parent_id, parent in parents.get(hit.digest, ()) if tags.get((parent_id, repo))]
            # A platform of a tagged multi-arch image is not "untagged": its index's tags reach it.
            if direct or not through:
                hit.places.append(Place(repository=repo, tags=tuple(direct)))
            hit.places.extend(through)
        hit.places_more = max(0, counts.get(pk, 0) - len(repos.get(pk, ())))
