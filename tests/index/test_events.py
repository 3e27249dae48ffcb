"""Registry notifications into the index: a real registry 2.8 sends its events to the live test
server's /-/events/, and the task backend applies them in a thread, as the worker would.

The endpoint's refusals (wrong secret, malformed envelope, oversized body) and the handling of
odd events are shown with envelopes posted by hand, shaped like the ones 2.8 sends.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.cache import cache

from dashboard import remote
from dashboard.auth import ensure_roles
from dashboard.index import events, store
from dashboard.index.events import MAX_ATTEMPTS, MAX_BODY, apply_pending
from dashboard.index.sync import sync_repository
from dashboard.models import IndexedTag, RegistryEvent, RepositoryManifest, TagHistory
from testbed import Notifications, RegistryServer
from testbed.push import (
    MT_OCI_MANIFEST,
    build_image,
    delete_manifest,
    get_manifest,
    head_manifest,
    push_image,
    put_manifest,
)
from testbed.server import free_port
from tests.helpers.pages import signed_in
from tests.helpers.servers import QuietHandler, serving

pytestmark = pytest.mark.postgres

REPO = "team/app"
TOKEN = "events-token-for-tests-0123456789"
V1 = "application/vnd.docker.distribution.events.v1+json"
V2 = "application/vnd.docker.distribution.events.v2+json"
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def _image(name: str):
    return build_image([{f"{name}.txt": f"{name}\n".encode() * 300}])


def until[T](what: str, check: Callable[[], T], timeout: float = 20.0) -> T:
    """Poll `check` until it returns something truthy; the registry sends its events on its own time."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def _tag(name: str, repo: str = REPO):
    return IndexedTag.objects.filter(repository__name=repo, name=name).select_related("manifest").first()


def _events(**where: Any) -> list:
    return list(RegistryEvent.objects.filter(**where).order_by("at", "id"))


def _skopeo_pull(server: RegistryServer, reference: str, into: Path) -> None:
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                    f"docker://{server.host}/{reference}", f"dir:{into}"],
                   check=True, capture_output=True, timeout=60)


# -- a registry that notifies the live server -------------------------------------------------------


@dataclass
class Flow:
    server: RegistryServer
    tmp: Path


def _wait_for_quiet() -> None:
    """Let the task threads finish before the database is flushed under them."""
    def quiet() -> bool:
        if not events._apply_lock.acquire(timeout=0.05):
            return False
        events._apply_lock.release()
        return not RegistryEvent.objects.filter(applied=False, details__attempts__isnull=True).exclude(
            action="pull").exists()

    until("the event threads to finish", quiet)


@pytest.fixture
def flow(tmp_path: Path, live_server, transactional_db, point_at, settings) -> Iterator[Flow]:
    settings.TASKS = {"default": {"BACKEND": "tests.helpers.task_backends.ThreadBackend"}}
    notify = Notifications(url=f"{live_server.url}/-/events/", token=TOKEN)
    with RegistryServer(tmp_path / "registry", notifications=notify) as server:
        point_at(server.url, ANONYMOUS_READ=True, EVENTS_TOKEN=TOKEN)
        yield Flow(server, tmp_path)
    _wait_for_quiet()
    cache.clear()


def test_push_event__tag_and_manifest_appear_in_the_index_and_the_feed(flow: Flow) -> None:
    image = _image("one")
    digest = push_image(flow.server.url, REPO, image, "1.0")

    # bench/index.py measures how soon (the goal: 2 s); here it is typically 0.1-0.5 s.
    tag = until("1.0 indexed with its manifest", lambda: (t := _tag("1.0")) and t.manifest_id and t)
    assert tag.digest == digest
    assert tag.manifest.kind == "image" and tag.manifest.image_size == image.size
    assert tag.repository.tag_count == 1
    [push] = _events(action="push")
    assert (push.repository, push.tag, push.digest, push.media_type) == (REPO, "1.0", digest, MT_OCI_MANIFEST)
    assert push.address == "127.0.0.1" and push.user_agent.startswith("python-requests/")
    assert push.applied and push.details["method"] == "PUT" and push.details["host"] == flow.server.host
    # The blobs' own events are dropped by the registry (ignoredmediatypes); nothing else was stored.
    assert len(_events()) == 1


def test_pull_with_skopeo__in_the_feed__sets_last_pulled_at(flow: Flow) -> None:
    digest = push_image(flow.server.url, REPO, _image("one"), "1.0")
    until("1.0 indexed", lambda: (t := _tag("1.0")) and t.manifest_id)
    before = datetime.now(UTC)

    _skopeo_pull(flow.server, f"{REPO}:1.0", flow.tmp / "pulled")

    [pull] = until("skopeo's pull in the feed", lambda: _events(action="pull"))
    assert (pull.repository, pull.tag, pull.digest) == (REPO, "1.0", digest)
    assert pull.user_agent.startswith("skopeo/") and pull.applied
    tag = until("1.0 marked pulled", lambda: (t := _tag("1.0")) and t.pull_count and t)
    assert tag.pull_count == 1 and tag.last_pulled_at >= before - timedelta(seconds=1)


def test_docker_style_pull__head_by_tag_then_get_by_digest__counts_once(flow: Flow) -> None:
    digest = push_image(flow.server.url, REPO, _image("one"), "1.0")
    push_image(flow.server.url, REPO, _image("two"), "2.0")
    until("both tags indexed", lambda: all((t := _tag(n)) and t.manifest_id for n in ("1.0", "2.0")))

    # What docker and containerd do: resolve the tag with HEAD, then GET the manifest by digest.
    assert head_manifest(flow.server.url, REPO, "1.0") == (digest, MT_OCI_MANIFEST)
    get_manifest(flow.server.url, REPO, digest)
    get_manifest(flow.server.url, REPO, "2.0")  # sent after the others: once it is in, they are too

    until("the pull of 2.0", lambda: _events(action="pull", tag="2.0"))
    pulls = _events(action="pull")
    assert [(p.tag, p.digest) for p in pulls] == [("1.0", digest), ("2.0", pulls[1].digest)]
    assert _tag("1.0").pull_count == 1


def test_dashboard_own_reads__are_not_counted_as_pulls(flow: Flow) -> None:
    digest = push_image(flow.server.url, REPO, _image("one"), "1.0")
    push_image(flow.server.url, REPO, _image("two"), "2.0")
    until("both tags indexed", lambda: all((t := _tag(n)) and t.manifest_id for n in ("1.0", "2.0")))

    client = remote.client()
    client.manifest_bytes(REPO, "1.0")
    client.head_manifest(REPO, "1.0")
    client.manifest_bytes(REPO, digest)
    _skopeo_pull(flow.server, f"{REPO}:2.0", flow.tmp / "pulled")  # sent after the dashboard's reads

    until("skopeo's pull of 2.0", lambda: _events(action="pull", tag="2.0"))
    assert [(p.tag, p.user_agent.split("/")[0]) for p in _events(action="pull")] == [("2.0", "skopeo")]
    assert _tag("1.0").pull_count == 0 and _tag("1.0").last_pulled_at is None


def test_tag_delete__the_tag_leaves_the_index__its_sibling_stays(flow: Flow) -> None:
    digest = push_image(flow.server.url, REPO, _image("one"), "1.0")
    put_manifest(flow.server.url, REPO, "latest", _image("one").manifest, MT_OCI_MANIFEST)
    until("both tags indexed", lambda: all((t := _tag(n)) and t.manifest_id for n in ("1.0", "latest")))

    # 2.8 has no tag delete; tools (regctl tag rm) move the tag to a throwaway manifest and
    # delete that, and 2.8 reports the tag's delete.
    throwaway = push_image(flow.server.url, REPO, _image(f"throwaway-{uuid.uuid4()}"), "1.0")
    delete_manifest(flow.server.url, REPO, throwaway)

    until("the tag delete applied", lambda: _events(action="delete", tag="1.0", applied=True))
    until("1.0 gone from the index", lambda: _tag("1.0") is None and not _events(applied=False))
    assert _tag("latest").digest == digest
    assert [(e.action, e.tag, e.digest) for e in _events(at__gt=_events(tag="latest")[0].at)] == [
        ("push", "1.0", throwaway), ("delete", "", throwaway), ("delete", "1.0", "")]
    assert [h.digest for h in TagHistory.objects.filter(repository=REPO, tag="1.0").order_by("at", "id")] == [
        digest, throwaway, ""]


def test_untag_from_the_dashboard__the_feed_has_it_once_under_the_user(flow: Flow, client) -> None:
    """The registry reports the dashboard's 2.8 untag as a throwaway push and two deletes from
    the dashboard's User-Agent; the dashboard recorded the untag itself, so those are dropped."""
    ensure_roles()
    signed_in(client, "mia", "maintainer")
    digest = push_image(flow.server.url, REPO, _image("one"), "1.0")
    put_manifest(flow.server.url, REPO, "latest", _image("one").manifest, MT_OCI_MANIFEST)
    until("both tags indexed", lambda: all((t := _tag(n)) and t.manifest_id for n in ("1.0", "latest")))

    response = client.post(f"/r/{REPO}/-/tags/1.0/delete/", {"digest": digest})
    assert response.status_code in (200, 302)
    get_manifest(flow.server.url, REPO, "latest")  # sent after the untag: once it is in, all is

    until("the pull of latest", lambda: _events(action="pull", tag="latest"))
    assert _tag("1.0") is None and _tag("latest").digest == digest
    assert [(e.action, e.tag, e.source, e.actor) for e in _events(action="delete")] == [
        ("delete", "1.0", "dashboard", "mia")]
    assert len(_events(action="push")) == 2  # 1.0 and latest, not the throwaway


def test_manifest_delete__its_tags_leave_the_index__counted_as_garbage(flow: Flow) -> None:
    digest = push_image(flow.server.url, REPO, _image("one"), "1.0")
    put_manifest(flow.server.url, REPO, "stable", _image("one").manifest, MT_OCI_MANIFEST)
    keep = push_image(flow.server.url, REPO, _image("two"), "2.0")
    until("three tags indexed", lambda: all((t := _tag(n)) and t.manifest_id for n in ("1.0", "stable", "2.0")))

    delete_manifest(flow.server.url, REPO, digest)

    # 2.8 reports the manifest's delete, then one delete per tag it had.
    deletes = until("the three deletes applied", lambda: len(d := _events(action="delete", applied=True)) == 3 and d)
    assert sorted((e.tag, e.digest) for e in deletes) == [("", digest), ("1.0", ""), ("stable", "")]
    assert _tag("1.0") is None and _tag("stable") is None
    assert _tag("2.0").digest == keep
    link = RepositoryManifest.objects.get(repository__name=REPO, manifest__digest=digest)
    assert link.deleted_at is not None


def test_event_flow_down_then_sync__catches_up(tmp_path: Path, live_server, transactional_db, point_at,
                                               settings) -> None:
    """The registry's events are refused (a wrong secret), as if the flow were cut: the push is
    not seen until a sync reads the repository."""
    settings.TASKS = {"default": {"BACKEND": "tests.helpers.task_backends.ThreadBackend"}}
    notify = Notifications(url=f"{live_server.url}/-/events/", token="not-the-token")
    with RegistryServer(tmp_path / "registry", notifications=notify) as server:
        point_at(server.url, EVENTS_TOKEN=TOKEN)
        digest = push_image(server.url, REPO, _image("one"), "1.0")
        until("the registry told 401", lambda: "401 Unauthorized" in server.log_tail(20))
        assert _tag("1.0") is None and not _events()

        sync_repository(REPO)

        tag = _tag("1.0")
        assert tag is not None and tag.digest == digest and tag.manifest_id is not None
    _wait_for_quiet()


# -- envelopes posted by hand -----------------------------------------------------------------------


def _event(action: str, *, repo: str = REPO, tag: str = "", digest: str = "", at: datetime = T0,
           media_type: str | None = MT_OCI_MANIFEST, user_agent: str = "containerd/1.7.11",
           addr: str = "10.1.2.3:51234", event_id: str | None = None, kind: str = "manifests") -> dict[str, Any]:
    """An event shaped like 2.8's (notifications/bridge.go)."""
    target: dict[str, Any] = {"repository": repo}
    if digest:
        target["digest"] = digest
    if tag:
        target["tag"] = tag
    if action in ("push", "pull"):
        target.update(mediaType=media_type, size=401, length=401,
                      url=f"http://registry.example:5000/v2/{repo}/{kind}/{digest}")
    return {"id": event_id or str(uuid.uuid4()), "timestamp": at.isoformat().replace("+00:00", "Z"),
            "action": action, "target": target,
            "request": {"id": str(uuid.uuid4()), "addr": addr, "host": "registry.example:5000",
                        "method": {"push": "PUT", "pull": "GET", "delete": "DELETE"}.get(action, "POST"),
                        "useragent": user_agent},
            "actor": {"name": "ci-bot"}, "source": {"addr": "registry-1:5000", "instanceID": str(uuid.uuid4())}}


def _post(client, events: list[dict[str, Any]] | Any, *, token: str | None = TOKEN, content_type: str = V1,
          body: bytes | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = body if body is not None else json.dumps({"events": events})
    return client.post("/-/events/", data=data, content_type=content_type, headers=headers)


@pytest.fixture
def hand(tmp_path: Path, configure, settings, db) -> Iterator[RegistryServer]:
    """A registry with no notifications (events come by hand), on a fixed port so it can be
    stopped and started again; the task backend only records what is enqueued."""
    with RegistryServer(tmp_path / "registry", port=free_port()) as server:
        configure(REGISTRY_URL=server.url, CATALOG_TTL=0, EVENTS_TOKEN=TOKEN, CONNECT_TIMEOUT=1.0, READ_TIMEOUT=5.0)
        settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
        cache.clear()
        yield server
        cache.clear()


def _stored() -> int:
    return RegistryEvent.objects.count()


def _known(repo: str = REPO) -> None:
    """The index knows `repo` (a sync read it, with none of the tags the hand-made events name),
    so the events alone are applied: a push into a repository it does not know reads that
    repository whole (tests/index/test_new_repository.py), which would put the tags of these
    tests' registry in place of the made-up ones."""
    store.set_tags(repo, {}, source="sync", complete=True)


def test_no_token_configured__503_says_what_to_set(client, hand, configure) -> None:
    configure(EVENTS_TOKEN="")
    response = _post(client, [_event("push", tag="1.0", digest="sha256:" + "a" * 64)])
    assert response.status_code == 503 and b"REGISTRYUI_EVENTS_TOKEN" in response.content
    assert _stored() == 0


@pytest.mark.parametrize("token", [None, "wrong", TOKEN[:-1], TOKEN + "x", ""])
def test_wrong_or_missing_secret__401__nothing_stored(client, hand, token) -> None:
    response = _post(client, [_event("push", tag="1.0", digest="sha256:" + "a" * 64)], token=token)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert _stored() == 0


def test_get__405_and_no_sign_in_asked(client, hand) -> None:
    assert client.get("/-/events/").status_code == 405


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b"{not json", V1, 400),
    (b"\xff\xfe\x00", V1, 400),
    (b'["events"]', V1, 400),
    (b'{"events": {"id": "x"}}', V1, 400),
    (b"[" * 100_000 + b"]" * 100_000, V1, 400),
    (b'{"events": []}', "text/plain", 415),
    (b'{"events": []}', "application/x-www-form-urlencoded", 415),
])
def test_malformed_envelope__refused_with_a_short_reason__nothing_stored(client, hand, body, content_type,
                                                                        status) -> None:
    response = _post(client, None, body=body, content_type=content_type)
    assert response.status_code == status
    assert len(response.content) < 300
    assert _stored() == 0


def test_oversized_body__413__nothing_stored(client, hand) -> None:
    event = _event("push", tag="1.0", digest="sha256:" + "a" * 64)
    events = [event] + [{"padding": "x" * 1000}] * (MAX_BODY // 1000)
    response = _post(client, events)
    assert response.status_code == 413
    assert _stored() == 0


def test_empty_envelope__200(client, hand) -> None:
    assert _post(client, None, body=b"{}").status_code == 200
    assert _post(client, []).json()["stored"] == 0


def test_unknown_action__ignored__the_rest_of_the_envelope_kept(client, hand,
                                                                django_capture_on_commit_callbacks) -> None:
    digest = push_image(hand.url, REPO, _image("one"), "1.0")
    envelope = [_event("frobnicate", tag="1.0", digest=digest), _event("push", tag="1.0", digest=digest),
                {"action": "push"}, "not an event"]
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, envelope, content_type=V2)  # 3.x's envelope type
    assert response.status_code == 200
    assert response.json() == {"stored": 1, "duplicates": 0, "merged": 0, "own_requests": 0, "blobs": 0,
                                    "unknown_actions": 1, "invalid": 2}
    [push] = RegistryEvent.objects.all()
    assert (push.action, push.tag, push.digest, push.actor, push.applied) == ("push", "1.0", digest, "ci-bot", False)
    assert len(events.apply_events.get_backend().results) == 1  # the worker is asked to apply it

    assert apply_pending() == 1
    assert _tag("1.0").manifest.digest == digest


def test_same_envelope_twice__stored_once__pull_counted_once(client, hand) -> None:
    digest = "sha256:" + "b" * 64
    store.set_tags(REPO, {"1.0": digest}, source="sync")
    envelope = [_event("pull", tag="1.0", digest=digest, at=T0), _event("pull", tag="1.0", digest=digest, at=T0)]
    envelope[1]["id"] = envelope[0]["id"]  # and the same event twice inside it

    first, again = _post(client, envelope).json(), _post(client, envelope).json()

    assert (first["stored"], first["duplicates"], again["stored"], again["duplicates"]) == (1, 1, 0, 2)
    assert _stored() == 1
    tag = _tag("1.0")
    assert tag.pull_count == 1 and tag.last_pulled_at == T0


def test_pull_by_digest__marks_every_tag_on_that_digest(client, hand) -> None:
    digest, other = "sha256:" + "c" * 64, "sha256:" + "d" * 64
    store.set_tags(REPO, {"1.0": digest, "stable": digest, "2.0": other}, source="sync")
    _post(client, [_event("pull", digest=digest, at=T0)])
    _post(client, [_event("pull", digest=digest, at=T0 + timedelta(hours=1), addr="10.9.9.9:1")])
    assert {n: (_tag(n).pull_count, _tag(n).last_pulled_at) for n in ("1.0", "stable", "2.0")} == {
        "1.0": (2, T0 + timedelta(hours=1)), "stable": (2, T0 + timedelta(hours=1)), "2.0": (0, None)}


def test_hostile_values__skipped_or_cleaned(client, hand) -> None:
    digest = "sha256:" + "e" * 64
    evil_ua = "curl/8\x00<script>alert(1)</script>\r\nX-Injected: 1"
    envelope = [
        _event("push", tag="<script>alert(1)</script>", digest=digest),
        _event("push", repo="../../etc/passwd", tag="1.0", digest=digest),
        _event("push", repo="Team/App", tag="1.0", digest=digest),
        _event("push", repo="a" * 256, tag="1.0", digest=digest),
        _event("push", tag="x" * 129, digest=digest),
        _event("push", tag="1.0", digest="sha256:" + "E" * 64),
        _event("push", tag="1.0", digest="md5:" + "e" * 32),
        _event("push", tag="1.0", digest=""),
        _event("push", tag="1.0", digest=digest, event_id="id with spaces"),
        _event("push", tag="1.0", digest=digest, event_id="x" * 101),
        _event("pull", tag="1.0", digest=digest, user_agent=evil_ua),
    ]
    envelope[0]["target"]["repository"] = ["team/app"]
    envelope.append(_event("delete", tag="1.0") | {"timestamp": "not a time"})

    got = _post(client, envelope).json()

    assert (got["invalid"], got["stored"]) == (10, 2)
    pull = RegistryEvent.objects.get(action="pull")
    assert pull.user_agent == "curl/8<script>alert(1)</script>X-Injected: 1"
    assert RegistryEvent.objects.get(action="delete").at > T0  # an unreadable time: when it arrived


def test_blob_events__ignored(client, hand) -> None:
    image = _image("one")
    digest = push_image(hand.url, REPO, image, "1.0")
    store.fetch_and_index(REPO, [digest])
    layer = image.layers[0].digest
    envelope = [
        _event("push", digest=layer, media_type="application/octet-stream", kind="blobs"),
        _event("pull", digest=layer, media_type="application/vnd.oci.image.layer.v1.tar+gzip", kind="blobs"),
        _event("mount", digest=layer, media_type="application/octet-stream", kind="blobs"),
        _event("delete", digest=layer),  # a blob DELETE: only the index can tell it is no manifest
    ]
    got = _post(client, envelope).json()
    assert (got["blobs"], got["stored"]) == (4, 0)


def test_registry_unreachable__event_stays_pending__applied_once_it_is_back(client, hand) -> None:
    digest = push_image(hand.url, REPO, _image("one"), "1.0")
    hand.stop()
    _post(client, [_event("push", tag="1.0", digest=digest)])

    assert apply_pending() == 0
    event = RegistryEvent.objects.get()
    assert not event.applied and event.details["attempts"] == 1 and "refused" in event.details["error"]
    tag = _tag("1.0")
    assert tag.digest == digest and tag.manifest is None  # the tag shows before its manifest is read
    # The worker is asked to try again later; until then the event waits, whatever else runs it.
    [retry] = [r for r in events.apply_events.get_backend().results if r.task.run_after]
    assert retry.task.run_after.isoformat() == event.details["retry_at"]
    hand.start()
    assert apply_pending() == 0

    RegistryEvent.objects.update(details={**event.details, "retry_at": datetime.now(UTC).isoformat()})  # its time
    assert apply_pending() == 1
    event.refresh_from_db()
    assert event.applied and "error" not in event.details
    assert _tag("1.0").manifest.digest == digest
    # The retry read the manifest only: the tag's history has the one change.
    assert TagHistory.objects.filter(repository=REPO, tag="1.0").count() == 1


def test_registry_down_for_good__event_given_up__the_next_ones_still_applied(client, hand, monkeypatch) -> None:
    monkeypatch.setattr(events, "RETRY_DELAY", timedelta(0))
    digest = push_image(hand.url, REPO, _image("one"), "1.0")
    hand.stop()
    _post(client, [_event("push", tag="1.0", digest=digest, at=T0),
                   _event("push", tag="2.0", digest=digest, at=T0 + timedelta(seconds=1)),
                   _event("delete", tag="2.0", at=T0 + timedelta(seconds=2))])

    assert apply_pending() == 1  # the tag delete; the pushes wait for the registry
    for _ in range(MAX_ATTEMPTS - 2):
        assert apply_pending() == 0
    assert apply_pending() == 2
    assert not RegistryEvent.objects.filter(applied=False).exists()
    gave_up = RegistryEvent.objects.get(action="push", tag="1.0")
    assert gave_up.details["gave_up"] and gave_up.details["attempts"] == MAX_ATTEMPTS
    assert _tag("1.0").digest == digest and _tag("2.0") is None


def test_push_then_manifest_gone__given_up_at_once(client, hand) -> None:
    digest = push_image(hand.url, REPO, _image("one"), "1.0")
    delete_manifest(hand.url, REPO, digest)
    _post(client, [_event("push", digest=digest)])

    assert apply_pending() == 1
    assert "gone" in RegistryEvent.objects.get().details["note"]


def test_older_event_arriving_late__does_not_move_the_tag_back(client, hand) -> None:
    """The registry does not promise order, and two workers may finish out of order."""
    old = push_image(hand.url, REPO, _image("one"), "old")
    new = push_image(hand.url, REPO, _image("two"), "new")
    _known()
    _post(client, [_event("push", tag="1.0", digest=new, at=T0 + timedelta(seconds=5))])
    apply_pending()
    _post(client, [_event("push", tag="1.0", digest=old, at=T0), _event("delete", tag="1.0", at=T0)])
    apply_pending()

    assert _tag("1.0").digest == new
    assert all(e.details.get("outdated") for e in RegistryEvent.objects.filter(at=T0))
    # Its manifest is still indexed: it is in the repository, tagged or not.
    assert _tag("1.0").manifest.digest == new
    assert RepositoryManifest.objects.filter(repository__name=REPO, manifest__digest=old).exists()


def test_push_then_delete_before_the_worker_ran__not_put_back(client, hand) -> None:
    digest = push_image(hand.url, REPO, _image("one"), "1.0")
    _known()
    _post(client, [_event("push", tag="1.0", digest=digest, at=T0),
                   _event("delete", digest=digest, at=T0 + timedelta(seconds=1)),
                   _event("delete", tag="1.0", at=T0 + timedelta(seconds=1))])
    assert apply_pending() == 3
    assert _tag("1.0") is None
    assert not RepositoryManifest.objects.filter(repository__name=REPO, deleted_at__isnull=True).exists()


def test_repository_delete_event__forgets_it_only_when_the_registry_agrees(client, hand) -> None:
    """3.x reports a deleted repository as a delete with neither tag nor digest."""
    digest = push_image(hand.url, REPO, _image("one"), "1.0")
    store.set_tags(REPO, {"1.0": digest}, source="sync")
    store.set_tags("team/gone", {"1.0": digest}, source="sync")
    _post(client, [_event("delete", repo=REPO), _event("delete", repo="team/gone")], content_type=V2)

    assert apply_pending() == 2
    assert _tag("1.0") is not None
    assert _tag("1.0", repo="team/gone") is None


def test_events_token_from_registry_headers__case_of_scheme_ignored(client, hand) -> None:
    response = client.post("/-/events/", data=json.dumps({"events": []}), content_type=V1,
                           headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200


def test_real_registry_envelope_shape__accepted(client, hand, tmp_path: Path) -> None:
    """What 2.8.2 actually sent, captured from a registry talking to a plain HTTP server."""
    captured: list[tuple[dict[str, str], bytes]] = []

    class Capture(QuietHandler):
        def do_POST(self) -> None:
            captured.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

    with serving(Capture) as sink:
        notify = Notifications(url=f"{sink}/-/events/", token=TOKEN, ignore_blobs=False)
        with RegistryServer(tmp_path / "capturing", notifications=notify) as server:
            digest = push_image(server.url, REPO, _image("one"), "1.0")
            requests.get(f"{server.url}/v2/{REPO}/manifests/1.0", headers={"Accept": MT_OCI_MANIFEST}, timeout=5)
            delete_manifest(server.url, REPO, digest)
            until("the tag delete sent", lambda: any(
                e["action"] == "delete" and e["target"].get("tag") == "1.0"
                for _, body in captured for e in json.loads(body)["events"]))

    for headers, body in captured:
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        response = _post(client, None, body=body, content_type=headers["Content-Type"])
        assert response.status_code == 200, response.content
    stored = {(e.action, e.tag, e.digest) for e in RegistryEvent.objects.all()}
    assert stored == {("push", "1.0", digest), ("pull", "1.0", digest), ("delete", "", digest), ("delete", "1.0", "")}


def test_two_workers_at_once__each_event_applied_once(tmp_path: Path, configure, settings, transactional_db,
                                                     monkeypatch) -> None:
    """Two worker processes run apply_pending at the same moment (each push enqueues it)."""
    import contextlib
    import threading

    from django.db import connections

    with RegistryServer(tmp_path / "registry") as server:
        configure(REGISTRY_URL=server.url, EVENTS_TOKEN=TOKEN)
        settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
        one = push_image(server.url, REPO, _image("one"), "one")
        two = push_image(server.url, REPO, _image("two"), "two")
        pushes = [_event("push", tag=f"v{i}", digest=(one, two)[i % 2], at=T0 + timedelta(seconds=i))
                  for i in range(40)]
        deletes = [_event("delete", tag=f"v{i}", at=T0 + timedelta(seconds=100 + i)) for i in range(0, 40, 4)]
        _known()
        events.receive(pushes + deletes)
        finished: list[int] = []
        barrier = threading.Barrier(2)

        def worker() -> None:
            try:
                barrier.wait(timeout=10)
                finished.append(events.apply_pending())
            finally:
                connections.close_all()

        # The lock only keeps threads of one process apart; two processes do not share it.
        monkeypatch.setattr(events, "_apply_lock", contextlib.nullcontext())
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)

    assert sum(finished) == 50 and len(finished) == 2
    assert not RegistryEvent.objects.filter(applied=False).exists()
    history = list(TagHistory.objects.filter(repository=REPO).values_list("tag", "digest"))
    assert len(history) == len(set(history)) == 50  # each push and each delete once
    assert sorted(t.name for t in _tags()) == sorted(f"v{i}" for i in range(40) if i % 4)
    assert all(t.manifest_id is not None for t in _tags())


def _tags() -> list:
    return list(IndexedTag.objects.filter(repository__name=REPO))
