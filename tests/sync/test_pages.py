"""The sync page: what a viewer and a maintainer see, "Sync now", a run's live progress."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.utils import timezone
from playwright.sync_api import Browser, expect

from dashboard.auth import ensure_roles
from dashboard.index import sync
from dashboard.models import RegistryEvent, SyncRun
from tests.helpers.browser import Watch, new_context, shot
from tests.helpers.pages import signed_in
from tests.helpers.recorder import Recorder

pytestmark = pytest.mark.postgres

IMMEDIATE = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}


@pytest.fixture
def site(dashboard, configure, settings):
    """The seeded registry, sign-in required (no anonymous reading), tasks run at once."""
    configure(ANONYMOUS_READ=False, SYNC_INTERVAL=0, EVENTS_TOKEN="s3cret-token-value")
    settings.TASKS = IMMEDIATE
    return dashboard


def test_sync_page__anonymous__sent_to_sign_in(client, site) -> None:
    response = client.get("/-/sync/")
    assert response.status_code == 302 and response["Location"].startswith("/-/login/")


def test_sync_page__viewer__sees_the_index_and_the_events_setup_but_no_button(client, site) -> None:
    sync.run_now()
    signed_in(client, "viewer-user", "viewer")
    page = client.get("/-/sync/").content.decode()
    assert "Sync now" not in page
    assert "Last sync" in page and "Succeeded" in page
    repos = len([r for r, tags in site.seeded.tags.items() if tags])
    assert f"<dt>Repositories</dt><dd>{repos}</dd>" in page
    assert f"<dt>Tags</dt><dd>{sum(len(t) for t in site.seeded.tags.values())}</dd>" in page
    # The registry's notifications config, with this dashboard's address and a placeholder.
    assert "url: http://testserver/-/events/" in page
    assert "Authorization: [Bearer &lt;REGISTRYUI_EVENTS_TOKEN&gt;]" in page
    assert "s3cret-token-value" not in page
    assert "ignoredmediatypes:" in page and "application/octet-stream" in page
    assert ">set</span>" in page and "none received yet" in page


def test_sync_page__viewer__a_forged_post_is_refused_and_starts_nothing(client, site) -> None:
    signed_in(client, "viewer-user", "viewer")
    assert client.post("/-/sync/start/").status_code == 403
    assert SyncRun.objects.count() == 0


def test_sync_page__get_cannot_start_a_sync(client, site) -> None:
    signed_in(client, "maintainer-user", "maintainer")
    assert client.get("/-/sync/start/").status_code == 405
    assert SyncRun.objects.count() == 0


def test_sync_now__maintainer__runs_a_sync_and_shows_its_result(client, site) -> None:
    signed_in(client, "maintainer-user", "maintainer")
    page = client.get("/-/sync/").content.decode()
    assert "Sync now" in page and "No sync has run yet" in page
    response = client.post("/-/sync/start/", follow=True)
    run = SyncRun.objects.get()
    assert response.redirect_chain[-1][0] == f"/-/sync/runs/{run.pk}/"
    assert run.state == "succeeded" and run.trigger == "manual" and run.username == "maintainer-user"
    body = response.content.decode()
    assert f"Sync #{run.pk}" in body and "Succeeded" in body
    assert f"<strong>{len(site.seeded.repos)}</strong> of {len(site.seeded.repos)} repositories" in body
    history = client.get("/-/sync/").content.decode()
    assert "maintainer-user" in history and "manual" in history


def test_sync_now__while_one_runs__says_so_and_follows_it(client, site) -> None:
    now = timezone.now()
    running = SyncRun.objects.create(state="running", active=True, started_at=now, heartbeat_at=now,
                                     repositories_total=10, repositories_done=3)
    signed_in(client, "maintainer-user", "maintainer")
    response = client.post("/-/sync/start/", follow=True)
    assert response.redirect_chain[-1][0] == f"/-/sync/runs/{running.pk}/"
    assert "already running" in response.content.decode()
    assert SyncRun.objects.count() == 1


def test_sync_now__brings_the_scheduled_sync_forward(client, site) -> None:
    waiting = SyncRun.objects.create(state="queued", active=True, trigger="schedule",
                                     not_before=timezone.now() + timedelta(minutes=10))
    signed_in(client, "maintainer-user", "maintainer")
    page = client.get("/-/sync/").content.decode()
    assert "Scheduled" in page and "Due at" in page and 'hx-trigger="every 30s"' in page
    client.post("/-/sync/start/")
    waiting.refresh_from_db()
    assert waiting.state == "succeeded" and waiting.trigger == "manual"
    assert SyncRun.objects.count() == 1


def test_sync_run__running__polls_every_second_with_progress_and_an_estimate(client, site) -> None:
    started = timezone.now() - timedelta(seconds=30)
    run = SyncRun.objects.create(state="running", active=True, started_at=started, heartbeat_at=timezone.now(),
                                 repositories_total=200, repositories_done=50, tags_seen=75, heads=75,
                                 cursor="bulk/repo-0010")
    signed_in(client, "viewer-user", "viewer")
    response = client.get(f"/-/sync/runs/{run.pk}/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and 'hx-trigger="every 1s"' in body
    assert "<strong>50</strong> of 200 repositories (25 %)" in body
    # 50 of 200 in about 30 s (the page takes a moment to ask): about three times that to go.
    assert re.search(r"running for 3\d s · about 1 min 3\d s left", body), body
    assert 'value="50"' in body and 'max="200"' in body


def test_sync_run__finished__polling_stops(client, site) -> None:
    run = sync.run_now()
    signed_in(client, "viewer-user", "viewer")
    response = client.get(f"/-/sync/runs/{run.pk}/", headers={"HX-Request": "true"})
    assert response.status_code == 286
    assert "hx-trigger" not in response.content.decode()


def test_sync_run__without_javascript__a_whole_page(client, site) -> None:
    run = sync.run_now()
    signed_in(client, "viewer-user", "viewer")
    page = client.get(f"/-/sync/runs/{run.pk}/").content.decode()
    assert "<html" in page and f"Sync #{run.pk}" in page and 'href="/-/sync/"' in page


def test_sync_run__a_failed_run_says_why_and_names_its_problems(client, site) -> None:
    now = timezone.now()
    run = SyncRun.objects.create(
        state="failed", active=False, started_at=now, finished_at=now, repositories_total=5, repositories_done=2,
        error="stopped at team/c after 2 of 5 repositories: connection refused at http://x — is the registry "
              "running? The next sync resumes after team/b.",
        details={"problems": {"team/a": "tag 1.0: the registry answered 500 <script>"}, "problem_count": 1})
    signed_in(client, "viewer-user", "viewer")
    page = client.get(f"/-/sync/runs/{run.pk}/").content.decode()
    assert "is the registry running? The next sync resumes after team/b." in page
    assert "1 repository could not be read whole" in page
    assert "&lt;script&gt;" in page and "<script>" not in page.split("</head>", 1)[1]


def test_sync_run__unknown__404(client, site) -> None:
    signed_in(client, "viewer-user", "viewer")
    assert client.get("/-/sync/runs/999/").status_code == 404


def test_sync_page__events__says_when_the_last_one_arrived_and_when_no_token_is_set(
        client, site, configure) -> None:
    configure(EVENTS_TOKEN="")
    RegistryEvent.objects.create(event_id="e1", action="push", repository="acme/web", at=timezone.now())
    signed_in(client, "viewer-user", "viewer")
    page = client.get("/-/sync/").content.decode()
    assert "not set" in page and "refuses every event" in page
    assert "none received yet" not in page and "(just now)" in page


def test_sync_page__schedule__says_when_the_next_sync_is_due(client, site, configure) -> None:
    configure(SYNC_INTERVAL=900)
    sync.run_now()
    signed_in(client, "viewer-user", "viewer")
    page = client.get("/-/sync/").content.decode()
    assert "every 15 min; next" in page
    configure(SYNC_INTERVAL=0)
    assert "off" in client.get("/-/sync/").content.decode()


def test_sync_page__no_inline_styles_or_scripts(client, site) -> None:
    sync.run_now()
    signed_in(client, "maintainer-user", "maintainer")
    page = client.get("/-/sync/").content.decode()
    assert "style=" not in page and "<style" not in page
    body = page.split("</head>", 1)[1]
    assert "<script" not in body


# -- in a real browser ----------------------------------------------------------------------------------------


@pytest.mark.browser
def test_browser__sync_now__live_progress_then_the_result(browser: Browser, live_server, transactional_db,
                                                          registry, configure, settings) -> None:
    ensure_roles()  # the groups come from post_migrate; make sure after a flush, too
    user = User.objects.create_user("mia", password="pw-mia-sync-1")
    user.groups.add(Group.objects.get(name="maintainer"))
    # Through a slow proxy, so the page is seen following a sync that is still running.
    with Recorder(registry.url, delay=0.02) as proxy:
        configure(REGISTRY_URL=proxy.url, ANONYMOUS_READ=False, SYNC_INTERVAL=0, CONCURRENCY=4, EVENTS_TOKEN="")
        settings.TASKS = {"default": {"BACKEND": "tests.helpers.task_backends.ThreadBackend"}}
        settings.ALLOWED_HOSTS = ["*"]
        cache.clear()
        watch = Watch()
        ctx = new_context(browser, watch)
        try:
            page = ctx.new_page()
            page.goto(f"{live_server.url}/-/login/?next=/-/sync/")
            page.get_by_label("Username").fill("mia")
            page.get_by_label("Password").fill("pw-mia-sync-1")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Sync", level=1)).to_be_visible()
            expect(page.get_by_text("No sync has run yet")).to_be_visible()

            page.get_by_role("button", name="Sync now").click()
            expect(page).to_have_url(re.compile(r"/-/sync/runs/\d+/$"))
            status = page.locator("#sync-status")
            total = len(registry.seeded.repos)
            expect(status.locator(".chip")).to_have_text("Running", timeout=15_000)
            expect(status).to_contain_text(f"of {total} repositories")
            shot(page, "sync-running")
            expect(status.locator(".chip")).to_have_text("Succeeded", timeout=60_000)
            expect(status).to_contain_text(f"{total} of {total} repositories")
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                shot(page, f"sync-run-done-{scheme}")
            page.emulate_media(color_scheme="light")

            page.get_by_role("link", name="Sync", exact=True).first.click()
            expect(page.get_by_role("heading", name="Recent syncs")).to_be_visible()
            expect(page.locator(".sync-history tbody tr")).to_have_count(1)
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                shot(page, f"sync-page-{scheme}")
            assert not page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
            watch.assert_clean(page)
        finally:
            ctx.close()
