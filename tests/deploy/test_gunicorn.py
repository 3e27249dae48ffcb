"""The image's start, for real, without Docker: collectstatic as the Dockerfile runs it, then the
Dockerfile's own CMD (migrate, ensure_admin, gunicorn with gunicorn.conf.py) and its own
HEALTHCHECK, in production settings (HTTPS redirect, HSTS, secure cookies), on a free loopback
port. Static files must come out with hashed names, far-future caching and gzip.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.server import free_port

ROOT = Path(__file__).resolve().parents[2]
HOST = "registry.example.test"
ONE_YEAR = 365 * 24 * 3600


def _dockerfile_json(word: str) -> list[str]:
    """The last stage's `WORD [...]` instruction (JSON form), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    last = [line for line in text.splitlines() if line.startswith(f"{word} ")][-1]
    return json.loads(last[last.index("["):])


@dataclass
class Server:
    port: int
    env: dict[str, str]
    stdout: Path
    stderr: Path
    static_root: Path

    def request(self, path: str, headers: dict[str, str] | None = None, *, https: bool = True
                ) -> tuple[int, dict[str, str], bytes]:
        """One request as a TLS-terminating proxy on this machine would send it (gunicorn
        believes X-Forwarded-Proto from 127.0.0.1 by default)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            sent = {"Host": HOST, **({"X-Forwarded-Proto": "https"} if https else {}), **(headers or {})}
            conn.request("GET", path, headers=sent)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def logs(self) -> str:
        return f"--- stdout\n{self.stdout.read_text()[-3000:]}\n--- stderr\n{self.stderr.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRYUI_", "DJANGO_", "REGISTRY_"))}
    env.pop("DATABASE_URL", None)
    env.update({
        # The image's python and gunicorn are the venv's here.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        # The image's ENV: without it gunicorn's access log sits in a block buffer, not in `docker logs`.
        "PYTHONUNBUFFERED": "1",
        "REGISTRYUI_DATA_DIR": str(tmp / "data"),
        "REGISTRYUI_STATIC_ROOT": str(tmp / "static"),
        "REGISTRYUI_LISTEN": f"127.0.0.1:{port}",
        "REGISTRYUI_WEB_WORKERS": "2",
        # Production: what .env.example and README ask for behind a TLS proxy.
        "REGISTRYUI_DEBUG": "false",
        "REGISTRYUI_SECRET_KEY": secrets.token_urlsafe(50),
        "REGISTRYUI_ALLOWED_HOSTS": HOST,
        "REGISTRYUI_SECURE_COOKIES": "true",
        "REGISTRYUI_SSL_REDIRECT": "true",
        "REGISTRYUI_HSTS_SECONDS": str(ONE_YEAR),
        # Nothing listens there: the pages fetched here must not need the registry.
        "REGISTRYUI_REGISTRY_URL": "http://127.0.0.1:9",
        "DJANGO_SUPERUSER_USERNAME": "admin",
        "DJANGO_SUPERUSER_PASSWORD": secrets.token_urlsafe(16),
    })
    # The Dockerfile's build step: the manifest storage forced on for collectstatic.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, check=True,
                   env={**env, "REGISTRYUI_STATIC_MANIFEST": "true"}, timeout=120)
    assert (tmp / "static" / "staticfiles.json").is_file()
    # The image's environment keeps it on; the Dockerfile says so too (test_packaging checks).
    env["REGISTRYUI_STATIC_MANIFEST"] = "true"
    cmd = _dockerfile_json("CMD")
    stdout, stderr = tmp / "stdout.log", tmp / "stderr.log"
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
    srv = Server(port, env, stdout, stderr, tmp / "static")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if srv.request("/-/live", https=False)[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, f"the image's command exited with {proc.returncode}\n{srv.logs()}"
            assert time.monotonic() < deadline, f"gunicorn did not answer /-/live within 60 s\n{srv.logs()}"
            time.sleep(0.2)
        yield srv
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # our own session: gunicorn's master and workers
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_the_images_command_migrated_created_the_admin_and_serves_with_gunicorn(server: Server) -> None:
    out = server.stdout.read_text()
    assert "created admin “admin”" in out, server.logs()
    assert (Path(server.env["REGISTRYUI_DATA_DIR"]) / "db.sqlite3").is_file()
    err = server.stderr.read_text()
    assert "Using worker: gthread" in err and err.count("Booting worker") >= 2, server.logs()
    # The access log goes to stdout, with the forwarded-for column. A worker writes the line just
    # after the response, so the request that answered may still be writing it: poll.
    deadline = time.monotonic() + 10
    while not re.search(r'"GET /-/live HTTP/1\.1" 200 ', server.stdout.read_text()):
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.05)


def test_the_images_healthcheck_passes(server: Server) -> None:
    """The Dockerfile's HEALTHCHECK command, as Docker would run it inside the container."""
    probe = _dockerfile_json("HEALTHCHECK")
    result = subprocess.run(probe, env=server.env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    # It sends an allowed Host: with one that is not, Django would answer 400.
    assert server.request("/-/live", {"Host": "elsewhere.example"}, https=False)[0] == 400


def test_https_is_enforced_except_for_probes(server: Server) -> None:
    status, headers, _ = server.request("/-/login/", https=False)
    assert status == 301 and headers["location"] == f"https://{HOST}/-/login/"
    assert server.request("/-/health.json", https=False)[0] != 301
    status, headers, _ = server.request("/-/login/")
    assert status == 200
    assert headers["strict-transport-security"] == f"max-age={ONE_YEAR}"
    assert "secure" in headers["set-cookie"].lower()


def test_static_files_have_hashed_names_far_future_caching_and_gzip(server: Server) -> None:
    status, _, body = server.request("/-/login/")
    assert status == 200
    css = re.search(rb'href="(/static/registryui/app\.([0-9a-f]{12})\.css)"', body)
    js = re.search(rb'src="(/static/registryui/app\.[0-9a-f]{12}\.js)"', body)
    assert css and js, body[:2000]
    url = css.group(1).decode()

    status, headers, gz = server.request(url, {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip" and "accept-encoding" in headers["vary"].lower()
    assert "immutable" in headers["cache-control"]
    max_age = int(re.search(r"max-age=(\d+)", headers["cache-control"]).group(1))
    assert max_age >= ONE_YEAR
    on_disk = (server.static_root / url.removeprefix("/static/")).read_bytes()
    assert gzip.decompress(gz) == on_disk

    status, headers, plain = server.request(url)
    assert status == 200 and "content-encoding" not in headers and plain == on_disk

    # The unhashed name still answers, but may change: no long caching for it.
    status, headers, _ = server.request("/static/registryui/app.css")
    assert status == 200 and "immutable" not in headers.get("cache-control", "")


def test_gunicorn_config_reads_its_variables() -> None:
    env = {**os.environ, "REGISTRYUI_LISTEN": "0.0.0.0:9000", "REGISTRYUI_WEB_WORKERS": "3",
           "REGISTRYUI_WEB_THREADS": "7", "REGISTRYUI_WEB_TIMEOUT": "90",
           "REGISTRYUI_FORWARDED_ALLOW_IPS": "10.1.2.3,192.168.0.0/16"}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    out = subprocess.run([str(gunicorn), "-c", "gunicorn.conf.py", "--print-config"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    config = dict(re.findall(r"^(\w+)\s+= (.*)$", out, re.MULTILINE))
    assert config["bind"] == "['0.0.0.0:9000']"
    assert (config["workers"], config["threads"], config["timeout"]) == ("3", "7", "90")
    assert config["worker_class"] == "gthread"
    assert config["forwarded_allow_ips"] == "['10.1.2.3', '192.168.0.0/16']"
    assert config["accesslog"] == "-" and config["wsgi_app"] == "registryui.wsgi:application"
