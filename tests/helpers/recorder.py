"""A recording HTTP proxy in front of a real registry: what the dashboard asked and how much at once."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import urlsplit


def kind_of(path: str) -> str:
    path = urlsplit(path).path
    if path.startswith("/v2/_catalog"):
        return "catalog"
    for marker, name in (("/tags/list", "tags"), ("/manifests/", "manifest"), ("/blobs/", "blob")):
        if marker in path:
            return name
    return "other"


class Recorder:
    """A plain HTTP proxy to one registry: records every request it passes on (method, path),
    the most in flight at once, and answers `fail[path]` itself (a status) instead."""

    def __init__(self, upstream: str, delay: float = 0.0) -> None:
        self.upstream = urlsplit(upstream)
        self.delay = delay
        self.seen: list[tuple[str, str]] = []
        self.fail: dict[str, int] = {}
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()  # by kind of request, and "all"
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else a body written after its headers waits for a delayed ACK

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                recorder.forward(self)

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.peak.clear()

    def counts(self) -> Counter[tuple[str, str]]:
        with self.lock:
            return Counter((method, kind_of(path)) for method, path in self.seen)

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        kinds = ("all", kind_of(handler.path))
        with self.lock:
            self.seen.append((handler.command, handler.path))
            for kind in kinds:
                self.in_flight[kind] += 1
                self.peak[kind] = max(self.peak[kind], self.in_flight[kind])
        try:
            if self.delay:
                time.sleep(self.delay)
            status = self.fail.get(urlsplit(handler.path).path)
            if status is not None:
                body = b'{"errors":[{"code":"UNKNOWN","message":"injected by the test proxy"}]}'
                handler.send_response(status)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                if handler.command != "HEAD":
                    handler.wfile.write(body)
                return
            conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=10)
            try:
                headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(handler.command, handler.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                handler.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                        handler.send_header(k, v)
                if resp.getheader("Content-Length") is None:
                    handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                if handler.command != "HEAD":
                    handler.wfile.write(body)
            finally:
                conn.close()
        finally:
            with self.lock:
                self.in_flight.subtract(kinds)
