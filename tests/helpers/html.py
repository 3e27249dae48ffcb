"""The one HTML reader of the tests: a small DOM on the standard library's parser.

doc = dom(response)                      # a Django test response, or bytes, or str
doc.one("table", cls="tags")             # exactly one match, else the test fails
doc.find_all("tr", cls="tag-row", data_tag="1.0")   # data_tag -> data-tag
doc.find(...), node.text, node.attrs, node.classes, node.iter()
elements(response)                       # every element as (tag, attrs), in document order
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.http import HttpResponse

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None = None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if n is not self
            and (tag is None or n.tag == tag)
            and (cls is None or cls in n.classes)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node | None:
        found = self.find_all(tag, cls, **attrs)
        return found[0] if found else None

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert len(found) == 1, f"expected one <{tag} class={cls} {attrs}>, found {len(found)}"
        return found[0]

    @property
    def text(self) -> str:
        """Visible text with whitespace collapsed (non-breaking spaces kept as they are)."""
        parts: list[str] = []
        for n in self.children:
            parts.append(n.text if isinstance(n, Node) else n)
        return re.sub(r"[ \t\r\n]+", " ", "".join(parts)).strip()

    def __repr__(self) -> str:
        return f"<{self.tag} {self.attrs}>"


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}, self.stack[-1]))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def dom(page: HttpResponse | bytes | str) -> Node:
    """The document tree of a Django test response (or of its bytes or text)."""
    if not isinstance(page, bytes | str):
        page = page.content
    builder = _Builder()
    builder.feed(page.decode() if isinstance(page, bytes) else page)
    builder.close()
    return builder.root


def elements(page: HttpResponse | bytes | str) -> list[tuple[str, dict[str, str]]]:
    """Every element of the page as (tag, attributes), in document order."""
    return [(node.tag, node.attrs) for node in dom(page).iter() if node.parent is not None]
