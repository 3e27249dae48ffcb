"""Storage accounting and activity, read from the index (never from the registry).

Storage counts files the way the registry's disk holds them: one `data` file per blob, however
many manifests or repositories name it, and every manifest is such a file too. A manifest is on
disk while a RepositoryManifest row says so (a deleted one keeps its row, marked, until a garbage
collection). What a collection would free is what no tag reaches: a tag reaches its manifest, and
an index reaches the manifests it lists, to any depth.

Each figure is one set-based query over the whole index (a recursive CTE for what tags reach,
window functions for who else holds a file), the same few round trips for 10,000 repositories as
for ten, and the results are cached until the index changes. Files are keyed by row id: a
manifest and a layer can only share a digest if some manifest names another manifest as a layer,
which no image format does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, Max, Q, QuerySet, Sum
from django.utils import timezone

from .. import conf, disk, remote
from ..browse import indexed
from ..browse.live import TagCount
from ..index import store
from ..models import (IndexedBlob, IndexedManifest, IndexedRepository, IndexedTag, ManifestBlob, ManifestChild,
                      RegistryEvent, RepositoryManifest)

# Figures stay cached while the index is unchanged; this only bounds how long an unused entry lives.
CACHE_TTL = 15 * 60


def _sql(template: str) -> str:
    return template.format(
        rm=RepositoryManifest._meta.db_table, m=IndexedManifest._meta.db_table, mb=ManifestBlob._meta.db_table,
        b=IndexedBlob._meta.db_table, c=ManifestChild._meta.db_table, t=IndexedTag._meta.db_table)


# Every manifest some tag reaches: what `garbage-collect --delete-untagged` keeps, with the blobs
# they name. UNION, not UNION ALL: it also ends a cycle a hostile index could form.
_REACH = """
reach(id) AS (
    SELECT manifest_id FROM {t} WHERE manifest_id IS NOT NULL
    UNION
    SELECT m.id FROM reach r JOIN {c} c ON c.parent_id = r.id JOIN {m} m ON m.digest = c.digest
)"""

# One row per repository. `held` lists each file a repository's manifests put on disk (kind 0: the
# manifest itself, 1: a config or layer), whether a tagged manifest holds it and whether a manifest
# that is not deleted does; `files` makes that one row per repository and file; the window then
# says, per file, how many repositories hold it, whether anything keeps it, and which row is its
# first (so the registry's totals, each file once, add up from the same rows).
_PER_REPOSITORY = _sql(f"""
WITH RECURSIVE {_REACH},
held(repo, kind, key, size, live, alive) AS (
    SELECT rm.repository_id, 0, rm.manifest_id, m.size,
           CASE WHEN r.id IS NULL THEN 0 ELSE 1 END, CASE WHEN rm.deleted_at IS NULL THEN 1 ELSE 0 END
      FROM {{rm}} rm JOIN {{m}} m ON m.id = rm.manifest_id LEFT JOIN reach r ON r.id = rm.manifest_id
    UNION ALL
    SELECT rm.repository_id, 1, mb.blob_id, b.size,
           CASE WHEN r.id IS NULL THEN 0 ELSE 1 END, CASE WHEN rm.deleted_at IS NULL THEN 1 ELSE 0 END
      FROM {{rm}} rm JOIN {{mb}} mb ON mb.manifest_id = rm.manifest_id JOIN {{b}} b ON b.id = mb.blob_id
      LEFT JOIN reach r ON r.id = rm.manifest_id
),
files(repo, kind, key, size, live, alive) AS (
    SELECT repo, kind, key, MAX(size), MAX(live), MAX(alive) FROM held GROUP BY kind, key, repo
),
flagged(repo, size, holders, live, alive, nth) AS (
    SELECT repo, size, COUNT(*) OVER w, MAX(live) OVER w, MAX(alive) OVER w, ROW_NUMBER() OVER w
      FROM files WINDOW w AS (PARTITION BY kind, key)
)
SELECT repo, COUNT(*), SUM(size),
       SUM(CASE WHEN holders = 1 THEN size ELSE 0 END),
       SUM(CASE WHEN live = 0 THEN size ELSE 0 END),
       SUM(CASE WHEN nth = 1 THEN 1 ELSE 0 END),
       SUM(CASE WHEN nth = 1 THEN size ELSE 0 END),
       SUM(CASE WHEN nth = 1 AND live = 0 THEN size ELSE 0 END),
       SUM(CASE WHEN nth = 1 AND alive = 0 THEN size ELSE 0 END)
  FROM flagged GROUP BY repo
""")

# One row per tagged manifest of one repository. Tags on the same manifest share everything, so
# the work is per tagged manifest ("root", with how many tags name it, anywhere); a file is unique
# to a tag when the roots that reach it carry one tag in all.
_PER_TAG = _sql("""
WITH RECURSIVE
roots(id, tags) AS (SELECT manifest_id, COUNT(*) FROM {t} WHERE manifest_id IS NOT NULL GROUP BY manifest_id),
reach(root, tags, id) AS (
    SELECT id, tags, id FROM roots
    UNION
    SELECT r.root, r.tags, m.id FROM reach r JOIN {c} c ON c.parent_id = r.id JOIN {m} m ON m.digest = c.digest
),
held(root, tags, kind, key, size) AS (
    SELECT r.root, r.tags, 0, r.id, m.size FROM reach r JOIN {m} m ON m.id = r.id
    UNION ALL
    SELECT r.root, r.tags, 1, mb.blob_id, b.size
      FROM reach r JOIN {mb} mb ON mb.manifest_id = r.id JOIN {b} b ON b.id = mb.blob_id
),
mine(kind, key) AS (
    SELECT DISTINCT kind, key FROM held WHERE root IN (SELECT manifest_id FROM {t} WHERE repository_id = %s)
),
files(root, tags, kind, key, size) AS (
    SELECT root, MAX(tags), kind, key, MAX(size) FROM held WHERE (kind, key) IN (SELECT kind, key FROM mine)
     GROUP BY kind, key, root
),
flagged(root, size, holders) AS (
    SELECT root, size, SUM(tags) OVER (PARTITION BY kind, key) FROM files
)
SELECT root, SUM(size), SUM(CASE WHEN holders = 1 THEN size ELSE 0 END)
  FROM flagged WHERE root IN (SELECT manifest_id FROM {t} WHERE repository_id = %s)
 GROUP BY root
""")

# The manifests of one repository no tag reaches (deleted ones included), each with its files that
# nothing tagged keeps: what holds the repository's reclaimable space.
_UNREACHED = _sql(f"""
WITH RECURSIVE {_REACH},
loose(id) AS (
    SELECT rm.manifest_id FROM {{rm}} rm LEFT JOIN reach r ON r.id = rm.manifest_id
     WHERE rm.repository_id = %s AND r.id IS NULL
),
kept(blob_id) AS (
    SELECT DISTINCT mb.blob_id FROM {{mb}} mb JOIN reach r ON r.id = mb.manifest_id
),
freed(id, size) AS (
    SELECT l.id, m.size FROM loose l JOIN {{m}} m ON m.id = l.id
    UNION ALL
    SELECT l.id, b.size FROM loose l JOIN {{mb}} mb ON mb.manifest_id = l.id JOIN {{b}} b ON b.id = mb.blob_id
      LEFT JOIN kept k ON k.blob_id = mb.blob_id
     WHERE k.blob_id IS NULL
)
SELECT id, SUM(size) FROM freed GROUP BY id
""")


# Query shapes both databases plan well: a CTE is tested with IN (...) in a WHERE clause (a semi-join
# on PostgreSQL, an ephemeral index on SQLite) or joined with LEFT JOIN, never with IN (...) in a
# SELECT list (PostgreSQL would rescan the CTE for every row: minutes at 10,000 repositories).
def _rows(sql: str, params: Sequence[object] = ()) -> list[tuple]:
    # A transaction only where SET LOCAL needs one: on SQLite every transaction takes the write
    # lock up front (settings), and a page that only reads must not queue behind the worker.
    postgres = connection.vendor == "postgresql"
    with transaction.atomic() if postgres else nullcontext(), connection.cursor() as cursor:
        if postgres:
            # The recursive CTE's estimate is huge, so PostgreSQL would compile these scans to
            # machine code first, which costs more than it saves (measured: 1.2 s against 0.7 s).
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        # PostgreSQL sums bigints into numerics: every figure here is a whole number of bytes.
        return [tuple(int(v) if v is not None else None for v in row) for row in cursor.fetchall()]


def stamp() -> str:
    """Changes whenever a figure could: a manifest joins, leaves or is deleted from a repository,
    a tag is added, moved or removed. (Digest-addressed rows never change once written.)"""
    rm = RepositoryManifest.objects.aggregate(n=Count("id"), top=Max("id"), ids=Sum("manifest_id"),
                                              deleted=Count("id", filter=Q(deleted_at__isnull=False)))
    tags = IndexedTag.objects.aggregate(n=Count("id"), top=Max("id"), ids=Sum("manifest_id"), moved=Max("updated_at"))
    return hashlib.sha256(repr((sorted(rm.items()), sorted(tags.items()))).encode()).hexdigest()[:24]


def _cached[T](what: str, compute: Callable[[], T], version: str | None) -> T:
    key = remote.cache_key("storage", f"{what}:{version or stamp()}")
    found = cache.get(key)
    if found is None:
        found = compute()
        cache.set(key, found, CACHE_TTL)
    return found


# -- storage -------------------------------------------------------------------------------------


def disk_files() -> tuple[int, int] | None:
    """(blob files, bytes) the registry's storage holds, when the dashboard can read it: the one
    measure of the disk the storage page and the health page both show, taken again once a blob
    came or went (a garbage collection in the worker, a push)."""
    path = conf.get().storage_path
    return disk.blob_totals(path) if path else None


@dataclass(frozen=True)
class Totals:
    """The registry as a whole, each blob file counted once."""

    files: int
    bytes: int
    #: What `garbage-collect --delete-untagged` would free: files no tag reaches.
    reclaimable: int
    #: What a plain `garbage-collect` would free: files only deleted manifests hold.
    deleted: int
    #: The repositories' totals added up, minus the disk: what shared files save.
    saved_by_sharing: int = 0


@dataclass(frozen=True)
class RepositoryUsage:
    name: str
    #: Its tags, attachment tags apart (`attachments`), as the catalog counts them (browse.indexed.tag_counts).
    tags: int
    manifests: int
    deleted_manifests: int
    files: int
    total: int
    #: No other repository's manifests hold these files.
    unique: int
    reclaimable: int
    attachments: int = 0

    @property
    def shared(self) -> int:
        return self.total - self.unique

    @property
    def counts(self) -> TagCount:
        return TagCount(self.tags, self.attachments)


@dataclass(frozen=True)
class Overview:
    totals: Totals
    repositories: list[RepositoryUsage]


def _overview() -> Overview:
    figures = {row[0]: row[1:] for row in _rows(_PER_REPOSITORY)}
    counts = {row["repository_id"]: row for row in RepositoryManifest.objects.values("repository_id").annotate(
        n=Count("id"), deleted=Count("id", filter=Q(deleted_at__isnull=False))).order_by()}
    tags = indexed.tag_counts()
    repos = []
    files = size = reclaimable = deleted = 0
    for pk, name in IndexedRepository.objects.filter(pk__in=list(figures)).values_list("id", "name").order_by("name"):
        n, total, unique, unreached, first_files, first_size, first_unreached, first_deleted = figures[pk]
        c = counts.get(pk, {"n": 0, "deleted": 0})
        t = tags.get(pk, TagCount(0))
        repos.append(RepositoryUsage(name=name, tags=t.tags, attachments=t.attachments, manifests=c["n"],
                                     deleted_manifests=c["deleted"], files=n, total=total, unique=unique,
                                     reclaimable=unreached))
        files, size = files + first_files, size + first_size
        reclaimable, deleted = reclaimable + first_unreached, deleted + first_deleted
    saved = sum(r.total for r in repos) - size
    return Overview(totals=Totals(files, size, reclaimable, deleted, saved), repositories=repos)


def repository_usage(name: str, version: str | None = None) -> RepositoryUsage | None:
    """One repository's figures, from the overview the storage page shows (None: it holds nothing
    on disk the index knows of)."""
    return next((r for r in overview(version).repositories if r.name == name), None)


def overview(version: str | None = None) -> Overview:
    """The registry's totals and every repository that holds a file on disk (a repository gone
    from the catalog stays until a collection frees what it held), in name order. `version`:
    `stamp()`, when the caller already has it."""
    return _cached("overview", _overview, version)


@dataclass(frozen=True)
class TagUsage:
    tag: str
    digest: str
    kind: str
    #: None: the manifest is not indexed yet, nothing to count.
    total: int | None
    unique: int | None
    version_key: tuple[bool, str] = (False, "")

    @property
    def shared(self) -> int | None:
        return None if self.total is None else self.total - (self.unique or 0)


def tag_usage(repository: IndexedRepository, version: str | None = None) -> list[TagUsage]:
    """Each tag of `repository`: the files it reaches, and those no other tag (here or in any
    other repository) reaches, which untagging it and collecting with --delete-untagged frees."""
    def compute() -> list[TagUsage]:
        figures = {row[0]: (row[1], row[2]) for row in _rows(_PER_TAG, [repository.pk] * 2)}
        out = []
        for name, digest, manifest_id, kind, is_version, key in IndexedTag.objects.filter(
                repository=repository).values_list("name", "digest", "manifest_id", "manifest__kind", "is_version",
                                                   "version_key"):
            total, unique = figures.get(manifest_id, (None, None))
            out.append(TagUsage(tag=name, digest=digest, kind=kind or "", total=total, unique=unique,
                                version_key=(is_version, key)))
        return out

    return _cached(f"tags:{repository.pk}", compute, version)


@dataclass(frozen=True)
class Unreached:
    """A manifest of the repository no tag reaches: deleted, pushed by digest, or untagged since."""

    digest: str
    kind: str
    created: datetime | None
    deleted_at: datetime | None
    #: Its files nothing tagged keeps (a layer a tagged image shares is not counted).
    reclaimable: int


def unreached(repository: IndexedRepository, limit: int = 50,
              version: str | None = None) -> tuple[list[Unreached], int]:
    """The largest manifests of `repository` no tag reaches, and how many there are."""
    freed = _cached(f"unreached:{repository.pk}", lambda: dict(_rows(_UNREACHED, [repository.pk])), version)
    top = sorted(freed, key=lambda pk: (-freed[pk], pk))[:limit]
    links = {row["manifest_id"]: row for row in RepositoryManifest.objects.filter(
        repository=repository, manifest_id__in=top).values(
            "manifest_id", "deleted_at", "manifest__digest", "manifest__kind", "manifest__created")}
    rows = [Unreached(digest=links[pk]["manifest__digest"], kind=links[pk]["manifest__kind"],
                      created=links[pk]["manifest__created"], deleted_at=links[pk]["deleted_at"],
                      reclaimable=freed[pk]) for pk in top if pk in links]
    return rows, len(freed)


# -- charts --------------------------------------------------------------------------------------


# The largest-repositories chart, in SVG user units: names right-aligned left of the bars, each
# bar's size right of it. The viewBox scales it to the page.
CHART_WIDTH = 760
LABEL_X = 222
BAR_X = 230
BAR_SPACE = 440
BAR_HEIGHT = 18
ROW_HEIGHT = 26
LABEL_CHARS = 32


@dataclass(frozen=True)
class Bar:
    """One repository of the chart: a bar of its unique bytes, then one of its shared bytes."""

    name: str
    label: str
    total: int
    unique: int
    shared: int
    row_y: int
    unique_width: float
    shared_width: float
    height: int = BAR_HEIGHT
    row_height: int = ROW_HEIGHT
    label_x: int = LABEL_X

    @property
    def y(self) -> int:
        return self.row_y + (ROW_HEIGHT - BAR_HEIGHT) // 2

    @property
    def shared_x(self) -> float:
        return BAR_X + self.unique_width

    @property
    def value_x(self) -> float:
        return BAR_X + self.unique_width + self.shared_width + 6

    @property
    def text_y(self) -> int:
        return self.y + BAR_HEIGHT - 5


def short_label(name: str, limit: int = LABEL_CHARS) -> str:
    # The end of a name tells repositories of one namespace apart.
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    height: int
    width: int = CHART_WIDTH
    bar_x: int = BAR_X
    axis_x: int = BAR_X - 1


def largest_chart(repos: Sequence[RepositoryUsage], count: int = 10) -> Chart:
    """The `count` largest repositories, every bar to the scale of the largest."""
    top = sorted(repos, key=lambda r: (-r.total, r.name))[:count]
    scale = BAR_SPACE / (max((r.total for r in top), default=0) or 1)
    bars = [Bar(name=r.name, label=short_label(r.name), total=r.total, unique=r.unique, shared=r.shared,
                row_y=i * ROW_HEIGHT, unique_width=round(r.unique * scale, 1), shared_width=round(r.shared * scale, 1))
            for i, r in enumerate(top)]
    return Chart(bars=bars, height=len(bars) * ROW_HEIGHT)


# -- activity ------------------------------------------------------------------------------------


def events(*, action: str = "", repository: str = "", actor: str = "") -> QuerySet[RegistryEvent]:
    """The feed, newest first. An empty filter is no filter; `actor="anonymous"` matches events
    that named nobody, as the feed shows them."""
    qs = RegistryEvent.objects.all()
    if action:
        qs = qs.filter(action=action)
    if repository:
        qs = qs.filter(repository=repository)
    if actor:
        qs = qs.filter(actor="") if actor == ANONYMOUS else qs.filter(actor=actor)
    return qs.order_by("-at", "-id")


ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class DayBar:
    day: date
    pulls: int
    x: int
    y: float
    height: float


@dataclass(frozen=True)
class PullRow:
    repository: str
    total: int
    bars: list[DayBar]
    busiest: DayBar | None


@dataclass(frozen=True)
class PullChart:
    first: date
    last: date
    rows: list[PullRow]
    #: The busiest day of any repository shown: every row is drawn to this one scale.
    peak: int
    days: int
    width: int
    height: int
    bar_width: int


SPARK_BAR = 8
SPARK_GAP = 2
SPARK_HEIGHT = 28


PULL_DAYS = 30


def pulls_per_day(*, days: int = PULL_DAYS, top: int = 8, today: date | None = None, action: str = "",
                  repository: str = "", actor: str = "") -> PullChart:
    """Pulls (or the filter's `action`) per day of the repositories pulled most over the last
    `days` days (today included, in the dashboard's time zone), counted from the events the feed
    lists with the same filters. Days are counted between local midnights computed here, not by
    truncating each event's time in the database: SQLite would call back into Python per row."""
    last = today or timezone.localdate()
    first = last - timedelta(days=days - 1)
    bounds = [timezone.make_aware(datetime.combine(first + timedelta(days=i), time.min)) for i in range(days + 1)]
    pulls = events(action=action or RegistryEvent.Action.PULL, repository=repository, actor=actor).order_by().filter(
        at__gte=bounds[0], at__lt=bounds[-1])
    leaders = list(pulls.values("repository").annotate(n=Count("id")).order_by("-n", "repository")[:top])
    names = [row["repository"] for row in leaders]
    per_day = {f"d{i}": Count("id", filter=Q(at__gte=bounds[i], at__lt=bounds[i + 1])) for i in range(days)}
    counts = {row["repository"]: [row[f"d{i}"] for i in range(days)]
              for row in pulls.filter(repository__in=names).values("repository").annotate(**per_day).order_by()}
    peak = max((n for per_repo in counts.values() for n in per_repo), default=0)
    rows = []
    for name in names:
        bars = []
        for i, n in enumerate(counts.get(name, [0] * days)):
            # A day with a pull stays visible however busy the busiest day was.
            height = 0.0 if not n else max(1.5, round(n / peak * SPARK_HEIGHT, 1))
            bars.append(DayBar(day=first + timedelta(days=i), pulls=n, x=i * (SPARK_BAR + SPARK_GAP),
                               y=SPARK_HEIGHT - height, height=height))
        total = sum(b.pulls for b in bars)
        busiest = max(bars, key=lambda b: (b.pulls, b.day)) if total else None
        rows.append(PullRow(repository=name, total=total, bars=bars, busiest=busiest))
    return PullChart(first=first, last=last, rows=rows, peak=peak, days=days,
                     width=days * (SPARK_BAR + SPARK_GAP) - SPARK_GAP, height=SPARK_HEIGHT, bar_width=SPARK_BAR)


@dataclass
class Staleness:
    tags: list[IndexedTag] = field(default_factory=list)
    never_pulled: int = 0
    total: int = 0
    #: Pulls by this user only ("" when the filter names nobody).
    actor: str = ""


def stale_tags(limit: int = 12, *, repository: str = "", actor: str = "") -> Staleness:
    """The tags pulled longest ago: never-pulled ones first (oldest push first), then by last pull.
    Each tag carries `pulls` and `last_pull`, by store.pull_figures: the figures the index keeps
    (which the endpoint and store.recount_pulls maintain by that definition), or, filtered by a
    user, that definition over the user's pull events."""
    tags = IndexedTag.objects.all()
    if repository:
        tags = tags.filter(repository__name=repository)
    if actor:
        tags = tags.annotate(**store.pull_figures(actor="" if actor == ANONYMOUS else actor))
    else:
        tags = tags.annotate(pulls=F("pull_count"), last_pull=F("last_pulled_at"))
    rows = list(tags.select_related("repository").order_by(F("last_pull").asc(nulls_first=True), "updated_at", "id")
                [:limit])
    counts = tags.aggregate(total=Count("id"), never=Count("id", filter=Q(last_pull__isnull=True)))
    return Staleness(tags=rows, never_pulled=counts["never"], total=counts["total"], actor=actor)
