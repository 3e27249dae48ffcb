"""Writes to the index. Every function is idempotent and safe to run from several processes at
once: digest-addressed rows are inserted with ignore-conflicts (a digest names its bytes, so two
writers always agree), and tag changes are diffed against what is stored.

Reads of the registry happen here only through `fetch_and_index`, which goes through
`dashboard.remote` (the cache by digest, the configured client and its bounded pool).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import remote
from ..models import (IndexedBlob, IndexedManifest, IndexedRepository, IndexedTag, ManifestBlob, ManifestChild,
                      RegistryEvent, RepositoryManifest, TagHistory)
from ..ordering import version_sort_key
from ..registry import kinds
from ..registry import models as m
from ..registry.parse import parse_time

# -- manifests, blobs -----------------------------------------------------------------------


def known_digests(digests: Iterable[str]) -> set[str]:
    """Which of these manifests the index already has (their rows never change)."""
    wanted = list(set(digests))
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        found.update(IndexedManifest.objects.filter(digest__in=wanted[i:i + 500]).values_list("digest", flat=True))
    return found


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # Go's zero time (0001-01-01) means "not set"; a database may not take the year either.
    return when if when.year >= 1900 else None


@dataclass(frozen=True)
class Fetched:
    """What one fetch found: manifests by digest (children included) and image configs."""

    manifests: dict[str, m.Manifest]
    configs: dict[str, m.ImageConfig]
    errors: dict[str, str]


def fetch(name: str, digests: list[str]) -> Fetched:
    """Manifests (and their index children and image configs) from the registry, concurrently,
    skipping whatever the index already has."""
    manifests: dict[str, m.Manifest] = {}
    configs: dict[str, m.ImageConfig] = {}
    errors: dict[str, str] = {}
    todo = sorted(set(digests) - known_digests(digests))
    while todo:
        for digest, got in remote.many_by_digest(name, "manifest", todo).items():
            if isinstance(got, m.Manifest):
                manifests[digest] = got
            else:
                errors[digest] = str(got)
        children = {c.digest for mf in manifests.values() for c in mf.manifests}
        todo = sorted(children - manifests.keys() - errors.keys() - known_digests(children))
    wanted = sorted({mf.config.digest for mf in manifests.values()
                     if mf.config is not None and mf.config.media_type in m.IMAGE_CONFIG_TYPES})
    for digest, got in remote.many_by_digest(name, "config", wanted).items():
        if isinstance(got, m.ImageConfig):
            configs[digest] = got
        else:
            errors[digest] = str(got)
    return Fetched(manifests, configs, errors)


def fetch_and_index(name: str, digests: list[str]) -> int:
    """Index these manifests of `name` (fetching only what is unknown); returns how many
    manifests were fetched. The repository's membership rows are written too."""
    found = fetch(name, digests)
    index_manifests(found)
    # Callers pass digests the registry just named (a HEAD, a push event); one that could not be
    # read now must not revive a deleted manifest's membership.
    add_to_repository(name, [d for d in digests if d not in found.errors] + list(found.manifests))
    return len(found.manifests)


def index_manifests(found: Fetched) -> None:
    """Write manifests, their blobs and links, a batch at a time (a handful of queries for a
    thousand manifests). Images before indexes, so an index sums its platforms' sizes from rows
    that exist."""
    if not found.manifests:
        return
    images = [mf for mf in found.manifests.values() if not mf.is_index]
    indexes = [mf for mf in found.manifests.values() if mf.is_index]
    with transaction.atomic():
        for i in range(0, len(images), 500):
            _index_batch(images[i:i + 500], found)
        # An index may list another index (rare): inner ones first.
        for mf in sorted(indexes, key=lambda mf: any(c.digest in found.manifests for c in mf.manifests)):
            _index_batch([mf], found)
        digests = list(found.manifests)
        for i in range(0, len(digests), 500):
            IndexedTag.objects.filter(digest__in=digests[i:i + 500], manifest__isnull=True).update(
                manifest_id=Subquery(IndexedManifest.objects.filter(digest=OuterRef("digest")).values("id")[:1]))


def _row(mf: m.Manifest, found: Fetched, children: Mapping[str, IndexedManifest]) -> IndexedManifest:
    config = found.configs.get(mf.config.digest) if mf.config is not None else None
    created = None
    platforms = ""
    labels: dict[str, str] = {}
    problem = mf.problem
    size = mf.layers_size
    if config is not None:
        created = config.created
        labels = dict(config.labels)
        problem = problem or config.problem
        if config.os:
            platforms = str(m.Platform(config.os, config.architecture, config.variant))
    elif mf.config is not None and mf.config.digest in found.errors:
        problem = problem or f"config: {found.errors[mf.config.digest]}"
    if created is None:
        created = parse_time(mf.annotations.get("org.opencontainers.image.created"))
    if mf.is_index:
        real = [c for c in mf.manifests if not c.is_attestation and c.digest in children
                and children[c.digest].kind not in (kinds.ATTESTATION, kinds.SBOM, kinds.SIGNATURE)]
        size = sum(children[c.digest].image_size for c in real)
        created = max((children[c.digest].created for c in real if children[c.digest].created), default=None)
        platforms = " ".join(str(c.platform) if c.platform else "unknown" for c in mf.manifests
                             if not c.is_attestation)
    return IndexedManifest(
        digest=mf.digest, media_type=mf.media_type[:200], size=mf.size or len(mf.raw), kind=mf.kind,
        created=_aware(created), image_size=size, platforms=platforms[:1000],
        config_digest=mf.config.digest if mf.config is not None else "", artifact_type=mf.artifact_type[:200],
        subject=mf.subject.digest if mf.subject is not None else "", labels=labels,
        labels_text="\n".join(f"{k}={v}" for k, v in {**mf.annotations, **labels}.items())[:20_000],
        problem=problem[:2000])


def _index_batch(batch: list[m.Manifest], found: Fetched) -> None:
    child_digests = {c.digest for mf in batch for c in mf.manifests}
    children = {row.digest: row for row in IndexedManifest.objects.filter(digest__in=child_digests)} \
        if child_digests else {}
    IndexedManifest.objects.bulk_create([_row(mf, found, children) for mf in batch], ignore_conflicts=True)
    ids = dict(IndexedManifest.objects.filter(digest__in=[mf.digest for mf in batch]).values_list("digest", "id"))
    blobs = {d.digest: d for mf in batch for d in ([mf.config] if mf.config is not None else []) + list(mf.layers)}
    if blobs:
        IndexedBlob.objects.bulk_create(
            [IndexedBlob(digest=d.digest, size=max(d.size, 0), media_type=d.media_type[:200]) for d in blobs.values()],
            ignore_conflicts=True, batch_size=500)
        blob_ids: dict[str, int] = {}
        keys = list(blobs)
        for i in range(0, len(keys), 500):
            blob_ids.update(IndexedBlob.objects.filter(digest__in=keys[i:i + 500]).values_list("digest", "id"))
        links = [ManifestBlob(manifest_id=ids[mf.digest], blob_id=blob_ids[d.digest], role=role)
                 for mf in batch
                 for d, role in ([(mf.config, "config")] if mf.config is not None else [])
                 + [(layer, "layer") for layer in mf.layers]]
        ManifestBlob.objects.bulk_create(links, ignore_conflicts=True, batch_size=500)
    kids = [ManifestChild(parent_id=ids[mf.digest], digest=c.digest,
                          platform=str(c.platform)[:100] if c.platform else "", attestation=c.is_attestation)
            for mf in batch for c in mf.manifests]
    if kids:
        ManifestChild.objects.bulk_create(kids, ignore_conflicts=True, batch_size=500)


# -- repositories and tags ---------------------------------------------------------------------


def repository(name: str) -> IndexedRepository:
    IndexedRepository.objects.bulk_create([IndexedRepository(name=name, namespace=name.rpartition("/")[0])],
                                          ignore_conflicts=True)
    return IndexedRepository.objects.get(name=name)


def add_to_repository(name: str, digests: list[str]) -> None:
    """These manifests (and an index's children, which the registry keeps in the same
    repository) are in `name`; a re-push revives a deleted one."""
    wanted = set(digests)
    # Children of indexes, to any depth the index knows.
    frontier = set(wanted)
    while frontier:
        kids = set(ManifestChild.objects.filter(parent__digest__in=frontier).values_list("digest", flat=True))
        frontier = kids - wanted
        wanted |= kids
    ids = list(IndexedManifest.objects.filter(digest__in=wanted).values_list("id", flat=True))
    if not ids:
        return
    repo = repository(name)
    RepositoryManifest.objects.bulk_create(
        [RepositoryManifest(repository=repo, manifest_id=pk) for pk in ids], ignore_conflicts=True)
    RepositoryManifest.objects.filter(repository=repo, manifest_id__in=ids, deleted_at__isnull=False).update(
        deleted_at=None)


def set_tags(name: str, tags: Mapping[str, str], *, source: str, actor: str = "", at: datetime | None = None,
             complete: bool = False, as_of: datetime | None = None) -> int:
    """Point tags of `name` at digests (tag → digest). `complete`: this is every tag the repository
    has (a sync), so stored tags missing from it are removed. `as_of`: when the registry was read;
    a tag an event changed after that is newer than what the caller knows and is left alone.
    Returns how many tags changed (added, moved or removed)."""
    now = at or timezone.now()
    repository(name)
    # The diff is read and written in one transaction holding the repository's row, so two
    # writers of the same change (an event and a sync) write its history once.
    with transaction.atomic():
        repo = IndexedRepository.objects.select_for_update().get(name=name)
        stored = {t.name: t for t in IndexedTag.objects.filter(repository=repo).only(
            "id", "name", "digest", "updated_at")}

        def fresh(tag: IndexedTag) -> bool:  # changed after the caller read the registry
            return as_of is not None and tag.updated_at > as_of

        manifest_ids = dict(IndexedManifest.objects.filter(digest__in=set(tags.values())).values_list(
            "digest", "id")) if any(stored.get(t) is None or stored[t].digest != d for t, d in tags.items()) else {}
        # A tag removed after the caller read the registry (an event, the dashboard) stays removed.
        removed_since = set(TagHistory.objects.filter(repository=name, digest="", at__gt=as_of).values_list(
            "tag", flat=True)) if as_of is not None and any(t not in stored for t in tags) else set()
        new, moved, history = [], [], []
        for tag, digest in tags.items():
            row = stored.get(tag)
            if row is not None and (row.digest == digest or fresh(row)):
                continue
            if row is None and tag in removed_since:
                continue
            is_version, key = version_sort_key(tag)
            if row is None:
                new.append(IndexedTag(repository=repo, name=tag, digest=digest, manifest_id=manifest_ids.get(digest),
                                      is_version=is_version, version_key=key, updated_at=now))
            else:
                row.digest, row.manifest_id, row.updated_at = digest, manifest_ids.get(digest), now
                moved.append(row)
            history.append(TagHistory(repository=name, tag=tag, digest=digest, at=now, source=source, actor=actor))
        removed = [row for tag, row in stored.items() if complete and tag not in tags and not fresh(row)]
        history.extend(TagHistory(repository=name, tag=row.name, digest="", at=now, source=source, actor=actor)
                       for row in removed)
        IndexedTag.objects.bulk_create(new, ignore_conflicts=True, batch_size=500)
        IndexedTag.objects.bulk_update(moved, ["digest", "manifest", "updated_at"], batch_size=500)
        if removed:
            ids = [row.pk for row in removed]
            for i in range(0, len(ids), 500):
                IndexedTag.objects.filter(pk__in=ids[i:i + 500]).delete()
        TagHistory.objects.bulk_create(history, batch_size=500)
        # Pulls may have arrived before the index knew the tag; a moved tag's by-digest pulls change.
        changed = [row.name for row in new] + [row.name for row in moved]
        for i in range(0, len(changed), 500):
            recount_pulls(name, changed[i:i + 500])
        if history or complete:
            _refresh_repository(repo, changed=bool(history), at=now, synced=complete,
                                count=len(stored) + len(new) - len(removed))
    return len(history)


def pull_figures(repository: str | None = None, *, actor: str | None = None) -> dict[str, Combinable]:
    """A tag's pulls and last pull, as annotations (or UPDATE values) of IndexedTag rows: the one
    definition every page's pull figures come from. A pull of a tag is a pull event of its
    repository that names the tag, or that names no tag and the digest the tag points at now
    (`docker pull repo@sha256:…`). `repository`: the rows' repository when the caller knows it (an
    UPDATE cannot join); `actor`: only this user's pulls ("" for those that named nobody)."""
    events = RegistryEvent.objects.filter(action=RegistryEvent.Action.PULL,
                                          repository=OuterRef("repository__name") if repository is None else repository)
    events = events.filter(Q(tag=OuterRef("name")) | Q(tag="", digest=OuterRef("digest")))
    if actor is not None:
        events = events.filter(actor=actor)
    count = events.order_by().values("action").annotate(n=Count("id")).values("n")[:1]
    return {"pulls": Coalesce(Subquery(count, output_field=IntegerField()), Value(0)),
            "last_pull": Subquery(events.order_by("-at").values("at")[:1])}


def recount_pulls(name: str, tags: Iterable[str] | None = None) -> int:
    """Set the pull figures the index keeps on tags of `name` (these, or every one) from the
    events, by `pull_figures`. The endpoint adds each new pull to them as it arrives; a tag the
    index learns of after its pulls arrived (a push event applied later, a sync) or that moved to
    another digest gets them here. Returns how many tags were set."""
    rows = IndexedTag.objects.filter(repository__name=name)
    if tags is not None:
        rows = rows.filter(name__in=list(tags))
    figures = pull_figures(name)
    return rows.update(pull_count=figures["pulls"], last_pulled_at=figures["last_pull"])


def remove_tag(name: str, tag: str, *, source: str, actor: str = "", at: datetime | None = None) -> bool:
    now = at or timezone.now()
    with transaction.atomic():
        deleted, _ = IndexedTag.objects.filter(repository__name=name, name=tag).delete()
        if deleted:
            TagHistory.objects.create(repository=name, tag=tag, digest="", at=now, source=source, actor=actor)
            repo = IndexedRepository.objects.filter(name=name).first()
            if repo is not None:
                _refresh_repository(repo, changed=True, at=now)
    return bool(deleted)


def remove_manifest(name: str, digest: str, *, source: str, actor: str = "", at: datetime | None = None) -> None:
    """The manifest was deleted from `name`: its tags go with it (the registry removes them),
    its blobs stay counted as garbage until a collection."""
    now = at or timezone.now()
    with transaction.atomic():
        repo = IndexedRepository.objects.filter(name=name).first()
        if repo is None:
            return
        tags = list(IndexedTag.objects.filter(repository=repo, digest=digest).values_list("name", flat=True))
        IndexedTag.objects.filter(repository=repo, digest=digest).delete()
        TagHistory.objects.bulk_create([TagHistory(repository=name, tag=t, digest="", at=now, source=source,
                                                   actor=actor) for t in tags])
        RepositoryManifest.objects.filter(repository=repo, manifest__digest=digest, deleted_at__isnull=True).update(
            deleted_at=now)
        _refresh_repository(repo, changed=True, at=now)


def remove_repository(name: str, *, source: str = "sync", actor: str = "", at: datetime | None = None) -> None:
    """Gone from the catalog: forget its tags; its manifests count as garbage until GC."""
    now = at or timezone.now()
    with transaction.atomic():
        repo = IndexedRepository.objects.filter(name=name).first()
        if repo is None:
            return
        tags = list(repo.tags.values_list("name", flat=True))
        TagHistory.objects.bulk_create([TagHistory(repository=name, tag=t, digest="", at=now, source=source,
                                                   actor=actor) for t in tags], batch_size=500)
        repo.tags.all().delete()
        RepositoryManifest.objects.filter(repository=repo, deleted_at__isnull=True).update(deleted_at=now)
        _refresh_repository(repo, changed=bool(tags), at=now)


def after_garbage_collection(*, delete_untagged: bool) -> None:
    """A collection that deleted ran: deleted manifests are gone from disk, and with
    --delete-untagged so is every manifest no tag reaches. A handful of queries whatever the
    number of repositories (10,000 repositories must not mean 30,000 queries)."""
    with transaction.atomic():
        RepositoryManifest.objects.filter(deleted_at__isnull=False).delete()
        if delete_untagged:
            reach: dict[int, set[int]] = {}
            for repo_id, manifest_id in IndexedTag.objects.filter(manifest__isnull=False).values_list(
                    "repository_id", "manifest_id"):
                reach.setdefault(repo_id, set()).add(manifest_id)
            ids = dict(IndexedManifest.objects.filter(
                digest__in=ManifestChild.objects.values("digest")).values_list("digest", "id"))
            children: dict[int, set[int]] = {}
            for parent_id, digest in ManifestChild.objects.values_list("parent_id", "digest"):
                if digest in ids:
                    children.setdefault(parent_id, set()).add(ids[digest])
            for reached in reach.values():
                frontier = set(reached)
                while frontier:
                    frontier = {c for m_id in frontier for c in children.get(m_id, ())} - reached
                    reached |= frontier
            gone = [pk for pk, repo_id, manifest_id in RepositoryManifest.objects.values_list(
                "id", "repository_id", "manifest_id") if manifest_id not in reach.get(repo_id, ())]
            for i in range(0, len(gone), 500):
                RepositoryManifest.objects.filter(pk__in=gone[i:i + 500]).delete()
        IndexedRepository.objects.filter(tag_count=0).annotate(n=Count("manifest_links")).filter(n=0).delete()


def _refresh_repository(repo: IndexedRepository, *, changed: bool, at: datetime, synced: bool = False,
                        count: int | None = None) -> None:
    fields: dict[str, object] = {"tag_count": IndexedTag.objects.filter(repository=repo).count()
                                 if count is None else count}
    if changed:
        fields["changed_at"] = at
    if synced:
        fields["synced_at"] = at
    IndexedRepository.objects.filter(pk=repo.pk).update(**fields)


def record_dashboard_event(action: str, name: str, *, tag: str = "", digest: str = "", actor: str = "",
                           address: str = "", media_type: str = "") -> None:
    """What the dashboard itself did, in the feed under the user's name. The registry reports the
    same change as events from the dashboard's User-Agent, which the endpoint drops: a 2.8 untag
    is a throwaway push and a delete there, and "registryui" is not who did it."""
    RegistryEvent.objects.create(
        event_id=f"dashboard-{uuid.uuid4()}", action=action, repository=name, tag=tag, digest=digest,
        media_type=media_type[:200], actor=actor[:150], address=address[:100], at=timezone.now(),
        source=RegistryEvent.Source.DASHBOARD, applied=True)


def tag_digests(name: str) -> dict[str, str]:
    """What the index says each tag of `name` points at."""
    return dict(IndexedTag.objects.filter(repository__name=name).values_list("name", "digest"))


def is_indexed(name: str) -> bool:
    return IndexedRepository.objects.filter(name=name, synced_at__isnull=False).exists()
