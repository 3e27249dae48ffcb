"""Garbage collection: the registry's own `garbage-collect`, in the background, one at a time.

- `start()` (a request) records a `GCRun` and hands it to the task worker; `execute()` (the
  worker, or `manage.py gc`) runs it: hooks, the command with its output streamed into the row,
  sizes on disk, the outcome. The request never waits for the command.
- The row is the lock, across requests, workers and dashboards on one database; a run whose
  worker died is marked failed by `active_run()` (dashboard.runs, shared with the index sync).
- `--delete-untagged` is off unless asked for, and a real run with it must come from a
  preview that shows it spares every manifest a tagged index references (registry 2.8
  deletes the untagged platform manifests of tagged multi-arch images, distribution#3178).
  The worker checks again right before deleting, because a preview can be old.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.tasks import task

from .. import conf, disk, remote, runs
from ..index import store
from ..auth import User
from ..models import GCRun
from ..registry import errors as e
from ..registry.client import run_bounded
from ..registry.models import INDEX_TYPES
from . import frees, stale
from .parse import GCReport, ManifestRef, Parser

log = logging.getLogger(__name__)

#: How often the worker writes output, counters and its heartbeat into the row.
FLUSH_INTERVAL = 0.5
#: After the command exits, how long to wait for its output pipe to close (a hook may leave a
#: daemon holding it, e.g. a registry it restarted).
PIPE_GRACE = 2.0
#: SIGTERM, then this long, then SIGKILL.
KILL_GRACE = 5.0
#: Digest lists kept in `report` (the counters are always complete).
LIST_LIMIT = 5000

State = GCRun.State

NEEDS_PREVIEW = (
    "A real run with “delete untagged” must come from a preview with “delete untagged”: on registry 2.8 "
    "it also deletes the untagged platform manifests of tagged multi-arch images, and the preview shows "
    "whether it would.")


AlreadyRunning = runs.AlreadyRunning


class Refused(Exception):
    """The run was not started; str() says why and what to do."""


# -- configuration ----------------------------------------------------------------------------


def configured() -> tuple[bool, str]:
    """Whether garbage collection can run, and if not, how to set it up."""
    command = conf.get().gc_command
    if not command:
        return False, (
            "Garbage collection is not set up. Set REGISTRYUI_GC_COMMAND to the registry's own command as the "
            "task worker can run it, e.g. `registry garbage-collect /etc/docker/registry/config.yml` (the "
            "registry binary, and the registry's config file and storage mounted writable), and run the worker: "
            "`python manage.py worker`. Set REGISTRYUI_STORAGE_PATH to the storage directory to see sizes.")
    try:
        shlex.split(command)
    except ValueError as exc:
        return False, f"REGISTRYUI_GC_COMMAND cannot be read ({exc}): {command}"
    return True, ""


def command_argv(command: str, *, dry_run: bool, delete_untagged: bool) -> list[str]:
    """The configured command with the flags: right after `garbage-collect` when the command has
    that word (so the config path stays last), else at the end (a wrapper gets them in "$@")."""
    argv = shlex.split(command)
    flags = (["--dry-run"] if dry_run else []) + (["--delete-untagged"] if delete_untagged else [])
    if "garbage-collect" in argv:
        at = argv.index("garbage-collect") + 1
        return argv[:at] + flags + argv[at:]
    return argv + flags


def _storage_root() -> tuple[Path | None, str]:
    configured_path = conf.get().storage_path
    if not configured_path:
        return None, "REGISTRYUI_STORAGE_PATH is not set: sizes are not measured"
    if disk.v2_root(configured_path) is None:
        return None, (f"REGISTRYUI_STORAGE_PATH={configured_path} holds no readable docker/registry/v2: "
                      "sizes are not measured")
    return Path(configured_path), ""


# -- the lock ------------------------------------------------------------------------------------


JOB = runs.Job(
    GCRun, log, lambda: conf.get().gc_stale_seconds,
    dead=lambda run: " and the lock freed. A real run may have deleted part of what it listed; run it again.",
    unpicked=lambda stale: (f"the worker stopped or is not running: nobody picked this run up within {stale:.0f} s. "
                            "Start it with `python manage.py worker`."),
    placeholder={"username": "?"})


def active_run() -> GCRun | None:
    """The run holding the lock, after marking runs whose worker died as failed."""
    return JOB.active()


def create_run(user: User | None = None, *, dry_run: bool, delete_untagged: bool = False,
               preview: GCRun | None = None, username: str | None = None) -> GCRun:
    """Take the lock: a queued, active row, or AlreadyRunning with the run that has it."""
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    if username is None:
        username = user.get_username() if authenticated else ""
    return JOB.take(user=user if authenticated else None, username=username, dry_run=dry_run,
                    delete_untagged=delete_untagged, preview=preview, phase="queued")


def start(user: User | None, *, dry_run: bool, delete_untagged: bool = False,
          preview: GCRun | None = None) -> GCRun:
    """Queue a run for the task worker and return it (already finished with an immediate backend).

    Refused (not configured, or a real --delete-untagged run its preview does not clear), or
    AlreadyRunning (someone else holds the lock)."""
    ok, reason = configured()
    if not ok:
        raise Refused(reason)
    if not dry_run and delete_untagged:
        if preview is None or not (preview.dry_run and preview.delete_untagged):
            raise Refused(NEEDS_PREVIEW)
        if reason := refusal(preview):
            raise Refused(reason)
    if not dry_run and preview is not None and not (offer := standing(preview)).runnable:
        raise Refused(offer.reason)
    run = create_run(user, dry_run=dry_run, delete_untagged=delete_untagged, preview=preview)

    try:
        run_gc.enqueue(run.pk)
    except Exception as exc:  # whatever the backend raises, the lock must be freed
        log.exception("could not enqueue GC run #%s", run.pk)
        JOB.fail_queued(run.pk, f"could not hand the run to the task worker: {exc}")
    run.refresh_from_db()
    return run


# -- the safety check for --delete-untagged ------------------------------------------------------------


def protected_manifests() -> dict[str, list[str]]:
    """Every manifest a TAGGED index references (children, and theirs for nested indexes), in
    every repository: digest -> ["repo:tag", …]. Read live from the registry (tags by HEAD,
    index bodies through the digest cache); any error is raised: no answer, no promise."""
    client = remote.client()
    protected: dict[str, list[str]] = {}
    for repo in sorted(client.catalog()):
        try:
            tags = client.tags(repo)
        except e.NotFound:
            continue
        heads = run_bounded(lambda tag, repo=repo: client.head_manifest(repo, tag), tags, remote.concurrency())
        frontier: dict[str, list[str]] = {}
        for tag, head in zip(tags, heads, strict=True):
            if isinstance(head, e.NotFound):
                continue  # untagged meanwhile
            if isinstance(head, BaseException):
                raise head
            if head.media_type in INDEX_TYPES or not head.media_type:
                frontier.setdefault(head.digest, []).append(f"{repo}:{tag}")
        seen: set[str] = set()
        while frontier:
            seen.update(frontier)
            found = remote.many_by_digest(repo, "manifest", list(frontier))
            deeper: dict[str, list[str]] = {}
            for digest, refs in frontier.items():
                manifest = found[digest]
                if isinstance(manifest, BaseException):
                    raise manifest
                for child in manifest.manifests:
                    known = protected.setdefault(child.digest, [])
                    known.extend(r for r in refs if r not in known)
                    if child.media_type in INDEX_TYPES and child.digest not in seen:
                        deeper.setdefault(child.digest, []).extend(refs)
            frontier = deeper
    return protected


def _hits(eligible: tuple[ManifestRef, ...], protected: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Eligible manifests that a tagged index of the same repository references."""
    hits = []
    for ref in eligible:
        refs = protected.get(ref.digest, [])
        same_repo = [r for r in refs if r.rsplit(":", 1)[0] == ref.repo] if ref.repo else refs
        if same_repo:
            hits.append({"repo": ref.repo, "digest": ref.digest, "referenced_by": same_repo})
    return hits


def _hits_text(hits: list[dict[str, Any]]) -> str:
    listing = "; ".join(f"{h['repo']}@{h['digest']} (in {', '.join(h['referenced_by'])})" for h in hits)
    n = len(hits)
    return (f"with --delete-untagged this registry would delete {n} manifest{'s' if n != 1 else ''} that tagged "
            f"multi-arch images still reference, and those images would stop pulling (registry 2.8 does not "
            f"keep the untagged platform manifests of a tagged index, distribution#3178): {listing}.")


def refusal(preview: GCRun | None) -> str:
    """Why a real run from this preview (with its options) would be refused; "" when it would not."""
    if preview is None or not preview.dry_run or not preview.delete_untagged:
        return ""
    if preview.state != State.SUCCEEDED:
        return "This preview did not finish, so nothing can be run from it: preview again."
    report = preview.report or {}
    if report.get("protected_error"):
        return ("Refused: the preview could not read which manifests tagged multi-arch images reference "
                f"({report['protected_error']}), so it cannot promise --delete-untagged spares them. Preview "
                "again, or run without “delete untagged”.")
    if not (hits := report.get("protected_hits")):
        return ""
    return ("Refused: " + _hits_text(hits) + " Run without “delete untagged”, or tag those manifests first.")


# -- what a run's state label says, and what a preview still offers ----------------------------------


@dataclass(frozen=True)
class Standing:
    """A run as the pages label it: the state a user can act on, not only how the command ended."""

    #: queued, running, succeeded, failed or refused (the chip's class too)
    state: str
    label: str
    #: A real run may be started from this preview.
    runnable: bool = False
    #: Why a succeeded preview offers no run (refused, already run, out of date); "" otherwise.
    reason: str = ""
    #: The real run this preview was run as, or that ran after it.
    followed_by: GCRun | None = None


def standing(run: GCRun, later: list[GCRun] | None = None) -> Standing:
    """`later`: the real runs created after `run`, oldest first (read when not given)."""
    label = run.get_state_display()
    if not run.finished:
        return Standing(run.state, label)
    if not run.dry_run:
        if run.state == State.FAILED and run.error.startswith("Refused"):
            return Standing("refused", "Refused", reason=run.error)
        return Standing(run.state, label)
    if run.state != State.SUCCEEDED:
        return Standing(run.state, label, reason="This preview did not finish, so nothing can be run from it.")
    if reason := refusal(run):
        return Standing("refused", "Refused", reason=reason)
    if later is None:
        later = list(GCRun.objects.filter(dry_run=False, created_at__gte=run.created_at).exclude(pk=run.pk)
                     .only("id", "created_at", "preview_id").order_by("created_at", "id"))
    if own := next((r for r in later if r.preview_id == run.pk), None):
        return Standing(run.state, label, reason=f"Already run for real as #{own.pk}: preview again for another run.",
                        followed_by=own)
    if later:
        return Standing(run.state, label, followed_by=later[0], reason=(
            f"Garbage collection #{later[0].pk} ran after this preview, so its figures are out of date: "
            "preview again."))
    return Standing(run.state, label, runnable=True)


def standings(runs_: list[GCRun]) -> dict[int, Standing]:
    """Each run's standing, with one query for what followed them all (the history table)."""
    if not runs_:
        return {}
    oldest = min(r.created_at for r in runs_)
    real = list(GCRun.objects.filter(dry_run=False, created_at__gte=oldest).only("id", "created_at", "preview_id")
                .order_by("created_at", "id"))
    return {r.pk: standing(r, [x for x in real if x.pk != r.pk and (x.created_at, x.pk) > (r.created_at, r.pk)])
            for r in runs_}


# -- the worker ---------------------------------------------------------------------------------


class _Tail:
    """The last `limit` characters of a stream, whole lines, saying how many were dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines: deque[str] = deque()
        self.size = 0
        self.dropped = 0
        self.changed = False

    def add(self, line: str) -> None:
        if not line.endswith("\n"):
            line += "\n"
        self.lines.append(line)
        self.size += len(line)
        self.changed = True
        while self.size > self.limit and len(self.lines) > 1:
            self.size -= len(self.lines.popleft())
            self.dropped += 1

    def text(self) -> str:
        head = f"[… {self.dropped} earlier lines not kept …]\n" if self.dropped else ""
        return head + "".join(self.lines)


class _Worker:
    def __init__(self, run: GCRun, on_line: Callable[[str], None] | None) -> None:
        self.run = run
        self.on_line = on_line
        self.phase = "queued"
        self.output = _Tail(GCRun.OUTPUT_LIMIT)
        self.hooks = _Tail(GCRun.OUTPUT_LIMIT // 4)
        self.parser = Parser()
        #: The blobs a real run removed from disk (filled once the command is done).
        self.removed: list[str] = []
        self.heart = runs.Heartbeat(JOB, run.pk, FLUSH_INTERVAL, last=0.0)
        self.env = {
            **os.environ,
            "REGISTRYUI_GC_RUN_ID": str(run.pk),
            "REGISTRYUI_GC_DRY_RUN": "1" if run.dry_run else "0",
            "REGISTRYUI_GC_DELETE_UNTAGGED": "1" if run.delete_untagged else "0",
        }

    # -- the row ------------------------------------------------------------------------------

    def flush(self, **fields: Any) -> None:
        fields.update(phase=self.phase)
        for name, tail in (("output", self.output), ("hook_output", self.hooks)):
            if tail.changed:
                fields[name] = tail.text()
                tail.changed = False
        for name, value in zip(("marked", "eligible_blobs", "eligible_manifests"), self.parser.progress(), strict=True):
            fields.setdefault(name, value)
        self.heart.save(**fields)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.flush()

    def say(self, tail: _Tail, line: str) -> None:
        tail.add(line)
        if self.on_line:
            self.on_line(line.rstrip("\n"))

    # -- processes ------------------------------------------------------------------------------

    def stream(self, argv: list[str], *, tail: _Tail, parser: Parser | None, timeout: float,
               env: dict[str, str] | None = None, follow_phase: bool = False) -> int:
        """Run argv, output (stdout and stderr, interleaved) into `tail` and `parser` as it comes,
        the row refreshed every FLUSH_INTERVAL. Returns the exit code (127: could not start)."""
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env or self.env, start_new_session=True)
        except OSError as exc:
            self.say(tail, f"cannot run {argv[0]}: {exc.strerror or exc}")
            return 127
        lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()

        def read() -> None:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                lines.put(raw.decode("utf-8", "replace"))
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        began = time.monotonic()
        exited_at: float | None = None
        timed_out = False
        try:
            while True:
                try:
                    line = lines.get(timeout=max(0.01, FLUSH_INTERVAL - (time.monotonic() - self.heart.last)))
                except queue.Empty:
                    line = ""
                if line is None:
                    break
                if line:
                    self.say(tail, line)
                    if parser is not None:
                        parser.feed(line)
                        if follow_phase and parser.sweeping and self.phase == "marking":
                            self.phase = "sweeping"
                now = time.monotonic()
                if now - self.heart.last >= FLUSH_INTERVAL:
                    self.flush()
                if timeout and not timed_out and now - began > timeout:
                    timed_out = True
                    self.say(tail, f"[stopped: still running after {timeout:.0f} s]")
                    _kill(proc)
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > PIPE_GRACE:
                    break  # something it started keeps the pipe open; what it said so far is kept
        finally:
            if proc.poll() is None:
                _kill(proc)
        code = proc.wait()
        return 124 if timed_out and code == 0 else code

    def hook(self, which: str, command: str, extra_env: dict[str, str] | None = None) -> int:
        self.say(self.hooks, f"$ {which} hook: {command}")
        code = self.stream(["/bin/sh", "-c", command], tail=self.hooks, parser=None,
                           timeout=conf.get().gc_hook_timeout, env={**self.env, **(extra_env or {})})
        self.say(self.hooks, f"({which} hook exited with code {code})")
        return code

    # -- the run ----------------------------------------------------------------------------------

    def execute(self) -> None:
        run = self.run
        cfg = conf.get()
        ok, reason = configured()
        if not ok:
            self.finish(State.FAILED, reason)
            return
        argv = command_argv(cfg.gc_command, dry_run=run.dry_run, delete_untagged=run.delete_untagged)
        root, storage_note = _storage_root()
        report: dict[str, Any] = {"command": shlex.join(argv), "storage": storage_note}
        errors: list[str] = []

        # 1. With --delete-untagged: what tagged indexes reference, read while the registry is
        #    surely up (a before hook may stop it); a real run also re-checks with a fresh dry run.
        protected: dict[str, list[str]] | None = None
        if run.delete_untagged:
            self.set_phase("checking")
            try:
                protected = runs.beating(protected_manifests, FLUSH_INTERVAL, self.flush)
            except Exception as exc:  # noqa: BLE001 - any failure means no promise
                if not run.dry_run:
                    self.finish(State.FAILED, report=report, error=(
                        "Refused: could not read which manifests tagged multi-arch images reference, so "
                        f"--delete-untagged could delete some of them ({exc}). Nothing was deleted."))
                    return
                report["protected_error"] = str(exc) or type(exc).__name__
            if protected is not None and not run.dry_run:
                guard_argv = command_argv(cfg.gc_command, dry_run=True, delete_untagged=True)
                self.say(self.output,
                         f"$ {shlex.join(guard_argv)}    # safety check before deleting untagged manifests")
                guard = Parser()
                code = self.stream(guard_argv, tail=self.output, parser=guard, timeout=cfg.gc_timeout)
                hits = _hits(guard.report().eligible_manifests, protected)
                report["guard"] = {"exit_code": code, "protected_hits": hits}
                if code != 0:
                    self.finish(State.FAILED, report=report, exit_code=code, error=(
                        f"The safety check (a dry run with --delete-untagged) failed with exit code {code}; "
                        "nothing was deleted."))
                    return
                if hits:
                    report["protected_hits"] = hits
                    self.finish(State.FAILED, report=report, error="Refused: " + _hits_text(hits)
                                + " Nothing was deleted: run without “delete untagged”, or tag those manifests first.")
                    return

        # 2. The before hook; a failing one means no garbage collection.
        exit_code: int | None = None
        before_ok = True
        if cfg.gc_before_command:
            self.set_phase("before hook")
            code = self.hook("before", cfg.gc_before_command)
            if code != 0:
                before_ok = False
                errors.append(f"the before hook failed (exit code {code}), so garbage collection did not run")

        fields: dict[str, Any] = {}
        if before_ok:
            # 3. Sizes before, then the command.
            self.set_phase("marking")
            sizes_before = runs.beating(lambda: disk.scan_blobs(root), FLUSH_INTERVAL, self.flush) if root else None
            if sizes_before is not None:
                fields["bytes_before"] = sum(sizes_before.values())
            self.say(self.output, f"$ {shlex.join(argv)}")
            exit_code = self.stream(argv, tail=self.output, parser=self.parser, timeout=cfg.gc_timeout,
                                    follow_phase=True)
            result = self.parser.report()
            if exit_code != 0:
                errors.append(_command_error(exit_code, result, self.output))
            self.phase = "sweeping" if result.sweeping else self.phase
            fields.update(self.figures(result, root, sizes_before, protected, report, exit_code))

        # 4. The after hook, whatever happened (it typically undoes what the before hook did).
        if cfg.gc_after_command:
            self.set_phase("after hook")
            code = self.hook("after", cfg.gc_after_command,
                             {"REGISTRYUI_GC_EXIT_CODE": "" if exit_code is None else str(exit_code)})
            if code != 0:
                done = " (garbage collection itself succeeded)" if exit_code == 0 else ""
                errors.append(f"the after hook failed (exit code {code}){done}")

        state = State.SUCCEEDED if before_ok and exit_code == 0 and not errors else State.FAILED
        if exit_code is not None and not run.dry_run:
            self.after_real_run(exit_code, report)
        self.finish(state, "; ".join(errors), report=report, exit_code=exit_code, **fields)

    # -- after a real run ---------------------------------------------------------------------------

    def after_real_run(self, exit_code: int, report: dict[str, Any]) -> None:
        """What follows a real run, once the after hook is done (so a registry it restarted is
        back). Each step is on its own: the collection is over whatever a step does, and one that
        fails is logged and noted in the report without stopping the next. A new step (say,
        marking audited deletions whose blobs are gone as no longer restorable) goes here, with
        `removed`: the blobs this run removed from disk."""
        run, removed = self.run, self.removed
        self.set_phase("checking")

        # 1. Does the registry still serve what was removed? (a stale blob-descriptor cache)
        if removed:
            known = self.step(report, "blob_cache", lambda: stale.repositories_of(removed[: stale.PROBES * 5]))
            root, _ = _storage_root()
            report["blob_cache"] = self.step(report, "blob_cache", lambda: stale.probe(
                removed, root=root, repositories=list(self.parser.report().repositories), known=known or {}),
                slow=True)

        # 2. What the collector removed leaves the index's storage figures too (the index still
        #    knows the repositories that held it: step 1 reads them first).
        if exit_code == 0:
            self.step(report, "index", lambda: store.after_garbage_collection(delete_untagged=run.delete_untagged))

        # (The storage figures need nothing here: the index changed, and the disk reading is
        # taken again once a blob is gone, see disk.blob_totals.)

    def step[T](self, report: dict[str, Any], name: str, fn: Callable[[], T], *, slow: bool = False) -> T | None:
        """fn(), or None with `<name>_error` in the report. `slow`: no database in fn, which runs
        in a thread while this one keeps the heartbeat."""
        try:
            return runs.beating(fn, FLUSH_INTERVAL, self.flush) if slow else fn()
        except Exception as exc:  # the collection is done: the step says what failed, the next one runs
            log.exception("GC run #%s: the %s step failed", self.run.pk, name)
            report[f"{name}_error"] = str(exc) or type(exc).__name__
            return None

    def figures(self, result: GCReport, root: Path | None, sizes_before: dict[str, int] | None,
                protected: dict[str, list[str]] | None, report: dict[str, Any], exit_code: int) -> dict[str, Any]:
        """Counters and sizes from the parsed output and the disk; fills `report`."""
        run = self.run
        eligible_blobs = list(result.eligible_blobs)
        eligible_manifests = list(result.eligible_manifests)
        report.update(
            by_repo=dict(result.marked_by_repo),
            eligible_blobs=eligible_blobs[:LIST_LIMIT],
            eligible_manifests=[{"repo": m.repo, "digest": m.digest} for m in eligible_manifests[:LIST_LIMIT]],
            truncated=len(eligible_blobs) > LIST_LIMIT or len(eligible_manifests) > LIST_LIMIT,
        )
        if result.errors:
            report["errors"] = list(result.errors[:20])
        if protected is not None:
            report["protected_hits"] = _hits(result.eligible_manifests, protected)
        fields: dict[str, Any] = {
            "marked": result.marked,
            "eligible_blobs": result.summary.blobs if result.summary else len(eligible_blobs),
            "eligible_manifests": result.summary.manifests if result.summary else len(eligible_manifests),
        }
        known: dict[str, int] = {}
        if root is not None:
            sizes = dict(sizes_before or {})
            if run.dry_run:
                sizes.update(disk.blob_sizes(root, [d for d in eligible_blobs if d not in sizes]))
            known = {d: sizes[d] for d in eligible_blobs if d in sizes}
            fields["bytes_eligible"] = sum(known.values())
            report["blob_sizes"] = dict(list(known.items())[:LIST_LIMIT])
        if eligible_blobs:
            # Whose blobs these are, from the deletion audit: what the preview shows it would free.
            report["frees"] = self.step(report, "frees", lambda: frees.attribute(eligible_blobs, known))
        if not run.dry_run:
            if root is not None:
                fields["bytes_after"] = runs.beating(lambda: disk.storage_bytes(root), FLUSH_INTERVAL, self.flush)
            self.removed = _removed(result.deleted_blobs, eligible_blobs, exit_code, root and (
                lambda d: not disk.blob_data_path(root, d).exists()))
            fields["deleted_blobs"] = len(self.removed)
            manifests = _removed(result.deleted_manifests, eligible_manifests, exit_code, root and (
                lambda m: not disk.manifest_link_path(root, m.repo, m.digest).exists()))
            fields["deleted_manifests"] = len(manifests)
        return fields

    def finish(self, state: str, error: str = "", *, report: dict[str, Any] | None = None, **fields: Any) -> None:
        self.phase = "done"
        if report is not None:
            fields["report"] = report
        self.flush(**runs.outcome(state, error), **fields)


def _removed(logged: tuple, eligible: list, exit_code: int, gone: Callable[[Any], bool] | None) -> list:
    """What was really deleted: from the registry's log when it logs at info, else by looking at
    the disk, else all of them when it exited 0 (2.8 stops at the first failure)."""
    if logged:
        return list(logged)
    if gone:
        try:
            return [x for x in eligible if gone(x)]
        except (OSError, ValueError):
            pass
    return list(eligible) if exit_code == 0 else []


# Failures of registry 2.8.2 that say little on their own, and what they mean.
_HINTS = (
    (re.compile(r"Path not found: \S*/docker/registry/v2/repositories\s*$"),
     "the storage holds no repositories: the registry is still empty (nothing to collect), or the config's "
     "storage rootdirectory is not where the registry keeps its data"),
    (re.compile(r"failed to retrieve tags unknown repository name=(?P<name>\S+)"),
     "with --delete-untagged, registry 2.8 stops at a repository that has no tag at all ({name}): tag one of "
     "its images or delete its manifests by digest, or run without “delete untagged”"),
)


def _command_error(code: int, result: GCReport, output: _Tail) -> str:
    if code == 127:
        said = next((line for line in reversed(output.lines) if line.startswith("cannot run ")), "")
        return said.strip() or "the garbage-collect command could not be started"
    why = result.errors[0] if result.errors else next(
        (line.strip() for line in reversed(output.lines) if line.strip() and not line.startswith("$ ")), "")
    text = f"garbage-collect failed with exit code {code}" + (f": {why}" if why else "")
    for pattern, hint in _HINTS:
        if m := pattern.search(why):
            text += f" — {hint.format(**m.groupdict())}"
    return text


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """The whole process group: a wrapper's children go too."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=KILL_GRACE)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def execute(run_id: int, *, on_line: Callable[[str], None] | None = None) -> GCRun:
    """Run a queued GCRun to the end (the task worker's side, and `manage.py gc`'s). Always
    releases the lock; a run that is not queued (already run, or marked stale) is left alone."""
    run, claimed = JOB.claim(run_id)
    if not claimed:
        log.warning("GC run #%s is %s, not queued: not running it", run_id, run.state)
        return run
    worker = _Worker(run, on_line)

    def lost() -> None:
        GCRun.objects.filter(pk=run_id).update(
            output=worker.output.text() + "[stopped: this run was marked failed meanwhile (no heartbeat seen), "
                                          "and the lock may be someone else's now]\n")

    JOB.drive(run_id, worker.execute, name=f"GC run #{run_id}", on_lost=lost,
              salvage=lambda: {"output": worker.output.text(), "hook_output": worker.hooks.text()})
    run.refresh_from_db()
    return run


@task
def run_gc(run_id: int) -> None:
    """The worker's task (`manage.py worker`): run a queued garbage collection."""
    execute(run_id)
