"""Registry authentication: ``WWW-Authenticate`` challenges and Docker registry bearer tokens.

Django-free like the rest of the client. The token flow (the "Docker registry token
authentication" spec, which Distribution 2.8/3.x, Harbor, GitLab and Docker Hub speak):

1. A request without a (valid) token is answered ``401`` with
   ``WWW-Authenticate: Bearer realm="https://auth.example/token",service="registry",scope="repository:team/app:pull"``.
2. The client asks the realm: ``GET <realm>?service=registry&scope=repository:team/app:pull``,
   with the configured user's password as basic auth (anonymous without one), and gets
   ``{"token": "…", "expires_in": 300, "issued_at": "…"}`` (``access_token`` in OAuth2 style).
3. It repeats the request with ``Authorization: Bearer <token>``, and keeps the token for
   that scope until it expires (`TokenCache`), so later requests send it up front.

Secrets stay secret: `Token` does not show its value in its repr, error messages name the
realm and the user but never the password or a token, and nothing here logs.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .parse import parse_time

__all__ = [
    "DEFAULT_EXPIRES_IN", "Challenge", "Token", "TokenCache", "TokenError", "bearer_challenge",
    "describe_scope", "parse_challenges", "parse_token_response", "realm_for_humans", "scope_for",
    "token_url",
]

#: The spec: "When omitted, this defaults to 60 seconds."
DEFAULT_EXPIRES_IN = 60.0
#: A token is dropped this long before it expires (at most a quarter of its lifetime), so a
#: request never leaves with a token that runs out on its way to the registry.
EXPIRY_MARGIN_S = 10.0
#: More distinct scopes than this (a catalog of thousands of repositories) evicts the oldest.
MAX_CACHED_TOKENS = 4096
#: A token response is a few KiB; a realm that sends megabytes is not a token server.
MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024

# RFC 9110 token and quoted-string, and RFC 7235's token68.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:\\.|[^"\\])*\\?)"?', re.DOTALL)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
_BARE_VALUE = re.compile(r"[^,\s]*")
_SPACE = " \t"


class TokenError(Exception):
    """A token answer that can't be used; the message is safe to show (no secrets)."""


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: its scheme (lower case) and parameters
    (names lower case, values unquoted)."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    token68: str = ""

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scope(self) -> str:
        """The scopes asked for, space-separated as the registry sends them ("" for /v2/)."""
        return self.params.get("scope", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(s for s in self.scope.split(" ") if s)

    @property
    def error(self) -> str:
        """``insufficient_scope`` or ``invalid_token`` when a token was sent but not enough."""
        return self.params.get("error", "")


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in a ``WWW-Authenticate`` value (several headers may be joined with ", ").

    Tolerant like a browser: quoted strings may hold commas, escaped quotes and spaces;
    parameter names are case-insensitive; junk between challenges is skipped.
    """
    challenges: list[Challenge] = []
    text = header or ""
    pos, end = 0, len(text)
    while pos < end:
        pos = _skip(text, pos, _SPACE + ",")
        scheme = _TOKEN.match(text, pos)
        if scheme is None:
            pos += 1  # not a challenge: skip a character and look again
            continue
        pos = scheme.end()
        params: dict[str, str] = {}
        token68 = ""
        after = _skip(text, pos, _SPACE)
        if after > pos or after == end:
            t68 = _TOKEN68.match(text, after)
            if t68 is not None and not _is_param(text, after):
                token68, pos = t68.group(), t68.end()
            else:
                pos = _params(text, after, params)
        challenges.append(Challenge(scheme.group().lower(), MappingProxyType(params), token68))
    return challenges


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _is_param(text: str, pos: int) -> bool:
    name = _TOKEN.match(text, pos)
    if name is None:
        return False
    after = _skip(text, name.end(), _SPACE)
    return after < len(text) and text[after] == "=" and not text.startswith("==", after)


def _params(text: str, pos: int, params: dict[str, str]) -> int:
    """Read ``name=value`` pairs from pos; stop before the next challenge's scheme."""
    end = len(text)
    while pos < end:
        start = _skip(text, pos, _SPACE + ",")
        if not _is_param(text, start):
            return start
        name = _TOKEN.match(text, start)
        assert name is not None
        pos = _skip(text, name.end(), _SPACE) + 1  # past "="
        pos = _skip(text, pos, _SPACE)
        if pos < end and text[pos] == '"':
            value, pos = _quoted(text, pos)
        else:
            m = _BARE_VALUE.match(text, pos)
            assert m is not None
            value, pos = m.group(), m.end()
        params.setdefault(name.group().lower(), value)
    return pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """A quoted-string starting at pos (the opening quote); an unterminated one runs to the end."""
    quoted = _QUOTED.match(text, pos)
    assert quoted is not None
    return _ESCAPED.sub(r"\1", quoted[1]), quoted.end()


def bearer_challenge(headers: Mapping[str, str] | Any) -> Challenge | None:
    """The Bearer challenge of an answer's headers, if it has one with a realm."""
    for challenge in parse_challenges(headers.get("WWW-Authenticate", "")):
        if challenge.scheme == "bearer" and challenge.realm:
            return challenge
    return None


# -- scopes ------------------------------------------------------------------------------------

_API_PATH = re.compile(
    r"/v2/(?P<name>.+)/(?P<what>tags/list|manifests/[^/]+|blobs/uploads/[^/]*|blobs/[^/]+)")
_ACTIONS = {"GET": "pull", "HEAD": "pull", "PUT": "pull,push", "POST": "pull,push", "PATCH": "pull,push",
            "DELETE": "delete"}


def scope_for(method: str, path: str) -> str | None:
    """The scope Distribution's token access controller asks for this request, or None if unknown.

    Derived exactly as distribution's ``appendAccessRecords``: GET/HEAD pull, PUT/POST/PATCH
    pull and push, DELETE delete, on the repository the path names; the catalog is
    ``registry:catalog:*``; the base ``/v2/`` asks for no scope at all ("").
    """
    method = method.upper()
    if path in ("/v2/", "/v2"):
        return ""
    if path.rstrip("/") == "/v2/_catalog":
        return "registry:catalog:*"
    match = _API_PATH.fullmatch(path)
    actions = _ACTIONS.get(method)
    if match is None or actions is None:
        return None
    return f"repository:{match['name']}:{actions}"


def describe_scope(scope: str) -> str:
    """A scope in the operator's words, e.g. "the “delete” permission on “team/app”"."""
    parts = []
    for one in scope.split(" "):
        kind, _, rest = one.partition(":")
        name, _, actions = rest.rpartition(":")
        if not one:
            continue
        if kind == "registry" and name == "catalog":
            parts.append(f"access to the catalog (scope {one})")
        elif kind == "repository" and name:
            listed = ", ".join(f"“{a}”" for a in actions.split(",") if a)
            plural = "permissions" if "," in actions else "permission"
            parts.append(f"the {listed} {plural} on “{name}” (scope {one})")
        else:
            parts.append(f"the scope {one}")
    return " and ".join(parts) or "a token for the registry"


# -- the token request and its answer ------------------------------------------------------------


def token_url(realm: str, service: str, scopes: Iterable[str], account: str = "") -> str:
    """``realm?service=…&scope=…&scope=…`` (one parameter per scope), keeping the realm's own query."""
    parts = urlsplit(realm)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if service:
        query.append(("service", service))
    query.extend(("scope", s) for s in scopes if s)
    if account:
        query.append(("account", account))
    return urlunsplit(parts._replace(query=urlencode(query), fragment=""))


def realm_for_humans(realm: str) -> str:
    """The realm to name in a message: scheme, host and path, without user info or query."""
    parts = urlsplit(realm)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "") if parts.hostname else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) or realm[:200]


@dataclass(frozen=True)
class Token:
    """A bearer token and when to stop using it (``time.monotonic()`` seconds)."""

    value: str = field(repr=False)
    valid_until: float
    expires_in: float = DEFAULT_EXPIRES_IN

    def usable(self) -> bool:
        return time.monotonic() < self.valid_until

    def __repr__(self) -> str:  # never the token itself
        left = self.valid_until - time.monotonic()
        return f"<Token expires_in={self.expires_in:g}s left={left:.0f}s>"


def parse_token_response(body: bytes, *, wall_now: float | None = None, now: float | None = None) -> Token:
    """The token of a realm's JSON answer: ``token`` or ``access_token``, with its lifetime.

    The lifetime counts from ``issued_at`` when that is plausible (in the past, not before
    the token's lifetime), else from now; a margin comes off so it is renewed in time.
    """
    try:
        doc: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise TokenError("its answer is not JSON") from None
    if not isinstance(doc, dict):
        raise TokenError("its answer is not a JSON object")
    value = doc.get("token") or doc.get("access_token")
    if not isinstance(value, str) or not value.strip():
        raise TokenError("its answer has no “token” (nor “access_token”)")
    value = value.strip()
    if any(c in value for c in "\r\n\0"):
        raise TokenError("its token is not a valid HTTP header value")
    expires_in = doc.get("expires_in")
    lifetime = float(expires_in) if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) \
        and 0 < expires_in < 10 * 365 * 86400 else DEFAULT_EXPIRES_IN
    wall = time.time() if wall_now is None else wall_now
    mono = time.monotonic() if now is None else now
    age = 0.0
    issued = parse_time(doc.get("issued_at"))
    if issued is not None:
        seconds = wall - issued.astimezone(UTC).timestamp()
        if 0 <= seconds < lifetime:  # a skewed clock or nonsense: count from now
            age = seconds
    margin = min(EXPIRY_MARGIN_S, lifetime / 4)
    return Token(value=value, valid_until=mono + lifetime - age - margin, expires_in=lifetime)


# -- the cache ---------------------------------------------------------------------------------

CacheKey = tuple[str, str, str]  # (realm, service, scope)


class TokenCache:
    """Tokens by (realm, service, scope) until they expire; safe to share between threads.

    `fetch` makes concurrent requests for the same key wait for one token request instead of
    sending one each (sixteen threads reading sixteen manifests of one repository ask once).
    """

    def __init__(self, max_entries: int = MAX_CACHED_TOKENS) -> None:
        self._tokens: OrderedDict[CacheKey, Token] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[CacheKey, threading.Lock] = {}
        self.max_entries = max_entries

    def get(self, key: CacheKey) -> Token | None:
        with self._lock:
            token = self._tokens.get(key)
            if token is None:
                return None
            if not token.usable():
                del self._tokens[key]
                return None
            self._tokens.move_to_end(key)
            return token

    def put(self, key: CacheKey, token: Token) -> None:
        with self._lock:
            self._tokens[key] = token
            self._tokens.move_to_end(key)
            while len(self._tokens) > self.max_entries:
                self._tokens.popitem(last=False)

    def discard(self, key: CacheKey, token: Token | None = None) -> None:
        """Forget the token of key (only if it still is `token`, when given)."""
        with self._lock:
            if key in self._tokens and (token is None or self._tokens[key] is token):
                del self._tokens[key]

    def fetch(self, key: CacheKey, fetch: Callable[[], Token], *, stale: Token | None = None) -> Token:
        """The cached token for key unless it is `stale` (the one the registry just refused),
        else a new one from `fetch()` — one fetch at a time per key."""
        with self._lock:
            if len(self._key_locks) > 2 * self.max_entries:
                for old in [k for k, lock in self._key_locks.items() if k not in self._tokens and not lock.locked()]:
                    del self._key_locks[old]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            token = self.get(key)
            if token is not None and token is not stale:
                return token
            token = fetch()
            self.put(key, token)
            return token

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)

    def __repr__(self) -> str:  # the scopes are not secret; the tokens are
        return f"<TokenCache {len(self)} tokens>"
