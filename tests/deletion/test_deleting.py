"""Deleting through the dashboard on a real registry 2.8: exactly what was confirmed, recorded,
restorable until garbage collection."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dashboard.models import Deletion
from testbed import RegistryServer
from testbed.push import get_manifest
from testbed.server import free_port
from tests.helpers.deletion import REPO, Fixture, seed_versions
from tests.helpers.pages import signed_in


@pytest.fixture
def reg(tmp_path: Path, point_at, db) -> Iterator[Fixture]:
    # A fixed port, so the registry can be restarted after garbage collection at the same URL.
    with RegistryServer(tmp_path / "registry", port=free_port()) as server:
        fixture = Fixture(server, seed_versions(server))
        point_at(server.url, ANONYMOUS_READ=False)
        yield fixture


@pytest.fixture
def maintainer(client, db):
    return signed_in(client, "mia", "maintainer", password="pw-mia-123")


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_untag__shared_digest_keeps_the_sibling_tag(client, reg, maintainer) -> None:
    original, _ = get_manifest(reg.server.url, REPO, "latest")
    response = client.post(f"/r/{REPO}/-/tags/latest/delete/", {"digest": reg.digests["latest"]}, follow=True)
    assert response.status_code == 200
    assert any("untagged latest" in m for m in _messages(response))
    assert reg.tags() == ["1.0.0", "1.2.4", "2.0.0", "3.0.0"]
    assert reg.digest("1.2.4") == reg.digests["1.2.4"]
    record = Deletion.objects.get()
    assert (record.username, record.action, record.tags, record.digest) == \
        ("mia", "untag", ["latest"], reg.digests["latest"])
    assert bytes(record.manifest) == original
    assert record.registry == reg.server.url and record.repository == REPO


def test_untag__htmx_swaps_the_table_and_says_so(client, reg, maintainer) -> None:
    response = client.post(f"/r/{REPO}/-/tags/2.0.0/delete/", {"digest": reg.digests["2.0.0"]},
                           headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver/r/{REPO}/?sort=size"})
    body = response.content.decode()
    assert response.status_code == 200
    assert '<section id="tags"' in body and 'data-tag="2.0.0"' not in body and 'data-tag="3.0.0"' in body
    assert 'id="messages" class="messages" role="status" aria-live="polite" hx-swap-oob="true"' in body
    assert "untagged 2.0.0" in body
    assert '<div id="confirm-slot" hx-swap-oob="true">' in body
    assert "4 tags" in body
    assert 'aria-sort="descending"' in body.split('>Size')[0].rsplit("<th", 1)[1]


def test_untag__confirmation_names_what_stays(client, reg, maintainer) -> None:
    shared = client.get(f"/r/{REPO}/-/tags/latest/delete/").content.decode()
    assert "only the tag latest" in shared and "still tagged <strong>1.2.4</strong>" in shared
    alone = client.get(f"/r/{REPO}/-/tags/3.0.0/delete/").content.decode()
    assert "last tag of image" in alone
    assert reg.tags() == ["1.0.0", "1.2.4", "2.0.0", "3.0.0", "latest"]


def test_untag__tag_moved_since_confirmation__nothing_changes(client, reg, maintainer) -> None:
    response = client.post(f"/r/{REPO}/-/tags/latest/delete/", {"digest": reg.digests["1.0.0"]}, follow=True)
    assert any("nothing was changed" in m for m in _messages(response))
    assert reg.digest("latest") == reg.digests["latest"]


def test_bulk__untag_three_of_five__exactly_two_remain(client, reg, maintainer) -> None:
    confirm = client.get(f"/r/{REPO}/-/untag/", {"tag": ["latest", "1.0.0", "3.0.0"]}).content.decode()
    for tag in ("latest", "1.0.0", "3.0.0"):
        assert f"<li><code>{tag}</code></li>" in confirm
    response = client.post(f"/r/{REPO}/-/untag/", {"tag": ["latest", "1.0.0", "3.0.0"]},
                           headers={"HX-Request": "true"})
    body = response.content.decode()
    assert reg.tags() == ["1.2.4", "2.0.0"]
    assert reg.digest("1.2.4") == reg.digests["1.2.4"] and reg.digest("2.0.0") == reg.digests["2.0.0"]
    assert body.count('<li class="ok">') == 3
    assert Deletion.objects.count() == 3


def test_bulk__one_failure_does_not_stop_or_hide_the_others(client, reg, maintainer) -> None:
    response = client.post(f"/r/{REPO}/-/untag/", {"tag": ["1.0.0", "gone-already", "2.0.0"]},
                           headers={"HX-Request": "true"})
    body = response.content.decode()
    assert reg.tags() == ["1.2.4", "3.0.0", "latest"]
    assert body.count('<li class="ok">') == 2 and body.count('<li class="fail">') == 1
    assert "gone-already" in body and "there is no tag" in body


def test_delete__shared_digest_lists_every_tag(client, reg, maintainer) -> None:
    digest = reg.digests["latest"]
    body = client.get(f"/r/{REPO}/-/manifests/{digest}/delete/").content.decode()
    assert "<li><code>1.2.4</code></li>" in body and "<li><code>latest</code></li>" in body
    assert "Delete image and 2 tags" in body


def test_delete__tags_changed_since_confirmation__asks_again(client, reg, maintainer) -> None:
    digest = reg.digests["latest"]
    response = client.post(f"/r/{REPO}/-/manifests/{digest}/delete/", {"tag": ["latest"]})
    assert response.status_code == 409
    assert "changed since you looked" in response.content.decode()
    assert reg.digest("latest") == reg.digest("1.2.4") == digest


def test_delete_then_restore__manifest_and_every_tag_come_back(client, reg, maintainer) -> None:
    digest = reg.digests["latest"]
    response = client.post(f"/r/{REPO}/-/manifests/{digest}/delete/", {"tag": ["1.2.4", "latest"]}, follow=True)
    assert any("deleted image" in m for m in _messages(response))
    assert reg.tags() == ["1.0.0", "2.0.0", "3.0.0"]
    record = Deletion.objects.get()
    assert record.action == "delete" and sorted(record.tags) == ["1.2.4", "latest"]
    listing = client.get("/-/deleted/").content.decode()
    assert "Deleted image" in listing and "<code>1.2.4</code>" in listing
    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    assert any("restored" in m for m in _messages(response))
    assert reg.tags() == ["1.0.0", "1.2.4", "2.0.0", "3.0.0", "latest"]
    assert reg.digest("latest") == reg.digest("1.2.4") == digest
    record.refresh_from_db()
    assert record.restored_at is not None and record.restored_by == "mia"


def test_restore__after_garbage_collection__refused_with_the_reason(client, reg, maintainer) -> None:
    client.post(f"/r/{REPO}/-/tags/3.0.0/delete/", {"digest": reg.digests["3.0.0"]})
    reg.server.stop()
    subprocess.run(["docker-registry", "garbage-collect", "--delete-untagged", str(reg.server.config_path)],
                   check=True, capture_output=True, timeout=120)
    reg.server.start()
    record = Deletion.objects.get()
    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    text = " ".join(_messages(response))
    assert "cannot restore" in text and "garbage collection" in text
    assert reg.tags() == ["1.0.0", "1.2.4", "2.0.0", "latest"]
    record.refresh_from_db()
    assert record.restored_at is None


def test_delete_disabled__every_path_explains_how_to_enable_it(client, tmp_path, point_at, maintainer) -> None:
    with RegistryServer(tmp_path / "ro", delete_enabled=False) as server:
        digests = seed_versions(server)
        point_at(server.url, ANONYMOUS_READ=False)
        page = client.get(f"/r/{REPO}/?details=1").content.decode()
        assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in page and "disabled" in page
        assert "Untag…" not in page
        confirm = client.get(f"/r/{REPO}/-/tags/latest/delete/").content.decode()
        assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in confirm
        response = client.post(f"/r/{REPO}/-/tags/latest/delete/", {"digest": digests["latest"]}, follow=True)
        assert any("REGISTRY_STORAGE_DELETE_ENABLED" in m or "storage.delete.enabled" in m
                   for m in _messages(response))
        tags = requests.get(f"{server.url}/v2/{REPO}/tags/list", timeout=5).json()["tags"]
        assert "latest" in tags


def test_delete__invalid_tag_or_digest_in_url__404_and_nothing_changes(client, reg, maintainer) -> None:
    assert client.post(f"/r/{REPO}/-/tags/-x/delete/").status_code == 404
    assert client.post(f"/r/{REPO}/-/manifests/sha256:nothex/delete/").status_code == 404
    assert client.post(f"/r/{REPO}/-/untag/", {"tag": ["ok", "bad tag"]}).status_code == 404
    assert reg.tags() == ["1.0.0", "1.2.4", "2.0.0", "3.0.0", "latest"]


def test_audit__admin_sees_the_log_read_only(client, reg, maintainer, admin_client) -> None:
    client.post(f"/r/{REPO}/-/tags/1.0.0/delete/", {"digest": reg.digests["1.0.0"]})
    page = admin_client.get("/admin/dashboard/deletion/").content.decode()
    assert "team/app" in page and "1.0.0" in page
    assert admin_client.get("/admin/dashboard/deletion/add/").status_code == 403
