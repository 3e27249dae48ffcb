"""Health panels, the machine endpoints and the dashboard's own metrics, on real servers."""

from __future__ import annotations

import socket

import pytest
from django.contrib.auth.models import Group, User


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_json__healthy_registry__every_check_and_overall_status(client, dashboard, settings) -> None:  # noqa: ANN001
    settings.REGISTRYUI = {**settings.REGISTRYUI, "STORAGE_PATH": str(dashboard.server.storage_dir),
                          "ANONYMOUS_READ": False}
    response = client.get("/-/health.json")
    assert response.status_code == 200
    doc = response.json()
    assert set(doc["checks"]) == {"api", "debug", "storage", "content", "deletion", "gc"}
    assert doc["checks"]["api"]["status"] == "ok" and doc["checks"]["api"]["detail"]["api_version"] == "registry/2.0"
    assert doc["checks"]["content"]["detail"]["repositories"] == len(dashboard.seeded.repos)
    assert doc["checks"]["content"]["detail"]["tags"] == sum(len(t) for t in dashboard.seeded.tags.values())
    assert doc["checks"]["deletion"]["status"] == "ok"
    assert doc["checks"]["storage"]["detail"]["blob_count"] > 0
    assert doc["checks"]["debug"]["status"] == "off" and "REGISTRYUI_REGISTRY_DEBUG_URL" in doc["checks"]["debug"]["explanation"]
    assert doc["status"] == "ok"


def test_health_json__registry_down__503_with_the_diagnosis(client, dashboard, settings) -> None:  # noqa: ANN001
    port = _closed_port()
    settings.REGISTRYUI = {**settings.REGISTRYUI, "REGISTRY_URL": f"http://127.0.0.1:{port}"}
    response = client.get("/-/health.json")
    assert response.status_code == 503
    api = response.json()["checks"]["api"]
    assert api["status"] == "failing"
    assert api["explanation"] == f"connection refused at http://127.0.0.1:{port} — is the registry running?"
    assert response.json()["status"] == "failing"


def test_live__answers_without_registry_or_login(client, dashboard, settings) -> None:  # noqa: ANN001
    settings.REGISTRYUI = {**settings.REGISTRYUI, "REGISTRY_URL": f"http://127.0.0.1:{_closed_port()}",
                          "ANONYMOUS_READ": False}
    response = client.get("/-/live")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_health_page__panels_explain_and_failing_panel_says_what_to_do(client, dashboard, settings) -> None:  # noqa: ANN001
    body = client.get("/-/health/").content.decode()
    assert body.count('class="check status-') == 6
    assert 'data-check="api"' in body and "registry/2.0" in body
    port = _closed_port()
    settings.REGISTRYUI = {**settings.REGISTRYUI, "REGISTRY_URL": f"http://127.0.0.1:{port}"}
    partial = client.get("/-/health/", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in partial and 'class="check status-failing"' in partial
    assert "is the registry running?" in partial and "Failing" in partial


def test_gc_panel__deletions_since_the_last_run_recommend_gc(client, dashboard) -> None:  # noqa: ANN001
    from dashboard.models import Deletion

    Deletion.objects.create(username="x", registry=dashboard.url, repository="acme/web", action="untag",
                            tags=["old"], digest="sha256:" + "0" * 64, media_type="x", manifest=b"{}")
    doc = client.get("/-/health.json").json()["checks"]["gc"]
    assert doc["status"] == "warning" and "1 deletion since the last garbage collection" in doc["explanation"]


def test_metrics__off_by_default__404(client, dashboard) -> None:  # noqa: ANN001
    assert client.get("/metrics").status_code == 404


def test_metrics__token_required__counts_requests_registry_calls_and_cache(client, dashboard, settings) -> None:  # noqa: ANN001
    settings.REGISTRYUI = {**settings.REGISTRYUI, "METRICS_TOKEN": "s3cret-token"}
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


def test_health_page__needs_sign_in_when_closed(client, dashboard, settings) -> None:  # noqa: ANN001
    settings.REGISTRYUI = {**settings.REGISTRYUI, "ANONYMOUS_READ": False}
    assert client.get("/-/health/").status_code == 302
    user = User.objects.create_user("vera")
    user.groups.add(Group.objects.get(name="viewer"))
    client.force_login(user)
    assert client.get("/-/health/").status_code == 200
