"""Restore tells the truth, on a real registry 2.8: it probes every blob and child manifest before,
reads the manifest back by digest and tag after, and says what garbage collection did.

Garbage collection runs for real: through the dashboard's runner (`docker-registry
garbage-collect` with the registry's config), or directly as a run outside the dashboard. The
GC-safe registry has no blob-descriptor cache (`blob_cache=False`, as deploy/registry.yml); the
stale-cache tests keep registry:2's stock `inmemory` cache on purpose and collect while it runs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client

from dashboard.gc import runner as gc
from dashboard.models import Deletion, RegistryEvent
from testbed import RegistryServer, registry_binary
from testbed import push as p
from testbed.push import MANIFEST_ACCEPT
from tests.helpers.html import dom
from tests.helpers.pages import signed_in

REPO = "team/app"
GC_TIMEOUT_S = 120


@pytest.fixture
def gc_safe(tmp_path: Path, point_at, settings, db) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "registry", blob_cache=False) as server:
        _point(point_at, settings, server)
        yield server


@pytest.fixture
def stale_cache(tmp_path: Path, point_at, settings, db) -> Iterator[RegistryServer]:
    """registry:2's stock config: the inmemory blob-descriptor cache outlives garbage collection."""
    with RegistryServer(tmp_path / "registry", blob_cache=True) as server:
        _point(point_at, settings, server)
        yield server


def _point(point_at, settings, server: RegistryServer) -> None:
    point_at(server.url, ANONYMOUS_READ=False, PULL_HOST="",
             GC_COMMAND=f"{registry_binary()} garbage-collect {server.config_path}",
             STORAGE_PATH=str(server.storage_dir), GC_BEFORE_COMMAND="", GC_AFTER_COMMAND="")
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}


@pytest.fixture
def mia(client: Client, db) -> User:
    return signed_in(client, "mia", "maintainer", password="pw-mia-123")


def image(seed: str, **kwargs) -> p.Image:
    return p.build_image([{f"{seed}.txt": seed.encode() * 200}], **kwargs)


def tags(server: RegistryServer) -> list[str]:
    r = requests.get(f"{server.url}/v2/{REPO}/tags/list", timeout=5)
    return sorted(r.json().get("tags") or []) if r.status_code == 200 else []


def status(server: RegistryServer, reference: str) -> int:
    return requests.get(f"{server.url}/v2/{REPO}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT},
                        timeout=5).status_code


def collect_outside(server: RegistryServer, *flags: str) -> None:
    """`garbage-collect` run by hand, while the registry keeps running (as an operator's cron would)."""
    subprocess.run([registry_binary(), "garbage-collect", *flags, str(server.config_path)], check=True,
                   capture_output=True, timeout=GC_TIMEOUT_S)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def deleted_row(client: Client, record: Deletion):
    page = dom(client.get("/-/deleted/").content.decode())
    return page.one("tr", data_deletion=str(record.pk))


def delete_image(client: Client, digest: str, tag_list: list[str]) -> Deletion:
    response = client.post(f"/r/{REPO}/-/manifests/{digest}/delete/", {"tag": tag_list}, follow=True)
    assert any("deleted image" in m for m in messages_of(response)), messages_of(response)
    return Deletion.objects.get(digest=digest)


# -- after garbage collection --------------------------------------------------------------------------


def test_restore__after_gc_refuses_and_says_why(client: Client, gc_safe: RegistryServer, mia: User) -> None:
    kept = p.push_image(gc_safe.url, REPO, image("kept"), "1.0")
    digest = p.push_image(gc_safe.url, REPO, image("doomed"), "2.0")
    record = delete_image(client, digest, ["2.0"])
    assert "Restore" in deleted_row(client, record).text  # before GC, it still can be

    run = gc.start(mia, dry_run=False)
    assert run.state == "succeeded", run.error + run.output
    assert run.deleted_blobs >= 2  # the manifest's config and layer

    row = deleted_row(client, record)
    text = row.text
    assert "No longer restorable — garbage collection removed its layers" in text
    assert f"on {run.finished_at:%Y-%m-%d %H:%M}" in text
    assert f"Push it again from CI: docker push {gc_safe.host}/{REPO}:2.0" in text
    assert row.find("button") is None and row.find("form") is None

    events = RegistryEvent.objects.count()
    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    (said,) = messages_of(response)
    assert said.startswith(f"{REPO}: cannot restore 2.0 — garbage collection removed its layers on "
                           f"{run.finished_at:%Y-%m-%d %H:%M} UTC. 2 of the 2 blobs and manifests it needs are gone: "
                           "there is no blob sha256:")
    assert said.endswith(f"Nothing was changed. Push it again from CI: docker push {gc_safe.host}/{REPO}:2.0")
    # Nothing changed: the registry still answers 404, the record is still open, nothing was audited.
    assert status(gc_safe, digest) == status(gc_safe, "2.0") == 404
    assert tags(gc_safe) == ["1.0"] and status(gc_safe, kept) == 200
    record.refresh_from_db()
    assert record.restored_at is None and Deletion.objects.count() == 1
    assert RegistryEvent.objects.count() == events


def test_restore__gc_outside_the_dashboard__refused_and_the_page_learns_it(client: Client, gc_safe: RegistryServer,
                                                                           mia: User) -> None:
    p.push_image(gc_safe.url, REPO, image("kept"), "1.0")
    digest = p.push_image(gc_safe.url, REPO, image("doomed"), "2.0")
    record = delete_image(client, digest, ["2.0"])
    assert deleted_row(client, record).find("button").text == "Restore"  # remembered for a while

    collect_outside(gc_safe)

    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    (said,) = messages_of(response)
    assert "cannot restore 2.0 — garbage collection removed its layers (run outside the dashboard) after it was " \
           f"deleted on {record.created_at:%Y-%m-%d %H:%M} UTC" in said
    assert status(gc_safe, "2.0") == 404 and tags(gc_safe) == ["1.0"]
    # The refusal read the registry live; the page now says so, with no button.
    row = deleted_row(client, record)
    assert "No longer restorable" in row.text and "outside the dashboard" in row.text
    assert row.find("button") is None


def test_restore__stale_blob_cache__the_bytes_are_probed_and_it_refuses(client: Client, stale_cache: RegistryServer,
                                                                        mia: User) -> None:
    doomed = image("doomed")
    digest = p.push_image(stale_cache.url, REPO, doomed, "2.0")
    p.push_image(stale_cache.url, REPO, image("kept"), "1.0")
    record = delete_image(client, digest, ["2.0"])
    collect_outside(stale_cache)
    # The cache still answers a HEAD for the removed layer: a HEAD-only check would say restorable.
    layer = doomed.layers[0].digest
    assert requests.head(f"{stale_cache.url}/v2/{REPO}/blobs/{layer}", timeout=5).status_code == 200

    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    (said,) = messages_of(response)
    assert "cannot restore 2.0 — garbage collection removed its layers" in said
    assert "blob-descriptor cache still remembers it" in said
    assert tags(stale_cache) == ["1.0"] and status(stale_cache, digest) == 404
    record.refresh_from_db()
    assert record.restored_at is None
    assert deleted_row(client, record).find("button") is None


def test_restore__accepted_but_not_served__taken_back_and_says_what_the_registry_answered(
        client: Client, stale_cache: RegistryServer, mia: User) -> None:
    # Two manifests over the same config and layer: deleting one leaves its blobs (the other needs
    # them) but not its own stored bytes, which the stale cache still claims to have.
    gone = image("shared", annotations={"v": "a"})
    digest = p.push_image(stale_cache.url, REPO, gone, "a")
    other = p.push_image(stale_cache.url, REPO, image("shared", annotations={"v": "b"}), "b")
    record = delete_image(client, digest, ["a"])
    collect_outside(stale_cache)

    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    (said,) = messages_of(response)
    assert said.startswith(f"{REPO}: the restore failed — the registry accepted it, but reading {REPO}@{digest[:19]}… "
                           f"back answered: there is no manifest “{digest}” in {REPO}")
    assert "The dashboard took the restore back: the registry is as it was." in said
    assert "restart the registry, which clears the cache, and restore again" in said
    # Taken back: no tag left on a manifest the registry cannot serve; the other image untouched.
    assert tags(stale_cache) == ["b"] and status(stale_cache, "a") == 404
    assert status(stale_cache, other) == 200
    record.refresh_from_db()
    assert record.restored_at is None


# -- the happy path, read back --------------------------------------------------------------------------


def test_restore__index_with_its_children__read_back_and_pulls(client: Client, gc_safe: RegistryServer, mia: User,
                                                               tmp_path: Path) -> None:
    children = [image(f"multi-{arch}", platform=f"linux/{arch}") for arch in ("amd64", "arm64")]
    index = p.build_index(children)
    digest = p.push_image(gc_safe.url, REPO, index, "multi")
    p.push_image(gc_safe.url, REPO, image("kept"), "1.0")
    record = delete_image(client, digest, ["multi"])
    assert deleted_row(client, record).find("button").text == "Restore"

    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    assert messages_of(response) == [f"{REPO}: restored multi — the registry serves them again, with every blob "
                                     "it needs"]
    assert status(gc_safe, "multi") == 200
    copy = subprocess.run(["skopeo", "--insecure-policy", "copy", "--all", "--quiet", "--src-tls-verify=false",
                           f"docker://{gc_safe.host}/{REPO}:multi", f"oci:{tmp_path / 'out'}:x"],
                          check=False, capture_output=True, text=True, timeout=GC_TIMEOUT_S)
    assert copy.returncode == 0, copy.stderr


def test_restore__index_whose_children_gc_removed__refused_naming_a_child(client: Client, gc_safe: RegistryServer,
                                                                          mia: User) -> None:
    children = [image(f"multi-{arch}", platform=f"linux/{arch}") for arch in ("amd64", "arm64")]
    digest = p.push_image(gc_safe.url, REPO, p.build_index(children), "multi")
    p.push_image(gc_safe.url, REPO, image("kept"), "1.0")
    record = delete_image(client, digest, ["multi"])
    collect_outside(gc_safe, "--delete-untagged")  # the children are untagged now: they go too

    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    (said,) = messages_of(response)
    assert "cannot restore multi — garbage collection removed its layers" in said
    assert "2 of the 2 blobs and manifests it needs are gone: there is no manifest “sha256:" in said
    assert status(gc_safe, "multi") == 404 and tags(gc_safe) == ["1.0"]
