"""Every figure shown on two pages says the same on both: tag counts, pulls, "never pulled" and
storage totals, read from the pages a user opens.

A real registry 2.8 is seeded with the standard content and notifies the live test server, so its
pushes and pulls arrive as the registry sends them; pulls are real `skopeo copy`s. The worker is
held back at first (the dummy task backend), which is what a busy worker or a repository the index
does not know yet looks like: the pulls of a freshly pushed tag arrive before the index has the
tag. Then the worker's pass and a full sync run, as they do in production.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.cache import cache

from dashboard.index import events, sync
from dashboard.models import RegistryEvent
from testbed import Notifications, RegistryServer, seed_standard
from testbed.push import build_image, push_image
from testbed.seed import REPO_WEB, Seeded
from tests.helpers.html import Node, dom
from tests.helpers.pages import HTMX, get, plain_tags

pytestmark = pytest.mark.postgres

TOKEN = "figures-agree-token-0123456789abcdef"
LATE = "team/late"


def until[T](what: str, check: Callable[[], T], timeout: float = 60.0) -> T:
    """Poll `check` until it returns something truthy: the registry sends events on its own time."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def skopeo_pull(server: RegistryServer, reference: str, into: Path) -> None:
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            f"docker://{server.host}/{reference}",
            f"dir:{into}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def pulls_stored(repository: str, tag: str) -> int:
    return RegistryEvent.objects.filter(action="pull", repository=repository, tag=tag).count()


@dataclass
class Registry:
    server: RegistryServer
    seeded: Seeded
    tmp: Path


@pytest.fixture
def registry(tmp_path: Path, live_server, transactional_db, point_at, settings) -> Iterator[Registry]:
    # No worker yet: stored events wait, as they do for a busy worker.
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    notify = Notifications(url=f"{live_server.url}/-/events/", token=TOKEN)
    with RegistryServer(tmp_path / "registry", notifications=notify) as server:
        point_at(server.url, ANONYMOUS_READ=True, EVENTS_TOKEN=TOKEN, STORAGE_PATH=str(server.storage_dir))
        seeded = seed_standard(server.url, skopeo_workdir=tmp_path / "skopeo")
        yield Registry(server, seeded, tmp_path)
    cache.clear()


# -- reading the figures off the pages ------------------------------------------------------------


def catalog_cell(client, name: str, *, live: bool) -> str:
    doc = dom(get(client, f"/?q={name}" + ("&counts=1" if live else ""), htmx=live))
    return doc.one("td", cls="tag-count", data_repo=name).text


def repository_counts(client, name: str, query: str = "") -> tuple[int, int]:
    """(tags, attachment tags) as the repository page's summary says them."""
    doc = dom(get(client, f"/r/{name}/{query}"))
    summary = doc.one("section", id="tags").one("p", cls="summary")
    attached = summary.find("span", cls="n-attachments")
    tags = summary.one("span", cls="n-tags")
    assert tags.text.startswith(tags.attrs["data-n"] + " tag")
    return int(tags.attrs["data-n"]), int(attached.attrs["data-n"]) if attached else 0


def said(cell: str) -> tuple[int, int]:
    """ "4 + 4 attachment tags" -> (4, 4); "no tags" -> (0, 0)."""
    if cell == "no tags":
        return 0, 0
    found = re.fullmatch(r"(\d+)(?: \+ (\d+) attachment tags?)?", cell)
    assert found, cell
    return int(found[1]), int(found[2] or 0)


def stale_rows(client, query: str) -> dict[str, tuple[int, str]]:
    """The stale-tags list: tag -> (pulls, last pull as an ISO time, or "never")."""
    doc = dom(get(client, f"/-/activity/?{query}"))
    out = {}
    for tr in doc.one("table", cls="stale-tags").find_all("tr"):
        if "data-tag" not in tr.attrs:
            continue
        cell = tr.one("td", cls="last-pull")  # the last pull, or "never"; then when it was pushed
        when = "never" if cell.find("span", cls="chip") else cell.find_all("time")[0].attrs["datetime"]
        out[tr.attrs["data-tag"]] = (int(tr.one("td", cls="pulls").text), when)
    return out


def chart_totals(client, query: str = "") -> dict[str, int]:
    doc = dom(get(client, f"/-/activity/?{query}"))
    table = doc.one("section", id="pulls").find("table", cls="pulls-chart")
    if table is None:
        return {}
    return {
        tr.attrs["data-repository"]: int(tr.attrs["data-total"])
        for tr in table.find_all("tr")
        if "data-repository" in tr.attrs
    }


def history_pulls(client, name: str, tag: str) -> tuple[int, str]:
    dd = dom(get(client, f"/r/{name}/-/tags/{tag}/history/")).one("dd", cls="last-pull")
    when = dd.find("time")
    return int(dd.attrs["data-pulls"]), when.attrs["datetime"] if when else "never"


def data_bytes(node: Node) -> int:
    return int(node.attrs["data-bytes"])


# -- the test -------------------------------------------------------------------------------------


def test_every_figure_on_two_pages__says_the_same_on_both(registry: Registry, client) -> None:
    server, seeded = registry.server, registry.seeded
    web_tags, web_attached = (
        len(plain_tags(seeded, REPO_WEB)),
        len(seeded.tags[REPO_WEB]) - len(plain_tags(seeded, REPO_WEB)),
    )
    assert (web_tags, web_attached) == (4, 4)

    # A tag pushed and pulled twice before the worker has applied its push.
    push_image(server.url, LATE, build_image([{"late.txt": b"late\n" * 200}]), "1.0")
    skopeo_pull(server, f"{LATE}:1.0", registry.tmp / "p1")
    skopeo_pull(server, f"{LATE}:1.0", registry.tmp / "p2")
    # The registry sends its events in order: with both pulls in, every push before them is too.
    until("both pulls of team/late:1.0", lambda: pulls_stored(LATE, "1.0") == 2)

    # -- tag counts, read live (the index has no full sync yet): catalog = repository page.
    assert said(catalog_cell(client, REPO_WEB, live=True)) == (web_tags, web_attached)
    assert repository_counts(client, REPO_WEB, "?details=1") == (web_tags, web_attached)

    # The worker's pass, then the first full sync: every page reads the index from here on.
    events.apply_pending()
    assert sync.run_now().state == "succeeded"
    skopeo_pull(server, f"{REPO_WEB}:1.10.0", registry.tmp / "p3")
    until("the pull of acme/web:1.10.0", lambda: pulls_stored(REPO_WEB, "1.10.0") == 1)

    # -- tag counts from the index: catalog = repository page = storage = search, and = live.
    assert said(catalog_cell(client, REPO_WEB, live=False)) == (web_tags, web_attached)
    assert repository_counts(client, REPO_WEB) == (web_tags, web_attached)
    storage = dom(get(client, "/-/storage/?q=acme/web"))
    web_row = storage.one("tr", data_repository=REPO_WEB)
    assert said(web_row.one("td", cls="tag-count").text) == (web_tags, web_attached)
    own = dom(get(client, f"/-/storage/?repository={REPO_WEB}"))
    summary = own.one("span", cls="tag-count").text  # "4 tags + 4 attachment tags"
    assert said(summary.replace(" tags", "", 1)) == (web_tags, web_attached)
    hit = dom(get(client, "/-/search/?q=acme/web")).one("td", cls="tag-count")
    assert said(hit.text) == (web_tags, web_attached)
    health = get(client, "/-/health.json").json()["checks"]
    plain = sum(len(plain_tags(seeded, r)) for r in seeded.repos) + 1  # team/late:1.0
    attachments = len(seeded.attachments)
    assert (health["content"]["detail"]["tags"], health["content"]["detail"]["attachments"]) == (plain, attachments)
    assert (health["index"]["detail"]["tags"], health["index"]["detail"]["attachments"]) == (plain, attachments)

    # -- pulls: the chart, the stale list and the tag's history say the same, for a tag whose
    # pulls arrived before the index knew it too.
    late = stale_rows(client, f"repository={LATE}")
    assert list(late) == [f"{LATE}:1.0"]
    pulls, last = late[f"{LATE}:1.0"]
    assert pulls == 2 and last != "never", "pulled twice, yet listed as never pulled"
    assert chart_totals(client)[LATE] == 2
    assert history_pulls(client, LATE, "1.0") == (2, last)
    # acme/web: one pull of 1.10.0; latest names the same image but was not pulled by its name.
    web = stale_rows(client, f"repository={REPO_WEB}")
    assert web[f"{REPO_WEB}:1.10.0"][0] == 1 and web[f"{REPO_WEB}:latest"] == (0, "never")
    assert chart_totals(client)[REPO_WEB] == sum(n for n, _ in web.values()) == 1
    assert history_pulls(client, REPO_WEB, "1.10.0") == web[f"{REPO_WEB}:1.10.0"]
    assert history_pulls(client, REPO_WEB, "latest") == (0, "never")

    # -- the Activity filter filters its charts and its stale list, not only the feed.
    assert chart_totals(client, f"repository={LATE}") == {LATE: 2}
    assert chart_totals(client, "actor=nobody") == {}
    by_nobody = stale_rows(client, f"repository={LATE}&actor=nobody")
    assert by_nobody == {f"{LATE}:1.0": (0, "never")}
    anonymous = stale_rows(client, f"repository={LATE}&actor=anonymous")  # skopeo named no user
    assert anonymous == late
    # The htmx swap of the filter carries the charts along.
    swapped = dom(get(client, f"/-/activity/?repository={LATE}", htmx=True))
    assert swapped.one("div", id="activity-body").one("tr", data_repository=LATE).attrs["data-total"] == "2"

    # -- storage: the storage page, its repository page and the repository page say the same.
    on_disk = int(web_row.attrs["data-total"])
    assert on_disk > 0
    assert data_bytes(dom(get(client, f"/r/{REPO_WEB}/")).one("span", id="repo-on-disk")) == on_disk
    assert data_bytes(own.find_all("div", cls="figure-card")[0].one("dd", cls="value")) == on_disk  # "On disk"
    # The disk, measured once for the storage page and the health page.
    measured = dom(client.get("/-/storage/?measure=1", headers=HTMX).content).one("p", id="disk")
    blob_bytes = get(client, "/-/health.json").json()["checks"]["storage"]["detail"]["blob_bytes"]
    assert data_bytes(measured) == blob_bytes > 0
