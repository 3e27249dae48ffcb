"""Background runs: the lock row, heartbeat, stale detection and finishing every long job shares.

A job (garbage collection, the index sync, the next one) keeps one row per run, a model that
extends `models.BackgroundRun`, and describes itself once with a `Job`. The row is the lock: a
partial unique index allows one `active` row of a kind, so `Job.take()` either creates the
queued run or raises `AlreadyRunning` with the run that holds the lock. The worker claims the
run (`Job.claim()`), reports through a `Heartbeat` (every write refreshes `heartbeat_at`, and
raises `Lost` once the row is no longer its own), and `Job.drive()` makes sure the lock is
released however the work ends. A run whose worker stopped reporting for the job's stale
seconds, or that nobody picked up, is marked failed by whoever looks next (`Job.active()`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .models import BackgroundRun

State = BackgroundRun.State

#: The start of what a run whose worker stopped reporting says; the job adds the rest.
NO_SIGN_OF_LIFE = (
    "the worker stopped: no sign of life for {seconds:.0f} s (stopped or crashed mid-run), so the run was marked failed"
)


class AlreadyRunning(Exception):
    """One run at a time: `.run` is the one holding the lock."""

    def __init__(self, run: BackgroundRun) -> None:
        super().__init__(f"{run.described} is already {run.state}; only one runs at a time")
        self.run = run


class Lost(Exception):
    """The row is no longer ours (marked stale by someone else): stop at once."""


def outcome(state: str, error: str = "") -> dict[str, Any]:
    """The fields that end a run (the model's own `DONE` are the worker's to add)."""
    return {"state": state, "error": error, "finished_at": timezone.now(), "active": False}


def elapsed(run: BackgroundRun) -> float | None:
    """Seconds since the run started, until it finished or now (None: not started)."""
    if run.started_at is None:
        return None
    end = run.finished_at or timezone.now()
    return max(0.0, (end - run.started_at).total_seconds())


def beating[T](fn: Callable[[], T], every: float, beat: Callable[[], None]) -> T:
    """fn() in a thread (no database there) while this thread calls beat() every `every` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(every)
        beat()
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass(frozen=True)
class Job[R: BackgroundRun]:
    """One kind of background run: its model, and what its pages say of a run that died."""

    model: type[R]
    #: Where its messages go (the feature's own logger).
    log: logging.Logger
    #: Seconds without a heartbeat (running) or a worker (queued, once due) before a run is failed.
    stale_seconds: Callable[[], float]
    #: The error of a running run that stopped reporting, after NO_SIGN_OF_LIFE.
    dead: Callable[[R], str]
    #: The error of a queued run nobody picked up: given the stale seconds.
    unpicked: Callable[[float], str]
    #: Fields the stale check reads besides the state and the times (what `dead` uses).
    reads: tuple[str, ...] = ()
    #: What AlreadyRunning shows when the run holding the lock is gone by the time it is looked up.
    placeholder: Mapping[str, Any] = field(default_factory=dict)

    # -- the lock ------------------------------------------------------------------------------

    def holder(self) -> R | None:
        """The active row as it is (no stale check)."""
        return self.model.objects.filter(active=True).first()

    def expire_stale(self) -> None:
        """Mark the active run failed, freeing the lock, when its worker stopped reporting (running)
        or never came (queued)."""
        stale = self.stale_seconds()
        now = timezone.now()
        cutoff = now - timedelta(seconds=stale)
        # Pages poll this every second: a read in the usual case, writes only for a dead run. The
        # updates re-check their condition, so a heartbeat that lands in between wins.
        current = (
            self.model.objects.filter(active=True)
            .only("pk", "state", "heartbeat_at", "created_at", *self.reads)
            .first()
        )
        if current is None:
            return
        done = {"active": False, "finished_at": now, "state": State.FAILED, **self.model.DONE}
        mine = self.model.objects.filter(pk=current.pk, active=True)
        if current.state == State.RUNNING and (current.heartbeat_at or current.created_at) < cutoff:
            mine.filter(state=State.RUNNING).filter(
                Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff),
            ).update(**done, error=NO_SIGN_OF_LIFE.format(seconds=stale) + self.dead(current))
        elif current.state == State.QUEUED and current.due_at < cutoff:
            mine.filter(self.model.overdue(cutoff), state=State.QUEUED).update(**done, error=self.unpicked(stale))
        elif current.state in (State.SUCCEEDED, State.FAILED):
            # A finished run never holds the lock (both are set together; this only mends a crash).
            mine.update(active=False)

    def active(self) -> R | None:
        """The run holding the lock, after marking a run whose worker died as failed."""
        self.expire_stale()
        return self.holder()

    def take(self, *, attempts: int = 3, busy: Callable[[R], R | None] | None = None, **fields: Any) -> R:
        """Take the lock: a new queued, active row with `fields`. When another run holds it,
        `busy(run)` may answer instead (a run to return, or None to try again); without `busy`,
        or when it raises, AlreadyRunning with that run."""
        for _ in range(attempts):
            self.expire_stale()
            try:
                with transaction.atomic():
                    return self.model.objects.create(**fields, state=State.QUEUED, active=True)
            except IntegrityError:
                pass
            current = self.holder()
            if current is None:
                continue  # it finished between the insert and the look: try again
            if busy is None:
                raise AlreadyRunning(current)
            got = busy(current)
            if got is not None:
                return got
        raise AlreadyRunning(self.holder() or self.model(**self.placeholder))

    def fail_queued(self, pk: int, error: str) -> None:
        """A queued run that cannot be handed to a worker: failed, the lock freed."""
        self.model.objects.filter(pk=pk, state=State.QUEUED).update(**outcome(State.FAILED, error), **self.model.DONE)

    # -- the worker's side -------------------------------------------------------------------------

    def claim(self, pk: int, *when: Q) -> tuple[R, bool]:
        """Queued → running (when still queued, active and matching `when`): the run, and whether
        this worker got it."""
        now = timezone.now()
        claimed = self.model.objects.filter(*when, pk=pk, state=State.QUEUED, active=True).update(
            state=State.RUNNING, started_at=now, heartbeat_at=now
        )
        return self.model.objects.get(pk=pk), bool(claimed)

    def drive(
        self,
        pk: int,
        work: Callable[[], None],
        *,
        name: str,
        on_lost: Callable[[], None] | None = None,
        salvage: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        """Run `work()` for the claimed run `pk` (`name` in the log) and release the lock however it
        ends: stopped quietly when the run was marked stale meanwhile (`on_lost`), failed with what
        `salvage()` keeps when it raised, failed when it returned without finishing."""
        try:
            work()
        except Lost:
            self.log.error("%s was marked stale while running: stopped", name)
            if on_lost is not None:
                on_lost()
        except BaseException as exc:
            self.log.exception("%s failed", name)
            self.model.objects.filter(pk=pk, state=State.RUNNING).update(
                state=State.FAILED,
                finished_at=timezone.now(),
                **self.model.DONE,
                **salvage(),
                error=f"the worker failed: {type(exc).__name__}: {exc}",
            )
            if not isinstance(exc, Exception):
                raise
        finally:
            self.model.objects.filter(pk=pk).update(active=False)
            self.model.objects.filter(pk=pk, state=State.RUNNING).update(
                state=State.FAILED, finished_at=timezone.now(), **self.model.DONE, error="the worker stopped mid-run"
            )


class Heartbeat:
    """The worker's writes to its running row: each one refreshes `heartbeat_at`, and raises Lost
    once the row is no longer active and running (marked stale by someone else)."""

    def __init__(self, job: Job[Any], pk: int, every: float, *, last: float | None = None) -> None:
        self.job = job
        self.pk = pk
        self.every = every
        #: time.monotonic() of the last write.
        self.last = time.monotonic() if last is None else last

    def save(self, **fields: Any) -> None:
        fields["heartbeat_at"] = timezone.now()
        self.last = time.monotonic()
        if not self.job.model.objects.filter(pk=self.pk, active=True, state=State.RUNNING).update(**fields):
            raise Lost

    def beat(self) -> None:
        if time.monotonic() - self.last >= self.every:
            self.save()
