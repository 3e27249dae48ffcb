"""The GC pages say what a run is and what can still be done with it: a preview run for real
offers nothing more, a refused preview says "Refused" and offers no run, a preview lists the
deleted images it would free, the storage figures follow a real run, and no label is said twice.

A real registry 2.8.2 per test; GC through the pages with the immediate task backend.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from dashboard.deletion import actions as deleting
from dashboard.models import GCRun, SyncRun
from testbed import RegistryServer, registry_binary
from testbed import push as p
from testbed.server import free_port
from tests.helpers.html import dom
from tests.helpers.pages import signed_in

REPO = "team/app"
OTHER = "team/other"
MULTI = "acme/multi"


def layer(name: str, size: int) -> dict[str, bytes]:
    # Incompressible, so layer sizes are what they say.
    return {name: hashlib.shake_256(name.encode()).digest(size)}


@pytest.fixture
def server(tmp_path: Path, configure, settings, db) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "registry", port=free_port()) as srv:
        configure(
            REGISTRY_URL=srv.url,
            CATALOG_TTL=0,
            ANONYMOUS_READ=False,
            STORAGE_PATH=str(srv.storage_dir),
            GC_COMMAND=f"{registry_binary()} garbage-collect {srv.config_path}",
            GC_BEFORE_COMMAND="",
            GC_AFTER_COMMAND="",
        )
        settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
        settings.ALLOWED_HOSTS = ["*"]
        cache.clear()
        yield srv


@pytest.fixture
def mia(client, db) -> User:
    return signed_in(client, "mia", "maintainer")


def text(html: str) -> str:
    """What a reader sees: tags dropped, whitespace folded."""
    return re.sub(r"[ \t\r\n]+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def preview(client, **options: str) -> GCRun:
    client.post("/-/gc/start/", {"mode": "preview", **options})
    return GCRun.objects.filter(dry_run=True).first()


def run_from(client, previewed: GCRun):
    return client.post("/-/gc/start/", {"mode": "run", "preview": previewed.pk}, follow=True)


def deleted_image(server: RegistryServer, user: User, repo: str, name: str, size: int, tags: list[str]) -> p.Image:
    image = p.build_image([layer(f"{name}.bin", size)], labels={"v": name})
    for tag in tags:
        p.push_image(server.url, repo, image, tag)
    deleting.delete_image(user, repo, image.digest, tags)
    return image


def files_of(image: p.Image) -> int:
    return image.manifest_size + image.config_size + sum(image.layer_sizes)


# -- a preview that was run -------------------------------------------------------------------------


def test_preview__after_its_real_run__offers_nothing_more_and_a_second_run_from_it_is_refused(
    client, server, mia
) -> None:
    p.push_image(server.url, REPO, p.build_image([layer("kept.bin", 2000)], labels={"v": "kept"}), "kept")
    deleted_image(server, mia, REPO, "gone", 5000, ["old"])
    first = preview(client)
    assert "Review and run it for real" in page(client, f"/-/gc/runs/{first.pk}/")
    assert f'name="preview" value="{first.pk}"' in page(client, "/-/gc/")
    run_from(client, first)
    real = GCRun.objects.get(dry_run=False)
    assert real.state == "succeeded", real.error

    shown = page(client, f"/-/gc/runs/{first.pk}/")
    assert "Review and run it for real" not in shown
    assert f"Already run for real as #{real.pk}" in text(shown) and f'href="/-/gc/runs/{real.pk}/"' in shown
    gc_page = page(client, "/-/gc/")
    assert "Run garbage collection</button>" not in gc_page and f"Already run for real as #{real.pk}" in text(gc_page)
    # And the server holds to it: the same preview cannot be run twice.
    response = run_from(client, first)
    assert f"Not started: Already run for real as #{real.pk}" in text(response.content.decode())
    assert GCRun.objects.filter(dry_run=False).count() == 1


def test_preview__older_than_a_real_run__is_out_of_date_and_offers_no_run(client, server, mia) -> None:
    deleted_image(server, mia, REPO, "gone", 5000, ["old"])
    p.push_image(server.url, REPO, p.build_image([layer("kept.bin", 2000)], labels={"v": "kept"}), "kept")
    older = preview(client)
    newer = preview(client)
    run_from(client, newer)
    real = GCRun.objects.get(dry_run=False)

    shown = text(page(client, f"/-/gc/runs/{older.pk}/"))
    assert "Review and run it for real" not in shown
    assert f"Garbage collection #{real.pk} ran after this preview, so its figures are out of date" in shown
    run_from(client, older)
    assert GCRun.objects.filter(dry_run=False).count() == 1


# -- a refused preview -------------------------------------------------------------------------------


def test_delete_untagged_preview__refused__labelled_refused_with_the_reason_and_no_run_button(
    client, server, mia
) -> None:
    amd64 = p.build_image([layer("amd64.bin", 2000)], platform="linux/amd64", labels={"a": "amd64"})
    arm64 = p.build_image([layer("arm64.bin", 2500)], platform="linux/arm64", labels={"a": "arm64"})
    p.push_image(server.url, MULTI, p.build_index([amd64, arm64]), "latest")  # children untagged: 2.8 deletes them
    refused = preview(client, delete_untagged="on")
    assert refused.state == "succeeded" and refused.report["protected_hits"]

    status = dom(page(client, f"/-/gc/runs/{refused.pk}/")).one("section", id="run-status")
    assert status.one("span", cls="chip").text == "Refused"
    assert "Succeeded" not in status.text and "Review and run it for real" not in status.text
    assert "distribution#3178" in status.one("p", cls="problem").text and amd64.digest in status.text
    gc_page = page(client, "/-/gc/")
    assert "Run garbage collection</button>" not in gc_page and "distribution#3178" in gc_page
    [row] = dom(gc_page).one("table", cls="gc-history").one("tbody").find_all("tr")
    assert row.one("span", cls="chip").text == "Refused"


# -- what a preview frees ----------------------------------------------------------------------------


@pytest.mark.postgres  # reads the index (an index's platforms' blobs)
def test_preview__lists_the_deleted_images_with_their_tags_and_the_repositories_it_frees(client, server, mia) -> None:
    p.push_image(server.url, REPO, p.build_image([layer("kept.bin", 2000)], labels={"v": "kept"}), "kept")
    p.push_image(server.url, OTHER, p.build_image([layer("other-kept.bin", 2000)], labels={"v": "ok"}), "kept")
    big = deleted_image(server, mia, REPO, "big", 40_000, ["1.0", "stable"])
    small = deleted_image(server, mia, REPO, "small", 9_000, ["0.9"])
    elsewhere = deleted_image(server, mia, OTHER, "elsewhere", 20_000, ["old"])

    previewed = preview(client)

    frees = previewed.report["frees"]
    images = {(i["repo"], i["digest"]): i for i in frees["images"]}
    assert set(images) == {(REPO, big.digest), (REPO, small.digest), (OTHER, elsewhere.digest)}
    assert images[(REPO, big.digest)]["tags"] == ["1.0", "stable"] and images[(REPO, big.digest)]["blobs"] == 3
    assert images[(REPO, big.digest)]["bytes"] == files_of(big)
    repos = {r["repo"]: r for r in frees["repositories"]}
    assert (repos[REPO]["images"], repos[REPO]["blobs"]) == (2, 6)
    assert repos[REPO]["bytes"] == files_of(big) + files_of(small)
    assert (repos[OTHER]["images"], repos[OTHER]["bytes"]) == (1, files_of(elsewhere))
    assert frees["other"]["blobs"] == 0
    for shown in (page(client, f"/-/gc/runs/{previewed.pk}/"), page(client, "/-/gc/")):
        table = dom(shown).one("table", cls="gc-images")
        rows = [r.text for r in table.one("tbody").find_all("tr")]
        assert rows[0].startswith(REPO) and big.digest[7:19] in rows[0] and "1.0, stable" in rows[0]
        assert filesizeformat(files_of(big)) in rows[0]
        assert any(elsewhere.digest[7:19] in r and "old" in r for r in rows)
        by_repo = dom(shown).one("table", cls="gc-repositories").text
        assert OTHER in by_repo and filesizeformat(files_of(big) + files_of(small)) in by_repo


# -- the storage figures after a real run --------------------------------------------------------------


def data_files(server: RegistryServer) -> tuple[int, int]:
    files = [f for f in server.storage_dir.rglob("data") if f.parent.parent.parent.name == "sha256"]
    return len(files), sum(f.stat().st_size for f in files)


def test_real_run__storage_page_and_health_read_the_disk_again(client, server, mia) -> None:
    p.push_image(server.url, REPO, p.build_image([layer("kept.bin", 10_000)], labels={"v": "kept"}), "kept")
    deleted_image(server, mia, REPO, "gone", 300_000, ["old"])
    before = data_files(server)
    measured = client.get("/-/storage/?measure=1", headers={"HX-Request": "true"}).content.decode()
    assert filesizeformat(before[1]) in text(measured)
    assert client.get("/-/health.json").json()["checks"]["storage"]["detail"]["blob_count"] == before[0]

    run_from(client, preview(client))

    after = data_files(server)
    assert after[0] == before[0] - 3 and filesizeformat(after[1]) != filesizeformat(before[1])
    measured = client.get("/-/storage/?measure=1", headers={"HX-Request": "true"}).content.decode()
    assert filesizeformat(after[1]) in text(measured) and filesizeformat(before[1]) not in text(measured)
    storage = client.get("/-/health.json").json()["checks"]["storage"]["detail"]
    assert (storage["blob_count"], storage["blob_bytes"]) == after


# -- labels said once ----------------------------------------------------------------------------------


def said_twice(text: str) -> list[tuple[str, str]]:
    """Neighbouring words where the second repeats the first ("Queued queued", "Scheduled schedule")."""
    words = re.findall(r"[A-Za-z]+", text)
    return [(a, b) for a, b in zip(words, words[1:], strict=False) if len(b) > 3 and a.lower().startswith(b.lower())]


def test_run_page__queued_and_running__the_state_is_said_once(client, server, mia) -> None:
    queued = GCRun.objects.create(username="mia", dry_run=True, state="queued", active=True, phase="queued")
    status = dom(page(client, f"/-/gc/runs/{queued.pk}/")).one("section", id="run-status").text
    assert said_twice(status) == [] and status.startswith("Queued")
    GCRun.objects.filter(pk=queued.pk).update(
        state="running", phase="marking", started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    status = dom(page(client, f"/-/gc/runs/{queued.pk}/")).one("section", id="run-status").text
    assert said_twice(status) == [] and status.startswith("Running marking")


def test_sync_page__a_scheduled_run__the_state_is_said_once(client, server, mia, configure) -> None:
    configure(SYNC_INTERVAL=0)  # the page schedules nothing of its own
    due = SyncRun.objects.create(
        state="queued", active=True, trigger="schedule", not_before=timezone.now() + timedelta(minutes=5)
    )
    for url in ("/-/sync/", f"/-/sync/runs/{due.pk}/"):
        status = dom(page(client, url)).one("section", id="sync-status").text
        assert "Scheduled" in status and said_twice(status) == [], status
