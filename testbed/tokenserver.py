"""A small, real Docker registry token server: the JWT issuer Distribution's ``auth.token`` trusts.

``TokenServer`` is a ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) that answers
``GET /token?service=…&scope=…`` as the token spec says: basic auth checked against its users,
then a signed JWT granting the intersection of what was asked and what the user may do (an
unauthorised scope is not an error: the token just lacks it, and the registry answers
``insufficient_scope``). It records every request, so tests can assert which scopes a client
asked for and how often.

The key is RSA 2048 made with the ``openssl`` CLI, with a self-signed certificate that the
registry gets as ``auth.token.rootcertbundle``; tokens are RS256, signed here with plain
integer arithmetic (PKCS#1 v1.5 over SHA-256, CRT), so no crypto package is needed.

What Distribution 2.8.2 checks (``registry/auth/token``, tried on the binary; see
``tests/registry/test_token_auth.py``): the signature by a key it trusts — found from the header's
``x5c`` (a chain that must verify against the root bundle), else ``jwk``, else ``kid`` (the
libtrust key ID of a root certificate's public key) —; ``iss`` equal to ``auth.token.issuer``;
``aud`` containing ``auth.token.service``; ``exp`` and ``nbf`` (60 s leeway); and then
``access`` for the scope of the request. ``iat``, ``jti`` and ``sub`` are carried, not checked.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

import requests

from .certs import OPENSSL_TIMEOUT_S, openssl_binary

__all__ = ["ALL_ACTIONS", "TokenRequest", "TokenServer", "libtrust_key_id"]

SERVICE = "registryui-testbed"
ISSUER = "registryui-testbed-issuer"
ALL_ACTIONS = ("pull", "push", "delete", "*")
HEADER_MODES = ("x5c", "kid", "both", "none")
# DigestInfo prefix of SHA-256 for PKCS#1 v1.5 (RFC 8017, 9.2 note 1).
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered."""

    user: str | None  # the authenticated user; None: anonymous (or rejected, see status)
    service: str
    scopes: tuple[str, ...]
    status: int
    granted: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (type, name, actions)
    account: str = ""


@dataclass
class _RSAKey:
    n: int
    e: int
    d: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def sign_sha256(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (RS256)."""
        t = _SHA256_PREFIX + hashlib.sha256(data).digest()
        em = b"\x00\x01" + b"\xff" * (self.size - len(t) - 3) + b"\x00" + t
        m = int.from_bytes(em, "big")
        # CRT: two half-size exponentiations instead of one full one.
        s1, s2 = pow(m, self.dp, self.p), pow(m, self.dq, self.q)
        s = s2 + self.q * ((self.qinv * (s1 - s2)) % self.p)
        assert pow(s, self.e, self.n) == m
        return s.to_bytes(self.size, "big")


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) items of a DER SEQUENCE's body."""
    items, pos = [], 0
    while pos < len(data):
        tag = data[pos]
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        items.append((tag, data[pos:pos + length]))
        pos += length
    return items


def _parse_rsa_private_key(der: bytes) -> _RSAKey:
    """A PKCS#8 (or PKCS#1) DER RSA private key."""
    ((_, body),) = _der_items(der)
    items = _der_items(body)
    if len(items) == 3 and items[2][0] == 0x04:  # PKCS#8: version, algorithm, OCTET STRING(PKCS#1)
        ((_, body),) = _der_items(items[2][1])
        items = _der_items(body)
    ints = [int.from_bytes(v, "big") for t, v in items if t == 0x02]
    _, n, e, d, p, q, dp, dq, qinv = ints[:9]
    return _RSAKey(n, e, d, p, q, dp, dq, qinv)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem_body(pem: str) -> bytes:
    return base64.b64decode("".join(line for line in pem.splitlines() if line and not line.startswith("-----")))


def libtrust_key_id(spki_der: bytes) -> str:
    """The libtrust key ID of a public key (its DER SubjectPublicKeyInfo), as ``kid`` carries it:
    the first 240 bits of its SHA-256, base32, in twelve groups of four joined by ``:``."""
    b32 = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def _openssl(*args: str, cwd: Path) -> str:
    proc = subprocess.run([openssl_binary(), *args], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=OPENSSL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class _Signer:
    key: _RSAKey
    cert_der: bytes
    kid: str

    @classmethod
    def make(cls, directory: Path, name: str, common_name: str) -> tuple[_Signer, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
        if not (key_path.is_file() and cert_path.is_file()):
            _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key_path),
                     cwd=directory)
            _openssl("req", "-x509", "-new", "-key", str(key_path), "-subj", f"/CN={common_name}", "-days", "30",
                     "-sha256", "-set_serial", f"0x{secrets.token_hex(16)}", "-addext",
                     "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
                     "-out", str(cert_path), cwd=directory)
        key = _parse_rsa_private_key(_pem_body(key_path.read_text()))
        cert_der = _pem_body(cert_path.read_text())
        spki = _pem_body(_openssl("x509", "-in", str(cert_path), "-noout", "-pubkey", cwd=directory))
        return cls(key=key, cert_der=cert_der, kid=libtrust_key_id(spki)), cert_path


Grants = Mapping[str, Iterable[str]]  # "type:name" glob -> actions


class TokenServer:
    """A JWT-issuing token server on 127.0.0.1; a context manager, or start()/stop().

    * ``users``: ``{name: password}``; wrong credentials are answered 401.
    * ``grants``: ``{name: {"repository:team/*": ["pull"], "registry:catalog:*": ["*"]}}`` —
      glob patterns over ``type:name`` and the actions each allows; a user without an entry
      may do everything. ``anonymous``: the grants of a request without credentials (None:
      such a request is refused with 401).
    * ``header``: how the JWT names its key — ``"x5c"`` (the certificate), ``"kid"`` (its
      libtrust key ID), ``"both"`` (the default) or ``"none"`` (the registry must refuse it).
    * ``token_field``: ``"token"``, ``"access_token"`` or ``"both"`` in the JSON answer.
    * ``expires_in``: seconds; ``None`` leaves it out of the answer (the spec's default is 60).
    * ``rogue``: sign with a second key the registry does not trust (``invalid_token``).

    ``realm`` is what the registry's ``auth.token.realm`` names; ``cert_path`` its
    ``rootcertbundle``. ``requests`` lists every answered request.
    """

    def __init__(self, data_dir: Path, *, users: Mapping[str, str] | None = None,
                 grants: Mapping[str, Grants] | None = None, anonymous: Grants | None = None,
                 service: str = SERVICE, issuer: str = ISSUER, header: str = "both",
                 token_field: str = "token", expires_in: int | None = 300, rogue: bool = False) -> None:
        if header not in HEADER_MODES:
            raise ValueError(f"header must be one of {HEADER_MODES}")
        if token_field not in ("token", "access_token", "both"):
            raise ValueError("token_field must be token, access_token or both")
        self.data_dir = Path(data_dir)
        self.users = dict(users or {})
        self.grants = {user: dict(g) for user, g in (grants or {}).items()}
        self.anonymous = dict(anonymous) if anonymous is not None else None
        self.service = service
        self.issuer = issuer
        self.header = header
        self.token_field = token_field
        self.expires_in = expires_in
        self.rogue = rogue
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._signer: _Signer | None = None
        self._rogue_signer: _Signer | None = None
        self.cert_path = self.data_dir / "token-signer.crt"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> TokenServer:
        if self._server is not None:
            raise RuntimeError("TokenServer already started")
        self._signer, self.cert_path = _Signer.make(self.data_dir, "token-signer", "registryui testbed token signer")
        if self.rogue:
            self._rogue_signer, _ = _Signer.make(self.data_dir, "rogue-signer", "registryui testbed token signer")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.tokens = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="token-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def started(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("TokenServer is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    @property
    def kid(self) -> str:
        if self._signer is None:
            raise RuntimeError("TokenServer is not started")
        return self._signer.kid

    def __repr__(self) -> str:
        return f"<TokenServer {self.url if self.started else '-'} users={sorted(self.users)}>"

    # -- what it saw ---------------------------------------------------------------------------

    def scopes(self) -> list[str]:
        """Every scope asked for, in order, one entry per scope per request."""
        with self._lock:
            return [s for r in self.requests for s in r.scopes]

    def seen(self) -> list[TokenRequest]:
        with self._lock:
            return list(self.requests)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    # -- tokens --------------------------------------------------------------------------------

    def allowed(self, user: str | None, kind: str, name: str, actions: Iterable[str]) -> tuple[str, ...]:
        """Which of `actions` on kind:name the user (None: anonymous) may have."""
        grants = self.anonymous if user is None else self.grants.get(user)
        wanted = list(dict.fromkeys(a for a in actions if a))
        if grants is None:
            return tuple(wanted) if user is not None else ()
        ok: set[str] = set()
        for pattern, may in grants.items():
            if fnmatch.fnmatchcase(f"{kind}:{name}", pattern):
                ok.update(may)
        return tuple(a for a in wanted if a in ok or "*" in ok)

    def issue(self, subject: str, access: Iterable[tuple[str, str, Iterable[str]]], *,
              lifetime: int | None = None, not_before: int = 0, issuer: str | None = None,
              audience: str | None = None, header: str | None = None) -> str:
        """Sign a JWT; access is [(type, name, actions)]. Also for tests that need a token directly
        (it is not recorded as a request)."""
        signer = self._rogue_signer if self.rogue and self._rogue_signer else self._signer
        if signer is None:
            raise RuntimeError("TokenServer is not started")
        mode = header or self.header
        head: dict[str, object] = {"typ": "JWT", "alg": "RS256"}
        if mode in ("kid", "both"):
            head["kid"] = signer.kid
        if mode in ("x5c", "both"):
            head["x5c"] = [base64.b64encode(signer.cert_der).decode()]
        now = int(time.time())
        claims = {
            "iss": self.issuer if issuer is None else issuer,
            "sub": subject,
            "aud": self.service if audience is None else audience,
            "exp": now + (lifetime if lifetime is not None else self.expires_in or 60),
            "nbf": now - 1 + not_before,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [{"type": t, "name": n, "actions": list(a)} for t, n, a in access],
        }
        signing_input = (_b64url(json.dumps(head, separators=(",", ":")).encode()) + "."
                         + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        return signing_input + "." + _b64url(signer.key.sign_sha256(signing_input.encode()))

    def session(self, *repositories: str, actions: Iterable[str] = ("pull", "push", "delete"),
                verify: str | bool = True) -> requests.Session:
        """A requests session whose every request carries a token for `repositories` (and the
        catalog): for seeding and checking a token registry directly, outside the recorded requests."""
        access = [("repository", r, tuple(actions)) for r in repositories] + [("registry", "catalog", ("*",))]
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {self.issue('testbed-admin', access, lifetime=3600)}"
        s.verify = verify
        s.trust_env = False
        return s

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        if parts.path != "/token":
            _send(handler, 404, {"errors": [{"code": "NOT_FOUND", "message": handler.path}]})
            return
        query = parse_qs(parts.query, keep_blank_values=True)
        service = (query.get("service") or [""])[0]
        account = (query.get("account") or [""])[0]
        scopes = tuple(s for raw in query.get("scope", []) for s in raw.split(" ") if s)
        user, ok = self._authenticate(handler.headers.get("Authorization", ""))
        if not ok or (user is None and self.anonymous is None):
            self._record(TokenRequest(user=user, service=service, scopes=scopes, status=401, account=account))
            _send(handler, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]},
                  {"WWW-Authenticate": 'Basic realm="registryui testbed token server"'})
            return
        if service != self.service:
            self._record(TokenRequest(user=user, service=service, scopes=scopes, status=400, account=account))
            _send(handler, 400, {"errors": [{"code": "INVALID_SERVICE", "message": f"unknown service {service!r}"}]})
            return
        granted: list[tuple[str, str, tuple[str, ...]]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if not kind or not name:
                continue
            allowed = self.allowed(user, kind, name, actions.split(","))
            granted.append((kind, name, allowed))  # an empty list is still a (useless) grant
        token = self.issue(user or "", granted)
        self._record(TokenRequest(user=user, service=service, scopes=scopes, status=200, granted=tuple(granted),
                                  account=account))
        doc: dict[str, object] = {"issued_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        if self.token_field in ("token", "both"):
            doc["token"] = token
        if self.token_field in ("access_token", "both"):
            doc["access_token"] = token
        if self.expires_in is not None:
            doc["expires_in"] = self.expires_in
        _send(handler, 200, doc)

    def _authenticate(self, header: str) -> tuple[str | None, bool]:
        """(user, ok): (None, True) without credentials, (name, False) for a wrong password."""
        if not header:
            return None, True
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, False
        expected = self.users.get(user)
        if expected is None or not secrets.compare_digest(expected.encode(), password.encode()):
            return user, False
        return user, True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.tokens._answer(self)  # type: ignore[attr-defined]


def _send(handler: BaseHTTPRequestHandler, status: int, doc: object, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(doc).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
