"""What the dashboard itself changes reaches the index at once, under the user's name, with no
registry events configured: an untag, an image delete, a restore, a garbage collection."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache

from dashboard import remote
from dashboard.index import store
from dashboard.models import Deletion, GCRun, RegistryEvent, RepositoryManifest, TagHistory
from testbed import RegistryServer
from testbed import push as p
from testbed.server import free_port, registry_binary
from tests.helpers.pages import signed_in

pytestmark = pytest.mark.postgres

REPO = "team/app"


def _index(repo: str) -> None:
    """Index `repo` the way a sync does: every tag's digest, then what the index lacks."""
    digests = {t: remote.client().head_manifest(repo, t).digest for t in remote.client().tags(repo)}
    store.set_tags(repo, digests, source="sync", complete=True)
    store.fetch_and_index(repo, sorted(set(digests.values())))


@pytest.fixture
def reg(tmp_path: Path, configure, settings, db) -> Iterator[tuple[RegistryServer, dict[str, p.Image]]]:
    with RegistryServer(tmp_path / "registry", port=free_port(), blob_cache=False) as server:
        images = {v: p.build_image([{f"{v}.txt": hashlib.shake_256(v.encode()).digest(3000)}],
                                   created=f"2024-0{i + 1}-01T00:00:00Z") for i, v in enumerate(["1.0", "2.0"])}
        for v, img in images.items():
            p.push_image(server.url, REPO, img, v)
        p.push_image(server.url, REPO, images["2.0"], "latest")
        configure(REGISTRY_URL=server.url, CATALOG_TTL=0, ANONYMOUS_READ=False, STORAGE_PATH=str(server.storage_dir),
                  GC_COMMAND=f"{registry_binary()} garbage-collect {server.config_path}", GC_BEFORE_COMMAND="",
                  GC_AFTER_COMMAND="")
        settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
        cache.clear()
        _index(REPO)
        yield server, images


@pytest.fixture
def mia(client, db) -> User:
    return signed_in(client, "mia", "maintainer", password="pw-mia-123")


def _tags() -> dict[str, str]:
    return store.tag_digests(REPO)


def test_untag__index_drops_only_that_tag_and_the_feed_names_the_user(client, reg, mia) -> None:
    _, images = reg
    assert _tags() == {"1.0": images["1.0"].digest, "2.0": images["2.0"].digest, "latest": images["2.0"].digest}
    response = client.post(f"/r/{REPO}/-/tags/latest/delete/", {"digest": images["2.0"].digest})
    assert response.status_code == 302
    assert _tags() == {"1.0": images["1.0"].digest, "2.0": images["2.0"].digest}
    step = TagHistory.objects.filter(repository=REPO, tag="latest").first()
    assert (step.digest, step.source, step.actor) == ("", "dashboard", "mia")
    event = RegistryEvent.objects.get(repository=REPO, action="delete")
    assert (event.tag, event.digest, event.actor, event.source) == ("latest", images["2.0"].digest, "mia", "dashboard")


def test_delete_image__its_tags_leave_the_index_and_its_bytes_count_as_garbage(client, reg, mia) -> None:
    _, images = reg
    digest = images["2.0"].digest
    response = client.post(f"/r/{REPO}/-/manifests/{digest}/delete/", {"tag": ["2.0", "latest"]})
    assert response.status_code == 302
    assert _tags() == {"1.0": images["1.0"].digest}
    link = RepositoryManifest.objects.get(repository__name=REPO, manifest__digest=digest)
    assert link.deleted_at is not None


def test_restore__tags_come_back_in_the_index(client, reg, mia) -> None:
    _, images = reg
    digest = images["2.0"].digest
    client.post(f"/r/{REPO}/-/manifests/{digest}/delete/", {"tag": ["2.0", "latest"]})
    record = Deletion.objects.get(digest=digest)
    client.post(f"/-/deleted/{record.pk}/restore/")
    assert _tags() == {"1.0": images["1.0"].digest, "2.0": digest, "latest": digest}
    assert RepositoryManifest.objects.get(repository__name=REPO, manifest__digest=digest).deleted_at is None
    assert RegistryEvent.objects.filter(action="push", source="dashboard", actor="mia").count() == 2


def test_garbage_collection__forgets_the_deleted_manifest(client, reg, mia) -> None:
    from dashboard.gc import runner as gc

    server, images = reg
    digest = images["2.0"].digest
    client.post(f"/r/{REPO}/-/manifests/{digest}/delete/", {"tag": ["2.0", "latest"]})
    server.stop()  # 2.8's collector must not race a running registry
    run = gc.execute(gc.create_run(mia, dry_run=False).pk)
    assert run.state == GCRun.State.SUCCEEDED, run.error
    assert not RepositoryManifest.objects.filter(manifest__digest=digest).exists()
    assert RepositoryManifest.objects.filter(manifest__digest=images["1.0"].digest, deleted_at=None).exists()
