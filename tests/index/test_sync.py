"""The reconcile sync on real registries: what it indexes, what a resync costs, resuming, the lock.

Request counts come from a real HTTP proxy in front of the registry (`Recorder`), which also
fails chosen paths the way a sick registry would; nothing of the registry is mocked.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from dashboard.index import store, sync
from dashboard.models import IndexedManifest, IndexedRepository, IndexedTag, RepositoryManifest, SyncRun, TagHistory
from dashboard.registry.parse import parse_time
from testbed import Kind, RegistryServer
from testbed import push as p
from testbed.server import free_port
from tests.helpers.recorder import Recorder, kind_of

pytestmark = pytest.mark.postgres

IMMEDIATE = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}


# -- a real proxy that counts and fails ---------------------------------------------------------------


# -- fixtures -----------------------------------------------------------------------------------------


def point_at(configure, settings, url: str, **extra: object) -> None:
    from django.core.cache import cache

    configure(REGISTRY_URL=url, CATALOG_TTL=0, SYNC_INTERVAL=0, SYNC_STALE_SECONDS=120.0)
    configure(**extra)
    settings.TASKS = IMMEDIATE
    cache.clear()


@pytest.fixture
def seeded(dashboard, configure, settings):
    """The seeded session registry, no schedule, tasks run at once."""
    point_at(configure, settings, dashboard.url)
    return dashboard


@pytest.fixture
def recorded(dashboard, configure, settings) -> Iterator[Recorder]:
    """The seeded session registry behind a recording proxy."""
    with Recorder(dashboard.url) as proxy:
        point_at(configure, settings, proxy.url)
        yield proxy


@pytest.fixture
def own(tmp_path: Path, configure, settings, db) -> Iterator[RegistryServer]:
    """A registry of this test's own, on a port that survives a restart."""
    with RegistryServer(tmp_path / "registry", port=free_port()) as server:
        point_at(configure, settings, server.url)
        yield server


def image(text: str, created: str = "2024-01-01T00:00:00Z") -> p.Image:
    return p.build_image([{"f.txt": text.encode()}], created=created)


def index_of(repo: str) -> dict[str, str]:
    return dict(IndexedTag.objects.filter(repository__name=repo).values_list("name", "digest"))


def tag_total(seeded) -> int:
    return sum(len(t) for t in seeded.seeded.tags.values())


# -- what a sync indexes ------------------------------------------------------------------------------


def test_first_sync__indexes_every_tag_with_the_digest_the_registry_reports(seeded) -> None:
    facts = seeded.seeded
    run = sync.run_now()
    assert run.state == "succeeded", run.error
    assert run.repositories_total == run.repositories_done == len(facts.repos)
    assert run.tags_seen == run.heads == tag_total(seeded)
    assert run.tags_changed == tag_total(seeded)
    for repo, tags in facts.tags.items():
        assert index_of(repo) == dict(tags), repo
    assert not run.active and run.finished_at and run.cursor == facts.repos[-1]


def test_first_sync__images_have_their_created_time_size_and_platform(seeded) -> None:
    facts = seeded.seeded
    sync.run_now()
    checked = 0
    for repo, tags in facts.tags.items():
        for tag, digest in tags.items():
            fact = facts.manifests[digest]
            row = IndexedTag.objects.select_related("manifest").get(repository__name=repo, name=tag).manifest
            assert row is not None, f"{repo}:{tag} has no indexed manifest"
            assert row.media_type == fact.media_type
            if fact.kind in (Kind.IMAGE, Kind.INDEX, Kind.MANIFEST_LIST) and repo != "bad/config":
                assert row.image_size == fact.size, f"{repo}:{tag}"
                assert sorted(row.platforms.split()) == sorted(fact.platforms), f"{repo}:{tag}"
                checked += 1
            if fact.kind == Kind.IMAGE and fact.created and repo != "bad/config":
                assert row.created == parse_time(fact.created), f"{repo}:{tag}"
    assert checked > len(facts.bulk_repos)
    # An index's platform manifests are indexed and belong to the repository, untagged.
    multi = facts.fact("acme/multi", "2.0")
    linked = set(RepositoryManifest.objects.filter(repository__name="acme/multi").values_list(
        "manifest__digest", flat=True))
    assert {c.digest for c in multi.children} <= linked


@pytest.mark.parametrize("batches", [None, (3, 2, 1, 1)], ids=["default batches", "tiny batches"])
def test_first_sync__each_manifest_and_config_is_fetched_once(
        recorded, dashboard, monkeypatch, batches) -> None:
    if batches:
        for name, value in zip(("BATCH_REPOSITORIES", "BATCH_TAGS", "SUB_BATCH", "LOOKAHEAD"), batches, strict=True):
            monkeypatch.setattr(sync, name, value)
    run = sync.run_now()
    assert run.state == "succeeded", run.error
    gets = [path for method, path in recorded.seen if method == "GET" and kind_of(path) in ("manifest", "blob")]
    digests = [path.rsplit("/", 1)[1] for path in gets]
    assert len(digests) >= IndexedManifest.objects.count()
    assert len(digests) == len(set(digests)), Counter(d for d in digests if digests.count(d) > 1)
    assert run.manifests_fetched == IndexedManifest.objects.count()
    for repo, tags in dashboard.seeded.tags.items():
        assert index_of(repo) == dict(tags), repo


def test_resync_with_nothing_changed__costs_the_catalog_the_tag_lists_and_one_head_per_tag(
        recorded, dashboard) -> None:
    sync.run_now()
    recorded.reset()
    again = sync.run_now()
    assert again.state == "succeeded", again.error
    assert recorded.counts() == Counter({("GET", "catalog"): 1, ("GET", "tags"): len(dashboard.seeded.repos),
                                         ("HEAD", "manifest"): tag_total(dashboard)})
    assert again.tags_changed == 0 and again.manifests_fetched == 0


def test_sync_repository__nothing_changed__one_tag_list_and_one_head_per_tag(
        recorded, dashboard) -> None:
    first = sync.sync_repository("acme/web")
    assert first.tags == len(dashboard.seeded.tags["acme/web"]) and first.changed == first.tags and not first.problem
    recorded.reset()
    again = sync.sync_repository("acme/web")
    assert again == sync.RepoResult("acme/web", tags=first.tags, heads=first.tags)
    assert recorded.counts() == Counter({("GET", "tags"): 1, ("HEAD", "manifest"): first.tags})


def test_next_sync__picks_up_a_moved_tag_a_removed_tag_and_a_removed_repository(own: RegistryServer) -> None:
    one, two = image("one"), image("two")
    p.push_image(own.url, "team/app", one, "stable")
    p.push_image(own.url, "team/app", one, "old")
    p.push_image(own.url, "team/leaving", two, "v1")
    assert sync.run_now().state == "succeeded"
    assert index_of("team/app") == {"stable": one.digest, "old": one.digest}

    moved = p.push_image(own.url, "team/app", two, "stable")
    p.delete_manifest(own.url, "team/app", one.digest)  # "old" goes with the image it named
    shutil.rmtree(own.storage_dir / "docker/registry/v2/repositories/team/leaving")  # out of the catalog
    run = sync.run_now()

    assert run.state == "succeeded", run.error
    assert index_of("team/app") == {"stable": moved}
    assert index_of("team/leaving") == {}
    assert run.tags_changed == 2  # stable moved, old removed; team/leaving's tag went with it
    assert run.details["removed"] == ["team/leaving"]
    assert not RepositoryManifest.objects.filter(repository__name="team/leaving", deleted_at__isnull=True).exists()
    history = list(TagHistory.objects.filter(repository="team/app").order_by("at", "id").values_list(
        "tag", "digest", "source"))
    assert ("stable", moved, "sync") in history and ("old", "", "sync") in history


def test_sync__a_tag_an_event_moved_after_the_tag_list_was_read_is_left_alone(own: RegistryServer) -> None:
    first, second = image("first"), image("second")
    p.push_image(own.url, "team/app", first, "latest")
    sync.run_now()
    # The event for a push that happened after the registry was read, applied before the sync writes.
    later = timezone.now() + timedelta(seconds=30)
    store.set_tags("team/app", {"latest": second.digest}, source="event", at=later)
    sync.run_now()
    assert index_of("team/app") == {"latest": second.digest}


# -- the network: bounded, overlapped -----------------------------------------------------------------------


def test_sync__repositories_overlap_within_the_concurrency_bound(dashboard, configure, settings) -> None:
    with Recorder(dashboard.url, delay=0.01) as proxy:
        point_at(configure, settings, proxy.url, CONCURRENCY=4)
        run = sync.run_now()
    assert run.state == "succeeded", run.error
    assert proxy.peak["all"] == 4  # never more than REGISTRYUI_CONCURRENCY at once
    # Tag lists of several repositories at once, and HEADs of several (the bulk repositories have
    # one tag each, so HEADs in flight together belong to different repositories).
    assert proxy.peak["tags"] == 4 and proxy.peak["manifest"] == 4


# -- failures, resuming -----------------------------------------------------------------------------------


def test_registry_stopped_midway__the_run_fails_saying_so__the_next_resumes_after_the_cursor(
        own: RegistryServer, monkeypatch) -> None:
    names = [f"team/r{i}" for i in range(6)]
    for i, name in enumerate(names):
        p.push_image(own.url, name, image(f"r{i}"), "v1")
    monkeypatch.setattr(sync, "BATCH_REPOSITORIES", 2)
    seen: list[str] = []

    def stop_after_two(run: SyncRun) -> None:
        seen.append(run.cursor)
        if run.repositories_done == 2:
            own.stop()

    failed = sync.run_now(on_progress=stop_after_two)
    assert failed.state == "failed"
    assert failed.repositories_done == 2 and failed.cursor == "team/r1"
    assert f"connection refused at {own.url}" in failed.error and "is the registry running?" in failed.error
    assert failed.error.endswith("is the registry running? The next sync resumes after team/r1.")
    assert all(index_of(n) for n in names[:2])
    assert not any(index_of(n) for n in names[2:])

    own.start()
    seen.clear()
    resumed = sync.run_now(on_progress=lambda run: seen.append(run.cursor))
    assert resumed.state == "succeeded", resumed.error
    assert resumed.details["resumed_after"] == "team/r1"
    assert seen == ["team/r3", "team/r5", "team/r1"]  # the ones never reached first, then the rest
    assert all(index_of(n) == {"v1": image(f"r{i}").digest} for i, n in enumerate(names))


def test_failed_runs_in_a_row__each_resumes_where_the_last_one_that_read_anything_stopped(seeded) -> None:
    long_ago = timezone.now() - timedelta(hours=1)
    SyncRun.objects.create(state="failed", active=False, started_at=long_ago, finished_at=long_ago, cursor="acme/web")
    SyncRun.objects.create(state="failed", active=False, finished_at=long_ago)  # never picked up
    catalog_down = SyncRun.objects.create(state="failed", active=False, started_at=long_ago, finished_at=long_ago,
                                          cursor="acme/web", error="could not read the catalog: …")
    assert catalog_down.cursor == "acme/web"
    run = sync.run_now()
    assert run.details["resumed_after"] == "acme/web"


def test_catalog_unreadable__the_resume_point_is_kept(configure, settings, db) -> None:
    long_ago = timezone.now() - timedelta(hours=1)
    SyncRun.objects.create(state="failed", active=False, started_at=long_ago, finished_at=long_ago, cursor="acme/web")
    point_at(configure, settings, f"http://127.0.0.1:{free_port()}")
    run = sync.run_now()
    assert run.state == "failed" and run.cursor == "acme/web"


def test_registry_unavailable_at_one_repository__stops_there__the_next_run_starts_with_it(
        dashboard, configure, settings, monkeypatch) -> None:
    monkeypatch.setattr(sync, "BATCH_REPOSITORIES", 4)
    with Recorder(dashboard.url) as proxy:
        point_at(configure, settings, proxy.url)
        proxy.fail["/v2/acme/multi/tags/list"] = 503
        failed = sync.run_now()
        assert failed.state == "failed"
        assert failed.error.startswith("stopped at acme/multi after 2 of ")
        assert failed.cursor == "acme/gone"
        del proxy.fail["/v2/acme/multi/tags/list"]
        resumed = sync.run_now()
    assert resumed.state == "succeeded"
    assert resumed.details["resumed_after"] == "acme/gone"
    assert index_of("acme/multi") == dict(dashboard.seeded.tags["acme/multi"])


def test_one_repository_answers_an_error__the_others_are_synced_and_the_run_names_it(
        recorded, dashboard) -> None:
    recorded.fail["/v2/acme/web/tags/list"] = 500
    run = sync.run_now()
    assert run.state == "succeeded"
    assert run.details["problem_count"] == 1
    assert "injected by the test proxy" in run.details["problems"]["acme/web"]
    assert index_of("acme/web") == {}
    assert index_of("acme/multi") == dict(dashboard.seeded.tags["acme/multi"])


def test_one_tag_answers_an_error__the_repository_keeps_that_tag_and_the_rest_is_updated(
        recorded, dashboard) -> None:
    sync.run_now()
    recorded.fail["/v2/acme/web/manifests/1.9.0"] = 500
    run = sync.run_now()
    assert "acme/web" in run.details["problems"] and "tag 1.9.0" in run.details["problems"]["acme/web"]
    assert index_of("acme/web") == dict(dashboard.seeded.tags["acme/web"])  # not removed: it may well exist


def test_catalog_unreadable__the_run_fails_and_says_why(configure, settings, db) -> None:
    point_at(configure, settings, f"http://127.0.0.1:{free_port()}")
    run = sync.run_now()
    assert run.state == "failed" and run.error.startswith("could not read the catalog: connection refused at")
    assert not run.active


# -- the lock, the queue, the schedule ---------------------------------------------------------------------


def test_lock__the_database_allows_one_active_run(db) -> None:
    SyncRun.objects.create(state="queued", active=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        SyncRun.objects.create(state="queued", active=True)


def test_one_active_run__a_running_sync_is_not_started_twice(seeded) -> None:
    now = timezone.now()
    running = SyncRun.objects.create(state="running", active=True, started_at=now, heartbeat_at=now)
    with pytest.raises(sync.AlreadyRunning) as caught:
        sync.run_now()
    assert caught.value.run.pk == running.pk
    assert sync.request_sync(trigger="manual").pk == running.pk
    assert SyncRun.objects.count() == 1


def test_request_sync__runs_on_the_worker_and_records_who(seeded, django_user_model) -> None:
    user = django_user_model.objects.create_user("mia")
    run = sync.request_sync(trigger="manual", user=user)
    assert run.state == "succeeded" and run.username == "mia" and run.trigger == "manual"
    assert index_of("acme/web") == dict(seeded.seeded.tags["acme/web"])


def test_request_sync__for_later__deferred_on_a_worker_that_can__brought_forward_by_a_manual_one(
        seeded, settings) -> None:
    from django.tasks import task_backends

    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    later = timezone.now() + timedelta(hours=1)
    scheduled = sync.request_sync(trigger="schedule", not_before=later)
    backend = task_backends["default"]
    assert [r.task.run_after for r in backend.results] == [later]
    assert [r.args for r in backend.results] == [[scheduled.pk]]

    manual = sync.request_sync(trigger="manual")
    assert manual.pk == scheduled.pk and manual.trigger == "manual" and manual.not_before <= timezone.now()
    assert [r.task.run_after for r in backend.results] == [later, None]
    # The early task finds its run taken by the later one... and the deferred one, when it fires,
    # finds it done: a duplicate task does nothing.
    assert sync.execute(scheduled.pk).state == "succeeded"
    assert sync.execute(scheduled.pk).state == "succeeded"
    assert SyncRun.objects.count() == 1


def test_request_sync__a_few_repositories_while_the_full_sync_waits__those_now__the_schedule_kept(
        seeded, configure) -> None:
    configure(SYNC_INTERVAL=600)
    sync.run_now()
    waiting = SyncRun.objects.get(active=True)
    due = waiting.not_before
    assert due is not None and due > timezone.now()

    run = sync.request_sync(trigger="change", repositories=["acme/web"])
    assert run.pk == waiting.pk and run.state == "succeeded" and run.repositories == ["acme/web"]
    assert run.repositories_total == 1
    again = SyncRun.objects.get(active=True)
    assert again.trigger == "schedule" and again.repositories == [] and again.not_before == due


def test_execute__a_run_not_due_yet_is_left_queued(seeded) -> None:
    run = SyncRun.objects.create(state="queued", active=True, trigger="schedule",
                                 not_before=timezone.now() + timedelta(minutes=5))
    assert sync.execute(run.pk).state == "queued"
    assert IndexedTag.objects.count() == 0


def test_ensure_scheduled__never_synced__runs_one_now__then_queues_the_next_one_interval_later(
        seeded, configure) -> None:
    configure(SYNC_INTERVAL=600)
    sync.ensure_scheduled()
    first = SyncRun.objects.filter(state="succeeded").get()
    assert first.trigger == "schedule"
    waiting = SyncRun.objects.get(active=True)
    assert waiting.state == "queued" and waiting.trigger == "schedule"
    assert waiting.not_before == first.finished_at + timedelta(seconds=600)
    assert sync.ensure_scheduled().pk == waiting.pk  # already queued: nothing new
    assert SyncRun.objects.count() == 2


def test_ensure_scheduled__off_when_the_interval_is_zero(seeded) -> None:
    assert sync.ensure_scheduled() is None
    assert SyncRun.objects.count() == 0


def test_ensure_scheduled__a_due_run_on_a_worker_that_cannot_defer_is_handed_over_when_due(
        seeded, configure) -> None:
    configure(SYNC_INTERVAL=600)
    waiting = SyncRun.objects.create(state="queued", active=True, trigger="schedule",
                                     not_before=timezone.now() - timedelta(seconds=1))
    sync.ensure_scheduled()
    waiting.refresh_from_db()
    assert waiting.state == "succeeded"


def test_stale_running_run__marked_failed__the_next_resumes_after_its_cursor(seeded) -> None:
    long_ago = timezone.now() - timedelta(minutes=10)
    dead = SyncRun.objects.create(state="running", active=True, started_at=long_ago, heartbeat_at=long_ago,
                                  cursor="acme/web", repositories_total=10, repositories_done=4)
    assert sync.active_run() is None
    dead.refresh_from_db()
    assert dead.state == "failed" and not dead.active
    assert "no sign of life for 120 s" in dead.error and "resumes after acme/web" in dead.error
    run = sync.run_now()
    assert run.details["resumed_after"] == "acme/web"
    assert run.state == "succeeded"


def test_stale_queued_run__nobody_picked_it_up__failed_saying_to_start_the_worker(db) -> None:
    queued = SyncRun.objects.create(state="queued", active=True)
    SyncRun.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    assert sync.active_run() is None
    queued.refresh_from_db()
    assert queued.state == "failed" and "manage.py worker" in queued.error


def test_worker__its_run_marked_stale_meanwhile__stops(seeded, monkeypatch) -> None:
    monkeypatch.setattr(sync, "BATCH_REPOSITORIES", 8)

    def marked_stale(run: SyncRun) -> None:
        SyncRun.objects.filter(pk=run.pk).update(state="failed", active=False, error="marked stale")

    run = sync.run_now(on_progress=marked_stale)
    assert run.state == "failed" and run.error == "marked stale" and run.repositories_done == 8


def test_rotation__starts_after_the_cursor_and_wraps_around() -> None:
    assert sync.rotation(["c", "a", "b", "d"], "") == ["a", "b", "c", "d"]
    assert sync.rotation(["c", "a", "b", "d"], "b") == ["c", "d", "a", "b"]
    assert sync.rotation(["a", "c"], "b") == ["c", "a"]  # the cursor's repository is gone
    assert sync.rotation(["a", "b"], "z") == ["a", "b"]


# -- manage.py sync ---------------------------------------------------------------------------------------------


def test_command__syncs_prints_progress_and_a_summary(seeded, capsys) -> None:
    call_command("sync")
    out = capsys.readouterr().out
    run = SyncRun.objects.get()
    assert run.trigger == "command" and run.username == "manage.py" and run.state == "succeeded"
    assert f"sync #{run.pk} of the whole registry: succeeded" in out
    assert f"{len(seeded.seeded.repos)}/{len(seeded.seeded.repos)} repositories" in out


def test_command__one_repository(seeded, capsys) -> None:
    call_command("sync", "--repository", "acme/web")
    assert "of acme/web: succeeded" in capsys.readouterr().out
    assert set(IndexedRepository.objects.values_list("name", flat=True)) == {"acme/web"}


def test_command__registry_down__exits_non_zero_with_what_to_check(configure, settings, db) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    point_at(configure, settings, url)
    with pytest.raises(CommandError) as caught:
        call_command("sync")
    assert caught.value.returncode == 1
    assert f"connection refused at {url}" in str(caught.value) and "is the registry running?" in str(caught.value)


def test_command__while_a_sync_runs__refused(seeded) -> None:
    now = timezone.now()
    SyncRun.objects.create(state="running", active=True, started_at=now, heartbeat_at=now)
    with pytest.raises(CommandError, match="already running"):
        call_command("sync")
