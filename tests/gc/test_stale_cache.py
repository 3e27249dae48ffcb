"""A stale blob-descriptor cache after garbage collection: found, warned about until the registry
restarts; and `make demo`'s own registry, which has no such cache, pulls whole after GC and a re-push.

Each test runs its own real registry 2.8.2; GC goes through the dashboard's pages (POST preview,
POST run) with the immediate task backend, so the run is over when the POST answers.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import User
from django.core.cache import cache

from dashboard.deletion import actions as deleting
from dashboard.gc import stale
from dashboard.models import GCRun
from testbed import RegistryServer, registry_binary
from testbed import push as p
from testbed.demo import demo_registry
from testbed.server import free_port
from tests.helpers.pages import signed_in

# Reads the index (which repositories held a blob) and looks runs up by their JSON report: on
# PostgreSQL too.
pytestmark = pytest.mark.postgres

REPO = "team/app"
DIAGNOSIS = "the registry still serves blobs garbage collection removed: its blob-descriptor cache is stale"


def layer(name: str, size: int) -> dict[str, bytes]:
    return {name: hashlib.shake_256(name.encode()).digest(size)}


@pytest.fixture
def start_registry(tmp_path: Path, configure, settings, db) -> Iterator[Callable[..., RegistryServer]]:
    """start_registry(blob_cache=…) or start_registry(make=demo_registry): a started registry the
    dashboard points at, with garbage collection set up on its own config."""
    started: list[RegistryServer] = []

    def start(*, blob_cache: bool = False, make: Callable[..., RegistryServer] | None = None) -> RegistryServer:
        data, port = tmp_path / f"registry-{len(started)}", free_port()
        server = make(data, port=port) if make else RegistryServer(data, port=port, blob_cache=blob_cache)
        started.append(server.start())
        configure(
            REGISTRY_URL=server.url,
            CATALOG_TTL=0,
            ANONYMOUS_READ=False,
            STORAGE_PATH=str(server.storage_dir),
            GC_COMMAND=f"{registry_binary()} garbage-collect {server.config_path}",
            GC_BEFORE_COMMAND="",
            GC_AFTER_COMMAND="",
        )
        settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
        settings.ALLOWED_HOSTS = ["*"]
        cache.clear()
        return server

    yield start
    for server in started:
        server.stop()


def push_delete_collect(client, user: User, server: RegistryServer, image: p.Image) -> GCRun:
    """Push, delete through the dashboard (audited), then preview and run GC from the GC page."""
    p.push_image(server.url, REPO, p.build_image([layer("kept.bin", 3000)], labels={"v": "kept"}), "kept")
    p.push_image(server.url, REPO, image, "v1")
    deleting.delete_image(user, REPO, image.digest, ["v1"])
    client.post("/-/gc/start/", {"mode": "preview"})
    preview = GCRun.objects.get(dry_run=True)
    client.post("/-/gc/start/", {"mode": "run", "preview": preview.pk})
    run = GCRun.objects.get(dry_run=False)
    assert run.state == "succeeded", run.error + run.output
    assert not (
        server.storage_dir
        / "docker/registry/v2/blobs/sha256"
        / image.layer_digests[0][7:9]
        / image.layer_digests[0][7:]
        / "data"
    ).exists()
    return run


def gc_check(client) -> dict:
    response = client.get("/-/health.json")
    assert response.status_code == 200
    return response.json()["checks"]["gc"]


def test_stale_cache__registry_with_blob_cache__warned_on_run_health_and_json__until_the_registry_restarts(
    client, start_registry
) -> None:
    server = start_registry(blob_cache=True)
    user = signed_in(client, "mia", "maintainer")
    image = p.build_image([layer("collected.bin", 6000)], labels={"v": "collected"})

    run = push_delete_collect(client, user, server, image)

    found = run.report["blob_cache"]
    assert {(s["repo"], s["digest"]) for s in found["stale"]} >= {(REPO, image.layer_digests[0])}
    assert found["cleared_at"] is None and found["error"] == ""
    # The warning, with its one-line diagnosis and the way out, wherever someone looks.
    run_page = client.get(f"/-/gc/runs/{run.pk}/").content.decode()
    assert "Stale blob cache" in run_page and DIAGNOSIS in run_page and "REGISTRYUI_GC_AFTER_COMMAND" in run_page
    assert DIAGNOSIS in client.get("/-/gc/").content.decode()
    health_page = client.get("/-/health/").content.decode()
    assert DIAGNOSIS in health_page and "Needs attention" in health_page
    check = gc_check(client)
    assert check["status"] == "warning" and check["explanation"].startswith(DIAGNOSIS)
    assert check["detail"]["stale_blob_cache"]["gc_run"] == run.pk
    assert client.get("/-/health.json").json()["status"] == "warning"

    server.stop()
    server.start()  # the same port: the registry, restarted, has an empty cache

    check = gc_check(client)
    assert check["status"] == "ok" and DIAGNOSIS not in check["explanation"]
    assert DIAGNOSIS not in client.get("/-/health/").content.decode()
    assert DIAGNOSIS not in client.get("/-/gc/").content.decode()
    run_page = client.get(f"/-/gc/runs/{run.pk}/").content.decode()
    assert "Stale blob cache" not in run_page and "it no longer does" in run_page
    run.refresh_from_db()
    assert run.report["blob_cache"]["cleared_at"] is not None and stale.pending() == []


def test_stale_cache__manage_py_gc__warns_on_stderr(start_registry, capsys) -> None:
    from django.core.management import call_command

    server = start_registry(blob_cache=True)
    p.push_image(server.url, REPO, p.build_image([layer("kept.bin", 3000)], labels={"v": "kept"}), "kept")
    image = p.build_image([layer("collected.bin", 6000)], labels={"v": "collected"})
    p.push_image(server.url, REPO, image, "v1")
    p.delete_manifest(server.url, REPO, image.digest)

    call_command("gc")

    assert f"registryui: warning: {DIAGNOSIS}" in capsys.readouterr().err


def test_stale_cache__storage_not_mounted__the_index_says_where_the_removed_blobs_were(
    client, start_registry, configure
) -> None:
    """Without REGISTRYUI_STORAGE_PATH the dashboard sees neither files nor links: what the run
    removed is what the collector listed, and the index (synced) names the repository to ask."""
    from django.core.management import call_command

    server = start_registry(blob_cache=True)
    configure(STORAGE_PATH="")
    user = signed_in(client, "mia", "maintainer")
    image = p.build_image([layer("collected.bin", 6000)], labels={"v": "collected"})
    p.push_image(server.url, REPO, image, "v1")
    call_command("sync")

    run = push_delete_collect(client, user, server, image)

    assert (REPO, image.layer_digests[0]) in {(s["repo"], s["digest"]) for s in run.report["blob_cache"]["stale"]}
    assert gc_check(client)["status"] == "warning"
    server.stop()
    server.start()
    assert gc_check(client)["status"] == "ok"


def test_stale_cache__gc_safe_registry__checked_and_nothing_to_warn_about(client, start_registry) -> None:
    server = start_registry(blob_cache=False)
    user = signed_in(client, "mia", "maintainer")
    image = p.build_image([layer("collected.bin", 6000)], labels={"v": "collected"})

    run = push_delete_collect(client, user, server, image)

    found = run.report["blob_cache"]
    assert found["stale"] == []
    assert (REPO, image.layer_digests[0]) in {(c["repo"], c["digest"]) for c in found["checked"]}
    assert all(c["answer"] == "absent" for c in found["checked"])
    run_page = client.get(f"/-/gc/runs/{run.pk}/").content.decode()
    assert "Stale blob cache" not in run_page and "so its cache is not stale" in run_page
    assert gc_check(client)["status"] == "ok"


def test_stale_cache__registry_down_after_the_run__says_it_could_not_check(
    client, start_registry, configure, monkeypatch
) -> None:
    server = start_registry(blob_cache=True)
    user = signed_in(client, "mia", "maintainer")
    # The after hook stops the registry (as a restart that never comes back would); the worker
    # waits for it a little (here half a second, not ten), then says it could not ask.
    configure(GC_AFTER_COMMAND=f"kill {server.process.pid}")
    monkeypatch.setattr(stale, "UP_WAIT", 0.5)
    p.push_image(server.url, REPO, p.build_image([layer("kept.bin", 3000)], labels={"v": "kept"}), "kept")
    image = p.build_image([layer("collected.bin", 6000)], labels={"v": "collected"})
    p.push_image(server.url, REPO, image, "v1")
    deleting.delete_image(user, REPO, image.digest, ["v1"])
    client.post("/-/gc/start/", {"mode": "preview"})
    client.post("/-/gc/start/", {"mode": "run", "preview": GCRun.objects.get(dry_run=True).pk})
    run = GCRun.objects.get(dry_run=False)
    assert "could not ask the registry" in run.report["blob_cache"]["error"]
    assert "could not ask the registry" in client.get(f"/-/gc/runs/{run.pk}/").content.decode()


def test_demo_registry__gc_then_repush_the_same_image__skopeo_pulls_it(client, start_registry, tmp_path: Path) -> None:
    """`make demo`'s own registry (testbed.demo.demo_registry, not a copy of its options)."""
    server = start_registry(make=demo_registry)
    user = signed_in(client, "mia", "maintainer")
    image = p.build_image([layer("repushed.bin", 6000), layer("also.bin", 2000)], labels={"v": "repushed"})
    push_delete_collect(client, user, server, image)

    p.push_image(server.url, REPO, image, "v1")

    copied = subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{server.host}/{REPO}:v1", f"oci:{tmp_path / 'oci'}:v1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    for blob in (image.config, *image.layers):
        r = requests.get(f"{server.url}/v2/{REPO}/blobs/{blob.digest}", timeout=10)
        assert r.status_code == 200 and "sha256:" + hashlib.sha256(r.content).hexdigest() == blob.digest
