"""The tag table's context, shared by the repository page and the pages that change its tags."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest, QueryDict

from .. import remote
from ..auth import can_delete
from ..index import store
from ..ordering import INDEXED_TAGS, LIVE_TAGS
from ..registry import kinds
from . import indexed, live

TAG_PAGE_SIZE = 100


def repository_context(request: HttpRequest, name: str, sort: str = "name", order: str = "",
                        detailed: bool = True, params: QueryDict | None = None,
                        in_index: bool | None = None, whole_page: bool = False) -> dict[str, object]:
    """The tag table's context: from the index when a sync has read the repository, else live.
    `params` (filters, page) default to those of the page the request came from, so a table
    re-rendered after an untag keeps what the user was looking at, and so do its links.
    `whole_page`: the page, not only its table (the filter's facets, the pull command)."""
    if params is None:
        origin = urlsplit(request.htmx.current_url or "").query if request.htmx else ""
        params = QueryDict(origin) if request.method != "GET" else request.GET
    if store.is_indexed(name) if in_index is None else in_index:
        page = indexed.tag_page(name, sort=sort, order=order, q=params.get("q", ""),
                                platform=params.get("platform", ""), kind=params.get("kind", ""),
                                page=params.get("page", 1), per_page=TAG_PAGE_SIZE)
        note = "" if page.tag_count else live.NO_TAGS
        # The filter and the page's pull command need the kinds; a re-rendered table does not.
        facets = indexed.facets(name) if whole_page else None
        tool = kinds.repository_pull_tool(facets.kinds) if facets else kinds.DOCKER
        return {"name": name, "indexed": True, "facets": facets, "pull_tool": tool,
                "view": page, "tagpage": page, "rows": page.rows, "tagquery": params,
                "sort": page.sort, "order": page.order, "note": note, "freshness": indexed.freshness(name),
                **INDEXED_TAGS.next_orders(page.sort, page.order), **delete_context(request, name)}
    tags, note = live.repository_tags(name)
    view = live.resolve(name, tags) if detailed else live.names_only(name, tags)
    tool = kinds.repository_pull_tool({row.kind for row in view.rows}) if detailed else kinds.DOCKER
    # The page's names-only first paint offers docker; the details, arriving by htmx, correct it.
    return {"name": name, "view": view, "pull_tool": tool, "counts": live.count_tags(tags),
            "pull_oob": detailed and tool != kinds.DOCKER and bool(request.htmx),
            "rows": live.sort_rows(view.rows, sort, order), "sort": sort,
            "order": LIVE_TAGS.order(sort, order), "note": note, "tagquery": params,
            **LIVE_TAGS.next_orders(sort, order), **delete_context(request, name, probe=detailed)}


def delete_context(request: HttpRequest, name: str, probe: bool = True) -> dict[str, object]:
    """May this user delete here, and does the registry allow it (with the reason if not)."""
    allowed = can_delete(request)
    return {"can_delete": allowed, "deletable": allowed and probe,
            "support": remote.delete_support(name) if allowed and probe else None}
