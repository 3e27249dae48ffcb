"""A hostile registry (a real local HTTP server) cannot make a page fail or run script.

The real registry validates names and manifests; a compromised or broken one need not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.core.cache import cache

from testbed.push import sha256_digest as _digest
from tests.helpers.servers import QuietHandler, serving

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

CONFIG = json.dumps({
    "created": "2025-01-02T03:04:05.123456789Z",
    "os": "linux", "architecture": "amd64",
    "config": {"Labels": {"evil": "<script>alert('label')</script>"}, "Env": ["X=<b>bold</b>"]},
    "history": [{"created_by": "<img src=x onerror=alert('history')>"}],
}).encode()
LAYER = b"layer-bytes"
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(CONFIG), "size": len(CONFIG)},
    "layers": [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(LAYER), "size": len(LAYER)},
        {"mediaType": "x", "digest": "../../../etc/passwd", "size": 1},
    ],
    "annotations": {"<svg onload=alert(1)>": "<script>alert('annotation')</script>"},
}).encode()
INDEX = json.dumps({
    "schemaVersion": 2, "mediaType": OCI_INDEX,
    "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": _digest(MANIFEST), "size": len(MANIFEST),
         "platform": {"os": "<script>alert('os')</script>", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": "sha256:../../x", "size": 5},
        "not a descriptor",
    ],
}).encode()
BLOBS = {_digest(CONFIG): CONFIG, _digest(LAYER): LAYER}
MANIFESTS = {_digest(MANIFEST): (MANIFEST, OCI_MANIFEST), _digest(INDEX): (INDEX, OCI_INDEX)}
TAGS = {"good": _digest(MANIFEST), "multi": _digest(INDEX)}
CATALOG = ["evil/repo", "<script>alert('name')</script>", "../../etc", "UPPER/case"]
TAG_LIST = ["good", "multi", "a/b", "<img src=x onerror=alert('tag')>", "sha256-" + "0" * 64 + ".sig"]


class Hostile(QuietHandler):
    def _send(self, status: int, body: bytes, ctype: str = "application/json", head: bool = False,
              digest: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/v2/":
            return self._send(200, b"{}", head=head)
        if path == "/v2/_catalog":
            return self._send(200, json.dumps({"repositories": CATALOG}).encode(), head=head)
        if path == "/v2/evil/repo/tags/list":
            return self._send(200, json.dumps({"name": "evil/repo", "tags": TAG_LIST}).encode(), head=head)
        prefix = "/v2/evil/repo/manifests/"
        if path.startswith(prefix):
            ref = path[len(prefix):]
            digest = TAGS.get(ref, ref)
            if digest in MANIFESTS:
                body, ctype = MANIFESTS[digest]
                return self._send(200, body, ctype, head=head, digest=digest)
        prefix = "/v2/evil/repo/blobs/"
        if path.startswith(prefix) and path[len(prefix):] in BLOBS:
            return self._send(200, BLOBS[path[len(prefix):]], "application/octet-stream", head=head)
        return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"<b>unknown</b>"}]}', head=head)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)


@pytest.fixture
def hostile(configure, db) -> Iterator[str]:
    with serving(Hostile) as url:
        configure(REGISTRY_URL=url, CATALOG_TTL=0, ANONYMOUS_READ=True)
        cache.clear()
        yield url
    cache.clear()


def _inert_page(client, url: str) -> str:
    """The page at `url`: answered (200) and inert."""
    response = client.get(url)
    body = response.content.decode()
    assert response.status_code == 200
    _assert_inert(body)
    return body


def _assert_inert(body: str) -> None:
    for raw in ("<script>alert", "<img src=x", "<svg onload", "<b>bold</b>"):
        assert raw not in body


def test_catalog__hostile_names_are_escaped_and_not_linked(client, hostile) -> None:
    body = client.get("/?counts=1").content.decode()
    _assert_inert(body)
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in body
    assert "not a valid repository name" in body
    assert 'href="/r/../' not in body and 'href="/r/UPPER' not in body
    assert 'href="/r/evil/repo/"' in body


def test_repository__hostile_tags_are_shown_escaped_and_never_requested(client, hostile) -> None:
    body = _inert_page(client, "/r/evil/repo/?details=1")
    assert "&lt;img src=x onerror=alert(&#x27;tag&#x27;)&gt;" in body
    assert body.count("not a valid tag name") == 2
    assert 'href="/r/evil/repo/-/manifests/good/"' in body


def test_manifest__invalid_digests_are_dropped_with_a_note_and_content_escaped(client, hostile) -> None:
    body = _inert_page(client, "/r/evil/repo/-/manifests/good/")
    assert "invalid digest" in body and "etc/passwd" in body
    assert 'href="/r/evil/repo/-/blobs/../' not in body
    assert "&lt;script&gt;alert(&#x27;label&#x27;)&lt;/script&gt;" in body


def test_index__invalid_children_are_skipped_and_platform_text_escaped(client, hostile) -> None:
    body = _inert_page(client, "/r/evil/repo/-/manifests/multi/")
    assert "manifests[1] has an invalid digest" in body
    assert "manifests[2] is not a descriptor" in body
    assert "&lt;script&gt;alert(&#x27;os&#x27;)&lt;/script&gt;/amd64" in body


def test_unknown_manifest__registry_message_is_escaped_on_the_404_page(client, hostile) -> None:
    response = client.get("/r/evil/repo/-/manifests/nope/")
    assert response.status_code == 404
    assert "<b>unknown</b>" not in response.content.decode()
