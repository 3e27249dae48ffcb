"""What the pages read from the index: a repository's tags paged and sorted, how fresh the index
is, the catalog, and the global search.

Every function here runs a small, fixed number of queries whatever the size of the registry: the
database sorts, filters and pages; Python only shapes the rows of one page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import (Case, CharField, Count, Exists, F, Max, OuterRef, Q, QuerySet, Subquery, TextField, Value,
                              When)
from django.db.models.expressions import Combinable, OrderBy
from django.db.models.functions import Coalesce, Collate, Concat, Substr
from django.utils import timezone

from ..browse import GROUP_COLOURS, Attachment, PlatformRow, TagRow, version_key
from ..models import (IndexedBlob, IndexedManifest, IndexedRepository, IndexedTag, ManifestBlob, ManifestChild,
                      RegistryEvent, RepositoryManifest, SyncRun, TagHistory)
from ..registry import kinds
from ..registry.names import attachment_target, is_digest, is_name, is_tag

# -- ordering text the same way on every database --------------------------------------------


def c_order(expression: str | Combinable) -> Combinable:
    """`expression` compared byte by byte. PostgreSQL follows the database's collation, which
    ignores the spaces and punctuation `version_key` is made of; SQLite already compares bytes."""
    expr = F(expression) if isinstance(expression, str) else expression
    return Collate(expr, "C") if connection.vendor == "postgresql" else expr


# -- a repository's tags ---------------------------------------------------------------------

# cosign (`.sig`, `.att`, `.sbom`) and OCI referrers-fallback tags: shown on the image they name.
_ATTACHMENT_REGEX = r"^sha256-[a-f0-9]{64}(\.(sig|att|sbom))?$"
# The cheap prefix first, so the regular expression only runs on the few names that start so.
ATTACHMENT_TAG = Q(name__startswith="sha256-") & Q(name__regex=_ATTACHMENT_REGEX)
ATTACHMENT_SUFFIXES = ("", ".sig", ".att", ".sbom")

#: Column → is it newest/largest first when first clicked. "image" groups the tags of one image.
SORTS = {"name": True, "created": True, "size": True, "platform": False, "kind": False, "image": True}
#: How many tags sharing a row's image are named before "and N more".
SHARED_SHOWN = 12
ORPHANS_SHOWN = 50


def effective_order(sort: str, order: str) -> str:
    if order in ("asc", "desc"):
        return order
    return "desc" if SORTS.get(sort, True) else "asc"


def next_orders(sort: str, order: str) -> dict[str, str]:
    """For each sortable column, the order a click on its header asks for."""
    current = effective_order(sort, order)
    return {f"{col}_next": ("asc" if current == "desc" else "desc") if col == sort else effective_order(col, "")
            for col in SORTS}


def _ordering(sort: str, descending: bool) -> list[OrderBy]:
    """ORDER BY for a sort: the database's version of dashboard.browse.sort_rows."""
    key = c_order("version_key")
    name = c_order("name").asc()  # last resort: names whose version keys tie keep the registry's order

    def by_version(desc: bool) -> list[OrderBy]:
        return [F("is_version").desc() if desc else F("is_version").asc(), key.desc() if desc else key.asc()]

    def column(expr: Combinable) -> OrderBy:
        return expr.desc(nulls_last=True) if descending else expr.asc(nulls_first=True)

    if sort == "created":
        return [column(F("manifest__created")), *by_version(descending), name]
    if sort == "size":
        return [column(Coalesce(F("manifest__image_size"), Value(0))), *by_version(descending), name]
    if sort == "platform":
        return [column(c_order(Coalesce(F("manifest__platforms"), Value(""), output_field=CharField()))),
                *by_version(descending), name]
    if sort == "kind":
        return [column(c_order(Coalesce(F("manifest__kind"), Value(""), output_field=CharField()))),
                *by_version(descending), name]
    if sort == "image":
        return [column(F("manifest__created")), column(c_order("digest")), *by_version(descending), name]
    # By name: names that are not versions (latest, main) head the list in either direction,
    # only the versions below them turn around.
    if not descending:
        return [F("is_version").asc(), key.asc(), name]
    names_first = Case(When(is_version=False, then=F("version_key")), default=Value(""), output_field=TextField())
    return [F("is_version").asc(), c_order(names_first).asc(), key.desc(), name]


@dataclass(frozen=True)
class IndexedTagRow(TagRow):
    """A row as the live page has it, plus what only the index knows."""

    #: The tag's manifest is not indexed yet (an event named it; the fetch is pending).
    pending: bool = False
    #: How many more tags share this image than `shared_with` names.
    shared_more: int = 0
    updated_at: datetime | None = None
    last_pulled_at: datetime | None = None


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
    def previous_page_number(self) -> int:
        return self.number - 1

    @property
    def next_page_number(self) -> int:
        return self.number + 1

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


_ROW_FIELDS = ("name", "digest", "manifest_id", "updated_at", "last_pulled_at", "manifest__media_type",
               "manifest__kind", "manifest__image_size", "manifest__created", "manifest__platforms",
               "manifest__problem")


def tag_page(name: str, *, sort: str = "name", order: str = "", q: str = "", platform: str = "", kind: str = "",
             page: int | str = 1, per_page: int = 100) -> TagPage:
    """One page of `name`'s tags from the index, sorted, filtered and paged by the database."""
    sort = sort if sort in SORTS else "name"
    order = effective_order(sort, order)
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
    ids = list(matching.order_by(*_ordering(sort, order == "desc")).values_list("id", flat=True)
               [offset:offset + per_page])
    by_id = {r["id"]: r for r in IndexedTag.objects.filter(id__in=ids).values("id", *_ROW_FIELDS)}
    found = [by_id[pk] for pk in ids if pk in by_id]
    attachments = IndexedTag.objects.filter(repository_id=repo["id"]).filter(ATTACHMENT_TAG)
    result = TagPage(name=name, rows=_rows(repo["id"], found), sort=sort, order=order, q=q, platform=platform,
                     kind=kind, number=number, per_page=per_page, total=total, image_count=counts["images"],
                     tag_count=repo["tag_count"], attachment_count=attachments.count())
    if result.attachment_count:
        result.orphans, result.orphan_count = _orphans(repo["id"], attachments)
    return result


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
            group=colours.get(digest, -1), pending=not indexed, updated_at=r["updated_at"],
            last_pulled_at=r["last_pulled_at"]))
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
        target, by_name = attachment_target(tag)  # type: ignore[misc]
        if by_name == "referrers":
            fallback[digest] = target
            if kind in (kinds.SIGNATURE, kinds.SBOM, kinds.ATTESTATION):
                by_name = kind
        out.setdefault(target, []).append(Attachment(tag=tag, kind=by_name, target=target))
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
    out = []
    for tag, kind in orphans.values_list("name", "manifest__kind")[:ORPHANS_SHOWN]:
        digest, by_name = attachment_target(tag)  # type: ignore[misc]
        if by_name == "referrers" and kind in (kinds.SIGNATURE, kinds.SBOM, kinds.ATTESTATION):
            by_name = kind
        out.append(Attachment(tag=tag, kind=by_name, target=digest))
    return out, total


@dataclass(frozen=True)
class Facets:
    """What the filter offers: the platforms and kinds the repository's tags have."""

    platforms: list[str]
    kinds: list[str]


def facets(name: str) -> Facets:
    pairs = (IndexedTag.objects.filter(repository__name=name, manifest__isnull=False).exclude(ATTACHMENT_TAG)
             .values_list("manifest__platforms", "manifest__kind").distinct())
    platforms: set[str] = set()
    found_kinds: set[str] = set()
    for plats, kind in pairs:
        platforms.update(p for p in (plats or "").split() if p != "unknown")
        if kind:
            found_kinds.add(kind)
    return Facets(platforms=sorted(platforms), kinds=sorted(found_kinds))


# -- how fresh ---------------------------------------------------------------------------------


def ago(when: datetime, now: datetime | None = None) -> str:
    """“12 s ago”, “4 min ago”, “3 h ago”, “2 days ago”: short enough for a status line."""
    seconds = int(((now or timezone.now()) - when).total_seconds())
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    days = seconds // 86400
    return f"{days} day{'s' if days != 1 else ''} ago"


_CAUSES = {TagHistory.Source.SYNC: "a sync", TagHistory.Source.DASHBOARD: "the dashboard",
           TagHistory.Source.ROLLBACK: "a roll back"}


@dataclass(frozen=True)
class Freshness:
    """How current the index is for one repository (or, with `name` empty, the registry)."""

    name: str
    changed_at: datetime | None
    synced_at: datetime | None
    #: The last event the registry sent about this repository (a pull counts: the flow is alive).
    event_at: datetime | None
    event_action: str
    #: What made the last change: "a push event", "a sync", "the dashboard", …
    changed_by: str
    sentence: str


def _sentence(changed_at: datetime | None, changed_by: str, synced_at: datetime | None, event_at: datetime | None,
              event_action: str, now: datetime, no_sync: str = "no full sync yet") -> str:
    parts = []
    if changed_at is not None:
        parts.append(f"Index updated {ago(changed_at, now)}" + (f" by {changed_by}" if changed_by else ""))
    parts.append(f"full sync {ago(synced_at, now)}" if synced_at is not None else no_sync)
    # An event later than the change (a pull) still says the registry's notifications arrive.
    if event_at is not None and (changed_at is None or event_at > changed_at + timedelta(seconds=1)):
        parts.append(f"last registry event ({event_action}) {ago(event_at, now)}")
    text = " · ".join(parts)
    return text[0].upper() + text[1:]


def freshness(name: str, *, now: datetime | None = None) -> Freshness:
    now = now or timezone.now()
    repo = IndexedRepository.objects.filter(name=name).values("changed_at", "synced_at").first() or {}
    changed_at, synced_at = repo.get("changed_at"), repo.get("synced_at")
    event = (RegistryEvent.objects.filter(repository=name, source=RegistryEvent.Source.REGISTRY)
             .order_by("-at", "-id").values("received_at", "action").first())
    changed_by = ""
    if changed_at is not None:
        cause = TagHistory.objects.filter(repository=name, at=changed_at).values("source", "digest").first()
        if cause is not None:
            if cause["source"] == TagHistory.Source.EVENT:
                changed_by = "a push event" if cause["digest"] else "a delete event"
            else:
                changed_by = _CAUSES.get(cause["source"], "")
    event_at = event["received_at"] if event else None
    action = event["action"] if event else ""
    return Freshness(name=name, changed_at=changed_at, synced_at=synced_at, event_at=event_at, event_action=action,
                     changed_by=changed_by,
                     sentence=_sentence(changed_at, changed_by, synced_at, event_at, action, now))


def registry_freshness(*, now: datetime | None = None) -> Freshness:
    """The index as a whole: its last change, last finished sync, last event received."""
    now = now or timezone.now()
    changed_at = IndexedRepository.objects.aggregate(at=Max("changed_at"))["at"]
    # A sync of a few repositories is not a full one; until one finished, the index may lack some.
    runs = SyncRun.objects.filter(state=SyncRun.State.SUCCEEDED, finished_at__isnull=False).order_by("-finished_at")
    synced_at = next((at for at, scope in runs.values_list("finished_at", "repositories")[:20] if not scope), None)
    event = (RegistryEvent.objects.filter(source=RegistryEvent.Source.REGISTRY).order_by("-at", "-id")
             .values("received_at", "action").first())
    event_at = event["received_at"] if event else None
    action = event["action"] if event else ""
    return Freshness(name="", changed_at=changed_at, synced_at=synced_at, event_at=event_at, event_action=action,
                     changed_by="", sentence=_sentence(changed_at, "", synced_at, event_at, action, now,
                                                       no_sync="no full sync has finished yet: some repositories "
                                                               "may be missing"))


# -- the catalog -------------------------------------------------------------------------------


def index_has_repositories() -> bool:
    """The index has been filled by a sync at least once: the catalog can come from it."""
    return IndexedRepository.objects.filter(synced_at__isnull=False).exists()


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    namespace: str
    leaf: str
    depth: int
    tag_count: int | None
    changed_at: datetime | None
    synced: bool
    problem: str = ""
    valid: bool = True


def catalog_repositories(q: str = "") -> QuerySet[IndexedRepository]:
    """The indexed repositories whose name has every word of `q`, by name (page it)."""
    repos = IndexedRepository.objects.all()
    for term in q.lower().split():
        repos = repos.filter(name__contains=term)
    # A repository that lost every tag stays until garbage collection, as in the registry's catalog.
    # Namespace first, as the live catalog: each namespace's repositories under one heading.
    return repos.order_by(c_order("namespace"), c_order("name"))


def catalog_entries(repos: Iterable[IndexedRepository]) -> list[CatalogEntry]:
    out = []
    for repo in repos:
        namespace, _, leaf = repo.name.rpartition("/")
        out.append(CatalogEntry(name=repo.name, namespace=namespace, leaf=leaf, depth=repo.name.count("/"),
                                tag_count=repo.tag_count, changed_at=repo.changed_at,
                                synced=repo.synced_at is not None, valid=is_name(repo.name)))
    return out


# -- search ------------------------------------------------------------------------------------

_DIGEST_TERM = re.compile(r"(?:(sha256|sha512)[:-])?([0-9a-f]+)")
_HEX = "0123456789abcdef"


@dataclass(frozen=True)
class RepoHit:
    name: str
    tag_count: int
    changed_at: datetime | None

    @property
    def valid(self) -> bool:
        return is_name(self.name)


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

    @property
    def short_digest(self) -> str:
        return self.digest.split(":", 1)[-1][:12]


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
        results.repositories = [RepoHit(*r) for r in repos.order_by(c_order("name"))
                                .values_list("name", "tag_count", "changed_at")[:limit]]
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
                                   .order_by(c_order("repository__name"), F("is_version").desc(),
                                             c_order("version_key").desc())
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


__all__ = ["ATTACHMENT_TAG", "BlobHit", "BlobUse", "CatalogEntry", "Facets", "Freshness", "IndexedTagRow",
           "ManifestHit", "Place", "RepoHit", "SORTS", "SearchResults", "TagHit", "TagPage", "ago", "c_order",
           "catalog_entries", "catalog_repositories", "digest_prefixes", "effective_order", "facets", "freshness",
           "index_has_repositories", "next_orders", "registry_freshness", "search", "tag_page"]
