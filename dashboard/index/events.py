"""Registry notifications: what /-/events/ stores, and the index work push and delete events
cause, done afterwards by the task worker.

The registry sends its envelopes one at a time per endpoint, waits for each answer, and retries
a failed one forever while everything behind it waits: so the endpoint only validates, stores
and answers, and `apply_pending` does the registry reads later.

Several processes may run `apply_pending` at once (every push enqueues it). Each event is
claimed with a conditional UPDATE (`applied` False → True) so one process applies it; a claimed
event whose work failed is put back. Events claimed by different processes may still finish out
of order, so a tag change is skipped when the index already holds a later change of that tag
made by an event (TagHistory), and a manifest delete is skipped when the same manifest was
pushed again later. The store's writes are idempotent, so work repeated after a crash is
harmless; work lost in a crash (claimed, never finished) is what the next sync catches up.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Case, DateTimeField, F, Q, Value, When
from django.tasks import task
from django.utils import timezone

from .. import remote
from ..models import IndexedBlob, IndexedRepository, IndexedTag, ManifestChild, RegistryEvent, TagHistory
from ..registry import errors as e
from ..registry import models as m
from ..registry.names import is_digest, is_name, is_tag
from ..registry.parse import parse_time
from . import store, sync

log = logging.getLogger(__name__)

#: 2.8 sends v1, 3.x v2; a relay or a hand-made test may say plain JSON.
ENVELOPE_TYPES = frozenset({
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
})
#: A few thousand events; 2.8 and 3.x send one or a handful per envelope.
MAX_BODY = 2 * 1024 * 1024
#: Reads of the registry per event before the event is given up (the next sync catches up).
MAX_ATTEMPTS = 5
#: The wait before the second attempt, doubled after each (30 s … 4 min: about 7 minutes in
#: all), however many events arrive meanwhile and run the worker.
RETRY_DELAY = timedelta(seconds=30)
#: `docker pull` is HEAD by tag, GET by digest, and for a multi-arch image GET of the
#: platform's manifest: three pull events for one pull, seconds apart.
SAME_PULL_WINDOW = timedelta(seconds=60)
#: A registry clock far ahead would make its events newer than every later one.
FUTURE_SLACK = timedelta(minutes=5)
#: Pending events one pass may put back (registry unreachable) before it stops trying.
MAX_PUT_BACK = 500
BATCH = 200

MANIFEST_MEDIA_TYPES = frozenset(m.MANIFEST_TYPES) | {
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
}

_KNOWN_ACTIONS = frozenset(RegistryEvent.Action.values)
# The registry's ids are UUIDs; anything printable and short will do as a key.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=-]{0,99}")
# Control characters: PostgreSQL refuses NUL in text and JSON, and none belongs in a log line.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class EnvelopeError(ValueError):
    """The body is not an event envelope; the message says why, in a few words."""


@dataclass
class Received:
    """What one envelope brought: stored events, and why the others were not stored."""

    stored: int = 0
    duplicates: int = 0
    #: Follow-up requests of a pull already stored (docker's GET by digest after HEAD by tag).
    merged: int = 0
    #: The dashboard's own requests (see _classify).
    own_requests: int = 0
    blobs: int = 0
    unknown_actions: int = 0
    invalid: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Event:
    event_id: str
    action: str
    repository: str
    tag: str
    digest: str
    media_type: str
    size: int | None
    actor: str
    address: str
    user_agent: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> RegistryEvent:
        return RegistryEvent(**asdict(self), source=RegistryEvent.Source.REGISTRY,
                             applied=self.action == RegistryEvent.Action.PULL)


# -- the endpoint ------------------------------------------------------------------------------


def parse_envelope(body: bytes) -> list[Any]:
    """The envelope's events (each still unchecked), or EnvelopeError."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError("the body is not JSON") from exc
    if not isinstance(doc, dict):
        raise EnvelopeError("an envelope is a JSON object with an “events” list")
    # 2.8 leaves out an empty list ("omitempty").
    events = doc.get("events")
    if events is None:
        return []
    if not isinstance(events, list):
        raise EnvelopeError("“events” must be a list")
    return events


def receive(events: list[Any]) -> Received:
    """Store an envelope's events: pulls counted at once, pushes and deletes left for the worker.

    Idempotent by event id, as the registry resends an envelope until it gets a 2xx.
    """
    got = Received()
    now = timezone.now()
    accepted: dict[str, _Event] = {}
    for raw in events:
        item = _classify(raw, now)
        if isinstance(item, str):
            setattr(got, item, getattr(got, item) + 1)
        elif item.event_id in accepted:
            got.duplicates += 1
        else:
            accepted[item.event_id] = item
    blob_deletes = _blob_deletes([i for i in accepted.values() if i.action == "delete" and i.digest and not i.tag])
    for event_id in blob_deletes:
        del accepted[event_id]
    got.blobs += len(blob_deletes)
    if not accepted:
        return got
    ids = list(accepted)
    seen = {found for i in range(0, len(ids), 500) for found in RegistryEvent.objects.filter(
        event_id__in=ids[i:i + 500]).values_list("event_id", flat=True)}
    got.duplicates += len(seen)
    kept: list[_Event] = []
    pulls: list[_Event] = []
    for item in accepted.values():
        if item.event_id in seen:
            continue
        if item.action == "pull":
            if not item.tag and _same_pull(item, pulls):
                got.merged += 1
                continue
            pulls.append(item)
        kept.append(item)
    if not kept:
        return got
    # Reads above, writes only in here: on SQLite a transaction that reads first and writes
    # later fails at once ("database is locked") when the worker writes meanwhile.
    with transaction.atomic():
        RegistryEvent.objects.bulk_create([i.row() for i in kept], ignore_conflicts=True)
        _count_pulls(pulls)
        if any(i.action != "pull" for i in kept):
            transaction.on_commit(_enqueue_apply)
    got.stored = len(kept)
    return got


def _text(value: Any, limit: int) -> str:
    return _CONTROL_RE.sub("", value)[:limit] if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_blob(action: str, target: dict[str, Any]) -> bool:
    """Layer and config events: the index learns blobs from manifests, not from these."""
    if action == "mount":
        return True
    url = target.get("url")
    if isinstance(url, str) and url:
        if "/blobs/" in url:
            return True
        if "/manifests/" in url:
            return False
    media_type = target.get("mediaType")
    return isinstance(media_type, str) and bool(media_type) and media_type not in MANIFEST_MEDIA_TYPES


def _host(addr: str) -> str:
    """The client's address without its port (each connection has another)."""
    if addr.startswith("["):
        return addr[1:].partition("]")[0]
    if addr.count(":") == 1:
        return addr.partition(":")[0]
    return addr


def _classify(raw: Any, now: datetime) -> _Event | str:
    """The event to store, or the Received counter it falls under."""
    if not isinstance(raw, dict):
        return "invalid"
    action = raw.get("action")
    if not isinstance(action, str) or not action:
        return "invalid"
    if action not in _KNOWN_ACTIONS:
        return "unknown_actions"
    target, request, source = _dict(raw.get("target")), _dict(raw.get("request")), _dict(raw.get("source"))
    if _is_blob(action, target):
        return "blobs"
    event_id, repository = raw.get("id"), target.get("repository")
    tag, digest = target.get("tag") or "", target.get("digest") or ""
    if not (isinstance(event_id, str) and _ID_RE.fullmatch(event_id)):
        return "invalid"
    if not (isinstance(repository, str) and is_name(repository)):
        return "invalid"
    if not isinstance(tag, str) or (tag and not is_tag(tag)):
        return "invalid"
    if not isinstance(digest, str) or (digest and not is_digest(digest)):
        return "invalid"
    if action in ("push", "pull") and not digest:
        return "invalid"
    user_agent = _text(request.get("useragent"), 300)
    # The registry reports the dashboard's own requests (remote.client()'s User-Agent) like anyone
    # else's: its reads as pulls (which must not count), its untag, delete, restore and roll back as
    # pushes and deletes, which the dashboard already wrote to the index and the feed itself under
    # the user's name (store.record_dashboard_event).
    if user_agent.startswith(remote.USER_AGENT_PREFIX):
        return "own_requests"
    at = parse_time(raw.get("timestamp"))
    if at is None or at > now + FUTURE_SLACK:
        at = now
    size = target.get("size", target.get("length"))
    addr = _text(request.get("addr"), 200)
    details = {key: value for key, value in {
        "request_id": _text(request.get("id"), 100),
        "method": _text(request.get("method"), 10),
        "host": _text(request.get("host"), 200),
        "addr": addr,
        "source_addr": _text(source.get("addr"), 200),
        "source_instance": _text(source.get("instanceID"), 100),
    }.items() if value}
    return _Event(
        event_id=event_id, action=action, repository=repository, tag=tag, digest=digest,
        media_type=_text(target.get("mediaType"), 200),
        size=size if isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 2**63 else None,
        actor=_text(_dict(raw.get("actor")).get("name"), 150), address=_text(_host(addr), 100),
        user_agent=user_agent, at=at, details=details)


def _blob_deletes(deletes: list[_Event]) -> set[str]:
    """Ids of the digest deletes that name a blob: the registry's delete event does not say
    whether a digest was a manifest or a blob, the index does when it knows the digest."""
    digests = sorted({i.digest for i in deletes})
    blobs = {found for i in range(0, len(digests), 500) for found in IndexedBlob.objects.filter(
        digest__in=digests[i:i + 500]).values_list("digest", flat=True)}
    if not blobs:
        return set()
    blobs -= store.known_digests(blobs)
    return {i.event_id for i in deletes if i.digest in blobs}


def _same_pull(item: _Event, earlier: list[_Event]) -> bool:
    """Is this by-digest pull the next request of a pull already stored (same client, same
    manifest or its index, moments before)?"""
    digests = {item.digest} | set(ManifestChild.objects.filter(digest=item.digest).values_list(
        "parent__digest", flat=True))
    since = item.at - SAME_PULL_WINDOW
    for other in earlier:
        if (other.repository == item.repository and other.address == item.address
                and other.user_agent == item.user_agent and other.digest in digests
                and since <= other.at <= item.at):
            return True
    return RegistryEvent.objects.filter(
        action=RegistryEvent.Action.PULL, repository=item.repository, address=item.address,
        user_agent=item.user_agent, digest__in=digests, at__gte=since, at__lte=item.at).exists()


def _count_pulls(pulls: Iterable[_Event]) -> None:
    """last_pulled_at and pull_count of the pulled tags: by tag, or every tag on a pulled digest."""
    pulled: dict[tuple[str, str, str], list[datetime]] = defaultdict(list)
    for pull in pulls:
        column, value = ("name", pull.tag) if pull.tag else ("digest", pull.digest)
        pulled[pull.repository, column, value].append(pull.at)
    for (repository, column, value), times in pulled.items():
        last = max(times)
        IndexedTag.objects.filter(repository__name=repository, **{column: value}).update(
            pull_count=F("pull_count") + len(times), last_pulled_at=Case(
                When(Q(last_pulled_at__isnull=True) | Q(last_pulled_at__lt=last), then=Value(last)),
                default=F("last_pulled_at"), output_field=DateTimeField()))


def _enqueue_apply() -> None:
    try:
        apply_events.enqueue()
    except Exception:  # the events are stored: the next enqueue or sync applies them
        log.exception("could not enqueue apply_events; the stored events wait for the next one")


# -- the worker --------------------------------------------------------------------------------

# Threads of one process (the test server's task threads, a threaded worker) take turns: on
# SQLite two writers at once would only wait on each other's lock.
_apply_lock = threading.Lock()


class _Retry(Exception):
    """The registry could not be read now; the event stays pending."""


@dataclass(frozen=True)
class _Outcome:
    finished: bool = False
    #: Put back for another attempt then.
    retry_at: datetime | None = None


def fresh_pending() -> bool:
    """Are push or delete events waiting for their first attempt? (Those put back wait for the
    retry that `_schedule_retry` enqueued.) One look at a partial index."""
    return RegistryEvent.objects.filter(
        applied=False, action__in=[RegistryEvent.Action.PUSH, RegistryEvent.Action.DELETE],
        details__retry_at__isnull=True).exists()


def apply_pending() -> int:
    """Apply the stored push and delete events to the index, oldest first; returns how many
    were finished (applied, skipped as outdated, or given up after MAX_ATTEMPTS)."""
    with _apply_lock:
        finished, put_back, retry_at = 0, set(), None
        while len(put_back) < MAX_PUT_BACK:
            batch = list(RegistryEvent.objects.filter(
                applied=False, action__in=[RegistryEvent.Action.PUSH, RegistryEvent.Action.DELETE],
            ).exclude(pk__in=put_back).order_by("at", "id")[:BATCH])
            if not batch:
                break
            now = timezone.now()
            pushed_into: set[str] = set()
            for event in batch:
                if _not_yet(event, now):
                    put_back.add(event.pk)
                    continue
                outcome = _apply_one(event)
                finished += outcome.finished
                if outcome.retry_at is not None:
                    put_back.add(event.pk)
                    retry_at = min(retry_at or outcome.retry_at, outcome.retry_at)
                elif event.action == RegistryEvent.Action.PUSH:
                    pushed_into.add(event.repository)
            # After the batch's own events, so their tags are in the history as the pushes they were.
            _index_new_repositories(pushed_into)
        # Events put back by an earlier pass already have their retry scheduled.
        if retry_at is not None:
            _schedule_retry(retry_at)
        return finished


def _apply_one(event: RegistryEvent) -> _Outcome:
    details = dict(event.details)
    try:
        # A registry read happens outside the transaction, which must stay short.
        gone = _repository_gone(event) if _is_repository_delete(event) else False
        with transaction.atomic():
            # The claim is the transaction's first statement. On SQLite it takes the write lock
            # at once (a transaction that reads first fails when the endpoint writes meanwhile,
            # "database is locked"); on PostgreSQL the row stays locked until the work commits,
            # so another process's claim waits and then finds it applied.
            if not RegistryEvent.objects.filter(pk=event.pk, applied=False).update(applied=True):
                return _Outcome()
            _apply_to_index(event, details, gone)
        if event.action == RegistryEvent.Action.PUSH:
            _fetch_pushed(event, details)
        details.pop("error", None)
        details.pop("retry_at", None)
    except Exception as exc:  # one bad event must not stop the rest
        if not isinstance(exc, (_Retry, e.RegistryError)):
            log.exception("applying registry event %s failed", event.event_id)
        attempts = int(details.get("attempts", 0)) + 1
        retry_at = timezone.now() + RETRY_DELAY * 2 ** (attempts - 1)
        details.update(attempts=attempts, error=str(exc)[:500], retry_at=retry_at.isoformat())
        if attempts < MAX_ATTEMPTS:
            RegistryEvent.objects.filter(pk=event.pk).update(applied=False, details=details)
            return _Outcome(retry_at=retry_at)
        details["gave_up"] = True
        details.pop("retry_at")
        log.warning("registry event %s given up after %d attempts: %s", event.event_id, attempts, exc)
        RegistryEvent.objects.filter(pk=event.pk).update(applied=True, details=details)
        return _Outcome(finished=True)
    RegistryEvent.objects.filter(pk=event.pk).update(details=details)
    return _Outcome(finished=True)


def _index_new_repositories(names: set[str]) -> None:
    """A push into a repository the index does not know (created by the push, or pushed to while
    the events did not arrive) indexes the whole repository at once: a single-repository sync
    (index.sync.sync_repositories), so its page reads the index, with every tag, and its storage
    and activity count it, without waiting for the next full sync. The event itself already put
    its tag and manifest in the index; this adds the tags it did not name and marks the
    repository known. A repository the registry no longer has is forgotten by the same read."""
    if not names:
        return
    known = set(IndexedRepository.objects.filter(name__in=names, synced_at__isnull=False).values_list(
        "name", flat=True))
    new = sorted(names - known)
    if not new:
        return
    try:
        results = sync.sync_repositories(new)
    except Exception:  # the pushes are applied; the next full sync indexes the rest
        log.exception("indexing the new repositories %s failed", ", ".join(new))
        return
    for result in results:
        if result.problem:
            log.warning("the new repository %s is indexed in part: %s (the next sync retries)", result.name,
                        result.problem)


def _not_yet(event: RegistryEvent, now: datetime) -> bool:
    retry_at = event.details.get("retry_at") if isinstance(event.details, dict) else None
    try:
        return bool(retry_at) and datetime.fromisoformat(retry_at) > now
    except (TypeError, ValueError):
        return False


def _is_repository_delete(event: RegistryEvent) -> bool:
    """3.x reports a deleted repository as a delete with neither tag nor digest."""
    return event.action == RegistryEvent.Action.DELETE and not event.tag and not event.digest


def _repository_gone(event: RegistryEvent) -> bool:
    """Confirmed by the registry before every tag of it is forgotten."""
    try:
        return not remote.client().tags(event.repository)
    except e.NotFound:
        return True


def _newer_tag_change(event: RegistryEvent) -> bool:
    return TagHistory.objects.filter(repository=event.repository, tag=event.tag,
                                     source=TagHistory.Source.EVENT, at__gt=event.at).exists()


def _later(event: RegistryEvent, action: str) -> bool:
    """Did the registry report this action on the same manifest after `event`?"""
    return RegistryEvent.objects.filter(action=action, repository=event.repository, digest=event.digest,
                                        at__gt=event.at).exists()


def _apply_to_index(event: RegistryEvent, details: dict[str, Any], repository_gone: bool) -> None:
    """The database part: tags moved or removed, manifests marked deleted."""
    who = {"source": TagHistory.Source.EVENT, "actor": event.actor, "at": event.at}
    if event.action == RegistryEvent.Action.PUSH:
        # Once per event: a retry (of the manifest read) must not undo what a later event did.
        if event.tag and not details.get("tag_applied"):
            if _newer_tag_change(event):
                details["outdated"] = True
            else:
                store.set_tags(event.repository, {event.tag: event.digest}, **who)
            details["tag_applied"] = True
    elif event.tag:
        if _newer_tag_change(event):
            details["outdated"] = True
        else:
            store.remove_tag(event.repository, event.tag, **who)
    elif event.digest:
        if _later(event, RegistryEvent.Action.PUSH):
            details["outdated"] = True
        else:
            store.remove_manifest(event.repository, event.digest, **who)
    elif repository_gone:
        store.remove_repository(event.repository)
    else:
        details["note"] = "the registry still lists tags of this repository"


def _fetch_pushed(event: RegistryEvent, details: dict[str, Any]) -> None:
    """The registry part of a push: read and index the manifest (the tag already shows)."""
    # Reading it now would put a deleted manifest back into the repository.
    if _later(event, RegistryEvent.Action.DELETE):
        details["note"] = "deleted again before it was indexed"
        return
    store.fetch_and_index(event.repository, [event.digest])
    if store.known_digests([event.digest]):
        return
    # fetch_and_index keeps its errors; one HEAD tells gone from unreachable.
    try:
        remote.client().head_manifest(event.repository, event.digest)
    except e.NotFound:
        details["note"] = "gone from the registry before it was indexed"
        return
    except e.RegistryError as exc:
        raise _Retry(f"the registry could not be read: {exc}") from exc
    raise _Retry("the manifest could not be read or indexed")


def _schedule_retry(when: datetime) -> None:
    try:
        if apply_events.get_backend().supports_defer:
            apply_events.using(run_after=when).enqueue()
    except Exception:  # the next event or sync retries them anyway
        log.exception("could not schedule a retry of the pending registry events")


@task
def apply_events() -> int:
    """The worker's task (`manage.py worker`): apply the events the endpoint stored."""
    return apply_pending()
