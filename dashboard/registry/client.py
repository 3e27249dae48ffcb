"""A small, typed client for the Distribution (Docker/OCI) registry HTTP API.

Free of Django on purpose: it takes a `RegistryConfig`, returns frozen dataclasses and
raises the exceptions in `errors`. Every call has a timeout; one pooled session serves
all threads.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from . import auth as a
from . import errors as e
from . import models as m
from .names import check_digest, check_name, check_reference, check_tag, is_digest
from .parse import digest_of, parse_config, parse_json_object, parse_manifest, verify

T = TypeVar("T")

MANIFEST_ACCEPT = ", ".join(m.MANIFEST_TYPES)
# distribution refuses manifests over 4 MiB; anything bigger is not a manifest.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_JSON_BYTES = 32 * 1024 * 1024
# A hostile registry could answer with endless Link pages; no real catalog is this long.
MAX_PAGES = 10_000
CATALOG_PAGE = 1000
CATALOG_FALLBACK_PAGE = 100

_NOT_FOUND = {
    "NAME_UNKNOWN": e.NameUnknown,
    "MANIFEST_UNKNOWN": e.ManifestUnknown,
    "BLOB_UNKNOWN": e.BlobUnknown,
}


class RegistryClient:
    def __init__(self, config: m.RegistryConfig,
                 observer: Callable[[str, str, str, float], None] | None = None) -> None:
        #: Called as observer(method, endpoint, status, seconds) after every request.
        self.observer = observer
        # Not `self.config`: that name is the config() method, which the attribute would shadow.
        self.conf = config
        self.base_url = config.url.rstrip("/")
        base = urlsplit(self.base_url)
        self._origin = (base.scheme, base.netloc)
        self._prefix = base.path.rstrip("/")
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(config.pool_size, 1), max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = config.user_agent
        # Credentials go per request (`_request`), not as `session.auth`: basic auth to an
        # htpasswd registry, but to a token registry's API only bearer tokens — the password
        # goes to its token server (the realm) alone.
        self._basic: tuple[str, str] | None = (config.username, config.password) if config.username else None
        #: (realm, service) of the registry's Bearer challenge, once it has sent one.
        self._bearer: tuple[str, str] | None = None
        self._tokens = a.TokenCache()
        self._timeout = (config.connect_timeout, config.read_timeout)
        if config.insecure:
            session.verify = False
        elif config.ca_bundle:
            session.verify = config.ca_bundle
        # The environment's proxies would send loopback registries through a proxy.
        session.trust_env = False
        self._session = session

    def _request(self, method: str, url: str, *, endpoint: str | None = None, **kwargs: Any) -> requests.Response:
        """Every HTTP call goes through here, so an observer (the dashboard's metrics) sees each one
        — token requests too, as endpoint "token".

        Authentication happens here as well. Basic credentials go along until the registry
        asks for a bearer token; from then on a request carries the cached token of its scope
        (`auth.scope_for`), and a 401 with a Bearer challenge fetches a token for exactly the
        challenge's scope and repeats the request once. Raises `Unauthorized` itself when the
        token server refuses, or the registry refuses the token it issued.
        """
        parts = urlsplit(url)
        if endpoint is not None or (parts.scheme, parts.netloc) != self._origin:
            # A token request, or not the registry: no registry credentials of any kind.
            return self._exchange(method, url, endpoint, **kwargs)
        scope = a.scope_for(method, self._api_path(parts.path))  # None: a path we can't name the scope of
        headers = dict(kwargs.pop("headers", None) or {})
        bearer = self._bearer
        sent = self._tokens.get((*bearer, scope)) if bearer is not None and scope is not None else None
        if sent is not None:
            headers["Authorization"] = f"Bearer {sent.value}"
        elif bearer is None and self._basic is not None:
            kwargs["auth"] = self._basic
        resp = self._exchange(method, url, None, headers=headers or None, **kwargs)
        if resp.status_code != 401:
            return resp
        challenge = a.bearer_challenge(resp.headers)
        if challenge is None:
            if bearer is not None and any(c.scheme == "basic" for c in
                                          a.parse_challenges(resp.headers.get("WWW-Authenticate", ""))):
                self._bearer = None  # the registry went back to basic auth: the next request sends it
            return resp  # basic auth (or none we know): `_status_error` explains the 401
        _discard(resp)
        bearer = (challenge.realm, challenge.service)
        self._bearer = bearer
        wanted = challenge.scope  # exactly what the registry names, even if we guessed otherwise
        key = (*bearer, wanted)
        if sent is not None and scope is not None:
            self._tokens.discard((*bearer, scope), sent)
        token = self._tokens.fetch(key, lambda: self._fetch_token(challenge), stale=sent)
        if scope is not None and scope != wanted:
            self._tokens.put((*bearer, scope), token)  # so the next request finds it up front
        headers["Authorization"] = f"Bearer {token.value}"
        kwargs.pop("auth", None)
        resp = self._exchange(method, url, None, headers=headers, **kwargs)
        if resp.status_code != 401:
            return resp
        again = a.bearer_challenge(resp.headers) or challenge
        _discard(resp)
        self._tokens.discard(key, token)  # refused: the next attempt asks the token server again
        if scope is not None:
            self._tokens.discard((*bearer, scope), token)
        raise self._token_refused(again, url)

    def _exchange(self, method: str, url: str, endpoint: str | None, **kwargs: Any) -> requests.Response:
        started = time.perf_counter()
        status = "error"
        try:
            resp = self._session.request(method, url, **kwargs)
            status = str(resp.status_code)
            return resp
        finally:
            if self.observer is not None:
                self.observer(method, endpoint or endpoint_of(url), status, time.perf_counter() - started)

    def _api_path(self, path: str) -> str:
        """The path below a registry URL with a prefix (https://host/registry → /v2/…)."""
        return path[len(self._prefix):] if self._prefix and path.startswith(self._prefix + "/") else path

    def _fetch_token(self, challenge: a.Challenge) -> a.Token:
        """GET realm?service=…&scope=… with the configured user's basic auth (anonymous without)."""
        realm = challenge.realm
        shown = a.realm_for_humans(realm)
        who = f"“{self.conf.username}”" if self.conf.username else "an anonymous user"
        server = f"the token server {shown} of the registry at {self.base_url}"
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise e.Unauthorized(f"the registry at {self.base_url} names a token server that is not an HTTP(S) "
                                 f"URL ({shown[:200]}) — check its auth.token.realm setting", url=self.base_url)
        if self._basic is not None and parts.scheme == "http" and self._origin[0] == "https":
            raise e.Unauthorized(
                f"the registry at {self.base_url} sends its users to the token server {shown} over plain HTTP; "
                f"the password of {who} is not sent there — give its auth.token.realm an https:// URL",
                url=self.base_url)
        url = a.token_url(realm, challenge.service, challenge.scopes, account=self.conf.username)
        try:
            resp = self._request("GET", url, endpoint="token", auth=self._basic, timeout=self._timeout,
                                 allow_redirects=True, stream=True)
        except requests.RequestException as exc:
            raise e.Unauthorized(f"could not get a token for {who} from {server}: {self._realm_failure(exc)}",
                                 url=shown) from None
        try:
            if resp.status_code == 401:
                if self._basic is None:
                    raise e.Unauthorized(
                        f"the registry at {self.base_url} needs credentials: its token server {shown} gives "
                        "no anonymous tokens — set REGISTRYUI_REGISTRY_USERNAME and REGISTRYUI_REGISTRY_PASSWORD",
                        url=shown)
                raise e.Unauthorized(f"{server} rejected the credentials of {who}", url=shown)
            if resp.status_code != 200:
                raise e.Unauthorized(f"{server} answered HTTP {resp.status_code} to {who}'s request for "
                                     f"{a.describe_scope(challenge.scope)}", url=shown)
            body = self._read(resp, a.MAX_TOKEN_RESPONSE_BYTES, what="token")
        except e.RegistryError as exc:
            if isinstance(exc, e.Unauthorized):
                raise
            raise e.Unauthorized(f"{server} sent no usable answer to {who}: {str(exc).replace(self.base_url, shown)}",
                                 url=shown) from None
        finally:
            resp.close()
        try:
            return a.parse_token_response(body)
        except a.TokenError as exc:
            raise e.Unauthorized(f"{server} sent no usable token to {who}: {exc}", url=shown) from None

    def _realm_failure(self, exc: requests.RequestException) -> str:
        """Why the token server could not be asked, in a few words (never a urllib3 repr)."""
        text = str(exc).lower()
        if isinstance(exc, requests.exceptions.SSLError):
            if "certificate verify failed" in text or "certificate_verify_failed" in text:
                return ("its TLS certificate could not be verified — REGISTRYUI_REGISTRY_CA_BUNDLE must hold the "
                        "CA of the token server too")
            return "the TLS handshake failed"
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return f"no connection within {self.conf.connect_timeout:g} s"
        if isinstance(exc, requests.exceptions.ReadTimeout) or "read timed out" in text:
            return f"no answer within {self.conf.read_timeout:g} s"
        if isinstance(exc, requests.exceptions.ConnectionError):
            if "refused" in text:
                return "connection refused — is the token server running?"
            if "name or service not known" in text or "failed to resolve" in text \
                    or "temporary failure in name resolution" in text or "nodename nor servname" in text:
                return "its host name does not resolve"
            return "the connection failed"
        return f"the request failed ({exc.__class__.__name__})"

    def _token_refused(self, challenge: a.Challenge, url: str) -> e.Unauthorized:
        """The registry answered 401 to the token its own token server just issued."""
        shown = a.realm_for_humans(challenge.realm)
        what = a.describe_scope(challenge.scope)
        if challenge.error == "invalid_token":
            return e.Unauthorized(
                f"the registry at {self.base_url} does not accept the tokens of its token server {shown} "
                "(invalid_token) — its auth.token issuer, service and rootcertbundle must match the token "
                "server's issuer, service name and signing certificate", url=url)
        if self._basic is None:
            return e.Unauthorized(
                f"the registry at {self.base_url} needs credentials: its token server {shown} does not grant "
                f"anonymous users {what} — set REGISTRYUI_REGISTRY_USERNAME and REGISTRYUI_REGISTRY_PASSWORD",
                url=url)
        return e.Unauthorized(
            f"the token server {shown} did not grant “{self.conf.username}” {what} on the registry at "
            f"{self.base_url} — the user lacks that permission", url=url)

    def close(self) -> None:
        self._session.close()

    # -- API ---------------------------------------------------------------------------

    def ping(self) -> m.Ping:
        """GET /v2/: is this a registry, and does it take our credentials?"""
        started = time.perf_counter()
        resp = self._send("GET", "/v2/", not_found=e.NotFound)
        resp.close()
        return m.Ping(api_version=resp.headers.get("Docker-Distribution-Api-Version", ""),
                      latency_ms=(time.perf_counter() - started) * 1000)

    def catalog(self, page_size: int = CATALOG_PAGE) -> list[str]:
        """Every repository, following `Link` pages to the end.

        Pages of 1,000 (the most distribution accepts) make a 2,000-repository catalog three
        requests instead of twenty-one; a registry configured with a lower `maxentries` says
        PAGINATION_NUMBER_INVALID, and then its default page size is used.
        """
        try:
            return self._paginate(f"/v2/_catalog?n={page_size}", "repositories", not_found=e.NotFound)
        except e.RegistryAPIError as exc:
            if exc.code != "PAGINATION_NUMBER_INVALID" or page_size <= CATALOG_FALLBACK_PAGE:
                raise
        return self._paginate(f"/v2/_catalog?n={CATALOG_FALLBACK_PAGE}", "repositories", not_found=e.NotFound)

    def tags(self, name: str) -> list[str]:
        """Every tag; 2.8 answers in one page, 3.x may paginate with `Link`."""
        check_name(name)
        return self._paginate(f"/v2/{name}/tags/list", "tags", not_found=e.NameUnknown)

    def head_manifest(self, name: str, reference: str) -> m.ManifestRef:
        check_name(name)
        check_reference(reference)
        resp = self._send("HEAD", f"/v2/{name}/manifests/{reference}",
                          headers={"Accept": MANIFEST_ACCEPT}, not_found=e.ManifestUnknown)
        resp.close()
        digest = resp.headers.get("Docker-Content-Digest", "")
        if not is_digest(digest) and not is_digest(reference):
            # Without a trustworthy digest header only the bytes can tell.
            got = self.manifest(name, reference)
            return m.ManifestRef(digest=got.digest, media_type=got.media_type, size=got.size)
        return m.ManifestRef(digest=digest if is_digest(digest) else reference, media_type=_media_type(resp),
                             size=_content_length(resp))

    def manifest_bytes(self, name: str, reference: str) -> tuple[bytes, str, str]:
        """Raw manifest, its media type and its verified digest."""
        check_name(name)
        check_reference(reference)
        path = f"/v2/{name}/manifests/{reference}"
        resp = self._send("GET", path, headers={"Accept": MANIFEST_ACCEPT}, stream=True,
                          not_found=e.ManifestUnknown)
        raw = self._read(resp, MAX_MANIFEST_BYTES, what="manifest")
        expected = reference if is_digest(reference) else resp.headers.get("Docker-Content-Digest", "")
        if not is_digest(expected):
            expected = digest_of(raw)
        verify(raw, expected, what=f"the manifest of {name}:{reference}", url=self._url(path))
        return raw, _media_type(resp), expected

    def manifest(self, name: str, reference: str) -> m.Manifest:
        raw, media_type, digest = self.manifest_bytes(name, reference)
        return parse_manifest(raw, media_type=media_type, digest=digest)

    def blob_bytes(self, name: str, digest: str, *, limit: int = MAX_CONFIG_BYTES) -> bytes:
        """A small blob (a config), verified against its digest."""
        check_name(name)
        check_digest(digest)
        path = f"/v2/{name}/blobs/{digest}"
        resp = self._send("GET", path, stream=True, not_found=e.BlobUnknown)
        raw = self._read(resp, limit, what="blob")
        verify(raw, digest, what=f"blob {digest} of {name}", url=self._url(path))
        return raw

    def config(self, name: str, digest: str) -> m.ImageConfig:
        return parse_config(self.blob_bytes(name, digest), digest=digest)

    def head_blob(self, name: str, digest: str) -> m.BlobInfo:
        check_name(name)
        check_digest(digest)
        resp = self._send("HEAD", f"/v2/{name}/blobs/{digest}", not_found=e.BlobUnknown)
        resp.close()
        return m.BlobInfo(digest=digest, size=_content_length(resp), media_type=_media_type(resp))

    def probe_blob(self, name: str, digest: str) -> None:
        """Whether the registry can still serve the blob: GET its first byte. Raises BlobUnknown if not.

        A HEAD is not enough: distribution answers it from its blob-descriptor cache (the
        `inmemory` one of registry:2's stock config), which still lists blobs that garbage
        collection removed from the storage. Such a GET answers 206 and then breaks off without
        a byte, and that counts as missing too.
        """
        check_name(name)
        check_digest(digest)
        path = f"/v2/{name}/blobs/{digest}"
        try:
            resp = self._send("GET", path, headers={"Range": "bytes=0-0"}, stream=True, not_found=e.BlobUnknown)
        except e.RegistryAPIError as exc:
            # An empty blob has no first byte: it is there. (2.8 then drops the connection, so
            # callers that know a blob is empty should HEAD it instead.)
            if exc.status == 416:
                return
            raise
        try:
            first = next(resp.iter_content(1), b"")
        except requests.RequestException:
            first = b""
        finally:
            resp.close()
        if not first and _content_length(resp):
            raise e.BlobUnknown(
                f"the registry lists blob {digest} in {name} but cannot send its bytes: garbage collection "
                "removed it, and the registry's blob-descriptor cache still remembers it (a restart clears it)",
                url=self._url(path))

    def open_blob(self, name: str, digest: str) -> BlobStream:
        """Stream a blob without holding it in memory; the digest is checked at the end.

        The returned stream must be closed (it is a context manager; Django's streaming
        response closes it too).
        """
        check_name(name)
        check_digest(digest)
        path = f"/v2/{name}/blobs/{digest}"
        resp = self._send("GET", path, stream=True, not_found=e.BlobUnknown)
        return BlobStream(resp, digest, self._url(path))

    # -- plumbing ----------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path.lstrip("/")) if not path.startswith("http") else path

    def _paginate(self, path: str, key: str, *, not_found: type[e.NotFound]) -> list[str]:
        items: list[str] = []
        seen: set[str] = set()
        url: str | None = self._url(path)
        for _ in range(MAX_PAGES):
            if url is None:
                return items
            seen.add(url)
            resp = self._send("GET", url, stream=True, not_found=not_found)
            doc = parse_json_object(self._read(resp, MAX_JSON_BYTES, what=key), what=f"the {key} list",
                                    url=url)
            page = doc.get(key)
            if page is not None and not isinstance(page, list):
                raise e.MalformedContent(f"the {key} list from {url} is not a list", url=url)
            items.extend(v for v in page or [] if isinstance(v, str))
            url = _next_link(resp, url)
            if url in seen:
                raise e.MalformedContent(f"the registry's {key} pages loop back to {url}", url=url)
        raise e.MalformedContent(f"the registry sent more than {MAX_PAGES} pages of {key}", url=path)

    def _send(self, method: str, path: str, *, not_found: type[e.NotFound], headers: dict[str, str] | None = None,
              stream: bool = False, data: bytes | None = None) -> requests.Response:
        url = self._url(path)
        try:
            resp = self._request(method, url, data=data, headers=headers, stream=stream, timeout=self._timeout,
                                 allow_redirects=True)
        except requests.RequestException as exc:
            raise self._transport_error(exc, url) from None
        if resp.status_code >= 400:
            try:
                body = b"" if method == "HEAD" else resp.raw.read(64 * 1024, decode_content=True) \
                    if stream else resp.content[:64 * 1024]
            except Exception:  # noqa: BLE001 - a broken error body still is an error
                body = b""
            finally:
                resp.close()
            raise self._status_error(resp.status_code, body, url, not_found)
        return resp

    def _read(self, resp: requests.Response, limit: int, *, what: str) -> bytes:
        chunks: list[bytes] = []
        total = 0
        # Under a Content-Encoding (a compressing proxy) Content-Length counts the encoded bytes,
        # which urllib3 checks itself; only an identity body can be compared with it here.
        encoded = resp.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
        declared = 0 if encoded else _content_length(resp)
        try:
            if declared > limit:
                raise e.MalformedContent(
                    f"the {what} at {resp.url} is {declared} bytes, over the {limit}-byte limit", url=resp.url)
            for chunk in resp.iter_content(64 * 1024):
                total += len(chunk)
                if total > limit:
                    raise e.MalformedContent(f"the {what} at {resp.url} is over the {limit}-byte limit",
                                             url=resp.url)
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise self._transport_error(exc, resp.url) from None
        finally:
            resp.close()
        data = b"".join(chunks)
        if declared and len(data) != declared:
            raise e.RegistryUnreachable(
                f"the connection to {self.base_url} broke while reading the {what}: "
                f"got {len(data)} of {declared} bytes", url=resp.url)
        return data

    def _transport_error(self, exc: requests.RequestException, url: str) -> e.RegistryError:
        where = self.base_url
        text = str(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            lowered = text.lower()
            if "wrong version number" in lowered or "record layer failure" in lowered \
                    or "packet length too long" in lowered or "unknown protocol" in lowered:
                http_url = "http://" + where.split("://", 1)[-1]
                return e.RegistryTLSError(
                    f"the registry at {where} speaks plain HTTP — use {http_url}", url=url)
            if "certificate verify failed" in lowered or "certificate_verify_failed" in lowered:
                reason = text.split("certificate verify failed:", 1)[-1].split("(")[0].strip(" ')\"")
                return e.RegistryTLSError(
                    f"the TLS certificate of {where} could not be verified ({reason or 'untrusted'}) — "
                    "if it is self-signed, set REGISTRYUI_REGISTRY_CA_BUNDLE to its CA certificate "
                    "(or, for development only, REGISTRYUI_REGISTRY_INSECURE=true)", url=url)
            return e.RegistryTLSError(f"the TLS handshake with {where} failed — check the URL's scheme "
                                      "and the registry's certificate", url=url)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return e.RegistryTimeout(
                f"no connection to {where} within {self.conf.connect_timeout:g} s — "
                "is the host reachable and the port right?", url=url)
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return e.RegistryTimeout(
                f"{where} accepted the connection but sent no answer within {self.conf.read_timeout:g} s",
                url=url)
        if isinstance(exc, requests.exceptions.ConnectionError) and "read timed out" in text.lower():
            # requests reports a stall in the middle of a body as a ConnectionError, not a ReadTimeout.
            return e.RegistryTimeout(
                f"{where} stopped sending its answer for {self.conf.read_timeout:g} s", url=url)
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            return e.RegistryUnreachable(
                f"the connection to {where} broke while reading its answer (the body was cut short)", url=url)
        if isinstance(exc, requests.exceptions.ConnectionError):
            lowered = text.lower()
            if "refused" in lowered:
                return e.RegistryUnreachable(f"connection refused at {where} — is the registry running?",
                                             url=url)
            if "name or service not known" in lowered or "nodename nor servname" in lowered \
                    or "failed to resolve" in lowered or "temporary failure in name resolution" in lowered:
                host = urlsplit(where).hostname or where
                return e.RegistryUnreachable(f"the host name “{host}” of {where} does not resolve — "
                                             "check the registry URL", url=url)
            if "remotedisconnected" in lowered or "connection aborted" in lowered or "reset" in lowered:
                return e.RegistryUnreachable(
                    f"{where} closed the connection without an answer — is it a registry, and does it "
                    "speak HTTP or HTTPS?", url=url)
            return e.RegistryUnreachable(f"cannot reach the registry at {where} — is it running?", url=url)
        if isinstance(exc, requests.exceptions.InvalidURL):
            return e.RegistryUnreachable(f"the registry URL {where} is not valid", url=url)
        return e.RegistryUnreachable(f"the request to {where} failed: {exc.__class__.__name__}", url=url)

    def _status_error(self, status: int, body: bytes, url: str,
                      not_found: type[e.NotFound]) -> e.RegistryError:
        code, message, detail = _first_error(body)
        if status == 400 and b"HTTP request to an HTTPS server" in body:
            https_url = "https://" + self.base_url.split("://", 1)[-1]
            return e.RegistryTLSError(f"the registry at {self.base_url} speaks HTTPS — use {https_url}", url=url)
        if status == 401:
            if self.conf.username:
                return e.Unauthorized(f"the registry at {self.base_url} rejected the credentials of "
                                      f"“{self.conf.username}”", url=url)
            return e.Unauthorized(f"the registry at {self.base_url} needs credentials — set "
                                  "REGISTRYUI_REGISTRY_USERNAME and REGISTRYUI_REGISTRY_PASSWORD", url=url)
        if status == 403:
            return e.Unauthorized(f"the registry at {self.base_url} denied access"
                                  + (f": {message}" if message else ""), url=url)
        if status == 404:
            cls = _NOT_FOUND.get(code, not_found)
            path = urlsplit(url).path
            if path == "/v2/":
                return cls(f"{self.base_url} answered 404 to /v2/ — the URL is not a registry API", url=url)
            return cls(_missing(cls, path, message), url=url)
        if status == 405 or code == "UNSUPPORTED":
            return e.UnsupportedOperation(
                f"the registry at {self.base_url} does not support this operation"
                + (f" ({code}: {message})" if code else ""), url=url, status=status, code=code,
                detail=detail, body=body[:500].decode("utf-8", "replace"))
        if status == 503:
            # distribution's detail is "health check failed: please see /debug/health", an
            # endpoint of its debug server (http.debug.addr), not of the API's address.
            where = ("GET /debug/health on its debug address (http.debug.addr) names the failing check; "
                     "see also the registry's logs" if "/debug/health" in detail else "see the registry's logs")
            return e.RegistryAPIError(
                f"the registry at {self.base_url} answered 503 — its own health check fails "
                f"(often its storage): {where}", url=url, status=status, code=code,
                detail=detail)
        text = f"{code}: {message}" if code else f"HTTP {status}"
        return e.RegistryAPIError(f"the registry at {self.base_url} answered {text}", url=url, status=status,
                                  code=code, detail=detail)

    # -- writes (deletion, restore) ------------------------------------------------------

    def delete_manifest(self, name: str, digest: str) -> None:
        """DELETE /v2/<name>/manifests/<digest> (202).

        On distribution 2.8 and 3.x this also removes every tag that points at the digest.
        """
        check_name(name)
        check_digest(digest)
        self._write("DELETE", f"/v2/{name}/manifests/{digest}", not_found=e.ManifestUnknown)

    def delete_tag(self, name: str, tag: str) -> None:
        """DELETE /v2/<name>/manifests/<tag>: registry 3.x removes just that tag (202).

        2.8 answers 400 DIGEST_INVALID (it deletes by digest only), raised as RegistryAPIError.
        """
        check_name(name)
        check_tag(tag)
        self._write("DELETE", f"/v2/{name}/manifests/{tag}", not_found=e.ManifestUnknown)

    def put_manifest(self, name: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest by tag or digest; returns its digest once the registry agrees with the bytes."""
        check_name(name)
        check_reference(reference)
        if len(body) > MAX_MANIFEST_BYTES:
            raise e.MalformedContent(f"a manifest of {len(body)} bytes is over the {MAX_MANIFEST_BYTES}-byte "
                                     "limit registries accept")
        path = f"/v2/{name}/manifests/{reference}"
        if is_digest(reference):
            verify(body, reference, what="the manifest to put", url=self._url(path))
        expected = reference if is_digest(reference) else digest_of(body)
        resp = self._write("PUT", path, data=body, headers={"Content-Type": media_type},
                           not_found=e.NameUnknown)
        got = resp.headers.get("Docker-Content-Digest", "").strip() or expected
        if got != expected and not (is_digest(got) and digest_of(body, got.split(":", 1)[0]) == got):
            raise e.IntegrityError(
                f"the registry stored the manifest {name}:{reference} as {got[:150]}, but the bytes sent hash "
                f"to {expected}", url=self._url(path), expected=expected, actual=got[:150])
        return got

    def upload_blob(self, name: str, data: bytes) -> str:
        """Monolithic upload (POST /blobs/uploads/, then PUT <Location>&digest=); skipped if the
        repository already has the blob. Returns the digest."""
        check_name(name)
        digest = digest_of(data)
        with suppress(e.NotFound):  # BLOB_UNKNOWN, or NAME_UNKNOWN for a repository's first blob
            self.head_blob(name, digest)
            return digest
        start = self._url(f"/v2/{name}/blobs/uploads/")
        resp = self._write("POST", start, not_found=e.NameUnknown)
        location = resp.headers.get("Location", "").strip()
        if not location:
            raise e.MalformedContent(f"the registry at {self.base_url} started an upload without saying where "
                                     "to send it (no Location header)", url=start)
        target = urljoin(start, location)
        if urlsplit(target)[:2] != self._origin:
            # Never send the blob (and the credentials with it) anywhere but the registry itself.
            raise e.MalformedContent(
                f"the registry at {self.base_url} asked for the upload to go to {target[:300]}, which is not "
                "the registry's address — check its http.host setting or the proxy's X-Forwarded-* headers",
                url=start)
        parts = urlsplit(target)
        query = "&".join(q for q in (parts.query, f"digest={digest}") if q)
        target = urlunsplit(parts._replace(query=query))
        resp = self._write("PUT", target, data=data, headers={"Content-Type": "application/octet-stream"},
                           not_found=e.NotFound)
        got = resp.headers.get("Docker-Content-Digest", "").strip()
        if got and got != digest:
            raise e.IntegrityError(f"the registry stored the blob as {got}, but the bytes sent hash to {digest}",
                                   url=target, expected=digest, actual=got)
        return digest

    def _write(self, method: str, path: str, *, not_found: type[e.NotFound], data: bytes | None = None,
               headers: dict[str, str] | None = None) -> requests.Response:
        """A request that changes the registry: `_send`'s error mapping, plus a body, and only a
        2xx counts as success."""
        url = self._url(path)
        resp = self._send(method, url, not_found=not_found, headers=headers, stream=True, data=data)
        resp.close()
        if not 200 <= resp.status_code < 300:
            raise e.RegistryAPIError(f"the registry at {self.base_url} answered HTTP {resp.status_code} to "
                                     f"{method} {urlsplit(url).path}", url=url, status=resp.status_code)
        return resp


class BlobStream:
    """A blob being streamed: its size and type, and its bytes as an iterator of chunks."""

    chunk_size = 256 * 1024

    def __init__(self, resp: requests.Response, digest: str, url: str) -> None:
        self._resp = resp
        self.digest = digest
        self.url = url
        self.size = _content_length(resp)
        self.media_type = _media_type(resp) or "application/octet-stream"

    def __iter__(self) -> Iterator[bytes]:
        algorithm, _, expected = self.digest.partition(":")
        hasher = hashlib.new(algorithm)
        try:
            for chunk in self._resp.iter_content(self.chunk_size):
                hasher.update(chunk)
                yield chunk
        except requests.RequestException as exc:
            raise e.RegistryUnreachable(f"the download of {self.digest} broke off", url=self.url) from exc
        finally:
            self.close()
        if hasher.hexdigest() != expected:
            # The bytes are already sent; raising cuts the download so the client sees a failure.
            raise e.IntegrityError(f"blob {self.digest} does not match its digest", url=self.url,
                                   expected=self.digest, actual=f"{algorithm}:{hasher.hexdigest()}")

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_RESOURCE_RE = re.compile(r"/v2/(?P<name>.+)/(?P<what>manifests|blobs|tags)/(?P<ref>[^/]+)")


def _missing(cls: type[e.NotFound], path: str, registry_message: str) -> str:
    """Say which repository, tag, manifest or blob is missing, in the user's terms."""
    match = _RESOURCE_RE.fullmatch(path)
    said = f" (the registry says: {registry_message})" if registry_message else ""
    if not match:
        return f"not found: {path}{said}"
    name, what, ref = match["name"], match["what"], match["ref"]
    if cls is e.NameUnknown or what == "tags":
        return f"there is no repository “{name}” in the registry{said}"
    if what == "blobs":
        return f"there is no blob {ref} in {name}{said}"
    noun = "manifest" if is_digest(ref) else "tag"
    return f"there is no {noun} “{ref}” in {name}{said}"


def endpoint_of(url: str) -> str:
    """A low-cardinality name for the API endpoint a URL addresses (never a repository name)."""
    path = urlsplit(url).path
    if path in ("/v2/", "/v2"):
        return "ping"
    if path.startswith("/v2/_catalog"):
        return "catalog"
    for marker, name in (("/tags/list", "tags"), ("/manifests/", "manifest"), ("/blobs/uploads", "upload"),
                         ("/blobs/", "blob")):
        if marker in path:
            return name
    return "other"


def _discard(resp: requests.Response) -> None:
    """Drop an answer that is answered by a retry (a 401's small body), keeping the connection if we can."""
    try:
        if resp.request is not None and resp.request.method != "HEAD":
            resp.raw.read(64 * 1024, decode_content=False)
    except Exception:  # noqa: BLE001 - the connection is closed below anyway
        pass
    finally:
        resp.close()


def _media_type(resp: requests.Response) -> str:
    return resp.headers.get("Content-Type", "").split(";", 1)[0].strip()


def _content_length(resp: requests.Response) -> int:
    try:
        return max(int(resp.headers.get("Content-Length", "0")), 0)
    except ValueError:
        return 0


def _next_link(resp: requests.Response, url: str) -> str | None:
    link = resp.links.get("next")
    target = urljoin(url, link["url"]) if link and link.get("url") else None
    # Only ever follow a page on the same registry.
    return target if target is not None and urlsplit(target)[:2] == urlsplit(url)[:2] else None


def _first_error(body: bytes) -> tuple[str, str, str]:
    try:
        doc: Any = json.loads(body)
        first = doc["errors"][0]
        detail = first.get("detail")
        return (str(first.get("code", ""))[:100], str(first.get("message", ""))[:500],
                "" if detail is None else str(detail)[:500])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "", "", ""  # no or a foreign error body: the status alone must do


def run_bounded[T](fn: Callable[[Any], T], items: list[Any], workers: int) -> list[T | BaseException]:
    """Run `fn` over items with at most `workers` in flight; failures are returned, not raised."""

    def guarded(item: Any) -> T | BaseException:
        try:
            return fn(item)
        except e.RegistryError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        return list(pool.map(guarded, items))
