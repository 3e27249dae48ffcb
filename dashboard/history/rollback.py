"""A tag's history of digests, and putting a tag back on an earlier one.

The history comes from the index (TagHistory); what the registry holds is always read live: the
tag's current digest with a HEAD, and whether each earlier manifest still exists with a HEAD by
digest. A roll back re-pushes the earlier manifest's own bytes under the tag (the registry
verifies them against their digest, and refuses if their layers are gone), so nothing new is
created: the tag simply names an image the registry already has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.paginator import Page
from django.db import transaction
from django.db.models import Q, QuerySet

from .. import remote
from ..index import store
from ..models import IndexedManifest, IndexedTag, Rollback, TagHistory
from ..registry import errors as e
from ..registry.client import run_bounded
from ..web import page_of

HISTORY_PAGE_SIZE = 50
# Beyond this many tags, listing the tags of a digest live (one HEAD each) would hold the page
# for seconds; the index answers instead, and the page says so.
LIVE_TAG_LIMIT = 200


class TagMoved(Exception):
    """The tag no longer points where the user saw it: nothing was changed, ask again."""

    status = 409

    def __init__(self, tag: str, current: str) -> None:
        now = f"now points at {current.split(':', 1)[-1][:12]}" if current else "no longer exists"
        super().__init__(f"“{tag}” {now}, not at the image you saw. Nothing was changed: check what the roll back "
                         "would do now and confirm again.")
        #: Where it points now ("" when the tag is gone).
        self.current = current


class TargetGone(Exception):
    """The manifest to roll back to is no longer in the registry: nothing was changed."""

    status = 410

    def __init__(self, digest: str) -> None:
        super().__init__(f"The manifest {digest.split(':', 1)[-1][:12]} is no longer in the registry (deleted, or "
                         "removed by garbage collection): there is nothing to roll back to. Nothing was changed.")


class NotConfirmed(e.RegistryError):
    """The registry accepted the push of the tag, but reading the tag back shows something else."""

    def __init__(self, tag: str, to: str, answered: str) -> None:
        super().__init__(f"the registry accepted the push of “{tag}”, but reading it back {answered}, not "
                         f"{to.split(':', 1)[-1][:12]}: the roll back did not take effect")


def _read_back(name: str, tag: str) -> tuple[str, str]:
    """The tag's digest as the registry serves it now (its manifest, not only a HEAD), and what
    it answered, as a phrase for NotConfirmed."""
    try:
        digest = remote.client().manifest_bytes(name, tag)[2]
    except e.RegistryError as exc:
        return "", f"answered: {exc}"
    return digest, f"gives {digest.split(':', 1)[-1][:12]}"


class NotInHistory(Exception):
    """The digest was never this tag's, as far as the history knows: a roll back goes back, it
    does not re-tag arbitrary manifests."""


@dataclass(frozen=True)
class Presence:
    """Whether a manifest is in the registry now: True, False, or None with the reason."""

    exists: bool | None
    problem: str = ""


@dataclass(frozen=True)
class Entry:
    """One line of the history: the tag pointed at `digest` from `at` on."""

    digest: str
    at: datetime
    source: str
    source_label: str
    actor: str
    manifest: IndexedManifest | None
    presence: Presence
    current: bool
    #: The newest line naming this digest (the one that offers a roll back).
    newest_of_digest: bool

    @property
    def removed(self) -> bool:
        return not self.digest

    @property
    def can_roll_back(self) -> bool:
        return bool(self.digest) and not self.current and self.newest_of_digest and self.presence.exists is True


@dataclass(frozen=True)
class TagState:
    """What the registry says the tag is now, and what the index knows about it."""

    name: str
    tag: str
    #: The live digest ("" when the registry has no such tag now).
    current: str
    current_manifest: IndexedManifest | None
    indexed: IndexedTag | None

    @property
    def index_disagrees(self) -> bool:
        return self.indexed is not None and self.indexed.digest != self.current


@dataclass(frozen=True)
class History:
    state: TagState
    page: Page
    entries: list[Entry]
    total: int


def _live_digest(name: str, tag: str) -> str:
    """The tag's digest now, or "" when the registry has no such tag (NameUnknown too)."""
    try:
        return remote.client().head_manifest(name, tag).digest
    except e.NotFound:
        return ""


def _history_rows(name: str, tag: str) -> QuerySet[TagHistory]:
    return TagHistory.objects.filter(repository=name, tag=tag).order_by("-at", "-id")


def _known_digest(name: str, tag: str) -> str:
    """The tag's digest now ("" when the registry has no such tag). Raises the registry's NotFound
    when neither the registry nor the history knows the tag: there is nothing to show. (A HEAD has
    no body to say whether the repository or the tag is missing; the tag list does.)"""
    current = _live_digest(name, tag)
    if not current and not _history_rows(name, tag).exists():
        remote.client().tags(name)
        remote.client().head_manifest(name, tag)
        raise e.ManifestUnknown(f"there is no tag “{tag}” in {name}")
    return current


def tag_state(name: str, tag: str) -> TagState:
    """The tag as the registry has it now (see _known_digest)."""
    current = _known_digest(name, tag)
    indexed = IndexedTag.objects.filter(repository__name=name, name=tag).first()
    manifest = IndexedManifest.objects.filter(digest=current).first() if current else None
    return TagState(name=name, tag=tag, current=current, current_manifest=manifest, indexed=indexed)


def presence(name: str, digests: list[str]) -> dict[str, Presence]:
    """Which of these manifests the registry still has, by one HEAD each (bounded)."""
    client = remote.client()
    answers = run_bounded(lambda d: client.head_manifest(name, d), digests, remote.concurrency())
    found: dict[str, Presence] = {}
    for digest, got in zip(digests, answers, strict=True):
        if isinstance(got, e.NotFound):
            found[digest] = Presence(False)
        elif isinstance(got, BaseException):
            found[digest] = Presence(None, str(got))
        else:
            found[digest] = Presence(True)
    return found


def history(name: str, tag: str, page_number: str | int | None = None) -> History:
    """The tag's digests, newest first, one page at a time; only the page's digests are checked live."""
    state = tag_state(name, tag)
    rows = _history_rows(name, tag)
    page = page_of(rows, HISTORY_PAGE_SIZE, page_number)
    lines = list(page.object_list)
    digests = sorted({r.digest for r in lines if r.digest})
    manifests = {mf.digest: mf for mf in IndexedManifest.objects.filter(digest__in=digests)}
    live = presence(name, [d for d in digests if d != state.current])
    if state.current:
        live[state.current] = Presence(True)
    # "Newest of its digest" across the whole history, not just this page: an older page must
    # not offer a roll back that the first page already offers.
    newer: set[str] = set()
    if lines and page.number > 1:
        first = lines[0]
        newer = set(rows.filter(Q(at__gt=first.at) | Q(at=first.at, id__gt=first.id))
                    .order_by().values_list("digest", flat=True).distinct())
    entries: list[Entry] = []
    for row in lines:
        newest = row.digest not in newer
        entries.append(Entry(
            digest=row.digest, at=row.at, source=row.source, source_label=row.get_source_display(),
            actor=row.actor, manifest=manifests.get(row.digest), presence=live.get(row.digest, Presence(None)),
            current=newest and bool(row.digest) and row.digest == state.current, newest_of_digest=newest))
        newer.add(row.digest)
    return History(state=state, page=page, entries=entries, total=page.paginator.count)


# -- the confirmation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Exactly what a roll back will change, for the confirmation page."""

    name: str
    tag: str
    to: str
    to_manifest: IndexedManifest | None
    #: False: the registry no longer has the target, so there is nothing to roll back to.
    to_exists: bool
    current: str
    current_manifest: IndexedManifest | None
    #: Other tags that point at the current digest (they stay), and at the target.
    current_siblings: list[str] = field(default_factory=list)
    to_siblings: list[str] = field(default_factory=list)
    #: Where the sibling lists come from: "live" or "index".
    siblings_from: str = "live"

    @property
    def no_change(self) -> bool:
        return self.to == self.current


def _siblings(name: str, tag: str, digests: list[str]) -> tuple[dict[str, list[str]], str]:
    """The other tags on each digest: read live for a small repository, else from the index."""
    wanted = [d for d in digests if d]
    try:
        tags = remote.client().tags(name)
    except e.NotFound:
        tags = []
    if len(tags) <= LIVE_TAG_LIMIT:
        others = [t for t in tags if t != tag]
        refs = run_bounded(lambda t: remote.client().head_manifest(name, t), others, remote.concurrency())
        found = {d: sorted(t for t, r in zip(others, refs, strict=True)
                           if not isinstance(r, BaseException) and r.digest == d)
                 for d in wanted}
        return found, "live"
    rows = IndexedTag.objects.filter(repository__name=name, digest__in=wanted).exclude(name=tag)
    found = {d: [] for d in wanted}
    for t, d in rows.values_list("name", "digest"):
        found[d].append(t)
    return {d: sorted(ts) for d, ts in found.items()}, "index"


def plan(name: str, tag: str, to: str) -> Plan:
    """What rolling `tag` back to `to` would do, read live. The target's details come from the
    index, which learns the manifest here if it had not yet (it is confirmed to exist).
    Raises NotInHistory when the tag never pointed at `to`."""
    current = _known_digest(name, tag)
    if not TagHistory.objects.filter(repository=name, tag=tag, digest=to).exists():
        raise NotInHistory(to)
    to_exists = presence(name, [to])[to].exists is True
    known = [d for d in (to, current) if d and (d != to or to_exists)]
    if known:
        store.fetch_and_index(name, known)
    manifests = {mf.digest: mf for mf in IndexedManifest.objects.filter(digest__in=[to, current])}
    siblings, source = _siblings(name, tag, [to, current])
    return Plan(name=name, tag=tag, to=to, to_manifest=manifests.get(to), to_exists=to_exists, current=current,
                current_manifest=manifests.get(current), current_siblings=siblings.get(current, []),
                to_siblings=siblings.get(to, []), siblings_from=source)


# -- the roll back ------------------------------------------------------------------------------


def roll_back(user: AbstractBaseUser | AnonymousUser, name: str, tag: str, *, to: str, expected: str,
              address: str = "") -> Rollback | None:
    """Point `tag` at `to` again, if it still points at `expected` (what the user confirmed).

    Raises (and changes nothing) NotInHistory when the tag never pointed at `to`, TagMoved when
    the tag points elsewhere now, TargetGone when the registry no longer has `to`, and the
    registry's own error when it refuses the write. Returns None when the tag already points at `to`.
    """
    if not TagHistory.objects.filter(repository=name, tag=tag, digest=to).exists():
        raise NotInHistory(to)
    client = remote.client()
    current = _live_digest(name, tag)
    if current != expected:
        raise TagMoved(tag, current)
    if current == to:
        return None
    try:
        raw, media_type, digest = client.manifest_bytes(name, to)
    except e.NotFound as exc:
        raise TargetGone(to) from exc
    # The bytes were verified against `to`, and put_manifest checks the registry stored them
    # under the same digest: the tag cannot end up on anything else.
    client.put_manifest(name, tag, raw, media_type)
    # Only what the registry answers afterwards counts as done (a proxy or a stale cache may
    # accept a push it does not serve).
    now, answered = _read_back(name, tag)
    if now != digest:
        raise NotConfirmed(tag, digest, answered)
    username = user.get_username()
    with transaction.atomic():
        record = Rollback.objects.create(
            user=user if user.is_authenticated else None, username=username, registry=remote.registry_url(),
            repository=name, tag=tag, from_digest=current, to_digest=digest)
        store.set_tags(name, {tag: digest}, source=TagHistory.Source.ROLLBACK, actor=username)
        # The registry reports this push as coming from the dashboard's User-Agent, which the
        # event endpoint drops; the feed shows it under the user's name instead.
        store.record_dashboard_event("push", name, tag=tag, digest=digest, actor=username, address=address,
                                     media_type=media_type)
    # Known digests cost one query here; an unknown one is fetched so the tag row links to it.
    store.fetch_and_index(name, [digest])
    return record
