"""Server-side page tests: Django's test client against the real seeded registry.

Every expectation comes from ``registry.seeded`` (the facts computed from the bytes the seed
pushed) or from the registry itself, never from hard-coded digests, sizes or dates.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit

import pytest
from django.template.defaultfilters import filesizeformat
from django.test import Client

from testbed import Kind, SeededRegistry
from testbed.push import MANIFEST_ACCEPT
from testbed.seed import (
    BULK_PREFIX,
    REPO_ALPINE,
    REPO_BAD_CONFIG,
    REPO_BAD_MEDIATYPE,
    REPO_CHART,
    REPO_GONE,
    REPO_MULTI,
    REPO_WEB,
    XSS_HISTORY,
    XSS_LABEL,
)
from tests.helpers.html import Node, dom, elements
from tests.helpers.pages import (
    HTMX,
    KIND_LABEL,
    after,
    blob_url,
    catalog_order,
    closed_port,
    facts_of,
    get,
    index,
    manifest_url,
    plain_tags,
    registry_json,
    repo_url,
    row_order,
    rows,
    signed_in,
    tag_count_text,
    when,
)

IMAGE_CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
ATTACHMENT_LABEL = {Kind.SIGNATURE: "signature", Kind.SBOM: "SBOM", Kind.ATTESTATION: "attestation",
                    Kind.REFERRERS_INDEX: "referrer"}


# -- the crawl ----------------------------------------------------------------------------

MAX_PAGES = 2500
CRAWL_WORKERS = 4
_REPO_PATH = re.compile(r"^/r/(?P<name>(?:(?!/-/).)+)/$")
_MANIFEST_PATH = re.compile(r"^/r/(?P<name>.+?)/-/manifests/(?P<ref>[^/]+)/$")
_BLOB_PATH = re.compile(r"^/r/(?P<name>.+?)/-/blobs/(?P<digest>[^/]+)/$")
_DOWNLOAD_PATH = re.compile(r"^/r/(?P<name>.+?)/-/blobs/(?P<digest>[^/]+)/download$")


def _normalise(base: str, href: str) -> str | None:
    """The dashboard URL a link leads to, or None when it leaves the dashboard's pages."""
    url = urljoin("http://testserver" + base, href)
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.netloc != "testserver":
        return None
    if parts.path.startswith(("/static/", "/admin/")):
        return None
    query = urlencode(sorted(parse_qsl(parts.query)))
    return parts.path + (f"?{query}" if query else "")


def _links(body: str) -> Iterator[tuple[str, bool]]:
    """Every link a click (``<a href>``) or htmx (``hx-get`` on any element) would follow."""
    for tag, attrs in elements(body):
        if "hx-get" in attrs:
            yield attrs["hx-get"], True
        if tag == "a" and attrs.get("href"):
            yield attrs["href"], False


def _repo_of(url: str) -> str:
    path = urlsplit(url).path
    for pattern in (_MANIFEST_PATH, _DOWNLOAD_PATH, _BLOB_PATH, _REPO_PATH):
        if m := pattern.match(path):
            return m["name"]
    return ""


def _worth_opening(url: str, htmx: bool, copies: set[str]) -> bool:
    if _repo_of(url) not in copies:
        return True
    path, query = urlsplit(url)[2:4]
    return not htmx and not query and (_REPO_PATH.match(path) is not None or _MANIFEST_PATH.match(path) is not None
                                       and not _MANIFEST_PATH.match(path)["ref"].startswith("sha256:"))


def test_crawl__every_repo_tag_platform_layer_and_attachment_is_reachable_from_the_front_page(
        client, seeded: SeededRegistry) -> None:
    # The 120 bulk repositories hold one identical image. Two are walked like the others; for
    # the rest ("copies") the crawl opens the repository page and the tag's manifest page, and
    # notes (without opening) what those link to. That keeps the crawl to a few seconds.
    copies = set(seeded.bulk_repos[2:])
    linked: set[str] = set()
    statuses: dict[tuple[str, bool], int] = {}
    downloads: set[str] = set()
    seen = {("/", False)}
    level = [("/", False)]
    local = threading.local()

    def fetch(item: tuple[str, bool]) -> tuple[tuple[str, bool], int, str, str]:
        # One test client per worker thread: pages are fetched a level at a time, in parallel,
        # the way a browser's tabs would (the views themselves touch no database).
        if not hasattr(local, "client"):
            local.client = Client()
        url, htmx = item
        response = local.client.get(url, headers=HTMX if htmx else None)
        return item, response.status_code, response.headers.get("Content-Security-Policy", ""), \
            response.content.decode()

    with ThreadPoolExecutor(max_workers=CRAWL_WORKERS) as pool:
        while level:
            todo = []
            for url, htmx in level:
                if _DOWNLOAD_PATH.match(urlsplit(url).path):
                    downloads.add(url)
                else:
                    todo.append((url, htmx))
            assert len(statuses) + len(todo) <= MAX_PAGES, "the crawl does not end: links keep making new pages"
            level = []
            for (url, htmx), status, csp, body in pool.map(fetch, todo):
                statuses[(url, htmx)] = status
                assert status < 500, (url, htmx, body[:3000])
                assert csp, f"no Content-Security-Policy on {url}"
                assert "Traceback" not in body, url
                if htmx:
                    assert "<html" not in body, f"the htmx request for {url} got a whole page"
                for href, is_htmx in _links(body):
                    target = _normalise(url, href)
                    if target is None:
                        continue
                    linked.add(target)
                    if not _worth_opening(target, is_htmx, copies):
                        continue
                    if (target, is_htmx) not in seen:
                        seen.add((target, is_htmx))
                        level.append((target, is_htmx))

    broken = {k: v for k, v in statuses.items() if v != 200}
    assert not broken, f"links that lead to an error page: {broken}"

    opened = {url for url, _ in statuses}
    for url, htmx in [("/?page=2", False), ("/?counts=1", True), ("/?counts=1&page=2", True),
                      (f"/r/{REPO_WEB}/", True), (f"/r/{REPO_WEB}/?details=1", False),
                      (f"/r/{REPO_WEB}/?sort=image", True), (f"/r/{REPO_WEB}/?order=desc&sort=size", False)]:
        assert (url, htmx) in statuses, f"the crawl never followed {url} ({'htmx' if htmx else 'click'})"

    def classify(urls: set[str]) -> tuple[set[str], set[tuple[str, str]], set[tuple[str, str]]]:
        repos, manifests, blobs = set(), set(), set()
        for url in urls:
            path = urlsplit(url).path
            if m := _MANIFEST_PATH.match(path):
                manifests.add((m["name"], m["ref"]))
            elif m := _BLOB_PATH.match(path):
                blobs.add((m["name"], m["digest"]))
            elif m := _REPO_PATH.match(path):
                repos.add(m["name"])
        return repos, manifests, blobs

    # Repositories and tags must have been opened; digests and blobs opened too, or (for the
    # copies only) linked from a page of theirs that was opened.
    reached_repos, opened_manifests, _ = classify(opened)
    _, reached_manifests, reached_blobs = classify(opened | {u for u in linked if _repo_of(u) in copies})
    assert set(seeded.repos) <= reached_repos, set(seeded.repos) - reached_repos
    missing_tags = {(r, t) for r, tags in seeded.tags.items() for t in tags} - opened_manifests
    assert not missing_tags, f"tags never reached: {sorted(missing_tags)}"
    assert {(a.repo, a.tag) for a in seeded.attachments} <= opened_manifests
    missing_digests, missing_layers, missing_configs = set(), set(), set()
    for repo in seeded.repos:
        for digest, fact in facts_of(seeded, repo).items():
            tags = {t for t, d in seeded.tags[repo].items() if d == digest}
            if (repo, digest) not in reached_manifests and not {(repo, t) for t in tags} & opened_manifests:
                missing_digests.add((repo, digest, fact.kind, fact.platform))
            missing_layers |= {(repo, layer) for layer in fact.layer_digests} - reached_blobs
            # A config that cannot be read as one has nothing to link to (bad/config says why).
            if fact.config_media_type in IMAGE_CONFIG_TYPES and repo != REPO_BAD_CONFIG \
                    and (repo, fact.config_digest) not in reached_blobs:
                missing_configs.add((repo, fact.config_digest))
    assert not missing_digests, f"manifests (platforms, children) never reached: {sorted(missing_digests)}"
    assert (REPO_WEB, seeded.referrer_digest) in reached_manifests, "the untagged OCI referrer is unreachable"
    assert not missing_layers, f"layers never reached: {sorted(missing_layers)}"
    assert not missing_configs, f"config blobs never reached: {sorted(missing_configs)}"

    # Download links: every blob page has one; fetch a few and check the bytes are the blob.
    assert {(m["name"], m["digest"]) for u in downloads if (m := _DOWNLOAD_PATH.match(urlsplit(u).path))} \
        >= {(REPO_WEB, d) for d in seeded.fact(REPO_WEB, "1.10.0").layer_digests}
    sample = sorted(u for u in downloads if u.startswith((f"/r/{REPO_WEB}/", f"/r/{REPO_ALPINE}/")))[:4]
    assert sample
    for url in sample:
        digest = _DOWNLOAD_PATH.match(urlsplit(url).path)["digest"]
        response = client.get(url)
        assert response.status_code == 200, url
        data = b"".join(response.streaming_content)
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, url
        assert response["Content-Length"] == str(len(data))
        assert response["Content-Disposition"].startswith("attachment;")


# -- repository page ----------------------------------------------------------------------


def test_repository__plain_get_shows_tag_names_only_and_asks_htmx_for_details(client, seeded) -> None:
    doc = dom(get(client, repo_url(REPO_WEB)))
    section = doc.one("section", id="tags")
    assert section.attrs["aria-busy"] == "true"
    assert urlsplit(section.attrs["hx-get"]).path == repo_url(REPO_WEB)
    assert section.attrs["hx-trigger"] == "load"
    assert set(rows(doc)) == set(plain_tags(seeded, REPO_WEB))
    assert not doc.find_all("td", cls="digest"), "a plain GET must not wait for digests"
    noscript = doc.one("noscript")
    assert noscript.one("a").attrs["href"] == "?details=1"
    summary = doc.one("p", cls="summary").text
    n_att = sum(1 for a in seeded.attachments if a.repo == REPO_WEB)
    assert f"{len(plain_tags(seeded, REPO_WEB))} tags" in summary and f"{n_att} attachment tags" in summary


def test_repository__htmx_request_returns_the_detailed_partial_only(client, seeded) -> None:
    response = get(client, repo_url(REPO_WEB), htmx=True)
    body = response.content.decode()
    assert "<html" not in body and "<body" not in body
    assert body.lstrip().startswith('<section id="tags"')
    doc = dom(response)
    assert doc.one("section", id="tags").attrs["aria-busy"] == "false"
    assert set(rows(doc)) == set(plain_tags(seeded, REPO_WEB))
    assert len(doc.find_all("td", cls="digest")) == len(rows(doc))


@pytest.mark.parametrize("repo", [REPO_WEB, REPO_ALPINE, REPO_MULTI, REPO_CHART])
def test_repository__rows_show_short_digest_size_and_created_of_each_tag(client, seeded, repo) -> None:
    doc = dom(get(client, repo_url(repo, "details=1")))
    found = rows(doc)
    assert set(found) == set(plain_tags(seeded, repo))
    for tag, tr in found.items():
        fact = seeded.fact(repo, tag)
        link = tr.one("td", cls="digest").one("a")
        assert link.text == fact.digest.split(":", 1)[1][:12]
        assert link.attrs["title"] == fact.digest
        assert link.attrs["href"] == manifest_url(repo, fact.digest)
        size = tr.find_all("td", cls="num")[0]
        assert size.attrs["title"] == f"{fact.size} bytes, compressed", tag
        assert size.text == filesizeformat(fact.size), tag
        time = tr.one("time")
        expected = fact.created or max(c.created for c in fact.children if c.created)
        assert when(time.attrs["datetime"]) == when(expected), tag
        assert tr.one("a", href=manifest_url(repo, tag)).text == tag


def test_repository__multi_arch_index_lists_every_platform_with_its_own_size(client, seeded) -> None:
    doc = dom(get(client, repo_url(REPO_MULTI, "details=1")))
    for tag, tr in rows(doc).items():
        fact = seeded.fact(REPO_MULTI, tag)
        assert fact.kind in (Kind.INDEX, Kind.MANIFEST_LIST)
        assert tr.one("span", cls="chip").text == "multi-arch"
        platforms = tr.one("td", cls="platforms").find_all("a", cls="plat")
        shown = [(a.find("span").text, a.text.removesuffix(a.find("span").text).strip(), a.attrs["href"])
                 for a in platforms]
        children = [c for c in fact.children if c.kind != Kind.ATTESTATION_MANIFEST]
        assert [p for _, p, _ in shown] == list(fact.platforms)
        assert shown == [(filesizeformat(c.size), c.platform, manifest_url(REPO_MULTI, c.digest)) for c in children]
        assert "unknown/unknown" not in tr.one("td", cls="platforms").text, "attestation shown as a platform"
        assert tr.find_all("td", cls="num")[0].attrs["title"] == f"{fact.size} bytes, compressed"


def test_repository__kind_labels_for_image_multi_arch_helm_chart_and_artifact(client, seeded) -> None:
    for repo in (REPO_WEB, REPO_ALPINE, REPO_MULTI, REPO_CHART, REPO_BAD_MEDIATYPE):
        doc = dom(get(client, repo_url(repo, "details=1")))
        for tag, tr in rows(doc).items():
            kind = seeded.fact(repo, tag).kind
            assert tr.one("span", cls="chip").text == KIND_LABEL[kind], (repo, tag)


def test_repository__helm_chart_gets_a_helm_pull_command(client, dashboard) -> None:
    doc = dom(get(client, repo_url(REPO_CHART, "details=1")))
    [(tag, tr)] = rows(doc).items()
    copies = [b.attrs["data-copy"] for b in tr.find_all("button", cls="copy")]
    assert copies == [f"helm pull oci://{dashboard.host}/{REPO_CHART} --version {tag}"]


def _copies(node: Node) -> list[str]:
    return [b.attrs["data-copy"] for b in node.find_all("button", cls="copy") if "data-copy" in b.attrs]


def test_repository__charts_only__the_page_offers_helm_not_docker(client, dashboard) -> None:
    # The names paint first; the details (by htmx) say what the tags are and correct the command.
    first = dom(get(client, repo_url(REPO_CHART)))
    assert _copies(first.one("span", id="repo-pull")) == [f"docker pull {dashboard.host}/{REPO_CHART}"]
    details = dom(get(client, repo_url(REPO_CHART), htmx=True))
    swapped = details.one("span", id="repo-pull")
    assert swapped.attrs["hx-swap-oob"] == "true"
    assert _copies(swapped) == [f"helm pull oci://{dashboard.host}/{REPO_CHART}"]
    assert _copies(dom(get(client, repo_url(REPO_CHART, "details=1"))).one("span", id="repo-pull")) == [
        f"helm pull oci://{dashboard.host}/{REPO_CHART}"]
    # An image repository keeps docker, and its details send no correction.
    assert dom(get(client, repo_url(REPO_WEB), htmx=True)).find("span", id="repo-pull") is None


def test_repository__an_oci_artifact_gets_an_oras_pull__not_docker(client, dashboard) -> None:
    doc = dom(get(client, repo_url(REPO_BAD_MEDIATYPE, "details=1")))
    [(tag, tr)] = rows(doc).items()
    digest = dashboard.seeded.digest(REPO_BAD_MEDIATYPE, tag)
    ref = f"{dashboard.host}/{REPO_BAD_MEDIATYPE}"
    assert _copies(tr) == [f"oras pull {ref}:{tag}", f"oras pull {ref}@{digest}"]
    head = doc.one("span", id="repo-pull")
    assert not _copies(head) and "ORAS" in head.text and "docker pull refuses them" in head.text


def test_manifest__artifacts_get_a_helm_or_oras_hint__no_docker_pull_no_platform(client, seeded) -> None:
    host = seeded.host
    pages = [(REPO_CHART, "0.1.0"), (REPO_BAD_MEDIATYPE, "v1")] + [(a.repo, a.tag) for a in seeded.attachments
                                                                   if a.kind != Kind.REFERRERS_INDEX]
    for repo, tag in pages:
        doc = dom(get(client, manifest_url(repo, tag)))
        facts = _facts_dl(doc)
        digest = facts["Digest"].one("code").text
        first = (f"helm pull oci://{host}/{repo} --version {tag}" if repo == REPO_CHART
                 else f"oras pull {host}/{repo}:{tag}")
        assert _copies(facts["Pull"]) == [first, f"oras pull {host}/{repo}@{digest}"], (repo, tag)
        assert "not a container image" in facts["Pull"].one("p", cls="pull-hint").text
        assert "docker pull" not in " ".join(_copies(doc)), (repo, tag)
        assert "Platform" not in facts and "?/?" not in doc.text, (repo, tag)
    # An image keeps its docker pull and its platform.
    image = _facts_dl(dom(get(client, manifest_url(REPO_WEB, "1.10.0"))))
    assert _copies(image["Pull"])[0] == f"docker pull {host}/{REPO_WEB}:1.10.0"
    assert image["Platform"].text == "linux/amd64"


@pytest.mark.parametrize("repo", [REPO_ALPINE, REPO_WEB])
def test_repository__shared_digest_tags_are_grouped(client, seeded, repo) -> None:
    doc = dom(get(client, repo_url(repo, "details=1")))
    by_digest: dict[str, list[str]] = {}
    for tag in plain_tags(seeded, repo):
        by_digest.setdefault(seeded.digest(repo, tag), []).append(tag)
    shared = [tags for tags in by_digest.values() if len(tags) > 1]
    assert shared, "the seed has tags sharing a digest here"
    found = rows(doc)
    groups_seen = set()
    for tags in by_digest.values():
        for tag in tags:
            tr = found[tag]
            groups = {c for c in tr.classes if c.startswith("grp-")}
            note = tr.find("span", cls="same")
            if len(tags) == 1:
                assert not groups and note is None, tag
                continue
            assert len(groups) == 1 and "shared" in tr.classes, tag
            others = sorted(t for t in tags if t != tag)
            assert note is not None and note.text.startswith("= ")
            assert sorted(note.text[2:].split(", ")) == others, tag
            groups_seen.add((frozenset(tags), groups.pop()))
    # One colour per shared digest: the tags of one digest agree, different digests differ.
    assert len({g for _, g in groups_seen}) == len(shared) == len({t for t, _ in groups_seen})


def test_repository__attachment_tags_are_chips_on_the_image_they_name_not_rows(client, seeded) -> None:
    doc = dom(get(client, repo_url(REPO_WEB, "details=1")))
    found = rows(doc)
    attachments = [a for a in seeded.attachments if a.repo == REPO_WEB]
    assert {a.tag for a in attachments} and not {a.tag for a in attachments} & set(found)
    assert not [t for t in found if t.startswith("sha256-")]
    for tag, tr in found.items():
        digest = seeded.digest(REPO_WEB, tag)
        chips = {a.attrs["href"]: a for a in tr.find_all("a", cls="att")}
        mine = [a for a in attachments if a.subject_digest == digest]
        assert set(chips) == {manifest_url(REPO_WEB, a.tag) for a in mine}, tag
        for a in mine:
            chip = chips[manifest_url(REPO_WEB, a.tag)]
            assert chip.attrs["title"] == a.tag
            assert chip.text == ATTACHMENT_LABEL[a.kind], (tag, a.tag)
    # The cosign trio hangs off 1.10.0 (and so off latest, same digest); the referrers tag off 1.2.0.
    assert len(found["1.10.0"].find_all("a", cls="att")) == 3
    assert len(found["1.2.0"].find_all("a", cls="att")) == 1
    assert not doc.find("ul", cls="orphans"), "every attachment's image is tagged: no orphans"


def test_repository__group_by_image_puts_tags_of_one_digest_next_to_each_other(client, seeded) -> None:
    doc = dom(get(client, repo_url(REPO_WEB)))
    link = [a for a in doc.one("p", cls="summary").find_all("a") if a.text == "Group tags by image"]
    assert link and link[0].attrs["href"] == "?sort=image"
    grouped = dom(get(client, repo_url(REPO_WEB, "sort=image")))
    digests = [seeded.digest(REPO_WEB, t) for t in row_order(grouped)]
    runs = [d for i, d in enumerate(digests) if i == 0 or digests[i - 1] != d]
    assert len(runs) == len(set(digests)), f"tags of one image are split up: {row_order(grouped)}"
    # Newest image first.
    created = [when(seeded.manifests[d].created) for d in runs]
    assert created == sorted(created, reverse=True)
    assert "Ungroup" in grouped.one("p", cls="summary").text


def test_repository__semver_sort_ascending_and_descending(client, dashboard) -> None:
    def versions(query: str) -> list[str]:
        return [t for t in row_order(dom(get(client, repo_url(REPO_WEB, query)))) if t[0].isdigit()]

    # Newest version first by default, in the skeleton and with details; `latest` heads both.
    assert versions("") == ["1.10.0", "1.9.0", "1.2.0"]
    assert versions("details=1") == ["1.10.0", "1.9.0", "1.2.0"]
    assert row_order(dom(get(client, repo_url(REPO_WEB, "details=1"))))[0] == "latest"
    assert row_order(dom(get(client, repo_url(REPO_WEB, "sort=name&order=asc"))))[0] == "latest"
    assert versions("sort=name&order=asc") == ["1.2.0", "1.9.0", "1.10.0"]
    assert versions("sort=name&order=desc") == ["1.10.0", "1.9.0", "1.2.0"]
    doc = dom(get(client, repo_url(REPO_WEB, "sort=name&order=desc")))
    header = doc.find("th", aria_sort="descending")
    assert header is not None and header.text.startswith("Tag")
    # The header offers the other direction.
    assert "order=asc" in header.one("a").attrs["href"]


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_repository__sort_by_size(client, seeded, order) -> None:
    got = row_order(dom(get(client, repo_url(REPO_WEB, f"sort=size&order={order}"))))
    sizes = [seeded.fact(REPO_WEB, t).size for t in got]
    assert sizes == sorted(sizes, reverse=order == "desc")
    assert len(set(sizes)) > 1


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_repository__sort_by_created(client, seeded, order) -> None:
    doc = dom(get(client, repo_url(REPO_WEB, f"sort=created&order={order}")))
    got = row_order(doc)
    created = [when(seeded.fact(REPO_WEB, t).created) for t in got]
    assert created == sorted(created, reverse=order == "desc")
    assert [when(t.attrs["datetime"]) for t in doc.find_all("time")] == created


def test_repository__default_size_and_created_sorts_are_newest_and_largest_first(client, seeded) -> None:
    by_size = row_order(dom(get(client, repo_url(REPO_WEB, "sort=size"))))
    assert seeded.fact(REPO_WEB, by_size[0]).size == max(seeded.fact(REPO_WEB, t).size for t in by_size)
    by_created = row_order(dom(get(client, repo_url(REPO_WEB, "sort=created"))))
    assert seeded.fact(REPO_WEB, by_created[-1]).created == min(seeded.fact(REPO_WEB, t).created for t in by_created)


def test_repository__pull_commands_by_tag_and_by_digest_name_the_registry_host(client, dashboard) -> None:
    seeded, host = dashboard.seeded, dashboard.host
    assert host == urlsplit(dashboard.url).netloc
    doc = dom(get(client, repo_url(REPO_WEB, "details=1")))
    head = doc.one("div", cls="page-head")
    assert head.one("code", cls="cmd").text == f"docker pull {host}/{REPO_WEB}"
    for tag, tr in rows(doc).items():
        copies = [b.attrs["data-copy"] for b in tr.one("td", cls="pulls").find_all("button")]
        assert copies == [f"docker pull {host}/{REPO_WEB}:{tag}",
                          f"docker pull {host}/{REPO_WEB}@{seeded.digest(REPO_WEB, tag)}"]


def test_repository__tagless_repository_says_so(client, dashboard) -> None:
    for query in ("", "details=1"):
        doc = dom(get(client, repo_url(REPO_GONE, query)))
        assert not rows(doc)
        assert "0 tags" in doc.one("p", cls="summary").text
        text = doc.one("main").text
        assert "No tags." in text or "no tags" in text


# -- catalog ------------------------------------------------------------------------------


def catalog_names(doc: Node) -> list[str]:
    return [a.attrs["href"][3:-1] for a in doc.find_all("a", cls="repo-link")]


@pytest.mark.parametrize("query", ["acme", "web", "acme multi", "BULK/REPO-00", "bad/"])
def test_catalog__filter_narrows_and_says_how_many_match(client, seeded, query) -> None:
    expected = catalog_order((r for r in seeded.repos if all(t in r for t in query.lower().split())), seeded.repos)
    assert 0 < len(expected) < len(seeded.repos)
    doc = dom(get(client, "/?" + urlencode({"q": query})))
    assert catalog_names(doc) == expected[:100]
    summary = doc.one("p", cls="summary").text
    verb = "matches" if len(expected) == 1 else "match"
    assert summary.startswith(f"{len(expected)} of the registry's repositories {verb} “{query}”")
    assert doc.one("input", id="q").attrs["value"] == query


def test_catalog__filter_without_match_says_so(client, dashboard) -> None:
    doc = dom(get(client, "/?q=no-such-repository-anywhere"))
    assert catalog_names(doc) == []
    assert "0 of the registry's repositories match" in doc.one("p", cls="summary").text
    assert "No repository name contains “no-such-repository-anywhere”" in doc.one("p", cls="empty").text


def test_catalog__pagination_puts_the_rest_on_page_two(client, seeded) -> None:
    repos = catalog_order(seeded.repos)
    assert len(repos) > 100
    first = dom(get(client, "/"))
    assert catalog_names(first) == repos[:100]
    assert "Page 1 of 2" in first.one("nav", cls="pager").text
    assert f"{len(repos)} repositories" in first.one("p", cls="summary").text
    nxt = first.one("a", rel="next")
    assert nxt.attrs["href"] == "?page=2"
    second = dom(get(client, "/?page=2"))
    assert catalog_names(second) == repos[100:]
    assert "Page 2 of 2" in second.one("nav", cls="pager").text
    assert f"showing 101–{len(repos)}" in second.one("p", cls="summary").text
    assert second.find("a", rel="next") is None and second.one("a", rel="prev").attrs["href"] == "?page=1"
    # Out-of-range and junk page numbers land on a real page, not an error.
    assert catalog_names(dom(get(client, "/?page=99"))) == repos[100:]
    assert catalog_names(dom(get(client, "/?page=abc"))) == repos[:100]


def _headings(doc: Node) -> list[tuple[str, bool]]:
    """Each namespace's heading in page order, and whether it is folded (a closed <details>)."""
    found = []
    for node in doc.iter():
        if node.tag == "tr" and "ns-row" in node.classes:
            found.append((node.text, False))
        elif node.tag == "details" and "ns-group" in node.classes:
            found.append((node.one("span", cls="ns").text, "open" not in node.attrs))
    return found


def test_catalog__namespaces_get_group_rows__the_bulk_namespace_folded_with_its_count(client, seeded) -> None:
    repos = catalog_order(seeded.repos)
    bulk = len(seeded.bulk_repos)
    for page, names in ((1, repos[:100]), (2, repos[100:])):
        doc = dom(get(client, f"/?page={page}"))
        expected: list[tuple[str, bool]] = []
        for name in names:
            ns = name.rpartition("/")[0]
            if ns and (not expected or expected[-1][0] != ns + "/"):
                expected.append((ns + "/", ns == BULK_PREFIX))
        assert _headings(doc) == expected
        # The 120 generated repositories are one closed line saying how many there are.
        [folded] = doc.find_all("details", cls="ns-group")
        on_page = sum(1 for n in names if n.startswith(BULK_PREFIX + "/"))
        assert folded.one("summary").text == f"{BULK_PREFIX}/ {bulk} repositories · {on_page} on this page"
        assert len(folded.find_all("a", cls="repo-link")) == on_page
        for link in doc.find_all("a", cls="repo-link"):
            name = link.attrs["href"][3:-1]
            ns, _, leaf = name.rpartition("/")
            assert link.one("strong").text == leaf
            assert link.text == name
    # Folded namespaces come after the others: every other repository is on the first page.
    first = catalog_names(dom(get(client, "/")))
    assert {r for r in seeded.repos if not r.startswith(BULK_PREFIX + "/")} <= set(first)
    assert first[-1].startswith(BULK_PREFIX + "/") and REPO_ALPINE in first


def test_catalog__filter_opens_the_folded_namespace_it_finds_repositories_in(client, seeded) -> None:
    doc = dom(get(client, "/?q=repo-001", htmx=True))
    [group] = doc.find_all("details", cls="ns-group")
    assert "open" in group.attrs
    found = [r for r in catalog_order(seeded.repos) if "repo-001" in r]
    assert [a.attrs["href"][3:-1] for a in group.find_all("a", cls="repo-link")] == found
    assert group.one("summary").text == f"{BULK_PREFIX}/ {len(seeded.bulk_repos)} repositories · {len(found)} match"
    # A namespace of a few repositories is never folded.
    assert not dom(get(client, "/?q=acme")).find_all("details", cls="ns-group")


@pytest.mark.parametrize("page", [1, 2])
def test_catalog__tag_counts_equal_the_seeded_tag_counts(client, seeded, page) -> None:
    # As the browser asks for them: htmx, after the page painted.
    doc = dom(get(client, f"/?page={page}&counts=1", htmx=True))
    cells = {td.attrs["data-repo"]: td.text for td in doc.find_all("td", cls="tag-count")}
    names = catalog_order(seeded.repos)[(page - 1) * 100: page * 100]
    assert list(cells) == names
    for name, text in cells.items():
        # Tags and, apart, attachment tags: as the repository page says them.
        assert text == tag_count_text(seeded, name), name
    if REPO_GONE in cells:
        assert cells[REPO_GONE] == "no tags"


def test_catalog__without_counts_the_page_asks_for_them_with_htmx(client, dashboard) -> None:
    doc = dom(get(client, "/?page=2"))
    section = doc.one("section", id="repo-list")
    assert section.attrs["hx-trigger"] == "load"
    assert dict(parse_qsl(urlsplit(section.attrs["hx-get"]).query)) == {"page": "2", "counts": "1"}
    assert {td.text for td in doc.find_all("td", cls="tag-count")} == {"…"}


def test_catalog__htmx_request_returns_the_partial_only(client, dashboard) -> None:
    for url in ("/", "/?q=acme", "/?page=2", "/?counts=1"):
        body = get(client, url, htmx=True).content.decode()
        assert "<html" not in body and "<body" not in body, url
        assert body.lstrip().startswith('<section id="repo-list"'), url
    full = get(client, "/").content.decode()
    assert "<html" in full and 'id="repo-list"' in full


# -- manifest page ------------------------------------------------------------------------


def _facts_dl(doc: Node) -> dict[str, Node]:
    out = {}
    for dl in doc.find_all("dl", cls="facts"):
        dts = dl.find_all("dt")
        dds = dl.find_all("dd")
        out.update({dt.text: dd for dt, dd in zip(dts, dds, strict=True)})
    return out


@pytest.mark.parametrize("repo,tag", [(REPO_WEB, "1.10.0"), (REPO_WEB, "1.2.0"), (REPO_ALPINE, "3.19")])
def test_manifest__image_shows_config_fields(client, dashboard, repo, tag) -> None:
    fact = dashboard.seeded.fact(repo, tag)
    config = registry_json(dashboard, f"/v2/{repo}/blobs/{fact.config_digest}")
    cc = config.get("config") or {}
    doc = dom(get(client, manifest_url(repo, tag)))
    facts = _facts_dl(doc)
    assert when(facts["Created"].one("time").attrs["datetime"]) == when(fact.created)
    assert facts["Platform"].text == fact.platform
    assert facts["Digest"].one("code").text == fact.digest
    assert facts["Config blob"].one("a").attrs["href"] == blob_url(repo, fact.config_digest)
    if cc.get("Entrypoint"):
        assert facts["Entrypoint"].text == " ".join(cc["Entrypoint"])
    if cc.get("Cmd"):
        assert facts["Cmd"].text == " ".join(cc["Cmd"])
    if config.get("author"):
        assert facts["Author"].text == config["author"]
    env = doc.one("ul", cls="kv")
    assert [li.text for li in env.find_all("li")] == cc["Env"]
    labels = {tr.one("th").text: tr.one("td").text for tr in after(doc, "Labels", "table").find_all("tr")}
    assert labels == dict(fact.labels)
    assert doc.one("div", cls="page-head").one("span", cls="chip").text == "image"


@pytest.mark.parametrize("repo,tag", [(REPO_WEB, "1.10.0"), (REPO_WEB, "1.9.0"), (REPO_ALPINE, "latest")])
def test_manifest__history_lines_up_with_layers(client, dashboard, repo, tag) -> None:
    fact = dashboard.seeded.fact(repo, tag)
    history = registry_json(dashboard, f"/v2/{repo}/blobs/{fact.config_digest}")["history"]
    assert any(h.get("empty_layer") for h in history), "the seed has metadata-only steps here"
    doc = dom(get(client, manifest_url(repo, tag)))
    trs = doc.one("table", cls="history").one("tbody").find_all("tr")
    assert len(trs) == len(history)
    layers = iter(zip(fact.layer_digests, fact.layer_sizes, strict=True))
    for tr, step in zip(trs, history, strict=True):
        cells = tr.find_all("td")
        assert cells[1].one("code").text == re.sub(r"\s+", " ", step["created_by"]).strip()
        link = cells[3].find("a")
        if step.get("empty_layer"):
            assert "empty-layer" in tr.classes
            assert cells[1].one("span", cls="chip").text == "no layer"
            assert link is None
        else:
            digest, size = next(layers)
            assert link is not None and link.attrs["href"] == blob_url(repo, digest)
            assert link.text == digest.split(":", 1)[1][:12]
            assert cells[4].one("span").attrs["title"] == f"{size} bytes"
            assert cells[4].text == filesizeformat(size)
    assert next(layers, None) is None, "layers left over"
    assert doc.find("p", cls="notice") is None, "history and layers agree: no warning"


def test_manifest__layers_table_lists_digests_and_sizes(client, seeded) -> None:
    fact = seeded.fact(REPO_WEB, "1.10.0")
    doc = dom(get(client, manifest_url(REPO_WEB, "1.10.0")))
    table = [t for t in doc.find_all("table", cls="grid") if "history" not in t.classes
             and t.find("th", scope="col") and t.find_all("th")[1].text == "Digest"][0]
    got = [(tr.find_all("td")[1].text, tr.find_all("td")[1].one("a").attrs["href"], tr.find_all("td")[2].attrs["title"],
            tr.find_all("td")[3].text) for tr in table.one("tbody").find_all("tr")]
    assert got == [(d, blob_url(REPO_WEB, d), f"{s} bytes", mt) for d, s, mt
                   in zip(fact.layer_digests, fact.layer_sizes, fact.layer_media_types, strict=True)]
    facts = _facts_dl(doc)
    assert f"({fact.size} bytes in {len(fact.layer_digests)} layers)" in facts["Compressed layers"].text


@pytest.mark.parametrize("repo,tag", [(REPO_WEB, "1.10.0"), (REPO_MULTI, "2.0"), (REPO_CHART, "0.1.0")])
def test_manifest__raw_json_is_the_registry_manifest(client, dashboard, repo, tag) -> None:
    fact = dashboard.seeded.fact(repo, tag)
    doc = dom(get(client, manifest_url(repo, tag)))
    raw = doc.one("pre", id="raw-json").text
    expected = registry_json(dashboard, f"/v2/{repo}/manifests/{fact.digest}", accept=MANIFEST_ACCEPT)
    assert json.loads(raw) == expected
    # Exact bytes, said once: filesizeformat already says "N bytes" below 1 KiB.
    assert f"{fact.manifest_size} bytes" in _facts_dl(doc)["Manifest size"].text.replace("\xa0", " ")


@pytest.mark.parametrize("tag", ["2.0", "legacy-list"])
def test_manifest__index_links_every_platform_to_its_child_manifest(client, seeded, tag) -> None:
    fact = seeded.fact(REPO_MULTI, tag)
    doc = dom(get(client, manifest_url(REPO_MULTI, tag)))
    assert doc.one("div", cls="page-head").one("span", cls="chip").text == "multi-arch"
    platforms = after(doc, "Platforms", "tbody").find_all("tr")
    assert len(platforms) == len(fact.children)
    for tr, child in zip(platforms, fact.children, strict=True):
        link = tr.one("th").one("a")
        assert link.attrs["href"] == manifest_url(REPO_MULTI, child.digest)
        assert link.text == child.platform
        kind = tr.one("span", cls="chip").text
        assert kind == ("attestation" if child.kind == Kind.ATTESTATION_MANIFEST else "image")
    # The child pages are there and describe the platform's own image.
    for child in fact.children:
        if child.kind == Kind.ATTESTATION_MANIFEST:
            continue
        page = dom(get(client, manifest_url(REPO_MULTI, child.digest)))
        facts = _facts_dl(page)
        assert facts["Platform"].text == child.platform
        assert facts["Digest"].one("code").text == child.digest
        assert f"({child.size} bytes in" in facts["Compressed layers"].text
        assert {a.attrs["href"] for a in page.find_all("a")} >= {blob_url(REPO_MULTI, d) for d in child.layer_digests}


def test_manifest__by_digest_shows_digest_heading_and_only_the_digest_pull(client, dashboard) -> None:
    fact = dashboard.seeded.fact(REPO_WEB, "1.9.0")
    doc = dom(get(client, manifest_url(REPO_WEB, fact.digest)))
    assert doc.one("h1").text == f"{REPO_WEB}@{fact.digest.split(':', 1)[1][:12]}"
    pulls = [c.text for c in _facts_dl(doc)["Pull"].find_all("code")]
    assert pulls == [f"docker pull {dashboard.host}/{REPO_WEB}@{fact.digest}"]
    by_tag = dom(get(client, manifest_url(REPO_WEB, "1.9.0")))
    assert [c.text for c in _facts_dl(by_tag)["Pull"].find_all("code")] == [
        f"docker pull {dashboard.host}/{REPO_WEB}:1.9.0", f"docker pull {dashboard.host}/{REPO_WEB}@{fact.digest}"]


def test_manifest__image_lists_its_attachments(client, seeded) -> None:
    for tag in ("1.10.0", "1.2.0", "1.9.0"):
        digest = seeded.digest(REPO_WEB, tag)
        doc = dom(get(client, manifest_url(REPO_WEB, tag)))
        hrefs = {a.attrs["href"] for ul in doc.find_all("ul", cls="plain") for a in ul.find_all("a")}
        assert hrefs == {manifest_url(REPO_WEB, a.tag) for a in seeded.attachments if a.subject_digest == digest}


def test_manifest__attachment_tag_page_links_back_to_its_image(client, seeded) -> None:
    for att in seeded.attachments:
        doc = dom(get(client, manifest_url(att.repo, att.tag)))
        facts = _facts_dl(doc)
        assert facts["Digest"].one("code").text == att.digest
        attached = facts["Attached to"]
        assert attached.one("a").attrs["href"] == manifest_url(att.repo, att.subject_digest)
        assert attached.one("span", cls="chip").text == ATTACHMENT_LABEL[att.kind]
        subject = dom(get(client, manifest_url(att.repo, att.subject_digest)))
        assert _facts_dl(subject)["Digest"].one("code").text == att.subject_digest


def test_manifest__referrers_tag_leads_to_the_artifact_that_refers_back(client, seeded) -> None:
    [att] = [a for a in seeded.attachments if a.kind == Kind.REFERRERS_INDEX]
    doc = dom(get(client, manifest_url(REPO_WEB, att.tag)))
    assert manifest_url(REPO_WEB, seeded.referrer_digest) in {a.attrs["href"] for a in doc.find_all("a")}
    artifact = dom(get(client, manifest_url(REPO_WEB, seeded.referrer_digest)))
    facts = _facts_dl(artifact)
    assert facts["Refers to"].one("a").attrs["href"] == manifest_url(REPO_WEB, att.subject_digest)
    assert facts["Artifact type"].text == seeded.manifests[seeded.referrer_digest].artifact_type
    assert artifact.one("div", cls="page-head").one("span", cls="chip").text == "SBOM"


def test_manifest__helm_chart(client, seeded) -> None:
    fact = seeded.fact(REPO_CHART, "0.1.0")
    doc = dom(get(client, manifest_url(REPO_CHART, "0.1.0")))
    assert doc.one("div", cls="page-head").one("span", cls="chip").text == "helm chart"
    assert {a.attrs["href"] for a in doc.find_all("a")} >= {blob_url(REPO_CHART, d) for d in fact.layer_digests}
    annotations = {tr.one("th").text: tr.one("td").text for tr in after(doc, "Annotations", "table").find_all("tr")}
    assert annotations == dict(fact.annotations)
    assert doc.find("p", cls="problem") is None, "a chart's config is not an image config, and that is fine"


def test_manifest__hostile_label_and_history_are_escaped(client, dashboard) -> None:
    for tag in ("1.10.0", "1.9.0"):
        response = get(client, manifest_url(REPO_WEB, tag))
        body = response.content.decode()
        assert XSS_LABEL not in body
        assert "<script>alert" not in body
        assert "<img src=x" not in body and "<b>bold</b>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
        doc = dom(response)
        # Shown as text, exactly as pushed.
        assert XSS_LABEL in [td.text for td in doc.find_all("td")]
        assert XSS_HISTORY in [c.text for c in doc.find_all("code")]
        for script in doc.find_all("script"):
            assert script.attrs.get("src", "").startswith("/static/") and not script.text, script


@pytest.mark.parametrize("url", ["/", "/?counts=1", f"/r/{REPO_WEB}/", f"/r/{REPO_WEB}/?details=1",
                                 f"/r/{REPO_WEB}/-/manifests/1.10.0/"])
def test_csp__header_forbids_inline_script(client, dashboard, url) -> None:
    response = get(client, url)
    header = response.headers["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in header.split(";") if d.strip()}
    assert "script-src" in directives
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert directives.get("default-src") == ["'none'"]
    nonces = {s.removeprefix("'nonce-").removesuffix("'") for s in directives["script-src"] if s.startswith("'nonce-")}
    for script in dom(response).find_all("script"):
        assert script.attrs.get("src") and not script.text
        if "nonce" in script.attrs:
            assert script.attrs["nonce"] in nonces


# -- blob page ----------------------------------------------------------------------------


def test_blob__layer_page_shows_size_type_and_the_tags_using_it(client, seeded) -> None:
    fact = seeded.fact(REPO_WEB, "1.10.0")
    digest, size, media_type = fact.layer_digests[0], fact.layer_sizes[0], fact.layer_media_types[0]
    doc = dom(get(client, blob_url(REPO_WEB, digest)))
    facts = _facts_dl(doc)
    assert facts["Digest"].one("code").text == digest
    assert facts["Size"].text == f"{filesizeformat(size)} ({size} bytes)"
    assert facts["Media type"].text == media_type
    # The link says the media type, so the download is named .tar.gz even before a sync.
    assert facts["Download"].one("a").attrs["href"] == \
        f"/r/{REPO_WEB}/-/blobs/{digest}/download?type={quote(media_type, safe='/')}"
    [tr] = doc.one("tbody").find_all("tr")
    cells = tr.find_all("td")
    assert cells[0].one("a").attrs["href"] == manifest_url(REPO_WEB, fact.digest)
    assert cells[1].text == "layer"
    tags = {t for t, d in seeded.tags[REPO_WEB].items() if d == fact.digest}
    assert {a.text for a in cells[2].find_all("a")} == tags


def test_blob__config_page_names_its_role(client, seeded) -> None:
    fact = seeded.fact(REPO_ALPINE, "3.19")
    doc = dom(get(client, blob_url(REPO_ALPINE, fact.config_digest)))
    assert _facts_dl(doc)["Media type"].text == fact.config_media_type
    [tr] = doc.one("tbody").find_all("tr")
    assert tr.find_all("td")[1].text == "config"
    assert {a.text for a in tr.find_all("td")[2].find_all("a")} == set(seeded.tags[REPO_ALPINE])


def test_blob__download_streams_the_bytes_of_the_digest(client, seeded) -> None:
    fact = seeded.fact(REPO_MULTI, "2.0").children[1]
    digest = fact.layer_digests[0]
    response = client.get(f"/r/{REPO_MULTI}/-/blobs/{digest}/download")
    assert response.status_code == 200
    data = b"".join(response.streaming_content)
    assert len(data) == fact.layer_sizes[0]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    assert response["Content-Type"] == "application/octet-stream"
    # Named after the repository, the digest and what the blob is: a gzip layer is a .tar.gz.
    assert f'filename="acme_multi-{digest[7:19]}.tar.gz"' in response["Content-Disposition"]
    assert f"filename*=UTF-8''acme_multi-{digest[7:19]}.tar.gz" in response["Content-Disposition"]


def _download_name(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    b"".join(response.streaming_content)
    disposition = response["Content-Disposition"]
    plain = re.search(r'filename="([^"]+)"', disposition)[1]
    assert f"filename*=UTF-8''{quote(plain, safe='')}" in disposition  # RFC 6266: both forms, the same name
    return plain


def test_blob__download_names_say_what_the_blob_is__never_dot_blob(client, seeded) -> None:
    fact = seeded.fact(REPO_WEB, "1.10.0")
    layer, config = fact.layer_digests[0], fact.config_digest
    base = f"/r/{REPO_WEB}/-/blobs"
    # The blob page's link says the media type; without it the first bytes do.
    page = dom(get(client, blob_url(REPO_WEB, config)))
    assert _download_name(client, _facts_dl(page)["Download"].one("a").attrs["href"]) == f"acme_web-{config[7:19]}.json"
    assert _download_name(client, f"{base}/{config}/download") == f"acme_web-{config[7:19]}.json"
    assert _download_name(client, f"{base}/{layer}/download") == f"acme_web-{layer[7:19]}.tar.gz"
    for media_type, extension in (("application/vnd.oci.image.layer.v1.tar", ".tar"),
                                  ("application/vnd.oci.image.layer.v1.tar+zstd", ".tar.zst"),
                                  ("application/vnd.docker.image.rootfs.diff.tar.gzip", ".tar.gz"),
                                  ("application/vnd.oci.image.config.v1+json", ".json")):
        url = f"{base}/{layer}/download?type={quote(media_type)}"
        assert _download_name(client, url) == f"acme_web-{layer[7:19]}{extension}", media_type
    # Whatever the link says, the name stays a safe file name of a known extension.
    hostile = _download_name(client, f"{base}/{layer}/download?type=" + quote('x/"; evil=1.exe'))
    assert hostile == f"acme_web-{layer[7:19]}.tar.gz"
    chart = seeded.fact(REPO_CHART, "0.1.0")
    assert _download_name(client, f"/r/{REPO_CHART}/-/blobs/{chart.config_digest}/download") == \
        f"acme_charts_mychart-{chart.config_digest[7:19]}.json"


def test_blob__download_name__from_the_index_when_it_knows_the_media_type(client, seeded) -> None:
    index(REPO_MULTI)
    fact = seeded.fact(REPO_MULTI, "legacy-list").children[0]
    layer = fact.layer_digests[0]
    assert fact.layer_media_types[0] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    # The index's media type wins over the link's.
    url = f"/r/{REPO_MULTI}/-/blobs/{layer}/download?type=application/json"
    assert _download_name(client, url) == f"acme_multi-{layer[7:19]}.tar.gz"


def test_blob__download_filename__sanitised_whatever_the_name() -> None:
    from dashboard.browse.live import blob_filename, content_disposition

    digest = "sha256:" + "ab" * 32
    assert blob_filename("a/b.c/d-e_f", digest, "", b"\x00") == "a_b.c_d-e_f-abababababab.bin"
    assert blob_filename("../../etc", digest, "", b"ustar") == "etc-abababababab.bin"
    header = content_disposition('bad"name\r\n.json')
    assert "\r" not in header and "\n" not in header and header.count('"') == 2
    assert header.startswith('attachment; filename="bad_name_.json"; filename*=UTF-8\'\'bad%22name%0D%0A.json')


# -- bad content ---# -- bad content --------------------------------------------------------------------------


def test_bad_config__repository_and_manifest_render_with_a_note(client, seeded) -> None:
    fact = seeded.fact(REPO_BAD_CONFIG, "latest")
    doc = dom(get(client, repo_url(REPO_BAD_CONFIG, "details=1")))
    tr = rows(doc)["latest"]
    assert "not valid JSON" in tr.one("div", cls="problem").text
    assert tr.one("td", cls="digest").one("a").attrs["title"] == fact.digest
    page = dom(get(client, manifest_url(REPO_BAD_CONFIG, "latest")))
    assert "not valid JSON" in page.one("p", cls="problem").text
    assert {a.attrs["href"] for a in page.find_all("a")} >= {blob_url(REPO_BAD_CONFIG, d) for d in fact.layer_digests}
    get(client, repo_url(REPO_BAD_CONFIG), htmx=True)
    get(client, blob_url(REPO_BAD_CONFIG, fact.config_digest))


def test_bad_mediatype__repository_and_manifest_render_with_a_note(client, seeded) -> None:
    fact = seeded.fact(REPO_BAD_MEDIATYPE, "v1")
    doc = dom(get(client, repo_url(REPO_BAD_MEDIATYPE, "details=1")))
    assert rows(doc)["v1"].one("span", cls="chip").text == "artifact"
    page = dom(get(client, manifest_url(REPO_BAD_MEDIATYPE, "v1")))
    note = page.one("p", cls="problem").text
    assert fact.config_media_type in note and "not an image config" in note
    assert page.one("div", cls="page-head").one("span", cls="chip").text == "artifact"
    get(client, blob_url(REPO_BAD_MEDIATYPE, fact.config_digest))


# -- errors -------------------------------------------------------------------------------

INVALID_URLS = [
    "/r/UPPER/",
    "/r/a..b/",
    "/r/acme/web./",
    "/r/-leading/",
    "/r/UPPER/-/manifests/latest/",
    "/r/acme/web/-/manifests/bad!tag/",
    "/r/acme/web/-/manifests/.hidden/",
    "/r/acme/web/-/manifests/" + "t" * 129 + "/",
    "/r/acme/web/-/manifests/sha256:abc/",
    "/r/acme/web/-/manifests/sha256:" + "A" * 64 + "/",
    "/r/acme/web/-/manifests/md5:" + "a" * 32 + "/",
    "/r/acme/web/-/blobs/latest/",
    "/r/acme/web/-/blobs/sha256:xyz/",
    "/r/acme/web/-/blobs/sha256:xyz/download",
    "/r/a..b/-/blobs/sha256:" + "a" * 64 + "/",
]


@pytest.mark.parametrize("url", INVALID_URLS)
def test_errors__invalid_name_tag_or_digest_is_404_before_any_registry_call(client, dashboard, configure, url) -> None:
    # Nothing listens here: a registry call would turn the page into a 502.
    configure(REGISTRY_URL=f"http://127.0.0.1:{closed_port()}")
    response = client.get(url)
    assert response.status_code == 404, (url, response.status_code, response.content[:1000])
    body = response.content.decode()
    assert "connection refused" not in body
    assert "Traceback" not in body
    assert "Not a valid name" in body or "Page not found" in body


def test_errors__unknown_url_is_a_404_page(client, dashboard) -> None:
    response = get(client, "/nothing/here/", status=404)
    assert "There is no page at this address." in response.content.decode()


def test_errors__unknown_repository_is_404_naming_it(client, dashboard) -> None:
    for url in (repo_url("nope/nothing"), repo_url("nope/nothing", "details=1")):
        response = get(client, url, status=404)
        doc = dom(response)
        assert doc.one("h1").text == "Repository not found"
        assert "nope/nothing" in doc.one("main").text
    partial = get(client, repo_url("nope/nothing"), htmx=True, status=404).content.decode()
    assert "<html" not in partial and "Repository not found" in partial


def test_errors__unknown_tag_is_404_naming_it(client, dashboard) -> None:
    doc = dom(get(client, manifest_url(REPO_WEB, "no-such-tag"), status=404))
    assert doc.one("h1").text == "Manifest not found"
    assert "no-such-tag" in doc.one("main").text


def test_errors__unknown_digest_is_404_naming_it(client, dashboard) -> None:
    missing = "sha256:" + hashlib.sha256(b"never pushed").hexdigest()
    doc = dom(get(client, manifest_url(REPO_WEB, missing), status=404))
    assert doc.one("h1").text == "Manifest not found"
    assert missing in doc.one("main").text
    for url in (blob_url(REPO_WEB, missing), f"/r/{REPO_WEB}/-/blobs/{missing}/download"):
        doc = dom(get(client, url, status=404))
        assert doc.one("h1").text == "Blob not found"
        assert missing in doc.one("main").text


def test_errors__deleted_manifest_is_404(client, seeded) -> None:
    doc = dom(get(client, manifest_url(seeded.gone_repo, seeded.gone_digest), status=404))
    assert doc.one("h1").text == "Manifest not found"


@pytest.mark.parametrize("url,htmx", [
    ("/", False), ("/?counts=1", False), ("/?counts=1", True), ("/?q=acme", False),
    (f"/r/{REPO_WEB}/", False), (f"/r/{REPO_WEB}/", True), (f"/r/{REPO_WEB}/?details=1", False),
    (f"/r/{REPO_WEB}/?sort=size", False), (f"/r/{REPO_WEB}/-/manifests/1.10.0/", False),
    (f"/r/{REPO_WEB}/-/manifests/sha256:{'a' * 64}/", False),
    (f"/r/{REPO_WEB}/-/blobs/sha256:{'a' * 64}/", False),
    (f"/r/{REPO_WEB}/-/blobs/sha256:{'a' * 64}/download", False),
])
def test_errors__registry_unreachable_every_page_is_502_with_an_explanation(client, dashboard, configure,
                                                                           url, htmx) -> None:
    port = closed_port()
    configure(REGISTRY_URL=f"http://127.0.0.1:{port}")
    response = client.get(url, headers=HTMX if htmx else None)
    assert response.status_code == 502, (url, response.status_code)
    body = response.content.decode()
    assert f"connection refused at http://127.0.0.1:{port} — is the registry running?" in body
    assert "Traceback" not in body and "urllib3" not in body and "HTTPConnectionPool" not in body
    assert ("<html" in body) is not htmx
    assert "The registry cannot be reached" in body


@pytest.mark.parametrize("url", ["/", f"/r/{REPO_WEB}/", f"/r/{REPO_WEB}/-/manifests/1.10.0/",
                                 f"/r/{REPO_WEB}/-/blobs/sha256:{'a' * 64}/",
                                 f"/r/{REPO_WEB}/-/blobs/sha256:{'a' * 64}/download"])
def test_errors__post_is_405(client, dashboard, url) -> None:
    # Signed in: an anonymous POST is sent to sign in before any method check.
    signed_in(client, "vera", "maintainer")
    assert client.post(url, {"x": "1"}).status_code == 405


def test_error__missing_tag_page_links_back_to_its_repository(client, dashboard) -> None:
    response = client.get("/r/acme/web/-/manifests/no-such-tag/")
    body = response.content.decode()
    assert response.status_code == 404
    assert "there is no tag “no-such-tag” in acme/web" in body
    assert 'href="/r/acme/web/"' in body
