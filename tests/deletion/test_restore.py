"""Restore tells the truth, on a real registry 2.8: it probes every blob and child manifest before,
reads the manifest back by digest and tag after, and says what garbage collection did.

Garbage collection runs for real: through the dashboard's runner (`docker-registry
garbage-collect` with the registry's config), or directly as a run outside the dashboard. The
GC-safe registry has no blob-descriptor cache (`blob_cache=False`, as deploy/registry.yml); the
stale-cache tests keep registry:2's stock `inmemory` cache on purpose and collect while it runs.
"""

from __future__ import annotations

import json
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
from tests.helpers.pages import closed_port, signed_in
from tests.helpers.servers import QuietHandler, serving

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
    point_at(
        server.url,
        ANONYMOUS_READ=False,
        PULL_HOST="",
        GC_COMMAND=f"{registry_binary()} garbage-collect {server.config_path}",
        STORAGE_PATH=str(server.storage_dir),
        GC_BEFORE_COMMAND="",
        GC_AFTER_COMMAND="",
    )
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
    return requests.get(
        f"{server.url}/v2/{REPO}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}, timeout=5
    ).status_code


def collect_outside(server: RegistryServer, *flags: str) -> None:
    """`garbage-collect` run by hand, while the registry keeps running (as an operator's cron would)."""
    subprocess.run(
        [registry_binary(), "garbage-collect", *flags, str(server.config_path)],
        check=True,
        capture_output=True,
        timeout=GC_TIMEOUT_S,
    )


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
    assert said.startswith(
        f"{REPO}: cannot restore 2.0 — garbage collection removed its layers on "
        f"{run.finished_at:%Y-%m-%d %H:%M} UTC. 2 of the 2 blobs and manifests it needs are gone: "
        "there is no blob sha256:"
    )
    assert said.endswith(f"Nothing was changed. Push it again from CI: docker push {gc_safe.host}/{REPO}:2.0")
    # Nothing changed: the registry still answers 404, the record is still open, nothing was audited.
    assert status(gc_safe, digest) == status(gc_safe, "2.0") == 404
    assert tags(gc_safe) == ["1.0"] and status(gc_safe, kept) == 200
    record.refresh_from_db()
    assert record.restored_at is None and Deletion.objects.count() == 1
    assert RegistryEvent.objects.count() == events


def test_restore__gc_outside_the_dashboard__refused_and_the_page_learns_it(
    client: Client, gc_safe: RegistryServer, mia: User
) -> None:
    p.push_image(gc_safe.url, REPO, image("kept"), "1.0")
    digest = p.push_image(gc_safe.url, REPO, image("doomed"), "2.0")
    record = delete_image(client, digest, ["2.0"])
    assert deleted_row(client, record).find("button").text == "Restore"  # remembered for a while

    collect_outside(gc_safe)

    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    (said,) = messages_of(response)
    assert (
        "cannot restore 2.0 — garbage collection removed its layers (run outside the dashboard) after it was "
        f"deleted on {record.created_at:%Y-%m-%d %H:%M} UTC" in said
    )
    assert status(gc_safe, "2.0") == 404 and tags(gc_safe) == ["1.0"]
    # The refusal read the registry live; the page now says so, with no button.
    row = deleted_row(client, record)
    assert "No longer restorable" in row.text and "outside the dashboard" in row.text
    assert row.find("button") is None


def test_restore__stale_blob_cache__the_bytes_are_probed_and_it_refuses(
    client: Client, stale_cache: RegistryServer, mia: User
) -> None:
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
    client: Client, stale_cache: RegistryServer, mia: User
) -> None:
    # Two manifests over the same config and layer: deleting one leaves its blobs (the other needs
    # them) but not its own stored bytes, which the stale cache still claims to have.
    gone = image("shared", annotations={"v": "a"})
    digest = p.push_image(stale_cache.url, REPO, gone, "a")
    other = p.push_image(stale_cache.url, REPO, image("shared", annotations={"v": "b"}), "b")
    record = delete_image(client, digest, ["a"])
    collect_outside(stale_cache)

    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    (said,) = messages_of(response)
    assert said.startswith(
        f"{REPO}: the restore failed — the registry accepted it, but reading {REPO}@{digest[:19]}… "
        f"back answered: there is no manifest “{digest}” in {REPO}"
    )
    assert "The dashboard took the restore back: the registry is as it was." in said
    assert "restart the registry, which clears the cache, and restore again" in said
    # Taken back: no tag left on a manifest the registry cannot serve; the other image untouched.
    assert tags(stale_cache) == ["b"] and status(stale_cache, "a") == 404
    assert status(stale_cache, other) == 200
    record.refresh_from_db()
    assert record.restored_at is None


# -- the happy path, read back --------------------------------------------------------------------------


def test_restore__index_with_its_children__read_back_and_pulls(
    client: Client, gc_safe: RegistryServer, mia: User, tmp_path: Path
) -> None:
    children = [image(f"multi-{arch}", platform=f"linux/{arch}") for arch in ("amd64", "arm64")]
    index = p.build_index(children)
    digest = p.push_image(gc_safe.url, REPO, index, "multi")
    p.push_image(gc_safe.url, REPO, image("kept"), "1.0")
    record = delete_image(client, digest, ["multi"])
    assert deleted_row(client, record).find("button").text == "Restore"

    response = client.post(f"/-/deleted/{record.pk}/restore/", follow=True)
    assert messages_of(response) == [
        f"{REPO}: restored multi — the registry serves them again, with every blob it needs"
    ]
    assert status(gc_safe, "multi") == 200
    copy = subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--all",
            "--quiet",
            "--src-tls-verify=false",
            f"docker://{gc_safe.host}/{REPO}:multi",
            f"oci:{tmp_path / 'out'}:x",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=GC_TIMEOUT_S,
    )
    assert copy.returncode == 0, copy.stderr


def test_restore__index_whose_children_gc_removed__refused_naming_a_child(
    client: Client, gc_safe: RegistryServer, mia: User
) -> None:
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


# -- deleting an image with its attachments -------------------------------------------------------------


def attach(server: RegistryServer, target: str) -> dict[str, str]:
    """cosign-style .sig, .att and .sbom tags and an OCI referrers-fallback tag naming `target`:
    tag -> the digest it points at."""
    hexd = target.split(":", 1)[1]
    empty = p.Blob(p.MT_OCI_EMPTY, b"{}")
    found = {}
    for suffix, media_type in (
        ("sig", "application/vnd.dev.cosign.simplesigning.v1+json"),
        ("att", "application/vnd.dsse.envelope.v1+json"),
        ("sbom", "application/spdx+json"),
    ):
        art = p.build_manifest(empty, [p.blob(media_type, {"for": target, "kind": suffix})])
        found[f"sha256-{hexd}.{suffix}"] = p.push_image(server.url, REPO, art, f"sha256-{hexd}.{suffix}")
    referrer = p.build_manifest(
        empty,
        [p.blob("application/spdx+json", {"spdxVersion": "SPDX-2.3", "for": target})],
        artifact_type="application/spdx+json",
    )
    p.push_image(server.url, REPO, referrer)
    found[f"sha256-{hexd}"] = p.push_image(server.url, REPO, p.build_index([referrer]), f"sha256-{hexd}")
    return found


def test_delete_image__lists_its_attachments__removes_and_audits_each(
    client: Client, gc_safe: RegistryServer, mia: User
) -> None:
    digest = p.push_image(gc_safe.url, REPO, image("signed"), "1.0")
    other = p.push_image(gc_safe.url, REPO, image("other"), "2.0")
    attached = attach(gc_safe, digest)
    attach(gc_safe, other)  # another image's attachments stay
    before = set(tags(gc_safe))

    confirm = dom(client.get(f"/r/{REPO}/-/manifests/{digest}/delete/").content.decode())
    section = confirm.one("div", cls="attachments")
    assert section.one("h3").text == "4 attachments name this image"
    listed = {
        tr.attrs["data-tag"]: [td.text for td in tr.find_all("td")]
        for tr in section.find_all("tr")
        if "data-tag" in tr.attrs
    }
    assert listed == {
        tag: [
            tag,
            {"sig": "signature", "att": "attestation", "sbom": "SBOM"}.get(
                tag.rsplit(".", 1)[-1] if "." in tag else "", "referrer"
            ),
            at.split(":", 1)[1][:12],
        ]
        for tag, at in attached.items()
    }
    box = section.one("input", type="checkbox", name="with_attachments")
    assert "checked" in box.attrs
    assert "Also remove these 4 attachments" in section.text
    assert "This tag will disappear:" in confirm.text  # one tag, in the singular

    form = {"tag": ["1.0"], "with_attachments": "1", "attachment": [f"{t}@{d}" for t, d in attached.items()]}
    response = client.post(f"/r/{REPO}/-/manifests/{digest}/delete/", form, follow=True)
    assert messages_of(response) == [
        f"{REPO}: deleted image {digest[:19]}… and its tag 1.0 — the registry no longer serves them",
        f"{REPO}: removed 4 attachments with it: {', '.join(sorted(attached))}",
    ]
    assert set(tags(gc_safe)) == before - {"1.0", *attached}
    for at in attached.values():
        assert status(gc_safe, at) == 404
    # Each one is audited under mia: Recently deleted, and the activity feed.
    records = {r.digest: r for r in Deletion.objects.all()}
    assert set(records) == {digest, *attached.values()}
    assert {r.username for r in records.values()} == {"mia"}
    assert sorted(t for d in attached.values() for t in records[d].tags) == sorted(attached)
    feed = RegistryEvent.objects.filter(action="delete", actor="mia", source="dashboard")
    assert set(feed.values_list("digest", flat=True)) == {digest, *attached.values()}
    listing = client.get("/-/deleted/").content.decode()
    assert all(f"<code>{tag}</code>" in listing for tag in attached)


def test_delete_image__attachments_box_unchecked__they_stay(client: Client, gc_safe: RegistryServer, mia: User) -> None:
    digest = p.push_image(gc_safe.url, REPO, image("signed"), "1.0")
    attached = attach(gc_safe, digest)
    form = {"tag": ["1.0"], "attachment": [f"{t}@{d}" for t, d in attached.items()]}  # no with_attachments
    response = client.post(f"/r/{REPO}/-/manifests/{digest}/delete/", form, follow=True)
    assert messages_of(response) == [
        f"{REPO}: deleted image {digest[:19]}… and its tag 1.0 — the registry no longer serves them"
    ]
    assert tags(gc_safe) == sorted(attached)
    assert Deletion.objects.count() == 1


def test_delete_image__an_attachment_moved_since_confirming__is_left_alone(
    client: Client, gc_safe: RegistryServer, mia: User
) -> None:
    digest = p.push_image(gc_safe.url, REPO, image("signed"), "1.0")
    attached = attach(gc_safe, digest)
    sig = f"sha256-{digest.split(':', 1)[1]}.sig"
    seen = {**attached, sig: attached[f"sha256-{digest.split(':', 1)[1]}.att"]}  # not where .sig points
    form = {"tag": ["1.0"], "with_attachments": "1", "attachment": [f"{t}@{d}" for t, d in seen.items()]}
    response = client.post(f"/r/{REPO}/-/manifests/{digest}/delete/", form, follow=True)
    said = messages_of(response)
    assert said[1] == f"{REPO}: removed 3 attachments with it: {', '.join(sorted(set(attached) - {sig}))}"
    assert said[2].startswith(
        f"{REPO}:{sig}: now points at {attached[sig][:19]}…, not at what you confirmed: left alone"
    )
    assert tags(gc_safe) == [sig] and status(gc_safe, sig) == 200


# -- a success message follows the registry's answer -------------------------------------------------------


class StubbornRegistry(QuietHandler):
    """A registry that answers 202 to every DELETE and 201 to every PUT, and keeps serving what it
    served, `1.0` on `image` (as a caching proxy in front of one might): a fault the real
    registry cannot produce. `earlier` is served by digest only."""

    def _manifest(self) -> p.Image | None:
        known = {f"/v2/{REPO}/manifests/{img.digest}": img for img in (self.server.image, self.server.earlier)}
        img = self.server.image if self.path == f"/v2/{REPO}/manifests/1.0" else known.get(self.path)
        if img is not None:
            self.send_response(200)
            self.send_header("Content-Type", img.media_type)
            self.send_header("Docker-Content-Digest", img.digest)
            self.send_header("Content-Length", str(len(img.manifest)))
            self.end_headers()
            return img
        body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return None

    def do_HEAD(self) -> None:
        self._manifest()

    def do_GET(self) -> None:
        if self.path == f"/v2/{REPO}/tags/list":
            body = json.dumps({"name": REPO, "tags": ["1.0"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif img := self._manifest():
            self.wfile.write(img.manifest)

    def do_DELETE(self) -> None:
        if self.path.endswith(("/1.0", self.server.image.digest)):
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._manifest()  # the delete probe's impossible digest: 404

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(201)
        self.send_header("Docker-Content-Digest", p.sha256_digest(body))
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def stubborn(point_at, db) -> Iterator[p.Image]:
    img = image("stays")
    with serving(StubbornRegistry, image=img, earlier=image("earlier")) as url:
        point_at(url, ANONYMOUS_READ=False)
        yield img


def test_untag__registry_accepts_but_still_serves_the_tag__no_success_claimed(
    client: Client, stubborn: p.Image, mia: User
) -> None:
    client.post(f"/r/{REPO}/-/tags/1.0/delete/", {"digest": stubborn.digest})
    said = messages_of(client.get("/-/deleted/"))
    assert said == [
        f"{REPO}:1.0: the registry accepted the untag, but it still serves “1.0”, on {stubborn.digest[:19]}…"
    ]


def test_delete_image__registry_accepts_but_still_serves_it__says_so(
    client: Client, stubborn: p.Image, mia: User
) -> None:
    response = client.post(f"/r/{REPO}/-/manifests/{stubborn.digest}/delete/", {"tag": ["1.0"]})
    assert response.status_code == 502
    problem = dom(response.content.decode()).one("p", cls="problem").text
    assert problem == (
        f"the registry accepted the delete of {REPO}@{stubborn.digest[:19]}…, but it still serves "
        f"{stubborn.digest[:19]}…; it still serves “1.0”, on {stubborn.digest[:19]}…"
    )
    assert messages_of(client.get("/-/deleted/")) == []  # no "deleted image"


def test_roll_back__registry_accepts_but_serves_the_old_digest__no_banner(
    client: Client, stubborn: p.Image, mia: User
) -> None:
    from dashboard.index import store
    from dashboard.models import Rollback

    earlier = image("earlier")
    store.set_tags(REPO, {"1.0": earlier.digest}, source="event")
    store.set_tags(REPO, {"1.0": stubborn.digest}, source="event")
    response = client.post(f"/r/{REPO}/-/tags/1.0/rollback/", {"to": earlier.digest, "from": stubborn.digest})
    assert response.status_code == 502
    problem = dom(response.content.decode()).find_all("p", cls="problem")[0].text
    assert problem == (
        f"The registry did not take the change: the registry accepted the push of “1.0”, but reading "
        f"it back gives {stubborn.digest[7:19]}, not {earlier.digest[7:19]}: the roll back did not "
        "take effect"
    )
    assert not Rollback.objects.exists()
    assert messages_of(client.get("/-/deleted/")) == []


def test_recently_deleted__registry_down__still_lists_and_says_it_could_not_check(
    client: Client, gc_safe: RegistryServer, mia: User, point_at
) -> None:
    digest = p.push_image(gc_safe.url, REPO, image("doomed"), "2.0")
    record = delete_image(client, digest, ["2.0"])
    down = f"http://127.0.0.1:{closed_port()}"
    point_at(down, ANONYMOUS_READ=False)
    Deletion.objects.filter(pk=record.pk).update(registry=down)  # the list is per registry URL
    response = client.get("/-/deleted/")
    assert response.status_code == 200
    row = dom(response.content.decode()).one("tr", data_deletion=str(record.pk))
    assert row.find("button").text == "Restore"  # it may still be: the restore checks again
    note = row.one("span", cls="small")
    assert note.text == "could not check that it still can be" and "connection refused" in note.attrs["title"]


def test_probe_blob__present_empty_and_missing(gc_safe: RegistryServer) -> None:
    from dashboard import remote
    from dashboard.registry import errors as e

    client = remote.client()
    present = p.upload_blob(gc_safe.url, REPO, b"x" * 10)
    empty = p.upload_blob(gc_safe.url, REPO, b"")
    assert client.probe_blob(REPO, present) is None
    with pytest.raises(e.BlobUnknown, match="there is no blob"):
        client.probe_blob(REPO, "sha256:" + "0" * 64)
    assert client.probe_blob(REPO, empty) is None  # last: 2.8 drops the connection after its 416


def test_delete_image__malformed_attachment_field__404_before_anything_is_deleted(
    client: Client, gc_safe: RegistryServer, mia: User
) -> None:
    digest = p.push_image(gc_safe.url, REPO, image("signed"), "1.0")
    form = {"tag": ["1.0"], "with_attachments": "1", "attachment": ["../x@sha256:nothex"]}
    assert client.post(f"/r/{REPO}/-/manifests/{digest}/delete/", form).status_code == 404
    assert tags(gc_safe) == ["1.0"] and not Deletion.objects.exists()
