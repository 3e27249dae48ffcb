"""The main user paths in a real browser (headless Debian Chromium driven by Playwright).

Every page is watched for console errors, uncaught exceptions, CSP violations, dialogs (an
executed XSS payload would ``alert``) and failed requests; the ``page`` fixture fails the test
on any of them. Expected content comes from the seeded registry's facts, never hard-coded.

Screenshots land in ``test-artifacts/screenshots/`` (git-ignored) for a human to look at.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from testbed import Kind
from testbed.seed import REPO_ALPINE, REPO_CHART, REPO_MULTI, REPO_WEB, XSS_HISTORY, XSS_LABEL
from tests.helpers.browser import (
    App,
    Watch,
    is_semver,
    mark_document,
    new_context,
    no_sideways_scroll,
    parse_iso,
    same_document,
    semver,
    shot,
    shown_tags,
    wait_for_details,
)
from tests.helpers.pages import catalog_order, plain_tags, tag_count_text

pytestmark = pytest.mark.browser

# -- 1. catalog -------------------------------------------------------------------------------


def test_catalog_lists_repositories_and_fills_tag_counts(page: Page, app: App) -> None:
    seeded = app.seeded
    page.goto(app.url + "/")
    expect(page).to_have_title(re.compile(r"^Repositories"))
    expect(page.locator("#repo-list .summary")).to_have_text(re.compile(rf"^\s*{len(seeded.repos)} repositories"))
    mark_document(page)

    # acme/web's count arrives via htmx: its tags, and its attachment tags apart, as its page says.
    web_count = page.locator('td.tag-count[data-repo="acme/web"]')
    expect(web_count).to_have_text(tag_count_text(seeded, REPO_WEB))
    assert same_document(page), "tag counts should arrive without a reload"

    # The first page lists the first 100 names in order, each with its seeded count.
    rows = page.locator("td.tag-count").evaluate_all(
        "cells => cells.map(c => [c.dataset.repo, c.textContent.replace(/\\s+/g, ' ').trim()])")
    # Grouped by namespace: each namespace's repositories stand together under one heading.
    first_page = catalog_order(seeded.repos)[:100]
    assert [r for r, _ in rows] == first_page
    expected = {r: tag_count_text(seeded, r) for r in first_page}
    assert dict(rows) == expected
    assert seeded.tags[seeded.gone_repo] == {} and dict(rows)[seeded.gone_repo] == "no tags"
    # The link text is the full name, the namespace shown as a muted prefix.
    expect(page.locator("a.repo-link", has_text=REPO_WEB)).to_have_attribute("href", f"/r/{REPO_WEB}/")


# -- 2. filter ---------------------------------------------------------------------------------


def test_filter_narrows_without_reload_and_slash_focuses_it(page: Page, app: App) -> None:
    seeded = app.seeded
    page.goto(app.url + "/")
    links = page.locator("#repo-list a.repo-link")
    expect(links).to_have_count(min(100, len(seeded.repos)))
    mark_document(page)

    box = page.locator("#q")
    expect(box).not_to_be_focused()
    page.keyboard.press("/")
    expect(box).to_be_focused()
    expect(box).to_have_value("")  # the shortcut does not type the slash

    box.press_sequentially("acme/")
    expect(page).to_have_url(re.compile(r"\?q=acme(%2F|/)$"))
    matching = catalog_order((r for r in seeded.repos if "acme/" in r), seeded.repos)
    expect(links).to_have_count(len(matching))
    hrefs = links.evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert [a.removeprefix("/r/").removesuffix("/") for a in hrefs] == matching
    expect(page.locator("#repo-list .summary")).to_contain_text(f"{len(matching)} of the registry's repositories match")
    # The narrowed list gets its counts too.
    expect(page.locator('td.tag-count[data-repo="acme/web"]')).to_have_text(tag_count_text(seeded, REPO_WEB))
    assert same_document(page), "filtering should not reload the page"

    box.fill("")
    expect(links).to_have_count(min(100, len(seeded.repos)))
    expect(page.locator("#repo-list .summary")).to_have_text(re.compile(rf"^\s*{len(seeded.repos)} repositories"))
    expect(page).not_to_have_url(re.compile(r"q=acme"))
    assert same_document(page)

    # A name that matches nothing says so.
    box.fill("no-such-repo")
    expect(page.locator("#repo-list .empty")).to_contain_text("No repository name contains")


def test_filter_finds_a_repository_inside_the_folded_bulk_namespace(page: Page, app: App) -> None:
    seeded = app.seeded
    page.goto(app.url + "/")
    group = page.locator("#repo-list details.ns-group")
    expect(group).to_have_count(1)
    expect(group.locator("summary")).to_contain_text(f"bulk/ {len(seeded.bulk_repos)} repositories")
    inside = page.locator('a.repo-link[href="/r/bulk/repo-0042/"]')
    # Folded: the 120 generated repositories take one line, the others stay in view.
    expect(inside).to_be_hidden()
    expect(page.locator("a.repo-link", has_text=REPO_WEB)).to_be_visible()
    shot(page, "catalog-bulk-folded")
    mark_document(page)

    page.locator("#q").press_sequentially("repo-0042")
    expect(page.locator("#repo-list a.repo-link")).to_have_count(1)
    expect(inside).to_be_visible()  # the group it is in opens
    expect(group.locator("summary")).to_contain_text("1 match")
    assert same_document(page)

    # Cleared, the namespace folds again; a click on its line opens it.
    page.locator("#q").fill("")
    expect(page.locator("#repo-list .summary")).to_have_text(re.compile(rf"^\s*{len(seeded.repos)} repositories"))
    expect(group.locator("a.repo-link").first).to_be_hidden()
    group.locator("summary").click()
    expect(group.locator("a.repo-link").first).to_be_visible()
    shot(page, "catalog-bulk-open")


def test_back_button_after_filtering_restores_the_whole_page(page: Page, app: App) -> None:
    acme = [r for r in app.seeded.repos if "acme/" in r]
    web = [r for r in app.seeded.repos if "acme/w" in r]
    links = page.locator("#repo-list a.repo-link")
    page.goto(app.url + "/")
    box = page.locator("#q")
    box.fill("acme/")
    expect(page).to_have_url(re.compile(r"\?q=acme%2F$"))
    expect(links).to_have_count(len(acme))
    box.fill("acme/w")
    expect(page).to_have_url(re.compile(r"\?q=acme%2Fw$"))
    expect(links).to_have_count(len(web))

    # Back within the document: htmx asks the server for the earlier URL and swaps the body.
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?q=acme%2F$"))
    expect(links).to_have_count(len(acme))
    expect(page.locator("header.topbar")).to_have_count(1)
    expect(page.locator("#q")).to_have_count(1)

    # Back from another document: the browser's cache must not hand over the htmx fragment.
    links.filter(has_text=REPO_WEB).click()
    expect(page.locator("h1")).to_have_text(REPO_WEB)
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?q=acme%2F$"))
    expect(page.locator("header.topbar")).to_have_count(1)
    expect(page.locator("#q")).to_have_value("acme/")
    expect(links).to_have_count(len(acme))


# -- 3 + 4. repository, details, sorting ---------------------------------------------------------


def test_repository_details_fill_in_and_sorting_reorders(page: Page, app: App) -> None:
    seeded = app.seeded
    page.goto(app.url + "/")
    page.locator("a.repo-link", has_text=REPO_WEB).click()
    expect(page).to_have_url(app.repo_url(REPO_WEB))
    expect(page.locator("h1")).to_have_text(REPO_WEB)
    mark_document(page)

    tags = plain_tags(seeded, REPO_WEB)
    expect(page.locator("#tags tr.tag-row")).to_have_count(len(tags))
    assert sorted(shown_tags(page)) == sorted(tags)
    wait_for_details(page)
    assert same_document(page), "details should arrive via htmx, not a reload"

    for tag in tags:
        fact = seeded.fact(REPO_WEB, tag)
        row = page.locator(f'#tags tr.tag-row[data-tag="{tag}"]')
        expect(row.locator("td.digest a")).to_have_attribute("title", fact.digest)
        expect(row.locator("td.digest a")).to_have_text(fact.digest.split(":", 1)[1][:12])
        expect(row.locator("td.num")).to_have_attribute("title", f"{fact.size} bytes, compressed")
        assert parse_iso(row.locator("time").get_attribute("datetime")) == parse_iso(fact.created)
    # 1.10.0 and latest are one image; its cosign attachments hang off it as chips.
    expect(page.locator('tr[data-tag="1.10.0"] .same')).to_contain_text("latest")
    attached = [a for a in seeded.attachments if a.repo == REPO_WEB and a.subject_tag == "1.10.0"]
    expect(page.locator('tr[data-tag="1.10.0"] a.chip.att')).to_have_count(len(attached))

    def by_header(label: str, aria: str) -> list[str]:
        page.locator("#tags thead a", has_text=label).click()
        expect(page.locator("#tags thead th", has_text=label)).to_have_attribute("aria-sort", aria)
        expect(page.locator("#tags tr.tag-row")).to_have_count(len(tags))
        return shown_tags(page)

    size = {t: seeded.fact(REPO_WEB, t).size for t in tags}
    order = by_header("Size", "descending")
    expect(page).to_have_url(re.compile(r"[?&]sort=size"))
    assert [size[t] for t in order] == sorted(size.values(), reverse=True)
    assert order.index("1.10.0") < order.index("1.9.0") < order.index("1.2.0")
    order = by_header("Size", "ascending")
    assert [size[t] for t in order] == sorted(size.values())

    created = {t: parse_iso(seeded.fact(REPO_WEB, t).created) for t in tags}
    order = by_header("Created", "descending")
    expect(page).to_have_url(re.compile(r"[?&]sort=created"))
    assert [created[t] for t in order] == sorted(created.values(), reverse=True)
    assert order.index("1.10.0") < order.index("1.9.0") < order.index("1.2.0")

    # Newest version first when the Tag header is first clicked; names like `latest` stay on top.
    order = by_header("Tag", "descending")
    expect(page).to_have_url(re.compile(r"[?&]sort=name"))
    assert [t for t in order if is_semver(t)] == ["1.10.0", "1.9.0", "1.2.0"]
    assert order[0] == "latest"
    order = by_header("Tag", "ascending")
    versions = [t for t in order if is_semver(t)]
    assert versions == sorted(versions, key=semver) == ["1.2.0", "1.9.0", "1.10.0"]
    assert order[0] == "latest"
    assert same_document(page), "sorting should swap the table, not reload"

    # Back returns to the previous order, with the whole page around it.
    page.go_back()
    expect(page).to_have_url(re.compile(r"[?&]sort=name&order=desc"))
    expect(page.locator("#tags thead th", has_text="Tag")).to_have_attribute("aria-sort", "descending")
    expect(page.locator("h1")).to_have_text(REPO_WEB)
    expect(page.locator("header.topbar")).to_have_count(1)
    wait_for_details(page)
    assert [t for t in shown_tags(page) if is_semver(t)] == ["1.10.0", "1.9.0", "1.2.0"]

    # A reload of the pushed URL renders the same order server-side.
    page.reload()
    wait_for_details(page)
    expect(page.locator("#tags thead th", has_text="Tag")).to_have_attribute("aria-sort", "descending")
    assert [t for t in shown_tags(page) if is_semver(t)] == ["1.10.0", "1.9.0", "1.2.0"]


# -- 5. manifests ------------------------------------------------------------------------------


def test_manifest_shows_config_layers_and_history(page: Page, app: App) -> None:
    seeded = app.seeded
    fact = seeded.fact(REPO_WEB, "1.10.0")
    page.goto(app.repo_url(REPO_WEB))
    page.locator('#tags tr[data-tag="1.10.0"] th.tag > a').first.click()
    expect(page).to_have_url(f"{app.url}/r/{REPO_WEB}/-/manifests/1.10.0/")
    expect(page.locator("h1")).to_have_text(f"{REPO_WEB}:1.10.0")

    facts = page.locator("dl.facts").first
    expect(facts.locator("dd").first.locator("code")).to_have_text(fact.digest)
    expect(page.get_by_role("heading", name="Configuration")).to_be_visible()
    config = page.locator("dl.facts").nth(1)
    assert parse_iso(config.locator("time").get_attribute("datetime")) == parse_iso(fact.created)
    expect(config).to_contain_text(fact.platform)
    expect(config.locator("a.mono")).to_have_text(fact.config_digest.split(":", 1)[1][:12])

    # Hostile label and history text are shown as text (and, per the fixture, never run).
    expect(page.locator("table.kv-table tr", has_text="com.acme.description").locator("td")).to_have_text(XSS_LABEL)
    expect(page.get_by_role("heading", name="History and layers")).to_be_visible()
    history = page.locator("table.history tbody tr")
    expect(history.filter(has_text=XSS_HISTORY)).to_have_count(1)
    layer_links = page.locator("table.history td a.mono")
    expect(layer_links).to_have_count(len(fact.layer_digests))
    titles = layer_links.evaluate_all("as => as.map(a => a.title)")
    assert [t.split(" · ")[0] for t in titles] == list(fact.layer_digests)
    expect(page.locator("table.history tr.empty-layer")).to_have_count(history.count() - len(fact.layer_digests))

    layers = page.locator("h3:text-is('Layers') + table tbody tr")
    expect(layers).to_have_count(len(fact.layer_digests))
    expect(layers.locator("td:nth-child(2) a")).to_have_text(list(fact.layer_digests))
    assert layers.locator("td:nth-child(3)").evaluate_all("tds => tds.map(t => t.title)") == [
        f"{s} bytes" for s in fact.layer_sizes]

    # The attachments of 1.10.0 are listed and the raw JSON unfolds.
    expect(page.get_by_role("heading", name="Attachments")).to_be_visible()
    page.get_by_text("Raw manifest JSON").click()
    expect(page.locator("#raw-json")).to_contain_text(fact.config_digest)


def test_multi_arch_index_links_to_platform_manifest(page: Page, app: App) -> None:
    seeded = app.seeded
    index = seeded.fact(REPO_MULTI, "2.0")
    assert index.kind == Kind.INDEX
    platforms = [c for c in index.children if c.kind != Kind.ATTESTATION_MANIFEST]

    page.goto(app.repo_url(REPO_MULTI))
    wait_for_details(page)
    expect(page.locator('tr[data-tag="2.0"] .plat')).to_have_count(len(platforms))
    page.locator('#tags tr[data-tag="2.0"] th.tag > a').first.click()
    expect(page.locator("h1")).to_have_text(f"{REPO_MULTI}:2.0")
    expect(page.locator(".page-head .chip")).to_have_text("multi-arch")
    expect(page.get_by_role("heading", name="Platforms")).to_be_visible()
    rows = page.locator("h2:text-is('Platforms') + table tbody tr")
    expect(rows).to_have_count(len(index.children))
    for child in platforms:
        expect(rows.filter(has=page.locator(f'a[title="{child.digest}"]')).locator("th a")).to_have_text(child.platform)

    child = next(c for c in platforms if c.platform == "linux/arm64/v8")
    rows.locator("th a", has_text=child.platform).click()
    expect(page).to_have_url(f"{app.url}/r/{REPO_MULTI}/-/manifests/{child.digest}/")
    expect(page.locator("h1")).to_have_text(f"{REPO_MULTI}@{child.digest.split(':', 1)[1][:12]}")
    expect(page.locator("dl.facts").first.locator("dd").first.locator("code")).to_have_text(child.digest)
    expect(page.locator("dl.facts").nth(1)).to_contain_text(child.platform)
    expect(page.locator("h3:text-is('Layers') + table tbody td:nth-child(2) a")).to_have_text(
        list(child.layer_digests))
    # The breadcrumb leads back to the repository.
    page.locator("nav.crumbs a", has_text=REPO_MULTI).click()
    expect(page.locator("h1")).to_have_text(REPO_MULTI)


def test_artifacts_offer_helm_and_oras__copied_as_shown(browser: Browser, app: App, watch: Watch) -> None:
    ctx = new_context(browser, watch)
    try:
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
        page = ctx.new_page()
        # A chart repository: the names paint with docker, the details turn it into helm.
        page.goto(app.repo_url(REPO_CHART))
        head = page.locator("#repo-pull")
        expect(head).to_contain_text(f"helm pull oci://{app.host}/{REPO_CHART}")
        expect(page.locator("#tags button.copy")).to_have_text(["helm pull"])
        shot(page, "artifact-chart-repository")
        # A signature's page: no docker pull, no platform; the ORAS line copies what it shows.
        sig = next(a for a in app.seeded.attachments if a.kind == "signature")
        page.goto(f"{app.url}/r/{sig.repo}/-/manifests/{sig.tag}/")
        pull = page.locator("dl.facts dd").filter(has=page.locator("p.pull-hint"))
        expect(page.locator("code.cmd", has_text="docker pull")).to_have_count(0)
        expect(page.locator("body")).not_to_contain_text("?/?")
        expect(pull.locator("p.pull-hint")).to_contain_text("not a container image")
        line = f"oras pull {app.host}/{sig.repo}:{sig.tag}"
        expect(pull.locator("code.cmd").first).to_have_text(line)
        pull.locator("button.copy").first.click()
        assert page.evaluate("navigator.clipboard.readText()") == line
        shot(page, "artifact-signature-manifest")
    finally:
        ctx.close()
    watch.assert_clean()


# -- 6. copy -----------------------------------------------------------------------------------


def test_copy_pull_command_puts_it_on_the_clipboard(browser: Browser, app: App, watch: Watch) -> None:
    ctx = new_context(browser, watch)
    try:
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
        page = ctx.new_page()
        page.goto(app.repo_url(REPO_WEB))
        wait_for_details(page)
        assert page.evaluate("window.isSecureContext") is True

        button = page.get_by_role("button", name="Copy docker pull command for tag 1.10.0")
        button.click()
        expect(button).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == f"docker pull {app.host}/{REPO_WEB}:1.10.0"
        expect(button).to_have_text(":tag")  # the label comes back

        by_digest = page.get_by_role("button", name="Copy docker pull command for 1.2.0 by digest")
        by_digest.click()
        expect(by_digest).to_have_text("Copied")
        digest = app.seeded.digest(REPO_WEB, "1.2.0")
        assert page.evaluate("navigator.clipboard.readText()") == f"docker pull {app.host}/{REPO_WEB}@{digest}"

        head = page.locator(".page-head button.copy")
        head.click()
        expect(head).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == f"docker pull {app.host}/{REPO_WEB}"
        watch.assert_clean(page)
    finally:
        ctx.close()


def test_copy_falls_back_to_exec_command_without_async_clipboard(browser: Browser, app: App, watch: Watch) -> None:
    """As on a plain-http dashboard (not a secure context): no navigator.clipboard."""
    ctx = new_context(browser, watch)
    try:
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
        page = ctx.new_page()
        page.add_init_script("Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined})")
        page.goto(app.url + f"/r/{REPO_ALPINE}/-/manifests/3.19/")
        button = page.get_by_role("button", name="Copy digest")
        button.click()
        expect(button).to_have_text("Copied")
        reader = ctx.new_page()
        reader.goto(page.url)
        assert reader.evaluate("navigator.clipboard.readText()") == app.seeded.digest(REPO_ALPINE, "3.19")
        expect(page.locator("textarea")).to_have_count(0)  # the helper textarea is gone again
        watch.assert_clean(page)
    finally:
        ctx.close()


# -- 7. console and CSP, plus screenshots ---------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_have_no_console_errors_or_csp_violations(browser: Browser, app: App, watch: Watch,
                                                        scheme: str) -> None:
    ctx = new_context(browser, watch, color_scheme=scheme)
    try:
        page = ctx.new_page()
        seeded = app.seeded
        page.goto(app.url + "/")
        expect(page.locator('td.tag-count[data-repo="acme/web"]')).to_have_text(tag_count_text(seeded, REPO_WEB))
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == ("rgb(255, 255, 255)" if scheme == "light" else "rgb(15, 18, 22)")
        shot(page, f"catalog-{scheme}", full_page=False)  # 100 rows: the top tells the story

        page.goto(app.repo_url(REPO_WEB))
        wait_for_details(page)
        shot(page, f"repository-{scheme}")
        page.goto(app.repo_url(REPO_MULTI))
        wait_for_details(page)
        shot(page, f"repository-multi-{scheme}")
        # A narrow window: the tag table scrolls inside its box, the page does not.
        page.set_viewport_size({"width": 720, "height": 900})
        page.goto(app.repo_url(REPO_WEB))
        wait_for_details(page)
        no_sideways_scroll(page)
        shot(page, f"repository-narrow-{scheme}")
        page.locator("#tags .table-wrap").evaluate("e => { e.scrollLeft = e.scrollWidth; }")
        shot(page, f"repository-narrow-scrolled-{scheme}")
        page.set_viewport_size({"width": 1280, "height": 900})

        page.goto(app.url + f"/r/{REPO_WEB}/-/manifests/1.10.0/")
        expect(page.get_by_role("heading", name="History and layers")).to_be_visible()
        shot(page, f"manifest-{scheme}")
        page.goto(app.url + f"/r/{REPO_MULTI}/-/manifests/2.0/")
        expect(page.get_by_role("heading", name="Platforms")).to_be_visible()
        shot(page, f"manifest-index-{scheme}")
        layer = seeded.fact(REPO_WEB, "1.2.0").layer_digests[0]
        page.goto(app.url + f"/r/{REPO_WEB}/-/blobs/{layer}/")
        expect(page.locator("dl.facts code").first).to_have_text(layer)
        watch.assert_clean(page)
    finally:
        ctx.close()


def test_csp_watch_would_catch_a_violation(browser: Browser, app: App) -> None:
    """The CSP check above means something: an inline style is reported."""
    probe = Watch()
    ctx = new_context(browser, probe)
    try:
        page = ctx.new_page()
        page.goto(app.url + "/")
        page.evaluate("""() => { const s = document.createElement('style');
                                 s.textContent = 'body { color: red }'; document.head.appendChild(s); }""")
        page.wait_for_function("window.__cspViolations.length > 0")
        assert "style-src" in page.evaluate("window.__cspViolations[0]")
    finally:
        ctx.close()


# -- 8. keyboard -------------------------------------------------------------------------------


def test_tab_reaches_skip_link_and_focus_is_visible(page: Page, app: App) -> None:
    page.goto(app.url + "/")
    page.keyboard.press("Tab")
    skip = page.locator("a.skip")
    expect(skip).to_be_focused()
    expect(skip).to_have_text("Skip to content")
    box = skip.bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0, f"focused skip link is off-screen: {box}"
    assert skip.evaluate("e => getComputedStyle(e).outlineStyle") != "none"

    page.keyboard.press("Tab")
    brand = page.locator("a.brand")
    expect(brand).to_be_focused()
    style = brand.evaluate("e => { const s = getComputedStyle(e); return [s.outlineStyle, s.outlineWidth]; }")
    assert style[0] != "none" and style[1] != "0px", style

    # The skip link moves focus into the content: the next Tab lands on the filter box.
    page.keyboard.press("Shift+Tab")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))
    page.keyboard.press("Tab")
    expect(page.locator("#q")).to_be_focused()
    assert page.locator("#q").evaluate("e => getComputedStyle(e).outlineStyle") != "none"


# -- 9. without JavaScript ----------------------------------------------------------------------


def test_basics_work_without_javascript(browser: Browser, app: App, watch: Watch) -> None:
    ctx = new_context(browser, watch, java_script_enabled=False)
    try:
        page = ctx.new_page()
        seeded = app.seeded
        page.goto(app.url + "/")
        page.locator("#q").fill("acme/")
        page.locator("#q").press("Enter")
        expect(page).to_have_url(re.compile(r"\?q=acme"))
        expect(page.locator("#repo-list a.repo-link")).to_have_count(len([r for r in seeded.repos if "acme/" in r]))
        page.locator("a.repo-link", has_text=REPO_WEB).click()

        expect(page.locator("#tags tr.tag-row")).to_have_count(len(plain_tags(seeded, REPO_WEB)))
        page.get_by_role("link", name="Show digests, sizes and dates").click()
        expect(page).to_have_url(re.compile(r"[?&]details=1"))
        for tag in plain_tags(seeded, REPO_WEB):
            expect(page.locator(f'tr[data-tag="{tag}"] td.digest a')).to_have_attribute(
                "title", seeded.digest(REPO_WEB, tag))

        # Sort links are plain links too.
        page.locator("#tags thead a", has_text="Size").click()
        expect(page).to_have_url(re.compile(r"[?&]sort=size"))
        size = [seeded.fact(REPO_WEB, t).size for t in shown_tags(page)]
        assert size == sorted(size, reverse=True)

        page.locator('tr[data-tag="1.2.0"] th.tag > a').first.click()
        expect(page.locator("dl.facts").first.locator("code").first).to_have_text(seeded.digest(REPO_WEB, "1.2.0"))
        watch.assert_clean()
    finally:
        ctx.close()
