"""Run a real Distribution registry (the Debian ``docker-registry`` binary) as a subprocess.

Everything lives under ``data_dir``: the generated ``config.yml``, the blob storage and the
registry's log, so a failed test leaves the evidence in pytest's tmp dir.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import requests

if TYPE_CHECKING:
    from .tokenserver import TokenServer

__all__ = ["HTPASSWD_REALM", "Notifications", "RegistryServer", "RegistryStartError", "free_port", "registry_binary"]

# Bounded wait for the registry to answer; 2.8.2 is usually up in ~50 ms.
START_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05
STOP_TIMEOUT_S = 5.0
# The storage driver health check's period (debug=True or broken_storage=True). 2.8.2 takes any
# positive Go duration; the first check runs one period after start, so with threshold 1 a broken
# storage turns the registry unhealthy (503) ~10 ms after start-up (1s: ~1 s). Shorter periods
# work too (1ms, even 1us) but only spin a stat(2) loop for nothing.
HEALTH_INTERVAL = "10ms"
HTPASSWD_REALM = "registryui-testbed"
# bcrypt's minimum cost: the registry runs bcrypt on every authenticated request.
BCRYPT_ROUNDS = 4


@dataclass(frozen=True)
class Notifications:
    """A `notifications:` endpoint: the registry POSTs its event envelopes to ``url``.

    The defaults suit tests: a short timeout, and after one failure a short pause before the
    registry tries again (it retries a failed envelope forever and holds the rest behind it).
    ``ignore_blobs`` drops layer and config events (``application/octet-stream``) at the source,
    as a production config would; False sends them too, to show the receiver ignores them.
    """

    url: str
    #: Sent as ``Authorization: Bearer <token>``; None sends no Authorization header.
    token: str | None = None
    name: str = "registryui"
    timeout: str = "2s"
    threshold: int = 1
    backoff: str = "100ms"
    ignore_blobs: bool = True

    def yaml(self) -> str:
        headers = (f"      headers:\n        Authorization: [{_q('Bearer ' + self.token)}]\n"
                   if self.token is not None else "")
        ignored = "      ignoredmediatypes:\n        - application/octet-stream\n" if self.ignore_blobs else ""
        return (f"notifications:\n  endpoints:\n    - name: {_q(self.name)}\n      url: {_q(self.url)}\n"
                f"{headers}      timeout: {self.timeout}\n      threshold: {self.threshold}\n"
                f"      backoff: {self.backoff}\n{ignored}")


@dataclass(frozen=True)
class _Extras:
    """The optional config sections; the defaults produce exactly the plain config."""

    tls_cert: Path | None = None
    tls_key: Path | None = None
    htpasswd_path: Path | None = None
    debug_port: int | None = None
    health_interval: str | None = None  # None: the storagedriver health check stays off
    # auth.token (a TokenServer): realm, service, issuer and the root certificate bundle.
    token_realm: str | None = None
    token_service: str = ""
    token_issuer: str = ""
    token_rootcertbundle: Path | None = None
    notifications: Notifications | None = None


def _q(value: object) -> str:
    # A JSON string is a valid YAML double-quoted scalar: safe for any path.
    return json.dumps(str(value))


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


def _other_free_port(taken: int) -> int:
    for _ in range(10):
        port = free_port()
        if port != taken:
            return port
    raise RegistryStartError("could not find a second free port for the debug server")


def _htpasswd_lines(users: dict[str, str]) -> str:
    """An htpasswd file; distribution's htpasswd auth accepts only bcrypt hashes."""
    import bcrypt  # the `dev` extra; only needed by registries with htpasswd=

    lines = []
    for user, password in users.items():
        if not user or ":" in user or "\n" in user:
            raise ValueError(f"not a valid htpasswd user name: {user!r}")
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()
        lines.append(f"{user}:{hashed}\n")
    return "".join(lines)


def _config_yaml(storage_dir: Path, port: int, delete_enabled: bool, blob_cache: bool = False,
                 extras: _Extras | None = None) -> str:
    # The GC-safe config the shipped deploy/registry.yml has: no `storage.cache` section. After
    # garbage collection registry:2's inmemory blob-descriptor cache still answers 200 for the
    # deleted blobs, so a re-push skips their upload and leaves an image whose blobs 404
    # (tests/gc/test_gc.py). blob_cache=True adds that cache back, as the config shipped in the
    # official registry:2 image has it: only for the tests of that trap and of its detection.
    # Upload purging is off because it starts a background goroutine that we don't want
    # touching a test's storage; the storagedriver health check is off because it only adds
    # periodic stat calls (``extras`` turns it on, with TLS, htpasswd auth and the debug server).
    x = extras or _Extras()
    cache = "  cache:\n    blobdescriptor: inmemory\n" if blob_cache else ""
    tls = (f"  tls:\n    certificate: {_q(x.tls_cert)}\n    key: {_q(x.tls_key)}\n"
           if x.tls_cert and x.tls_key else "")
    debug = (f"  debug:\n    addr: 127.0.0.1:{x.debug_port}\n"
             "    prometheus:\n      enabled: true\n      path: /metrics\n" if x.debug_port else "")
    auth = (f"auth:\n  htpasswd:\n    realm: {HTPASSWD_REALM}\n    path: {_q(x.htpasswd_path)}\n"
            if x.htpasswd_path else "")
    if x.token_realm:
        auth = (f"auth:\n  token:\n    realm: {_q(x.token_realm)}\n    service: {_q(x.token_service)}\n"
                f"    issuer: {_q(x.token_issuer)}\n    rootcertbundle: {_q(x.token_rootcertbundle)}\n")
    health = (f"    enabled: true\n    interval: {x.health_interval}\n    threshold: 1\n"
              if x.health_interval else "    enabled: false\n")
    notifications = x.notifications.yaml() if x.notifications else ""
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
{tls}{debug}{auth}\
health:
  storagedriver:
{health}{notifications}"""


class RegistryServer:
    """A throwaway registry on 127.0.0.1; use as a context manager or call start()/stop().

    Options (all off by default, which is the plain-HTTP, open, healthy registry):

    * ``tls``: serve HTTPS with a server certificate for 127.0.0.1/localhost signed by a
      throwaway CA (``testbed.certs``); ``url`` is https://…, ``ca_path`` the CA bundle to trust.
    * ``htpasswd``: ``{user: password}``; basic auth against an htpasswd file of bcrypt hashes
      (``htpasswd_path``). ``/v2/`` answers 401 without credentials, which counts as "up".
    * ``debug``: the debug server on another port (``debug_url``: /debug/health, /debug/vars,
      Prometheus /metrics) and the storage driver health check every ``HEALTH_INTERVAL``.
    * ``broken_storage``: the storage root lies below a regular file, so the health check's
      ``Stat("/")`` fails with ENOTDIR (not "path not found"): the registry turns unhealthy and
      answers every request 503 UNAVAILABLE. Turns the health check on (``debug`` adds the
      /debug/health endpoint that names the failing driver); ``start()`` returns once the
      registry says so.
    * ``token_auth``: a started ``testbed.tokenserver.TokenServer``; the registry takes bearer
      tokens (``auth.token``: its realm, service, issuer and certificate as ``rootcertbundle``)
      and answers 401 with a ``Bearer`` challenge without one (counts as "up"). The token
      server's address is read at every ``start()``, so restart it first if it moved.
    * ``notifications``: a ``Notifications`` endpoint the registry sends its push, pull and
      delete events to (with a bearer token, as the dashboard's /-/events/ expects).
    * ``blob_cache``: registry:2's ``storage.cache.blobdescriptor: inmemory``, which goes stale
      after garbage collection. Off (the GC-safe configuration of deploy/registry.yml) unless a
      test of that trap asks for it.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, delete_enabled: bool = True,
                 blob_cache: bool = False, tls: bool = False, htpasswd: dict[str, str] | None = None,
                 debug: bool = False, broken_storage: bool = False,
                 token_auth: TokenServer | None = None, notifications: Notifications | None = None) -> None:
        if htpasswd is not None and token_auth is not None:
            raise ValueError("a registry has one auth method: htpasswd= or token_auth=, not both")
        self.data_dir = Path(data_dir)
        self.requested_port = port
        self.delete_enabled = delete_enabled
        self.blob_cache = blob_cache
        self.tls = tls
        self.htpasswd = dict(htpasswd) if htpasswd is not None else None
        self.debug = debug
        self.broken_storage = broken_storage
        self.token_auth = token_auth
        self.notifications = notifications
        self.port: int | None = None
        self.debug_port: int | None = None
        self._kept_debug_port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path = self.data_dir / "config.yml"
        self.log_path = self.data_dir / "registry.log"
        # broken_storage: a regular file where the storage root's parent directory should be.
        self.not_a_directory = self.data_dir / "not-a-directory" if broken_storage else None
        self.storage_dir = (self.not_a_directory / "storage" if self.not_a_directory
                            else self.data_dir / "storage")
        certs_dir = self.data_dir / "certs"
        self.ca_path: Path | None = certs_dir / "ca.crt" if tls else None
        self.cert_path: Path | None = certs_dir / "server.crt" if tls else None
        self.key_path: Path | None = certs_dir / "server.key" if tls else None
        self.htpasswd_path: Path | None = self.data_dir / "htpasswd" if htpasswd is not None else None
        self._log_offset = 0

    @property
    def host(self) -> str:
        if self.port is None:
            raise RuntimeError("RegistryServer is not started")
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def debug_url(self) -> str:
        """The debug server (plain HTTP, even when the API speaks TLS), e.g. ``debug_url + "/debug/health"``."""
        if not self.debug:
            raise RuntimeError("RegistryServer was created without debug=True")
        if self.debug_port is None:
            raise RuntimeError("RegistryServer is not started")
        return f"http://127.0.0.1:{self.debug_port}"

    @property
    def verify(self) -> str | bool:
        """What ``requests`` needs as ``verify=`` to talk to this registry."""
        return str(self.ca_path) if self.ca_path else True

    @property
    def auth(self) -> tuple[str, str] | None:
        """The first htpasswd user's credentials, for ``requests``' ``auth=``."""
        return next(iter(self.htpasswd.items()), None) if self.htpasswd else None

    def start(self) -> RegistryServer:
        if self.process is not None:
            raise RuntimeError("RegistryServer already started")
        binary = registry_binary()
        if self.token_auth is not None and not self.token_auth.started:
            raise RuntimeError("start the TokenServer before the RegistryServer that uses it (token_auth=)")
        self._prepare_files()
        # A fixed port can't be retried; an auto port may lose the bind race, so try a few.
        attempts = 1 if self.requested_port and not self.debug else 3
        for attempt in range(attempts):
            self.port = self.requested_port or free_port()
            # A restart keeps the debug address too, so whoever watches it finds it again.
            self.debug_port = (self._kept_debug_port or _other_free_port(self.port)) if self.debug else None
            self.config_path.write_text(_config_yaml(self.storage_dir, self.port, self.delete_enabled,
                                                        self.blob_cache, self._extras()))
            try:
                self._spawn_and_wait(binary)
                if self.requested_port:
                    self._kept_debug_port = self.debug_port
                return self
            except RegistryStartError:
                lost_race = "address already in use" in self._log_since(self._log_offset)
                self.stop()
                if not lost_race or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _extras(self) -> _Extras:
        tokens = self.token_auth
        return _Extras(
            tls_cert=self.cert_path, tls_key=self.key_path, htpasswd_path=self.htpasswd_path,
            debug_port=self.debug_port,
            health_interval=HEALTH_INTERVAL if self.debug or self.broken_storage else None,
            token_realm=tokens.realm if tokens is not None else None,
            token_service=tokens.service if tokens is not None else "",
            token_issuer=tokens.issuer if tokens is not None else "",
            token_rootcertbundle=tokens.cert_path if tokens is not None else None,
            notifications=self.notifications,
        )

    def _prepare_files(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.not_a_directory is not None:
            if not self.not_a_directory.is_file():
                self.not_a_directory.write_text("a regular file where the registry expects a directory\n")
        else:
            self.storage_dir.mkdir(parents=True, exist_ok=True)
        if self.tls and not (self.ca_path and self.ca_path.is_file() and self.cert_path
                             and self.cert_path.is_file() and self.key_path and self.key_path.is_file()):
            from .certs import make_certs

            made = make_certs(self.data_dir / "certs")
            assert (made.ca_path, made.cert_path, made.key_path) == (self.ca_path, self.cert_path, self.key_path)
        if self.htpasswd is not None and self.htpasswd_path is not None:
            self.htpasswd_path.write_text(_htpasswd_lines(self.htpasswd))

    @property
    def _needs_auth(self) -> bool:
        return self.htpasswd is not None or self.token_auth is not None

    def _ready(self) -> tuple[bool, str]:
        """One readiness probe: (is it up as configured?, what it answered)."""
        # Short read timeout: whatever else holds the port may accept and never answer.
        r = requests.get(f"{self.url}/v2/", timeout=(0.5, 0.5), verify=self.verify)
        said = f"GET /v2/ answered {r.status_code}"
        if self.broken_storage:
            # Healthy (200/401) until the first check, one HEALTH_INTERVAL after start.
            if r.status_code != 503 or b"UNAVAILABLE" not in r.content:
                return False, said + " (waiting for the storage health check to fail)"
        elif r.status_code not in ((200, 401) if self._needs_auth else (200,)):
            return False, said
        if self.debug:
            h = requests.get(f"{self.debug_url}/debug/health", timeout=(0.5, 0.5))
            want = 503 if self.broken_storage else 200
            if h.status_code != want:
                return False, f"{said}; GET {self.debug_url}/debug/health answered {h.status_code}, not {want}"
        return True, said

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
                ready, last_error = self._ready()
                if ready:
                    return
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(POLL_INTERVAL_S)
        wanted = ("503 UNAVAILABLE (failing storage health check)" if self.broken_storage
                  else "200 or 401" if self._needs_auth else "200")
        raise RegistryStartError(
            f"registry at {self.url} did not answer GET /v2/ with {wanted} within {START_TIMEOUT_S:.0f}s "
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
