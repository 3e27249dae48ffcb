"""A tag's history of digests and rolling it back, on a real registry.

`app:stable` is pushed as image A, indexed, pushed again as image B (which `app:prod` also
names) and indexed again: the history has both, and a maintainer can put `stable` back on A.
What the registry holds is checked with plain HTTP (and skopeo), never taken from the page.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Browser, expect

from dashboard import remote
from dashboard.index import store
from dashboard.models import IndexedTag, RegistryEvent, Rollback, TagHistory
from testbed import RegistryServer
from testbed import push as p
from tests.helpers.browser import make_user, shots, sign_in, watched_page
from tests.helpers.html import dom
from tests.helpers.pages import signed_in

pytestmark = pytest.mark.postgres

REPO = "app"
SKOPEO_TIMEOUT_S = 120


@dataclass
class Reg:
    server: RegistryServer
    a: p.Image
    b: p.Image

    def digest(self, tag: str) -> str | None:
        r = requests.head(f"{self.server.url}/v2/{REPO}/manifests/{tag}", headers={"Accept": p.MANIFEST_ACCEPT},
                          timeout=5)
        return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None

    def tags(self) -> list[str]:
        r = requests.get(f"{self.server.url}/v2/{REPO}/tags/list", timeout=5)
        return sorted(r.json().get("tags") or []) if r.status_code == 200 else []

    def push(self, image: p.Image, tag: str) -> str:
        return p.push_image(self.server.url, REPO, image, tag)


def image(seed: str, *, created: str, platform: str = "linux/amd64") -> p.Image:
    # Incompressible content, so each image has a distinct, honest size.
    return p.build_image([{f"{seed}.bin": hashlib.shake_256(seed.encode()).digest(4000)}], created=created,
                         platform=platform)


def index_now(repo: str = REPO) -> None:
    """What a sync does for one repository: every tag's digest, then the manifests it lacks."""
    client = remote.client()
    digests = {t: client.head_manifest(repo, t).digest for t in client.tags(repo)}
    store.set_tags(repo, digests, source="sync", complete=True)
    store.fetch_and_index(repo, sorted(set(digests.values())))


def history_of_stable(server: RegistryServer) -> Reg:
    """`stable` pushed as A and indexed, then as B (which `prod` also gets) and indexed again."""
    fixture = Reg(server, image("a", created="2024-01-01T00:00:00Z"),
                  image("b", created="2024-06-01T00:00:00Z", platform="linux/arm64"))
    fixture.push(fixture.a, "stable")
    index_now()
    fixture.push(fixture.b, "stable")
    fixture.push(fixture.b, "prod")
    index_now()
    return fixture


@pytest.fixture
def reg(empty_registry: RegistryServer, point_at, db) -> Iterator[Reg]:
    point_at(empty_registry.url, ANONYMOUS_READ=False, PULL_HOST="")
    fixture = history_of_stable(empty_registry)
    yield fixture
    cache.clear()


@pytest.fixture
def maintainer(client: Client, db) -> User:
    return signed_in(client, "mia", "maintainer", password="pw-mia-123")


@pytest.fixture
def viewer(client: Client, db) -> User:
    return signed_in(client, "vic", "viewer", password="pw-vic-123")


def history_url(tag: str = "stable") -> str:
    return f"/r/{REPO}/-/tags/{tag}/history/"


def rollback_url(tag: str = "stable") -> str:
    return f"/r/{REPO}/-/tags/{tag}/rollback/"


def rows(body: str) -> list[str]:
    """The history table's digests, top to bottom ("" for a removal)."""
    return [tr.attrs["data-digest"] for tr in dom(body).find_all("tr") if "data-digest" in tr.attrs]


def row_html(body: str, digest: str) -> str:
    return body.split(f'data-digest="{digest}"', 1)[1].split("</tr>", 1)[0]


def texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# -- the history page ---------------------------------------------------------------------------


def test_history__both_digests_newest_first__current_confirmed_live(client: Client, reg: Reg,
                                                                     maintainer: User) -> None:
    response = client.get(history_url())
    body = response.content.decode()
    assert response.status_code == 200
    assert rows(body) == [reg.b.digest, reg.a.digest]
    assert f'<a class="mono" href="/r/{REPO}/-/manifests/{reg.b.digest}/">{reg.b.digest}</a>' in body
    newest, older = row_html(body, reg.b.digest), row_html(body, reg.a.digest)
    assert '<span class="chip current">current</span>' in newest and "current" not in older
    # What the index knows of each: created, size, platform; and both are still in the registry.
    assert "linux/arm64" in newest and "linux/amd64" in older
    assert f'title="{reg.a.size} bytes, compressed"' in older
    assert "2024-01-01 00:00:00 UTC" in older
    assert "✓ still there" in newest and "✓ still there" in older
    assert "Sync" in older
    # Only the earlier digest offers a roll back.
    assert f'href="{rollback_url()}?to={reg.a.digest.replace(":", "%3A")}"' in older
    assert "Roll back…" not in newest


def test_history__last_pulled_and_pull_count_from_the_index(client: Client, reg: Reg, maintainer: User) -> None:
    IndexedTag.objects.filter(repository__name=REPO, name="stable").update(
        last_pulled_at=timezone.now() - timezone.timedelta(hours=3), pull_count=1234)
    body = client.get(history_url()).content.decode()
    assert "3\xa0hours ago" in body and "1,234 pulls" in body
    never = client.get(history_url("prod")).content.decode()
    assert "no pull seen" in never and "0 pulls" in never


def test_history__viewer_sees_no_roll_back_buttons(client: Client, reg: Reg, viewer: User) -> None:
    body = client.get(history_url()).content.decode()
    assert rows(body) == [reg.b.digest, reg.a.digest]
    assert "Roll back" not in body and rollback_url() not in body


def test_history__unknown_tag_repository_or_bad_name__clear_404(client: Client, reg: Reg, maintainer: User) -> None:
    missing_tag = client.get(history_url("nope"))
    assert missing_tag.status_code == 404 and "there is no tag “nope” in app" in missing_tag.content.decode()
    missing_repo = client.get("/r/nothing/here/-/tags/stable/history/")
    assert missing_repo.status_code == 404 and "Repository not found" in missing_repo.content.decode()
    bad_name = client.get("/r/Not_A_Name/-/tags/stable/history/")
    assert bad_name.status_code == 404 and "is not a valid repository name" in bad_name.content.decode()
    bad_tag = client.get(f"/r/{REPO}/-/tags/.x/history/")
    assert bad_tag.status_code == 404 and "is not a valid tag" in bad_tag.content.decode()


def test_history__deleted_manifest_shows_gone_and_offers_no_roll_back(client: Client, reg: Reg,
                                                                    maintainer: User) -> None:
    p.delete_manifest(reg.server.url, REPO, reg.a.digest)
    body = client.get(history_url()).content.decode()
    older = row_html(body, reg.a.digest)
    assert "✗ gone" in older and "Roll back…" not in older


def test_history__long_history__paged_newest_first__each_digest_offered_once(client: Client, reg: Reg,
                                                                             maintainer: User) -> None:
    from datetime import timedelta

    start = timezone.now()
    for i in range(60):  # a CI job flipping `stable` back and forth, ending where the registry is (B)
        store.set_tags(REPO, {"stable": reg.a.digest if i % 2 == 0 else reg.b.digest}, source="event",
                       actor="ci", at=start + timedelta(minutes=i + 1))
    first = client.get(history_url()).content.decode()
    assert "62 changes recorded" in first and "Page 1 of 2" in first
    assert len(rows(first)) == 50 and rows(first)[:2] == [reg.b.digest, reg.a.digest]
    assert first.count("Roll back…") == 1 and first.count("chip current") == 1
    older = client.get(history_url(), {"page": 2}, headers={"HX-Request": "true"})
    body = older.content.decode()
    assert body.lstrip().startswith('<section id="history"')
    assert "<html" not in body and len(rows(body)) == 12
    assert "Roll back…" not in body and "chip current" not in body  # page 1 already offers both


# -- the confirmation ---------------------------------------------------------------------------


def test_confirm__names_both_digests_what_changes_and_the_other_tags(client: Client, reg: Reg,
                                                                     maintainer: User) -> None:
    response = client.get(rollback_url(), {"to": reg.a.digest})
    body = response.content.decode()
    assert response.status_code == 200
    a, b = reg.a.digest.split(":")[1][:12], reg.b.digest.split(":")[1][:12]
    text = re.sub(r"<[^>]+>", "", body)
    assert f"The tag stable will point at {a} instead of {b}." in text
    assert f"{b} stays in the registry under its digest." in text
    assert "This tag points at it too and does not move:" in text and "<li><code>prod</code></li>" in body
    # Both sides with what the index knows: created, size and platform.
    assert "2024-01-01 00:00" in body and "2024-06-01 00:00" in body
    assert "linux/amd64" in body and "linux/arm64" in body
    assert f'<input type="hidden" name="to" value="{reg.a.digest}">' in body
    assert f'<input type="hidden" name="from" value="{reg.b.digest}">' in body
    assert re.search(r'<button type="submit" class="danger">Roll back stable to ' + a, body)
    assert reg.digest("stable") == reg.b.digest  # a GET changes nothing


def test_confirm__last_tag_on_the_current_image__says_it_becomes_untagged(client: Client, reg: Reg,
                                                                          maintainer: User) -> None:
    c = image("c", created="2024-09-01T00:00:00Z")
    reg.push(c, "stable")
    index_now()
    text = re.sub(r"<[^>]+>", "", client.get(rollback_url(), {"to": reg.a.digest}).content.decode())
    assert "No other tag points at it: it becomes untagged" in text


def test_confirm__viewer_sees_why_the_button_is_disabled(client: Client, reg: Reg, viewer: User) -> None:
    body = client.get(rollback_url(), {"to": reg.a.digest}).content.decode()
    assert "may browse but not roll back" in body
    assert re.search(r'<button type="submit" class="danger" disabled>Roll back stable', body)


# -- the roll back ------------------------------------------------------------------------------


def test_roll_back__tag_points_at_a_again__pulls_with_skopeo__audited(client: Client, reg: Reg, maintainer: User,
                                                                      tmp_path: Path) -> None:
    response = client.post(rollback_url(), {"to": reg.a.digest, "from": reg.b.digest}, follow=True)
    assert response.redirect_chain == [(history_url(), 302)]
    assert any(f"app:stable rolled back to {reg.a.digest[7:19]}" in m for m in texts(response))
    assert reg.digest("stable") == reg.a.digest
    assert reg.digest("prod") == reg.b.digest  # the other tag did not move
    copy = subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
         f"docker://{reg.server.host}/{REPO}:stable", f"oci:{tmp_path / 'out'}:x"],
        check=False, capture_output=True, text=True, timeout=SKOPEO_TIMEOUT_S)
    assert copy.returncode == 0, copy.stderr
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [d["digest"] for d in index["manifests"]] == [reg.a.digest]

    record = Rollback.objects.get()
    assert (record.username, record.user, record.registry, record.repository, record.tag, record.from_digest,
            record.to_digest) == ("mia", maintainer, reg.server.url, REPO, "stable", reg.b.digest, reg.a.digest)
    latest = TagHistory.objects.filter(repository=REPO, tag="stable").first()
    assert (latest.digest, latest.source, latest.actor) == (reg.a.digest, "rollback", "mia")
    tag = IndexedTag.objects.select_related("manifest").get(repository__name=REPO, name="stable")
    assert tag.digest == reg.a.digest and tag.manifest.digest == reg.a.digest
    event = RegistryEvent.objects.get(action="push", tag="stable")
    assert (event.digest, event.actor, event.source) == (reg.a.digest, "mia", "dashboard")

    # The page it lands on shows the roll back on top, and B can be rolled back to in turn.
    body = response.content.decode()
    assert rows(body) == [reg.a.digest, reg.b.digest, reg.a.digest]
    top = row_html(body, reg.a.digest)
    assert "current" in top and "Roll back</span>" in top and "<td>mia</td>" in top
    assert "Roll back…" in row_html(body, reg.b.digest)


def test_roll_back__htmx__redirects_the_whole_page(client: Client, reg: Reg, maintainer: User) -> None:
    response = client.post(rollback_url(), {"to": reg.a.digest, "from": reg.b.digest},
                           headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == history_url()
    assert reg.digest("stable") == reg.a.digest


def test_roll_back__viewer_forged_post__403_and_unchanged(client: Client, reg: Reg, viewer: User) -> None:
    response = client.post(rollback_url(), {"to": reg.a.digest, "from": reg.b.digest})
    assert response.status_code == 403
    assert reg.digest("stable") == reg.b.digest and not Rollback.objects.exists()


def test_roll_back__anonymous_post__sent_to_sign_in_and_unchanged(reg: Reg, configure) -> None:
    configure(ANONYMOUS_READ=True)
    anonymous = Client()
    assert anonymous.get(history_url()).status_code == 200
    response = anonymous.post(rollback_url(), {"to": reg.a.digest, "from": reg.b.digest})
    assert response.status_code == 302 and response["Location"].startswith("/-/login/")
    assert reg.digest("stable") == reg.b.digest


def test_roll_back__without_csrf_token__refused_and_unchanged(reg: Reg) -> None:
    forger = Client(enforce_csrf_checks=True)
    signed_in(forger, "mia", "maintainer")
    response = forger.post(rollback_url(), {"to": reg.a.digest, "from": reg.b.digest})
    assert response.status_code == 403
    assert reg.digest("stable") == reg.b.digest and not Rollback.objects.exists()


def test_roll_back__tag_moved_in_between__conflict_and_unchanged(client: Client, reg: Reg, maintainer: User) -> None:
    c = image("c", created="2024-09-01T00:00:00Z")
    reg.push(c, "stable")  # someone pushes while the maintainer reads the confirmation for B → A
    response = client.post(rollback_url(), {"to": reg.a.digest, "from": reg.b.digest})
    body = response.content.decode()
    assert response.status_code == 409
    assert f"“stable” now points at {c.digest[7:19]}, not at the image you saw. Nothing was changed" in body
    assert reg.digest("stable") == c.digest and not Rollback.objects.exists()
    # The page asks again, this time about what is there now.
    assert f'<input type="hidden" name="from" value="{c.digest}">' in body


def test_roll_back__target_manifest_deleted__clear_error_and_unchanged(client: Client, reg: Reg,
                                                                       maintainer: User) -> None:
    p.delete_manifest(reg.server.url, REPO, reg.a.digest)
    response = client.post(rollback_url(), {"to": reg.a.digest, "from": reg.b.digest})
    body = response.content.decode()
    assert response.status_code == 410
    assert f"The manifest {reg.a.digest[7:19]} is no longer in the registry" in body
    assert "Nothing was changed" in body
    assert re.search(r'<button type="submit" class="danger" disabled>', body)
    assert reg.digest("stable") == reg.b.digest and not Rollback.objects.exists()
    # The confirmation says the same before anyone tries.
    confirm = client.get(rollback_url(), {"to": reg.a.digest}).content.decode()
    assert "is no longer in the registry" in confirm


@pytest.mark.parametrize("data", [
    {"to": "sha256:nothex"},
    {"to": "latest"},
    {"to": ""},
])
def test_roll_back__bad_digest_in_to__400(client: Client, reg: Reg, maintainer: User, data: dict) -> None:
    shown = client.get(rollback_url(), data)
    assert shown.status_code == 400 and "Not a valid digest" in shown.content.decode()
    posted = client.post(rollback_url(), {**data, "from": reg.b.digest})
    assert posted.status_code == 400
    assert reg.digest("stable") == reg.b.digest and not Rollback.objects.exists()


def test_roll_back__bad_digest_in_from__400(client: Client, reg: Reg, maintainer: User) -> None:
    response = client.post(rollback_url(), {"to": reg.a.digest, "from": "sha256:" + "z" * 64})
    assert response.status_code == 400
    assert reg.digest("stable") == reg.b.digest


def test_roll_back__digest_never_on_this_tag__refused_and_unchanged(client: Client, reg: Reg,
                                                                   maintainer: User) -> None:
    other = image("other", created="2024-03-01T00:00:00Z")
    p.push_image(reg.server.url, REPO, other)  # in the repository, but never `stable`
    shown = client.get(rollback_url(), {"to": other.digest})
    assert shown.status_code == 404 and "Not in this tag’s history" in shown.content.decode()
    posted = client.post(rollback_url(), {"to": other.digest, "from": reg.b.digest})
    assert posted.status_code == 404
    assert reg.digest("stable") == reg.b.digest and not Rollback.objects.exists()


def test_roll_back__tag_removed_since__history_remains_and_brings_it_back(client: Client, reg: Reg,
                                                                          maintainer: User) -> None:
    p.delete_manifest(reg.server.url, REPO, reg.b.digest)  # takes `stable` and `prod` with it
    store.remove_manifest(REPO, reg.b.digest, source="event")
    page = client.get(history_url())
    body = page.content.decode()
    assert page.status_code == 200 and "The registry has no tag “stable” now." in body
    assert rows(body) == ["", reg.b.digest, reg.a.digest]
    confirm = re.sub(r"<[^>]+>", "", client.get(rollback_url(), {"to": reg.a.digest}).content.decode())
    assert "does not exist now: it will be created again" in confirm
    response = client.post(rollback_url(), {"to": reg.a.digest, "from": ""}, follow=True)
    assert any("was absent" in m for m in texts(response))
    assert reg.tags() == ["stable"] and reg.digest("stable") == reg.a.digest


def test_roll_back__already_there__nothing_to_do(client: Client, reg: Reg, maintainer: User) -> None:
    reg.push(reg.a, "stable")
    index_now()
    response = client.post(rollback_url(), {"to": reg.a.digest, "from": reg.a.digest}, follow=True)
    assert any("already points at" in m for m in texts(response))
    assert not Rollback.objects.exists()


def test_audit__admin_lists_roll_backs_read_only(client: Client, reg: Reg, maintainer: User, admin_client) -> None:
    client.post(rollback_url(), {"to": reg.a.digest, "from": reg.b.digest})
    listing = admin_client.get("/admin/dashboard/rollback/").content.decode()
    assert "mia" in listing and "stable" in listing and reg.a.digest[:19] in listing
    assert admin_client.get("/admin/dashboard/rollback/add/").status_code == 403


# -- in a real browser, with screenshots --------------------------------------------------------


@pytest.fixture
def live_reg(tmp_path: Path, live_server, transactional_db, point_at) -> Iterator[tuple[str, Reg]]:
    """The same history, read by pytest-django's live server (signed-in only)."""
    with RegistryServer(tmp_path / "registry") as server:
        point_at(server.url, ANONYMOUS_READ=False, PULL_HOST="")
        fixture = history_of_stable(server)
        yield live_server.url, fixture
        cache.clear()


@pytest.mark.browser
def test_browser__history_confirm_and_roll_back__light_and_dark(live_reg: tuple[str, Reg], browser: Browser) -> None:
    base, reg = live_reg
    mia = make_user("mia", "maintainer")
    with watched_page(browser) as page:
        sign_in(page, base, mia, history_url())
        table = page.locator("#history table")
        expect(table.locator("tbody tr")).to_have_count(2)
        expect(table.locator("tbody tr").first).to_contain_text("current")
        shots(page, "page", prefix="history-")

        page.get_by_role("link", name=f"Roll back stable to {reg.a.digest[7:19]}…").click()
        confirm = page.get_by_role("alertdialog")
        expect(confirm).to_contain_text(f"will point at {reg.a.digest[7:19]} instead of {reg.b.digest[7:19]}")
        expect(confirm.locator(".taglist")).to_have_text("prod")
        shots(page, "confirm", prefix="history-")

        confirm.get_by_role("button", name=f"Roll back stable to {reg.a.digest[7:19]}").click()
        expect(page).to_have_url(base + history_url())
        expect(page.locator("#messages .message.success")).to_contain_text("rolled back")
        expect(table.locator("tbody tr")).to_have_count(3)
        shots(page, "after", prefix="history-")
        assert reg.digest("stable") == reg.a.digest
