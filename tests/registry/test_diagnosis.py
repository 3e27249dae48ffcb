"""What the operator reads when the registry is misconfigured: every failure produced for real.

Each test starts the real Distribution 2.8.2 binary (``RegistryServer``) in the configuration an
operator gets wrong — TLS with a private CA, htpasswd auth, a broken storage, deletion off — or
points the client at something real that is not the registry it expects (a closed port, a plain
web server), and asserts the message of ``RegistryClient``'s error. Nothing is patched or faked.

What 2.8.2 answers (checked on the binary):

* plain HTTP to its TLS port: ``400`` with the body "Client sent an HTTP request to an HTTPS
  server." (Go's net/http, no registry headers);
* TLS to its plain port: no TLS server hello, OpenSSL says WRONG_VERSION_NUMBER;
* htpasswd without or with wrong credentials (unknown user or wrong password alike): ``401``
  UNAUTHORIZED "authentication required", ``WWW-Authenticate: Basic realm=…``;
* failing storage health check: every API request ``503`` UNAVAILABLE "service unavailable",
  detail "health check failed: please see /debug/health"; the debug server's /debug/health
  answers ``503`` ``{"storagedriver_filesystem": "filesystem: stat …: not a directory"}``;
* deletion off: ``405`` UNSUPPORTED to DELETE.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest
import requests

from dashboard.registry import RegistryClient
from dashboard.registry import errors as e
from dashboard.registry.models import RegistryConfig
from dashboard.registry.ops import DeleteSupport, probe_delete
from testbed import RegistryServer
from testbed import push as p
from tests.helpers.servers import serving

T = (5, 10)  # (connect, read) seconds for the direct requests below
USER, PASSWORD = "alice", "correct horse battery staple"


def client_for(url: str, **config: object) -> RegistryClient:
    conf = RegistryConfig(url=url, connect_timeout=2.0, read_timeout=10.0, **config)  # type: ignore[arg-type]
    return RegistryClient(conf)


def image(text: str) -> p.Image:
    return p.build_image([{"data.txt": text.encode()}], labels={"test": text})


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "tls", tls=True) as server:
        yield server


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "auth", htpasswd={USER: PASSWORD}) as server:
        yield server


# -- nothing listening ------------------------------------------------------------------------


def test_closed_port__connection_refused_asks_whether_the_registry_runs() -> None:
    # A socket bound but not listening holds the port (nobody else can take it) and refuses
    # connections, exactly like a stopped registry.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{held.getsockname()[1]}"
        client = client_for(url)

        with pytest.raises(e.RegistryUnreachable) as info:
            client.ping()
        assert str(info.value) == f"connection refused at {url} — is the registry running?"
        with pytest.raises(e.RegistryUnreachable, match="connection refused"):
            client.catalog()


# -- TLS --------------------------------------------------------------------------------------


def test_tls__self_signed_without_ca_bundle__cannot_verify_and_names_the_ca_setting(
        tls_registry: RegistryServer) -> None:
    assert tls_registry.url.startswith("https://127.0.0.1:")
    with pytest.raises(e.RegistryTLSError) as info:
        client_for(tls_registry.url).ping()

    msg = str(info.value)
    assert msg.startswith(f"the TLS certificate of {tls_registry.url} could not be verified (")
    assert "unable to get local issuer certificate" in msg  # OpenSSL's reason, not a urllib3 repr
    assert "REGISTRYUI_REGISTRY_CA_BUNDLE" in msg and "REGISTRYUI_REGISTRY_INSECURE" in msg
    assert "MaxRetryError" not in msg and "_ssl.c" not in msg


def test_tls__with_the_ca_bundle__ping_and_catalog_work_by_ip_and_by_name(tls_registry: RegistryServer) -> None:
    assert tls_registry.ca_path is not None and tls_registry.ca_path.is_file()
    p.push_image(tls_registry.url, "acme/app", image("tls"), "latest", session=_session(tls_registry))

    for url in (tls_registry.url, f"https://localhost:{tls_registry.port}"):  # SAN IP:127.0.0.1, DNS:localhost
        client = client_for(url, ca_bundle=str(tls_registry.ca_path))
        assert client.ping().api_version == "registry/2.0"
        assert client.catalog() == ["acme/app"]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls__insecure__ping_works_without_the_ca(tls_registry: RegistryServer) -> None:
    assert client_for(tls_registry.url, insecure=True).ping().api_version == "registry/2.0"


def test_tls_registry_addressed_with_http__says_it_speaks_https(tls_registry: RegistryServer) -> None:
    http_url = f"http://127.0.0.1:{tls_registry.port}"
    # What Go's server really answers to plain HTTP on its TLS port:
    r = requests.get(f"{http_url}/v2/", timeout=T)
    assert (r.status_code, r.text) == (400, "Client sent an HTTP request to an HTTPS server.\n")

    with pytest.raises(e.RegistryTLSError) as info:
        client_for(http_url).ping()
    assert str(info.value) == f"the registry at {http_url} speaks HTTPS — use {tls_registry.url}"


def test_plain_registry_addressed_with_https__says_it_speaks_plain_http(empty_registry: RegistryServer) -> None:
    https_url = f"https://127.0.0.1:{empty_registry.port}"
    with pytest.raises(e.RegistryTLSError) as info:
        client_for(https_url).ping()
    assert str(info.value) == f"the registry at {https_url} speaks plain HTTP — use {empty_registry.url}"


# -- htpasswd ---------------------------------------------------------------------------------


def test_htpasswd__no_credentials__says_which_settings_to_set(auth_registry: RegistryServer) -> None:
    r = requests.get(f"{auth_registry.url}/v2/", timeout=T)
    assert r.status_code == 401 and r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert r.headers["WWW-Authenticate"] == 'Basic realm="registryui-testbed"'

    with pytest.raises(e.Unauthorized) as info:
        client_for(auth_registry.url).ping()
    msg = str(info.value)
    assert f"the registry at {auth_registry.url} needs credentials" in msg
    assert "REGISTRYUI_REGISTRY_USERNAME" in msg and "REGISTRYUI_REGISTRY_PASSWORD" in msg


@pytest.mark.parametrize("username, password", [(USER, "wrong"), ("mallory", PASSWORD)],
                         ids=["wrong-password", "unknown-user"])
def test_htpasswd__wrong_credentials__names_the_user_and_says_rejected(
        auth_registry: RegistryServer, username: str, password: str) -> None:
    client = client_for(auth_registry.url, username=username, password=password)
    with pytest.raises(e.Unauthorized) as info:
        client.ping()
    assert str(info.value) == f"the registry at {auth_registry.url} rejected the credentials of “{username}”"
    assert password not in str(info.value)
    with pytest.raises(e.Unauthorized, match="rejected the credentials"):
        client.catalog()


def test_htpasswd__right_credentials__ping_catalog_and_delete_probe_work(auth_registry: RegistryServer) -> None:
    p.push_image(auth_registry.url, "acme/app", image("auth"), "latest", session=_session(auth_registry))
    client = client_for(auth_registry.url, username=USER, password=PASSWORD)

    assert client.ping().api_version == "registry/2.0"
    assert client.catalog() == ["acme/app"]
    assert probe_delete(client, "acme/app") == DeleteSupport(enabled=True)


def test_tls_and_htpasswd_together__the_usual_private_registry(tmp_path: Path) -> None:
    with RegistryServer(tmp_path / "both", tls=True, htpasswd={USER: PASSWORD}) as server:
        ca = str(server.ca_path)
        with pytest.raises(e.Unauthorized, match="REGISTRYUI_REGISTRY_USERNAME"):
            client_for(server.url, ca_bundle=ca).ping()
        with pytest.raises(e.RegistryTLSError, match="REGISTRYUI_REGISTRY_CA_BUNDLE"):
            client_for(server.url, username=USER, password=PASSWORD).ping()
        client = client_for(server.url, ca_bundle=ca, username=USER, password=PASSWORD)
        assert client.ping().api_version == "registry/2.0"
        assert client.catalog() == []


# -- not a registry ---------------------------------------------------------------------------


def test_plain_web_server__404_to_v2__says_the_url_is_not_a_registry_api(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("<h1>some other service</h1>")
    with serving(functools.partial(_QuietHandler, directory=str(tmp_path / "www"))) as url:
        assert requests.get(f"{url}/", timeout=T).status_code == 200
        assert requests.get(f"{url}/v2/", timeout=T).status_code == 404

        with pytest.raises(e.NotFound) as info:
            client_for(url).ping()
        assert str(info.value) == f"{url} answered 404 to /v2/ — the URL is not a registry API"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, fmt: str, *args: object) -> None:
        pass


# -- the registry's own health check ----------------------------------------------------------


def test_broken_storage__api_answers_503__message_points_at_its_health_check_and_storage(
        tmp_path: Path) -> None:
    with RegistryServer(tmp_path / "broken", debug=True, broken_storage=True) as server:
        # The debug server names the failing check: the storage driver, with the OS error.
        health = requests.get(f"{server.debug_url}/debug/health", timeout=T)
        assert health.status_code == 503
        assert set(health.json()) == {"storagedriver_filesystem"}
        assert "not a directory" in health.json()["storagedriver_filesystem"]
        # The API answers 503 UNAVAILABLE to everything while the check fails.
        api = requests.get(f"{server.url}/v2/_catalog", timeout=T)
        assert api.status_code == 503
        assert api.json()["errors"][0]["code"] == "UNAVAILABLE"

        client = client_for(server.url)
        for call in (client.ping, client.catalog):
            with pytest.raises(e.RegistryAPIError) as info:
                call()
            err = info.value
            assert (err.status, err.code) == (503, "UNAVAILABLE")
            assert err.detail == "health check failed: please see /debug/health"
            msg = str(err)
            assert msg.startswith(f"the registry at {server.url} answered 503 — its own health check fails")
            assert "storage" in msg and "/debug/health" in msg and "http.debug.addr" in msg


def test_debug_on_healthy_storage__health_ok_metrics_served_and_ping_works(tmp_path: Path) -> None:
    with RegistryServer(tmp_path / "healthy", debug=True) as server:
        assert "interval:" in server.config_path.read_text()  # the storage health check runs
        health = requests.get(f"{server.debug_url}/debug/health", timeout=T)
        assert (health.status_code, health.json()) == (200, {})
        metrics = requests.get(f"{server.debug_url}/metrics", timeout=T)
        assert metrics.status_code == 200 and "registry_" in metrics.text
        assert client_for(server.url).ping().api_version == "registry/2.0"


# -- deletion switched off --------------------------------------------------------------------


def test_deletion_disabled__probe_says_disabled_with_the_env_setting(tmp_path: Path) -> None:
    with RegistryServer(tmp_path / "nodelete", delete_enabled=False) as server:
        support = probe_delete(client_for(server.url), "acme/app")
    assert support.enabled is False and support.read_only is False
    assert support.reason.startswith(f"The registry at {server.url} was started without deletion")
    assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in support.reason


# -- helpers ----------------------------------------------------------------------------------


def _session(server: RegistryServer) -> requests.Session:
    s = requests.Session()
    s.verify = server.verify
    s.auth = server.auth
    s.trust_env = False
    return s
