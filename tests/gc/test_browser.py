"""Garbage collection in a real browser: preview → run → live progress → result, as a maintainer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.core.cache import cache
from playwright.sync_api import Browser, Page, expect

from dashboard.deletion import actions as deleting
from testbed import RegistryServer
from testbed.push import build_image, push_image
from testbed.server import free_port
from tests.helpers.browser import make_user, shots, sign_in, watched_page

pytestmark = pytest.mark.browser
REPO = "team/gc"


@pytest.fixture
def server(tmp_path: Path, live_server, transactional_db, configure, settings) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "registry", port=free_port(), blob_cache=False) as srv:
        push_image(srv.url, REPO, build_image([{"keep.txt": b"keep\n" * 400}]), "keep")
        gone = push_image(srv.url, REPO, build_image([{"gone.txt": b"gone\n" * 900}]), "gone")
        requests.delete(f"{srv.url}/v2/{REPO}/manifests/{gone}", timeout=5).raise_for_status()
        # A second's pause before the collector, so the page can be seen following a running GC.
        command = f"sh -c 'sleep 1; exec docker-registry garbage-collect \"$@\"' gc {srv.config_path}"
        configure(REGISTRY_URL=srv.url, ANONYMOUS_READ=False, STORAGE_PATH=str(srv.storage_dir), GC_COMMAND=command,
                  GC_BEFORE_COMMAND="", GC_AFTER_COMMAND="")
        settings.TASKS = {"default": {"BACKEND": "tests.helpers.task_backends.ThreadBackend"}}
        settings.ALLOWED_HOSTS = ["*"]
        cache.clear()
        yield srv


@pytest.fixture
def page(browser: Browser, server: RegistryServer) -> Iterator[Page]:
    with watched_page(browser) as pg:
        yield pg


def test_gc__preview_run_live_progress_result(page: Page, live_server, server: RegistryServer) -> None:
    user = make_user("mia", "maintainer")
    # One deletion made through the dashboard: the preview names it, with the tags it had.
    audited = build_image([{"audited.txt": b"audited\n" * 700}])
    push_image(server.url, REPO, audited, "old")
    deleting.delete_image(user, REPO, audited.digest, ["old"])
    sign_in(page, live_server.url, user, "/-/gc/")
    expect(page.get_by_role("heading", name="Garbage collection", level=1)).to_be_visible()

    page.get_by_role("button", name="Preview (dry run)").click()
    status = page.locator("#run-status")
    # Live: the running state and the progress bar first, then the finished preview, no reload.
    expect(status.locator("progress")).to_be_visible()
    expect(status.locator(".chip")).to_have_text("Succeeded", timeout=15_000)
    expect(status.locator("progress")).to_have_count(0)
    expect(status).to_contain_text("eligible")

    images = status.locator("table.gc-images tbody tr")
    expect(images).to_have_count(1)
    expect(images.first).to_contain_text(audited.digest[7:19])
    expect(images.first).to_contain_text("old")
    expect(status).to_contain_text("no deletion made here accounts for")  # the one deleted by hand

    page.get_by_role("link", name="Review and run it for real").click()
    confirm = page.locator("form.confirm")
    expect(confirm).to_contain_text(re.compile(r"it deletes\s+\d+ blobs? \("))
    shots(page, "gc-preview")
    confirm.get_by_role("button", name="Run garbage collection").click()
    expect(status.locator("progress")).to_be_visible()
    expect(status.locator(".chip")).to_have_text("Succeeded", timeout=15_000)
    expect(status).to_contain_text("freed")
    expect(status).to_contain_text("so its cache is not stale")
    shots(page, "gc-result")

    page.get_by_role("link", name="Garbage collection").first.click()
    history = page.locator("table.gc-history tbody tr")
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text("freed")
    # The preview has been run: it offers nothing more.
    expect(page.get_by_role("button", name="Run garbage collection")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("Already run for real")
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("table.gc-history a").last.click()
    expect(page.locator("#run-status table.gc-images")).to_be_visible()
    shots(page, "gc-preview-run-390")
    # The image that was kept still pulls whole.
    manifest = requests.get(f"{server.url}/v2/{REPO}/manifests/keep", timeout=5,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    for blob in [manifest["config"], *manifest["layers"]]:
        assert requests.head(f"{server.url}/v2/{REPO}/blobs/{blob['digest']}", timeout=5).status_code == 200
