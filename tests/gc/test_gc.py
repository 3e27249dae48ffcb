"""Garbage collection through the dashboard's backend, on a real registry 2.8.2 per test.

Every test starts a fresh registry on a fixed port with `blob_cache=False` (the shipped
configuration, see the blob-cache tests), points REGISTRYUI_GC_COMMAND at the real
`docker-registry garbage-collect` with that registry's config, and runs tasks with the immediate
backend, so `gc.start()` returns a finished run. The cross-process tests run `manage.py`
subprocesses on a shared file-based SQLite database instead.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from dashboard.gc import runner as gc
from dashboard.models import GCRun
from testbed import RegistryServer, registry_binary
from testbed import push as p
from testbed.server import free_port

ROOT = Path(__file__).resolve().parents[2]
REPO = "team/app"
OTHER = "team/other"
MULTI = "acme/multi"
POLL_TIMEOUT_S = 30.0
SUBPROCESS_TIMEOUT_S = 120


# -- helpers -------------------------------------------------------------------------------------


def point_at(configure, settings, server: RegistryServer, **extra: object) -> None:
    from django.core.cache import cache

    configure(REGISTRY_URL=server.url, CATALOG_TTL=0, ANONYMOUS_READ=False,
              GC_COMMAND=f"{registry_binary()} garbage-collect {server.config_path}",
              STORAGE_PATH=str(server.storage_dir), GC_BEFORE_COMMAND="", GC_AFTER_COMMAND="", GC_STALE_SECONDS=60.0)
    configure(**extra)
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    cache.clear()


@pytest.fixture
def server(tmp_path: Path, configure, settings, db) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "registry", port=free_port(), blob_cache=False) as srv:
        point_at(configure, settings, srv)
        yield srv


@pytest.fixture
def seeded(server: RegistryServer) -> RegistryServer:
    """Something in the registry: 2.8's garbage-collect fails on an empty storage."""
    p.push_image(server.url, "team/base", p.build_image([{"base.txt": b"base\n"}], labels={"v": "base"}), "1")
    return server


@pytest.fixture
def mia(db) -> User:
    user = User.objects.create_user("mia")
    user.groups.add(Group.objects.get(name="maintainer"))
    return user


def disk_bytes(storage: Path) -> int:
    """Every file under the storage, measured without the code under test."""
    return sum(f.stat().st_size for f in storage.rglob("*") if f.is_file())


def data_file(server: RegistryServer, digest: str) -> Path:
    hexpart = digest.split(":", 1)[1]
    return server.storage_dir / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


def blob_ok(url: str, repo: str, digest: str) -> bool:
    """GET answers 200 with exactly the bytes of `digest` (a stale cache breaks off mid-body)."""
    try:
        r = requests.get(f"{url}/v2/{repo}/blobs/{digest}", timeout=10)
    except requests.RequestException:
        return False
    return r.status_code == 200 and "sha256:" + hashlib.sha256(r.content).hexdigest() == digest


def assert_pulls_whole(url: str, repo: str, image: p.Image) -> None:
    """The manifest by digest, and for an index every child, and every blob: all there."""
    assert p.get_manifest(url, repo, image.digest)[0] == image.manifest
    for child in image.children:
        assert_pulls_whole(url, repo, child)
    for blob in ((image.config,) if image.config else ()) + image.layers:
        assert blob_ok(url, repo, blob.digest), f"{repo}@{blob.digest} is not whole"


def skopeo_copy(server: RegistryServer, ref: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", "copy", "--all", "--src-tls-verify=false", f"docker://{server.host}/{ref}",
         f"oci:{dest}:{ref.rsplit(':', 1)[-1]}"],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False)


def unshared(image: p.Image) -> int:
    return image.manifest_size + image.config_size + sum(image.layer_sizes)


def layer(name: str, size: int) -> dict[str, bytes]:
    # Incompressible, so layer sizes are what they say.
    return {name: hashlib.shake_256(name.encode()).digest(size)}


# -- configuration -------------------------------------------------------------------------------


def test_command_argv__flags_after_garbage_collect__else_at_the_end() -> None:
    assert gc.command_argv("docker-registry garbage-collect /etc/r.yml", dry_run=True, delete_untagged=True) == \
        ["docker-registry", "garbage-collect", "--dry-run", "--delete-untagged", "/etc/r.yml"]
    assert gc.command_argv("docker exec reg registry garbage-collect '/etc/my config.yml'", dry_run=False,
                           delete_untagged=False) == \
        ["docker", "exec", "reg", "registry", "garbage-collect", "/etc/my config.yml"]
    assert gc.command_argv("/usr/local/bin/gc-wrapper /etc/r.yml", dry_run=True, delete_untagged=False) == \
        ["/usr/local/bin/gc-wrapper", "/etc/r.yml", "--dry-run"]


def test_configured__unset__says_how_and_start_is_refused(configure, mia) -> None:
    configure(GC_COMMAND="")
    ok, reason = gc.configured()
    assert not ok and "REGISTRYUI_GC_COMMAND" in reason and "garbage-collect" in reason and "manage.py worker" in reason
    with pytest.raises(gc.Refused, match="REGISTRYUI_GC_COMMAND"):
        gc.start(mia, dry_run=True)
    configure(GC_COMMAND="registry garbage-collect 'unclosed")
    assert gc.configured()[0] is False
    assert GCRun.objects.count() == 0


def test_testbed__gc_safe_by_default__the_blob_cache_only_when_asked_for(tmp_path: Path) -> None:
    import yaml

    from testbed.server import _config_yaml

    assert "cache" not in yaml.safe_load(_config_yaml(tmp_path, 5000, True))["storage"]
    with RegistryServer(tmp_path / "default") as default:
        assert "cache" not in yaml.safe_load(default.config_path.read_text())["storage"]
    cached = yaml.safe_load(_config_yaml(tmp_path, 5000, True, True))["storage"]
    assert cached["cache"] == {"blobdescriptor": "inmemory"}


# -- preview and run -----------------------------------------------------------------------------


def test_preview_then_run__exactly_the_deleted_images_unshared_blobs_leave_the_disk__the_rest_pulls_whole(
        server: RegistryServer, mia: User, tmp_path: Path) -> None:
    from dashboard.deletion import actions as deleting

    base = layer("base.bin", 3000)
    keep = p.build_image([base, layer("keep.bin", 5000)], labels={"v": "keep"})
    gone1 = p.build_image([base, layer("gone1.bin", 7000)], labels={"v": "gone1"})
    gone2 = p.build_image([layer("gone2a.bin", 11000), layer("shared-with-other.bin", 13000)], labels={"v": "gone2"})
    other = p.build_image([layer("shared-with-other.bin", 13000), layer("other.bin", 4000)], labels={"v": "other"})
    p.push_image(server.url, REPO, keep, "1.0")
    p.push_image(server.url, REPO, gone1, "old")
    p.push_image(server.url, REPO, gone2, "older")
    p.push_image(server.url, OTHER, other, "latest")
    deleting.delete_image(mia, REPO, gone1.digest, ["old"])
    deleting.delete_image(mia, REPO, gone2.digest, ["older"])
    # The shared base layer stays (keep), and so does gone2's second layer (other, another repository).
    expected = {gone1.digest, gone1.config_digest, gone1.layer_digests[1],
                gone2.digest, gone2.config_digest, gone2.layer_digests[0]}
    expected_bytes = (gone1.manifest_size + gone1.config_size + gone1.layer_sizes[1]
                      + gone2.manifest_size + gone2.config_size + gone2.layer_sizes[0])
    assert expected_bytes == sum(data_file(server, d).stat().st_size for d in expected)
    on_disk = disk_bytes(server.storage_dir)

    preview = gc.start(mia, dry_run=True)

    assert preview.state == "succeeded", preview.error + preview.output
    assert (preview.username, preview.user, preview.exit_code, preview.phase, preview.active) == \
        ("mia", mia, 0, "done", False)
    assert set(preview.report["eligible_blobs"]) == expected and preview.eligible_blobs == 6
    assert preview.bytes_eligible == expected_bytes
    assert preview.report["blob_sizes"] == {d: data_file(server, d).stat().st_size for d in expected}
    # In use: manifest, config and two layers of each kept image.
    assert preview.report["by_repo"] == {REPO: 4, OTHER: 4} and preview.marked == 8
    assert preview.eligible_manifests == 0 and preview.deleted_blobs == 0 and preview.bytes_freed is None
    assert disk_bytes(server.storage_dir) == on_disk, "a dry run deleted something"
    assert "garbage-collect --dry-run" in preview.output and preview.tail.endswith(preview.output.rstrip()[-80:])
    assert gc.refusal(preview) == ""

    run = gc.start(mia, dry_run=False, preview=preview)

    assert run.state == "succeeded", run.error + run.output
    assert run.preview == preview and not run.dry_run and run.username == "mia"
    assert on_disk - disk_bytes(server.storage_dir) == expected_bytes
    assert run.bytes_freed == run.bytes_before - run.bytes_after == expected_bytes == run.bytes_eligible
    assert run.deleted_blobs == run.eligible_blobs == 6 and run.deleted_manifests == 0
    assert not any(data_file(server, d).exists() for d in expected)
    assert_pulls_whole(server.url, REPO, keep)
    assert_pulls_whole(server.url, OTHER, other)
    for i, ref in enumerate([f"{REPO}:1.0", f"{OTHER}:latest"]):
        copied = skopeo_copy(server, ref, tmp_path / f"oci-{i}")
        assert copied.returncode == 0, copied.stderr
    assert gc.active_run() is None


# -- the blob descriptor cache after GC ----------------------------------------------------------


def _push_delete_collect(server: RegistryServer, user: User, image: p.Image) -> None:
    p.push_image(server.url, REPO, image, "v1")
    p.delete_manifest(server.url, REPO, image.digest)
    preview = gc.start(user, dry_run=True)
    run = gc.start(user, dry_run=False, preview=preview)
    assert run.state == "succeeded" and run.deleted_blobs == 3, run.output
    assert not data_file(server, image.layer_digests[0]).exists()


def test_repush_after_gc__no_blob_cache__the_pushed_image_is_complete(server: RegistryServer, mia: User) -> None:
    image = p.build_image([layer("repushed.bin", 6000)], labels={"v": "repushed"})
    _push_delete_collect(server, mia, image)
    # The registry asks its storage: the collected blobs are unknown, so the push uploads them.
    assert not p.blob_exists(server.url, REPO, image.layer_digests[0])
    p.push_image(server.url, REPO, image, "v1")
    assert_pulls_whole(server.url, REPO, image)


def test_repush_after_gc__inmemory_blob_cache__the_trap_broken_image_until_restart_and_repush(
        tmp_path: Path, configure, settings, mia: User) -> None:
    """Why the shipped config has no `storage.cache`: registry:2's default `inmemory` cache still
    says the collected blobs exist (the manifest's own blob too), so the re-push uploads nothing,
    every PUT answers 201, and what was pushed cannot be pulled: the tag is 404 and each blob GET
    breaks off mid-body. A restart does not mend it (the blobs are really gone); pushing again
    after the restart does."""
    with RegistryServer(tmp_path / "cached", port=free_port(), blob_cache=True) as server:
        point_at(configure, settings, server)
        image = p.build_image([layer("cached.bin", 6000)], labels={"v": "cached"})
        _push_delete_collect(server, mia, image)
        assert p.blob_exists(server.url, REPO, image.layer_digests[0]), "the cache no longer lies: re-check the docs"
        assert p.push_image(server.url, REPO, image, "v1") == image.digest  # every step answered 201
        assert p.head_manifest(server.url, REPO, "v1") is None
        assert not blob_ok(server.url, REPO, image.layer_digests[0])
        assert not blob_ok(server.url, REPO, image.config_digest)
        server.stop()
        server.start()
        assert p.head_manifest(server.url, REPO, "v1") is None
        assert requests.get(f"{server.url}/v2/{REPO}/blobs/{image.layer_digests[0]}", timeout=5).status_code == 404
        p.push_image(server.url, REPO, image, "v1")
        assert_pulls_whole(server.url, REPO, image)


# -- --delete-untagged and tagged multi-arch images (distribution#3178) --------------------------------


def _multi_arch(server: RegistryServer) -> tuple[p.Image, p.Image]:
    amd64 = p.build_image([layer("amd64.bin", 2000)], platform="linux/amd64", labels={"a": "amd64"})
    arm64 = p.build_image([layer("arm64.bin", 2500)], platform="linux/arm64", labels={"a": "arm64"})
    index = p.build_index([amd64, arm64])
    p.push_image(server.url, MULTI, index, "latest")  # the children by digest only: untagged
    # 2.8's --delete-untagged fails on a repository without any tag, so REPO has one.
    p.push_image(server.url, REPO, p.build_image([layer("tagged.bin", 1000)], labels={"v": "tagged"}), "1.0")
    loose = p.build_image([layer("loose.bin", 1500)], labels={"v": "loose"})
    p.push_image(server.url, REPO, loose)  # by digest only: an untagged image nothing references
    return index, loose


def test_delete_untagged__tagged_index_children_eligible_on_2_8__refused_and_a_plain_run_keeps_the_index(
        server: RegistryServer, mia: User) -> None:
    index, loose = _multi_arch(server)
    children = [c.digest for c in index.children]

    preview = gc.start(mia, dry_run=True, delete_untagged=True)

    assert preview.state == "succeeded", preview.error + preview.output
    eligible = {(m["repo"], m["digest"]) for m in preview.report["eligible_manifests"]}
    assert eligible == {(MULTI, children[0]), (MULTI, children[1]), (REPO, loose.digest)}
    assert preview.eligible_manifests == 3
    hits = {(h["repo"], h["digest"], tuple(h["referenced_by"])) for h in preview.report["protected_hits"]}
    assert hits == {(MULTI, d, (f"{MULTI}:latest",)) for d in children}
    reason = gc.refusal(preview)
    assert all(d in reason for d in children) and f"{MULTI}:latest" in reason and "distribution#3178" in reason
    assert loose.digest not in reason

    runs = GCRun.objects.count()
    with pytest.raises(gc.Refused) as refused:
        gc.start(mia, dry_run=False, delete_untagged=True, preview=preview)
    assert all(d in str(refused.value) for d in children)
    with pytest.raises(gc.Refused, match="must come from a preview"):
        gc.start(mia, dry_run=False, delete_untagged=True)
    plain = gc.start(mia, dry_run=True)
    with pytest.raises(gc.Refused, match="must come from a preview"):
        gc.start(mia, dry_run=False, delete_untagged=True, preview=plain)
    assert GCRun.objects.count() == runs + 1  # only the plain preview
    assert_pulls_whole(server.url, MULTI, index)

    assert gc.refusal(plain) == ""
    run = gc.start(mia, dry_run=False, preview=plain)

    assert run.state == "succeeded" and run.deleted_manifests == 0, run.error + run.output
    assert_pulls_whole(server.url, MULTI, index)
    assert_pulls_whole(server.url, REPO, loose)  # untagged, but kept without --delete-untagged


def test_gc_command__delete_untagged_with_a_tagged_index__the_worker_refuses_before_deleting_anything(
        server: RegistryServer, capsys) -> None:
    index, loose = _multi_arch(server)
    before = disk_bytes(server.storage_dir)
    with pytest.raises(CommandError) as failed:
        call_command("gc", "--delete-untagged")
    run = GCRun.objects.get()
    assert run.username == "manage.py" and run.user is None and run.state == "failed" and not run.active
    assert all(c.digest in run.error for c in index.children) and "Nothing was deleted" in run.error
    assert str(failed.value) == run.error
    assert "safety check" in run.output and "--dry-run --delete-untagged" in run.output
    assert disk_bytes(server.storage_dir) == before
    assert_pulls_whole(server.url, MULTI, index)
    assert "safety check" in capsys.readouterr().out


def test_delete_untagged__no_tagged_index_hit__untagged_manifest_and_its_blobs_deleted(
        server: RegistryServer, mia: User) -> None:
    tagged = p.build_image([layer("tagged.bin", 3000)], labels={"v": "tagged"})
    loose = p.build_image([layer("loose.bin", 1500)], labels={"v": "loose"})
    p.push_image(server.url, REPO, tagged, "1.0")
    p.push_image(server.url, REPO, loose)
    preview = gc.start(mia, dry_run=True, delete_untagged=True)
    assert preview.report["protected_hits"] == [] and gc.refusal(preview) == ""
    assert preview.report["eligible_manifests"] == [{"repo": REPO, "digest": loose.digest}]
    assert preview.bytes_eligible == unshared(loose)

    run = gc.start(mia, dry_run=False, delete_untagged=True, preview=preview)

    assert run.state == "succeeded", run.error + run.output
    assert run.report["guard"] == {"exit_code": 0, "protected_hits": []}
    assert (run.deleted_manifests, run.deleted_blobs, run.bytes_freed) == (1, 3, unshared(loose))
    assert p.head_manifest(server.url, REPO, loose.digest) is None
    assert_pulls_whole(server.url, REPO, tagged)


def test_delete_untagged__repository_without_any_tag__2_8_fails_and_the_error_says_why(
        seeded: RegistryServer, mia: User) -> None:
    loose = p.build_image([layer("loose.bin", 1500)], labels={"v": "loose"})
    p.push_image(seeded.url, REPO, loose)  # by digest only: the repository never had a tag
    preview = gc.start(mia, dry_run=True, delete_untagged=True)
    assert (preview.state, preview.exit_code) == ("failed", 1)
    assert f"failed to retrieve tags unknown repository name={REPO}" in preview.output
    assert f"a repository that has no tag at all ({REPO})" in preview.error
    assert gc.refusal(preview) != ""  # nothing can run from a failed preview


def test_empty_registry__2_8_fails__the_error_says_the_storage_holds_no_repositories(
        server: RegistryServer, mia: User) -> None:
    run = gc.start(mia, dry_run=True)
    assert (run.state, run.exit_code) == ("failed", 1)
    assert "Path not found: /docker/registry/v2/repositories" in run.output
    assert "the registry is still empty" in run.error


# -- one at a time ---------------------------------------------------------------------------------


def test_lock__the_database_allows_one_active_run(mia: User) -> None:
    GCRun.objects.create(username="a", active=True, state="running", heartbeat_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        GCRun.objects.create(username="b", active=True)
    GCRun.objects.create(username="c", active=False, state="failed")  # any number of inactive ones


def test_start__while_a_run_holds_the_lock__already_running_names_it(seeded: RegistryServer, mia: User) -> None:
    holder = GCRun.objects.create(username="noor", active=True, state="running", heartbeat_at=timezone.now())
    with pytest.raises(gc.AlreadyRunning) as info:
        gc.start(mia, dry_run=True)
    assert info.value.run == holder and "noor" in str(info.value)
    assert gc.active_run() == holder
    assert GCRun.objects.count() == 1


def _gate_script(tmp_path: Path) -> Path:
    """A GC command that waits at a gate: it says "waiting", then runs the real garbage-collect
    once `gate/release` exists (bounded: 30 s). `gate/started.<pid>` says it is waiting."""
    gate = tmp_path / "gate"
    gate.mkdir()
    script = tmp_path / "gated-gc"
    script.write_text(f"""#!/bin/sh
touch "{gate}/started.$$"
echo "waiting at the gate"
i=0
while [ ! -e "{gate}/release" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
exec {registry_binary()} garbage-collect "$@"
""")
    script.chmod(0o755)
    return script


def _gated_env(tmp_path: Path, server: RegistryServer) -> dict[str, str]:
    """A file database both processes see, and the gated GC command."""
    script = _gate_script(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRYUI_", "DATABASE_URL"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'shared.sqlite3'}", REGISTRYUI_DATA_DIR=str(tmp_path / "data"),
               REGISTRYUI_REGISTRY_URL=server.url, REGISTRYUI_STORAGE_PATH=str(server.storage_dir),
               REGISTRYUI_GC_COMMAND=f"{script} {server.config_path}")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True,
                   timeout=SUBPROCESS_TIMEOUT_S)
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _rows(tmp_path: Path) -> list[dict]:
    with sqlite3.connect(tmp_path / "shared.sqlite3", timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM dashboard_gcrun ORDER BY id")]


def _poll(condition, what: str):
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_processes_at_once__one_runs__the_other_is_told_one_is_running(
        tmp_path: Path, server: RegistryServer) -> None:
    gone = p.build_image([layer("gone.bin", 4000)], labels={"v": "gone"})
    p.push_image(server.url, REPO, gone, "old")
    p.delete_manifest(server.url, REPO, gone.digest)
    env = _gated_env(tmp_path, server)
    gate = tmp_path / "gate"

    racers = [_manage(env, "gc", "--dry-run"), _manage(env, "gc", "--dry-run")]
    try:
        loser = _poll(lambda: next((r for r in racers if r.poll() is not None), None), "one racer to give up")
        winner = next(r for r in racers if r is not loser)
        out, err = loser.communicate(timeout=SUBPROCESS_TIMEOUT_S)
        assert loser.returncode == 1, out + err
        assert "already" in err and "only one runs at a time" in err and "started by manage.py" in err
        assert len(list(gate.glob("started.*"))) == 1
        # The winner's row streams while it runs: its output so far and a fresh heartbeat.
        row = _poll(lambda: next((r for r in _rows(tmp_path) if "waiting at the gate" in r["output"]), None),
                    "the gated output in the database")
        assert (row["state"], row["active"], row["phase"], row["username"]) == ("running", 1, "marking", "manage.py")
        assert winner.poll() is None
        (gate / "release").touch()
        out, err = winner.communicate(timeout=SUBPROCESS_TIMEOUT_S)
        assert winner.returncode == 0, out + err
        assert "blob eligible for deletion" in out and "preview #1: 0 in use, 3 blobs" in out
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    [row] = _rows(tmp_path)
    assert (row["state"], row["active"], row["eligible_blobs"], row["exit_code"]) == ("succeeded", 0, 3, 0)
    # The lock is free again.
    again = _manage(env, "gc", "--dry-run")
    out, err = again.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert again.returncode == 0, out + err
    assert [r["state"] for r in _rows(tmp_path)] == ["succeeded", "succeeded"]


def test_queued_from_the_web_side__a_real_db_worker_process_runs_it(tmp_path: Path, seeded: RegistryServer) -> None:
    """The production path: start() puts the task in the database, `manage.py db_worker` runs it."""
    env = _gated_env(tmp_path, seeded)
    (tmp_path / "gate" / "release").touch()
    queued = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from dashboard.gc import runner as gc; from django.contrib.auth.models import User; "
         "run = gc.start(User.objects.create_user('web'), dry_run=True); print(run.state)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert queued.returncode == 0 and queued.stdout.strip().endswith("queued"), queued.stdout + queued.stderr
    worker = subprocess.run([sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    [row] = _rows(tmp_path)
    assert (row["state"], row["active"], row["username"], row["phase"]) == ("succeeded", 0, "web", "done")
    assert "waiting at the gate" in row["output"] and "blobs marked" in row["output"]


def test_worker__its_run_marked_stale_meanwhile__stops_the_command_at_once(
        seeded: RegistryServer, configure, tmp_path: Path) -> None:
    script = _gate_script(tmp_path)
    configure(GC_COMMAND=f"{script} {seeded.config_path}")
    run = gc.create_run(None, username="worker-a", dry_run=True)

    def another_process_marks_it_stale(line: str) -> None:
        if "waiting at the gate" in line:
            GCRun.objects.filter(pk=run.pk).update(state="failed", active=False, error="the worker stopped: test")

    began = time.monotonic()
    run = gc.execute(run.pk, on_line=another_process_marks_it_stale)
    assert time.monotonic() - began < 10, "the gated command was not stopped"
    assert (run.state, run.active, run.error) == ("failed", False, "the worker stopped: test")
    assert "this run was marked failed meanwhile" in run.output
    [started] = (tmp_path / "gate").glob("started.*")
    with pytest.raises(ProcessLookupError):
        os.kill(int(started.suffix[1:]), 0)


def test_timeout__a_hung_command_is_stopped_and_the_run_failed(seeded: RegistryServer, mia: User, configure,
                                                               tmp_path: Path) -> None:
    script = _gate_script(tmp_path)
    configure(GC_COMMAND=f"{script} {seeded.config_path}", GC_TIMEOUT=1)
    run = gc.start(mia, dry_run=True)
    assert run.state == "failed" and run.exit_code != 0 and not run.active
    assert "[stopped: still running after 1 s]" in run.output and "still running after 1 s" in run.error
    assert gc.active_run() is None


# -- failures ---------------------------------------------------------------------------------------


def test_failing_command__bad_config_path__failed_with_its_stderr_and_the_lock_is_free(
        seeded: RegistryServer, mia: User, configure, settings, tmp_path: Path) -> None:
    good = settings.REGISTRYUI["GC_COMMAND"]
    configure(GC_COMMAND=f"{registry_binary()} garbage-collect {tmp_path}/missing.yml")
    run = gc.start(mia, dry_run=True)
    assert (run.state, run.exit_code, run.active, run.phase) == ("failed", 1, False, "done")
    assert f"configuration error: open {tmp_path}/missing.yml: no such file or directory" in run.output
    assert "exit code 1" in run.error and "configuration error" in run.error
    assert gc.active_run() is None

    configure(GC_COMMAND="/nonexistent/registry garbage-collect x.yml")
    missing = gc.start(mia, dry_run=True)
    assert (missing.state, missing.exit_code) == ("failed", 127) and "cannot run /nonexistent/registry" in missing.error

    configure(GC_COMMAND=good)
    assert gc.start(mia, dry_run=True).state == "succeeded"


def test_stale_run__old_heartbeat__marked_failed_and_the_lock_freed(seeded: RegistryServer, mia: User) -> None:
    now = timezone.now()
    dead = GCRun.objects.create(username="gone", active=True, state="running", started_at=now - timedelta(minutes=5),
                                heartbeat_at=now - timedelta(seconds=61))
    assert gc.active_run() is None
    dead.refresh_from_db()
    assert (dead.state, dead.active, dead.phase) == ("failed", False, "done") and dead.finished_at is not None
    assert dead.error.startswith("the worker stopped")

    never = GCRun.objects.create(username="nobody", active=True, state="queued")
    GCRun.objects.filter(pk=never.pk).update(created_at=now - timedelta(seconds=120))
    assert gc.active_run() is None
    never.refresh_from_db()
    assert never.state == "failed" and "manage.py worker" in never.error
    # A late worker picking up the queued task leaves the failed run alone.
    assert gc.execute(never.pk).output == ""

    alive = GCRun.objects.create(username="busy", active=True, state="running", heartbeat_at=now - timedelta(seconds=5))
    assert gc.active_run() == alive
    GCRun.objects.filter(pk=alive.pk).update(heartbeat_at=now - timedelta(seconds=90))
    assert gc.start(mia, dry_run=True).state == "succeeded"


def test_output__only_the_last_200_kb_kept__counted_lines_said(seeded: RegistryServer, mia: User, configure) -> None:
    script = "for i in range(30000): print(f'line {i} ' + 'x' * 40)"
    configure(GC_COMMAND=f"{sys.executable} -c \"{script}\"")
    run = gc.start(mia, dry_run=True)
    assert run.state == "succeeded", run.error
    assert GCRun.OUTPUT_LIMIT - 100 < len(run.output) <= GCRun.OUTPUT_LIMIT + 100
    assert run.output.startswith("[… ") and "earlier lines not kept" in run.output.splitlines()[0]
    assert run.tail.splitlines()[-1].startswith("line 29999 ") and len(run.tail.splitlines()) == 40


# -- hooks -----------------------------------------------------------------------------------------------


def test_hooks__before_and_after_output_stored(seeded: RegistryServer, mia: User, configure) -> None:
    configure(GC_BEFORE_COMMAND="echo before dry=$REGISTRYUI_GC_DRY_RUN run=$REGISTRYUI_GC_RUN_ID",
              GC_AFTER_COMMAND="echo after exit=$REGISTRYUI_GC_EXIT_CODE; echo on-stderr >&2")
    run = gc.start(mia, dry_run=True)
    assert run.state == "succeeded", run.error + run.hook_output
    assert f"before dry=1 run={run.pk}" in run.hook_output and "after exit=0" in run.hook_output
    assert "on-stderr" in run.hook_output and "(after hook exited with code 0)" in run.hook_output
    assert run.hook_output.index("before dry") < run.hook_output.index("after exit")
    assert "blobs marked" in run.output


def test_hooks__failing_before_hook__gc_does_not_run_and_the_after_hook_still_does(
        server: RegistryServer, mia: User, configure) -> None:
    gone = p.build_image([layer("gone.bin", 4000)], labels={"v": "gone"})
    p.push_image(server.url, REPO, gone, "old")
    p.delete_manifest(server.url, REPO, gone.digest)
    preview = gc.start(mia, dry_run=True)
    assert preview.eligible_blobs == 3
    configure(GC_BEFORE_COMMAND="echo cannot switch to read-only >&2; exit 3", GC_AFTER_COMMAND="echo after ran")
    before = disk_bytes(server.storage_dir)

    run = gc.start(mia, dry_run=False, preview=preview)

    assert (run.state, run.exit_code, run.active) == ("failed", None, False)
    assert "before hook failed (exit code 3)" in run.error and "did not run" in run.error
    assert "cannot switch to read-only" in run.hook_output and "after ran" in run.hook_output
    assert run.output == "" and run.deleted_blobs == 0
    assert disk_bytes(server.storage_dir) == before and data_file(server, gone.layer_digests[0]).exists()
    assert gc.active_run() is None


def test_hooks__failing_after_hook__run_failed_but_says_gc_itself_succeeded(
        seeded: RegistryServer, mia: User, configure) -> None:
    configure(GC_AFTER_COMMAND="echo restart failed; exit 1")
    run = gc.start(mia, dry_run=True)
    assert (run.state, run.exit_code) == ("failed", 0)
    assert "after hook failed (exit code 1)" in run.error and "garbage collection itself succeeded" in run.error


def test_admin__gc_runs_are_an_audit_read_only(seeded: RegistryServer, mia: User, admin_client) -> None:
    run = gc.start(mia, dry_run=True)
    page = admin_client.get("/admin/dashboard/gcrun/").content.decode()
    assert "mia" in page and "preview" in page and "Succeeded" in page
    assert admin_client.get(f"/admin/dashboard/gcrun/{run.pk}/change/").status_code == 200
    assert admin_client.get("/admin/dashboard/gcrun/add/").status_code == 403
    assert admin_client.post(f"/admin/dashboard/gcrun/{run.pk}/delete/").status_code == 403
