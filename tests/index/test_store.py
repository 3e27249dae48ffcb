"""dashboard.index.store: the index's writes. Orders, diffs and links are what the pages show, so
each test states what a user would see go wrong; manifests come from the real seeded registry.

Runs on SQLite and, in CI, again on PostgreSQL (scripts/test): the tag order must be the same on
both, which on PostgreSQL needs the "C" collation (its default sorts punctuation its own way).
"""

from __future__ import annotations

import hashlib
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections

from dashboard.index import store
from dashboard.index.store import version_sort_key
from dashboard.models import (
    IndexedBlob,
    IndexedManifest,
    IndexedRepository,
    IndexedTag,
    ManifestBlob,
    ManifestChild,
    RepositoryManifest,
    TagHistory,
)
from testbed.server import free_port

pytestmark = pytest.mark.postgres

REPO = "team/app"
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


D1, D2, D3 = _digest("one"), _digest("two"), _digest("three")


def _when(iso: str | None) -> datetime | None:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if iso else None


# -- semver order as a string --------------------------------------------------------------------

TRICKY_TAGS = [
    "latest", "main", "stable", "edge", "nightly", "dev", "Latest", "LATEST", "_private", "a", "A", "z", "Z",
    "1.10.0", "1.9.0", "1.2.0", "1.2", "1.2.0.0", "v1.2", "v1.2.0", "1", "0", "00", "01", "1.0", "1.01", "v0",
    "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0-rc1", "1.0.0-rc10", "1.0.0-rc2", "1.0.0-RC.1",
    "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
    "1.0.0", "v1.0.0", "1.0.0-0", "1.0.0-1", "1.0.0-01", "1.0.0-x-y", "1.0.0-x.y", "1.0.0-x", "1.0.0--",
    "2024.01.15", "2024.1.2", "20240115", "2024-01-15", "v20240115", "99999999999999999999",
    "100000000000000000000", "123456789012345678901234567890", "1.123456789012345678901234567890",
    "1.99999999999999999999", "build-9", "build-10", "build-010", "build_9", "build.9", "build9", "build",
    "build-", "a-b", "a.b", "a_b", "a-", "a.", "a1", "a01", "a-1", "a.1", "a1b", "a10b", "a2b",
    "sha256-" + "0" * 64, "sha256-" + "f" * 64 + ".sig", "sha256-" + "f" * 64 + ".att", "x" * 128,
    "3.19", "3.19.1", "3.19.1-r0", "3.19-slim", "3.19.1-alpine3.19", "3-alpine", "v3", "V3",
    "1.2.3-rc.1-hotfix", "1.2.3-hotfix.2", "1.2.3-9", "1.2.3-10", "1.2.3-a.9", "1.2.3-a.10",
]


def _random_tags(count: int, seed: int) -> list[str]:
    """Tags the registry accepts ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}), heavy on digits and dots
    so that many of them parse as versions."""
    rng = random.Random(seed)
    alphabet = "0123456789" * 4 + ".." + "--" + "_" + "abcrvxRCZ"
    tags = set()
    while len(tags) < count:
        first = rng.choice("0123456789v" * 3 + "abcA_")
        tags.add(first + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))))
    return sorted(tags)


def _expected_order(tags: list[str]) -> list[str]:
    from dashboard.ordering import version_key

    # version_key's ties (01 and 1) fall back to the name, as the database's order does below.
    return sorted(tags, key=lambda t: (version_key(t), t))


def _version_order() -> list:
    """ORDER BY for the tag table by version, as the pages sort it: the key compared byte by
    byte (ordering.c_order: the "C" collation on PostgreSQL), then the name."""
    from dashboard.ordering import c_order

    return ["is_version", c_order("version_key"), c_order("name")]


def test_version_sort_key__orders_tricky_tags_like_the_live_page() -> None:
    tags = sorted(set(TRICKY_TAGS + _random_tags(3000, seed=7)))
    assert sorted(tags, key=lambda t: (version_sort_key(t), t)) == _expected_order(tags)
    # The order a user expects, in a few words: names first, then versions, newest last.
    order = _expected_order(["1.10.0", "1.9.0", "latest", "1.0.0", "1.0.0-rc.10", "1.0.0-rc.2", "v1.2"])
    assert order == ["latest", "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0", "v1.2", "1.9.0", "1.10.0"]


def test_version_sort_key__says_which_tags_are_versions() -> None:
    assert [version_sort_key(t)[0] for t in ["1.2.3", "v2", "3.19.1-r0", "latest", "build-9", "v", "1.2.x"]] == \
        [True, True, True, False, False, False, False]


def test_tag_table__database_orders_by_version_key_like_python(db) -> None:
    tags = sorted(set(TRICKY_TAGS + _random_tags(1500, seed=11)))
    store.set_tags(REPO, dict.fromkeys(tags, D1), source="sync", complete=True)
    ordered = list(IndexedTag.objects.filter(repository__name=REPO).order_by(*_version_order())
                   .values_list("name", flat=True))
    assert ordered == _expected_order(tags)
    descending = [o.desc() for o in _version_order()[1:]]
    newest_first = list(IndexedTag.objects.filter(repository__name=REPO, is_version=True).order_by(*descending)
                        .values_list("name", flat=True)[:3])
    assert newest_first == [t for t in reversed(_expected_order(tags)) if store.version_sort_key(t)[0]][:3]


# -- set_tags: what changed, and history ------------------------------------------------------------


def _history(tag: str) -> list[tuple[str, str]]:
    return [(h.digest, h.source) for h in TagHistory.objects.filter(repository=REPO, tag=tag).order_by("at", "id")]


def test_set_tags__new_moved_and_removed_tags_are_written_to_history(db) -> None:
    assert store.set_tags(REPO, {"1.0": D1, "latest": D1}, source="sync", complete=True, at=T0) == 2
    later = T0 + timedelta(minutes=5)
    # latest moves, 1.0 is gone, 2.0 is new.
    assert store.set_tags(REPO, {"2.0": D2, "latest": D2}, source="sync", complete=True, at=later) == 3
    assert store.tag_digests(REPO) == {"2.0": D2, "latest": D2}
    assert _history("latest") == [(D1, "sync"), (D2, "sync")]
    assert _history("1.0") == [(D1, "sync"), ("", "sync")]
    assert _history("2.0") == [(D2, "sync")]
    repo = IndexedRepository.objects.get(name=REPO)
    assert (repo.tag_count, repo.synced_at, repo.changed_at) == (2, later, later)


def test_set_tags__nothing_changed_writes_nothing(db) -> None:
    tags = {f"v{i}": D1 for i in range(50)}
    store.set_tags(REPO, tags, source="sync", complete=True, at=T0)
    assert store.set_tags(REPO, tags, source="sync", complete=True, at=T0 + timedelta(hours=1)) == 0
    assert TagHistory.objects.count() == 50
    repo = IndexedRepository.objects.get(name=REPO)
    # Read again, so it is fresh; changed only when something did.
    assert (repo.synced_at, repo.changed_at) == (T0 + timedelta(hours=1), T0)


def test_set_tags__an_event_changes_one_tag_and_leaves_the_others(db) -> None:
    store.set_tags(REPO, {"1.0": D1, "latest": D1}, source="sync", complete=True, at=T0)
    assert store.set_tags(REPO, {"latest": D2}, source="event", actor="ci", at=T0 + timedelta(seconds=1)) == 1
    assert store.tag_digests(REPO) == {"1.0": D1, "latest": D2}
    assert _history("latest")[-1] == (D2, "event")


def test_set_tags__as_of_keeps_a_newer_events_change_from_an_older_sync(db) -> None:
    """A sync read the registry at T0 and writes later; meanwhile push events moved `latest` and
    added `hotfix`. What the events said is newer than what the sync knows: it stays."""
    store.set_tags(REPO, {"1.0": D1, "latest": D1}, source="sync", complete=True, at=T0 - timedelta(hours=1))
    store.set_tags(REPO, {"latest": D3}, source="event", at=T0 + timedelta(seconds=1))
    store.set_tags(REPO, {"hotfix": D3}, source="event", at=T0 + timedelta(seconds=2))
    changed = store.set_tags(REPO, {"1.0": D2, "latest": D1}, source="sync", complete=True, as_of=T0,
                             at=T0 + timedelta(seconds=3))
    assert changed == 1  # only 1.0, which no event touched
    assert store.tag_digests(REPO) == {"1.0": D2, "latest": D3, "hotfix": D3}


def test_set_tags__as_of_keeps_a_newer_delete_event_from_an_older_sync(db) -> None:
    store.set_tags(REPO, {"1.0": D1, "old": D2}, source="sync", complete=True, at=T0 - timedelta(hours=1))
    # The sync lists tags at T0; a delete event removes `old` a second later.
    store.remove_tag(REPO, "old", source="event", at=T0 + timedelta(seconds=1))
    store.set_tags(REPO, {"1.0": D1, "old": D2}, source="sync", complete=True, as_of=T0,
                   at=T0 + timedelta(seconds=3))
    assert store.tag_digests(REPO) == {"1.0": D1}


def test_set_tags__as_of_keeps_a_newer_delete_and_push_from_an_older_sync(db) -> None:
    store.set_tags(REPO, {"1.0": D1, "old": D2}, source="sync", complete=True, at=T0 - timedelta(hours=1))
    # The sync lists tags at T0; then `old` is deleted and `new` is pushed (events).
    store.remove_tag(REPO, "old", source="event", at=T0 + timedelta(seconds=1))
    store.set_tags(REPO, {"new": D3}, source="event", at=T0 + timedelta(seconds=2))
    store.set_tags(REPO, {"1.0": D1, "old": D2}, source="sync", complete=True, as_of=T0,
                   at=T0 + timedelta(seconds=3))
    assert store.tag_digests(REPO) == {"1.0": D1, "new": D3}


def test_remove_tag__writes_history_once(db) -> None:
    store.set_tags(REPO, {"1.0": D1, "2.0": D2}, source="sync", complete=True, at=T0)
    assert store.remove_tag(REPO, "1.0", source="dashboard", actor="mia") is True
    assert store.remove_tag(REPO, "1.0", source="dashboard", actor="mia") is False
    assert _history("1.0") == [(D1, "sync"), ("", "dashboard")]
    assert IndexedRepository.objects.get(name=REPO).tag_count == 1


# -- fetch_and_index on the real registry ---------------------------------------------------------


def _unreachable(configure) -> None:
    """Point the dashboard at a closed port: whatever is read from now on fails."""
    from django.core.cache import cache

    configure(REGISTRY_URL=f"http://127.0.0.1:{free_port()}", CONNECT_TIMEOUT=1.0)
    cache.clear()


def test_fetch_and_index__an_image_with_its_config_blobs_and_links(dashboard, configure) -> None:
    seeded = dashboard.seeded
    fact = seeded.fact("acme/web", "1.10.0")
    assert store.fetch_and_index("acme/web", [fact.digest]) == 1
    row = IndexedManifest.objects.get(digest=fact.digest)
    assert (row.media_type, row.size, row.kind, row.image_size) == (fact.media_type, fact.manifest_size, "image",
                                                                     fact.size)
    assert row.created == _when(fact.created)
    assert row.platforms == fact.platform
    assert row.config_digest == fact.config_digest
    assert row.labels == dict(fact.labels)
    # Labels are searchable as text, hostile ones stored as they are (the pages escape them).
    assert "com.acme.description=<script>alert(1)</script>" in row.labels_text.splitlines()
    assert row.problem == ""
    links = {(mb.blob.digest, mb.role, mb.blob.size) for mb in ManifestBlob.objects.filter(manifest=row)
             .select_related("blob")}
    assert links == {(fact.config_digest, "config", fact.config_size),
                     *((d, "layer", s) for d, s in zip(fact.layer_digests, fact.layer_sizes, strict=True))}
    assert IndexedBlob.objects.get(digest=fact.layer_digests[0]).media_type == fact.layer_media_types[0]
    assert list(RepositoryManifest.objects.filter(manifest=row).values_list("repository__name", "deleted_at")) == \
        [("acme/web", None)]

    # Known digests are never fetched again: with the registry gone, indexing them still works.
    _unreachable(configure)
    assert store.fetch_and_index("acme/web", [fact.digest]) == 0


def test_fetch_and_index__an_index_with_its_platforms_and_attestation(dashboard) -> None:
    fact = dashboard.seeded.fact("acme/multi", "2.0")
    assert store.fetch_and_index("acme/multi", [fact.digest]) == 1 + len(fact.children)
    row = IndexedManifest.objects.get(digest=fact.digest)
    assert row.kind == "index"
    # The size of an index is what its platforms pull, the attestation manifest aside.
    assert row.image_size == fact.size
    # The platforms a user can pull, in the index's order; the attestation is none of them.
    assert row.platforms.split() == list(fact.platforms)
    assert row.created == max(_when(c.created) for c in fact.children if c.kind == "image")
    children = {c.digest: c for c in ManifestChild.objects.filter(parent=row)}
    assert set(children) == {c.digest for c in fact.children}
    for child in fact.children:
        assert children[child.digest].attestation == (child.kind == "attestation-manifest"), child
        indexed = IndexedManifest.objects.get(digest=child.digest)
        assert indexed.image_size == child.size
        if child.platform and child.kind == "image":
            assert indexed.platforms == child.platform
    # The children live in the repository too (the registry keeps them there), untagged.
    in_repo = set(RepositoryManifest.objects.filter(repository__name="acme/multi")
                  .values_list("manifest__digest", flat=True))
    assert in_repo == {fact.digest, *(c.digest for c in fact.children)}


def test_fetch_and_index__a_docker_manifest_list_and_a_helm_chart(dashboard) -> None:
    seeded = dashboard.seeded
    legacy = seeded.fact("acme/multi", "legacy-list")
    chart = seeded.fact("acme/charts/mychart", "0.1.0")
    store.fetch_and_index("acme/multi", [legacy.digest])
    store.fetch_and_index("acme/charts/mychart", [chart.digest])
    row = IndexedManifest.objects.get(digest=legacy.digest)
    assert (row.kind, row.image_size) == ("index", legacy.size)
    assert set(row.platforms.split()) == set(legacy.platforms)
    helm = IndexedManifest.objects.get(digest=chart.digest)
    # A chart has no image config: its date comes from the manifest's annotation.
    assert (helm.kind, helm.created, helm.image_size) == ("helm chart", _when(chart.created), chart.size)


def test_fetch_and_index__a_broken_config_is_indexed_with_its_problem(dashboard) -> None:
    fact = dashboard.seeded.fact("bad/config", "latest")
    assert store.fetch_and_index("bad/config", [fact.digest]) == 1
    row = IndexedManifest.objects.get(digest=fact.digest)
    assert row.problem and row.created is None


def test_fetch_and_index__links_tags_that_named_the_digest_first(dashboard) -> None:
    """A push event names tag and digest before the manifest is fetched: the tag shows up at
    once, and gets its date and size when the manifest is indexed."""
    fact = dashboard.seeded.fact("acme/web", "1.9.0")
    store.set_tags("acme/web", {"1.9.0": fact.digest}, source="event")
    assert IndexedTag.objects.get(repository__name="acme/web", name="1.9.0").manifest is None
    store.fetch_and_index("acme/web", [fact.digest])
    tag = IndexedTag.objects.select_related("manifest").get(repository__name="acme/web", name="1.9.0")
    assert (tag.manifest.created, tag.manifest.image_size) == (_when(fact.created), fact.size)


def test_fetch_and_index__a_digest_the_registry_lacks_is_skipped(dashboard) -> None:
    fact = dashboard.seeded.fact("library/alpine", "3.19")
    assert store.fetch_and_index("library/alpine", [fact.digest, D1]) == 1
    assert list(IndexedManifest.objects.values_list("digest", flat=True)) == [fact.digest]


# -- deletes and garbage collection ---------------------------------------------------------------


def _garbage() -> set[str]:
    """Blobs only deleted manifests still hold: what a collection would free."""
    live = set(RepositoryManifest.objects.filter(deleted_at__isnull=True).values_list("manifest_id", flat=True))
    dead = set(RepositoryManifest.objects.filter(deleted_at__isnull=False).values_list("manifest_id", flat=True))
    held = set(ManifestBlob.objects.filter(manifest_id__in=live).values_list("blob__digest", flat=True))
    return set(ManifestBlob.objects.filter(manifest_id__in=dead).values_list("blob__digest", flat=True)) - held


def _index_tags(repo: str, tags: dict[str, str]) -> None:
    store.set_tags(repo, tags, source="sync", complete=True)
    store.fetch_and_index(repo, sorted(set(tags.values())))


def test_remove_manifest__its_tags_go_and_its_blobs_count_as_garbage_until_gc(dashboard) -> None:
    seeded = dashboard.seeded
    new, old = seeded.fact("acme/web", "1.10.0"), seeded.fact("acme/web", "1.2.0")
    _index_tags("acme/web", {"1.10.0": new.digest, "latest": new.digest, "1.2.0": old.digest})
    assert _garbage() == set()

    store.remove_manifest("acme/web", new.digest, source="event", actor="ci")
    assert store.tag_digests("acme/web") == {"1.2.0": old.digest}
    assert TagHistory.objects.filter(repository="acme/web", tag="latest", digest="", source="event",
                                     actor="ci").exists()
    assert _garbage() == {new.config_digest, *new.layer_digests}
    # The bytes are still on disk: the blob rows stay, sizes and all.
    assert IndexedBlob.objects.filter(digest__in=new.layer_digests).count() == len(new.layer_digests)

    store.after_garbage_collection(delete_untagged=False)
    assert _garbage() == set()
    assert not RepositoryManifest.objects.filter(manifest__digest=new.digest).exists()
    assert RepositoryManifest.objects.filter(manifest__digest=old.digest, deleted_at__isnull=True).exists()


def test_after_garbage_collection__delete_untagged_keeps_the_platforms_of_a_tagged_index(dashboard) -> None:
    seeded = dashboard.seeded
    multi = seeded.fact("acme/multi", "2.0")
    _index_tags("acme/multi", {"2.0": multi.digest})
    web = seeded.fact("acme/web", "1.2.0")
    _index_tags("acme/web", {"1.2.0": web.digest})
    # The referrer artifact is in acme/web untagged: --delete-untagged removes it.
    store.fetch_and_index("acme/web", [seeded.referrer_digest])
    store.remove_repository("acme/web")

    store.after_garbage_collection(delete_untagged=True)
    kept = set(RepositoryManifest.objects.filter(repository__name="acme/multi")
               .values_list("manifest__digest", flat=True))
    assert kept == {multi.digest, *(c.digest for c in multi.children)}
    # A repository with nothing left leaves the index.
    assert list(IndexedRepository.objects.values_list("name", flat=True)) == ["acme/multi"]


# -- several writers at once -------------------------------------------------------------------------


def _together(*calls) -> None:
    """Run the calls in threads released at the same moment; re-raise the first failure."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call) -> None:
        try:
            barrier.wait(timeout=10)
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]


@pytest.mark.django_db(transaction=True)
def test_two_writers__same_sync_at_once_leaves_one_row_each(dashboard) -> None:
    """Two dashboard processes sync the same repository at the same moment (a schedule on
    each, or an event during a sync): every tag, manifest, blob and link exists once."""
    seeded = dashboard.seeded
    tags = {f"{repo}:{tag}": digest for repo in ("acme/web", "acme/multi") for tag, digest in seeded.tags[repo].items()}

    def sync() -> None:
        for repo in ("acme/web", "acme/multi"):
            mine = {t.split(":", 1)[1]: d for t, d in tags.items() if t.startswith(repo + ":")}
            store.set_tags(repo, mine, source="sync", complete=True)
            store.fetch_and_index(repo, sorted(set(mine.values())))

    _together(sync, sync)
    assert IndexedRepository.objects.count() == 2
    assert IndexedTag.objects.count() == len(tags)
    assert store.tag_digests("acme/web") == dict(seeded.tags["acme/web"])
    digests = list(IndexedManifest.objects.values_list("digest", flat=True))
    assert len(digests) == len(set(digests))
    blobs = list(IndexedBlob.objects.values_list("digest", flat=True))
    assert len(blobs) == len(set(blobs))
    for model, fields in ((ManifestBlob, ("manifest_id", "blob_id")), (ManifestChild, ("parent_id", "digest")),
                          (RepositoryManifest, ("repository_id", "manifest_id"))):
        rows = list(model.objects.values_list(*fields))
        assert len(rows) == len(set(rows)), model.__name__
    # Every tag points at an indexed manifest: the tag table has a date and a size for each.
    assert not IndexedTag.objects.filter(manifest__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_two_writers__same_new_tags_at_once_write_history_once() -> None:
    tags = {f"v{i}": D1 for i in range(300)}
    _together(*[lambda: store.set_tags(REPO, tags, source="sync", complete=True)] * 2)
    assert TagHistory.objects.filter(repository=REPO).count() == len(tags)


# -- pulls ---------------------------------------------------------------------------------------


def _pull(n: int, *, tag: str = "", digest: str = "", actor: str = "", at: datetime = T0):
    from dashboard.models import RegistryEvent

    RegistryEvent.objects.create(event_id=f"pull-{n}", action="pull", repository=REPO, tag=tag, digest=digest,
                                 actor=actor, at=at, applied=True)


def _pulls(tag: str) -> tuple[int, datetime | None]:
    row = IndexedTag.objects.get(repository__name=REPO, name=tag)
    return row.pull_count, row.last_pulled_at


def test_pulls__arrived_before_the_index_knew_the_tag__counted_when_it_learns_it(db) -> None:
    a, b = _digest("a"), _digest("b")
    _pull(1, tag="1.0", digest=a, at=T0)
    _pull(2, tag="1.0", digest=a, at=T0 + timedelta(minutes=1))
    _pull(3, digest=a, at=T0 + timedelta(minutes=2))  # by digest: every tag on it
    _pull(4, tag="other", digest=b, at=T0 + timedelta(minutes=3))

    store.set_tags(REPO, {"1.0": a, "same": a, "2.0": b}, source="event", at=T0 + timedelta(hours=1))

    assert _pulls("1.0") == (3, T0 + timedelta(minutes=2))
    assert _pulls("same") == (1, T0 + timedelta(minutes=2))
    assert _pulls("2.0") == (0, None)  # "other" is another tag; b was never pulled by digest


def test_pulls__a_moved_tag_keeps_its_pulls_by_name__by_digest_ones_follow_the_digest(db) -> None:
    a, b = _digest("a"), _digest("b")
    store.set_tags(REPO, {"latest": a}, source="event", at=T0)
    _pull(1, tag="latest", digest=a, at=T0 + timedelta(minutes=1))
    _pull(2, digest=a, at=T0 + timedelta(minutes=2))
    store.recount_pulls(REPO)
    assert _pulls("latest") == (2, T0 + timedelta(minutes=2))

    store.set_tags(REPO, {"latest": b}, source="event", at=T0 + timedelta(hours=1))

    assert _pulls("latest") == (1, T0 + timedelta(minutes=1))
