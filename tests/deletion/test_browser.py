"""Deleting in a real browser: untag one tag, untag a selection, delete an image and restore it,
and what a viewer sees, against a fresh real registry per test and the live server.

Users sign in through the real login form (anonymous reading is off). Every page is watched as in
tests/browse/test_browser.py: console errors, uncaught exceptions, CSP violations, dialogs, failed
requests and HTTP errors fail the test. What the registry holds is checked with ``requests``,
never taken from the page.

Screenshots (light and dark) land in ``test-artifacts/screenshots/delete-*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from playwright.sync_api import Browser, Page, expect

from testbed import RegistryServer
from testbed import push as p
from tests.helpers.browser import (
    Watch,
    make_user,
    mark_document,
    same_document,
    semver,
    shots,
    shown_tags,
    sign_in,
    wait_for_details,
    watched_page,
)
from tests.helpers.deletion import REPO, Fixture, seed_versions

pytestmark = pytest.mark.browser

TAGS = ["1.0.0", "1.2.4", "2.0.0", "3.0.0", "latest"]
# The default order: names that are not versions on top, then the newest version first.
DEFAULT_ORDER = ["latest", "3.0.0", "2.0.0", "1.2.4", "1.0.0"]


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def reg(tmp_path: Path, live_server, transactional_db, point_at) -> Iterator[Fixture]:
    """A fresh registry with team/app's five tags; the live server reads it, signed-in only."""
    with RegistryServer(tmp_path / "registry") as server:
        fixture = Fixture(server, seed_versions(server))
        point_at(server.url, PULL_HOST="", ANONYMOUS_READ=False)
        yield fixture
        cache.clear()


@pytest.fixture
def base(live_server, reg: Fixture) -> str:
    return live_server.url


@pytest.fixture
def page(browser: Browser, reg: Fixture, watch: Watch) -> Iterator[Page]:
    with watched_page(browser, watch) as pg:
        yield pg


@pytest.fixture
def maintainer(transactional_db) -> User:
    return make_user("mia", "maintainer")


@pytest.fixture
def viewer(transactional_db) -> User:
    return make_user("vic", "viewer")


# -- helpers ----------------------------------------------------------------------------------


def repo_path() -> str:
    return f"/r/{REPO}/"


def row(page: Page, tag: str):
    return page.locator(f'#tags tr.tag-row[data-tag="{tag}"]')


def checkbox(page: Page, tag: str):
    return page.locator(f'input[name=tag][form=bulk-form][value="{tag}"]')


def focus_is_in_confirm_slot(page: Page) -> bool:
    return page.evaluate("""() => { const slot = document.getElementById('confirm-slot');
        return !!slot && document.activeElement !== document.body && slot.contains(document.activeElement); }""")


# -- 1. untag one tag ---------------------------------------------------------------------------


def test_untag_latest__confirm_in_place__row_goes_and_sibling_stays(page: Page, base: str, reg: Fixture,
                                                                   maintainer: User) -> None:
    sign_in(page, base, maintainer, repo_path(), screenshot=True)
    wait_for_details(page)
    assert shown_tags(page) == DEFAULT_ORDER
    summary = page.locator("#tags .summary")
    expect(summary).to_contain_text(re.compile(r"^\s*5 tags · 4 distinct images"))
    expect(page.locator("input[name=tag][form=bulk-form]")).to_have_count(5)
    expect(page.get_by_role("link", name=re.compile(r"^Untag .+…$"))).to_have_count(5)
    shots(page, "repository-maintainer")
    mark_document(page)

    # The confirmation arrives via htmx, takes focus and names what stays.
    untag = page.get_by_role("link", name="Untag latest…")
    untag.click()
    slot = page.locator("#confirm-slot")
    confirm = slot.locator("section.confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_be_focused()
    assert focus_is_in_confirm_slot(page)
    expect(confirm.get_by_role("heading")).to_have_text(f"Remove the tag “latest” from {REPO}?")
    expect(confirm).to_contain_text("This removes only the tag latest.")
    expect(confirm).to_contain_text("stays, still tagged 1.2.4.")
    expect(confirm.locator("a.mono")).to_have_attribute("href", f"/r/{REPO}/-/manifests/{reg.digests['latest']}/")
    expect(confirm.get_by_role("button", name="Untag latest")).to_be_enabled()
    shots(page, "untag-confirmation")
    assert same_document(page), "the confirmation should arrive without a reload"

    # Cancel clears it, in place, and gives focus back to the link that opened it.
    confirm.get_by_role("link", name="Cancel").click()
    expect(slot).to_be_empty()
    expect(untag).to_be_focused()
    expect(page).to_have_url(base + repo_path())
    assert same_document(page)
    assert reg.tags() == TAGS

    # Again, this time from the keyboard: Enter on the link, focus moves into the confirmation.
    untag.focus()
    page.keyboard.press("Enter")
    expect(confirm).to_be_focused()
    page.keyboard.press("Tab")
    assert focus_is_in_confirm_slot(page), "Tab from the confirmation should stay inside it"

    confirm.get_by_role("button", name="Untag latest").click()
    expect(row(page, "latest")).to_have_count(0)
    expect(summary).to_contain_text(re.compile(r"^\s*4 tags · 4 distinct images"))
    expect(page.locator("#messages .message.success")).to_have_text(f"{REPO}: untagged latest")
    expect(slot).to_be_empty()
    expect(row(page, "1.2.4").locator(".same")).to_have_count(0)  # no sibling left to name
    assert shown_tags(page) == [t for t in DEFAULT_ORDER if t != "latest"]
    assert same_document(page), "the untag should swap the table, not reload"

    assert reg.tags() == ["1.0.0", "1.2.4", "2.0.0", "3.0.0"]
    assert reg.digest("1.2.4") == reg.digests["1.2.4"] == reg.digests["latest"]


# -- 2 + 3. select all, shift-click a range, untag the selection ----------------------------------


def test_bulk__select_all__shift_range__untags_exactly_the_selection(page: Page, base: str, reg: Fixture,
                                                                    maintainer: User) -> None:
    sign_in(page, base, maintainer, repo_path())
    wait_for_details(page)
    order = shown_tags(page)
    assert order == DEFAULT_ORDER
    count = page.locator("[data-bulk-count]")
    everything = page.locator("[data-select-all]")
    boxes = page.locator("input[name=tag][form=bulk-form]")
    expect(count).to_have_text("Select tags with the boxes; Shift-click selects a range.")
    mark_document(page)

    # 3. Select all ticks every box, and unticking it clears them again.
    everything.check()
    for tag in order:
        expect(checkbox(page, tag)).to_be_checked()
    expect(count).to_have_text(f"{len(order)} selected")
    everything.uncheck()
    for tag in order:
        expect(checkbox(page, tag)).not_to_be_checked()
    expect(count).to_have_text("Select tags with the boxes; Shift-click selects a range.")

    # 2. Tick 1.0.0, shift-click 3.0.0: everything shown between them is ticked as well.
    checkbox(page, "1.0.0").click()
    expect(count).to_have_text("1 selected")
    checkbox(page, "3.0.0").click(modifiers=["Shift"])
    lo, hi = sorted((order.index("1.0.0"), order.index("3.0.0")))
    chosen = order[lo:hi + 1]
    assert chosen == ["3.0.0", "2.0.0", "1.2.4", "1.0.0"]
    kept = [t for t in order if t not in chosen]
    for tag in order:
        expect(checkbox(page, tag)).to_be_checked(checked=tag in chosen)
    expect(count).to_have_text(f"{len(chosen)} selected")
    assert everything.evaluate("e => [e.checked, e.indeterminate]") == [False, True]
    assert boxes.count() == len(order)

    page.get_by_role("button", name="Untag selected").click()
    slot = page.locator("#confirm-slot")
    confirm = slot.locator("section.confirm")
    expect(confirm).to_be_focused()
    assert focus_is_in_confirm_slot(page)
    expect(confirm.get_by_role("heading")).to_have_text(f"Remove {len(chosen)} tags from {REPO}?")
    expect(confirm.locator("ul.taglist li")).to_have_text(sorted(chosen, key=semver))
    assert same_document(page)
    assert reg.tags() == TAGS  # asking changes nothing

    # While the POST is in flight its progress indicator shows: look from inside the request.
    indicator = confirm.locator(".htmx-indicator")
    expect(indicator).to_be_hidden()
    in_flight: dict[str, object] = {}

    def look(route) -> None:
        if route.request.method == "POST":
            in_flight["class"] = indicator.get_attribute("class")
            in_flight["visible"] = indicator.is_visible()
            in_flight["progress"] = indicator.locator("progress").is_visible()
            in_flight["text"] = indicator.inner_text().strip()
        route.continue_()

    page.route(re.compile(re.escape(f"/r/{REPO}/-/untag/")), look)
    confirm.get_by_role("button", name=f"Untag {len(chosen)} tags").click()

    results = slot.locator("ul.results li")
    expect(results).to_have_count(len(chosen))
    page.unroute(re.compile(re.escape(f"/r/{REPO}/-/untag/")))
    assert "htmx-request" in str(in_flight.get("class")), in_flight
    assert in_flight["visible"] is True and in_flight["progress"] is True, in_flight
    assert in_flight["text"] == f"Untagging {len(chosen)} tags…"

    expect(slot.get_by_role("heading")).to_have_text("Untag results")
    expect(slot.locator("section.confirm.done")).to_be_focused()  # the results take focus, too
    expect(results).to_have_text([f"{t} — untagged" for t in sorted(chosen, key=semver)])
    expect(slot.locator("ul.results li.ok")).to_have_count(len(chosen))
    expect(page.locator("#messages .message.success")).to_have_text(
        f"{REPO}: untagged {', '.join(sorted(chosen, key=semver))}")
    expect(page.locator("#tags tr.tag-row")).to_have_count(len(kept))
    assert shown_tags(page) == kept
    expect(page.locator("#tags .summary")).to_contain_text(re.compile(rf"^\s*{len(kept)} tag\b"))
    expect(count).to_have_text("Select tags with the boxes; Shift-click selects a range.")
    assert same_document(page), "the bulk untag should swap the table, not reload"
    shots(page, "bulk-results")

    assert reg.tags() == sorted(kept)
    assert all(reg.digest(t) == reg.digests[t] for t in kept)

    # Close clears the results in place.
    slot.get_by_role("link", name="Close").click()
    expect(slot).to_be_empty()
    assert same_document(page)


# -- 4. a viewer ---------------------------------------------------------------------------------


def test_viewer__no_delete_controls__direct_confirmation_is_disabled(page: Page, base: str, reg: Fixture,
                                                                     viewer: User) -> None:
    sign_in(page, base, viewer, repo_path())
    wait_for_details(page)
    assert shown_tags(page) == DEFAULT_ORDER
    expect(page.locator("input[type=checkbox]")).to_have_count(0)
    expect(page.locator("#bulk-form")).to_have_count(0)
    expect(page.get_by_text("Untag", exact=False)).to_have_count(0)
    expect(page.locator("#tags a[href*='/delete/']")).to_have_count(0)
    expect(page.get_by_role("link", name="Recently deleted")).to_have_count(0)

    page.locator('#tags tr[data-tag="1.2.4"] th.tag > a').first.click()
    expect(page).to_have_url(f"{base}/r/{REPO}/-/manifests/1.2.4/")
    expect(page.locator("dl.facts").first.locator("code").first).to_have_text(reg.digests["1.2.4"])
    expect(page.get_by_role("link", name="Delete image…")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("^Untag"))).to_have_count(0)

    page.goto(f"{base}/r/{REPO}/-/tags/latest/delete/")
    confirm = page.locator("section.confirm")
    expect(confirm.get_by_role("button", name="Untag latest")).to_be_disabled()
    expect(confirm.locator(".problem")).to_have_text(
        "Your role may browse but not delete: ask an administrator for the maintainer role.")

    page.goto(f"{base}/r/{REPO}/-/manifests/{reg.digests['latest']}/delete/")
    expect(page.get_by_role("button", name="Delete image and 2 tags")).to_be_disabled()
    expect(page.locator("section.confirm .problem")).to_contain_text("may browse but not delete")
    assert reg.tags() == TAGS


# -- 5. delete an image by digest, then restore it --------------------------------------------------


def test_delete_image__every_tag_on_it_goes__restore_brings_them_back(page: Page, base: str, reg: Fixture,
                                                                      maintainer: User) -> None:
    digest = reg.digests["1.2.4"]
    assert reg.digests["latest"] == digest
    sign_in(page, base, maintainer, repo_path())
    wait_for_details(page)
    page.locator('#tags tr[data-tag="1.2.4"] th.tag > a').first.click()
    expect(page).to_have_url(f"{base}/r/{REPO}/-/manifests/1.2.4/")

    page.get_by_role("link", name="Delete image…").click()
    expect(page).to_have_url(f"{base}/r/{REPO}/-/manifests/{digest}/delete/")
    confirm = page.locator("section.confirm")
    expect(confirm).to_contain_text("every tag that points at it")
    expect(confirm.locator("ul.taglist li")).to_have_text(["1.2.4", "latest"])
    expect(confirm).to_contain_text(digest)
    shots(page, "image-confirmation")
    confirm.get_by_role("button", name="Delete image and 2 tags").click()

    expect(page).to_have_url(base + repo_path())
    expect(page.locator("#messages .message.success")).to_have_text(
        f"{REPO}: deleted image {digest[:19]}… and its tags 1.2.4, latest — the registry no longer serves them")
    wait_for_details(page)
    assert shown_tags(page) == ["3.0.0", "2.0.0", "1.0.0"]
    assert reg.tags() == ["1.0.0", "2.0.0", "3.0.0"]
    assert reg.digest("1.2.4") is None and reg.digest("latest") is None

    page.locator(".usernav").get_by_role("link", name="Recently deleted").click()
    expect(page).to_have_url(f"{base}/-/deleted/")
    rows = page.locator("table.deleted-table tbody tr")
    expect(rows).to_have_count(1)
    record = rows.first
    expect(record.locator("td").nth(1)).to_have_text("mia")
    expect(record.locator("td").nth(2)).to_have_text(re.compile(r"image", re.IGNORECASE))
    expect(record.locator("td").nth(3)).to_have_text(REPO)
    expect(record.locator("td").nth(4).locator("code")).to_have_text(["1.2.4", "latest"])
    expect(record.locator("td.mono")).to_have_attribute("title", digest)
    shots(page, "recently-deleted")

    record.get_by_role("button", name="Restore").click()
    expect(page).to_have_url(f"{base}/-/deleted/")
    expect(page.locator("#messages .message.success")).to_have_text(re.compile(
        rf"^{re.escape(REPO)}: restored (1\.2\.4, latest|latest, 1\.2\.4) — the registry serves them again, "
        r"with every blob it needs$"))
    expect(record.locator("td.row-actions")).to_contain_text("restored")
    expect(record.locator("td.row-actions")).to_contain_text("by mia")
    expect(record.get_by_role("button", name="Restore")).to_have_count(0)
    shots(page, "recently-deleted-restored")

    assert reg.tags() == TAGS
    assert reg.digest("1.2.4") == reg.digest("latest") == digest


# -- 6. an image with attachments, deleted, collected: no restore offered -----------------------------


@pytest.fixture
def gc_safe(tmp_path: Path, live_server, transactional_db, point_at) -> Iterator[RegistryServer]:
    """A registry without the blob-descriptor cache (garbage collection runs on it), read live."""
    with RegistryServer(tmp_path / "gc-safe", blob_cache=False) as server:
        point_at(server.url, PULL_HOST="", ANONYMOUS_READ=False)
        yield server
        cache.clear()


def test_delete_with_attachments__then_gc__recently_deleted_offers_no_restore(browser: Browser, watch: Watch,
                                                                              live_server, gc_safe: RegistryServer,
                                                                              maintainer: User) -> None:
    from tests.deletion.test_restore import attach, collect_outside, image, tags

    base = live_server.url
    digest = p.push_image(gc_safe.url, REPO, image("signed"), "1.0")
    p.push_image(gc_safe.url, REPO, image("kept"), "2.0")
    attached = attach(gc_safe, digest)
    with watched_page(browser, watch) as page:
        sign_in(page, base, maintainer, f"/r/{REPO}/-/manifests/{digest}/delete/")
        group = page.get_by_role("group", name="4 attachments name this image")
        expect(group.locator("tbody tr")).to_have_count(4)
        expect(group.locator("tbody tr td:first-child")).to_have_text(sorted(attached))
        box = group.get_by_label("Also remove these 4 attachments")
        expect(box).to_be_checked()
        for width in (390, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            shots(page, f"attachments-confirm-{width}")
        page.get_by_role("button", name="Delete image and 1 tag").click()

        expect(page).to_have_url(base + repo_path())
        expect(page.locator("#messages .message.success")).to_have_text([
            f"{REPO}: deleted image {digest[:19]}… and its tag 1.0 — the registry no longer serves them",
            f"{REPO}: removed 4 attachments with it: {', '.join(sorted(attached))}",
        ])
        assert tags(gc_safe) == ["2.0"]

        collect_outside(gc_safe)
        page.goto(base + "/-/deleted/")
        rows = page.locator("table.deleted-table tbody tr")
        expect(rows).to_have_count(5)
        # The referrers-fallback index still can be: its child, pushed by digest, stays until a
        # collection with --delete-untagged. Everything else lost its blobs: no button.
        referrers = f"sha256-{digest.split(':', 1)[1]}"
        for tag in ["1.0", *attached]:
            actions = rows.filter(has=page.locator("td code", has_text=re.compile(f"^{re.escape(tag)}$")))
            if tag == referrers:
                expect(actions.get_by_role("button", name="Restore")).to_have_count(1)
            else:
                expect(actions.locator("td.row-actions")).to_contain_text(
                    "No longer restorable — garbage collection removed its layers")
                expect(actions.get_by_role("button")).to_have_count(0)
        expect(page.get_by_role("button", name="Restore")).to_have_count(1)
        expect(rows.last.locator("td.row-actions code")).to_have_text(f"docker push {gc_safe.host}/{REPO}:1.0")
        for width in (390, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            shots(page, f"recently-deleted-after-gc-{width}")
