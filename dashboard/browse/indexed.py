"""The browsing pages' reads from the index: a repository's tags paged and sorted, how fresh the
index is, and the catalog.

Every function here runs a small, fixed number of queries whatever the size of the registry: the
database sorts, filters and pages; Python only shapes the rows of one page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Case, CharField, Count, Exists, F, Max, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.expressions import Combinable, OrderBy
from django.db.models.functions import Coalesce, Concat, Substr
from django.utils import timezone

from ..models import (IndexedBlob, IndexedManifest, IndexedRepository, IndexedTag, ManifestChild, RegistryEvent,
                      SyncRun, TagHistory)
from ..ordering import DESC, INDEXED_TAGS, by_name, by_version, c_order, version_key
from ..registry import kinds
from ..registry.names import attachment_target, is_digest
from ..web import ago
from .live import GROUP_COLOURS, Attachment, CatalogRow, PlatformRow, TagCount, TagRow, attachment

# -- a repository's tags ---------------------------------------------------------------------

# cosign (`.sig`, `.att`, `.sbom`) and OCI referrers-fallback tags: shown on the image they name.
_ATTACHMENT_REGEX = r"^sha256-[a-f0-9]{64}(\.(sig|att|sbom))?$"
# The cheap prefix first, so the regular expression only runs on the few names that start so.
ATTACHMENT_TAG = Q(name__startswith="sha256-") & Q(name__regex=_ATTACHMENT_REGEX)
ATTACHMENT_SUFFIXES = ("", ".sig", ".att", ".sbom")

#: How many tags sharing a row's image are named before "and N more".
SHARED_SHOWN = 12
ORPHANS_SHOWN = 50


def _ordering(sort: str, descending: bool) -> list[OrderBy]:
    """ORDER BY for a sort: the database's version of dashboard.browse.live.sort_rows."""
    name = c_order("name").asc()  # last resort: names whose version keys tie keep the registry's order

    def column(expr: Combinable) -> OrderBy:
        return expr.desc(nulls_last=True) if descending else expr.asc(nulls_first=True)

    def text(field: str) -> Combinable:
        return c_order(Coalesce(F(field), Value(""), output_field=CharField()))

    # Each column's own order first; tags that tie on it, by version.
    columns = {"created": [F("manifest__created")], "size": [Coalesce(F("manifest__image_size"), Value(0))],
               "platform": [text("manifest__platforms")], "kind": [text("manifest__kind")],
               "image": [F("manifest__created"), c_order("digest")]}
    if sort in columns:
        return [*map(column, columns[sort]), *by_version(descending), name]
    return [*by_name(descending), name]


@dataclass(frozen=True)
class IndexedTagRow(TagRow):
    """A row as the live page has it, plus what only the index knows."""

    #: The tag's manifest is not indexed yet (an event named it; the fetch is pending).
    pending: bool = False
    #: How many more tags share this image than `shared_with` names.
    shared_more: int = 0
    updated_at: datetime | None = None


@dataclass
class TagPage:
    """One page of a repository's tags, and what the page needs to say about the rest."""

    name: str
    rows: list[IndexedTagRow]
    sort: str
    order: str
    q: str
    platform: str
    kind: str
    number: int
    per_page: int
    #: Tags that match the filters (attachment tags aside).
    total: int
    #: Distinct images among them.
    image_count: int
    #: Every tag of the repository, attachment tags included.
    tag_count: int
    attachment_count: int
    orphans: list[Attachment] = field(default_factory=list)
    orphan_count: int = 0
    detailed: bool = True

    @property
    def plain_count(self) -> int:
        """Tags that are not attachments, filters aside."""
        return max(0, self.tag_count - self.attachment_count)

    @property
    def counts(self) -> TagCount:
        return TagCount(tags=self.plain_count, attachments=self.attachment_count)

    @property
    def filtered(self) -> bool:
        return bool(self.q or self.platform or self.kind)

    @property
    def num_pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages

    @property
    def start_index(self) -> int:
        return (self.number - 1) * self.per_page + 1 if self.total else 0

    @property
    def end_index(self) -> int:
        return min(self.number * self.per_page, self.total)


def _platform_q(platform: str) -> Q:
    # `platforms` is space-separated: match a whole entry, so linux/arm does not find linux/arm64.
    return (Q(manifest__platforms=platform) | Q(manifest__platforms__startswith=platform + " ")
            | Q(manifest__platforms__endswith=" " + platform) | Q(manifest__platforms__contains=f" {platform} "))


def _matching(repo_id: int, q: str, platform: str, kind: str) -> QuerySet[IndexedTag]:
    tags = IndexedTag.objects.filter(repository_id=repo_id).exclude(ATTACHMENT_TAG)
    if q:
        tags = tags.filter(name__icontains=q)
    if platform:
        tags = tags.filter(_platform_q(platform))
    if kind:
        tags = tags.filter(manifest__kind=kind)
    return tags


_ROW_FIELDS = ("name", "digest", "manifest_id", "updated_at", "manifest__media_type",
               "manifest__kind", "manifest__image_size", "manifest__created", "manifest__platforms",
               "manifest__problem")


def tag_page(name: str, *, sort: str = "name", order: str = "", q: str = "", platform: str = "", kind: str = "",
             page: int | str = 1, per_page: int = 100) -> TagPage:
    """One page of `name`'s tags from the index, sorted, filtered and paged by the database."""
    sort, order = INDEXED_TAGS.parse(sort, order)
    q, platform, kind = q.strip()[:128], platform.strip()[:100], kind.strip()[:20]
    repo = IndexedRepository.objects.filter(name=name).values("id", "tag_count").first()
    if repo is None:
        return TagPage(name=name, rows=[], sort=sort, order=order, q=q, platform=platform, kind=kind, number=1,
                       per_page=per_page, total=0, image_count=0, tag_count=0, attachment_count=0)
    matching = _matching(repo["id"], q, platform, kind)
    counts = matching.aggregate(total=Count("id"), images=Count("digest", distinct=True))
    total = counts["total"]
    try:
        number = int(page)
    except (TypeError, ValueError):
        number = 1
    # Out of range lands on a real page, as the catalog's paginator does.
    number = min(max(number, 1), max(1, -(-total // per_page)))
    offset = (number - 1) * per_page
    # Sort and cut narrow rows (ids), then read the page's hundred rows whole: the database
    # never carries every column of 20,000 tags through the sort.
    ids = list(matching.order_by(*_ordering(sort, order == DESC)).values_list("id", flat=True)
               [offset:offset + per_page])
    by_id = {r["id"]: r for r in IndexedTag.objects.filter(id__in=ids).values("id", *_ROW_FIELDS)}
    found = [by_id[pk] for pk in ids if pk in by_id]
    attachments = IndexedTag.objects.filter(repository_id=repo["id"]).filter(ATTACHMENT_TAG)
    counted = tag_counts([repo["id"]], totals={repo["id"]: repo["tag_count"]})[repo["id"]]
    result = TagPage(name=name, rows=_rows(repo["id"], found), sort=sort, order=order, q=q, platform=platform,
                     kind=kind, number=number, per_page=per_page, total=total, image_count=counts["images"],
                     tag_count=counted.total, attachment_count=counted.attachments)
    if result.attachment_count:
        result.orphans, result.orphan_count = _orphans(repo["id"], attachments)
    return result


def tag_counts(repo_ids: list[int] | None = None, totals: dict[int, int] | None = None) -> dict[int, TagCount]:
    """The one count of indexed repositories' tags (of these, or of every one), the way
    live.count_tags counts a tag list read from the registry: two queries whatever the number,
    one when the caller has read the repositories' `tag_count` already (`totals`)."""
    if totals is None:
        repos = IndexedRepository.objects.all() if repo_ids is None else IndexedRepository.objects.filter(
            id__in=repo_ids)
        totals = dict(repos.values_list("id", "tag_count"))
    tags = IndexedTag.objects.filter(ATTACHMENT_TAG)
    if repo_ids is not None:
        tags = tags.filter(repository_id__in=repo_ids)
    attached = dict(tags.values("repository_id").annotate(n=Count("id")).values_list("repository_id", "n"))
    return {pk: TagCount(tags=max(0, total - attached.get(pk, 0)), attachments=attached.get(pk, 0))
            for pk, total in totals.items()}


def _rows(repo_id: int, found: list[dict]) -> list[IndexedTagRow]:
    digests = sorted({r["digest"] for r in found if r["digest"]})
    shared = _shared(repo_id, digests)
    colours = {d: i % GROUP_COLOURS for i, d in enumerate(sorted(d for d, tags in shared.items() if len(tags) > 1))}
    attached = _attachments(repo_id, digests)
    platforms = _index_platforms([r["manifest_id"] for r in found
                                  if r["manifest_id"] and r["manifest__platforms"] and _is_index_kind(r)])
    rows = []
    for r in found:
        # Whatever the index holds goes into URLs only when it is a digest.
        digest = r["digest"] if is_digest(r["digest"]) else ""
        others = [t for t in shared.get(digest, ()) if t != r["name"]]
        others.sort(key=version_key)
        indexed = r["manifest_id"] is not None
        own = r["manifest__platforms"] or ""
        if indexed and r["manifest_id"] in platforms:
            plats = platforms[r["manifest_id"]]
        elif indexed and own and " " not in own:
            plats = (PlatformRow(platform=own, digest=digest, size=r["manifest__image_size"] or 0,
                                 created=r["manifest__created"], kind=r["manifest__kind"] or ""),)
        else:
            plats = ()
        rows.append(IndexedTagRow(
            tag=r["name"], digest=digest, media_type=r["manifest__media_type"] or "", kind=r["manifest__kind"] or "",
            size=r["manifest__image_size"] or 0, created=r["manifest__created"], platforms=plats,
            problem=r["manifest__problem"] or "", shared_with=tuple(others[:SHARED_SHOWN]),
            shared_more=max(0, len(others) - SHARED_SHOWN), attachments=tuple(attached.get(digest, ())),
            group=colours.get(digest, -1), pending=not indexed, updated_at=r["updated_at"]))
    return rows


def _is_index_kind(row: dict) -> bool:
    # An index lists its platforms in `platforms`; so may an artifact index (kind by artifact type).
    return row["manifest__media_type"] in ("application/vnd.oci.image.index.v1+json",
                                           "application/vnd.docker.distribution.manifest.list.v2+json")


def _shared(repo_id: int, digests: list[str]) -> dict[str, list[str]]:
    """Every tag of the repository that points at one of these digests."""
    if not digests:
        return {}
    out: dict[str, list[str]] = {}
    for digest, tag in (IndexedTag.objects.filter(repository_id=repo_id, digest__in=digests)
                        .exclude(ATTACHMENT_TAG).values_list("digest", "name")):
        out.setdefault(digest, []).append(tag)
    return out


def _attachments(repo_id: int, digests: list[str]) -> dict[str, list[Attachment]]:
    """Attachments of these images: cosign and referrers-fallback tags that name them, and
    manifests of the repository whose `subject` is one of them."""
    if not digests:
        return {}
    names = [f"sha256-{d.split(':', 1)[1]}{suffix}" for d in digests if d.startswith("sha256:")
             for suffix in ATTACHMENT_SUFFIXES]
    out: dict[str, list[Attachment]] = {}
    fallback: dict[str, str] = {}  # referrers-fallback index digest -> the image it names
    for tag, digest, kind in (IndexedTag.objects.filter(repository_id=repo_id, name__in=names)
                              .order_by("name").values_list("name", "digest", "manifest__kind")):
        found = attachment(tag, kind)
        if attachment_target(tag)[1] == "referrers":  # type: ignore[index]
            fallback[digest] = found.target
        out.setdefault(found.target, []).append(found)
    referrers = list(IndexedManifest.objects.filter(
        subject__in=digests, repository_links__repository_id=repo_id, repository_links__deleted_at__isnull=True,
    ).order_by("digest").values_list("digest", "subject", "kind"))
    if referrers:
        # A referrer the fallback tag's index lists is already shown as that tag.
        listed = set(ManifestChild.objects.filter(parent__digest__in=list(fallback),
                                                  digest__in=[d for d, _, _ in referrers])
                     .values_list("parent__digest", "digest"))
        for digest, subject, kind in referrers:
            if any((index, digest) in listed for index, target in fallback.items() if target == subject):
                continue
            out.setdefault(subject, []).append(Attachment(tag=digest, kind=kind or kinds.ARTIFACT, target=subject))
    return out


def _index_platforms(index_ids: list[int]) -> dict[int, tuple[PlatformRow, ...]]:
    """Each index's platforms with their own size, as the manifest lists them."""
    if not index_ids:
        return {}
    child = IndexedManifest.objects.filter(digest=OuterRef("digest"))
    found = (ManifestChild.objects.filter(parent_id__in=index_ids)
             .annotate(size=Subquery(child.values("image_size")[:1]), created=Subquery(child.values("created")[:1]),
                       kind=Subquery(child.values("kind")[:1]), problem=Subquery(child.values("problem")[:1]))
             .order_by("parent_id", "id").values("parent_id", "digest", "platform", "attestation", "size", "created",
                                                 "kind", "problem"))
    out: dict[int, list[PlatformRow]] = {}
    for c in found:
        kind = kinds.ATTESTATION if c["attestation"] else (c["kind"] or "")
        if not is_digest(c["digest"]):
            continue
        out.setdefault(c["parent_id"], []).append(PlatformRow(
            platform=c["platform"] or "unknown", digest=c["digest"], size=c["size"] or 0, created=c["created"],
            kind=kind, problem=c["problem"] or ("" if c["size"] is not None else "not indexed yet")))
    return {k: tuple(v) for k, v in out.items()}


def _orphans(repo_id: int, attachments: QuerySet[IndexedTag]) -> tuple[list[Attachment], int]:
    """Attachment tags whose image no tag of the repository points at."""
    target = Concat(Value("sha256:"), Substr(OuterRef("name"), 8, 64))
    tagged = IndexedTag.objects.filter(repository_id=repo_id, digest=target).exclude(ATTACHMENT_TAG)
    orphans = attachments.exclude(Exists(tagged)).order_by(c_order("name"))
    total = orphans.count()
    if not total:
        return [], 0
    return [attachment(tag, kind) for tag, kind in orphans.values_list("name", "manifest__kind")[:ORPHANS_SHOWN]], total


@dataclass(frozen=True)
class Facets:
    """What the filter offers: the platforms and kinds the repository's tags have."""

    platforms: list[str]
    kinds: list[str]


def facets(name: str) -> Facets:
    pairs = list(IndexedTag.objects.filter(repository__name=name, manifest__isnull=False).exclude(ATTACHMENT_TAG)
                 .values_list("manifest__platforms", "manifest__kind").distinct())
    platforms = {p for plats, _ in pairs for p in (plats or "").split() if p != "unknown"}
    return Facets(platforms=sorted(platforms), kinds=sorted({kind for _, kind in pairs if kind}))


def blob_media_type(digest: str) -> str:
    """The media type a manifest gave this blob, when the index has read one that names it."""
    return IndexedBlob.objects.filter(digest=digest).values_list("media_type", flat=True).first() or ""


# -- how fresh ---------------------------------------------------------------------------------


_CAUSES = {TagHistory.Source.SYNC: "a sync", TagHistory.Source.DASHBOARD: "the dashboard",
           TagHistory.Source.ROLLBACK: "a roll back"}


@dataclass(frozen=True)
class Freshness:
    """How current the index is for one repository (or for the registry), said in a sentence."""

    synced_at: datetime | None
    sentence: str


def _freshness(changed_at: datetime | None, changed_by: str, synced_at: datetime | None,
               events: QuerySet[RegistryEvent], now: datetime | None, no_sync: str = "no full sync yet") -> Freshness:
    now = now or timezone.now()
    event = events.filter(source=RegistryEvent.Source.REGISTRY).order_by("-at", "-id").values(
        "received_at", "action").first() or {}
    parts = []
    if changed_at is not None:
        parts.append(f"Index updated {ago(changed_at, now)}" + (f" by {changed_by}" if changed_by else ""))
    parts.append(f"full sync {ago(synced_at, now)}" if synced_at is not None else no_sync)
    # The last event the registry sent (a pull counts): later than the change, it still says the
    # registry's notifications arrive.
    event_at = event.get("received_at")
    if event_at is not None and (changed_at is None or event_at > changed_at + timedelta(seconds=1)):
        parts.append(f"last registry event ({event['action']}) {ago(event_at, now)}")
    text = " · ".join(parts)
    return Freshness(synced_at=synced_at, sentence=text[0].upper() + text[1:])


def freshness(name: str, *, now: datetime | None = None) -> Freshness:
    repo = IndexedRepository.objects.filter(name=name).values("changed_at", "synced_at").first() or {}
    changed_at = repo.get("changed_at")
    changed_by = ""
    if changed_at is not None:
        # What made the last change: "a push event", "a sync", "the dashboard", …
        cause = TagHistory.objects.filter(repository=name, at=changed_at).values("source", "digest").first()
        if cause is not None:
            if cause["source"] == TagHistory.Source.EVENT:
                changed_by = "a push event" if cause["digest"] else "a delete event"
            else:
                changed_by = _CAUSES.get(cause["source"], "")
    return _freshness(changed_at, changed_by, repo.get("synced_at"), RegistryEvent.objects.filter(repository=name), now)


def registry_freshness(*, now: datetime | None = None) -> Freshness:
    """The index as a whole: its last change, last finished sync, last event received."""
    changed_at = IndexedRepository.objects.aggregate(at=Max("changed_at"))["at"]
    # A sync of a few repositories is not a full one; until one finished, the index may lack some.
    runs = SyncRun.objects.filter(state=SyncRun.State.SUCCEEDED, finished_at__isnull=False).order_by("-finished_at")
    synced_at = next((at for at, scope in runs.values_list("finished_at", "repositories")[:20] if not scope), None)
    return _freshness(changed_at, "", synced_at, RegistryEvent.objects.all(), now,
                      no_sync="no full sync has finished yet: some repositories may be missing")


# -- the catalog -------------------------------------------------------------------------------


def index_has_repositories() -> bool:
    """The index has been filled by a sync at least once: the catalog can come from it."""
    return IndexedRepository.objects.filter(synced_at__isnull=False).exists()


def catalog_repositories(q: str = "", folded: frozenset[str] = frozenset()) -> QuerySet[IndexedRepository]:
    """The indexed repositories whose name has every word of `q`, by name (page it)."""
    repos = IndexedRepository.objects.all()
    for term in q.lower().split():
        repos = repos.filter(name__contains=term)
    # A repository that lost every tag stays until garbage collection, as in the registry's catalog.
    # Namespace first, as the live catalog: each namespace's repositories under one heading, the
    # folded ones (live.folded_namespaces) after the rest.
    if folded:
        repos = repos.annotate(folded=Case(When(namespace__in=sorted(folded), then=Value(1)), default=Value(0)))
        return repos.order_by("folded", c_order("namespace"), c_order("name"))
    return repos.order_by(c_order("namespace"), c_order("name"))


def namespace_totals(q: str = "") -> dict[str, int]:
    """How many of the repositories `catalog_repositories(q)` lists each namespace has."""
    return dict(catalog_repositories(q).order_by().values("namespace").annotate(n=Count("id"))
                .values_list("namespace", "n"))


def catalog_entries(repos: Iterable[IndexedRepository]) -> list[CatalogRow]:
    repos = list(repos)
    counts = tag_counts([repo.pk for repo in repos], totals={repo.pk: repo.tag_count for repo in repos})
    return [CatalogRow(name=repo.name, counts=counts.get(repo.pk, TagCount(0)), changed_at=repo.changed_at,
                       synced=repo.synced_at is not None) for repo in repos]
