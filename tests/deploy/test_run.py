"""`make run` for real: scripts/run's own server start (lib.sh's `serve`, with this test run's venv
for .venv) on a free loopback port. It serves like the image: gunicorn with gunicorn.conf.py,
static files collected with hashed names and served by WhiteNoise, and the task worker beside it.
The sign-in box is the last thing before "listening on", and Ctrl+C stops everything.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.server import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


@dataclass
class Run:
    proc: subprocess.Popen
    port: int
    log: Path

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, predicate, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"scripts/run exited with {self.proc.returncode}\n{self.output()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{self.output()}"
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            return self.get("/-/live")[0] == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGINT) -> int:
        """`sig` to the whole process group, as a terminal's Ctrl+C sends it; the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            raise


def _spawn(tmp: Path, name: str, port: int) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRYUI_", "DJANGO_", "REGISTRY_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "REGISTRYUI_DATA_DIR": str(tmp / "data"),
            "REGISTRYUI_STATIC_ROOT": str(tmp / "static"),
            "REGISTRYUI_LISTEN": f"127.0.0.1:{port}",
            "REGISTRYUI_WEB_WORKERS": "2",
            # Nothing listens there: the pages fetched here must not need the registry.
            "REGISTRYUI_REGISTRY_URL": "http://127.0.0.1:9",
        }
    )
    log = tmp / f"{name}.log"
    # scripts/run is `ensure_venv` then `serve`; ensure_venv would install into the checkout's
    # .venv, so this runs `serve` with the venv running the tests.
    script = f'source scripts/lib.sh && VENV="{VENV}" && serve'
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", script], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, log


def _start(tmp: Path, name: str) -> Run:
    port = free_port()
    proc, log = _spawn(tmp, name, port)
    run = Run(proc, port, log)
    try:
        run.wait_for(run.answers, "the dashboard on /-/live")
    except BaseException:
        run.stop(signal.SIGTERM)
        raise
    return run


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    run = _start(tmp_path_factory.mktemp("run"), "first")
    yield run
    run.stop()


def _lines_before_listening(out: str, port: int) -> list[str]:
    lines = out.splitlines()
    [at] = [i for i, line in enumerate(lines) if line.startswith("== registryui listening on ")]
    assert lines[at].startswith(f"== registryui listening on http://127.0.0.1:{port}, reading http://127.0.0.1:9")
    return lines[:at]


def test_scripts_run__starts_gunicorn_as_the_images_command_does() -> None:
    image = json.loads(
        next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))[4:]
    )[2]
    [image_gunicorn] = [shlex.split(step)[1:] for step in image.split("&&") if "gunicorn" in step]
    [run_gunicorn] = [
        shlex.split(line)[1:]
        for line in (ROOT / "scripts" / "lib.sh").read_text().splitlines()
        if line.strip().startswith('"$VENV/bin/gunicorn"')
    ]
    assert run_gunicorn[:-1] == image_gunicorn[1:] and run_gunicorn[-1] == "&"


def test_scripts_run__is_ensure_venv_then_serve() -> None:
    steps = [
        line
        for line in (ROOT / "scripts" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert steps[-2:] == ["ensure_venv", "serve"]
    assert "runserver" not in (ROOT / "scripts" / "lib.sh").read_text()


def test_make_run__serves_with_gunicorn_and_its_config_and_runs_the_worker(first: Run) -> None:
    status, headers, body = first.get("/-/login/")
    assert status == 200 and headers["server"] == "gunicorn"
    out = first.output()
    assert re.search(rf"Listening at: http://127\.0\.0\.1:{first.port} ", out), out
    # gunicorn.conf.py's choices, not gunicorn's defaults (sync worker, no access log).
    assert "Using worker: gthread" in out and out.count("Booting worker") == 2
    first.wait_for(lambda: '"GET /-/login/ HTTP/1.1" 200 ' in first.output(), "the access log line")
    first.wait_for(lambda: "Starting worker worker_id=" in first.output(), "the task worker")


@pytest.mark.parametrize(("name", "content_type"), [("app", "text/css"), ("favicon", "image/svg+xml")])
def test_make_run__static_files_collected_hashed_and_served_with_their_type(
    first: Run, name: str, content_type: str
) -> None:
    body = first.get("/-/login/")[2].decode()
    found = re.search(rf'href="(/static/registryui/{name}\.[0-9a-f]{{12}}\.(?:css|svg))"', body)
    assert found, body[:3000]
    status, headers, content = first.get(found.group(1))
    assert status == 200 and headers["content-type"].startswith(content_type)
    assert "immutable" in headers["cache-control"]
    source = ROOT / "static" / "registryui" / f"{name}.{found.group(1).rsplit('.', 1)[1]}"
    assert content.startswith(source.read_bytes()[:200])


def test_make_run__sign_in_box_is_the_last_thing_before_listening(first: Run) -> None:
    out = first.output()
    before = _lines_before_listening(out, first.port)
    assert before[-1].startswith("└"), "\n".join(before[-15:])
    top = max(i for i, line in enumerate(before) if line.startswith("┌"))
    box = "\n".join(before[top:])
    assert re.search(rf"│ +URL: +http://127\.0\.0\.1:{first.port}/-/login/ +│", box), box
    password = re.search(r"│ +password: +(\S+) +│", box).group(1)
    path = re.search(r"│ Saved in (\S+) +│", box).group(1)
    assert Path(path).read_text().endswith(f"password: {password}\n")
    assert Path(path).stat().st_mode & 0o777 == 0o600
    # The server and the worker say nothing before it.
    head = "\n".join(before)
    assert "gunicorn" not in head and "Starting worker" not in head


def test_make_run__second_start_says_how_to_reset_last_and_ctrl_c_stops_everything(first: Run) -> None:
    first_code = first.stop()
    assert first_code == 130, first.output()
    assert not first.answers()
    tmp = first.log.parent
    second = _start(tmp, "second")
    try:
        before = _lines_before_listening(second.output(), second.port)
        tail = "\n".join(before[-6:])
        assert "┌" not in second.output() and "changepassword admin" in tail, tail
        assert before[-1].startswith("  admin’s one-time password is still in"), tail
    finally:
        code = second.stop()
    assert code == 130
    # Nothing of the group is left: gunicorn's master and workers, the task worker.
    with pytest.raises(ProcessLookupError):
        os.killpg(second.proc.pid, 0)


def test_make_run__port_in_use__exits_with_gunicorns_error_and_stops_the_worker(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, log = _spawn(tmp_path, "taken", port)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    out = log.read_text()
    assert code != 0 and "Connection in use" in out, out
    # The worker went with it: nothing of the group is left behind.
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
