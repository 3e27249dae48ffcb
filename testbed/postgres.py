"""A throwaway PostgreSQL cluster (Debian's `postgresql` package) for tests and benchmarks.

    with PostgresCluster() as pg:
        os.environ["DATABASE_URL"] = pg.url        # before Django reads its settings

From a shell (scripts/test runs the index tests a second time this way):

    python -m testbed.postgres run -- python -m pytest -p testbed.postgres tests/
    python -m testbed.postgres start DIR     # prints DATABASE_URL=…; then `... stop DIR`

initdb refuses to run as root, so as root the cluster runs as the `postgres` user the Debian
package creates (or `nobody`), in a temp dir that user owns. It listens on 127.0.0.1 only, on a
free port, with a random password; its unix socket stays in its own dir. The cluster collates
with ICU's en-US, as a real server would, so a query that orders strings without
`Collate(..., "C")` shows up here rather than in production.

Loaded as a pytest plugin (`-p testbed.postgres`) it deselects every test not marked
`@pytest.mark.postgres` (the tests of what reads or writes the index, wherever their feature's
folder is): the PostgreSQL pass runs the same command line as the SQLite pass.
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .server import free_port

__all__ = ["PostgresCluster", "PostgresError", "postgres_bindir"]

DATABASE = "registryui"
ROLE = "registryui"
START_TIMEOUT_S = 30
# Other databases may sort strings differently; the index's queries must not depend on it.
ICU_LOCALE = "en-US"
# The marker of the tests the PostgreSQL pass runs (declared in pyproject.toml).
MARKER = "postgres"


class PostgresError(RuntimeError):
    pass


def postgres_bindir() -> Path:
    """Where initdb and pg_ctl are: on PATH, or Debian's /usr/lib/postgresql/<version>/bin
    (which the package does not put on PATH); the newest version wins."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    raise PostgresError("PostgreSQL's server binaries (initdb, pg_ctl) are not installed. "
                        "Install them with `apt-get install postgresql` (Debian/Ubuntu).")


def _run_as() -> pwd.struct_passwd | None:
    """The user the server runs as: None (ourselves) unless we are root, which initdb refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError("running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL")


class PostgresCluster:
    """initdb, start, a database and a password; `url` is a DATABASE_URL for it."""

    def __init__(self, parent: Path | None = None, *, dir: Path | None = None) -> None:  # noqa: A002 - tempfile's name for the parent directory
        self.bindir = postgres_bindir()
        self.user = _run_as()
        self._parent = parent
        self.dir: Path | None = Path(dir) if dir is not None else None
        self.port: int | None = None
        self.password = secrets.token_urlsafe(18)
        self.collation = ""

    # -- paths -------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._require_dir() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._require_dir() / "socket"

    @property
    def log_path(self) -> Path:
        return self._require_dir() / "postgres.log"

    @property
    def url(self) -> str:
        if self.port is None:
            raise PostgresError("the cluster is not started")
        return f"postgres://{ROLE}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def _require_dir(self) -> Path:
        if self.dir is None:
            raise PostgresError("the cluster has no directory yet (start it first)")
        return self.dir

    # -- running -----------------------------------------------------------------------------

    def _cmd(self, *argv: str | Path, check: bool = True, timeout: float = 60,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            # Python drops to the user itself (no runuser/su needed, no shell quoting).
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                                cwd=self._require_dir(), env={**_clean_env(), **(env or {})},
                                stdin=subprocess.DEVNULL, check=False, **kwargs)
        if check and result.returncode != 0:
            raise PostgresError(f"{Path(str(argv[0])).name} failed ({result.returncode}):\n"
                                f"{result.stdout}{result.stderr}\n{self.log_tail()}")
        return result

    def _make_dir(self) -> None:
        if self.dir is None:
            # In the system temp dir, not under the caller's (pytest's tmp dirs are 0700 root).
            self.dir = Path(tempfile.mkdtemp(prefix="registryui-pg-", dir=self._parent))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self.user is not None:
            for path in (self.dir, self.socket_dir):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
            _check_reachable(self.dir, self.user)
        self.dir.chmod(0o700)

    def _initdb(self) -> None:
        pwfile = self._require_dir() / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        pwfile.chmod(0o600)
        base = [self.bindir / "initdb", "-D", self.data_dir, "-U", ROLE, f"--pwfile={pwfile}", "-E", "UTF8",
                "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]
        try:
            result = self._cmd(*base, "--locale=C.UTF-8", "--locale-provider=icu", f"--icu-locale={ICU_LOCALE}",
                               check=False, timeout=120)
            self.collation = f"icu {ICU_LOCALE}"
            if result.returncode != 0:
                # A build without ICU: the libc default, whatever the machine has.
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self._cmd(*base, timeout=120)
                self.collation = "libc"
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> PostgresCluster:
        self._make_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        for attempt in range(3):
            self.port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            result = self._cmd(self.bindir / "pg_ctl", "-D", self.data_dir, "-l", self.log_path, "-w",
                               "-t", str(START_TIMEOUT_S), "-o", options, "start", check=False,
                               timeout=START_TIMEOUT_S + 10)
            if result.returncode == 0:
                break
            if "could not bind" not in self.log_tail() or attempt == 2:
                raise PostgresError(f"pg_ctl start failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                                    f"{self.log_tail()}")
        exists = self._cmd(self.bindir / "psql", "-h", self.socket_dir, "-p", str(self.port), "-U", ROLE,
                           "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if exists.stdout.strip() != "1":
            self._cmd(self.bindir / "createdb", "-h", self.socket_dir, "-p", str(self.port), "-U", ROLE, DATABASE)
        return self

    def stop(self) -> None:
        """Stop the server (fast: sessions are cut) and remove its directory."""
        if self.dir is None or not self.dir.exists():
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._cmd(self.bindir / "pg_ctl", "-D", self.data_dir, "-m", "immediate", "-w", "stop", check=False,
                      timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (FileNotFoundError, PostgresError):
            return "(no server log)"
        return "server log tail:\n" + "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<PostgresCluster {self.dir} port={self.port} {self.collation}>"


def _clean_env() -> dict[str, str]:
    # PG* variables of the caller would point the client tools elsewhere.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C.UTF-8"}


def _check_reachable(path: Path, user: pwd.struct_passwd) -> None:
    """Every parent of `path` must let `user` through, or initdb fails with a puzzling error."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        owner = parent.stat().st_uid == user.pw_uid
        if not (mode & 0o001 or (owner and mode & 0o100)):
            raise PostgresError(f"{parent} is not reachable for the `{user.pw_name}` user that runs PostgreSQL "
                                "(choose a parent directory others can traverse, such as /tmp)")


# -- pytest plugin: `pytest -p testbed.postgres` runs only the index tests -------------------------


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    keep, drop = [], []
    for item in items:
        (keep if item.get_closest_marker(MARKER) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config: Any) -> str:
    return f"database: {os.environ.get('DATABASE_URL', '(SQLite)').split('@')[-1]} — index tests only"


# -- command line ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.postgres", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a command with DATABASE_URL set to a throwaway cluster")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- the command")
    start = sub.add_parser("start", help="start a cluster in DIR (created) and print DATABASE_URL=…")
    start.add_argument("dir", type=Path)
    stop = sub.add_parser("stop", help="stop the cluster in DIR and remove DIR")
    stop.add_argument("dir", type=Path)
    args = parser.parse_args(argv)

    if args.command == "start":
        cluster = PostgresCluster(dir=args.dir)
        cluster.start()
        (args.dir / "url").write_text(cluster.url)
        print(f"DATABASE_URL={cluster.url}")
        return 0
    if args.command == "stop":
        cluster = PostgresCluster(dir=args.dir)
        cluster.stop()
        return 0

    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        parser.error("run needs a command: python -m testbed.postgres run -- CMD ...")
    # A CI timeout or Ctrl-C must still stop the server: turn SIGTERM into an exception too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    with PostgresCluster() as cluster:
        print(f"== PostgreSQL {cluster.bindir.parent.name} on 127.0.0.1:{cluster.port} ({cluster.collation}), "
              f"up in {time.monotonic() - started:.1f} s", flush=True)
        child = subprocess.Popen(command, env={**os.environ, "DATABASE_URL": cluster.url})
        try:
            return child.wait()
        except BaseException:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
            raise


if __name__ == "__main__":
    sys.exit(main())
