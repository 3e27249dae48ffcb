"""The reconcile sync: make the index say what the registry says.

catalog → the tag list of each repository → one HEAD per tag → manifests (with an index's
children and image configs) fetched only for digests the index does not know. A resync with
nothing changed costs the catalog, the tag lists and one HEAD per tag, and nothing more.

- `request_sync()` (a request, the schedule) records a queued `SyncRun` and hands it to the task
  worker; `execute()` (the worker, `run_now()` for `manage.py sync`) runs it. Like garbage
  collection, the row is the lock and a dead worker's run is failed by whoever looks next
  (dashboard.runs).
- Resumable: repositories go in catalog order and `cursor` names the last one finished. A run
  after a failed one starts after that cursor and does the repositories before it at the end
  (a rotation), so the repositories the failed run never reached come first, and a run that
  succeeds has still read every repository itself: its finish time is a true "everything was
  read since then" for the pages that say how fresh they are.
- Network work runs in a bounded thread pool, database work in the calling thread (SQLite takes
  one writer, and a test's database is only visible to its own connection). While the calling
  thread writes one chunk of repositories, a producer thread already lists and HEADs the next,
  so 10,000 repositories cost 10,000 requests in flight `CONCURRENCY` at a time, not 10,000
  round trips in a row.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Q
from django.tasks import task
from django.utils import timezone

from .. import conf, remote, runs
from ..models import IndexedRepository, IndexedTag, SyncRun
from ..registry import errors as e
from ..registry import models as m
from . import store

log = logging.getLogger(__name__)

T = TypeVar("T")
State = SyncRun.State

#: Repositories whose tag lists are read together.
BATCH_REPOSITORIES = 64
#: A chunk (HEADed, fetched and written together, then progress is saved) holds at most this many
#: tags; a bigger repository is a chunk of its own.
BATCH_TAGS = 2000
#: Unknown manifests indexed together, and how many such batches are fetched ahead of the one
#: being indexed (the database work of one overlaps the network work of the next).
SUB_BATCH = 100
LOOKAHEAD = 2
#: Seconds between heartbeats while the calling thread waits for the network.
HEARTBEAT = 2.0
#: Per-repository problems kept in `details` (the count is always complete).
PROBLEM_LIMIT = 100
#: Finished runs looked at to find the last full one (a run for named repositories is not).
_LOOKBACK = 50

# The registry itself cannot be reached (or is overloaded): every further request would fail the
# same way, so the run stops and the next one resumes. Anything else is one repository's problem.
_FATAL = (e.RegistryUnreachable, e.RegistryTimeout, e.RegistryTLSError)
_FATAL_STATUS = frozenset({429, 502, 503, 504})


AlreadyRunning = runs.AlreadyRunning


class _Stop(Exception):
    """The registry failed as a whole at `name`: what came before it is written."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(str(error))
        self.name = name
        self.error = error


@dataclass(frozen=True)
class RepoResult:
    """What syncing one repository did."""

    name: str
    tags: int = 0
    heads: int = 0
    fetched: int = 0
    changed: int = 0
    problem: str = ""
    #: The registry no longer knows the repository: the index forgot it.
    removed: bool = False


def interval() -> float:
    """Seconds between scheduled syncs; 0: no schedule."""
    return max(0.0, conf.get().sync_interval)


def stale_seconds() -> float:
    return max(1.0, conf.get().sync_stale_seconds)


def is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, _FATAL) or (isinstance(exc, e.RegistryAPIError) and exc.status in _FATAL_STATUS)


# -- the network side (threads; never the database) -------------------------------------------------


@dataclass
class _Listed:
    """One repository as the registry answered: its tags, and what each tag's HEAD said."""

    name: str
    as_of: datetime
    tags: list[str] | None = None
    error: BaseException | None = None
    heads: dict[str, m.ManifestRef | BaseException] = field(default_factory=dict)


class _Net:
    """The bounded pool every registry request of one sync goes through, shared by the producer
    (tag lists, HEADs) and the fetches, so both together never exceed `CONCURRENCY`."""

    def __init__(self) -> None:
        self.workers = remote.concurrency()
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sync-net")
        self.client = remote.client()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T | BaseException]:
        def guarded() -> T | BaseException:
            try:
                return fn(*args)
            except e.RegistryError as exc:
                return exc

        return self.pool.submit(guarded)

    def windowed(self, fn: Callable[..., T], calls: list[tuple[Any, ...]]) -> list[T | BaseException]:
        """fn(*call) for each call, at most `workers` of them queued or in flight at once, so
        what the writer waits for (its fetches) never queues behind a whole batch of these."""
        free = threading.Semaphore(self.workers)
        futures = []
        for call in calls:
            free.acquire()
            future = self.submit(fn, *call)
            future.add_done_callback(lambda _: free.release())
            futures.append(future)
        return [f.result() for f in futures]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def list_tags(self, name: str) -> _Listed:
        as_of = timezone.now()  # before the read: a tag an event moves after this is newer than us
        try:
            return _Listed(name, as_of, tags=list(dict.fromkeys(self.client.tags(name))))
        except e.RegistryError as exc:
            return _Listed(name, as_of, error=exc)

    @staticmethod
    def fetch(name: str, digest: str) -> tuple[str, ...]:
        """A manifest and its image config into the digest cache (where `store.fetch` finds
        them); returns the manifests an index lists."""
        mf = remote.manifest_by_digest(name, digest)
        if mf.config is not None and mf.config.media_type in m.IMAGE_CONFIG_TYPES:
            remote.config_by_digest(name, mf.config.digest)
        return tuple(c.digest for c in mf.manifests)


def _chunks(listed: list[_Listed]) -> Iterator[list[_Listed]]:
    chunk: list[_Listed] = []
    size = 0
    for item in listed:
        n = len(item.tags or ())
        if chunk and size + n > BATCH_TAGS:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk


_DONE = object()


class _Producer(threading.Thread):
    """Lists tags and HEADs them, one chunk ahead of the writer."""

    def __init__(self, net: _Net, names: list[str]) -> None:
        super().__init__(name="sync-producer", daemon=True)
        self.net = net
        self.names = names
        self.out: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.stopped = threading.Event()

    def put(self, item: Any) -> None:
        while not self.stopped.is_set():
            try:
                self.out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        try:
            for i in range(0, len(self.names), BATCH_REPOSITORIES):
                group = self.names[i:i + BATCH_REPOSITORIES]
                listed = self.net.windowed(self.net.list_tags, [(name,) for name in group])
                for got in listed:
                    if not isinstance(got, _Listed):
                        raise got  # list_tags keeps registry errors: anything else is a bug
                for chunk in _chunks(listed):
                    if self.stopped.is_set():
                        return
                    pairs = [(item, tag) for item in chunk for tag in item.tags or ()]
                    heads = self.net.windowed(self.net.client.head_manifest, [(item.name, tag) for item, tag in pairs])
                    for (item, tag), head in zip(pairs, heads, strict=True):
                        item.heads[tag] = head
                    self.put(chunk)
            self.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the writer, which raises it
            self.put(exc)


# -- the database side (the calling thread) -----------------------------------------------------------


class _Engine:
    """Syncs repositories in order; `beat()` is called while it waits for the network and
    `after_chunk(results)` once each chunk is written."""

    def __init__(self, beat: Callable[[], None] = lambda: None) -> None:
        self.beat = beat

    def _wait(self, futures: list[Future[Any]]) -> None:
        pending = set(futures)
        while pending:
            _, pending = wait_futures(pending, timeout=HEARTBEAT)
            if pending:
                self.beat()

    def run(self, names: list[str], after_chunk: Callable[[list[RepoResult]], None]) -> None:
        """Raises _Stop when the registry fails as a whole (what came before is written)."""
        if not names:
            return
        net = _Net()
        producer = _Producer(net, names)
        producer.start()
        try:
            while True:
                try:
                    item = producer.out.get(timeout=HEARTBEAT)
                except queue.Empty:
                    self.beat()
                    continue
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                results: list[RepoResult] = []
                try:
                    self._write(net, item, results)
                finally:
                    if results:
                        after_chunk(results)
        finally:
            producer.stopped.set()
            net.close()

    def _children(self, net: _Net, name: str, children: set[str], seen: set[str]) -> None:
        """An index's manifests the index does not know yet (and theirs, to any depth) into the
        digest cache. A failure is left for `store.fetch`, which asks once more and says why."""
        todo = children - seen
        while todo:
            seen |= todo
            known = store.known_digests(todo)
            digests = sorted(todo - known)
            futures = [net.submit(net.fetch, name, d) for d in digests]
            self._wait(futures)
            todo = set()
            for future in futures:
                got = future.result()
                if not isinstance(got, BaseException):
                    todo.update(got)
            todo -= seen

    def _write(self, net: _Net, chunk: list[_Listed], results: list[RepoResult]) -> None:
        """Write a chunk, repository by repository. Unknown manifests are fetched in batches of
        SUB_BATCH, LOOKAHEAD batches ahead of the batch being indexed, so the database work of one
        batch overlaps the network work of the next ones."""
        digests = {h.digest for item in chunk for h in item.heads.values() if isinstance(h, m.ManifestRef)}
        known = store.known_digests(digests)
        stored: dict[str, dict[str, str]] = {}
        for repo, tag, digest in IndexedTag.objects.filter(
                repository__name__in=[item.name for item in chunk]).values_list("repository__name", "name", "digest"):
            stored.setdefault(repo, {})[tag] = digest
        # Each unknown digest is fetched once, by the first repository of the chunk that has it.
        claimed: set[str] = set()
        plan: list[tuple[_Listed, list[str]]] = []
        for item in chunk:
            mine = list(dict.fromkeys(h.digest for h in item.heads.values() if isinstance(h, m.ManifestRef)
                                      and h.digest not in known and h.digest not in claimed))
            claimed.update(mine)
            plan.extend((item, mine[i:i + SUB_BATCH]) for i in range(0, len(mine), SUB_BATCH))
        pending: dict[int, list[Future[Any]]] = {}

        def submit(i: int) -> None:
            if i < len(plan):
                pending[i] = [net.submit(net.fetch, plan[i][0].name, d) for d in plan[i][1]]

        for i in range(LOOKAHEAD):
            submit(i)
        failed: dict[str, BaseException] = {}
        seen = set(claimed)
        step = 0
        for item in chunk:
            fetched = 0
            indexed: set[str] = set()
            while step < len(plan) and plan[step][0] is item:
                batch = plan[step][1]
                futures = pending.pop(step)
                self._wait(futures)
                submit(step + LOOKAHEAD)
                step += 1
                children: set[str] = set()
                for digest, future in zip(batch, futures, strict=True):
                    got = future.result()
                    if isinstance(got, BaseException):
                        failed[digest] = got
                    else:
                        children.update(got)
                if any(is_fatal(failed[d]) for d in batch if d in failed):
                    break  # _one stops the run at this repository
                self._children(net, item.name, children, seen)
                ok = [d for d in batch if d not in failed]
                fetched += store.fetch_and_index(item.name, ok)
                indexed.update(ok)
            results.append(self._one(item, known, stored.get(item.name, {}), failed, fetched, indexed))

    def _one(self, item: _Listed, known: set[str], stored: dict[str, str], failed: dict[str, BaseException],
             fetched: int, indexed: set[str]) -> RepoResult:
        name = item.name
        if item.error is not None:
            if isinstance(item.error, e.NameUnknown):
                store.remove_repository(name)
                return RepoResult(name, removed=True)
            if is_fatal(item.error):
                raise _Stop(name, item.error)
            return RepoResult(name, problem=f"the tag list: {item.error}")
        tags: dict[str, str] = {}
        unread: list[str] = []
        for tag, head in item.heads.items():
            if isinstance(head, m.ManifestRef):
                tags[tag] = head.digest
            elif isinstance(head, e.ManifestUnknown):
                continue  # untagged between the list and the HEAD: gone, as a complete list says
            elif is_fatal(head):
                raise _Stop(name, head)
            else:
                unread.append(f"{tag}: {head}")
        broken = {d: failed[d] for d in set(tags.values()) if d in failed}
        for exc in broken.values():
            if is_fatal(exc):
                raise _Stop(name, exc)
        # What this repository has but did not fetch itself: known, or fetched by an earlier
        # repository of the chunk. Linked to it when its tags changed (no request: all indexed).
        rest = sorted(set(tags.values()) - broken.keys() - indexed)
        if rest and (tags != stored or any(d not in known for d in rest)):
            fetched += store.fetch_and_index(name, rest)
        # A tag whose HEAD failed may still exist: only a list read whole removes tags.
        changed = store.set_tags(name, tags, source="sync", complete=not unread, as_of=item.as_of)
        problems = [f"tag {t}" for t in unread] + [f"manifest {d}: {exc}" for d, exc in sorted(broken.items())]
        problem = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        return RepoResult(name, tags=len(item.tags or ()), heads=len(item.heads), fetched=fetched, changed=changed,
                          problem=problem)


def sync_repository(name: str) -> RepoResult:
    """Sync one repository now, in this thread (an event hinted it changed, a page wants it)."""
    return sync_repositories([name])[0]


def sync_repositories(names: list[str]) -> list[RepoResult]:
    """Sync these repositories now, in this thread, one result each in catalog order: what a
    push into repositories the index does not know yet does (index.events).

    Not a run: it takes no lock and records no SyncRun. The lock keeps full runs apart (their
    cursor, their resume); this is a read of a few repositories whose writes are the store's
    idempotent ones, with `as_of` guarding tags changed meanwhile, and a full sync running at
    the same time never forgets a repository changed after it read the catalog
    (`forget_missing`), so neither undoes the other. Waiting for the lock would leave a new
    repository unindexed for as long as a full sync runs."""
    order = sorted(set(names))
    results: list[RepoResult] = []
    try:
        _Engine().run(order, results.extend)
    except _Stop as stop:
        # The registry failed as a whole at stop.name: what came before it is written.
        done = {r.name for r in results}
        results.extend(RepoResult(name, problem=str(stop.error)) for name in order if name not in done)
    return results


# -- the lock ---------------------------------------------------------------------------------------------


JOB = runs.Job(
    SyncRun, log, stale_seconds,
    dead=lambda run: "." + (f" The next sync resumes after {run.cursor}." if run.cursor else ""),
    unpicked=lambda stale: (f"nobody picked this sync up within {stale:.0f} s of when it was due: is the task "
                            "worker running? Start it with `python manage.py worker`."),
    reads=("not_before", "cursor"), placeholder={"trigger": "?", "state": State.RUNNING})


def active_run() -> SyncRun | None:
    """The run holding the lock (queued, possibly for later, or running), after marking a run
    whose worker died as failed."""
    return JOB.active()


def _merged(current: list[str], wanted: list[str] | None) -> list[str]:
    # [] is the whole catalog, which covers any list of repositories.
    if not current or not wanted:
        return []
    return sorted(set(current) | set(wanted))


def _username(user: Any) -> str:
    return user.get_username() if user is not None and getattr(user, "is_authenticated", False) else ""


def _take(*, trigger: str, username: str, repositories: list[str] | None, not_before: datetime | None,
          force: bool = False) -> SyncRun:
    """A queued active run: a new one, or the waiting one brought forward (the request's trigger
    and user then stand for it). Raises AlreadyRunning when one is running."""
    now = timezone.now()

    def busy(current: SyncRun) -> SyncRun | None:
        if current.state != State.QUEUED:
            raise AlreadyRunning(current)
        due = current.not_before is None or current.not_before <= now
        sooner = (not_before or now) < (current.not_before or now)
        fields: dict[str, Any] = {"repositories": _merged(current.repositories, repositories)}
        if force or (not due and sooner):
            # Due from now on (not None: a run scheduled long ago is stale only once it has waited
            # SYNC_STALE_SECONDS past the time it became due).
            fields.update(trigger=trigger, username=username, not_before=now if force else (not_before or now))
            if repositories and not current.repositories and not due:
                # A few repositories now rather than the whole catalog early: the scheduled sync is
                # queued again, for its time, when this one ends (ensure_scheduled).
                fields["repositories"] = sorted(set(repositories))
        if SyncRun.objects.filter(pk=current.pk, state=State.QUEUED, active=True).update(**fields):
            current.refresh_from_db()
            return current
        return None

    return JOB.take(attempts=5, busy=busy, trigger=trigger, username=username, repositories=repositories or [],
                    not_before=not_before)


def _enqueue(run: SyncRun) -> None:
    """Hand the run to the task worker: now when due, else for later when the backend can
    defer (otherwise `ensure_scheduled` hands it over once it is due)."""
    now = timezone.now()
    due = run.not_before is None or run.not_before <= now
    if not due and not run_sync.get_backend().supports_defer:
        return
    details = dict(run.details or {})
    details["enqueued_for"] = (run.not_before if not due else now).isoformat()
    SyncRun.objects.filter(pk=run.pk).update(details=details)
    try:
        (run_sync if due else run_sync.using(run_after=run.not_before)).enqueue(run.pk)
    except Exception as exc:  # whatever the backend raises, the lock must be freed
        log.exception("could not enqueue sync #%s", run.pk)
        JOB.fail_queued(run.pk, f"could not hand the sync to the task worker: {exc}")


def _enqueued_for(run: SyncRun) -> datetime | None:
    value = (run.details or {}).get("enqueued_for")
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


def request_sync(*, trigger: str, user: Any = None, repositories: list[str] | None = None,
                 not_before: datetime | None = None) -> SyncRun:
    """Queue a sync for the task worker (at `not_before`, or now) and return the run holding the
    lock: the new one, or the waiting one (brought forward when this request is due sooner; it
    then counts as this request's). A running sync is returned as it is: it is the one that runs.
    With an immediate task backend the returned run has already finished."""
    try:
        run = _take(trigger=trigger, username=_username(user), repositories=repositories, not_before=not_before)
    except AlreadyRunning as exc:
        return exc.run
    enqueued = _enqueued_for(run)
    due = run.not_before or timezone.now()
    if enqueued is None or enqueued > due:
        _enqueue(run)
    run.refresh_from_db()
    return run


def last_full_run(*, succeeded: bool = False, started: bool = False) -> SyncRun | None:
    """The last finished sync of the whole catalog (that succeeded, or either way; `started`:
    leave out a run that failed before a worker took it, which read nothing)."""
    runs = SyncRun.objects.filter(finished_at__isnull=False).only("pk", "repositories", "finished_at", "state")
    if succeeded:
        runs = runs.filter(state=State.SUCCEEDED)
    if started:
        runs = runs.filter(started_at__isnull=False)
    return next((run for run in runs.order_by("-finished_at", "-pk")[:_LOOKBACK] if not run.repositories), None)


def next_due() -> datetime | None:
    """When the schedule wants the next sync (None: no schedule)."""
    every = interval()
    if every <= 0:
        return None
    # A run nobody picked up (no worker then) must not put the next one an interval off: the
    # worker's start would then wait that long for the first sync.
    last = last_full_run(started=True)
    now = timezone.now()
    if last is None or last.finished_at is None:
        return now
    return max(now, last.finished_at + timedelta(seconds=every))


def ensure_scheduled() -> SyncRun | None:
    """With REGISTRYUI_SYNC_INTERVAL > 0, make sure a sync is queued for when the schedule wants
    it: now if the index was never synced or the last sync is older than the interval, else
    one interval after it. Cheap (a few reads) when one is already queued. Returns the queued
    or running run, or None without a schedule."""
    if interval() <= 0:
        return None
    # The active run first, then when the schedule wants the next: the other order let a second
    # worker read "running" as "never finished" and, the run ending in between, queue another.
    current = active_run()
    if current is not None:
        # A backend that cannot defer gets a due run handed over here.
        if current.state == State.QUEUED and (current.not_before is None or current.not_before <= timezone.now()) \
                and _enqueued_for(current) is None:
            _enqueue(current)
            current.refresh_from_db()
        return current
    due = next_due() or timezone.now()
    return request_sync(trigger="schedule", not_before=due if due > timezone.now() else None)


# -- the run ------------------------------------------------------------------------------------------------


def _resume_after(run: SyncRun) -> str:
    """Where a full run starts: after the cursor of the last full run that started, if that one
    failed (a run that failed before reading anything kept the cursor it was given)."""
    if run.repositories:
        return ""
    earlier = SyncRun.objects.filter(pk__lt=run.pk, finished_at__isnull=False, started_at__isnull=False).only(
        "repositories", "state", "cursor")
    for prev in earlier.order_by("-pk")[:_LOOKBACK]:
        if not prev.repositories:
            return prev.cursor if prev.state == State.FAILED else ""
    return ""


def rotation(names: list[str], after: str) -> list[str]:
    """Catalog order, starting after `after` and wrapping around to the ones before it."""
    ordered = sorted(set(names))
    if not after:
        return ordered
    return [n for n in ordered if n > after] + [n for n in ordered if n <= after]


class _Runner:
    def __init__(self, run: SyncRun, on_progress: Callable[[SyncRun], None] | None) -> None:
        self.run = run
        self.on_progress = on_progress
        self.heart = runs.Heartbeat(JOB, run.pk, HEARTBEAT)
        self.details: dict[str, Any] = dict(run.details or {})
        self.problems: dict[str, str] = {}
        self.problem_count = 0

    def after_chunk(self, results: list[RepoResult]) -> None:
        run = self.run
        for r in results:
            run.repositories_done += 1
            run.tags_seen += r.tags
            run.heads += r.heads
            run.manifests_fetched += r.fetched
            run.tags_changed += r.changed
            run.cursor = r.name
            if r.problem:
                self.problem_count += 1
                if len(self.problems) < PROBLEM_LIMIT:
                    self.problems[r.name] = r.problem
        if self.problem_count:
            self.details.update(problems=self.problems, problem_count=self.problem_count)
        self.heart.save(repositories_done=run.repositories_done, tags_seen=run.tags_seen, heads=run.heads,
                        manifests_fetched=run.manifests_fetched, tags_changed=run.tags_changed, cursor=run.cursor,
                        details=self.details)
        if self.on_progress is not None:
            self.on_progress(run)

    def execute(self) -> None:
        run = self.run
        started = time.monotonic()
        after = _resume_after(run)
        run.cursor = after
        self.heart.save(cursor=after)  # kept if the catalog cannot be read: the next run resumes there too
        if run.repositories:
            names = sorted(set(run.repositories))
        else:
            read_at = timezone.now()
            names = self.catalog()
            if names is None:
                return
            self.forget_missing(names, read_at)
        order = rotation(names, after)
        if after:
            self.details["resumed_after"] = after
        run.repositories_total = len(order)
        self.heart.save(repositories_total=len(order), details=self.details)
        try:
            _Engine(self.heart.beat).run(order, self.after_chunk)
        except _Stop as stop:
            done = run.repositories_done
            why = str(stop.error).rstrip()
            why += "" if why.endswith((".", "?", "!")) else "."
            resume = f" The next sync resumes after {run.cursor}." if run.cursor else ""
            self.finish(State.FAILED, f"stopped at {stop.name} after {done} of {len(order)} "
                                      f"repositor{'y' if len(order) == 1 else 'ies'}: {why}{resume}")
            return
        self.details["seconds"] = round(time.monotonic() - started, 3)
        if run.tags_changed > 1000:
            _analyze()
        self.finish(State.SUCCEEDED)

    def catalog(self) -> list[str] | None:
        try:
            return sorted(set(remote.client().catalog()))
        except e.RegistryError as exc:
            self.finish(State.FAILED, f"could not read the catalog: {exc}")
            return None

    def forget_missing(self, names: list[str], read_at: datetime) -> None:
        """Repositories that left the catalog: their tags go, their manifests count as garbage.
        One an event touched after the catalog was read is newer than it, and stays."""
        present = set(names)
        gone = [name for name in IndexedRepository.objects.filter(
                    Q(changed_at__isnull=True) | Q(changed_at__lt=read_at),
                ).filter(Q(tag_count__gt=0) | Q(manifest_links__deleted_at__isnull=True, manifest_links__isnull=False)
                         ).values_list("name", flat=True).distinct()
                if name not in present]
        for name in sorted(gone):
            store.remove_repository(name)
        if gone:
            self.details["removed"] = sorted(gone)[:PROBLEM_LIMIT]
            self.details["removed_count"] = len(gone)

    def finish(self, state: str, error: str = "") -> None:
        self.heart.save(**runs.outcome(state, error), details=self.details)


def _analyze() -> None:
    """PostgreSQL plans the pages' queries from table statistics; after a sync that changed
    thousands of rows the old ones can pick a plan that takes seconds instead of milliseconds."""
    if connection.vendor != "postgresql":
        return
    tables = ["dashboard_indexedrepository", "dashboard_indexedtag", "dashboard_indexedmanifest",
              "dashboard_indexedblob", "dashboard_manifestblob", "dashboard_manifestchild",
              "dashboard_repositorymanifest"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE " + ", ".join(tables))
    except Exception:  # statistics are an optimisation; autovacuum gets there too
        log.warning("ANALYZE of the index tables failed", exc_info=True)


def execute(run_id: int, *, on_progress: Callable[[SyncRun], None] | None = None) -> SyncRun:
    """Run a queued, due SyncRun to the end (the task worker's side, and `run_now`'s). Always
    releases the lock; a run that is not queued (already run, marked stale, a duplicate task)
    or not yet due is left alone. Schedules the next sync at the end."""
    JOB.expire_stale()
    run, claimed = JOB.claim(run_id, Q(not_before__isnull=True) | Q(not_before__lte=timezone.now()))
    if not claimed:
        log.info("sync #%s is %s%s: not running it", run_id, run.state,
                 " and not due yet" if run.state == State.QUEUED else "")
        return run
    runner = _Runner(run, on_progress)
    JOB.drive(run_id, runner.execute, name=f"sync #{run_id}", salvage=lambda: {"cursor": runner.run.cursor})
    try:
        ensure_scheduled()
    except Exception:  # the run is done; the schedule is retried by the next look
        log.exception("could not schedule the next sync after #%s", run_id)
    run.refresh_from_db()
    return run


@task
def run_sync(run_id: int) -> None:
    """The worker's task (`manage.py worker`): reconcile the index with the registry."""
    execute(run_id)


def run_now(*, trigger: str = "command", repositories: list[str] | None = None,
            on_progress: Callable[[SyncRun], None] | None = None, username: str = "manage.py") -> SyncRun:
    """Sync here and now (manage.py, tests): takes over a waiting sync, or raises AlreadyRunning."""
    run = _take(trigger=trigger, username=username, repositories=repositories, not_before=None, force=True)
    return execute(run.pk, on_progress=on_progress)


# -- what the pages show -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    elapsed: float | None
    remaining: float | None
    percent: int | None


def progress(run: SyncRun) -> Progress:
    """Elapsed seconds, an estimate of the rest (from the pace so far), and how far along."""
    elapsed = runs.elapsed(run)
    if elapsed is None:
        return Progress(None, None, None)
    total, done = run.repositories_total, run.repositories_done
    percent = int(100 * done / total) if total else None
    remaining = elapsed / done * (total - done) if not run.finished and 0 < done < total else None
    return Progress(elapsed, remaining, percent)
