"""Every page at a phone's width (390 px) and a laptop's (1,280 px), in a real browser, against the
seeded registry: no page scrolls sideways, no two visible controls overlap, the top bar is one
line at 1,280 px and a menu on a phone, and signed-out visitors see no nav beyond signing in.

Before the pages are visited the dashboard is given something on every page: the index synced
(history, storage, activity), pulls in the activity feed, a tag that moved (so there is a roll
back to confirm), a deleted image (Recently deleted) and a real dry-run garbage collection of the
seeded registry's storage (the GC page and a run page). Nothing here changes the registry.

Screenshots of every page at both widths land in test-artifacts/screenshots/responsive/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from testbed.push import build_image
from testbed.seed import REPO_ALPINE, REPO_CHART, REPO_GONE, REPO_MULTI, REPO_WEB
from tests.helpers.browser import PASSWORDS, SCREENSHOTS, App, Watch, new_context
from tests.helpers.html import dom

PHONE, LAPTOP = 390, 1280
WIDTHS = (PHONE, LAPTOP)
NARROWEST = 360  # the small end of phones the issue names (360–400 px)
SHOTS = SCREENSHOTS / "responsive"

# Every visible control in the top bar and the page; a closed menu's links are not visible.
CONTROLS = (
    ".topbar a, .topbar button, .topbar input, .topbar select, .topbar summary, "
    "main a, main button, main input, main select, main summary"
)

# What a page measures in the browser: how far it scrolls sideways, the widest element that
# sticks out of the viewport (to name it), and every pair of visible controls whose boxes
# (as far as they are not clipped by a scroll box) overlap.
MEASURE = """(selector) => {
  const vw = document.documentElement.clientWidth;
  const name = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += "#" + el.id;
    if (el.classList.length) s += "." + Array.from(el.classList).join(".");
    const text = (el.innerText || el.value || el.getAttribute("aria-label") || "").trim().replace(/\\s+/g, " ");
    return text ? s + " “" + text.slice(0, 50) + "”" : s;
  };
  const path = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.body && parts.length < 4; e = e.parentElement) {
      parts.unshift(name(e).split(" “")[0]);
    }
    return parts.join(" > ") + (name(el).includes("“") ? " “" + name(el).split(" “")[1] : "");
  };
  // The part of an element's box its scrolling/clipping ancestors let be seen. A positioned
  // element escapes the clip of ancestors below its containing block (a visually hidden label in
  // a scrolled table still widens the page when nothing between is positioned).
  const visibleBox = (el, r = el.getBoundingClientRect()) => {
    let box = {left: r.left, top: r.top, right: r.right, bottom: r.bottom};
    let position = getComputedStyle(el).position;
    for (let a = el.parentElement; a && a !== document.documentElement && position !== "fixed"; a = a.parentElement) {
      const cs = getComputedStyle(a);
      if (position === "absolute" && cs.position === "static") continue;
      position = cs.position;
      if (cs.overflowX !== "visible" || cs.overflowY !== "visible") {
        const c = a.getBoundingClientRect();
        box = {left: Math.max(box.left, c.left), top: Math.max(box.top, c.top),
               right: Math.min(box.right, c.right), bottom: Math.min(box.bottom, c.bottom)};
      }
    }
    return box;
  };
  const overflow = document.documentElement.scrollWidth - window.innerWidth;
  // Who sticks out: the outermost elements reaching past the viewport's right edge and not
  // clipped by a scroll box.
  const wide = [];
  if (overflow > 0) {
    for (const el of document.body.querySelectorAll("*")) {
      const b = visibleBox(el);
      if (b.right > vw + 1 && b.right > b.left && !(el.parentElement && wide.includes(el.parentElement))) {
        const parentOut = el.parentElement && visibleBox(el.parentElement).right > vw + 1;
        if (!parentOut || el.parentElement === document.body) wide.push(el);
      }
    }
  }
  const controls = Array.from(document.querySelectorAll(selector)).filter((el) =>
    el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}));
  // A link that wraps onto two lines has one box per line; its bounding box would cover the line's
  // other links, so each line box counts on its own.
  const boxes = controls.flatMap((el) => Array.from(el.getClientRects()).map((r) => [el, visibleBox(el, r)]))
    .filter(([, b]) => b.right - b.left > 1 && b.bottom - b.top > 1);
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, p] = boxes[i], [b, q] = boxes[j];
      if (a === b || a.contains(b) || b.contains(a)) continue;
      const w = Math.min(p.right, q.right) - Math.max(p.left, q.left);
      const h = Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top);
      if (w > 1 && h > 1) overlaps.push(path(a) + "  ×  " + path(b) + ` (${Math.round(w)}×${Math.round(h)} px)`);
    }
  }
  const edge = (el) => ` (right edge ${Math.round(el.getBoundingClientRect().right)} px)`;
  return {overflow, wide: wide.slice(0, 5).map((el) => path(el) + edge(el)), overlaps: overlaps.slice(0, 10)};
}"""

# The top bar's visible items: one line when every item's box shares a band of height with
# every other's.
TOPBAR_ROWS = """() => {
  const bar = document.querySelector(".topbar");
  if (!bar) return {oneLine: true};  // the admin site has its own header
  const items = Array.from(bar.querySelectorAll("a, button, input, summary, .registry, .who"))
    .filter((el) => el.checkVisibility({checkVisibilityCSS: true}))
    .map((el) => [el, el.getBoundingClientRect()]).filter(([, r]) => r.width > 1 && r.height > 1);
  const top = Math.max(...items.map(([, r]) => r.top)), bottom = Math.min(...items.map(([, r]) => r.bottom));
  return {oneLine: top < bottom, height: bar.getBoundingClientRect().height,
          items: items.map(([el, r]) => {
            const text = (el.innerText || el.value || el.placeholder || "").trim().slice(0, 30);
            return `${el.tagName.toLowerCase()} “${text}” top ${Math.round(r.top)} bottom ${Math.round(r.bottom)}`;
          })};
}"""


@dataclass(frozen=True)
class Visit:
    name: str  # for the screenshot and the failure message
    path: str
    status: int = 200


# -- what is on every page ---------------------------------------------------------------------


def _maintainer() -> User:
    from dashboard.auth import ensure_roles

    ensure_roles()
    user = User.objects.create_user("mia", password=PASSWORDS["mia"], is_staff=True, is_superuser=True)
    user.groups.add(Group.objects.get(name="maintainer"))
    return user


def _fill_the_dashboard(app: App, user: User) -> dict[str, str]:
    """Give every page something to show; returns the ids the URL list needs."""
    from dashboard.gc import runner
    from dashboard.index import sync
    from dashboard.models import Deletion, GCRun, RegistryEvent, TagHistory

    seeded = app.seeded
    assert sync.run_now().state == "succeeded"
    now = timezone.now()
    web_latest, web_old = seeded.digest(REPO_WEB, "latest"), seeded.digest(REPO_WEB, "1.9.0")
    # "latest" pointed at 1.9.0's image a day before the sync found it on 1.10.0's: a roll back to offer.
    TagHistory.objects.create(
        repository=REPO_WEB,
        tag="latest",
        digest=web_old,
        at=now - timedelta(days=1),
        source=TagHistory.Source.EVENT,
        actor="ci",
    )
    for i, (repo, tag) in enumerate(
        [(REPO_WEB, "latest"), (REPO_WEB, "1.10.0"), (REPO_ALPINE, "3.19"), (REPO_MULTI, "2.0"), (REPO_WEB, "latest")]
    ):
        RegistryEvent.objects.create(
            event_id=f"responsive-{i}",
            action="pull",
            repository=repo,
            tag=tag,
            digest=seeded.digest(repo, tag),
            at=now - timedelta(hours=i * 7),
            actor="ci-runner-with-a-rather-long-name",
            address="10.0.0.7",
            user_agent="docker/27.3.1 go/go1.22.7 git-commit/41ca978 os/linux arch/amd64",
            applied=True,
        )
    # acme/gone:old as the seed pushed and deleted it, deleted through the dashboard.
    gone = build_image([{"old.txt": b"soon deleted\n"}], created="2022-01-01T00:00:00Z")
    assert gone.digest == seeded.gone_digest, "the seed's acme/gone image changed; rebuild it the same way here"
    Deletion.objects.create(
        user=user,
        username=user.username,
        registry=seeded.url,
        repository=REPO_GONE,
        action=Deletion.Action.DELETE,
        tags=["old"],
        digest=gone.digest,
        media_type=gone.media_type,
        manifest=gone.manifest,
        method="digest",
    )
    # A real dry run of the collector over the seeded storage: it reads, it deletes nothing.
    run = runner.start(user, dry_run=True)
    run.refresh_from_db()
    assert run.state == GCRun.State.SUCCEEDED, (run.state, run.error, run.output[-2000:])
    return {"gc_run": str(run.pk), "web_old": web_old, "web_latest": web_latest}


def _pages(app: App, ids: dict[str, str]) -> list[Visit]:
    """Every page of the dashboard, with the seeded registry's content in it."""
    seeded = app.seeded
    web = seeded.fact(REPO_WEB, "1.10.0")
    signature = next(a for a in seeded.attachments if a.tag.endswith(".sig"))
    r = f"/r/{REPO_WEB}/-"
    return [
        Visit("catalog", "/"),
        Visit("catalog-filtered", "/?q=acme"),
        Visit("repository", f"/r/{REPO_WEB}/"),
        Visit("repository-multi", f"/r/{REPO_MULTI}/"),
        Visit("manifest-image", f"{r}/manifests/1.10.0/"),
        Visit("manifest-index", f"/r/{REPO_MULTI}/-/manifests/2.0/"),
        Visit("manifest-helm", f"/r/{REPO_CHART}/-/manifests/0.1.0/"),
        Visit("manifest-signature", f"{r}/manifests/{signature.tag}/"),
        Visit("blob-config", f"{r}/blobs/{web.config_digest}/"),
        Visit("blob-layer", f"{r}/blobs/{web.layer_digests[0]}/"),
        Visit("tag-history", f"{r}/tags/latest/history/"),
        Visit("rollback-confirm", f"{r}/tags/latest/rollback/?to={ids['web_old']}"),
        Visit("untag-confirm", f"{r}/tags/{signature.tag}/delete/"),
        Visit("delete-confirm", f"{r}/manifests/{ids['web_latest']}/delete/"),
        Visit("bulk-confirm", f"{r}/untag/?tag=1.2.0&tag=1.9.0&tag={signature.tag}"),
        Visit("recently-deleted", "/-/deleted/"),
        Visit("gc", "/-/gc/"),
        Visit("gc-run", f"/-/gc/runs/{ids['gc_run']}/"),
        Visit("health", "/-/health/"),
        Visit("search", "/-/search/?q=web"),
        Visit("search-digest", f"/-/search/?q={web.config_digest[:20]}"),
        Visit("storage", "/-/storage/"),
        Visit("activity", "/-/activity/"),
        Visit("sync", "/-/sync/"),
        Visit("admin", "/admin/"),
        Visit("not-found", "/r/no/such/repository-with-a-long-name-that-does-not-exist/", 404),
    ]


# -- measuring -----------------------------------------------------------------------------------


def _problems(page: Page, where: str, width: int) -> list[str]:
    found = page.evaluate(MEASURE, CONTROLS)
    problems = []
    if found["overflow"] > 0:
        problems.append(
            f"{where} at {width}px scrolls sideways by {found['overflow']}px; sticking out: " + "; ".join(found["wide"])
        )
    problems += [f"{where} at {width}px: controls overlap: {o}" for o in found["overlaps"]]
    if width >= LAPTOP:
        bar = page.evaluate(TOPBAR_ROWS)
        if not bar["oneLine"]:
            problems.append(
                f"{where} at {width}px: the top bar is not one line ({bar['height']:.0f}px high): "
                + "; ".join(bar["items"])
            )
    return problems


def _settle(page: Page) -> None:
    """Wait for what htmx loads after the page (tag counts, details, health panels)."""
    page.wait_for_load_state("networkidle")
    expect(page.locator(".htmx-request")).to_have_count(0)


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True, animations="disabled")


def _asked_for_404(problem: str, app: App, ids: dict[str, str]) -> bool:
    """The 404 page is the one error the visit asks for; the admin's pages name no icon, so the
    browser asks for /favicon.ico there."""
    asked = [app.url + v.path for v in _pages(app, ids) if v.status == 404]
    if problem in [f"HTTP 404: GET {url}" for url in [*asked, app.url + "/favicon.ico"]]:
        return True
    return "status of 404" in problem and problem.rpartition(" @ ")[2] in [*asked, app.url + "/admin/"]


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def site(app: App, configure, settings) -> Iterator[tuple[App, User, dict[str, str]]]:
    """The dashboard as shipped (anonymous reading off), with garbage collection set up on the
    seeded registry's own storage and every page given content."""
    server = app.registry.server
    configure(
        ANONYMOUS_READ=False,
        STORAGE_PATH=str(server.storage_dir),
        GC_COMMAND=f"docker-registry garbage-collect {server.config_path}",
        GC_BEFORE_COMMAND="",
        GC_AFTER_COMMAND="",
    )
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    user = _maintainer()
    yield app, user, _fill_the_dashboard(app, user)


@pytest.fixture
def signed_in(browser: Browser, site, watch: Watch) -> Iterator[tuple[Page, App, dict[str, str]]]:
    app, user, ids = site
    ctx = new_context(browser, watch)
    page = ctx.new_page()
    page.goto(app.url + "/-/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORDS[user.username])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(app.url + "/")
    yield page, app, ids
    ctx.close()


# -- the tests ------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("width", (NARROWEST, *WIDTHS))
def test_every_page__fits_the_width__no_sideways_scroll__no_overlapping_controls(
    signed_in, watch: Watch, width: int
) -> None:
    page, app, ids = signed_in
    page.set_viewport_size({"width": width, "height": 860})
    problems: list[str] = []
    for visit in _pages(app, ids):
        response = page.goto(app.url + visit.path)
        assert response is not None and response.status == visit.status, (visit, response and response.status)
        _settle(page)
        _shot(page, f"{visit.name}-{width}")
        problems += _problems(page, visit.name, width)
    assert not problems, f"{len(problems)} layout problems:\n" + "\n".join(problems)
    watch.problems[:] = [p for p in watch.problems if not _asked_for_404(p, app, ids)]
    watch.assert_clean(page)


@pytest.mark.browser
@pytest.mark.parametrize("width", WIDTHS)
def test_login__signed_out__fits__no_nav_beyond_sign_in(browser: Browser, site, watch: Watch, width: int) -> None:
    app, _, _ = site
    ctx = new_context(browser, watch)
    page = ctx.new_page()
    page.set_viewport_size({"width": width, "height": 860})
    page.goto(app.url + "/-/activity/")
    expect(page).to_have_url(re.compile(r"/-/login/\?next="))
    _settle(page)
    _shot(page, f"login-{width}")
    problems = _problems(page, "login", width)
    assert not problems, "\n".join(problems)
    bar = page.locator(".topbar")
    # Only the brand: no search, no menu, no link to a page that would send them back here.
    assert bar.locator("a").evaluate_all("links => links.map(a => a.textContent.trim())") == ["◳ registryui"]
    expect(bar.locator("input, summary, nav")).to_have_count(0)
    watch.assert_clean(page)
    ctx.close()


@pytest.mark.browser
def test_menu__on_a_phone__opens_and_closes_from_the_keyboard__fits__focus_visible(signed_in, watch: Watch) -> None:
    page, app, _ = signed_in
    page.set_viewport_size({"width": PHONE, "height": 860})
    page.goto(app.url + f"/r/{REPO_WEB}/")
    _settle(page)
    summary = page.locator(".topbar summary")
    gc = page.locator(".topbar").get_by_role("link", name="Garbage collection")
    expect(summary).to_have_text("Menu")
    expect(gc).to_be_hidden()
    summary.focus()
    page.keyboard.press("Enter")
    expect(gc).to_be_visible()
    # The focused button shows it: an outline of the focus colour, not the browser's default.
    outline = summary.evaluate("s => [getComputedStyle(s).outlineStyle, parseFloat(getComputedStyle(s).outlineWidth)]")
    assert outline[0] == "solid" and outline[1] >= 2, outline
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        _shot(page, f"menu-open-{PHONE}-{scheme}")
    page.emulate_media(color_scheme="light")
    overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"the open menu widens the page by {overflow}px"
    # Every link of the menu in one column, each on its own line, inside the viewport.
    links = page.locator(".menu-body nav a, .menu-body nav button").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [e.textContent.trim(), r.left, r.right]; })"
    )
    assert [t for t, _, _ in links] == [
        "Activity",
        "Storage",
        "Sync",
        "Health",
        "Recently deleted",
        "Garbage collection",
        "Admin",
        "Sign out",
    ]
    assert all(0 <= left and right <= PHONE for _, left, right in links), links
    page.keyboard.press("Tab")  # into the menu: the search box comes first
    expect(page.locator("#global-q")).to_be_focused()
    page.keyboard.press("Escape")
    expect(gc).to_be_hidden()
    expect(summary).to_be_focused()
    # Search from the menu.
    page.keyboard.press("Enter")
    page.locator("#global-q").fill("mychart")
    page.locator("#global-q").press("Enter")
    expect(page).to_have_url(re.compile(r"/-/search/\?q=mychart$"))
    watch.assert_clean(page)


@pytest.mark.browser
def test_menu__at_1280__no_menu_button__every_link_in_the_bar(signed_in, watch: Watch) -> None:
    page, app, _ = signed_in
    page.goto(app.url + "/")
    expect(page.locator(".topbar summary")).to_be_hidden()
    bar = page.locator(".topbar")
    for name in ("Activity", "Storage", "Sync", "Health", "Recently deleted", "Garbage collection", "Admin"):
        expect(bar.get_by_role("link", name=name)).to_be_visible()
    expect(bar.get_by_role("button", name="Sign out")).to_be_visible()
    expect(bar.get_by_role("searchbox")).to_be_visible()
    # Reachable from the keyboard in order, as links in a bar are.
    page.locator(".brand").focus()
    page.keyboard.press("Tab")
    expect(page.locator("#global-q")).to_be_focused()
    page.keyboard.press("Tab")
    expect(bar.get_by_role("link", name="Activity")).to_be_focused()
    watch.assert_clean(page)


# -- what the top bar offers whom (no browser) --------------------------------------------------------


def _bar(client, url: str = "/") -> list[str]:
    """The top bar's links, buttons and search box, as text."""
    response = client.get(url, follow=True)
    bar = dom(response).one("header", cls="topbar")
    found = [n.text for n in bar.find_all("a") + bar.find_all("button")]
    return found + (["search"] if bar.find("input", type="search") else [])


def test_nav__signed_out_as_shipped__only_the_brand_and_sign_in(client, dashboard, configure) -> None:
    configure(ANONYMOUS_READ=False)
    # Sent to the login page, which needs no link to itself.
    assert _bar(client, "/-/storage/") == ["◳ registryui"]
    assert _bar(client, "/-/health/") == ["◳ registryui"]


def test_nav__signed_out_with_anonymous_reading__what_they_may_open_and_sign_in(client, dashboard) -> None:
    # REGISTRYUI_ANONYMOUS_READ lets anyone read; deleting, GC and the admin stay for the signed in.
    assert _bar(client) == ["◳ registryui", "Activity", "Storage", "Sync", "Health", "Sign in", "search"]


def test_nav__viewer__reads__no_maintainer_pages(client, dashboard, configure) -> None:
    configure(ANONYMOUS_READ=False)
    from dashboard.auth import ensure_roles

    ensure_roles()
    viewer = User.objects.create_user("vic", password="x")
    viewer.groups.add(Group.objects.get(name="viewer"))
    client.force_login(viewer)
    assert _bar(client) == ["◳ registryui", "Activity", "Storage", "Sync", "Health", "Sign out", "search"]


def test_nav__signed_in_without_a_role__only_signing_out(client, dashboard, configure) -> None:
    configure(ANONYMOUS_READ=False)
    client.force_login(User.objects.create_user("nobody", password="x"))
    assert _bar(client) == ["◳ registryui", "Sign out"]


@pytest.mark.browser
def test_menu__without_javascript__opens_and_leads_to_a_page(browser: Browser, site, watch: Watch) -> None:
    app, user, _ = site
    ctx = new_context(browser, watch, java_script_enabled=False)
    try:
        page = ctx.new_page()
        page.set_viewport_size({"width": PHONE, "height": 860})
        page.goto(app.url + "/-/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORDS[user.username])
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(app.url + "/")
        storage = page.locator(".topbar").get_by_role("link", name="Storage")
        expect(storage).to_be_hidden()
        page.locator(".topbar summary").click()
        storage.click()
        expect(page).to_have_url(app.url + "/-/storage/")
        expect(page.get_by_role("heading", name="Storage", level=1)).to_be_visible()
        watch.assert_clean(page)
    finally:
        ctx.close()
