"""What the pages show, assembled from registry reads. Plain functions; views stay thin."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import quote

from .. import remote
from ..ordering import DESC, LIVE_TAGS, sort_by_name, version_key
from ..registry import errors as e
from ..registry import kinds
from ..registry import models as m
from ..registry.client import run_bounded
from ..registry.names import attachment_target, is_name, is_tag
from ..registry.parse import parse_time

# -- rows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformRow:
    platform: str
    digest: str
    size: int
    created: datetime | None
    kind: str
    problem: str = ""


@dataclass(frozen=True)
class Attachment:
    tag: str
    kind: str
    target: str


@dataclass(frozen=True)
class TagRow:
    tag: str
    digest: str = ""
    media_type: str = ""
    kind: str = ""
    size: int = 0
    created: datetime | None = None
    platforms: tuple[PlatformRow, ...] = ()
    problem: str = ""
    shared_with: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    #: Index into a small palette so tags that share a digest share a colour.
    group: int = -1


@dataclass
class RepositoryView:
    name: str
    rows: list[TagRow]
    #: Attachments whose target is not a tagged image of this repository.
    orphans: list[Attachment] = field(default_factory=list)
    detailed: bool = False
    #: Every manifest read on the way, by digest: the blob page asks which of them use a blob.
    manifests: dict[str, m.Manifest] = field(default_factory=dict)

    @property
    def image_count(self) -> int:
        return len({r.digest for r in self.rows if r.digest})


def attachment(tag: str, kind: str = "") -> Attachment:
    """A cosign or referrers-fallback tag. The tag name says what cosign meant; the media types
    (`kind`, the manifest's, when known) say what it is."""
    target, by_name = attachment_target(tag)  # type: ignore[misc]
    if by_name == "referrers" and kind in (kinds.SIGNATURE, kinds.SBOM, kinds.ATTESTATION):
        by_name = kind
    return Attachment(tag=tag, kind=by_name, target=target)


def split_attachments(tags: list[str]) -> tuple[list[str], list[Attachment]]:
    return [t for t in tags if not attachment_target(t)], [attachment(t) for t in tags if attachment_target(t)]


def names_only(name: str, tags: list[str]) -> RepositoryView:
    plain, attached = split_attachments([t for t in tags if is_tag(t)])
    rows = [TagRow(tag=t) for t in plain] + _invalid_rows([t for t in tags if not is_tag(t)])
    return RepositoryView(name=name, rows=rows, orphans=attached)


def _invalid_rows(tags: list[str]) -> list[TagRow]:
    # A hostile or broken registry may list names the grammar forbids: show them, never use them.
    return [TagRow(tag=t, problem="the registry listed this tag, but it is not a valid tag name") for t in tags]


def resolve(name: str, tags: list[str]) -> RepositoryView:
    """Every tag with digest, kind, size, created and platforms, with bounded concurrency.

    Requests per level run in parallel. One GET per tag gives its digest and manifest at
    once (a HEAD would cost the registry the same, and a cold page would then need a GET
    too); index children and configs come from the cache when known.
    """
    workers = remote.concurrency()
    invalid = [t for t in tags if not is_tag(t)]
    tags = [t for t in tags if is_tag(t)]
    tagged = run_bounded(lambda t: remote.manifest_by_tag(name, t), tags, workers)
    manifests: dict[str, m.Manifest | e.RegistryError] = {
        mf.digest: mf for mf in tagged if isinstance(mf, m.Manifest)}
    children = sorted({c.digest for mf in tagged if isinstance(mf, m.Manifest) for c in mf.manifests}
                      - manifests.keys())
    manifests.update(remote.many_by_digest(name, "manifest", children))
    config_digests = sorted({mf.config.digest for mf in manifests.values()
                             if isinstance(mf, m.Manifest) and mf.config is not None
                             and mf.config.media_type in m.IMAGE_CONFIG_TYPES})
    configs = remote.many_by_digest(name, "config", config_digests)

    rows = [TagRow(tag=tag, problem=str(got)) if isinstance(got, e.RegistryError)
            else _row(tag, got, manifests, configs) for tag, got in zip(tags, tagged, strict=True)]
    plain_rows = [r for r in rows if attachment_target(r.tag) is None]
    attachments = [attachment(r.tag, r.kind) for r in rows if attachment_target(r.tag) is not None]
    plain_rows, orphans = _attach(plain_rows, attachments)
    plain_rows.extend(_invalid_rows(invalid))
    good = {d: mf for d, mf in manifests.items() if isinstance(mf, m.Manifest)}
    return RepositoryView(name=name, rows=_group(plain_rows), orphans=orphans, detailed=True, manifests=good)


def _row(tag: str, mf: m.Manifest, manifests: dict, configs: dict) -> TagRow:
    if mf.is_index:
        platforms = tuple(_platform_row(d, manifests, configs) for d in mf.manifests)
        real = [p for p in platforms if p.kind not in (kinds.ATTESTATION, kinds.SBOM, kinds.SIGNATURE)]
        created = max((p.created for p in real if p.created), default=None)
        return TagRow(tag=tag, digest=mf.digest, media_type=mf.media_type, kind=mf.kind,
                      size=sum(p.size for p in real), created=created, platforms=platforms, problem=mf.problem)
    config = configs.get(mf.config.digest) if mf.config else None
    created, problem = None, mf.problem
    platform = ""
    if isinstance(config, m.ImageConfig):
        created = config.created
        problem = problem or config.problem
        platform = str(m.Platform(config.os, config.architecture, config.variant)) if config.os else ""
    elif isinstance(config, e.RegistryError):
        problem = problem or f"config: {config}"
    if created is None:
        # Artifacts without an image config (Helm charts, …) date themselves in an annotation.
        created = parse_time(mf.annotations.get("org.opencontainers.image.created"))
    platforms = (PlatformRow(platform=platform, digest=mf.digest, size=mf.layers_size, created=created,
                             kind=mf.kind),) if platform else ()
    return TagRow(tag=tag, digest=mf.digest, media_type=mf.media_type, kind=mf.kind, size=mf.layers_size,
                  created=created, platforms=platforms, problem=problem)


def _platform_row(desc: m.Descriptor, manifests: dict, configs: dict) -> PlatformRow:
    label = str(desc.platform) if desc.platform else "unknown"
    child = manifests.get(desc.digest)
    if not isinstance(child, m.Manifest):
        return PlatformRow(platform=label, digest=desc.digest, size=0, created=None,
                           kind=kinds.ATTESTATION if desc.is_attestation else "", problem=str(child))
    config = configs.get(child.config.digest) if child.config else None
    created = config.created if isinstance(config, m.ImageConfig) else None
    kind = kinds.ATTESTATION if desc.is_attestation else child.kind
    return PlatformRow(platform=label, digest=desc.digest, size=child.layers_size, created=created, kind=kind,
                       problem=child.problem)


def _attach(rows: list[TagRow], attachments: list[Attachment]) -> tuple[list[TagRow], list[Attachment]]:
    by_digest: dict[str, list[Attachment]] = {}
    for a in attachments:
        by_digest.setdefault(a.target, []).append(a)
    tagged = {r.digest for r in rows}
    out = [replace(r, attachments=tuple(by_digest.get(r.digest, ()))) if r.digest in by_digest else r
           for r in rows]
    orphans = [a for a in attachments if a.target not in tagged]
    return out, orphans


GROUP_COLOURS = 8


def _group(rows: list[TagRow]) -> list[TagRow]:
    tags_by_digest: dict[str, list[str]] = {}
    for r in rows:
        if r.digest:
            tags_by_digest.setdefault(r.digest, []).append(r.tag)
    shared = sorted(d for d, t in tags_by_digest.items() if len(t) > 1)
    colour = {d: i % GROUP_COLOURS for i, d in enumerate(shared)}
    return [replace(r, shared_with=tuple(sorted((t for t in tags_by_digest[r.digest] if t != r.tag),
                                               key=version_key)),
                    group=colour[r.digest]) if r.digest in colour else r
            for r in rows]


# How each column but the name sorts (ordering.sort_by_name sorts by name).
_KEYS = {
    "created": lambda r: (r.created is not None, r.created or datetime.min, version_key(r.tag)),
    "size": lambda r: (r.size, version_key(r.tag)),
    # Newest image first, its tags together.
    "image": lambda r: (r.created is not None, r.created or datetime.min, r.digest, version_key(r.tag)),
}


def sort_rows(rows: list[TagRow], sort: str, order: str) -> list[TagRow]:
    sort, order = LIVE_TAGS.parse(sort, order)
    if sort == "name":
        return sort_by_name(rows, lambda r: r.tag, order == DESC)
    return sorted(rows, key=_KEYS[sort], reverse=order == DESC)


# -- manifest page ---------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryLine:
    entry: m.HistoryEntry | None
    layer: m.Descriptor | None


def history_with_layers(manifest: m.Manifest, config: m.ImageConfig | None) -> tuple[list[HistoryLine], str]:
    """Line each history step up with the layer it made; empty-layer steps get none."""
    layers = list(manifest.layers)
    if config is None or not config.history:
        return [HistoryLine(None, layer) for layer in layers], ""
    remaining = iter(layers)
    lines = [HistoryLine(entry, None if entry.empty_layer else next(remaining, None)) for entry in config.history]
    lines.extend(HistoryLine(None, layer) for layer in remaining)
    non_empty = sum(1 for h in config.history if not h.empty_layer)
    note = "" if non_empty == len(layers) else (
        f"the history names {non_empty} layer-creating step{'' if non_empty == 1 else 's'} but the manifest has "
        f"{len(layers)} layer{'' if len(layers) == 1 else 's'}; "
        "they may not line up")
    return lines, note


def blob_users(view: RepositoryView, digest: str) -> list[tuple[str, str, list[str]]]:
    """Which manifests of the repository use a blob: (manifest digest, role, tags)."""
    tags_by_digest: dict[str, list[str]] = {}
    for r in view.rows:
        tags_by_digest.setdefault(r.digest, []).append(r.tag)
    parents: dict[str, list[str]] = {}
    for mf in view.manifests.values():
        for child in mf.manifests:
            parents.setdefault(child.digest, []).extend(tags_by_digest.get(mf.digest, []))
    found = []
    for mf in view.manifests.values():
        role = ""
        if mf.config is not None and mf.config.digest == digest:
            role = "config"
        elif any(layer.digest == digest for layer in mf.layers):
            role = "layer"
        if role:
            tags = sorted(set(tags_by_digest.get(mf.digest, []) + parents.get(mf.digest, [])), key=version_key)
            found.append((mf.digest, role, tags))
    return found


# -- catalog ---------------------------------------------------------------------------


def filter_names(names: list[str], query: str, folded: frozenset[str] = frozenset()) -> list[str]:
    """Every whitespace-separated term must appear in the name (case-insensitive)."""
    terms = query.lower().split()
    # Namespace first, so each namespace's repositories stand together under one heading; folded
    # namespaces (folded_namespaces) after the rest, so a fleet does not push them to a later page.
    return sorted((n for n in names if all(t in n for t in terms)),
                  key=lambda n: (n.rpartition("/")[0] in folded, n.rpartition("/")[0], n))


@dataclass(frozen=True)
class TagCount:
    """How many tags a repository has, said the same way on every page: its tags, and apart from
    them its attachment tags (cosign's `.sig`/`.att`/`.sbom`, OCI referrers-fallback), which the
    repository page shows as chips on the image they name rather than as rows."""

    tags: int
    attachments: int = 0

    @property
    def total(self) -> int:
        return self.tags + self.attachments


def count_tags(tags: list[str]) -> TagCount:
    """The one count of a tag list read live (the index counts the same: indexed.tag_counts)."""
    attachments = sum(1 for t in tags if attachment_target(t) is not None)
    return TagCount(tags=len(tags) - attachments, attachments=attachments)


@dataclass(frozen=True)
class CatalogRow:
    """A repository of the catalog, live or from the index (which adds when it changed)."""

    name: str
    #: None: not counted (yet).
    counts: TagCount | None = None
    problem: str = ""
    changed_at: datetime | None = None
    synced: bool = True

    @property
    def namespace(self) -> str:
        return self.name.rpartition("/")[0]

    @property
    def leaf(self) -> str:
        return self.name.rpartition("/")[2]


#: A namespace with this many repositories or more is folded in the catalog (one line, its count),
#: so a fleet of generated repositories does not bury the rest.
COLLAPSE_AT = 20


@dataclass(frozen=True)
class CatalogGroup:
    """One namespace's repositories on a catalog page."""

    namespace: str
    rows: list[CatalogRow]
    #: Its repositories in the whole catalog (a filter aside), this page and others.
    total: int
    collapsed: bool


@dataclass(frozen=True)
class CatalogSegment:
    """Groups shown in one table, or one folded group (a `<details>` with its own table)."""

    groups: list[CatalogGroup]
    folded: bool = False


def catalog_segments(rows: list[CatalogRow], totals: dict[str, int]) -> list[CatalogSegment]:
    """The page's rows by namespace, in order: big namespaces (COLLAPSE_AT, counted over the whole
    catalog by `totals`, whatever a filter found) fold into a segment of their own, the others
    share tables."""
    groups: list[CatalogGroup] = []
    for row in rows:
        if groups and groups[-1].namespace == row.namespace:
            groups[-1].rows.append(row)
        else:
            total = totals.get(row.namespace, 0)
            groups.append(CatalogGroup(namespace=row.namespace, rows=[row], total=total,
                                       collapsed=row.namespace in folded_namespaces(totals)))
    segments: list[CatalogSegment] = []
    for group in groups:
        if group.collapsed:
            segments.append(CatalogSegment(groups=[group], folded=True))
        elif segments and not segments[-1].folded:
            segments[-1].groups.append(group)
        else:
            segments.append(CatalogSegment(groups=[group]))
    return segments


def folded_namespaces(totals: dict[str, int]) -> frozenset[str]:
    """The namespaces the catalog folds: COLLAPSE_AT repositories or more (the top level never)."""
    return frozenset(ns for ns, n in totals.items() if ns and n >= COLLAPSE_AT)


def namespace_totals(names: list[str]) -> dict[str, int]:
    """How many repositories each namespace has among these names."""
    totals: dict[str, int] = {}
    for name in names:
        ns = name.rpartition("/")[0]
        totals[ns] = totals.get(ns, 0) + 1
    return totals


def catalog_rows(names: list[str], counts: dict[str, TagCount | e.RegistryError] | None = None) -> list[CatalogRow]:
    counted = [(name, (counts or {}).get(name)) for name in names]
    return [CatalogRow(name=name, counts=count if isinstance(count, TagCount) else None,
                       problem=str(count) if isinstance(count, e.RegistryError) else "") for name, count in counted]


def tag_counts(names: list[str]) -> dict[str, TagCount | e.RegistryError]:
    names = [n for n in names if is_name(n)]

    def count(name: str) -> TagCount:
        try:
            return count_tags(remote.client().tags(name))
        except e.NameUnknown:
            # A repository whose every tag was deleted stays in the catalog with no tags.
            return TagCount(0)

    return dict(zip(names, run_bounded(count, names, remote.concurrency()), strict=True))


NO_TAGS = "This repository has no tags: every tag was deleted. Its data stays until garbage collection."


def repository_tags(name: str) -> tuple[list[str], str]:
    """The tags, or none with a note when the catalog lists a repository that has none left."""
    try:
        tags = remote.client().tags(name)
    except e.NameUnknown:
        if name not in remote.catalog():
            raise
        tags = []
    return tags, "" if tags else NO_TAGS


# -- manifest page ---------------------------------------------------------------------


@dataclass
class ManifestPage:
    name: str
    reference: str
    manifest: m.Manifest
    config: m.ImageConfig | None = None
    config_problem: str = ""
    history: list[HistoryLine] = field(default_factory=list)
    history_note: str = ""
    children: list[tuple[m.Descriptor, str]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    pretty: str = ""
    #: For a cosign / referrers-fallback tag: the image it belongs to.
    attached_to: Attachment | None = None


def manifest_page(name: str, reference: str) -> ManifestPage:
    import json

    mf = remote.manifest(name, reference)
    page = ManifestPage(name=name, reference=reference, manifest=mf)
    if attachment_target(reference):
        page.attached_to = attachment(reference)
    try:
        page.pretty = json.dumps(json.loads(mf.raw), indent=2, ensure_ascii=False)
    except ValueError:
        page.pretty = mf.raw.decode("utf-8", errors="replace")
    if mf.config is not None and mf.config.media_type in m.IMAGE_CONFIG_TYPES:
        try:
            page.config = remote.config_by_digest(name, mf.config.digest)
            page.config_problem = page.config.problem
        except (e.NotFound, e.IntegrityError, e.MalformedContent) as exc:
            page.config_problem = f"the config blob could not be read: {exc}"
    elif mf.config is not None:
        # A Helm chart or a signature has its own config type: only an unknown one is worth a note.
        page.config_problem = ("" if mf.config.media_type in (m.OCI_EMPTY, "")
                               or mf.kind not in (kinds.ARTIFACT, kinds.UNKNOWN) else
                               f"the config has media type “{mf.config.media_type}”, not an image config")
    if mf.is_image_manifest:
        page.history, page.history_note = history_with_layers(mf, page.config if page.config and
                                                              not page.config.problem else None)
    if mf.is_index:
        kids = remote.many_by_digest(name, "manifest", [d.digest for d in mf.manifests])
        page.children = [(d, kinds.ATTESTATION if d.is_attestation else
                          (k.kind if isinstance(k, m.Manifest) else f"unreadable: {k}"))
                         for d, k in ((d, kids[d.digest]) for d in mf.manifests)]
    page.attachments = _attachments_of(name, mf.digest)
    return page


def _attachments_of(name: str, digest: str) -> list[Attachment]:
    try:
        tags = remote.client().tags(name)
    except e.NotFound:
        return []
    return [a for a in split_attachments(tags)[1] if a.target == digest]


# -- blob page -------------------------------------------------------------------------


@dataclass
class BlobPage:
    name: str
    info: m.BlobInfo
    media_type: str
    users: list[tuple[str, str, list[str]]]


def blob_page(name: str, digest: str) -> BlobPage:
    info = remote.client().head_blob(name, digest)
    tags, _ = repository_tags(name)
    view = resolve(name, tags)
    users = blob_users(view, digest)
    media_type = next((d.media_type for mf in view.manifests.values()
                       for d in ([mf.config] if mf.config else []) + list(mf.layers) if d.digest == digest),
                      info.media_type)
    return BlobPage(name=name, info=info, media_type=media_type, users=users)


# -- blob download ---------------------------------------------------------------------

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


def blob_extension(media_type: str, head: bytes = b"") -> str:
    """The file extension a download of a blob gets: from its media type when that says what it
    is, else from its first bytes (`head`), else `.bin`. Never `.blob`: a user's file manager
    should know what to open it with."""
    mt = media_type.lower().split(";", 1)[0].strip()
    if "zstd" in mt:
        return ".tar.zst"
    if "gzip" in mt:
        return ".tar.gz"
    if mt.endswith(("+json", "/json", ".json")):
        return ".json"
    if mt.endswith((".tar", "/x-tar")):
        return ".tar"
    # The registry serves every blob as application/octet-stream: the bytes tell the rest. A
    # compressed blob in a registry is a layer (or a Helm chart): a compressed tar.
    if head.startswith(_GZIP):
        return ".tar.gz"
    if head.startswith(_ZSTD):
        return ".tar.zst"
    if head[257:262] == b"ustar":
        return ".tar"
    if head.lstrip()[:1] in (b"{", b"["):
        return ".json"
    return ".bin"


def blob_filename(name: str, digest: str, media_type: str, head: bytes = b"") -> str:
    """`<repository with / as _>-<12 hex of the digest><extension>`, safe as a file name."""
    base = _UNSAFE_FILENAME.sub("_", name.replace("/", "_")).strip("._") or "blob"
    hexpart = _UNSAFE_FILENAME.sub("", digest.partition(":")[2])[:12]
    return f"{base[:150]}-{hexpart}{blob_extension(media_type, head)}"


def content_disposition(filename: str) -> str:
    """An RFC 6266 attachment header: a plain ASCII `filename` and the exact `filename*`."""
    ascii_name = _UNSAFE_FILENAME.sub("_", filename) or "download.bin"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
