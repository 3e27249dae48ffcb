"""Reading the dashboard's pages with Django's test client: URLs, requests, and what a page lists."""

from __future__ import annotations

import json
import socket
from datetime import datetime
from typing import TYPE_CHECKING

import requests

from testbed import Kind, SeededRegistry
from testbed.seed import ManifestFact
from tests.helpers.html import Node

if TYPE_CHECKING:
    from django.contrib.auth.models import User

HTMX = {"HX-Request": "true"}
# What the seed meant each manifest to be -> the label a user reads in the kind chip.
KIND_LABEL = {
    Kind.IMAGE: "image",
    Kind.INDEX: "multi-arch",
    Kind.MANIFEST_LIST: "multi-arch",
    Kind.HELM_CHART: "helm chart",
    Kind.ARTIFACT: "artifact",
}


def get(client, url: str, *, htmx: bool = False, status: int = 200):
    response = client.get(url, headers=HTMX if htmx else None)
    assert response.status_code == status, (url, response.status_code, response.content[:2000])
    return response


def repo_url(name: str, query: str = "") -> str:
    return f"/r/{name}/" + (f"?{query}" if query else "")


def manifest_url(name: str, ref: str) -> str:
    return f"/r/{name}/-/manifests/{ref}/"


def blob_url(name: str, digest: str) -> str:
    return f"/r/{name}/-/blobs/{digest}/"


def index(*names: str) -> None:
    """What a sync does for these repositories: their tags, manifests and configs into the index."""
    from dashboard.index.sync import sync_repository

    for name in names:
        result = sync_repository(name)
        assert not result.problem, (name, result.problem)


def after(doc: Node, heading: str, tag: str, cls: str | None = None) -> Node:
    """The first <tag> after the heading that reads ``heading``, in document order."""
    seen = False
    for node in doc.iter():
        if node.tag in ("h1", "h2", "h3") and node.text == heading:
            seen = True
        elif seen and node.tag == tag and (cls is None or cls in node.classes):
            return node
    raise AssertionError(f"no <{tag}> after “{heading}”")


def catalog_order(repos, catalog=None) -> list[str]:
    """The catalog's order: by namespace, so each namespace's repositories stand together, and a
    namespace of 20 repositories or more in the whole `catalog` (default: `repos`), which the page
    folds, after the others."""
    repos = list(repos)
    namespaces = [n.rpartition("/")[0] for n in (repos if catalog is None else catalog)]
    folded = {ns for ns in namespaces if ns and namespaces.count(ns) >= 20}
    return sorted(repos, key=lambda n: (n.rpartition("/")[0] in folded, n.rpartition("/")[0], n))


def rows(doc: Node) -> dict[str, Node]:
    return {tr.attrs["data-tag"]: tr for tr in doc.find_all("tr", cls="tag-row")}


def row_order(doc: Node) -> list[str]:
    return [tr.attrs["data-tag"] for tr in doc.find_all("tr", cls="tag-row")]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def facts_of(seeded, repo: str) -> dict[str, ManifestFact]:
    """Every manifest of a repository that a user can reach: tagged ones and their children."""
    out: dict[str, ManifestFact] = {}
    stack = [seeded.manifests[d] for d in seeded.tags[repo].values()]
    while stack:
        fact = stack.pop()
        out[fact.digest] = fact
        stack.extend(fact.children)
    return out


def registry_json(registry: SeededRegistry, path: str, accept: str = "") -> dict:
    r = requests.get(f"{registry.url}{path}", headers={"Accept": accept} if accept else {}, timeout=10)
    assert r.status_code == 200, (path, r.status_code)
    return json.loads(r.content)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plain_tags(seeded, repo: str) -> list[str]:
    attached = {a.tag for a in seeded.attachments if a.repo == repo}
    return [t for t in seeded.tags[repo] if t not in attached]


def tag_count_text(seeded, repo: str) -> str:
    """What the catalog (and storage, search) say of a repository's tags: its tags, and apart from
    them its attachment tags, as the repository page counts them."""
    n = len(plain_tags(seeded, repo))
    attached = len(seeded.tags[repo]) - n
    if not n + attached:
        return "no tags"
    return f"{n} + {attached} attachment tag{'s' if attached > 1 else ''}" if attached else str(n)


def signed_in(client, username: str, group: str, *, password: str | None = None) -> User:
    """A new user in `group` ("viewer", "maintainer"), signed in on Django's test client."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username, password=password)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return user
