"""`manage.py worker`: the task worker starts the index's sync schedule itself, once however many
workers start, without anyone opening a page; and it applies the registry's events while a long task
holds it.

Real processes on a shared SQLite file (the worker is another process in production), reading a
real registry; what they did is read from the database file.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from testbed import RegistryServer, registry_binary
from testbed.push import MT_OCI_MANIFEST, build_image, push_image

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0
REPOS = ("team/api", "team/web")


def until[T](what: str, check: Callable[[], T], timeout: float = TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def env(tmp_path: Path, empty_registry: RegistryServer) -> dict[str, str]:
    """A migrated database file the worker processes share, and a registry with two repositories."""
    for name in REPOS:
        push_image(empty_registry.url, name, build_image([{f"{name}.txt": name.encode() * 100}]), "1.0")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRYUI_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        REGISTRYUI_DATA_DIR=str(tmp_path / "data"),
        REGISTRYUI_REGISTRY_URL=empty_registry.url,
        REGISTRYUI_SYNC_INTERVAL="900",
        PYTHONUNBUFFERED="1",
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )
    return env


def _rows(env: dict[str, str], sql: str) -> list[dict]:
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql)]


def _runs(env: dict[str, str]) -> list[dict]:
    return _rows(env, "SELECT * FROM dashboard_syncrun ORDER BY id")


def _full_and_succeeded(env: dict[str, str]) -> list[dict]:
    return [r for r in _runs(env) if r["state"] == "succeeded" and json.loads(r["repositories"]) == []]


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `manage.py worker` processes (stopped at the end, by their own ids)."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        log = (tmp_path / f"worker-{len(started)}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "worker", *args],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _log(tmp_path: Path, n: int = 0) -> str:
    return (tmp_path / f"worker-{n}.log").read_text()


def test_worker_started_on_an_empty_index__runs_a_full_sync__no_page_opened(env, workers, tmp_path: Path) -> None:
    assert _runs(env) == []

    workers("--interval", "0.1", "--no-startup-delay")

    [run] = until("a full sync the worker ran", lambda: _full_and_succeeded(env))
    assert run["trigger"] == "schedule" and run["repositories_total"] == len(REPOS)
    indexed = _rows(env, "SELECT name, tag_count FROM dashboard_indexedrepository WHERE synced_at IS NOT NULL")
    assert sorted((r["name"], r["tag_count"]) for r in indexed) == [(name, 1) for name in REPOS]
    # And the next one is queued for one interval after it, not now.
    waiting = until("the next sync queued", lambda: [r for r in _runs(env) if r["state"] == "queued"])
    [nxt] = waiting
    gap = datetime.fromisoformat(nxt["not_before"]) - datetime.fromisoformat(run["finished_at"])
    assert 899 <= gap.total_seconds() <= 901
    assert "sync schedule: sync #1 is queued to run now" in _log(tmp_path)


def test_two_workers_starting_together__one_first_sync(env, workers) -> None:
    workers("--interval", "0.1", "--no-startup-delay")
    workers("--interval", "0.1", "--no-startup-delay")

    until("a full sync", lambda: _full_and_succeeded(env))
    until("the next sync queued", lambda: [r for r in _runs(env) if r["state"] == "queued"])
    runs = _runs(env)
    # One that ran, one that waits for its time: nothing per worker.
    assert [r["state"] for r in runs] == ["succeeded", "queued"], runs
    assert [r["started_at"] is not None for r in runs] == [True, False]


def test_worker_restarted_after_a_recent_sync__adds_no_sync(env, workers, tmp_path: Path) -> None:
    first = workers("--batch", "--no-startup-delay")
    assert first.wait(timeout=TIMEOUT) == 0, _log(tmp_path)
    before = _runs(env)
    assert [r["state"] for r in before] == ["succeeded", "queued"]

    again = workers("--batch", "--no-startup-delay")
    assert again.wait(timeout=TIMEOUT) == 0, _log(tmp_path, 1)

    # The queued one is for later: a batch worker finds nothing due, and nothing was added.
    assert _runs(env) == before
    assert f"sync schedule: sync #{before[1]['id']} is queued for " in _log(tmp_path, 1)


def test_worker_started_after_a_queued_sync_nobody_picked_up__syncs_at_once(env, workers, tmp_path: Path) -> None:
    """A page queued the first sync while no worker ran, and it was failed as never picked up.
    That run read nothing, so it does not put the first sync an interval off."""
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from datetime import timedelta; from django.utils import timezone; from dashboard.index import sync; "
            "from dashboard.models import SyncRun; run = sync.ensure_scheduled(); "
            "SyncRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=10)); "
            "assert sync.active_run() is None",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    [unpicked] = _runs(env)
    assert unpicked["state"] == "failed" and "nobody picked this sync up" in unpicked["error"]

    assert workers("--batch", "--no-startup-delay").wait(timeout=TIMEOUT) == 0, _log(tmp_path)

    assert [r["state"] for r in _runs(env)] == ["failed", "succeeded", "queued"]


def _gated_gc(tmp_path: Path, server: RegistryServer) -> tuple[str, Path]:
    """A GC command that waits at a gate until `gate/release` exists (then runs the real one)."""
    gate = tmp_path / "gate"
    gate.mkdir()
    script = tmp_path / "gated-gc"
    script.write_text(f"""#!/bin/sh
touch "{gate}/started"
i=0
while [ ! -e "{gate}/release" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
exec {registry_binary()} garbage-collect "$@"
""")
    script.chmod(0o755)
    return f"{script} {server.config_path}", gate


def _envelope(name: str, tag: str, digest: str) -> bytes:
    """A push event as registry 2.8 sends it (what /-/events/ stores)."""
    event = {
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "action": "push",
        "target": {
            "mediaType": MT_OCI_MANIFEST,
            "size": 401,
            "digest": digest,
            "length": 401,
            "repository": name,
            "url": f"http://registry.example:5000/v2/{name}/manifests/{digest}",
            "tag": tag,
        },
        "request": {
            "id": str(uuid.uuid4()),
            "addr": "10.1.2.3:51234",
            "host": "registry.example:5000",
            "method": "PUT",
            "useragent": "containerd/1.7.11",
        },
        "actor": {"name": "ci-bot"},
        "source": {"addr": "registry-1:5000", "instanceID": str(uuid.uuid4())},
    }
    return json.dumps({"events": [event]}).encode()


def test_a_push_while_the_worker_runs_a_long_task__applied_within_2_s__not_after_the_task(
    env, workers, empty_registry: RegistryServer, tmp_path: Path
) -> None:
    """The worker runs one task at a time; the events do not wait behind a garbage collection
    (or a full sync) that takes minutes."""
    command, gate = _gated_gc(tmp_path, empty_registry)
    env.update(
        REGISTRYUI_SYNC_INTERVAL="0",
        REGISTRYUI_GC_COMMAND=command,
        REGISTRYUI_STORAGE_PATH=str(empty_registry.storage_dir),
    )
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from dashboard.gc import runner; runner.start(None, dry_run=True)",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    workers("--interval", "0.1", "--no-startup-delay")
    until("the garbage collection to hold the worker", lambda: (gate / "started").exists())
    digest = push_image(empty_registry.url, "team/api", build_image([{"two.txt": b"two\n" * 100}]), "2.0")
    envelope = tmp_path / "envelope.json"
    envelope.write_bytes(_envelope("team/api", "2.0", digest))

    # What /-/events/ does with the registry's envelope: store it (and enqueue its task).
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from pathlib import Path; from dashboard.index import events; "
            f"print(events.receive(events.parse_envelope(Path({str(envelope)!r}).read_bytes())))",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    stored = time.monotonic()

    tag = (
        "SELECT t.digest FROM dashboard_indexedtag t JOIN dashboard_indexedrepository r ON r.id = t.repository_id "
        "WHERE r.name = 'team/api' AND t.name = '2.0'"
    )
    until("the pushed tag in the index", lambda: _rows(env, tag), timeout=10)
    took = time.monotonic() - stored
    assert took < 2.0, f"the push was applied {took:.2f} s after it was stored"
    assert _rows(env, tag) == [{"digest": digest}]
    # While the garbage collection still ran: it had not even started its real work.
    assert not (gate / "release").exists()
    assert [r["state"] for r in _rows(env, "SELECT state FROM dashboard_gcrun")] == ["running"]
    (gate / "release").touch()
    until(
        "the garbage collection to finish",
        lambda: [r["state"] for r in _rows(env, "SELECT state FROM dashboard_gcrun")] == ["succeeded"],
    )
