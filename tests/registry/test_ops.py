"""Safe deletion against real registries: probe, untag, delete, garbage-collect, restore.

Distribution 2.8.2 (the Debian ``docker-registry``) runs for real: ``empty_registry`` or a
``RegistryServer`` started here (deletion off, read-only). Registry 3.x and answers a real
registry won't give (401/403) come from ``MemRegistry``: a real HTTP server on 127.0.0.1
that keeps manifests, tags and blobs in memory and answers like distribution 3.x.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import testbed.server as testbed_server
from dashboard.registry import RegistryClient
from dashboard.registry import errors as e
from dashboard.registry import models as m
from dashboard.registry.models import RegistryConfig
from dashboard.registry.ops import (
    EMPTY_JSON_DIGEST,
    PROBE_DIGEST,
    UNTAG_ANNOTATION,
    DeleteSupport,
    Untagged,
    missing_content,
    probe_delete,
    restore,
    untag,
)
from testbed import RegistryServer, registry_binary
from testbed import push as p
from testbed.push import sha256_digest as sha
from tests.helpers.servers import QuietHandler, serving

SKOPEO_TIMEOUT_S = 60
GC_TIMEOUT_S = 60


def client_for(url: str, **config: object) -> RegistryClient:
    return RegistryClient(RegistryConfig(url=url, connect_timeout=2.0, read_timeout=10.0, **config))  # type: ignore[arg-type]


def tag_state(client: RegistryClient, name: str) -> dict[str, str]:
    """Every tag of `name` and the digest it resolves to."""
    return {tag: client.head_manifest(name, tag).digest for tag in client.tags(name)}


def manifest_exists(url: str, name: str, digest: str) -> bool:
    return p.head_manifest(url, name, digest) is not None


def manifest_revisions(server: RegistryServer, name: str) -> set[str]:
    """Digests 2.8 stores as manifests of `name` (a deleted one loses its `link` file)."""
    root = server.storage_dir / "docker/registry/v2/repositories" / name / "_manifests/revisions/sha256"
    return {f"sha256:{link.parent.name}" for link in root.glob("*/link")}


def image(text: str) -> p.Image:
    """A small, distinct image: one layer holding `text`."""
    return p.build_image([{"data.txt": text.encode()}], labels={"test": text})


# -- untag on 2.8.2 ----------------------------------------------------------------------


def test_untag__shared_digest_keeps_the_sibling_tag(empty_registry: RegistryServer, tmp_path: Path) -> None:
    url, host = empty_registry.url, empty_registry.host
    img = image("shared")
    p.push_image(url, "acme/app", img, "latest")
    p.put_manifest(url, "acme/app", "1.2.4", img.manifest, img.media_type)
    client = client_for(url)

    result, tag_delete_worked = untag(client, "acme/app", "latest", expected_digest=img.digest)

    assert result == Untagged(tag="latest", digest=img.digest, method="throwaway")
    assert tag_delete_worked is False  # 2.8 answers 400 DIGEST_INVALID to a DELETE by tag
    assert client.tags("acme/app") == ["1.2.4"]
    assert client.head_manifest("acme/app", "1.2.4").digest == img.digest
    assert manifest_exists(url, "acme/app", img.digest)
    assert manifest_revisions(empty_registry, "acme/app") == {img.digest}  # the throwaway is gone
    # And it still pulls, with a real client.
    inspect = subprocess.run(
        ["skopeo", "--insecure-policy", "inspect", "--tls-verify=false", f"docker://{host}/acme/app:1.2.4"],
        check=False, capture_output=True, text=True, timeout=SKOPEO_TIMEOUT_S)
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Digest"] == img.digest
    copy = subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
         f"docker://{host}/acme/app:1.2.4", f"oci:{tmp_path / 'x'}:1"],
        check=False, capture_output=True, text=True, timeout=SKOPEO_TIMEOUT_S)
    assert copy.returncode == 0, copy.stderr
    index = json.loads((tmp_path / "x" / "index.json").read_text())
    assert [d["digest"] for d in index["manifests"]] == [img.digest]


def test_untag__three_of_five_tags__exactly_the_other_two_remain(empty_registry: RegistryServer) -> None:
    url = empty_registry.url
    a, b, c = image("a"), image("b"), image("c")
    p.push_image(url, "acme/bulk", a, "a1")
    p.put_manifest(url, "acme/bulk", "a2", a.manifest, a.media_type)
    p.push_image(url, "acme/bulk", b, "b1")
    p.put_manifest(url, "acme/bulk", "b2", b.manifest, b.media_type)
    p.push_image(url, "acme/bulk", c, "c1")
    client = client_for(url)
    before = tag_state(client, "acme/bulk")

    tag_delete: bool | None = None
    results = []
    for tag in ("a1", "b1", "b2"):
        # What a caller does: remember that this registry can't delete tags, skip the attempt.
        result, worked = untag(client, "acme/bulk", tag, expected_digest=before[tag], tag_delete=tag_delete)
        tag_delete = tag_delete if worked else False
        results.append(result)

    assert tag_state(client, "acme/bulk") == {"a2": a.digest, "c1": c.digest}
    assert [(r.tag, r.digest, r.method) for r in results] == [
        ("a1", a.digest, "throwaway"), ("b1", b.digest, "throwaway"), ("b2", b.digest, "throwaway")]
    # Untagging never deletes a manifest, not even one left with no tag at all.
    assert all(manifest_exists(url, "acme/bulk", x.digest) for x in (a, b, c))
    assert manifest_revisions(empty_registry, "acme/bulk") == {a.digest, b.digest, c.digest}


def test_untag__expected_digest_mismatch__conflict_and_nothing_changed(empty_registry: RegistryServer) -> None:
    url = empty_registry.url
    old, new = image("confirmed"), image("pushed since")
    p.push_image(url, "acme/race", old, "latest")
    p.push_image(url, "acme/race", new, "latest")  # someone pushed after the user confirmed
    p.put_manifest(url, "acme/race", "stable", old.manifest, old.media_type)
    client = client_for(url)
    before = tag_state(client, "acme/race")

    with pytest.raises(e.Conflict) as info:
        untag(client, "acme/race", "latest", expected_digest=old.digest)

    assert info.value.http_status == 409
    assert (info.value.expected, info.value.actual) == (old.digest, new.digest)
    assert "no longer points at" in str(info.value) and "Nothing was removed" in str(info.value)
    assert tag_state(client, "acme/race") == before == {"latest": new.digest, "stable": old.digest}


def test_untag__sole_tag__the_manifest_stays_by_digest(empty_registry: RegistryServer) -> None:
    url = empty_registry.url
    img = image("alone")
    p.push_image(url, "acme/alone", img, "only")
    client = client_for(url)

    result, _ = untag(client, "acme/alone", "only", tag_delete=False)

    assert result.method == "throwaway"
    assert client.tags("acme/alone") == []
    assert client.manifest_bytes("acme/alone", img.digest)[0] == img.manifest


def test_untag__a_digest_instead_of_a_tag__refused_before_any_request(empty_registry: RegistryServer) -> None:
    with pytest.raises(e.InvalidReference):
        untag(client_for(empty_registry.url), "acme/app", "sha256:" + "a" * 64)


def test_delete_tag__registry_2_8__400_digest_invalid_and_nothing_changed(empty_registry: RegistryServer) -> None:
    url = empty_registry.url
    img = image("2.8 tag delete")
    p.push_image(url, "acme/app", img, "latest")
    client = client_for(url)

    with pytest.raises(e.RegistryAPIError) as info:
        client.delete_tag("acme/app", "latest")

    assert (info.value.status, info.value.code) == (400, "DIGEST_INVALID")
    assert tag_state(client, "acme/app") == {"latest": img.digest}


# -- probe and refusals on 2.8.2 ---------------------------------------------------------


def test_probe_delete__deletion_disabled__says_so_with_the_env_hint_and_untag_changes_nothing(
        tmp_path: Path) -> None:
    with RegistryServer(tmp_path / "nodelete", delete_enabled=False) as server:
        img = image("kept")
        p.push_image(server.url, "acme/app", img, "latest")
        p.put_manifest(server.url, "acme/app", "1.0", img.manifest, img.media_type)
        client = client_for(server.url)
        before = tag_state(client, "acme/app")

        support = probe_delete(client, "acme/app")
        assert support.enabled is False and support.read_only is False
        assert "started without deletion" in support.reason
        assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in support.reason
        assert "storage.delete.enabled: true" in support.reason and "config.yml" in support.reason

        for tag_delete in (None, False):
            with pytest.raises(e.UnsupportedOperation) as info:
                untag(client, "acme/app", "latest", tag_delete=tag_delete)
            assert (info.value.status, info.value.code) == (405, "UNSUPPORTED")
            assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in str(info.value)
        assert tag_state(client, "acme/app") == before
        # No throwaway was ever pushed: the empty config blob is not even in the repository.
        with pytest.raises(e.BlobUnknown):
            client.head_blob("acme/app", EMPTY_JSON_DIGEST)


def test_probe_delete__enabled__says_enabled_and_deletes_nothing(empty_registry: RegistryServer) -> None:
    url = empty_registry.url
    img, other = image("one"), image("two")
    p.push_image(url, "acme/app", img, "latest")
    p.put_manifest(url, "acme/app", "1.0", img.manifest, img.media_type)
    p.push_image(url, "acme/app", other, "2.0")
    client = client_for(url)
    before = tag_state(client, "acme/app")

    assert probe_delete(client, "acme/app") == DeleteSupport(enabled=True)
    # A repository that doesn't exist yet answers the same 404.
    assert probe_delete(client, "acme/nothing-here") == DeleteSupport(enabled=True)

    assert tag_state(client, "acme/app") == before
    assert client.catalog() == ["acme/app"]
    assert manifest_exists(url, "acme/app", img.digest) and manifest_exists(url, "acme/app", other.digest)


def test_probe_delete__real_read_only_mode__read_only_and_untag_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = RegistryServer(tmp_path / "ro")
    server.start()
    try:
        img = image("frozen")
        p.push_image(server.url, "acme/app", img, "latest")
        server.stop()
        # Restart the same storage with distribution's maintenance read-only switch on.
        plain = testbed_server._config_yaml
        monkeypatch.setattr(testbed_server, "_config_yaml", lambda *a: plain(*a).replace(
            "  maintenance:\n", "  maintenance:\n    readonly:\n      enabled: true\n"))
        server.start()
        assert "readonly" in server.config_path.read_text()
        client = client_for(server.url)

        support = probe_delete(client, "acme/app")

        assert support.enabled is False and support.read_only is True
        assert "read-only (maintenance) mode" in support.reason
        with pytest.raises(e.UnsupportedOperation) as info:
            untag(client, "acme/app", "latest")
        assert (info.value.status, info.value.code) == (405, "")
        assert "Method not allowed" in info.value.body
        assert "read-only" in str(info.value)
        assert tag_state(client, "acme/app") == {"latest": img.digest}
    finally:
        server.stop()


# -- delete by digest and restore on 2.8.2 -----------------------------------------------


def test_delete_manifest__removes_every_tag_pointing_at_it__restore_brings_them_all_back(
        empty_registry: RegistryServer) -> None:
    url = empty_registry.url
    img, other = image("to delete"), image("bystander")
    p.push_image(url, "acme/app", img, "latest")
    for tag in ("1.0", "1"):
        p.put_manifest(url, "acme/app", tag, img.manifest, img.media_type)
    p.push_image(url, "acme/app", other, "2.0")
    client = client_for(url)
    raw, media_type, digest = client.manifest_bytes("acme/app", img.digest)
    tags = sorted(t for t, d in tag_state(client, "acme/app").items() if d == digest)
    assert tags == ["1", "1.0", "latest"]

    client.delete_manifest("acme/app", digest)

    # 2.8 documents it: deleting a manifest by digest untags every tag that points at it.
    assert tag_state(client, "acme/app") == {"2.0": other.digest}
    with pytest.raises(e.ManifestUnknown):
        client.head_manifest("acme/app", digest)
    assert missing_content(client, "acme/app", raw, media_type) == []  # no GC yet: all blobs still there

    restore(client, "acme/app", raw, media_type, digest, tags)

    assert tag_state(client, "acme/app") == {"1": digest, "1.0": digest, "latest": digest, "2.0": other.digest}
    assert client.manifest_bytes("acme/app", digest) == (raw, media_type, digest)


def test_restore__index__comes_back_with_its_tags(empty_registry: RegistryServer) -> None:
    url = empty_registry.url
    amd64 = p.build_image([{"a": b"amd64"}], platform="linux/amd64")
    arm64 = p.build_image([{"a": b"arm64"}], platform="linux/arm64")
    index = p.build_index([amd64, arm64])
    p.push_image(url, "acme/multi", index, "latest")
    p.put_manifest(url, "acme/multi", "v2", index.manifest, index.media_type)
    client = client_for(url)
    raw, media_type, digest = client.manifest_bytes("acme/multi", "latest")
    assert (digest, media_type) == (index.digest, m.OCI_INDEX)

    client.delete_manifest("acme/multi", digest)
    assert client.tags("acme/multi") == []
    assert missing_content(client, "acme/multi", raw, media_type) == []  # the children are still there

    restore(client, "acme/multi", raw, media_type, digest, ["latest", "v2"])

    assert tag_state(client, "acme/multi") == {"latest": digest, "v2": digest}
    assert client.manifest("acme/multi", "v2").manifests[1].digest == arm64.digest


def test_restore__index_whose_child_was_deleted__not_restorable_names_the_child(
        empty_registry: RegistryServer) -> None:
    url = empty_registry.url
    amd64 = p.build_image([{"a": b"amd64 child"}], platform="linux/amd64")
    arm64 = p.build_image([{"a": b"arm64 child"}], platform="linux/arm64")
    index = p.build_index([amd64, arm64])
    p.push_image(url, "acme/multi", index, "latest")
    client = client_for(url)
    raw, media_type, digest = client.manifest_bytes("acme/multi", "latest")
    client.delete_manifest("acme/multi", digest)
    client.delete_manifest("acme/multi", arm64.digest)

    assert missing_content(client, "acme/multi", raw, media_type) == [arm64.digest]
    with pytest.raises(e.NotRestorable) as info:
        restore(client, "acme/multi", raw, media_type, digest, ["latest"])
    assert info.value.missing == [arm64.digest]
    assert not manifest_exists(url, "acme/multi", digest)


def garbage_collect(server: RegistryServer) -> str:
    """Run the real `garbage-collect` on a stopped registry, then start it again.

    Stopped, because distribution's GC must not race pushes; restarted, because the
    in-memory blob descriptor cache would otherwise keep answering 200 to a HEAD for blobs
    GC removed (a GET then breaks off mid-body). The port changes: use `server.url` afresh.
    """
    server.stop()
    gc = subprocess.run([registry_binary(), "garbage-collect", str(server.config_path)],
                        check=False, capture_output=True, text=True, timeout=GC_TIMEOUT_S)
    assert gc.returncode == 0, gc.stdout + gc.stderr
    server.start()
    return gc.stdout


def test_restore__after_garbage_collect__not_restorable_names_the_blobs_and_pushes_nothing(
        empty_registry: RegistryServer) -> None:
    gone, kept = image("collected"), image("kept")
    p.push_image(empty_registry.url, "acme/app", gone, "old")
    p.push_image(empty_registry.url, "acme/app", kept, "new")
    client = client_for(empty_registry.url)
    raw, media_type, digest = client.manifest_bytes("acme/app", "old")
    client.delete_manifest("acme/app", digest)

    report = garbage_collect(empty_registry)

    blobs = [gone.config_digest, *gone.layer_digests]
    for blob in blobs:
        assert f"blob eligible for deletion: {blob}" in report
    client = client_for(empty_registry.url)
    assert missing_content(client, "acme/app", raw, media_type) == blobs
    assert missing_content(client, "acme/app", kept.manifest, kept.media_type) == []
    with pytest.raises(e.NotRestorable) as info:
        restore(client, "acme/app", raw, media_type, digest, ["old"])
    err = info.value
    assert err.missing == blobs and err.http_status == 409
    assert "can no longer be restored" in str(err) and "garbage collection" in str(err)
    assert all(blob in str(err) for blob in blobs)
    assert tag_state(client, "acme/app") == {"new": kept.digest}
    assert not manifest_exists(empty_registry.url, "acme/app", digest)


def test_restore__bytes_do_not_match_the_digest__integrity_error_before_any_request(
        empty_registry: RegistryServer) -> None:
    img = image("x")
    with pytest.raises(e.IntegrityError):
        restore(client_for(empty_registry.url), "acme/app", img.manifest, img.media_type, "sha256:" + "0" * 64,
                ["latest"])


# -- client writes on 2.8.2 --------------------------------------------------------------


def test_upload_blob_and_put_manifest__push_an_image_2_8_pulls(empty_registry: RegistryServer) -> None:
    url = empty_registry.url
    img = image("pushed by the client")
    client = client_for(url)
    for b in (img.config, *img.layers):
        assert b is not None
        assert client.upload_blob("acme/new", b.data) == b.digest
    assert client.upload_blob("acme/new", img.layers[0].data) == img.layers[0].digest  # exists: skipped

    assert client.put_manifest("acme/new", "v1", img.manifest, img.media_type) == img.digest
    assert client.put_manifest("acme/new", img.digest, img.manifest, img.media_type) == img.digest

    assert p.get_manifest(url, "acme/new", "v1") == (img.manifest, img.media_type)
    assert p.get_blob(url, "acme/new", img.layers[0].digest) == img.layers[0].data


def test_put_manifest__missing_blob__registry_error_and_no_tag(empty_registry: RegistryServer) -> None:
    img = image("blobs never pushed")
    client = client_for(empty_registry.url)
    with pytest.raises(e.RegistryAPIError) as info:
        client.put_manifest("acme/app", "v1", img.manifest, img.media_type)
    assert (info.value.status, info.value.code) == (400, "MANIFEST_BLOB_UNKNOWN")
    with pytest.raises(e.NameUnknown):
        client.tags("acme/app")


# -- a registry 3.x (and answers 2.8 won't give), served from memory ----------------------


@dataclass
class Request:
    method: str
    path: str
    query: str


Answer = tuple[int, bytes, dict[str, str]]

_MANIFEST = re.compile(r"/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)")
_UPLOAD = re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<id>[^/]*)")
_BLOB = re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)")
_TAGS = re.compile(r"/v2/(?P<name>.+)/tags/list")


def errors_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


@dataclass
class MemRegistry:
    """Distribution 3.x in miniature, over real HTTP: DELETE by tag removes just that tag.

    ``tag_delete=False`` answers a tag DELETE like 2.8 (400 DIGEST_INVALID); ``location``
    shapes the upload Location ("relative" with a ?_state query, "absolute", "foreign");
    ``intercept(method, path)`` may answer a request itself. Every request is in ``seen``.
    """

    tag_delete: bool = True
    location: str = "relative"
    intercept: Callable[[str, str], Answer | None] | None = None
    seen: list[Request] = field(default_factory=list)
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    tags: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.stack = ExitStack()
        self.url = self.stack.enter_context(serving(_MemHandler, mem=self))

    def client(self, **config: object) -> RegistryClient:
        return client_for(self.url, **config)

    def close(self) -> None:
        self.stack.close()

    def requests(self, method: str | None = None) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.seen if method is None or r.method == method]

    def push(self, name: str, img: p.Image, *tags: str) -> None:
        for b in ((img.config,) if img.config else ()) + img.layers:
            self.blobs[(name, b.digest)] = b.data
        self.manifests[(name, img.digest)] = (img.manifest, img.media_type)
        for tag in tags:
            self.tags[(name, tag)] = img.digest

    def state(self, name: str) -> dict[str, str]:
        return {tag: digest for (n, tag), digest in sorted(self.tags.items()) if n == name}

    # -- request handling (under the lock: one request at a time is plenty) --

    def handle(self, method: str, path: str, query: str, body: bytes, content_type: str) -> Answer:
        self.seen.append(Request(method, path, query))
        if self.intercept is not None and (answer := self.intercept(method, path)) is not None:
            return answer
        with self.lock:
            if path == "/v2/":
                return 200, b"{}", {}
            if match := _TAGS.fullmatch(path):
                return 200, json.dumps({"name": match["name"], "tags": list(self.state(match["name"]))}).encode(), {}
            if match := _MANIFEST.fullmatch(path):
                return self._manifest(method, match["name"], match["ref"], body, content_type)
            if match := _UPLOAD.fullmatch(path):
                return self._upload(method, match["name"], match["id"], query, body)
            if match := _BLOB.fullmatch(path):
                data = self.blobs.get((match["name"], match["digest"]))
                if data is None:
                    return 404, errors_body("BLOB_UNKNOWN", "blob unknown to registry"), {}
                return 200, data, {"Docker-Content-Digest": match["digest"],
                                   "Content-Type": "application/octet-stream"}
        return 404, b"404 page not found\n", {"Content-Type": "text/plain"}

    def _manifest(self, method: str, name: str, ref: str, body: bytes, content_type: str) -> Answer:
        is_digest = ref.startswith("sha256:")
        digest = ref if is_digest else self.tags.get((name, ref), "")
        if method in ("GET", "HEAD"):
            if (name, digest) not in self.manifests:
                return 404, errors_body("MANIFEST_UNKNOWN", "manifest unknown"), {}
            raw, media_type = self.manifests[(name, digest)]
            return 200, raw, {"Content-Type": media_type, "Docker-Content-Digest": digest}
        if method == "PUT":
            digest = sha(body)
            if is_digest and ref != digest:
                return 400, errors_body("DIGEST_INVALID", "provided digest did not match uploaded content"), {}
            doc = json.loads(body)
            for d in ([doc["config"]] if "config" in doc else []) + doc.get("layers", []):
                if (name, d["digest"]) not in self.blobs:
                    return 400, errors_body("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry"), {}
            self.manifests[(name, digest)] = (body, content_type)
            if not is_digest:
                self.tags[(name, ref)] = digest
            return 201, b"", {"Docker-Content-Digest": digest, "Location": f"/v2/{name}/manifests/{digest}"}
        if method == "DELETE":
            if not is_digest:
                if not self.tag_delete:
                    return 400, errors_body("DIGEST_INVALID", "provided digest did not match uploaded content"), {}
                if (name, ref) not in self.tags:
                    return 404, errors_body("MANIFEST_UNKNOWN", "manifest unknown"), {}
                del self.tags[(name, ref)]
                return 202, b"", {}
            if (name, digest) not in self.manifests:
                return 404, errors_body("MANIFEST_UNKNOWN", "manifest unknown"), {}
            del self.manifests[(name, digest)]
            for key in [k for k, v in self.tags.items() if k[0] == name and v == digest]:
                del self.tags[key]
            return 202, b"", {}
        return 405, b"Method not allowed\n", {"Content-Type": "text/plain"}

    def _upload(self, method: str, name: str, upload_id: str, query: str, body: bytes) -> Answer:
        if method == "POST":
            new_id = uuid.uuid4().hex
            where = f"/v2/{name}/blobs/uploads/{new_id}"
            location = {"relative": f"{where}?_state=opaque", "absolute": f"{self.url}{where}",
                        "foreign": f"http://127.0.0.2:9/v2/{name}/blobs/uploads/{new_id}"}[self.location]
            return 202, b"", {"Location": location, "Docker-Upload-UUID": new_id}
        if method == "PUT":
            params = parse_qs(query)
            digest = params.get("digest", [""])[0]
            if self.location == "relative" and params.get("_state") != ["opaque"]:
                return 400, errors_body("BLOB_UPLOAD_INVALID", "the upload state was lost"), {}
            if sha(body) != digest:
                return 400, errors_body("DIGEST_INVALID", "provided digest did not match uploaded content"), {}
            self.blobs[(name, digest)] = body
            return 201, b"", {"Docker-Content-Digest": digest, "Location": f"/v2/{name}/blobs/{digest}"}
        return 405, b"Method not allowed\n", {"Content-Type": "text/plain"}


class _MemHandler(QuietHandler):
    protocol_version = "HTTP/1.1"

    def _dispatch(self) -> None:
        mem: MemRegistry = self.server.mem  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        status, payload, headers = mem.handle(self.command, parts.path, parts.query, body,
                                              self.headers.get("Content-Type", ""))
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _dispatch


@pytest.fixture
def mem() -> Iterator[MemRegistry]:
    server = MemRegistry()
    try:
        yield server
    finally:
        server.close()


def test_untag__registry_3_tag_delete__one_delete_and_no_manifest_put(mem: MemRegistry) -> None:
    img = image("3.x")
    mem.push("acme/app", img, "latest", "1.2.4")

    result, tag_delete_worked = untag(mem.client(), "acme/app", "latest", expected_digest=img.digest)

    assert result == Untagged(tag="latest", digest=img.digest, method="tag-delete")
    assert tag_delete_worked is True
    assert mem.state("acme/app") == {"1.2.4": img.digest}
    assert mem.requests() == ["HEAD /v2/acme/app/manifests/latest", "DELETE /v2/acme/app/manifests/latest"]
    assert mem.requests("PUT") == [] and mem.requests("POST") == []


def test_untag__tag_delete_false__never_tries_the_tag_delete(mem: MemRegistry) -> None:
    img = image("3.x, remembered as 2.8")
    mem.push("acme/app", img, "latest", "1.2.4")

    result, tag_delete_worked = untag(mem.client(), "acme/app", "latest", tag_delete=False)

    assert result == Untagged(tag="latest", digest=img.digest, method="throwaway")
    assert tag_delete_worked is False
    assert "DELETE /v2/acme/app/manifests/latest" not in mem.requests()
    assert mem.state("acme/app") == {"1.2.4": img.digest}
    assert (("acme/app", img.digest)) in mem.manifests
    deletes = mem.requests("DELETE")
    assert deletes[0] == f"DELETE /v2/acme/app/manifests/{PROBE_DIGEST}"  # checked before anything changed
    assert len(deletes) == 2  # the probe, then the throwaway by its digest
    assert mem.requests("PUT")[-1] == "PUT /v2/acme/app/manifests/latest"


def test_untag__2_8_like_fallback__throwaway_is_unique_empty_and_deleted_by_digest(mem: MemRegistry) -> None:
    mem.tag_delete = False
    img = image("fallback")
    mem.push("acme/app", img, "a", "b")
    puts: list[bytes] = []
    original = mem._manifest

    def record(method: str, name: str, ref: str, body: bytes, content_type: str) -> Answer:
        if method == "PUT":
            puts.append(body)
        return original(method, name, ref, body, content_type)

    mem._manifest = record  # type: ignore[method-assign]
    client = mem.client()

    untag(client, "acme/app", "a")
    untag(client, "acme/app", "b", tag_delete=False)

    assert mem.state("acme/app") == {}
    assert list(mem.manifests) == [("acme/app", img.digest)]  # both throwaways gone, the image kept
    docs = [json.loads(body) for body in puts]
    assert len(docs) == 2 and sha(puts[0]) != sha(puts[1])
    for doc in docs:
        assert doc["config"] == {"mediaType": m.OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2}
        assert doc["layers"] == []
        assert len(doc["annotations"][UNTAG_ANNOTATION]) == 32
    assert mem.blobs[("acme/app", EMPTY_JSON_DIGEST)] == b"{}"


def test_untag__digest_delete_denied_after_the_tag_moved__tag_put_back(mem: MemRegistry) -> None:
    mem.tag_delete = False
    img = image("rollback")
    mem.push("acme/app", img, "latest", "1.0")

    def deny_digest_deletes(method: str, path: str) -> Answer | None:
        if method == "DELETE" and "/manifests/sha256:" in path:
            return 403, errors_body("DENIED", "requested access to the resource is denied"), {}
        return None

    mem.intercept = deny_digest_deletes

    with pytest.raises(e.Unauthorized, match="denied"):
        untag(mem.client(), "acme/app", "latest")

    assert mem.state("acme/app") == {"1.0": img.digest, "latest": img.digest}
    puts = mem.requests("PUT")
    assert puts[-2:] == ["PUT /v2/acme/app/manifests/latest"] * 2  # the throwaway, then the original back


def test_untag__registry_3_deletion_disabled__unsupported_and_nothing_changed(mem: MemRegistry) -> None:
    img = image("3.x no delete")
    mem.push("acme/app", img, "latest")
    mem.intercept = lambda method, path: (405, errors_body("UNSUPPORTED", "The operation is unsupported."), {}) \
        if method == "DELETE" else None

    with pytest.raises(e.UnsupportedOperation, match="REGISTRY_STORAGE_DELETE_ENABLED=true"):
        untag(mem.client(), "acme/app", "latest")
    assert mem.state("acme/app") == {"latest": img.digest}
    assert mem.requests("PUT") == [] and mem.requests("POST") == []


def test_probe_delete__read_only_plain_405__read_only(mem: MemRegistry) -> None:
    img = image("maintenance")
    mem.push("acme/app", img, "latest")
    mem.intercept = lambda method, path: (405, b"Method not allowed\n", {"Content-Type": "text/plain",
                                                                         "Allow": "GET, HEAD"}) \
        if method in ("DELETE", "PUT", "POST", "PATCH") else None
    client = mem.client()

    support = probe_delete(client, "acme/app")

    assert support.enabled is False and support.read_only is True
    assert "read-only (maintenance) mode" in support.reason
    assert "REGISTRY_STORAGE_DELETE_ENABLED" not in support.reason
    for tag_delete in (None, False):
        with pytest.raises(e.UnsupportedOperation, match="read-only"):
            untag(client, "acme/app", "latest", tag_delete=tag_delete)
    assert mem.state("acme/app") == {"latest": img.digest}


@pytest.mark.parametrize(("status", "code"), [(401, "UNAUTHORIZED"), (403, "DENIED")])
def test_probe_delete__401_403__credentials_lack_the_delete_permission(
        mem: MemRegistry, status: int, code: str) -> None:
    img = image("no permission")
    mem.push("acme/app", img, "latest")
    mem.intercept = lambda method, path: (status, errors_body(code, "not allowed"), {}) \
        if method == "DELETE" else None
    client = mem.client(username="dashboard", password="pw")

    support = probe_delete(client, "acme/app")

    assert support.enabled is False and support.read_only is False
    assert "lack the delete permission" in support.reason
    assert "repository:acme/app:delete" in support.reason and "“dashboard”" in support.reason
    assert "pw" not in support.reason.replace("permission", "")
    with pytest.raises(e.Unauthorized, match="lack the delete permission"):
        untag(client, "acme/app", "latest", tag_delete=False)
    with pytest.raises(e.Unauthorized):
        untag(client, "acme/app", "latest")
    assert mem.state("acme/app") == {"latest": img.digest}
    assert mem.requests("PUT") == []


def test_unsupported_operation__keeps_status_code_and_body_to_tell_the_405s_apart(mem: MemRegistry) -> None:
    digest = "sha256:" + "1" * 64
    answers = iter([(405, errors_body("UNSUPPORTED", "The operation is unsupported."), {}),
                    (405, b"Method not allowed\n", {"Content-Type": "text/plain"})])
    mem.intercept = lambda method, path: next(answers)
    client = mem.client()

    with pytest.raises(e.UnsupportedOperation) as disabled:
        client.delete_manifest("a", digest)
    with pytest.raises(e.UnsupportedOperation) as read_only:
        client.delete_manifest("a", digest)

    assert (disabled.value.status, disabled.value.code) == (405, "UNSUPPORTED")
    assert (read_only.value.status, read_only.value.code, read_only.value.body) == (405, "", "Method not allowed\n")
    assert disabled.value.http_status == read_only.value.http_status == 405


@pytest.mark.parametrize("location", ["relative", "absolute"])
def test_upload_blob__relative_or_absolute_location__digest_appended(mem: MemRegistry, location: str) -> None:
    mem.location = location
    data = b"some blob"

    assert mem.client().upload_blob("acme/app", data) == sha(data)

    assert mem.blobs[("acme/app", sha(data))] == data
    put = next(r for r in mem.seen if r.method == "PUT")
    assert parse_qs(put.query)["digest"] == [sha(data)]
    if location == "relative":
        assert parse_qs(put.query)["_state"] == ["opaque"]  # the registry's own query kept


def test_upload_blob__already_there__only_a_head(mem: MemRegistry) -> None:
    mem.blobs[("acme/app", sha(b"x"))] = b"x"
    assert mem.client().upload_blob("acme/app", b"x") == sha(b"x")
    assert mem.requests() == [f"HEAD /v2/acme/app/blobs/{sha(b'x')}"]


def test_upload_blob__location_on_another_host__refused_nothing_sent_there(mem: MemRegistry) -> None:
    mem.location = "foreign"
    with pytest.raises(e.MalformedContent, match="not the registry's address"):
        mem.client().upload_blob("acme/app", b"secret layer")
    assert mem.requests("PUT") == []


def test_put_manifest__registry_reports_another_digest__integrity_error(mem: MemRegistry) -> None:
    img = image("lying registry")
    mem.push("acme/app", img)
    mem.intercept = lambda method, path: (201, b"", {"Docker-Content-Digest": "sha256:" + "f" * 64}) \
        if method == "PUT" else None
    with pytest.raises(e.IntegrityError) as info:
        mem.client().put_manifest("acme/app", "v1", img.manifest, img.media_type)
    assert info.value.expected == img.digest


def test_put_manifest__by_a_digest_the_bytes_do_not_hash_to__refused_before_sending(mem: MemRegistry) -> None:
    img = image("wrong digest")
    with pytest.raises(e.IntegrityError):
        mem.client().put_manifest("acme/app", "sha256:" + "0" * 64, img.manifest, img.media_type)
    assert mem.seen == []


def test_delete_tag__registry_3__202_and_only_that_tag_gone(mem: MemRegistry) -> None:
    img = image("3.x tag")
    mem.push("acme/app", img, "a", "b")
    mem.client().delete_tag("acme/app", "a")
    assert mem.state("acme/app") == {"b": img.digest}


def test_conflict_and_not_restorable__answer_409() -> None:
    assert e.Conflict("x").http_status == 409
    err = e.NotRestorable("y", missing=["sha256:" + "a" * 64])
    assert err.http_status == 409 and err.missing == ["sha256:" + "a" * 64]
    assert isinstance(err, e.RegistryError)
