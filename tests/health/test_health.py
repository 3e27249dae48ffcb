"""Health panels, the machine endpoints and the dashboard's own metrics, on real servers."""

from __future__ import annotations

import pytest
from django.utils import timezone

from dashboard.models import Deletion, RegistryEvent
from testbed import RegistryServer
from tests.helpers.html import Node, dom
from tests.helpers.pages import closed_port, signed_in
from tests.helpers.servers import QuietHandler, serving


def test_health_json__healthy_registry__every_check_and_overall_status(client, dashboard, configure) -> None:
    configure(STORAGE_PATH=str(dashboard.server.storage_dir), ANONYMOUS_READ=False)
    response = client.get("/-/health.json")
    assert response.status_code == 200
    doc = response.json()
    assert set(doc["checks"]) == {"api", "debug", "storage", "content", "deletion", "gc", "index"}
    assert doc["checks"]["api"]["status"] == "ok" and doc["checks"]["api"]["detail"]["api_version"] == "registry/2.0"
    assert doc["checks"]["content"]["detail"]["repositories"] == len(dashboard.seeded.repos)
    # Counted as the catalog counts: tags, and attachment tags apart.
    attachments = len(dashboard.seeded.attachments)
    tags = sum(len(t) for t in dashboard.seeded.tags.values())
    assert doc["checks"]["content"]["detail"]["tags"] == tags - attachments
    assert doc["checks"]["content"]["detail"]["attachments"] == attachments
    assert doc["checks"]["deletion"]["status"] == "ok"
    assert doc["checks"]["storage"]["detail"]["blob_count"] > 0
    debug = doc["checks"]["debug"]
    assert debug["status"] == "off" and "REGISTRYUI_REGISTRY_DEBUG_URL" in debug["explanation"]
    assert doc["status"] == "ok"


def test_health_json__registry_down__503_with_the_diagnosis(client, dashboard, configure) -> None:
    port = closed_port()
    configure(REGISTRY_URL=f"http://127.0.0.1:{port}")
    response = client.get("/-/health.json")
    assert response.status_code == 503
    api = response.json()["checks"]["api"]
    assert api["status"] == "failing"
    assert api["explanation"] == f"connection refused at http://127.0.0.1:{port} — is the registry running?"
    assert response.json()["status"] == "failing"


def test_live__answers_without_registry_or_login(client, dashboard, configure) -> None:
    configure(REGISTRY_URL=f"http://127.0.0.1:{closed_port()}", ANONYMOUS_READ=False)
    response = client.get("/-/live")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_health_page__panels_explain_and_failing_panel_says_what_to_do(client, dashboard, configure) -> None:
    body = client.get("/-/health/").content.decode()
    assert body.count('class="check status-') == 7
    assert 'data-check="api"' in body and "registry/2.0" in body
    port = closed_port()
    configure(REGISTRY_URL=f"http://127.0.0.1:{port}")
    partial = client.get("/-/health/", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in partial and 'class="check status-failing"' in partial
    assert "is the registry running?" in partial and "Failing" in partial


def test_gc_panel__deletions_since_the_last_run_recommend_gc(client, dashboard) -> None:
    Deletion.objects.create(username="x", registry=dashboard.url, repository="acme/web", action="untag",
                            tags=["old"], digest="sha256:" + "0" * 64, media_type="x", manifest=b"{}")
    doc = client.get("/-/health.json").json()["checks"]["gc"]
    assert doc["status"] == "warning" and "1 deletion since the last garbage collection" in doc["explanation"]


def test_metrics__off_by_default__404(client, dashboard) -> None:
    assert client.get("/metrics").status_code == 404


def test_metrics__token_required__counts_requests_registry_calls_and_cache(client, dashboard, configure) -> None:
    configure(METRICS_TOKEN="s3cret-token")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    client.get("/r/acme/web/?details=1")
    client.get("/r/acme/web/?details=1")
    body = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).content.decode()
    assert 'registryui_http_requests_total{method="GET",status="200",view="repository"}' in body
    assert 'registryui_registry_requests_total{endpoint="manifest",method="GET",status="200"}' in body
    assert 'registryui_registry_request_seconds_count{endpoint="tags"}' in body
    assert 'registryui_cache_lookups_total{kind="config",result="hit"}' in body
    assert "registryui_gc_runs" in body
    assert "acme/web" not in body  # no repository names as labels


def test_health_page__needs_sign_in_when_closed(client, dashboard, configure) -> None:
    configure(ANONYMOUS_READ=False)
    assert client.get("/-/health/").status_code == 302
    signed_in(client, "vera", "viewer")
    assert client.get("/-/health/").status_code == 200


@pytest.fixture
def health_at(point_at, db):
    """Point the dashboard at a server and read its health report."""
    def read(client, url: str, **extra: object) -> dict:
        point_at(url, **{"ANONYMOUS_READ": True, "USERNAME": "", "PASSWORD": "", "CA_BUNDLE": "", **extra})
        return client.get("/-/health.json").json()

    return read


def test_diagnosis__self_signed_tls_without_and_with_the_ca_bundle(client, health_at, tmp_path) -> None:
    with RegistryServer(tmp_path / "tls", tls=True) as server:
        api = health_at(client, server.url)["checks"]["api"]
        assert api["status"] == "failing" and "REGISTRYUI_REGISTRY_CA_BUNDLE" in api["explanation"]
        assert health_at(client, server.url, CA_BUNDLE=str(server.ca_path))["checks"]["api"]["status"] == "ok"
        http_url = server.url.replace("https://", "http://")
        assert "speaks HTTPS — use https://" in health_at(client, http_url)["checks"]["api"]["explanation"]


def test_diagnosis__htpasswd_without_and_with_wrong_credentials(client, health_at, tmp_path) -> None:
    with RegistryServer(tmp_path / "auth", htpasswd={"ci": "right-pass"}) as server:
        assert "REGISTRYUI_REGISTRY_USERNAME" in health_at(client, server.url)["checks"]["api"]["explanation"]
        wrong = health_at(client, server.url, USERNAME="ci", PASSWORD="wrong")["checks"]["api"]
        assert "rejected the credentials of “ci”" in wrong["explanation"]
        right = health_at(client, server.url, USERNAME="ci", PASSWORD="right-pass")["checks"]["api"]
        assert right["status"] == "ok" and "credentials accepted" in right["explanation"]


def test_diagnosis__broken_storage_shows_on_the_debug_panel(client, health_at, tmp_path) -> None:
    with RegistryServer(tmp_path / "broken", debug=True, broken_storage=True) as server:
        doc = health_at(client, server.url, DEBUG_URL=server.debug_url)
        assert doc["checks"]["api"]["status"] == "failing" and "health check" in doc["checks"]["api"]["explanation"]
        debug = doc["checks"]["debug"]
        assert debug["status"] == "failing" and "storagedriver_filesystem" in debug["explanation"]
        assert "check its storage" in debug["explanation"]


def test_diagnosis__deletion_disabled_on_the_deletion_panel(client, health_at, tmp_path) -> None:
    with RegistryServer(tmp_path / "nodelete", delete_enabled=False) as server:
        deletion = health_at(client, server.url)["checks"]["deletion"]
        assert deletion["status"] == "warning" and "REGISTRY_STORAGE_DELETE_ENABLED=true" in deletion["explanation"]


def test_diagnosis__not_a_registry(client, health_at, tmp_path) -> None:
    from functools import partial
    from http.server import SimpleHTTPRequestHandler

    with serving(partial(SimpleHTTPRequestHandler, directory=str(tmp_path))) as url:
        api = health_at(client, url)["checks"]["api"]
        assert api["status"] == "failing" and "not a registry API" in api["explanation"]


def test_index_panel__says_what_feeds_the_index_and_warns_about_stuck_events(client, dashboard, configure) -> None:
    from datetime import timedelta

    configure(EVENTS_TOKEN="")
    doc = client.get("/-/health.json").json()["checks"]["index"]
    assert doc["status"] == "ok" and "REGISTRYUI_EVENTS_TOKEN" in doc["explanation"]
    RegistryEvent.objects.create(event_id="e1", action="push", repository="a/b", tag="1", digest="sha256:" + "a" * 64,
                                 at=timezone.now(), applied=False)
    RegistryEvent.objects.filter(event_id="e1").update(received_at=timezone.now() - timedelta(minutes=5))
    doc = client.get("/-/health.json").json()["checks"]["index"]
    assert doc["status"] == "warning" and "manage.py worker" in doc["explanation"]


# -- the front page's strip -----------------------------------------------------------------------


def _strip(client) -> Node:
    """The compact health the front page loads into its strip (as htmx asks for it)."""
    response = client.get("/-/health/?compact=1", headers={"HX-Request": "true"})
    assert response.status_code == 200
    [overall] = dom(response.content).find_all("p", cls="overall")
    return overall


def test_strip__registry_stopped__names_the_check_and_its_diagnosis__links_to_that_panel(
        client, dashboard, configure) -> None:
    port = closed_port()
    configure(REGISTRY_URL=f"http://127.0.0.1:{port}")

    strip = _strip(client)

    diagnosis = f"connection refused at http://127.0.0.1:{port} — is the registry running?"
    assert "status-failing" in strip.classes
    [why] = strip.find_all("span", cls="why")
    assert why.text == f"— Registry API: {diagnosis}"
    # Cut to one line on a narrow screen (CSS), whole on hover and for screen readers.
    assert why.attrs["title"] == f"Registry API: {diagnosis}"
    [link] = strip.find_all("a")
    assert (link.text, link.attrs["href"]) == ("details", "/-/health/#check-api")
    assert strip.text.startswith("Failing")


def test_strip__registry_answering_500__says_what_it_answered(client, db, point_at) -> None:
    class Broken(QuietHandler):
        def do_GET(self) -> None:
            body = b"upstream exploded\n"
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Broken) as url:
        point_at(url, ANONYMOUS_READ=True)
        strip = _strip(client)
        panel = client.get("/-/health.json").json()["checks"]["api"]

    [why] = strip.find_all("span", cls="why")
    assert "status-failing" in strip.classes
    assert why.text == f"— Registry API: {panel['explanation']}"
    assert f"{url} answered" in why.text and "500" in why.text, why.text


def test_strip__healthy__says_so_without_a_diagnosis(client, dashboard) -> None:
    strip = _strip(client)

    assert "status-ok" in strip.classes and strip.text == "Healthy · details"
    assert strip.find_all("span", cls="why") == []
    [link] = strip.find_all("a")
    assert link.attrs["href"] == "/-/health/"


def test_strip__a_warning_names_its_reason_not_the_whole_panel(client, dashboard) -> None:
    from datetime import timedelta

    RegistryEvent.objects.create(event_id="e1", action="push", repository="a/b", tag="1", digest="sha256:" + "a" * 64,
                                 at=timezone.now(), applied=False)
    RegistryEvent.objects.filter(event_id="e1").update(received_at=timezone.now() - timedelta(minutes=5))

    strip = _strip(client)

    assert "status-warning" in strip.classes and strip.text.startswith("Needs attention")
    [why] = strip.find_all("span", cls="why")
    # The reason, not the panel's whole account ("… tags indexed · last sync … — 1 registry events …").
    assert why.text == "— Index: 1 registry event waits to be applied: is the worker (manage.py worker) running?"
    assert strip.find_all("a")[0].attrs["href"] == "/-/health/#check-index"
