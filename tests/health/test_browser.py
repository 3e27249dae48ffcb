"""The health page in a real browser: all green on a healthy registry, the API panel red with its
explanation when the registry stops mid-session, green again when it is back — no reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from testbed import RegistryServer
from testbed.push import build_image, push_image
from testbed.server import free_port
from tests.helpers.browser import Watch, mark_document, new_context, same_document, shot
from tests.helpers.pages import index

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path: Path, live_server, transactional_db, point_at) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "registry", port=free_port(), debug=True) as srv:
        push_image(srv.url, "team/app", build_image([{"a.txt": b"a\n" * 100}]), "1.0")
        point_at(srv.url, ANONYMOUS_READ=True, STORAGE_PATH=str(srv.storage_dir), DEBUG_URL=srv.debug_url,
                 HEALTH_INTERVAL=1)
        yield srv


@pytest.fixture
def page(browser: Browser, server: RegistryServer) -> Iterator[Page]:
    # The stopped registry makes the health JSON and partials answer with failures on purpose;
    # only console errors and CSP violations count here.
    watch = Watch()
    ctx = new_context(browser, watch)
    try:
        yield ctx.new_page()
        assert watch.csp == [], watch.csp
    finally:
        ctx.close()


def test_health__green__red_when_registry_stops__green_again(page: Page, live_server, server: RegistryServer) -> None:
    page.goto(f"{live_server.url}/-/health/")
    checks = page.locator("#health-panels article.check")
    expect(checks).to_have_count(7)
    for check in checks.all():
        expect(check).to_have_class("check status-ok")
    expect(page.locator("#health-panels .overall")).to_contain_text("Healthy")
    shot(page, "health-green")
    mark_document(page)

    server.stop()
    api = page.locator('article[data-check="api"]')
    expect(api).to_have_class("check status-failing", timeout=10_000)
    expect(api.locator(".explanation")).to_have_text(
        f"connection refused at {server.url} — is the registry running?")
    expect(page.locator("#health-panels .overall")).to_contain_text("Failing")
    page.emulate_media(color_scheme="dark")
    shot(page, "health-red-dark")
    page.emulate_media(color_scheme="light")

    server.start()
    expect(api).to_have_class("check status-ok", timeout=10_000)
    expect(page.locator("#health-panels .overall")).to_contain_text("Healthy")
    assert same_document(page), "the panels refresh in place, without a reload"


@pytest.mark.parametrize("width", [390, 1280])
def test_front_page_strip__registry_stopped__one_line_naming_the_check_and_why__details_at_its_panel(
        page: Page, live_server, server: RegistryServer, width: int) -> None:
    index("team/app")  # the catalog comes from the index, so the front page still shows with the registry down
    page.set_viewport_size({"width": width, "height": 800})
    server.stop()

    page.goto(f"{live_server.url}/")

    strip = page.locator(".health-strip .overall")
    expect(strip).to_have_class("overall status-failing")
    why = strip.locator(".why")
    diagnosis = f"connection refused at {server.url} — is the registry running?"
    expect(why).to_have_text(f"— Registry API: {diagnosis}")
    expect(why).to_have_attribute("title", f"Registry API: {diagnosis}")
    shot(page, f"health-strip-failing-{width}", full_page=False)
    box = page.evaluate("""() => {
        const strip = document.querySelector('.health-strip .overall');
        const rect = (sel) => strip.querySelector(sel).getBoundingClientRect();
        const why = strip.querySelector('.why');
        return {state: rect('.state').top, details: rect('.details').top, right: rect('.details').right,
                stripRight: strip.getBoundingClientRect().right, height: strip.getBoundingClientRect().height,
                lineHeight: rect('.state').height, cut: why.scrollWidth > why.clientWidth,
                overflow: strip.scrollWidth - strip.clientWidth};
    }""")
    # One line: the link to the details on the same line as the state, inside the strip.
    assert abs(box["details"] - box["state"]) < 2 and box["height"] < 2 * box["lineHeight"], box
    assert box["right"] <= box["stripRight"] + 0.5 and box["overflow"] <= 0, box
    # On a phone the diagnosis gives way, with an ellipsis; on a laptop it has room.
    assert box["cut"] is (width == 390), box

    page.locator(".health-strip a.details").click()
    page.wait_for_url(f"{live_server.url}/-/health/#check-api")
    api = page.locator('article[data-check="api"]')
    expect(api).to_have_class("check status-failing")
    expect(api.locator(".explanation")).to_have_text(diagnosis)
