"""Pages that read the index: a repository's tags sorted, filtered and paged by the database, the
catalog, and how fresh each says it is.

The index is filled from the real registry by the sync (`sync_repository`), so expectations still
come from what the seed pushed; the order by name is checked against `dashboard.browse.live.sort_rows`,
the order the live page uses. Runs on SQLite and, in CI, on PostgreSQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.template.defaultfilters import filesizeformat
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from dashboard.browse.live import TagRow, sort_rows
from dashboard.index import store, sync
from dashboard.models import IndexedManifest, IndexedRepository, IndexedTag, RegistryEvent
from testbed import Kind, RegistryServer, seed_many_tags
from testbed.push import build_image, push_image, put_manifest
from testbed.seed import REPO_ALPINE, REPO_CHART, REPO_GONE, REPO_MULTI, REPO_WEB
from testbed.server import free_port
from tests.helpers.browser import (
    App,
    Watch,
    mark_document,
    new_context,
    no_sideways_scroll,
    same_document,
    shot,
    shown_tags,
)
from tests.helpers.html import dom
from tests.helpers.pages import (
    HTMX,
    KIND_LABEL,
    catalog_order,
    get,
    index,
    manifest_url,
    plain_tags,
    repo_url,
    row_order,
    rows,
    signed_in,
    tag_count_text,
    when,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

MANY = "team/many"


@pytest.fixture
def many(empty_registry: RegistryServer, point_at) -> Iterator[dict[str, str]]:
    """250 tags v1.0.0 … v1.249.0 in one indexed repository, created a minute apart (v1.249.0 newest)."""
    point_at(empty_registry.url, ANONYMOUS_READ=True)
    tags = seed_many_tags(empty_registry.url, MANY, 250)
    index(MANY)
    yield tags


# Names a tag list really has: versions with and without `v`, pre-releases, short versions, build
# dates, and names that are no version at all (which head the list either way).
ODD_TAGS = ["latest", "main", "stable", "1.0.0", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.10", "v2", "1.10", "1.9.9",
            "1.2", "1.2.0", "a01", "a1", "20240101", "v1.0.0", "1.0.0-beta_2", "0.0.1", "10.0.0-alpha", "feature-x"]


@pytest.fixture
def odd(empty_registry: RegistryServer, point_at) -> Iterator[list[str]]:
    point_at(empty_registry.url, ANONYMOUS_READ=True)
    image = build_image([{"odd.txt": b"odd\n"}])
    push_image(empty_registry.url, "team/odd", image, ODD_TAGS[0])
    for tag in ODD_TAGS[1:]:
        put_manifest(empty_registry.url, "team/odd", tag, image.manifest, image.media_type)
    index("team/odd")
    yield ODD_TAGS


def shown(client, name: str, query: str = "", *, htmx: bool = False) -> list[str]:
    return row_order(dom(get(client, repo_url(name, query), htmx=htmx)))


# -- order ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["", "asc", "desc"])
def test_name_order__matches_the_live_pages_semver_order(client, odd, order) -> None:
    expected = [r.tag for r in sort_rows([TagRow(tag=t) for t in odd], "name", order)]
    assert shown(client, "team/odd", f"sort=name&order={order}" if order else "") == expected
    # Names that are not versions stay on top whichever way the versions run.
    assert set(expected[:7]) == {"a01", "a1", "feature-x", "latest", "main", "stable", "1.0.0-beta_2"}


def test_name_order__seeded_repositories_match_the_live_order(client, dashboard) -> None:
    index(REPO_WEB, REPO_ALPINE, REPO_MULTI, REPO_CHART)
    for repo in (REPO_WEB, REPO_ALPINE, REPO_MULTI, REPO_CHART):
        for order in ("asc", "desc"):
            expected = [r.tag for r in sort_rows([TagRow(tag=t) for t in plain_tags(dashboard.seeded, repo)],
                                                 "name", order)]
            assert shown(client, repo, f"sort=name&order={order}") == expected, (repo, order)


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_sort_by_created__newest_first_by_default_and_turns_around(client, seeded, order) -> None:
    index(REPO_WEB)
    doc = dom(get(client, repo_url(REPO_WEB, f"sort=created&order={order}")))
    got = row_order(doc)
    created = [when(seeded.fact(REPO_WEB, t).created) for t in got]
    assert created == sorted(created, reverse=order == "desc")
    assert [when(t.attrs["datetime"]) for t in doc.find_all("time")] == created
    header = doc.one("th", aria_sort="descending" if order == "desc" else "ascending")
    assert header.text.startswith("Created")


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_sort_by_size__largest_first_by_default_and_turns_around(client, seeded, order) -> None:
    index(REPO_WEB)
    got = shown(client, REPO_WEB, f"sort=size&order={order}")
    sizes = [seeded.fact(REPO_WEB, t).size for t in got]
    assert sizes == sorted(sizes, reverse=order == "desc") and len(set(sizes)) > 1
    assert shown(client, REPO_WEB, "sort=size") == shown(client, REPO_WEB, "sort=size&order=desc")


def test_sort_by_created_across_pages__page_two_continues_page_one(client, many) -> None:
    newest_first = [f"v1.{i}.0" for i in range(249, -1, -1)]
    assert shown(client, MANY, "sort=created") == newest_first[:100]
    assert shown(client, MANY, "sort=created&page=2") == newest_first[100:200]
    assert shown(client, MANY, "sort=created&order=asc&page=3") == newest_first[::-1][200:]


def test_group_by_image__tags_of_one_digest_stand_together(client, seeded) -> None:
    index(REPO_WEB)
    digests = [seeded.digest(REPO_WEB, t) for t in shown(client, REPO_WEB, "sort=image")]
    runs = [d for i, d in enumerate(digests) if i == 0 or digests[i - 1] != d]
    assert len(runs) == len(set(digests))
    assert [when(seeded.manifests[d].created) for d in runs] == sorted(
        (when(seeded.manifests[d].created) for d in runs), reverse=True)


def test_sort_by_platform__each_platform_set_together_and_turns_around(client, seeded) -> None:
    index(REPO_MULTI)
    tags = plain_tags(seeded, REPO_MULTI)
    by_platform = sorted(tags, key=lambda t: " ".join(seeded.fact(REPO_MULTI, t).platforms))
    assert len({seeded.fact(REPO_MULTI, t).platforms for t in tags}) == len(tags) > 1
    doc = dom(get(client, repo_url(REPO_MULTI, "sort=platform")))
    assert row_order(doc) == by_platform
    assert doc.one("th", aria_sort="ascending").text.startswith("Platforms")
    assert shown(client, REPO_MULTI, "sort=platform&order=desc") == by_platform[::-1]


def test_sort_by_kind__images_charts_and_artifacts_each_together(client, dashboard) -> None:
    index(REPO_WEB)
    # One repository with several kinds: a chart and an artifact pushed next to the images.
    chart = dashboard.seeded.fact(REPO_CHART, "0.1.0")
    index(REPO_CHART)
    web = IndexedTag.objects.get(repository__name=REPO_WEB, name="1.2.0")
    IndexedTag.objects.create(repository=web.repository, name="chart", digest=chart.digest,
                              manifest=IndexedManifest.objects.get(digest=chart.digest), updated_at=web.updated_at)
    kinds = [tr.one("span", cls="chip").text for tr in rows(dom(get(client, repo_url(REPO_WEB, "sort=kind")))).values()]
    assert kinds == sorted(kinds, key=lambda k: {"helm chart": "helm chart", "image": "image"}[k])
    assert kinds[0] == "helm chart"
    assert shown(client, REPO_WEB, "sort=kind&order=desc")[-1] == "chart"


# -- what each row shows ----------------------------------------------------------------------------


@pytest.mark.parametrize("repo", [REPO_WEB, REPO_ALPINE, REPO_MULTI, REPO_CHART])
def test_rows__digest_size_created_kind_from_the_index_equal_the_pushed_facts(client, seeded, repo) -> None:
    index(repo)
    doc = dom(get(client, repo_url(repo)))
    assert doc.one("section", id="tags").attrs["aria-busy"] == "false", "the index has every detail at once"
    found = rows(doc)
    assert set(found) == set(plain_tags(seeded, repo))
    for tag, tr in found.items():
        fact = seeded.fact(repo, tag)
        link = tr.one("td", cls="digest").one("a")
        assert (link.text, link.attrs["title"]) == (fact.digest.split(":", 1)[1][:12], fact.digest)
        assert link.attrs["href"] == manifest_url(repo, fact.digest)
        size = tr.find_all("td", cls="num")[0]
        assert size.attrs["title"] == f"{fact.size} bytes, compressed" and size.text == filesizeformat(fact.size)
        expected = fact.created or max(c.created for c in fact.children if c.created)
        assert when(tr.one("time").attrs["datetime"]) == when(expected), tag
        assert tr.one("span", cls="chip").text == KIND_LABEL[fact.kind]
        assert tr.one("a", href=manifest_url(repo, tag)).text == tag
        assert tr.one("a", cls="tag-history").attrs["href"] == f"/r/{repo}/-/tags/{tag}/history/"


def test_rows__multi_arch_lists_every_platform_with_its_own_size(client, seeded) -> None:
    index(REPO_MULTI)
    for tag, tr in rows(dom(get(client, repo_url(REPO_MULTI)))).items():
        fact = seeded.fact(REPO_MULTI, tag)
        children = [c for c in fact.children if c.kind != Kind.ATTESTATION_MANIFEST]
        shown_platforms = [(a.text.removesuffix(a.find("span").text).strip(), a.find("span").text, a.attrs["href"])
                           for a in tr.one("td", cls="platforms").find_all("a", cls="plat")]
        assert shown_platforms == [(c.platform, filesizeformat(c.size), manifest_url(REPO_MULTI, c.digest))
                                   for c in children]
        assert "unknown/unknown" not in tr.one("td", cls="platforms").text


def test_rows__shared_digest_tags_say_so_and_share_a_colour(client, dashboard) -> None:
    index(REPO_WEB, REPO_ALPINE)
    for repo, (a, b) in ((REPO_WEB, ("1.10.0", "latest")), (REPO_ALPINE, ("3.19", "latest"))):
        found = rows(dom(get(client, repo_url(repo))))
        assert found[a].one("span", cls="same").text == f"= {b}"
        assert found[b].one("span", cls="same").text == f"= {a}"
        colour = {c for c in found[a].classes if c.startswith("grp-")}
        assert colour and colour == {c for c in found[b].classes if c.startswith("grp-")}
    lone = rows(dom(get(client, repo_url(REPO_WEB))))["1.9.0"]
    assert lone.find("span", cls="same") is None and "shared" not in lone.classes


def test_rows__attachments_are_chips_on_their_image_not_rows(client, seeded) -> None:
    index(REPO_WEB)
    doc = dom(get(client, repo_url(REPO_WEB)))
    found = rows(doc)
    attachments = [a for a in seeded.attachments if a.repo == REPO_WEB]
    assert not {a.tag for a in attachments} & set(found)
    for tag, tr in found.items():
        mine = {manifest_url(REPO_WEB, a.tag) for a in attachments if a.subject_digest == seeded.digest(REPO_WEB, tag)}
        assert {a.attrs["href"] for a in tr.find_all("a", cls="att")} == mine, tag
    # The referrer the fallback tag lists (its subject is 1.2.0) is that one chip, not a second.
    assert len(found["1.2.0"].find_all("a", cls="att")) == 1
    assert len(found["1.10.0"].find_all("a", cls="att")) == 3
    assert doc.find("ul", cls="orphans") is None
    assert f"{len(attachments)} attachment tags" in doc.one("p", cls="summary").text


def test_rows__a_referrer_without_a_fallback_tag_is_a_chip_by_its_subject(client, empty_registry, point_at) -> None:
    point_at(empty_registry.url, ANONYMOUS_READ=True)
    image = build_image([{"app": b"app\n"}])
    push_image(empty_registry.url, "team/ref", image, "1.0")
    sbom = build_image([{"sbom.json": b"{}"}], subject=image, artifact_type="application/spdx+json")
    sbom_digest = push_image(empty_registry.url, "team/ref", sbom)  # by digest only, as a 3.x client does
    put_manifest(empty_registry.url, "team/ref", "sha256-" + "0" * 64 + ".sig", sbom.manifest, sbom.media_type)
    index("team/ref")
    # A push by digest is not in the tag list: the index learns it as a sync's HEADs would not.
    store.fetch_and_index("team/ref", [sbom_digest])
    doc = dom(get(client, repo_url("team/ref")))
    chips = rows(doc)["1.0"].find_all("a", cls="att")
    assert [c.attrs["href"] for c in chips] == [manifest_url("team/ref", sbom_digest)]
    # A signature tag naming a digest no tag points at is listed under the table.
    orphans = doc.one("ul", cls="orphans")
    assert "sha256-" + "0" * 64 + ".sig" in orphans.text


def test_rows__pull_commands_name_the_registry_host(client, dashboard) -> None:
    index(REPO_WEB, REPO_CHART)
    seeded, host = dashboard.seeded, dashboard.host
    for tag, tr in rows(dom(get(client, repo_url(REPO_WEB)))).items():
        assert [b.attrs["data-copy"] for b in tr.one("td", cls="pulls").find_all("button")] == [
            f"docker pull {host}/{REPO_WEB}:{tag}", f"docker pull {host}/{REPO_WEB}@{seeded.digest(REPO_WEB, tag)}"]
    [(tag, tr)] = rows(dom(get(client, repo_url(REPO_CHART)))).items()
    assert [b.attrs["data-copy"] for b in tr.find_all("button", cls="copy")] == [
        f"helm pull oci://{host}/{REPO_CHART} --version {tag}"]


def test_rows__a_tag_whose_manifest_is_not_indexed_yet_says_so(client, dashboard) -> None:
    index(REPO_ALPINE)
    # An event named the digest; the fetch has not happened yet.
    store.set_tags(REPO_ALPINE, {"next": "sha256:" + "a" * 64}, source="event")
    tr = rows(dom(get(client, repo_url(REPO_ALPINE))))["next"]
    assert "not indexed yet" in tr.text
    assert tr.one("td", cls="digest").one("a").attrs["title"] == "sha256:" + "a" * 64


def test_rows__hostile_names_in_the_index_are_text_and_never_links(client, seeded) -> None:
    index(REPO_ALPINE)
    hostile = '<img src=x onerror="alert(1)">'
    store.set_tags(REPO_ALPINE, {hostile: seeded.digest(REPO_ALPINE, "latest")}, source="event")
    response = get(client, repo_url(REPO_ALPINE))
    body = response.content.decode()
    assert hostile not in body and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in body
    tr = rows(dom(response))[hostile]
    assert tr.one("span", cls="invalid").text == hostile
    assert tr.find("a", cls="tag-history") is None and tr.find("a", href=manifest_url(REPO_ALPINE, hostile)) is None


def test_tagless_repository__says_so(client, dashboard) -> None:
    index(REPO_GONE)
    doc = dom(get(client, repo_url(REPO_GONE)))
    assert not rows(doc)
    assert "every tag was deleted" in doc.one("p", cls="notice").text


# -- paging and filters -----------------------------------------------------------------------------


def test_paging__page_two_shows_the_next_hundred_and_links_both_ways(client, many) -> None:
    newest_version_first = [f"v1.{i}.0" for i in range(249, -1, -1)]
    first = dom(get(client, repo_url(MANY)))
    assert row_order(first) == newest_version_first[:100]
    summary = first.one("p", cls="summary").text
    assert summary.startswith("250 tags · 250 distinct images") and "showing 1–100" in summary
    assert "Page 1 of 3" in first.one("nav", cls="pager").text
    nxt = first.one("a", rel="next")
    assert dict(parse_qsl(urlsplit(nxt.attrs["href"]).query)) == {"page": "2"}

    second = dom(get(client, repo_url(MANY, "page=2")))
    assert row_order(second) == newest_version_first[100:200]
    assert "showing 101–200" in second.one("p", cls="summary").text
    assert second.one("a", rel="prev").attrs["href"] == "?page=1"
    last = dom(get(client, repo_url(MANY, "page=3")))
    assert row_order(last) == newest_version_first[200:] and last.find("a", rel="next") is None
    # Out of range and junk land on a real page.
    assert row_order(dom(get(client, repo_url(MANY, "page=99")))) == newest_version_first[200:]
    assert row_order(dom(get(client, repo_url(MANY, "page=abc")))) == newest_version_first[:100]


def test_paging__links_keep_the_sort_and_a_new_sort_starts_at_page_one(client, many) -> None:
    doc = dom(get(client, repo_url(MANY, "sort=created&order=asc&page=2")))
    nxt = dict(parse_qsl(urlsplit(doc.one("a", rel="next").attrs["href"]).query))
    assert nxt == {"sort": "created", "order": "asc", "page": "3"}
    size_header = next(a for a in doc.find_all("a") if a.text.startswith("Size"))
    assert "page" not in dict(parse_qsl(urlsplit(size_header.attrs["href"]).query))


def test_paging__htmx_gets_only_the_table_region(client, many) -> None:
    response = get(client, repo_url(MANY, "page=2"), htmx=True)
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="tags"') and "<html" not in body
    assert row_order(dom(response)) == [f"v1.{i}.0" for i in range(149, 49, -1)]
    # The controls that swap the table say so.
    pager = dom(response).one("nav", cls="pager")
    assert (pager.attrs["hx-target"], pager.attrs["hx-push-url"]) == ("#tags", "true")
    assert dom(response).one("a", rel="next").attrs["hx-get"] == f"/r/{MANY}/?page=3"


def test_filter__by_tag_substring_counts_and_pages_the_matches(client, many) -> None:
    matching = sorted((t for t in many if "1.1" in t), key=lambda t: -int(t.split(".")[1]))
    doc = dom(get(client, repo_url(MANY, "q=1.1")))
    assert row_order(doc) == matching[:100]
    assert doc.one("p", cls="summary").text.startswith(f"{len(matching)} of 250 tags match")
    # The filter box keeps the text, and the table's links keep the filter.
    assert doc.one("input", id="q").attrs["value"] == "1.1"
    created = next(a for a in doc.find_all("a") if a.text.startswith("Created"))
    assert dict(parse_qsl(urlsplit(created.attrs["href"]).query))["q"] == "1.1"
    assert "No tag matches “nothing-like-this”" in dom(get(client, repo_url(MANY, "q=nothing-like-this"))).one(
        "p", cls="empty").text


def test_filter__by_platform_and_kind(client, seeded) -> None:
    index(REPO_MULTI, REPO_WEB)
    doc = dom(get(client, repo_url(REPO_MULTI)))
    options = [o.attrs["value"] for o in doc.one("select", id="tag-platform").find_all("option") if o.attrs["value"]]
    every = {p for t in plain_tags(seeded, REPO_MULTI) for p in seeded.fact(REPO_MULTI, t).platforms}
    assert options == sorted(every)
    for platform in every:
        expected = {t for t in plain_tags(seeded, REPO_MULTI) if platform in seeded.fact(REPO_MULTI, t).platforms}
        assert set(shown(client, REPO_MULTI, f"platform={platform}")) == expected, platform
    # A whole platform, not a prefix: linux/arm is not linux/arm64/v8.
    assert shown(client, REPO_MULTI, "platform=linux/arm") == []
    assert set(shown(client, REPO_WEB, "kind=image")) == set(plain_tags(seeded, REPO_WEB))
    assert shown(client, REPO_WEB, "kind=index") == []


def test_filter__form_works_without_javascript_and_carries_the_sort(client, many) -> None:
    doc = dom(get(client, repo_url(MANY, "sort=created&order=asc")))
    form = doc.one("form", id="tag-filter")
    assert (form.attrs["method"], form.attrs["action"]) == ("get", f"/r/{MANY}/")
    carried = {i.attrs["name"]: i.attrs["value"] for i in doc.find_all("input", form="tag-filter")}
    assert carried == {"sort": "created", "order": "asc"}
    assert form.attrs["hx-target"] == "#tags" and form.attrs["hx-push-url"] == "true"


# -- freshness --------------------------------------------------------------------------------------


def freshness_text(client, name: str) -> str:
    return dom(get(client, repo_url(name))).one("p", cls="freshness").text


def test_freshness__says_when_the_index_changed_and_what_changed_it(client, dashboard) -> None:
    from dashboard.browse import indexed

    index(REPO_ALPINE)
    assert freshness_text(client, REPO_ALPINE).startswith("Index updated just now by a sync · full sync just now")

    # A sync four minutes ago, a push event twelve seconds ago.
    now = timezone.now()
    IndexedRepository.objects.filter(name=REPO_ALPINE).update(synced_at=now - timedelta(minutes=4))
    store.set_tags(REPO_ALPINE, {"edge": dashboard.seeded.digest(REPO_ALPINE, "latest")}, source="event",
                   at=now - timedelta(seconds=12))
    fresh = indexed.freshness(REPO_ALPINE, now=now)
    assert fresh.sentence == "Index updated 12 s ago by a push event · full sync 4 min ago"
    assert "by a push event · full sync 4 min ago" in freshness_text(client, REPO_ALPINE)

    # A later pull says the registry's notifications still arrive.
    pull = RegistryEvent.objects.create(event_id="pull-1", action="pull", repository=REPO_ALPINE, tag="edge", at=now)
    RegistryEvent.objects.filter(pk=pull.pk).update(received_at=now)
    assert indexed.freshness(REPO_ALPINE, now=now + timedelta(seconds=3)).sentence.endswith(
        "· last registry event (pull) 3 s ago")


def test_freshness__a_repository_known_from_events_only_is_read_live_with_a_note(client, dashboard) -> None:
    store.set_tags(REPO_WEB, {"1.2.0": dashboard.seeded.digest(REPO_WEB, "1.2.0")}, source="event")
    doc = dom(get(client, repo_url(REPO_WEB)))
    # Not synced yet: the whole tag list comes from the registry, with a way to the sync.
    assert set(rows(doc)) == set(plain_tags(dashboard.seeded, REPO_WEB))
    note = doc.one("p", cls="index-note")
    assert "not in the dashboard's index yet" in note.text and note.one("a").attrs["href"] == "/-/sync/"


# -- after a change -----------------------------------------------------------------------------------


@pytest.fixture
def maintainer(client, db):
    return signed_in(client, "mia", "maintainer", password="pw-mia-123")


def test_untag__the_indexed_table_comes_back_without_the_tag_keeping_sort_and_filter(client, many, maintainer) -> None:
    response = client.post(f"/r/{MANY}/-/tags/v1.149.0/delete/", {"digest": many["v1.149.0"]},
                           headers={**HTMX, "HX-Current-URL": f"http://testserver/r/{MANY}/?q=1.14&sort=created"})
    assert response.status_code == 200
    doc = dom(response)
    order = row_order(doc)
    assert "v1.149.0" not in order
    assert order == sorted((t for t in many if "1.14" in t and t != "v1.149.0"),
                           key=lambda t: -int(t.split(".")[1]))
    assert doc.one("th", aria_sort="descending").text.startswith("Created")
    assert doc.one("p", cls="summary").text.startswith(f"{len(order)} of 249 tags match")
    # Maintainers get the boxes and the bulk untag, as on the live page.
    assert doc.one("form", id="bulk-form") and len(doc.find_all("input", form="bulk-form")) == len(order)


# -- the catalog --------------------------------------------------------------------------------------


def test_catalog__from_the_index_without_asking_the_registry(client, dashboard, configure) -> None:
    seeded = dashboard.seeded
    # As the live catalog: namespace first, each namespace's repositories under one heading.
    listed = catalog_order(seeded.repos)
    assert sync.run_now().state == "succeeded"
    # The registry is out of reach now: the catalog still lists every repository with its tag count.
    configure(REGISTRY_URL=f"http://127.0.0.1:{free_port()}")
    doc = dom(get(client, "/"))
    names = [a.attrs["href"][3:-1] for a in doc.find_all("a", cls="repo-link")]
    assert names == listed[:100]
    assert f"{len(seeded.repos)} repositories" in doc.one("p", cls="summary").text
    counts = {td.attrs["data-repo"]: td.text for td in doc.find_all("td", cls="tag-count")}
    for name, text in counts.items():
        assert text == tag_count_text(seeded, name), name
    assert doc.one("p", cls="freshness").text.startswith("Index updated just now · full sync just now")
    assert doc.one("section", id="repo-list").attrs.get("hx-trigger") is None, "nothing left to load"
    second = dom(get(client, "/?page=2"))
    assert [a.attrs["href"][3:-1] for a in second.find_all("a", cls="repo-link")] == listed[100:]
    narrowed = dom(get(client, "/?q=acme+m"))
    assert [a.attrs["href"][3:-1] for a in narrowed.find_all("a", cls="repo-link")] == [
        r for r in listed if "acme" in r and "m" in r]
    assert get(client, "/?q=acme", htmx=True).content.decode().lstrip().startswith('<section id="repo-list"')


def test_catalog__before_a_full_sync_finished__says_repositories_may_be_missing(client, dashboard) -> None:
    index(REPO_WEB)
    doc = dom(get(client, "/"))
    assert [a.attrs["href"][3:-1] for a in doc.find_all("a", cls="repo-link")] == [REPO_WEB]
    assert "no full sync has finished yet: some repositories may be missing" in doc.one("p", cls="freshness").text


def test_catalog__empty_index__read_live_as_before(client, seeded) -> None:
    doc = dom(get(client, "/"))
    assert [a.attrs["href"][3:-1] for a in doc.find_all("a", cls="repo-link")] == catalog_order(
        seeded.repos)[:100]
    assert doc.find("p", cls="freshness") is None


# -- speed --------------------------------------------------------------------------------------------


def test_speed__a_page_is_a_fixed_number_of_queries_whatever_the_page(client, many) -> None:
    from django.db import connection

    def count(query: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            get(client, repo_url(MANY, query), htmx=True)
        return len(captured.captured_queries)

    assert count("sort=created") == count("sort=created&page=2") == count("q=1.1&sort=size&page=2") <= 12
    started = time.perf_counter()
    get(client, repo_url(MANY, "sort=created"), htmx=True)
    assert time.perf_counter() - started < 1.0


# -- in a real browser --------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser__sort_by_created_and_page_swap_the_table_and_back_restores(
        page: Page, app: App, empty_registry: RegistryServer, point_at) -> None:
    point_at(empty_registry.url, ANONYMOUS_READ=True)
    seed_many_tags(empty_registry.url, MANY, 250)
    index(MANY)
    rows_ = page.locator("#tags tr.tag-row")
    page.goto(f"{app.url}/r/{MANY}/")
    expect(rows_).to_have_count(100)
    assert shown_tags(page)[:2] == ["v1.249.0", "v1.248.0"]
    expect(page.locator("#tags p.freshness")).to_contain_text("Index updated")
    mark_document(page)

    # Created: newest first, then oldest first; each a swap of the table and a URL to come back to.
    page.locator("#tags thead a", has_text="Created").click()
    expect(page.locator("#tags thead th", has_text="Created")).to_have_attribute("aria-sort", "descending")
    page.locator("#tags thead a", has_text="Created").click()
    expect(page.locator("#tags thead th", has_text="Created")).to_have_attribute("aria-sort", "ascending")
    expect(page).to_have_url(re.compile(r"\?sort=created&order=asc$"))
    assert shown_tags(page)[:3] == ["v1.0.0", "v1.1.0", "v1.2.0"]

    page.locator("#tags nav.pager a", has_text="Next").click()
    expect(page.locator("#tags nav.pager")).to_contain_text("Page 2 of 3")
    expect(page).to_have_url(re.compile(r"[?&]page=2"))
    assert shown_tags(page) == [f"v1.{i}.0" for i in range(100, 200)]
    assert same_document(page), "sorting and paging swap the table, not the page"

    # "/" goes to the filter; typing filters as you go and keeps the order; the box keeps focus and text.
    box = page.locator("#q")
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("/")
    expect(box).to_be_focused()
    page.keyboard.type("1.19", delay=30)
    expect(page.locator("#tags p.summary")).to_contain_text("11 of 250 tags match")
    expect(page).to_have_url(re.compile(r"q=1\.19"))
    expect(page).to_have_url(re.compile(r"sort=created"))
    assert shown_tags(page) == ["v1.19.0"] + [f"v1.{i}.0" for i in range(190, 200)]
    expect(box).to_be_focused()
    expect(box).to_have_value("1.19")
    assert same_document(page)

    page.go_back()
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.locator("#tags nav.pager")).to_contain_text("Page 2 of 3")
    expect(page.locator("header.topbar")).to_have_count(1)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_browser__indexed_repository_page_screenshots(browser: Browser, app: App, watch: Watch, scheme: str) -> None:
    index(REPO_WEB, REPO_MULTI)
    ctx = new_context(browser, watch, color_scheme=scheme)
    try:
        pg = ctx.new_page()
        pg.goto(app.repo_url(REPO_WEB))
        expect(pg.locator("#tags tr.tag-row")).to_have_count(len(plain_tags(app.seeded, REPO_WEB)))
        expect(pg.locator("#tags p.freshness")).to_contain_text("by a sync")
        shot(pg, f"index-repository-{scheme}")
        pg.goto(app.repo_url(REPO_MULTI))
        expect(pg.locator("#tags a.plat").first).to_be_visible()
        shot(pg, f"index-repository-multi-{scheme}")
        pg.goto(app.url + "/")
        expect(pg.locator("#repo-list a.repo-link")).to_have_count(2)
        expect(pg.locator("#repo-list p.freshness")).to_contain_text("no full sync has finished yet")
        shot(pg, f"index-catalog-{scheme}", full_page=False)
        pg.set_viewport_size({"width": 720, "height": 900})
        pg.goto(app.repo_url(REPO_WEB))
        no_sideways_scroll(pg)
        shot(pg, f"index-repository-narrow-{scheme}")
        watch.assert_clean(pg)
    finally:
        ctx.close()
