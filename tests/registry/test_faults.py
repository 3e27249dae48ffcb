"""Faults a real registry won't produce, served by a real local HTTP server started per test.

Nothing is patched: the client talks TCP to ``FakeRegistry`` (a ThreadingHTTPServer on
127.0.0.1, port 0) whose routes write exactly the bytes a broken, hostile or misconfigured
registry would. No sleeps: servers that hang wait on an Event the fixture sets on teardown.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import pytest

from dashboard.registry import RegistryClient, attachment_target
from dashboard.registry import errors as e
from dashboard.registry import models as m
from dashboard.registry.client import MAX_MANIFEST_BYTES
from dashboard.registry.models import RegistryConfig
from dashboard.registry.parse import parse_config, parse_manifest, parse_time
from testbed.push import sha256_digest as sha
from tests.helpers.pages import closed_port
from tests.helpers.servers import QuietHandler, serving

HANG_LIMIT_S = 10.0  # upper bound for any handler that waits for the test to finish
WAIT_S = 5.0  # upper bound for bounded polls


def jbytes(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


Route = Callable[[BaseHTTPRequestHandler], None]


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"

    def _dispatch(self) -> None:
        fake: FakeRegistry = self.server.fake  # type: ignore[attr-defined]
        fake.seen.append(Seen(self.command, self.path, dict(self.headers)))
        route = fake.routes.get((self.command, urlsplit(self.path).path))
        if route is None:
            send(self, 404, jbytes({"errors": [{"code": "NOT_FOUND_IN_FAKE", "message": self.path}]}))
        else:
            route(self)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _dispatch


@dataclass
class FakeRegistry:
    """A programmable HTTP server: ``routes[(method, path)]`` writes the answer itself."""

    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.stack = ExitStack()
        self.url = self.stack.enter_context(serving(_Handler, fake=self))
        self.port = urlsplit(self.url).port

    def client(self, **config: object) -> RegistryClient:
        kwargs: dict[str, object] = {"url": self.url, "connect_timeout": 2.0, "read_timeout": 5.0}
        kwargs.update(config)
        return RegistryClient(RegistryConfig(**kwargs))  # type: ignore[arg-type]

    def on(self, path: str, route: Route, *, methods: tuple[str, ...] = ("GET", "HEAD")) -> None:
        for method in methods:
            self.routes[(method, path)] = route

    def answer(self, path: str, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None,
               *, methods: tuple[str, ...] = ("GET", "HEAD")) -> None:
        self.on(path, lambda h: send(h, status, body, headers), methods=methods)

    def truncate(self, path: str, body: bytes, length: int, headers: dict[str, str] | None = None) -> None:
        """Answer `path` with `body`, the start of `length` bytes promised, then hang up."""

        def route(h: BaseHTTPRequestHandler) -> None:
            send(h, 200, body, headers, length=length)
            h.close_connection = True

        self.on(path, route)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def close(self) -> None:
        self.release.set()
        self.stack.close()


def send(h: BaseHTTPRequestHandler, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None,
         *, length: int | None = None) -> None:
    h.send_response(status)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    for name, value in all_headers.items():
        h.send_header(name, value)
    h.send_header("Content-Length", str(len(body) if length is None else length))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)
    h.wfile.flush()


def errors_body(code: str, message: str, detail: object = None) -> bytes:
    return jbytes({"errors": [{"code": code, "message": message, "detail": detail}]})


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    try:
        yield server
    finally:
        server.close()


def manifest_doc(config: bytes = b"{}", layers: tuple[bytes, ...] = (b"layer",)) -> bytes:
    return jbytes({
        "schemaVersion": 2, "mediaType": m.OCI_MANIFEST,
        "config": {"mediaType": m.OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(x), "size": len(x)}
                   for x in layers],
    })


# -- transport -------------------------------------------------------------------------------


def test_ping__closed_port__unreachable_says_connection_refused_and_asks_if_running() -> None:
    port = closed_port()
    c = RegistryClient(RegistryConfig(url=f"http://127.0.0.1:{port}", connect_timeout=2, read_timeout=2))
    with pytest.raises(e.RegistryUnreachable) as info:
        c.ping()
    text = str(info.value)
    assert f"connection refused at http://127.0.0.1:{port}" in text
    assert "is the registry running" in text
    assert "urllib3" not in text and "HTTPConnectionPool" not in text
    assert info.value.url == f"http://127.0.0.1:{port}/v2/"


def test_catalog__closed_port__unreachable_not_a_raw_requests_error() -> None:
    c = RegistryClient(RegistryConfig(url=f"http://127.0.0.1:{closed_port()}/", connect_timeout=2))
    with pytest.raises(e.RegistryUnreachable, match="connection refused"):
        c.catalog()


def test_ping__server_accepts_and_never_answers__timeout_within_read_timeout(fake: FakeRegistry) -> None:
    fake.on("/v2/", lambda h: fake.release.wait(HANG_LIMIT_S))
    c = fake.client(read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(e.RegistryTimeout) as info:
        c.ping()
    elapsed = time.monotonic() - started
    assert elapsed < 3.0
    assert "sent no answer within 0.3 s" in str(info.value)
    assert fake.url in str(info.value)
    assert info.value.http_status == 504


def test_manifest__raw_socket_accepts_never_reads__timeout() -> None:
    # A listening socket that nobody serves: the kernel completes the handshake, then silence.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        c = RegistryClient(RegistryConfig(url=f"http://127.0.0.1:{port}", read_timeout=0.3))
        with pytest.raises(e.RegistryTimeout):
            c.manifest("acme/web", "latest")


def test_tags__body_stalls_after_headers__timeout_not_unreachable(fake: FakeRegistry) -> None:
    def stall(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b'{"name":"a","tags":["x"', length=200)
        fake.release.wait(HANG_LIMIT_S)

    fake.on("/v2/a/tags/list", stall)
    with pytest.raises(e.RegistryTimeout) as info:
        fake.client(read_timeout=0.3).tags("a")
    assert "is it running" not in str(info.value)


def test_catalog__truncated_body__unreachable_mentions_broken_connection(fake: FakeRegistry) -> None:
    fake.truncate("/v2/_catalog", b'{"repositories":["a","b"', 4096)
    with pytest.raises(e.RegistryUnreachable) as info:
        fake.client().catalog()
    assert "broke" in str(info.value)
    assert fake.url in str(info.value)


def test_manifest__truncated_body__unreachable_not_integrity_error(fake: FakeRegistry) -> None:
    body = manifest_doc()
    fake.truncate(f"/v2/a/manifests/{sha(body)}", body[:20], len(body), {"Content-Type": m.OCI_MANIFEST})
    with pytest.raises(e.RegistryUnreachable, match="broke"):
        fake.client().manifest("a", sha(body))


def test_ping__truncated_body_without_streaming__unreachable(fake: FakeRegistry) -> None:
    fake.truncate("/v2/", b"{", 100, {"Docker-Distribution-Api-Version": "registry/2.0"})
    with pytest.raises(e.RegistryUnreachable, match="broke"):
        fake.client().ping()


def test_ping__server_closes_without_answer__unreachable_asks_if_it_speaks_http(fake: FakeRegistry) -> None:
    def hang_up(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True

    fake.on("/v2/", hang_up)
    with pytest.raises(e.RegistryUnreachable) as info:
        fake.client().ping()
    assert "closed the connection without an answer" in str(info.value)


def test_ping__https_url_to_plain_http_server__tls_error_suggests_http(fake: FakeRegistry) -> None:
    c = RegistryClient(RegistryConfig(url=f"https://127.0.0.1:{fake.port}", connect_timeout=2, read_timeout=2))
    with pytest.raises(e.RegistryTLSError) as info:
        c.ping()
    text = str(info.value)
    assert "speaks plain HTTP" in text
    assert f"use http://127.0.0.1:{fake.port}" in text


def test_ping__http_url_to_https_server__tls_error_suggests_https(fake: FakeRegistry) -> None:
    # What Go's TLS server (the registry with TLS) answers to a plain-HTTP request.
    fake.answer("/v2/", 400, b"Client sent an HTTP request to an HTTPS server.\n", {"Content-Type": "text/plain"})
    with pytest.raises(e.RegistryTLSError) as info:
        fake.client().ping()
    assert f"use https://127.0.0.1:{fake.port}" in str(info.value)


def test_ping__gzip_encoded_answer_with_content_length__decoded(fake: FakeRegistry) -> None:
    # A reverse proxy may compress; Content-Length then counts the compressed bytes.
    body = gzip.compress(jbytes({"repositories": ["a/b", "c"]}))
    fake.answer("/v2/_catalog", 200, body, {"Content-Encoding": "gzip"})
    assert fake.client().catalog() == ["a/b", "c"]


# -- content that is not what it claims ------------------------------------------------------


def test_catalog__invalid_json__malformed_content(fake: FakeRegistry) -> None:
    fake.answer("/v2/_catalog", 200, b'{"repositories": [')
    with pytest.raises(e.MalformedContent) as info:
        fake.client().catalog()
    assert "not valid JSON" in str(info.value)


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"null", b'{"repositories": "a,b"}', b"<html>nginx</html>"])
def test_catalog__wrong_shape__malformed_content(fake: FakeRegistry, body: bytes) -> None:
    fake.answer("/v2/_catalog", 200, body)
    with pytest.raises(e.MalformedContent):
        fake.client().catalog()


def test_catalog__non_string_entries__skipped(fake: FakeRegistry) -> None:
    fake.answer("/v2/_catalog", 200, jbytes({"repositories": ["a", 1, None, {"x": 1}, "b"]}))
    assert fake.client().catalog() == ["a", "b"]


def test_tags__null_tags__empty_list(fake: FakeRegistry) -> None:
    # What 2.8.2 answers for a repository whose last tag was deleted.
    fake.answer("/v2/a/tags/list", 200, jbytes({"name": "a", "tags": None}))
    assert fake.client().tags("a") == []


def test_manifest__by_digest_bytes_do_not_hash_to_it__integrity_error(fake: FakeRegistry) -> None:
    good, evil = manifest_doc(layers=(b"good",)), manifest_doc(layers=(b"evil",))
    fake.answer(f"/v2/a/manifests/{sha(good)}", 200, evil, {"Content-Type": m.OCI_MANIFEST,
                                                            "Docker-Content-Digest": sha(good)})
    with pytest.raises(e.IntegrityError) as info:
        fake.client().manifest("a", sha(good))
    assert (info.value.expected, info.value.actual) == (sha(good), sha(evil))
    assert "does not match its digest" in str(info.value)


def test_manifest__digest_header_lies__integrity_error(fake: FakeRegistry) -> None:
    body, other = manifest_doc(layers=(b"real",)), manifest_doc(layers=(b"claimed",))
    fake.answer("/v2/a/manifests/latest", 200, body, {"Content-Type": m.OCI_MANIFEST,
                                                      "Docker-Content-Digest": sha(other)})
    with pytest.raises(e.IntegrityError) as info:
        fake.client().manifest("a", "latest")
    assert (info.value.expected, info.value.actual) == (sha(other), sha(body))


def test_manifest__by_tag_without_digest_header__digest_computed_from_bytes(fake: FakeRegistry) -> None:
    body = manifest_doc()
    fake.answer("/v2/a/manifests/latest", 200, body, {"Content-Type": m.OCI_MANIFEST})
    c = fake.client()
    assert c.manifest("a", "latest").digest == sha(body)
    # A HEAD without the header falls back to reading the bytes.
    ref = c.head_manifest("a", "latest")
    assert (ref.digest, ref.media_type, ref.size) == (sha(body), m.OCI_MANIFEST, len(body))


def test_manifest__unverifiable_digest_header__ignored_and_bytes_hashed(fake: FakeRegistry) -> None:
    body = manifest_doc()
    fake.answer("/v2/a/manifests/latest", 200, body, {"Content-Type": m.OCI_MANIFEST,
                                                      "Docker-Content-Digest": "md5:abc"})
    assert fake.client().manifest("a", "latest").digest == sha(body)


def test_config__blob_does_not_match_its_digest__integrity_error(fake: FakeRegistry) -> None:
    good, evil = jbytes({"os": "linux"}), jbytes({"os": "evil"})
    fake.answer(f"/v2/a/blobs/{sha(good)}", 200, evil)
    with pytest.raises(e.IntegrityError) as info:
        fake.client().config("a", sha(good))
    assert (info.value.expected, info.value.actual) == (sha(good), sha(evil))


def test_open_blob__bytes_do_not_match_digest__integrity_error_at_the_end(fake: FakeRegistry) -> None:
    good, evil = b"g" * 1000, b"e" * 1000
    fake.answer(f"/v2/a/blobs/{sha(good)}", 200, evil, {"Content-Type": "application/octet-stream"})
    received = b""
    with pytest.raises(e.IntegrityError), fake.client().open_blob("a", sha(good)) as stream:
        for chunk in stream:
            received += chunk
    assert received == evil  # streamed, then refused once the hash was known


def test_open_blob__truncated__unreachable(fake: FakeRegistry) -> None:
    data = b"z" * 5000
    fake.truncate(f"/v2/a/blobs/{sha(data)}", data[:100], len(data), {"Content-Type": "application/octet-stream"})
    with pytest.raises(e.RegistryUnreachable, match="broke off"), fake.client().open_blob("a", sha(data)) as s:
        for _ in s:
            pass


def test_manifest__declared_over_4_mib__refused_without_reading(fake: FakeRegistry) -> None:
    digest = "sha256:" + "1" * 64

    def huge(h: BaseHTTPRequestHandler) -> None:
        # Declares more than the limit, sends a little, then waits: reading it whole would time out.
        send(h, 200, b"{" + b" " * 1000, {"Content-Type": m.OCI_MANIFEST}, length=MAX_MANIFEST_BYTES + 1)
        fake.release.wait(HANG_LIMIT_S)

    fake.on(f"/v2/a/manifests/{digest}", huge)
    with pytest.raises(e.MalformedContent) as info:
        fake.client(read_timeout=3).manifest("a", digest)
    assert "limit" in str(info.value)


def test_manifest__chunked_endless_body__refused_after_4_mib_not_read_whole(fake: FakeRegistry) -> None:
    done = threading.Event()
    sent = [0]
    cap = 64 * 1024 * 1024

    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", m.OCI_MANIFEST)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b" " * 65536
        try:
            while sent[0] < cap and not fake.release.is_set():
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent[0] += len(chunk)
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client hung up, as it should
        finally:
            h.close_connection = True
            done.set()

    fake.on("/v2/a/manifests/latest", endless)
    with pytest.raises(e.MalformedContent, match="over the 4194304-byte limit"):
        fake.client().manifest("a", "latest")
    assert done.wait(WAIT_S), "the server kept writing: the client did not hang up"
    assert MAX_MANIFEST_BYTES < sent[0] < cap


# -- pagination ------------------------------------------------------------------------------


def test_catalog__link_pages__followed_in_order(fake: FakeRegistry) -> None:
    def page(h: BaseHTTPRequestHandler) -> None:
        query = urlsplit(h.path).query
        if "last=b" in query:
            send(h, 200, jbytes({"repositories": ["c"]}))
        else:
            send(h, 200, jbytes({"repositories": ["a", "b"]}), {"Link": '</v2/_catalog?last=b&n=2>; rel="next"'})

    fake.on("/v2/_catalog", page)
    assert fake.client().catalog(page_size=2) == ["a", "b", "c"]
    assert fake.paths() == ["/v2/_catalog?n=2", "/v2/_catalog?last=b&n=2"]


def test_catalog__link_loops_back__malformed_content_not_endless(fake: FakeRegistry) -> None:
    def page(h: BaseHTTPRequestHandler) -> None:
        nxt = "/v2/_catalog?n=100" if "last=" in h.path else "/v2/_catalog?last=a&n=100"
        send(h, 200, jbytes({"repositories": ["a"]}), {"Link": f'<{nxt}>; rel="next"'})

    fake.on("/v2/_catalog", page)
    with pytest.raises(e.MalformedContent, match="loop back"):
        fake.client().catalog(page_size=100)
    assert len(fake.seen) == 2


def test_catalog__page_size_refused__falls_back_to_the_registry_default(fake: FakeRegistry) -> None:
    # A registry with catalog.maxentries below 1000 refuses n=1000 (distribution answers 400).
    def page(h: BaseHTTPRequestHandler) -> None:
        if "n=1000" in h.path:
            body = {"errors": [{"code": "PAGINATION_NUMBER_INVALID", "message": "invalid number of results requested"}]}
            send(h, 400, jbytes(body))
        else:
            send(h, 200, jbytes({"repositories": ["a", "b"]}))

    fake.on("/v2/_catalog", page)
    assert fake.client().catalog() == ["a", "b"]
    assert fake.paths() == ["/v2/_catalog?n=1000", "/v2/_catalog?n=100"]


def test_tags__link_points_to_itself__malformed_content(fake: FakeRegistry) -> None:
    fake.answer("/v2/a/tags/list", 200, jbytes({"name": "a", "tags": ["x"]}),
                {"Link": '</v2/a/tags/list>; rel="next"'})
    with pytest.raises(e.MalformedContent, match="loop back"):
        fake.client().tags("a")
    assert len(fake.seen) == 1


def test_catalog__link_to_another_host__not_followed(fake: FakeRegistry) -> None:
    other = FakeRegistry()
    try:
        other.answer("/v2/_catalog", 200, jbytes({"repositories": ["stolen"]}))
        fake.answer("/v2/_catalog", 200, jbytes({"repositories": ["a"]}),
                    {"Link": f'<{other.url}/v2/_catalog?last=a&n=100>; rel="next"'})
        assert fake.client().catalog() == ["a"]
        assert other.seen == []
    finally:
        other.close()


def test_catalog__link_to_same_port_by_other_host_name__not_followed(fake: FakeRegistry) -> None:
    fake.answer("/v2/_catalog", 200, jbytes({"repositories": ["a"]}),
                {"Link": f'<http://localhost:{fake.port}/v2/_catalog?last=a>; rel="next"'})
    assert fake.client().catalog() == ["a"]
    assert len(fake.seen) == 1


# -- error answers ---------------------------------------------------------------------------


def test_ping__401_without_credentials__unauthorized_names_the_settings(fake: FakeRegistry) -> None:
    fake.answer("/v2/", 401, errors_body("UNAUTHORIZED", "authentication required"),
                {"WWW-Authenticate": 'Basic realm="registry"'})
    with pytest.raises(e.Unauthorized) as info:
        fake.client().ping()
    assert "REGISTRYUI_REGISTRY_USERNAME" in str(info.value)
    assert "Authorization" not in fake.seen[0].headers


def test_ping__401_with_credentials__unauthorized_names_the_user(fake: FakeRegistry) -> None:
    fake.answer("/v2/", 401, errors_body("UNAUTHORIZED", "authentication required"))
    with pytest.raises(e.Unauthorized) as info:
        fake.client(username="alice", password="s3cret").ping()
    text = str(info.value)
    assert "alice" in text and "rejected" in text
    assert "s3cret" not in text
    assert fake.seen[0].headers["Authorization"].startswith("Basic ")


def test_ping__403__unauthorized_with_the_registrys_message(fake: FakeRegistry) -> None:
    fake.answer("/v2/", 403, errors_body("DENIED", "requested access to the resource is denied"))
    with pytest.raises(e.Unauthorized, match="denied access: requested access to the resource is denied"):
        fake.client().ping()


def test_manifest__404_manifest_unknown_body__manifest_unknown(fake: FakeRegistry) -> None:
    fake.answer("/v2/a/manifests/v1", 404, errors_body("MANIFEST_UNKNOWN", "manifest unknown", {"Tag": "v1"}))
    with pytest.raises(e.ManifestUnknown, match="manifest unknown") as info:
        fake.client().manifest("a", "v1")
    assert info.value.http_status == 404


def test_tags__404_manifest_unknown_body__the_code_wins(fake: FakeRegistry) -> None:
    fake.answer("/v2/a/tags/list", 404, errors_body("MANIFEST_UNKNOWN", "manifest unknown"))
    with pytest.raises(e.ManifestUnknown):
        fake.client().tags("a")


def test_tags__404_without_body__name_unknown(fake: FakeRegistry) -> None:
    fake.answer("/v2/a/tags/list", 404, b"404 page not found\n", {"Content-Type": "text/plain"})
    with pytest.raises(e.NameUnknown, match="there is no repository “a” in the registry"):
        fake.client().tags("a")


def test_blob__404_blob_unknown_body__blob_unknown(fake: FakeRegistry) -> None:
    digest = "sha256:" + "2" * 64
    fake.answer(f"/v2/a/blobs/{digest}", 404, errors_body("BLOB_UNKNOWN", "blob unknown to registry"))
    with pytest.raises(e.BlobUnknown, match="blob unknown to registry"):
        fake.client().blob_bytes("a", digest)
    with pytest.raises(e.BlobUnknown):
        fake.client().head_blob("a", digest)


def test_ping__404_on_v2__not_a_registry_api(fake: FakeRegistry) -> None:
    fake.answer("/v2/", 404, b"<html>not here</html>", {"Content-Type": "text/html"})
    with pytest.raises(e.NotFound, match="not a registry API"):
        fake.client().ping()


def test_manifest__405__unsupported_operation(fake: FakeRegistry) -> None:
    fake.answer("/v2/a/manifests/v1", 405, errors_body("UNSUPPORTED", "The operation is unsupported."))
    with pytest.raises(e.UnsupportedOperation) as info:
        fake.client().manifest("a", "v1")
    assert "does not support this operation" in str(info.value)
    assert info.value.http_status == 405


def test_manifest__405_without_body__unsupported_operation(fake: FakeRegistry) -> None:
    fake.answer("/v2/a/manifests/v1", 405, b"")
    with pytest.raises(e.UnsupportedOperation):
        fake.client().head_manifest("a", "v1")


def test_catalog__500_with_errors_body__api_error_with_code_message_detail(fake: FakeRegistry) -> None:
    fake.answer("/v2/_catalog", 500, errors_body("UNKNOWN", "unknown error", {"driver": "s3aws"}))
    with pytest.raises(e.RegistryAPIError) as info:
        fake.client().catalog()
    err = info.value
    assert (err.status, err.code) == (500, "UNKNOWN")
    assert "unknown error" in err.message and fake.url in err.message
    assert "s3aws" in err.detail
    assert err.url.startswith(f"{fake.url}/v2/_catalog")


def test_catalog__500_html_body__api_error_with_status_only(fake: FakeRegistry) -> None:
    fake.answer("/v2/_catalog", 500, b"<html><body>Internal Server Error</body></html>",
                {"Content-Type": "text/html"})
    with pytest.raises(e.RegistryAPIError, match="answered HTTP 500") as info:
        fake.client().catalog()
    assert info.value.code == ""
    assert "<html>" not in str(info.value)


def test_ping__503__message_mentions_its_health_check(fake: FakeRegistry) -> None:
    fake.answer("/v2/", 503, errors_body("UNAVAILABLE", "service unavailable", "storage: s3 unreachable"))
    with pytest.raises(e.RegistryAPIError) as info:
        fake.client().ping()
    assert info.value.status == 503
    assert "health check" in str(info.value)
    assert info.value.detail == "storage: s3 unreachable"


def test_manifest__error_body_huge_and_hostile__bounded_message(fake: FakeRegistry) -> None:
    body = jbytes({"errors": [{"code": "X" * 10_000, "message": "<script>" + "m" * 100_000}]})
    fake.answer("/v2/a/manifests/v1", 500, body)
    with pytest.raises(e.RegistryAPIError) as info:
        fake.client().manifest("a", "v1")
    # The body is read only up to 64 KiB, so it is not JSON any more: status only.
    assert len(str(info.value)) < 1000


def test_manifest__redirect_to_storage__followed(fake: FakeRegistry) -> None:
    body = manifest_doc()
    fake.answer(f"/v2/a/manifests/{sha(body)}", 307, b"", {"Location": "/storage/object"})
    fake.answer("/storage/object", 200, body, {"Content-Type": m.OCI_MANIFEST})
    assert fake.client().manifest("a", sha(body)).digest == sha(body)


# -- hostile manifest and config JSON --------------------------------------------------------


def serve_manifest(fake: FakeRegistry, doc: object, content_type: str = m.OCI_MANIFEST) -> m.Manifest:
    body = doc if isinstance(doc, bytes) else jbytes(doc)
    headers = {"Content-Type": content_type} if content_type else {}
    fake.answer(f"/v2/a/manifests/{sha(body)}", 200, body, headers)
    return fake.client().manifest("a", sha(body))


def test_manifest__manifests_not_a_list__index_with_no_children(fake: FakeRegistry) -> None:
    man = serve_manifest(fake, {"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": {"a": 1}}, m.OCI_INDEX)
    assert man.is_index and man.manifests == ()
    assert man.kind == "index"


def test_manifest__sizes_negative_or_strings__zero(fake: FakeRegistry) -> None:
    doc = {"schemaVersion": 2, "mediaType": m.OCI_MANIFEST,
           "config": {"mediaType": m.OCI_CONFIG, "digest": sha(b"c"), "size": "12"},
           "layers": [{"mediaType": "x", "digest": sha(b"1"), "size": -5},
                      {"mediaType": "x", "digest": sha(b"2"), "size": True},
                      {"mediaType": "x", "digest": sha(b"3"), "size": 1.5},
                      {"mediaType": "x", "digest": sha(b"4"), "size": 7}]}
    man = serve_manifest(fake, doc)
    assert man.config is not None and man.config.size == 0
    assert [d.size for d in man.layers] == [0, 0, 0, 7]
    assert man.layers_size == 7


def test_manifest__annotations_with_non_string_values__stringified(fake: FakeRegistry) -> None:
    doc = {"schemaVersion": 2, "mediaType": m.OCI_MANIFEST,
           "config": {"mediaType": m.OCI_CONFIG, "digest": sha(b"c"), "size": 1},
           "layers": [{"mediaType": "x", "digest": sha(b"1"), "size": 1, "annotations": ["not", "a", "dict"]}],
           "annotations": {"n": 1, "obj": {"k": [1]}, "none": None, "ok": "<b>x</b>", "t": True}}
    man = serve_manifest(fake, doc)
    assert all(isinstance(v, str) for v in man.annotations.values())
    assert man.annotations["ok"] == "<b>x</b>"
    assert man.annotations["n"] == "1"
    assert json.loads(man.annotations["obj"]) == {"k": [1]}
    assert man.layers[0].annotations == {}


def test_manifest__media_type_missing_in_body_and_header__inferred_from_shape(fake: FakeRegistry) -> None:
    doc = {"schemaVersion": 2,
           "config": {"mediaType": m.OCI_CONFIG, "digest": sha(b"c"), "size": 1}, "layers": []}
    man = serve_manifest(fake, doc, content_type="")
    assert man.media_type == m.OCI_MANIFEST and man.problem == ""
    index = serve_manifest(fake, {"schemaVersion": 2, "manifests": []}, content_type="application/json")
    assert index.media_type == m.OCI_INDEX


def test_manifest__media_type_missing_in_body__header_is_used(fake: FakeRegistry) -> None:
    doc = {"schemaVersion": 2, "manifests": [{"mediaType": m.OCI_MANIFEST, "digest": sha(b"x"), "size": 3,
                                             "platform": {"os": "linux", "architecture": "arm64",
                                                          "variant": 8}}]}
    man = serve_manifest(fake, doc, content_type=m.DOCKER_MANIFEST_LIST)
    assert man.media_type == m.DOCKER_MANIFEST_LIST
    assert str(man.manifests[0].platform) == "linux/arm64"


def test_manifest__media_type_missing_and_shape_unknown__problem_and_kind_unknown(fake: FakeRegistry) -> None:
    man = serve_manifest(fake, {"schemaVersion": 2, "something": "else"}, content_type="")
    assert "unsupported manifest media type" in man.problem
    assert man.kind == "unknown"


def test_manifest__schema1__problem_not_exception(fake: FakeRegistry) -> None:
    schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    man = serve_manifest(fake, {"schemaVersion": 1, "name": "a", "tag": "v1", "fsLayers": []}, schema1)
    assert schema1 in man.problem and man.kind == "unknown"


@pytest.mark.parametrize(("body", "problem"), [
    (b"not json at all", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b"null", "not a JSON object"),
])
def test_manifest__not_a_json_object__problem_and_raw_kept(fake: FakeRegistry, body: bytes, problem: str) -> None:
    man = serve_manifest(fake, body)
    assert problem in man.problem
    assert man.raw == body and man.digest == sha(body)
    assert man.config is None and man.layers == () and man.manifests == ()
    # Served as an OCI manifest, so the classifier may only call it unknown or a generic artifact.
    assert man.kind in ("unknown", "artifact")
    unlabelled = serve_manifest(fake, body, content_type="")
    assert problem in unlabelled.problem and unlabelled.kind == "unknown"


def test_manifest__config_descriptor_invalid__problem_on_image_manifest(fake: FakeRegistry) -> None:
    man = serve_manifest(fake, {"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "config": "sha256:abc",
                                "layers": "nope"})
    assert man.config is None and man.layers == ()
    assert "config" in man.problem and "layers" in man.problem


def test_manifest__descriptors_with_bad_fields__dropped_or_defaulted(fake: FakeRegistry) -> None:
    doc = {"schemaVersion": "2", "mediaType": m.OCI_INDEX, "artifactType": 5,
           "subject": {"digest": 7}, "annotations": "nope",
           "manifests": [None, 1, "s", {"size": 3}, {"digest": 9}, {"digest": sha(b"ok"), "mediaType": ["x"],
                                                                     "platform": "linux/amd64"}]}
    man = serve_manifest(fake, doc, m.OCI_INDEX)
    assert man.schema_version == 0 and man.artifact_type == "" and man.subject is None
    assert man.annotations == {}
    assert [(d.digest, d.media_type, d.platform) for d in man.manifests] == [(sha(b"ok"), "", None)]


DEEP = b"[" * 100_000 + b"]" * 100_000  # json.loads raises RecursionError, not ValueError


def test_manifest__deeply_nested_json__problem_not_recursion_error(fake: FakeRegistry) -> None:
    man = serve_manifest(fake, DEEP, content_type="")
    assert "not valid JSON" in man.problem
    assert man.kind == "unknown"


def test_config__deeply_nested_json__problem_not_recursion_error(fake: FakeRegistry) -> None:
    fake.answer(f"/v2/a/blobs/{sha(DEEP)}", 200, DEEP)
    assert "not valid JSON" in fake.client().config("a", sha(DEEP)).problem


def test_catalog__deeply_nested_json__malformed_content_not_recursion_error(fake: FakeRegistry) -> None:
    fake.answer("/v2/_catalog", 200, b'{"repositories":' + DEEP + b"}")
    with pytest.raises(e.MalformedContent, match="not valid JSON"):
        fake.client().catalog()


def test_config__hostile_fields__parsed_with_sane_defaults(fake: FakeRegistry) -> None:
    doc = {"created": 12345, "author": ["x"], "os": None,
           "config": {"Env": "A=1", "Entrypoint": [1, "/x"], "Cmd": None, "ExposedPorts": ["80/tcp"],
                      "Volumes": {"/data": {}}, "Labels": {"n": 1, "s": "<i>x</i>"}, "User": 0},
           "history": {"not": "a list"}, "rootfs": "nope"}
    raw = jbytes(doc)
    fake.answer(f"/v2/a/blobs/{sha(raw)}", 200, raw)
    cfg = fake.client().config("a", sha(raw))
    assert cfg.problem == ""
    assert cfg.created is None and cfg.author == "" and cfg.os == ""
    assert cfg.env == ("A=1",) and cfg.entrypoint == ("/x",) and cfg.cmd == ()
    assert cfg.exposed_ports == () and cfg.volumes == ("/data",)
    assert dict(cfg.labels) == {"n": "1", "s": "<i>x</i>"}
    assert cfg.user == "" and cfg.history == () and cfg.diff_ids == ()


def test_config__history_entries_of_wrong_types__skipped_or_defaulted() -> None:
    raw = jbytes({"history": [None, "x", {"created": "garbage", "created_by": 5, "empty_layer": "yes"},
                              {"created": "2024-01-02T03:04:05Z", "created_by": "ok", "empty_layer": True}]})
    cfg = parse_config(raw, digest=sha(raw))
    assert [(h.created, h.created_by, h.empty_layer) for h in cfg.history] == [
        (None, "", False), (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "ok", True)]


def test_config__not_an_object__problem() -> None:
    assert "not a JSON object" in parse_config(b"[]", digest=sha(b"[]")).problem


def test_parse_manifest__direct__never_raises_on_random_shapes() -> None:
    shapes: list[object] = [{}, {"manifests": None}, {"config": None, "layers": None},
                            {"mediaType": m.OCI_INDEX, "manifests": [[]]}, {"mediaType": 1},
                            {"mediaType": m.DOCKER_MANIFEST, "config": {"digest": ""}},
                            {"subject": [], "annotations": {"": ""}}, 1.5, "s", True]
    for shape in shapes:
        raw = jbytes(shape)
        man = parse_manifest(raw, media_type="", digest=sha(raw))
        assert isinstance(man.kind, str)


# -- parse_time and attachment_target --------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-15T12:30:00Z", datetime(2024, 5, 15, 12, 30, tzinfo=UTC)),
    # Go writes up to nanoseconds; they are cut to microseconds, not rounded into an error.
    ("2024-05-15T12:30:00.123456789Z", datetime(2024, 5, 15, 12, 30, 0, 123456, tzinfo=UTC)),
    ("2024-05-15T12:30:00.999999999Z", datetime(2024, 5, 15, 12, 30, 0, 999999, tzinfo=UTC)),
    ("2024-05-15T12:30:00.5Z", datetime(2024, 5, 15, 12, 30, 0, 500000, tzinfo=UTC)),
    ("2024-05-15T12:30:00.000000001+02:00",
     datetime(2024, 5, 15, 12, 30, tzinfo=timezone(timedelta(hours=2)))),
    ("2024-05-15T12:30:00.1234567-05:30",
     datetime(2024, 5, 15, 12, 30, 0, 123456, tzinfo=timezone(-timedelta(hours=5, minutes=30)))),
    ("  2024-05-15T12:30:00Z  ", datetime(2024, 5, 15, 12, 30, tzinfo=UTC)),
])
def test_parse_time__go_timestamps__parsed_to_aware_datetimes(text: str, expected: datetime) -> None:
    got = parse_time(text)
    assert got == expected
    assert got is not None and got.utcoffset() == expected.utcoffset()


def test_parse_time__no_zone__taken_as_utc_so_it_compares_with_zoned_times() -> None:
    naive, zoned = parse_time("2024-05-15T12:30:00.5"), parse_time("2024-05-15T12:00:00Z")
    assert naive == datetime(2024, 5, 15, 12, 30, 0, 500000, tzinfo=UTC)
    assert naive is not None and zoned is not None and max(naive, zoned) == naive


@pytest.mark.parametrize("value", [
    "0001-01-01T00:00:00Z",  # Go's zero time: reproducible builds
    "0001-01-01T00:00:00.000000000Z",
    "0001-01-01T00:00:00+00:00",
    "", None, 0, 1700000000, [], {}, "yesterday", "2024-13-01T00:00:00Z", "2024-05-15T25:00:00Z",
    "9" * 1000, "T12:30:00Z",
])
def test_parse_time__zero_time_or_garbage__none(value: object) -> None:
    assert parse_time(value) is None


HEX = "ab" * 32


@pytest.mark.parametrize(("tag", "expected"), [
    (f"sha256-{HEX}.sig", (f"sha256:{HEX}", "signature")),
    (f"sha256-{HEX}.att", (f"sha256:{HEX}", "attestation")),
    (f"sha256-{HEX}.sbom", (f"sha256:{HEX}", "sbom")),
    (f"sha256-{HEX}", (f"sha256:{HEX}", "referrers")),
])
def test_attachment_target__cosign_and_referrers_tags__digest_and_kind(tag: str, expected: tuple[str, str]) -> None:
    assert attachment_target(tag) == expected


@pytest.mark.parametrize("tag", [
    "latest", "v1.0", "", f"sha256-{HEX}.txt", f"sha256-{HEX}.sig.sig", f"sha256-{HEX[:-2]}.sig",
    f"sha256-{HEX}0.sig", f"sha256-{HEX.upper()}.sig", f"sha512-{HEX}{HEX}.sig", f"sha256:{HEX}",
    f"xsha256-{HEX}.sig", f"sha256-{HEX}.", f"sha256-{HEX}.SIG",
])
def test_attachment_target__other_tags__none(tag: str) -> None:
    assert attachment_target(tag) is None


def test_attachment_target__real_subject__round_trips_to_the_digest() -> None:
    digest = sha(b"subject manifest")
    tag = digest.replace(":", "-") + ".sig"
    assert attachment_target(tag) == (digest, "signature")
