"""Bearer token authentication, for real: Distribution 2.8.2 with ``auth.token`` and a real token server.

``testbed.tokenserver.TokenServer`` issues RS256 JWTs signed with an openssl-made key whose
self-signed certificate is the registry's ``rootcertbundle``; nothing is patched or faked.
The token server records every request, so the tests assert exactly which scopes the client
asked for, and how often.

What 2.8.2 requires of a token (tried on the binary, see ``test_jwt__what_2_8_2_checks``): the
header names the key by ``x5c`` (standard base64 DER, chained to the bundle) or ``kid`` (the
libtrust key ID of the bundle's certificate key) — either alone works, ``x5c`` wins when both
are there —, ``alg`` RS256 matching the signature; claims ``iss`` = ``auth.token.issuer``, ``aud``
= ``auth.token.service`` as a *string* (a JSON list is refused by 2.8.2), ``exp`` in the future
(60 s leeway), ``nbf`` not in the future if present, and ``access`` covering the request;
``sub``, ``iat``, ``jti`` and ``typ`` are not checked. Its challenge for a push names the actions
in Go map order, ``pull,push`` or ``push,pull`` at random: the client asks for exactly what it is
told, and keeps the token under its own ``pull,push`` too, so the next push finds it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from dashboard.registry import RegistryClient, ops
from dashboard.registry import errors as e
from dashboard.registry.auth import (
    DEFAULT_EXPIRES_IN,
    Token,
    TokenCache,
    bearer_challenge,
    parse_challenges,
    parse_token_response,
    scope_for,
)
from dashboard.registry.client import run_bounded
from dashboard.registry.models import RegistryConfig
from testbed import RegistryServer
from testbed import push as p
from testbed.server import free_port
from testbed.tokenserver import TokenServer, _b64url
from tests.helpers.pages import signed_in
from tests.helpers.servers import QuietHandler, serving

REPO = "team/app"
OTHER = "team/other"
USER, PASSWORD = "ci", "correct horse battery staple"
READER, READER_PASSWORD = "reader", "reader-pass-123"
PULL, PUSH, DELETE = f"repository:{REPO}:pull", f"repository:{REPO}:pull,push", f"repository:{REPO}:delete"
CATALOG = "registry:catalog:*"
T = (5, 10)


@dataclass
class Bed:
    tokens: TokenServer
    server: RegistryServer
    digests: dict[str, str]
    calls: list[tuple[str, str, str]]

    def client(self, username: str = USER, password: str = PASSWORD, **config: object) -> RegistryClient:
        conf = RegistryConfig(url=self.server.url, username=username, password=password, connect_timeout=2.0,
                              read_timeout=10.0, **config)  # type: ignore[arg-type]
        return RegistryClient(conf, observer=lambda method, endpoint, status, _s: self.calls.append(
            (method, endpoint, status)))

    def admin(self) -> requests.Session:
        return self.tokens.session(REPO, OTHER)

    def tags(self, repo: str = REPO) -> list[str]:
        r = self.admin().get(f"{self.server.url}/v2/{repo}/tags/list", timeout=T)
        assert r.status_code == 200, r.text
        return sorted(r.json().get("tags") or [])

    def digest(self, tag: str) -> str | None:
        r = self.admin().head(f"{self.server.url}/v2/{REPO}/manifests/{tag}",
                              headers={"Accept": p.MANIFEST_ACCEPT}, timeout=T)
        return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None

    def scopes(self) -> list[str]:
        """The scopes the token server was asked for, actions in a fixed order (see `canon`)."""
        return [canon(s) for s in self.tokens.scopes()]

    def statuses(self, endpoint: str) -> list[str]:
        return [status for _m, ep, status in self.calls if ep == endpoint]


def canon(scope: str) -> str:
    """2.8.2 names the actions of a push scope in Go map order: "pull,push" or "push,pull"."""
    if not scope:
        return scope
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    order = {"pull": 0, "push": 1, "delete": 2}
    return f"{kind}:{name}:" + ",".join(sorted(actions.split(","), key=lambda a: (order.get(a, 9), a)))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One signing key for the module (RSA key generation is the slow part of a token server)."""
    directory = tmp_path_factory.mktemp("token-keys")
    TokenServer(directory).start().stop()
    return directory


def _image(text: str) -> p.Image:
    return p.build_image([{f"{text}.txt": f"content {text}\n".encode() * 20}], labels={"v": text})


def _seed(tokens: TokenServer, server: RegistryServer) -> dict[str, str]:
    s = tokens.session(REPO, OTHER)
    digests = {v: p.push_image(server.url, REPO, _image(v), v, session=s) for v in ("1.0", "2.0", "3.0")}
    digests["latest"] = p.push_image(server.url, REPO, _image("2.0"), "latest", session=s)
    digests["other"] = p.push_image(server.url, OTHER, _image("other"), "v1", session=s)
    return digests


@pytest.fixture
def bed(tmp_path: Path, keys: Path) -> Iterator[Bed]:
    grants = {READER: {"repository:*": ["pull"], "registry:catalog:*": ["*"]}}
    with TokenServer(keys, users={USER: PASSWORD, READER: READER_PASSWORD}, grants=grants) as tokens, \
            RegistryServer(tmp_path / "registry", token_auth=tokens) as server:
        yield Bed(tokens, server, _seed(tokens, server), [])


# -- what the registry asks, and what the token server issues ----------------------------------


def test_registry__challenges_name_the_scope_of_each_request(bed: Bed) -> None:
    url = bed.server.url
    asked = {
        ("GET", "/v2/"): "",
        ("GET", "/v2/_catalog"): CATALOG,
        ("GET", f"/v2/{REPO}/tags/list"): PULL,
        ("HEAD", f"/v2/{REPO}/manifests/latest"): PULL,
        ("PUT", f"/v2/{REPO}/manifests/latest"): PUSH,
        ("POST", f"/v2/{REPO}/blobs/uploads/"): PUSH,
        ("DELETE", f"/v2/{REPO}/manifests/{bed.digests['1.0']}"): DELETE,
    }
    for (method, path), scope in asked.items():
        r = requests.request(method, url + path, timeout=T)
        challenge = bearer_challenge(r.headers)
        assert r.status_code == 401 and challenge is not None, (method, path)
        assert (challenge.realm, challenge.service, canon(challenge.scope)) == \
            (bed.tokens.realm, bed.tokens.service, scope)
        assert scope_for(method, path) == scope  # the client derives the same scope up front


def test_jwt__what_2_8_2_checks(bed: Bed) -> None:
    """Which header fields and claims the real 2.8.2 insists on (documented in the module docstring)."""
    signer = bed.tokens._signer
    assert signer is not None
    now = int(time.time())
    claims = {"iss": bed.tokens.issuer, "sub": USER, "aud": bed.tokens.service, "exp": now + 300, "nbf": now - 1,
              "iat": now, "jti": "j", "access": [{"type": "registry", "name": "catalog", "actions": ["*"]}]}
    x5c = [base64.b64encode(signer.cert_der).decode()]

    def status(header: dict[str, object], body: dict[str, object]) -> int:
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(body).encode())
        token = signing_input + "." + _b64url(signer.key.sign_sha256(signing_input.encode()))
        return requests.get(f"{bed.server.url}/v2/_catalog", headers={"Authorization": f"Bearer {token}"},
                            timeout=T).status_code

    rs = {"alg": "RS256"}
    assert status({**rs, "x5c": x5c}, claims) == 200
    assert status({**rs, "kid": signer.kid}, claims) == 200
    assert status({**rs, "kid": "AAAA:BBBB", "x5c": x5c}, claims) == 200  # x5c is tried first
    assert status(rs, claims) == 401  # no way to find the key
    assert status({**rs, "kid": signer.kid.lower()}, claims) == 401
    assert status({"alg": "RS384", "kid": signer.kid}, claims) == 401
    for required in ("iss", "aud", "exp", "access"):
        assert status({**rs, "kid": signer.kid}, {k: v for k, v in claims.items() if k != required}) == 401, required
    for optional in ("sub", "nbf", "iat", "jti"):
        assert status({**rs, "kid": signer.kid}, {k: v for k, v in claims.items() if k != optional}) == 200, optional
    assert status({**rs, "kid": signer.kid}, {**claims, "aud": [bed.tokens.service]}) == 401  # 2.8.2: a string
    assert status({**rs, "kid": signer.kid}, {**claims, "exp": now - 30}) == 200  # 60 s leeway
    assert status({**rs, "kid": signer.kid}, {**claims, "exp": now - 120}) == 401


# -- reading ------------------------------------------------------------------------------------


def test_read__scoped_tokens_for_catalog_tags_manifests_and_blobs(bed: Bed) -> None:
    client = bed.client()
    assert client.catalog() == [REPO, OTHER]
    assert sorted(client.tags(REPO)) == ["1.0", "2.0", "3.0", "latest"]
    manifest = client.manifest(REPO, "latest")
    assert manifest.digest == bed.digests["latest"]
    assert manifest.config is not None
    assert client.config(REPO, manifest.config.digest).labels == {"v": "2.0"}
    layer = manifest.layers[0]
    assert client.head_blob(REPO, layer.digest).size == layer.size
    with client.open_blob(REPO, layer.digest) as stream:
        assert sum(len(chunk) for chunk in stream) == layer.size
    assert client.head_manifest(REPO, "1.0").digest == bed.digests["1.0"]

    # One token per scope, asked for exactly as the registry named it, with the user's password.
    assert bed.scopes() == [CATALOG, PULL]
    assert [(r.user, r.status, r.service) for r in bed.tokens.seen()] == [(USER, 200, bed.tokens.service)] * 2
    # Each scope cost one 401 and one token request; everything after went with the cached token.
    assert bed.statuses("token") == ["200", "200"]
    assert bed.statuses("catalog") == ["401", "200"]
    assert bed.statuses("tags") == ["401", "200"]
    assert "401" not in bed.statuses("manifest") + bed.statuses("blob")


def test_read__warm_second_read_makes_no_token_requests_and_no_401s(bed: Bed) -> None:
    client = bed.client()
    client.tags(REPO)
    client.manifest(REPO, "latest")
    assert len(bed.tokens.seen()) == 1
    bed.calls.clear()

    assert sorted(client.tags(REPO)) == ["1.0", "2.0", "3.0", "latest"]
    assert client.manifest(REPO, "1.0").digest == bed.digests["1.0"]
    assert client.head_manifest(REPO, "3.0").digest == bed.digests["3.0"]
    assert len(bed.tokens.seen()) == 1  # the cache answered
    assert [status for _m, _e, status in bed.calls] == ["200"] * 3  # no round trip but the request itself

    # Another repository is another scope: one more token, for exactly that repository.
    client.tags(OTHER)
    assert bed.scopes()[-1] == f"repository:{OTHER}:pull" and len(bed.tokens.seen()) == 2


def test_read__concurrent_cold_reads_share_one_token_request(bed: Bed) -> None:
    client = bed.client()
    digests = [bed.digests[v] for v in ("1.0", "2.0", "3.0")] * 6
    results = run_bounded(lambda d: client.head_manifest(REPO, d), digests, 16)
    assert [r.digest for r in results] == digests  # type: ignore[union-attr]
    assert bed.scopes() == [PULL]


def test_ping__token_without_scope(bed: Bed) -> None:
    assert bed.client().ping().api_version == "registry/2.0"
    (request,) = bed.tokens.seen()
    assert (request.user, request.scopes, request.status) == (USER, (), 200)


def test_observer__sees_the_token_request_as_endpoint_token(bed: Bed) -> None:
    bed.client().tags(REPO)
    assert bed.calls == [("GET", "tags", "401"), ("GET", "token", "200"), ("GET", "tags", "200")]


# -- writing ------------------------------------------------------------------------------------


def test_untag_and_delete__through_ops_with_push_and_delete_tokens(bed: Bed) -> None:
    client = bed.client()
    result, tag_delete_worked = ops.untag(client, REPO, "latest", expected_digest=bed.digests["latest"])
    assert (result.method, tag_delete_worked) == ("throwaway", False)  # 2.8: throwaway push + delete by digest
    assert bed.tags() == ["1.0", "2.0", "3.0"]
    assert bed.digest("2.0") == bed.digests["2.0"]  # the image that shared the digest keeps its tag
    # pull (HEAD), delete (the tag DELETE 2.8 refuses, then the throwaway), pull,push (upload + PUT):
    assert sorted(bed.scopes()) == sorted([PULL, DELETE, PUSH])

    client.delete_manifest(REPO, bed.digests["1.0"])
    assert ops.untag(client, REPO, "3.0", tag_delete=False)[0].method == "throwaway"
    assert bed.tags() == ["2.0"]
    assert len(bed.tokens.seen()) == 3  # everything after the first untag used cached tokens


def test_push_and_restore__through_the_client(bed: Bed) -> None:
    client = bed.client()
    image = _image("pushed")
    for blob in (image.config, *image.layers):
        assert blob is not None
        assert client.upload_blob(OTHER, blob.data) == blob.digest
    digest = client.put_manifest(OTHER, "v2", image.manifest, image.media_type)
    assert digest == image.digest and bed.tags(OTHER) == ["v1", "v2"]
    client.delete_manifest(OTHER, digest)
    assert bed.tags(OTHER) == ["v1"]
    ops.restore(client, OTHER, image.manifest, image.media_type, digest, ["v2"])
    assert bed.tags(OTHER) == ["v1", "v2"]
    assert sorted(bed.scopes()) == sorted(f"repository:{OTHER}:{a}" for a in ("pull", "pull,push", "delete"))
    assert len(bed.tokens.seen()) == 3


def test_delete_permission_missing__untag_refused_clearly_and_the_tag_stays(bed: Bed) -> None:
    client = bed.client(READER, READER_PASSWORD)
    assert sorted(client.tags(REPO)) == ["1.0", "2.0", "3.0", "latest"]  # pull is granted

    for tag_delete in (None, False):
        with pytest.raises(e.Unauthorized) as info:
            ops.untag(client, REPO, "latest", tag_delete=tag_delete)
        msg = str(info.value)
        assert f"“{READER}”" in msg and "delete" in msg and f"repository:{REPO}:delete" in msg
        assert READER_PASSWORD not in msg
    assert bed.tags() == ["1.0", "2.0", "3.0", "latest"] and bed.digest("latest") == bed.digests["latest"]

    support = ops.probe_delete(client, REPO)
    assert not support.enabled and f"repository:{REPO}:delete" in support.reason
    with pytest.raises(e.Unauthorized, match="did not grant “reader” the “delete” permission on “team/app”"):
        client.delete_manifest(REPO, bed.digests["1.0"])
    # The token server was asked, and granted nothing beyond pull.
    asked = [r for r in bed.tokens.seen() if DELETE in r.scopes]
    assert asked and all(r.granted == (("repository", REPO, ()),) for r in asked)


# -- failures -------------------------------------------------------------------------------------


def test_wrong_password__unauthorized_names_the_realm_and_user_never_the_password(bed: Bed) -> None:
    secret = "wrong-password-9f8e7d"
    client = bed.client(USER, secret)
    for call in (client.ping, client.catalog, lambda: client.tags(REPO)):
        with pytest.raises(e.Unauthorized) as info:
            call()
        msg = str(info.value)
        assert msg == (f"the token server {bed.tokens.realm} of the registry at {bed.server.url} rejected the "
                       f"credentials of “{USER}”")
        assert secret not in msg and secret not in repr(info.value) and secret not in str(info.value.url)
    assert {r.status for r in bed.tokens.seen()} == {401}


def test_no_credentials__token_server_without_anonymous_access__says_which_settings(bed: Bed) -> None:
    with pytest.raises(e.Unauthorized) as info:
        bed.client("", "").catalog()
    msg = str(info.value)
    assert f"the registry at {bed.server.url} needs credentials" in msg and bed.tokens.realm in msg
    assert "REGISTRYUI_REGISTRY_USERNAME" in msg and "REGISTRYUI_REGISTRY_PASSWORD" in msg
    assert bed.tokens.seen()[0].user is None


def test_anonymous_pull__works_and_is_refused_delete(tmp_path: Path, keys: Path) -> None:
    with TokenServer(keys, anonymous={"repository:*": ["pull"]}) as tokens, \
            RegistryServer(tmp_path / "anon", token_auth=tokens) as server:
        p.push_image(server.url, REPO, _image("anon"), "v1", session=tokens.session(REPO))
        client = RegistryClient(RegistryConfig(url=server.url))
        assert client.tags(REPO) == ["v1"]
        with pytest.raises(e.Unauthorized) as info:
            client.catalog()
        assert "needs credentials" in str(info.value) and "access to the catalog" in str(info.value)


def test_token_server_down__unauthorized_names_the_realm_and_why(bed: Bed) -> None:
    realm = bed.tokens.realm
    bed.tokens.stop()
    with pytest.raises(e.Unauthorized) as info:
        bed.client().tags(REPO)
    assert str(info.value) == (f"could not get a token for “{USER}” from the token server {realm} of the registry at "
                               f"{bed.server.url}: connection refused — is the token server running?")


def test_untrusted_signing_key__says_the_registry_does_not_accept_the_tokens(tmp_path: Path, keys: Path) -> None:
    with TokenServer(keys, users={USER: PASSWORD}, rogue=True) as tokens, \
            RegistryServer(tmp_path / "rogue", token_auth=tokens) as server:
        client = RegistryClient(RegistryConfig(url=server.url, username=USER, password=PASSWORD))
        with pytest.raises(e.Unauthorized) as info:
            client.catalog()
    msg = str(info.value)
    assert "does not accept the tokens of its token server" in msg and "invalid_token" in msg
    assert "rootcertbundle" in msg and PASSWORD not in msg


def test_new_signing_key__a_refused_cached_token_is_replaced_once(tmp_path: Path) -> None:
    keydir = tmp_path / "keys"
    tokens = TokenServer(keydir, users={USER: PASSWORD}).start()
    server = RegistryServer(tmp_path / "reg", port=free_port(), token_auth=tokens).start()
    try:
        p.push_image(server.url, REPO, _image("rot"), "v1", session=tokens.session(REPO))
        client = RegistryClient(RegistryConfig(url=server.url, username=USER, password=PASSWORD))
        assert client.tags(REPO) == ["v1"]
        # The token server gets a new key and address; the registry restarts trusting only that key.
        tokens.stop()
        for old in keydir.glob("token-signer.*"):
            old.unlink()
        tokens.start()
        server.stop()
        server.start()
        tokens.clear()
        assert client.tags(REPO) == ["v1"]  # the cached token is refused (invalid_token), a new one works
        assert tokens.scopes() == [PULL]
    finally:
        server.stop()
        tokens.stop()


def test_access_token_field_without_expires_in__accepted_with_the_default_lifetime(tmp_path: Path,
                                                                                  keys: Path) -> None:
    with TokenServer(keys, users={USER: PASSWORD}, token_field="access_token", expires_in=None) as tokens, \
            RegistryServer(tmp_path / "oauth", token_auth=tokens) as server:
        client = RegistryClient(RegistryConfig(url=server.url, username=USER, password=PASSWORD))
        assert client.catalog() == []
        assert client.catalog() == []
        assert len(tokens.seen()) == 1


def test_basic_credentials_go_to_the_realm_not_to_the_token_registry_api(bed: Bed) -> None:
    seen: list[tuple[str, str]] = []
    upstream = bed.server.url

    class Proxy(QuietHandler):  # records what the client sends to the registry's API
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            seen.append((self.path, auth.split(" ", 1)[0]))
            r = requests.get(upstream + self.path, headers={"Authorization": auth} if auth else {}, timeout=T)
            body = r.content
            self.send_response(r.status_code)
            for name in ("Content-Type", "WWW-Authenticate", "Docker-Distribution-Api-Version"):
                if name in r.headers:
                    self.send_header(name, r.headers[name])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Proxy) as url:
        client = RegistryClient(RegistryConfig(url=url, username=USER, password=PASSWORD))
        client.catalog()
        client.tags(REPO)
        client.tags(OTHER)
    # The first request of a new client carries basic credentials (as for an htpasswd registry);
    # once the registry has asked for a bearer token, only tokens go to it.
    assert seen[0] == ("/v2/_catalog?n=1000", "Basic")
    assert [scheme for _path, scheme in seen[1:]] == ["Bearer", "", "Bearer", "", "Bearer"]
    assert [r.user for r in bed.tokens.seen()] == [USER] * 3  # the password went to the realm


def test_secrets__never_in_reprs_or_messages(bed: Bed) -> None:
    client = bed.client()
    client.tags(REPO)
    cached = client._tokens.get((bed.tokens.realm, bed.tokens.service, PULL))
    assert cached is not None and cached.value.count(".") == 2
    for text in (repr(cached), repr(client._tokens), str(vars(client._tokens)["_tokens"])):
        assert cached.value not in text and PASSWORD not in text
    reader = bed.client(READER, READER_PASSWORD)
    with pytest.raises(e.Unauthorized) as info:
        reader.delete_manifest(REPO, bed.digests["1.0"])
    token = reader._tokens.get((bed.tokens.realm, bed.tokens.service, PULL))
    assert READER_PASSWORD not in str(info.value) and (token is None or token.value not in str(info.value))


# -- the parts, without a registry -----------------------------------------------------------------


def test_challenge_parsing__quoted_strings_several_challenges_and_basic() -> None:
    (bearer,) = parse_challenges('Bearer realm="https://auth.example/token",service="registry.example",'
                                 'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"')
    assert bearer.scheme == "bearer" and bearer.realm == "https://auth.example/token"
    assert bearer.scopes == ("repository:a/b:pull,push", "repository:c:pull")
    assert bearer.error == "insufficient_scope"
    both = parse_challenges('Basic realm="a, \\"quoted\\" realm", Bearer REALM = "r" , scope=x')
    assert [(c.scheme, dict(c.params)) for c in both] == [("basic", {"realm": 'a, "quoted" realm'}),
                                                            ("bearer", {"realm": "r", "scope": "x"})]
    assert parse_challenges("Negotiate abc==")[0].token68 == "abc=="
    assert bearer_challenge({"WWW-Authenticate": 'Basic realm="x"'}) is None
    assert bearer_challenge({}) is None


def test_scope_for__paths_and_methods() -> None:
    assert scope_for("GET", "/v2/") == ""
    assert scope_for("GET", "/v2/_catalog") == CATALOG
    assert scope_for("HEAD", "/v2/a/b/c/manifests/v1") == "repository:a/b/c:pull"
    assert scope_for("GET", "/v2/x/tags/blobs/sha256:ab") == "repository:x/tags:pull"
    assert scope_for("PATCH", "/v2/a/blobs/uploads/uuid-1") == "repository:a:pull,push"
    assert scope_for("DELETE", "/v2/a/manifests/sha256:ab") == "repository:a:delete"
    assert scope_for("GET", "/other") is None


def test_token_response__lifetime_default_issued_at_and_margin() -> None:
    now, wall = 1000.0, 1_700_000_000.0
    t = parse_token_response(b'{"access_token": "abc"}', now=now, wall_now=wall)
    assert (t.value, t.expires_in) == ("abc", DEFAULT_EXPIRES_IN) and t.valid_until == now + 60 - 10
    issued = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall - 100)) + ".123456789Z"
    t = parse_token_response(json.dumps({"token": "t", "expires_in": 300, "issued_at": issued}).encode(),
                             now=now, wall_now=wall)
    assert abs(t.valid_until - (now + 300 - 99.877 - 10)) < 0.001  # issued 99.877 s ago
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall + 3600))  # a skewed clock: count from now
    assert parse_token_response(json.dumps({"token": "t", "expires_in": 300, "issued_at": future}).encode(),
                                now=now, wall_now=wall).valid_until == now + 290
    assert "s3cr3t-t0ken" not in repr(parse_token_response(b'{"token": "s3cr3t-t0ken"}'))


def test_token_cache__expiry_and_one_fetch_per_key() -> None:
    cache = TokenCache()
    key = ("realm", "svc", "scope")
    cache.put(key, Token("old", valid_until=time.monotonic() - 1))
    assert cache.get(key) is None and len(cache) == 0
    fetched: list[int] = []

    def fetch() -> Token:
        fetched.append(1)
        time.sleep(0.05)
        return Token("new", valid_until=time.monotonic() + 60)

    threads = [threading.Thread(target=cache.fetch, args=(key, fetch)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fetched) == 1
    current = cache.get(key)
    assert current is not None and cache.fetch(key, fetch, stale=current) is not current and len(fetched) == 2


# -- the dashboard ----------------------------------------------------------------------------------


def test_dashboard__maintainer_browses_and_untags_on_a_token_registry(client, bed: Bed, point_at, db) -> None:
    point_at(bed.server.url, USERNAME=USER, PASSWORD=PASSWORD, ANONYMOUS_READ=False)
    signed_in(client, "mia", "maintainer", password="pw-mia-123")

    catalog = client.get("/")
    assert catalog.status_code == 200 and REPO in catalog.content.decode()
    page = client.get(f"/r/{REPO}/")
    body = page.content.decode()
    assert page.status_code == 200 and 'data-tag="latest"' in body and PASSWORD not in body
    response = client.post(f"/r/{REPO}/-/tags/latest/delete/", {"digest": bed.digests["latest"]}, follow=True)
    assert response.status_code == 200
    assert any("untagged latest" in str(m) for m in response.context["messages"])
    assert bed.tags() == ["1.0", "2.0", "3.0"]
    assert {CATALOG, PULL, DELETE, PUSH} <= set(bed.scopes())
    assert all(r.user == USER and r.status == 200 for r in bed.tokens.seen())
