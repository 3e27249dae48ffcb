"""How tags are ordered: version-aware (1.10 after 1.9, 1.0.0-rc.1 before 1.0.0, names like
`latest` first), the same in Python and in the database; and how each table reads ?sort=&order=."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from django.db import connection
from django.db.models import Case, F, OrderBy, TextField, Value, When
from django.db.models.expressions import Combinable
from django.db.models.functions import Collate

# -- sorting -------------------------------------------------------------------------

_VERSION_RE = re.compile(r"v?(\d+(?:\.\d+)*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")
_CHUNK_RE = re.compile(r"(\d+)")


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in _CHUNK_RE.split(text) if p)


def version_key(tag: str) -> tuple:
    """Semver-aware: 1.10.0 after 1.9.0, 1.0.0-rc.1 before 1.0.0, names like latest first."""
    match = _VERSION_RE.fullmatch(tag)
    if not match:
        return (0, _natural(tag))
    numbers = tuple(int(n) for n in match.group(1).split("."))
    pre = match.group(2)
    return (1, numbers, 0 if pre else 1, _natural(pre or ""), tag)


def sort_by_name[T](items: Iterable[T], tag: Callable[[T], str], descending: bool) -> list[T]:
    """Names that are not versions (latest, main, stable) head the list either way: they are what
    people look for first; only the versions below them turn around."""
    keyed = [(version_key(tag(i)), i) for i in items]
    named = sorted((k for k in keyed if k[0][0] == 0), key=lambda k: k[0])
    versions = sorted((k for k in keyed if k[0][0] == 1), key=lambda k: k[0], reverse=descending)
    return [i for _, i in named + versions]


# -- the same order as a string the database sorts ------------------------------------------

# Numbers are zero-padded to this width; longer ones (a 25-digit build id) still sort by length.
_WIDTH = 20
# Below every character a tag may contain, so "1.2" + _SEP sorts before "1.2.0".
_SEP = " "


def _number(text: str) -> str:
    text = text.lstrip("0") or "0"
    if len(text) > _WIDTH:
        # Longer than the pad: a length prefix above any padded digit keeps the order.
        return "~" + str(len(text)).zfill(3) + text
    return text.zfill(_WIDTH)


def _natural_text(text: str) -> str:
    return _SEP.join(("0" + _number(p)) if p.isdigit() else ("1" + p) for p in _CHUNK_RE.split(text) if p)


def version_sort_key(tag: str) -> tuple[bool, str]:
    """(is it a version, a string whose order is version_key's order).

    A database sorts by this column as Python sorts by version_key: 1.10.0 after 1.9.0,
    1.0.0-rc.1 before 1.0.0; names that are not versions (latest, main) form their own group.
    """
    match = _VERSION_RE.fullmatch(tag)
    if not match:
        return False, _natural_text(tag)
    numbers = ".".join(_number(n) for n in match.group(1).split("."))
    pre = match.group(2)
    return True, f"{numbers}{_SEP}{'0' if pre else '1'}{_SEP}{_natural_text(pre or '')}{_SEP}{_SEP}{tag}"


def by_version(descending: bool) -> list[OrderBy]:
    """ORDER BY an indexed tag's `is_version`, `version_key`: version_key's order, or its reverse."""
    return [OrderBy(F("is_version"), descending=descending), OrderBy(c_order("version_key"), descending=descending)]


def by_name(descending: bool) -> list[OrderBy]:
    """ORDER BY an indexed tag as sort_by_name sorts: names that are not versions first either way."""
    if not descending:
        return by_version(False)
    names_first = Case(When(is_version=False, then=F("version_key")), default=Value(""), output_field=TextField())
    return [F("is_version").asc(), c_order(names_first).asc(), c_order("version_key").desc()]


# -- ordering text the same way on every database --------------------------------------------


def c_order(expression: str | Combinable) -> Combinable:
    """`expression` compared byte by byte. PostgreSQL follows the database's collation, which
    ignores the spaces and punctuation `version_key` is made of; SQLite already compares bytes."""
    expr = F(expression) if isinstance(expression, str) else expression
    return Collate(expr, "C") if connection.vendor == "postgresql" else expr


# -- ?sort=&order= --------------------------------------------------------------------------

ASC, DESC = "asc", "desc"


@dataclass(frozen=True)
class Columns:
    """A table's sortable columns: for each, whether a first click sorts it descending (newest,
    largest first); and the column a missing or unknown `?sort=` means."""

    descending: Mapping[str, bool]
    default: str

    def order(self, sort: str, order: str) -> str:
        """`order` if valid, else the column's first order (an unknown column's: the default's)."""
        if order in (ASC, DESC):
            return order
        return DESC if self.descending.get(sort, self.descending[self.default]) else ASC

    def parse(self, sort: str, order: str) -> tuple[str, str]:
        """A valid (column, order) from the query's `sort` and `order`."""
        sort = sort if sort in self.descending else self.default
        return sort, self.order(sort, order)

    def following(self, sort: str, order: str) -> dict[str, str]:
        """For each column, the order a click on its header asks for: the current column turns
        around, the others start at their first order."""
        current = self.order(sort, order)
        return {
            col: (ASC if current == DESC else DESC) if col == sort else self.order(col, "") for col in self.descending
        }

    def next_orders(self, sort: str, order: str) -> dict[str, str]:
        """`following` as the tag table reads it: `name_next`, `created_next`, …"""
        return {f"{col}_next": o for col, o in self.following(sort, order).items()}


#: A repository's tags, live and from the index (which sorts by platform and kind too). "image": by image.
LIVE_TAGS = Columns({"name": True, "created": True, "size": True, "image": True}, default="name")
INDEXED_TAGS = Columns(
    {"name": True, "created": True, "size": True, "platform": False, "kind": False, "image": True}, default="name"
)
#: The storage page's repositories, and one repository's tags.
STORAGE_REPOSITORIES = Columns(
    {"name": False, "total": True, "unique": True, "shared": True, "reclaimable": True}, default="total"
)
STORAGE_TAGS = Columns({"name": False, "total": True, "unique": True, "shared": True}, default="unique")
