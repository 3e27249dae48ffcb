"""Run a real Distribution registry (the Debian ``docker-registry`` binary) as a subprocess.

Everything lives under ``data_dir``: the generated ``config.yml``, the blob storage and the
registry's log, so a failed test leaves the evidence in pytest's tmp dir.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import requests

__all__ = ["RegistryServer", "RegistryStartError", "registry_binary", "free_port"]

# Bounded wait for the registry to answer; 2.8.2 is usually up in ~50 ms.
START_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05
STOP_TIMEOUT_S = 5.0


class RegistryStartError(RuntimeError):
    pass


def registry_binary() -> str:
    """Path of the Distribution registry binary, or a RuntimeError that says how to install it."""
    for name in ("docker-registry", "registry"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(
        "The Distribution registry binary (`docker-registry` or `registry`) is not on PATH. "
        "Install it with `apt-get install docker-registry` (Debian/Ubuntu)."
    )


def free_port() -> int:
    # The kernel picks an unused port; there is a small window before the registry binds it,
    # which start() covers by retrying when the registry exits with "address already in use".
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config_yaml(storage_dir: Path, port: int, delete_enabled: bool, blob_cache: bool = True) -> str:
    # Mirrors the config shipped in the official registry:2 image (inmemory blob descriptor
    # cache included) so the dashboard is tested against what people actually deploy.
    # blob_cache=False drops the `storage.cache` section, as the shipped deploy/registry.yml
    # does: after garbage collection the inmemory cache still answers 200 for deleted blobs,
    # so a re-push skips their upload and leaves an image whose blobs 404 (tests/test_gc.py).
    # Upload purging is off because it starts a background goroutine that we don't want
    # touching a test's storage; the storagedriver health check is off because it only adds
    # periodic stat calls.
    cache = "  cache:\n    blobdescriptor: inmemory\n" if blob_cache else ""
    return f"""\
version: 0.1
log:
  level: warn
  formatter: text
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {storage_dir}
  delete:
    enabled: {"true" if delete_enabled else "false"}
{cache}\
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: registryui-testbed-not-a-secret
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
"""


class RegistryServer:
    """A throwaway registry on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self, data_dir: Path, *, port: int | None = None, delete_enabled: bool = True,
                 blob_cache: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.requested_port = port
        self.delete_enabled = delete_enabled
        self.blob_cache = blob_cache
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path = self.data_dir / "config.yml"
        self.storage_dir = self.data_dir / "storage"
        self.log_path = self.data_dir / "registry.log"
        self._log_offset = 0

    @property
    def host(self) -> str:
        if self.port is None:
            raise RuntimeError("RegistryServer is not started")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> RegistryServer:
        if self.process is not None:
            raise RuntimeError("RegistryServer already started")
        binary = registry_binary()
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        # A fixed port can't be retried; an auto port may lose the bind race, so try a few.
        attempts = 1 if self.requested_port else 3
        for attempt in range(attempts):
            self.port = self.requested_port or free_port()
            self.config_path.write_text(_config_yaml(self.storage_dir, self.port, self.delete_enabled,
                                                        self.blob_cache))
            try:
                self._spawn_and_wait(binary)
                return self
            except RegistryStartError:
                lost_race = "address already in use" in self._log_since(self._log_offset)
                self.stop()
                if not lost_race or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _spawn_and_wait(self, binary: str) -> None:
        log = self.log_path.open("ab")
        self._log_offset = log.tell()
        try:
            self.process = subprocess.Popen(
                [binary, "serve", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
            )
        finally:
            log.close()  # the child has its own copy of the fd
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RegistryStartError(
                    f"registry exited with code {self.process.returncode} during start-up; "
                    f"log tail ({self.log_path}):\n{self.log_tail()}"
                )
            try:
                # Short read timeout: whatever else holds the port may accept and never answer.
                r = requests.get(f"{self.url}/v2/", timeout=(0.5, 0.5))
                if r.status_code == 200:
                    return
                last_error = f"GET /v2/ answered {r.status_code}"
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(POLL_INTERVAL_S)
        raise RegistryStartError(
            f"registry at {self.url} did not answer GET /v2/ with 200 within {START_TIMEOUT_S:.0f}s "
            f"({last_error}); log tail ({self.log_path}):\n{self.log_tail()}"
        )

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.process is not None else "stopped"
        return f"<RegistryServer {self.url if self.port else '-'} {state} data_dir={self.data_dir}>"
