"""The storage and activity pages over an index built here row by row: orders, filters, paging,
empty states, hostile values and the charts' bars. (The storage figures against a real registry's
disk are tests/insight/test_storage_disk.py.)

Runs on SQLite and, in CI, again on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import html
import re
from datetime import UTC, datetime, time, timedelta
from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from playwright.sync_api import expect

from dashboard.index import store
from dashboard.models import (
    IndexedBlob,
    IndexedManifest,
    IndexedRepository,
    IndexedTag,
    ManifestBlob,
    ManifestChild,
    RegistryEvent,
    RepositoryManifest,
)
from tests.helpers.browser import mark_document, no_sideways_scroll, same_document, shots, watched_page
from tests.helpers.html import elements
from tests.helpers.pages import get

pytestmark = pytest.mark.postgres

XSS = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


def dg(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


# -- building an index ---------------------------------------------------------------------------


def manifest(seed: str, size: int, blobs: dict[str, int] | None = None, children: tuple[str, ...] = (),
             kind: str = "image") -> str:
    """An indexed manifest of `size` bytes naming these blobs (seed -> size) or child manifests."""
    row = IndexedManifest.objects.create(digest=dg(f"manifest {seed}"), size=size, kind=kind)
    for blob_seed, blob_size in (blobs or {}).items():
        blob, _ = IndexedBlob.objects.get_or_create(digest=dg(f"blob {blob_seed}"), defaults={"size": blob_size})
        ManifestBlob.objects.create(manifest=row, blob=blob, role="layer")
    for child in children:
        ManifestChild.objects.create(parent=row, digest=dg(f"manifest {child}"))
    return row.digest


def put(repo: str, tags: dict[str, str] | None = None, untagged: tuple[str, ...] = (), *,
        at: datetime | None = None) -> None:
    store.add_to_repository(repo, list((tags or {}).values()) + list(untagged))
    if tags:
        store.set_tags(repo, tags, source="sync", at=at)


def event(action: str = "pull", repository: str = "team/app", *, at: datetime | None = None, **fields: object):
    event.n = getattr(event, "n", 0) + 1
    return RegistryEvent.objects.create(event_id=f"ev-{event.n}", action=action, repository=repository,
                                        at=at or timezone.now(), applied=True, **fields)


def noon(days_ago: int) -> datetime:
    return timezone.make_aware(datetime.combine(timezone.localdate() - timedelta(days=days_ago), time(12)))


# -- reading pages -------------------------------------------------------------------------------


def text(response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


def rows(response, attr: str) -> list[dict[str, str]]:
    return [a for tag, a in elements(response.content) if tag == "tr" and attr in a]


def assert_csp_clean(response) -> None:
    """Nothing the strict CSP would block: no inline style attribute or block, no inline script."""
    content = response.content.decode()
    assert not re.search(r"<[^>]+\sstyle=", content), "an inline style attribute"
    assert "<style" not in content
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", content)), "an inline script"


@pytest.fixture
def site(configure, settings, db):
    configure(ANONYMOUS_READ=True, STORAGE_PATH="")
    settings.ALLOWED_HOSTS = ["*"]
    cache.clear()
    yield
    cache.clear()


# -- storage ------------------------------------------------------------------------------------


def test_storage__empty_index__says_so_and_links_to_the_sync(client, site) -> None:
    response = get(client, "/-/storage/")
    assert "The index holds nothing yet" in text(response)
    assert any(a.get("href") == "/-/sync/" for tag, a in elements(response.content) if tag == "a")


def test_storage__small_index__figures_by_repository_and_sort_by_every_column(client, site) -> None:
    # base (1000) is in every repository; big/one is 9000 alone; old is deleted, its 500 layer held by nothing else.
    a = manifest("a", 100, {"base": 1000, "a-layer": 2000})
    big = manifest("big", 200, {"base": 1000, "big-layer": 9000})
    old = manifest("old", 50, {"base": 1000, "old-layer": 500})
    put("team/a", {"1": a})
    put("team/big", {"1": big}, untagged=(old,))
    put("team/c", {"1": a})
    store.remove_manifest("team/big", old, source="dashboard")

    response = get(client, "/-/storage/")

    figures = {r["data-repository"]: {k: int(r[f"data-{k}"]) for k in ("total", "unique", "shared", "reclaimable")}
               for r in rows(response, "data-repository")}
    assert figures == {
        "team/big": {"total": 200 + 1000 + 9000 + 50 + 500, "unique": 200 + 9000 + 50 + 500, "shared": 1000,
                     "reclaimable": 50 + 500},
        "team/a": {"total": 3100, "unique": 0, "shared": 3100, "reclaimable": 0},
        "team/c": {"total": 3100, "unique": 0, "shared": 3100, "reclaimable": 0},
    }
    found = elements(response.content)
    disk = next(a for _, a in found if a.get("id") == "disk-total")
    assert int(disk["data-bytes"]) == 100 + 200 + 50 + 1000 + 2000 + 9000 + 500
    assert int(next(a for _, a in found if a.get("id") == "gc-frees")["data-bytes"]) == 550
    assert list(figures) == ["team/big", "team/a", "team/c"]  # largest first, ties by name
    assert_csp_clean(response)

    def order(query: str) -> list[str]:
        return [r["data-repository"] for r in rows(get(client, f"/-/storage/?{query}"), "data-repository")]

    assert order("sort=name") == ["team/a", "team/big", "team/c"]
    assert order("sort=name&order=desc") == ["team/c", "team/big", "team/a"]
    assert order("sort=unique&order=asc") == ["team/a", "team/c", "team/big"]
    assert order("sort=shared") == ["team/a", "team/c", "team/big"]
    assert order("sort=reclaimable") == ["team/big", "team/a", "team/c"]
    assert order("sort=nonsense") == ["team/big", "team/a", "team/c"]
    # The header of the sorted column says so, and its link turns the order around.
    headers = {a.get("aria-sort") for tag, a in elements(get(client, "/-/storage/?sort=name").content) if tag == "th"}
    assert "ascending" in headers
    assert b'href="?sort=name&amp;order=desc"' in get(client, "/-/storage/?sort=name").content


def test_storage__filter_and_pages__100_repositories_a_page_with_the_sort_kept(client, site) -> None:
    IndexedManifest.objects.bulk_create([IndexedManifest(digest=dg(f"m{i}"), size=1000 + i) for i in range(150)])
    ids = dict(IndexedManifest.objects.values_list("digest", "id"))
    for i in range(150):
        store.repository(f"ns/repo-{i:03d}")
    repos = dict(IndexedRepository.objects.values_list("name", "id"))
    RepositoryManifest.objects.bulk_create([RepositoryManifest(repository_id=repos[f"ns/repo-{i:03d}"],
                                                               manifest_id=ids[dg(f"m{i}")]) for i in range(150)])

    first = get(client, "/-/storage/?sort=name")
    assert [r["data-repository"] for r in rows(first, "data-repository")] == [f"ns/repo-{i:03d}" for i in range(100)]
    assert "Page 1 of 2" in text(first)
    second = get(client, "/-/storage/?sort=name&page=2", htmx=True)
    assert b"<html" not in second.content  # the table only
    assert [r["data-repository"] for r in rows(second, "data-repository")] == \
        [f"ns/repo-{i:03d}" for i in range(100, 150)]
    assert b'href="?sort=name&amp;page=1"' in second.content

    narrowed = get(client, "/-/storage/?q=REPO-14")
    # Largest first, as before the filter.
    assert [r["data-repository"] for r in rows(narrowed, "data-repository")] == \
        [f"ns/repo-{i}" for i in range(149, 139, -1)]
    assert "10 of 150 repositories match" in text(narrowed)
    assert "No repository name contains" in text(get(client, "/-/storage/?q=nothing-like-it"))


def test_storage__query_count_does_not_grow_with_the_repositories(client, site) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            get(client, "/-/storage/")
        return len(captured)

    shared = manifest("shared", 10, {"layer": 100})
    put("few/0", {"latest": shared})
    few = queries()
    for i in range(1, 120):
        put(f"many/{i}", {"latest": manifest(f"own-{i}", 10, {"layer": 100, f"own-{i}": i})})
    assert queries() == few


def test_storage__per_tag__unique_to_the_tag_vs_shared_with_other_tags(client, site) -> None:
    one = manifest("one", 100, {"base": 1000, "one": 3000})
    two = manifest("two", 110, {"base": 1000, "two": 5000})
    amd64 = manifest("amd64", 90, {"base": 1000, "amd64": 700})
    arm64 = manifest("arm64", 95, {"arm64": 800})
    multi = manifest("multi", 300, children=("amd64", "arm64"), kind="index")
    put("team/app", {"1.0": one, "1.1": two, "stable": two, "multi": multi}, untagged=(amd64, arm64))
    put("team/other", {"x": manifest("x", 10, {"one": 3000})})
    store.set_tags("team/app", {"pending": dg("not-indexed")}, source="event")

    response = get(client, "/-/storage/?repository=team/app")

    figures = {r["data-tag"]: (r["data-total"], r["data-unique"], r["data-shared"]) for r in rows(response, "data-tag")}
    assert figures == {
        "multi": ("2985", "1985", "1000"),  # 300 + 90 + 1000 + 700 + 95 + 800: only base is anyone else's
        "1.0": ("4100", "100", "4000"),  # its layer is team/other's x too
        "1.1": ("6110", "0", "6110"),  # stable is the same image
        "stable": ("6110", "0", "6110"),
        "pending": ("", "", ""),
    }
    assert "not indexed yet" in text(response)
    # The index's platforms are reached through its tag: nothing here is untagged.
    assert "a collection frees nothing of team/app" in text(response)
    assert [r["data-tag"] for r in rows(get(client, "/-/storage/?repository=team/app&sort=name"), "data-tag")] == \
        ["multi", "pending", "stable", "1.0", "1.1"]  # names, then versions
    assert_csp_clean(response)
    partial = get(client, "/-/storage/?repository=team/app&sort=total", htmx=True)
    assert b"<html" not in partial.content and b'id="tag-table"' in partial.content


def test_storage__per_repository__untagged_and_deleted_manifests_listed_with_what_they_free(client, site) -> None:
    kept = manifest("kept", 100, {"base": 1000})
    loose = manifest("loose", 40, {"base": 1000, "loose": 400})
    gone = manifest("gone", 30, {"gone": 300})
    put("team/app", {"1": kept}, untagged=(loose, gone))
    store.remove_manifest("team/app", gone, source="dashboard")

    response = get(client, "/-/storage/?repository=team/app")

    listed = {r["data-digest"]: int(r["data-reclaimable"]) for r in rows(response, "data-digest")}
    assert listed == {loose: 440, gone: 330}
    page = text(response)
    assert "2 manifests of team/app no tag reaches" in page and "deleted" in page and "untagged" in page


def test_storage__unknown_repository__404_that_says_what_is_missing(client, site) -> None:
    response = get(client, "/-/storage/?repository=nobody/here", status=404)
    assert "The index holds nothing for “nobody/here”" in text(response)


def test_storage__an_index_that_lists_itself__counted_once_and_the_page_renders(client, site) -> None:
    loop = manifest("loop", 77, children=("loop-child",), kind="index")
    child = manifest("loop-child", 33, {"blob": 500}, children=("loop",), kind="index")
    assert ManifestChild.objects.filter(parent=IndexedManifest.objects.get(digest=child), digest=loop).exists()
    put("hostile/loop", {"latest": loop})

    response = get(client, "/-/storage/?repository=hostile/loop")

    assert [(r["data-total"], r["data-unique"]) for r in rows(response, "data-tag")] == [("610", "610")]
    assert int(next(a for _, a in elements(get(client, "/-/storage/").content)
                    if a.get("id") == "disk-total")["data-bytes"]) == 610


def test_storage__hostile_repository_names__escaped_in_table_chart_and_labels(client, site) -> None:
    name = "acme/" + XSS
    store.add_to_repository(name, [manifest("h", 10, {"h": 1000})])

    response = get(client, "/-/storage/")

    content = response.content.decode()
    assert "<script>alert(2)" not in content and "<img src=x" not in content
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in content
    bar = next(a for tag, a in elements(response.content) if tag == "a" and "bar-row" in a.get("class", ""))
    assert bar["data-repository"] == name and bar["aria-label"].startswith(name + ":")
    assert bar["href"] == "/-/storage/?repository=" + quote(name, safe="/")
    drill = get(client, bar["href"])
    assert "<script>alert(2)" not in drill.content.decode()
    # Not a name the registry accepts: no link to a repository page that cannot exist.
    assert not any(a.get("href", "").startswith("/r/") for tag, a in elements(drill.content) if tag == "a")
    assert_csp_clean(response)


def test_storage__chart__ten_largest_as_stacked_bars_to_one_scale(client, site) -> None:
    for i in range(12):
        put(f"r/{i:02d}", {"t": manifest(f"m{i}", 0, {"base": 1000, f"own{i}": 1000 * (i + 1)})})

    found = elements(get(client, "/-/storage/").content)

    bars = [a for tag, a in found if tag == "a" and "bar-row" in a.get("class", "")]
    assert [b["data-repository"] for b in bars] == [f"r/{i:02d}" for i in range(11, 1, -1)]
    assert [(int(b["data-unique"]), int(b["data-shared"])) for b in bars] == \
        [(1000 * (i + 1), 1000) for i in range(11, 1, -1)]
    # The chart's bars (the table's small bars are 10 high).
    chart = [a for tag, a in found if tag == "rect" and a.get("height") == "18"]
    unique = [float(a["width"]) for a in chart if a["class"] == "bar-unique"]
    shared = [float(a["width"]) for a in chart if a["class"] == "bar-shared"]
    # The largest repository's bar spans the whole bar space: 13,000 of 13,000 bytes.
    assert unique[0] + shared[0] == pytest.approx(440, abs=0.2)
    assert unique[-1] / unique[0] == pytest.approx(3000 / 12000, abs=0.01)


# -- activity: the feed --------------------------------------------------------------------------


def test_activity__no_events__explains_that_the_registry_must_send_them(client, site) -> None:
    response = get(client, "/-/activity/")
    page = text(response)
    assert "No registry events yet" in page and "notifications" in page
    assert any(a.get("href") == "/-/sync/" for tag, a in elements(response.content) if tag == "a")
    assert_csp_clean(response)


def test_activity__feed__each_event_with_who_from_what_and_when(client, site) -> None:
    digest = dg("pushed")
    when = datetime(2024, 5, 4, 3, 2, 1, tzinfo=UTC)
    event("push", "team/app", at=when, tag="1.0", digest=digest, actor="mia", address="10.0.0.7:5123",
          user_agent="docker/27.0.3 go/go1.21", media_type="application/vnd.oci.image.manifest.v1+json")
    event("pull", "team/app", at=when + timedelta(hours=1), digest=digest, address="10.0.0.9",
          user_agent="skopeo/1.13")
    event("delete", "team/app", at=when + timedelta(hours=2), tag="1.0", digest=digest, actor="ops",
          source="dashboard")

    response = get(client, "/-/activity/")

    feed = rows(response, "data-event")
    assert [r["data-action"] for r in feed] == ["delete", "pull", "push"]  # newest first
    content = response.content.decode()
    push_row = content[content.index('data-action="push"'):]
    push_row = push_row[:push_row.index("</tr>")]
    assert ">push</span>" in push_row and 'href="/r/team/app/"' in push_row
    assert f'href="/r/team/app/-/manifests/{digest}/"' in push_row and f">{digest[7:19]}</a>" in push_row
    assert 'href="/r/team/app/-/tags/1.0/history/"' in push_row
    assert ">mia</a>" in push_row and "10.0.0.7:5123" in push_row
    assert 'title="User agent: docker/27.0.3 go/go1.21"' in push_row
    assert 'datetime="2024-05-04T03:02:01+00:00"' in push_row and 'title="2024-05-04 03:02:01 UTC"' in push_row
    pull_row = content[content.index('data-action="pull"'):]
    pull_row = pull_row[:pull_row.index("</tr>")]
    assert ">anonymous</a>" in pull_row and "skopeo/1.13" in pull_row
    delete_row = content[content.index('data-action="delete"'):]
    assert ">dashboard</span>" in delete_row[:delete_row.index("</tr>")]
    assert_csp_clean(response)


def test_activity__filters__action_repository_who_and_anonymous(client, site) -> None:
    base = timezone.now() - timedelta(hours=1)
    event("push", "team/app", at=base, actor="mia", tag="1")
    event("pull", "team/app", at=base + timedelta(minutes=1), actor="mia")
    event("pull", "team/app", at=base + timedelta(minutes=2))
    event("pull", "team/other", at=base + timedelta(minutes=3), actor="ci")
    event("delete", "team/other", at=base + timedelta(minutes=4), actor="mia")

    def shown(query: str, **kw: bool) -> list[tuple[str, str]]:
        response = get(client, f"/-/activity/?{query}", **kw)
        ids = [int(r["data-event"]) for r in rows(response, "data-event")]
        by_id = {e.pk: e for e in RegistryEvent.objects.filter(pk__in=ids)}
        return [(by_id[i].action, by_id[i].repository) for i in ids]

    assert shown("action=pull") == [("pull", "team/other"), ("pull", "team/app"), ("pull", "team/app")]
    assert shown("repository=team/other") == [("delete", "team/other"), ("pull", "team/other")]
    assert shown("actor=mia") == [("delete", "team/other"), ("pull", "team/app"), ("push", "team/app")]
    assert shown("actor=anonymous") == [("pull", "team/app")]
    assert shown("action=pull&actor=mia&repository=team/app") == [("pull", "team/app")]
    assert len(shown("action=bogus")) == 5  # not an action: no filter
    assert shown("repository=team") == []  # a name, not a prefix
    assert "No event matches these filters" in text(get(client, "/-/activity/?repository=team"))
    # htmx gets the feed alone; the form keeps what was asked.
    assert shown("action=pull", htmx=True) == shown("action=pull")
    assert b"<html" not in get(client, "/-/activity/?action=pull", htmx=True).content
    full = get(client, "/-/activity/?action=delete&actor=mia")
    assert b'<option value="delete" selected>' in full.content and b'value="mia"' in full.content


def test_activity__paging__fifty_a_page_newest_first(client, site) -> None:
    base = timezone.now() - timedelta(days=1)
    RegistryEvent.objects.bulk_create([RegistryEvent(event_id=f"p{i}", action="pull", repository="team/app",
                                                     at=base + timedelta(seconds=i), applied=True) for i in range(120)])
    order = list(RegistryEvent.objects.order_by("-at").values_list("pk", flat=True))

    pages = [get(client, f"/-/activity/?page={n}&action=pull") for n in (1, 2, 3)]

    assert [[int(r["data-event"]) for r in rows(p, "data-event")] for p in pages] == \
        [order[:50], order[50:100], order[100:]]
    assert b'href="?page=2&amp;action=pull"' in pages[0].content and b"Newer" not in pages[0].content
    assert b'href="?page=1&amp;action=pull"' in pages[1].content
    assert b'href="?page=3&amp;action=pull"' in pages[1].content
    assert b"Older" not in pages[2].content
    assert "No older events" in text(get(client, "/-/activity/?page=9"))
    assert get(client, "/-/activity/?page=x").status_code == 200


def test_activity__hostile_event_values__escaped_and_never_linked(client, site) -> None:
    event("push", XSS, tag=XSS[:128], digest=XSS[:100], actor=XSS, address=XSS[:100], user_agent=XSS)
    event("pull", XSS, at=timezone.now() - timedelta(minutes=1))
    store.set_tags(XSS, {XSS[:128]: dg("t")}, source="event")

    response = get(client, "/-/activity/")

    content = response.content.decode()
    assert "<script>alert(2)" not in content and "<img src=x" not in content
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in content
    assert not any(a.get("href", "").startswith("/r/") for tag, a in elements(response.content) if tag == "a")
    # The filter link for that actor carries the value as data, escaped.
    links = [a.get("href", "") for tag, a in elements(response.content) if tag == "a"]
    assert any(href.startswith("?actor=%22%3E%3Cimg") for href in links)
    assert_csp_clean(response)


# -- activity: pulls per day ---------------------------------------------------------------------


def test_activity__pulls_chart__one_bar_per_day_with_pulls_for_the_most_pulled_repositories(client, site) -> None:
    for _ in range(3):
        event("pull", "team/busy", at=noon(0))
    event("pull", "team/busy", at=noon(5))
    event("pull", "team/busy", at=noon(29))
    event("pull", "team/busy", at=noon(30))  # a day too old
    event("push", "team/busy", at=noon(1))  # not a pull
    event("pull", "team/quiet", at=noon(2))
    event("pull", "team/quiet", at=noon(2))
    for i in range(8):  # eight more repositories, one pull each: only eight rows in all
        event("pull", f"team/once-{i}", at=noon(3))

    response = get(client, "/-/activity/")

    chart = rows(response, "data-total")
    assert [(r["data-repository"], r["data-total"]) for r in chart[:2]] == [("team/busy", "5"), ("team/quiet", "2")]
    assert len(chart) == 8 and [r["data-repository"] for r in chart[2:]] == [f"team/once-{i}" for i in range(6)]
    content = response.content.decode()
    busy = content[content.index('data-repository="team/busy"'):]
    busy = busy[:busy.index("</tr>")]
    bars = {a["data-day"]: (int(a["data-pulls"]), float(a["height"]), float(a["x"]))
            for tag, a in elements(busy.encode()) if tag == "rect"}
    today = timezone.localdate()
    assert {d: n for d, (n, _, _) in bars.items()} == {
        str(today): 3, str(today - timedelta(days=5)): 1, str(today - timedelta(days=29)): 1}
    # One scale: the busiest day is full height, a single pull a third of it; days run left to right.
    assert bars[str(today)][1] == 28 and bars[str(today - timedelta(days=5))][1] == pytest.approx(28 / 3, abs=0.1)
    assert bars[str(today - timedelta(days=29))][2] == 0 and bars[str(today)][2] == 29 * 10
    assert 'aria-label="team/busy: 5 pulls in 30 days, most on' in busy
    assert "<title>" in busy and "3 pulls</title>" in busy


def test_activity__filters__filter_the_chart_and_the_stale_list_too(client, site) -> None:
    store.set_tags("team/app", {"1": dg("a"), "2": dg("b")}, source="sync", at=noon(10))
    store.set_tags("team/other", {"x": dg("c")}, source="sync", at=noon(10))
    event("pull", "team/app", at=noon(1), tag="1", actor="mia")
    event("pull", "team/app", at=noon(1), tag="1", actor="ci")
    event("pull", "team/other", at=noon(2), tag="x", actor="ci")
    event("push", "team/other", at=noon(2), tag="x", actor="mia")
    for name in ("team/app", "team/other"):
        store.recount_pulls(name)

    def chart(query: str) -> list[tuple[str, str]]:
        found = rows(get(client, f"/-/activity/?{query}"), "data-total")
        return [(r["data-repository"], r["data-total"]) for r in found]

    def stale(query: str) -> list[str]:
        return [r["data-tag"] for r in rows(get(client, f"/-/activity/?{query}"), "data-tag")]

    assert chart("") == [("team/app", "2"), ("team/other", "1")]
    assert chart("repository=team/other") == [("team/other", "1")]
    assert chart("actor=mia") == [("team/app", "1")]
    assert chart("actor=anonymous") == []
    assert "No pulls by anonymous in the last 30 days" in text(get(client, "/-/activity/?actor=anonymous"))
    # The action filter: the chart counts that action instead.
    pushes = get(client, "/-/activity/?action=push")
    assert chart("action=push") == [("team/other", "1")] and "Pushes per day" in text(pushes)
    # The stale list: the repository's tags only; with a user, that user's pulls only.
    assert stale("repository=team/app") == ["team/app:2", "team/app:1"]
    assert stale("actor=mia") == ["team/app:2", "team/other:x", "team/app:1"]
    assert "2 of 3 tags never pulled by mia" in text(get(client, "/-/activity/?actor=mia"))
    assert "1 of 2 tags of team/app never pulled" in text(get(client, "/-/activity/?repository=team/app"))
    # The filter form swaps the charts with the feed; the pager swaps the feed alone.
    swapped = get(client, "/-/activity/?repository=team/other", htmx=True)
    assert b'id="activity-body"' in swapped.content and b"<html" not in swapped.content
    assert [(r["data-repository"], r["data-total"]) for r in rows(swapped, "data-total")] == [("team/other", "1")]
    pager = client.get("/-/activity/?page=1", headers={"HX-Request": "true", "HX-Target": "feed"})
    assert pager.content.lstrip().startswith(b'<section id="feed"')


def test_activity__pulls_chart__days_follow_the_dashboards_time_zone(client, site, settings) -> None:
    settings.TIME_ZONE = "Pacific/Auckland"  # UTC+12 or +13: a UTC evening is the next day there
    local_today = timezone.localdate()
    utc_evening = datetime.combine(local_today - timedelta(days=2), time(22, 30), tzinfo=UTC)
    event("pull", "team/app", at=utc_evening)

    bars = [a for tag, a in elements(get(client, "/-/activity/").content) if tag == "rect" and "data-day" in a]

    assert [b["data-day"] for b in bars] == [str(local_today - timedelta(days=1))]


def test_activity__busy_registry__pulls_chart_counted_after_the_page_then_cached(client, site, monkeypatch) -> None:
    from dashboard.insight import views as views_insight

    monkeypatch.setattr(views_insight, "PULLS_INLINE", 2)
    for _ in range(3):
        event("pull", "team/app", at=noon(1))

    page = get(client, "/-/activity/")

    placeholder = next(a for tag, a in elements(page.content) if a.get("id") == "pulls")
    assert placeholder["hx-get"] == "/-/activity/?chart=1" and placeholder["hx-trigger"] == "load"
    assert rows(page, "data-total") == []
    chart = get(client, "/-/activity/?chart=1", htmx=True)
    assert b"<html" not in chart.content and b'id="feed"' not in chart.content
    assert [(r["data-repository"], r["data-total"]) for r in rows(chart, "data-total")] == [("team/app", "3")]
    # Counted once a while: the page shows the counted chart at once, and says when it was counted.
    event("pull", "team/app", at=noon(0))
    again = get(client, "/-/activity/")
    assert [(r["data-repository"], r["data-total"]) for r in rows(again, "data-total")] == [("team/app", "3")]
    assert "counted" in text(again)
    # Without JavaScript, the link counts in the page.
    assert [r["data-total"] for r in rows(get(client, "/-/activity/?chart=1"), "data-total")] == ["3"]


# -- activity: stale tags ------------------------------------------------------------------------


def test_activity__stale_tags__never_pulled_first_then_pulled_longest_ago(client, site) -> None:
    t0 = timezone.now() - timedelta(days=100)
    store.set_tags("team/app", {"old-never": dg("a")}, source="sync", at=t0)
    store.set_tags("team/app", {"new-never": dg("b")}, source="sync", at=t0 + timedelta(days=10))
    store.set_tags("team/app", {"pulled-long-ago": dg("c"), "pulled-today": dg("d")}, source="sync", at=t0)
    IndexedTag.objects.filter(name="pulled-long-ago").update(last_pulled_at=t0 + timedelta(days=1), pull_count=4)
    IndexedTag.objects.filter(name="pulled-today").update(last_pulled_at=timezone.now(), pull_count=40)
    event("pull", "team/app", tag="pulled-today")

    response = get(client, "/-/activity/")

    stale = [r["data-tag"] for r in rows(response, "data-tag")]
    assert stale == ["team/app:old-never", "team/app:new-never", "team/app:pulled-long-ago", "team/app:pulled-today"]
    page = text(response)
    assert "2 of 4 tags never pulled" in page
    assert b'href="/r/team/app/-/tags/old-never/history/"' in response.content


# -- in a browser: keyboard, htmx, CSP, and the screenshots a person looks at ----------------------

MB = 1024 * 1024


def realistic_index() -> None:
    """A registry as people have them: images on shared bases, a large model image, old builds
    deleted or left untagged, and a month of pushes and pulls."""
    import random

    debian, alpine = ("debian", 29 * MB), ("alpine", 3 * MB + 400_000)
    python, node = ("python", 18 * MB), ("node", 45 * MB)
    now = timezone.now()
    for v in range(5):
        put("acme/web", {f"1.{v}.0": manifest(f"web-{v}", 1500, {debian[0]: debian[1], node[0]: node[1],
                                                                 f"web-app-{v}": (3 + v) * MB})},
            at=now - timedelta(days=60 - 12 * v))
    store.set_tags("acme/web", {"latest": dg("manifest web-4")}, source="sync", at=now - timedelta(days=12))
    for v in range(3):
        put("acme/api", {f"2.{v}.0": manifest(f"api-{v}", 1400, {debian[0]: debian[1], python[0]: python[1],
                                                                 f"api-app-{v}": 5 * MB + v})},
            at=now - timedelta(days=40 - 15 * v))
    put("acme/worker", {"main": manifest("worker", 1300, {debian[0]: debian[1], python[0]: python[1], "w": 7 * MB})})
    put("library/alpine", {t: manifest(f"alpine-{t}", 500, {f"alpine-{t}": alpine[1] + i})
                           for i, t in enumerate(["3.19", "3.20", "latest"])})
    put("library/nginx", {"1.27": manifest("nginx", 1600, {debian[0]: debian[1], "nginx": 41 * MB})})
    put("ml/model-server", {"2024.06": manifest("model", 2100, {"cuda": 1100 * MB, "weights": 380 * MB})})
    put("legacy/billing", {"final": manifest("billing-final", 1200, {debian[0]: debian[1], "bill-3": 22 * MB})},
        untagged=tuple(manifest(f"billing-{i}", 1200, {debian[0]: debian[1], f"bill-{i}": 22 * MB}) for i in range(3)))
    for i in range(2):
        store.remove_manifest("legacy/billing", dg(f"manifest billing-{i}"), source="dashboard", actor="mia")
    put("tools/ci-runner", {"stable": manifest("ci", 900, {alpine[0]: alpine[1], "ci": 12 * MB})},
        untagged=tuple(manifest(f"ci-build-{i}", 900, {alpine[0]: alpine[1], f"ci-{i}": 12 * MB + i})
                       for i in range(4)))
    for i, name in enumerate(("docs/site", "team/experiments", "sandbox/hello")):
        put(name, {"latest": manifest(name, 800, {alpine[0]: alpine[1], name: 2 * MB})},
            at=now - timedelta(days=90 + 40 * i))

    rng = random.Random(7)
    weights = {"acme/web": 9, "acme/api": 6, "library/alpine": 4, "library/nginx": 3, "ml/model-server": 1,
               "tools/ci-runner": 5}
    people = [("ci-bot", "10.0.4.21", "containerd/1.7.18"), ("mia", "192.168.1.34", "docker/27.3.1 go/go1.22.7"),
              ("", "10.0.9.5", "skopeo/1.13.3"), ("deploy", "10.0.4.40", "docker/26.1.5 go/go1.21.12")]
    events = []
    for i in range(420):
        repo = rng.choices(list(weights), list(weights.values()))[0]
        actor, address, agent = rng.choice(people)
        at = now - timedelta(days=rng.betavariate(1.2, 2.5) * 31, minutes=rng.randint(0, 600))
        tags = list(IndexedTag.objects.filter(repository__name=repo).values_list("name", "digest"))
        tag, digest = rng.choice(tags)
        action = rng.choices(["pull", "push", "delete"], [16, 3, 1])[0]
        events.append(RegistryEvent(event_id=f"demo-{i}", action=action, repository=repo, tag=tag, digest=digest,
                                    actor=actor, address=f"{address}:{rng.randint(30000, 60000)}", user_agent=agent,
                                    at=at, applied=True))
    RegistryEvent.objects.bulk_create(events)
    for tag in IndexedTag.objects.select_related("repository"):
        pulls = [e.at for e in events
                 if e.action == "pull" and e.repository == tag.repository.name and e.tag == tag.name]
        if pulls:
            IndexedTag.objects.filter(pk=tag.pk).update(last_pulled_at=max(pulls), pull_count=len(pulls))


@pytest.fixture
def live(live_server, transactional_db, point_at):
    point_at("http://127.0.0.1:5000", ANONYMOUS_READ=True, STORAGE_PATH="")
    yield live_server.url
    cache.clear()


@pytest.fixture
def page(browser, live):
    with watched_page(browser) as pg:
        yield pg


@pytest.mark.browser
def test_storage_page__in_a_browser__chart_sort_and_drill_down(page, live) -> None:
    realistic_index()
    page.goto(live + "/-/storage/")
    expect(page.get_by_role("heading", name="Storage", level=1)).to_be_visible()
    bars = page.locator("svg.bars a.bar-row")
    expect(bars).to_have_count(10)
    expect(bars.first).to_have_attribute("data-repository", "ml/model-server")
    no_sideways_scroll(page)
    shots(page, "storage", prefix="index-")

    mark_document(page)
    page.get_by_role("link", name="Repository", exact=True).click()
    expect(page).to_have_url(re.compile(r"\?sort=name&order=asc$"))
    names = page.locator("#repo-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.repository)")
    assert names == sorted(names) and len(names) == 11
    page.get_by_role("link", name="Reclaimable").click()
    expect(page.locator("#repo-table tbody tr").first).to_have_attribute("data-repository", "legacy/billing")
    assert same_document(page), "sorting should swap the table, not reload the page"

    # The chart's bars are links a keyboard reaches.
    bars.first.focus()
    expect(bars.first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="ml/model-server", level=1)).to_be_visible()
    page.goto(live + "/-/storage/?repository=legacy/billing")
    expect(page.locator("table.unreached tbody tr")).to_have_count(3)
    shots(page, "storage-repository", prefix="index-")


@pytest.mark.browser
def test_activity_page__in_a_browser__filters_swap_the_feed_and_the_empty_state(page, live) -> None:
    page.goto(live + "/-/activity/")
    expect(page.locator(".activity-empty")).to_contain_text("No registry events yet")
    shots(page, "activity-empty", prefix="index-")

    realistic_index()
    page.goto(live + "/-/activity/")
    expect(page.locator("table.pulls-chart tbody tr").first).to_have_attribute("data-repository", "acme/web")
    expect(page.locator("#feed tbody tr")).to_have_count(50)
    no_sideways_scroll(page)
    shots(page, "activity", prefix="index-")

    mark_document(page)
    page.get_by_label("Action").select_option("delete")
    expect(page).to_have_url(re.compile(r"action=delete"))
    deletes = RegistryEvent.objects.filter(action="delete").count()
    expect(page.locator("#feed tbody tr")).to_have_count(min(deletes, 50))
    assert set(page.locator("#feed tbody tr").evaluate_all("rows => rows.map(r => r.dataset.action)")) == {"delete"}
    # The chart follows the filter: it counts deletes now.
    expect(page.locator("#pulls-title")).to_have_text("Deletes per day")
    page.get_by_label("Who").fill("nobody-like-this")
    expect(page.locator("#feed .empty")).to_contain_text("No event matches these filters")
    expect(page.locator("#pulls")).to_contain_text("No deletes by nobody-like-this")
    assert same_document(page), "filtering should swap the feed, not reload the page"
    # Back to pulls, of one repository: the chart and the stale list show that repository alone.
    page.get_by_label("Who").fill("")
    page.get_by_label("Action").select_option("")
    page.get_by_label("Repository").fill("acme/web")
    expect(page).to_have_url(re.compile(r"repository=acme(%2F|/)web"))
    expect(page.locator("#pulls-title")).to_have_text("Pulls per day")
    expect(page.locator("table.pulls-chart tbody tr")).to_have_count(1)
    stale = page.locator("table.stale-tags tbody tr").evaluate_all("rows => rows.map(r => r.dataset.tag)")
    assert stale and all(t.startswith("acme/web:") for t in stale)
    assert same_document(page)
    shots(page, "activity-filtered", prefix="index-")


def test_storage_and_activity__signed_out_without_anonymous_read__sent_to_sign_in(client, configure, db) -> None:
    configure(ANONYMOUS_READ=False)
    for url in ("/-/storage/", "/-/storage/?repository=team/app", "/-/activity/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/-/login/?next="), url
