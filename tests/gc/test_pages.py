"""The garbage-collection pages: maintainers only, preview first, the real run from the preview."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.utils import timezone

from dashboard.models import GCRun
from testbed import RegistryServer
from testbed.push import build_image, push_image
from testbed.server import free_port
from tests.helpers.pages import signed_in

REPO = "team/gc"


@pytest.fixture
def gc_registry(tmp_path: Path, point_at, settings, db) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "registry", port=free_port(), blob_cache=False) as server:
        keep = build_image([{"keep.txt": b"keep\n" * 400}])
        gone = build_image([{"gone.txt": b"gone\n" * 900}])
        push_image(server.url, REPO, keep, "keep")
        digest = push_image(server.url, REPO, gone, "gone")
        requests.delete(f"{server.url}/v2/{REPO}/manifests/{digest}", timeout=5).raise_for_status()
        settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
        point_at(server.url, ANONYMOUS_READ=False, STORAGE_PATH=str(server.storage_dir),
                 GC_COMMAND=f"docker-registry garbage-collect {server.config_path}", GC_BEFORE_COMMAND="",
                 GC_AFTER_COMMAND="")
        yield server


def test_gc__viewer_gets_403_everywhere(client, gc_registry) -> None:
    signed_in(client, "viewer-user", "viewer")
    assert client.get("/-/gc/").status_code == 403
    assert client.post("/-/gc/start/", {"mode": "preview"}).status_code == 403
    assert GCRun.objects.count() == 0


def test_gc__preview_then_run_from_it__frees_what_the_preview_counted(client, gc_registry) -> None:
    signed_in(client, "maintainer-user", "maintainer")
    page = client.get("/-/gc/").content.decode()
    assert "Preview (dry run)" in page and "writable" in page and "restart the registry" in page
    response = client.post("/-/gc/start/", {"mode": "preview"}, follow=True)
    preview = GCRun.objects.get(dry_run=True)
    assert preview.state == "succeeded" and preview.eligible_blobs >= 2 and preview.bytes_eligible > 0
    assert response.redirect_chain[-1][0] == f"/-/gc/runs/{preview.pk}/"
    page = client.get("/-/gc/").content.decode()
    assert f"{preview.eligible_blobs} blobs" in page and "Run garbage collection" in page
    client.post("/-/gc/start/", {"mode": "run", "preview": preview.pk}, follow=True)
    run = GCRun.objects.get(dry_run=False)
    assert run.state == "succeeded" and run.preview_id == preview.pk and run.username == "maintainer-user"
    assert run.bytes_freed is not None and run.bytes_freed >= preview.bytes_eligible
    assert not GCRun.objects.filter(active=True).exists()
    history = client.get("/-/gc/").content.decode()
    assert "freed" in history and "maintainer-user" in history


def test_gc__run_without_a_preview_is_refused(client, gc_registry) -> None:
    signed_in(client, "maintainer-user", "maintainer")
    assert client.post("/-/gc/start/", {"mode": "run"}).status_code == 404
    assert GCRun.objects.count() == 0


def test_gc__second_start_while_one_runs__says_one_is_running(client, gc_registry) -> None:
    user = signed_in(client, "maintainer-user", "maintainer")
    running = GCRun.objects.create(user=user, username="someone", dry_run=True, state="running", active=True,
                                   heartbeat_at=timezone.now(), started_at=timezone.now())
    response = client.post("/-/gc/start/", {"mode": "preview"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/-/gc/runs/{running.pk}/"
    assert "already running" in response.content.decode()
    assert GCRun.objects.count() == 1


def test_gc__status_polling_stops_when_the_run_is_over(client, gc_registry) -> None:
    signed_in(client, "maintainer-user", "maintainer")
    client.post("/-/gc/start/", {"mode": "preview"})
    run = GCRun.objects.get()
    response = client.get(f"/-/gc/runs/{run.pk}/", headers={"HX-Request": "true"})
    assert response.status_code == 286
    body = response.content.decode()
    assert "<html" not in body and 'hx-trigger="every 1s"' not in body and "Succeeded" in body


def test_gc__not_configured__says_how(client, gc_registry, configure) -> None:
    configure(GC_COMMAND="")
    signed_in(client, "maintainer-user", "maintainer")
    assert "REGISTRYUI_GC_COMMAND" in client.get("/-/gc/").content.decode()
