"""How tags are ordered: version-aware (1.10 after 1.9, 1.0.0-rc.1 before 1.0.0, names like
`latest` first), the same in Python and in the database."""

from __future__ import annotations

import re

from django.db import connection
from django.db.models import F
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



# -- ordering text the same way on every database --------------------------------------------


def c_order(expression: str | Combinable) -> Combinable:
    """`expression` compared byte by byte. PostgreSQL follows the database's collation, which
    ignores the spaces and punctuation `version_key` is made of; SQLite already compares bytes."""
    expr = F(expression) if isinstance(expression, str) else expression
    return Collate(expr, "C") if connection.vendor == "postgresql" else expr


