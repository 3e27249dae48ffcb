"""The index's figures (issue 7), all in one run, against a real registry on this machine with a
1,000-tag repository, a 20,000-tag repository and 10,000 repositories:

  pages    repository page server time, warm: 1,000 tags sorted by created (target <= 100 ms),
           20,000 tags, every kind of page (<= 250 ms); a gunicorn worker's peak memory while
           serving the 20,000-tag pages (< 250 MB)
  sync     full sync of the 1,000-tag repository against the floor, a bare concurrent client
           making the same registry calls (<= 1.3x); a resync with nothing changed (one HEAD per
           tag and nothing more)
  events   a push appears on the repository page (gunicorn + db_worker, the registry notifying
           them) within 2 s
  search   the search page over 10,000 repositories (<= 100 ms)

    ./scripts/bench index                 # the figures above (make bench-index)
    ./scripts/bench index --quick         # 100 / 2,000 tags, 500 repositories, 2 repetitions
    ./scripts/bench index --postgres      # the same on a throwaway PostgreSQL cluster

The seeded registry's storage is kept in bench/results/cache/ (git-ignored) and each run works on
a hard-linked copy of it, so the pushes of a run never reach the cache. Everything else (the
database, the dashboard's data dir, the registry's config and log) lives in a temp dir: the
bench never touches var/. Not a test: it prints a table (median, min, target, verdict) and writes
it, every sample included, to bench/results/index-latest.json. A part whose code is missing (a
sync, an events endpoint that is not written yet) is reported as not measured, not as a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests
import yaml

from testbed import RegistryServer, seed_many_repos, seed_many_tags
from testbed import push as p
from testbed.server import free_port

SMALL = "bench/small"
BIG = "bench/big"
MANY_PREFIX = "many"  # seed_many_repos: many/repo-0000 …
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "cache"
# Bump when what is seeded changes: a cache of the old content is then seeded afresh.
SEED_VERSION = 1
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
TARGETS_MS = {"small": 100.0, "big": 250.0, "search": 100.0, "event": 2000.0}
RSS_TARGET_MB = 250.0
SYNC_RATIO_TARGET = 1.3


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    samples_ms: list[float]
    target_ms: float | None = None
    requests: dict[str, int] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)

    @property
    def verdict(self) -> str:
        if self.target_ms is None:
            return ""
        return "ok" if self.median_ms <= self.target_ms else "OVER"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median_ms": round(self.median_ms, 1), "max_ms": round(self.max_ms, 1),
                "samples_ms": [round(s, 1) for s in self.samples_ms], "verdict": self.verdict}


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)  # name -> "ok" / "OVER …" / "not measured: …"

    def row(self, row: Row) -> Row:
        self.rows.append(row)
        target = f" (target {row.target_ms:.0f} ms: {row.verdict})" if row.target_ms is not None else ""
        print(f"  {row.name}: median {row.median_ms:.1f} ms, max {row.max_ms:.1f} ms{target}", flush=True)
        return row

    def check(self, name: str, verdict: str) -> None:
        self.checks[name] = verdict
        print(f"  => {name}: {verdict}", flush=True)

    def not_measured(self, name: str, why: str) -> None:
        self.check(name, f"not measured: {why}")


def print_table(report: Report) -> None:
    width = max([len(r.name) for r in report.rows] + [10])
    print(f"\n{'measurement':<{width}}  {'median ms':>10}  {'max ms':>9}  {'target':>8}  verdict")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 9}  {'-' * 8}  -------")
    for r in report.rows:
        target = "" if r.target_ms is None else f"{r.target_ms:.0f}"
        print(f"{r.name:<{width}}  {r.median_ms:>10.1f}  {r.max_ms:>9.1f}  {target:>8}  {r.verdict}")
    print("\nissue 7's figures:")
    for name, verdict in report.checks.items():
        print(f"  {name:<52} {verdict}")


def timed(report: Report, name: str, repeat: int, run: Callable[[], Any], *, target_ms: float | None = None,
          before: Callable[[], Any] | None = None) -> Row:
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return report.row(Row(name, samples, target_ms))


# -- counting the dashboard's registry requests ----------------------------------------------------


def _kind(path: str) -> str:
    if "/tags/list" in path:
        return "tags/list"
    if "/manifests/" in path:
        return "manifest"
    if "/blobs/" in path:
        return "blob"
    if "_catalog" in path:
        return "catalog"
    return "other"


class RequestCounter:
    """Counts every RegistryClient._send (all registry requests go through it) by method and kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        from dashboard.registry.client import RegistryClient

        original = RegistryClient._send
        counter = self

        def counted(self: Any, method: str, path: str, **kwargs: Any) -> Any:
            with counter._lock:
                counter.counts[f"{method} {_kind(path)}"] += 1
            return original(self, method, path, **kwargs)

        RegistryClient._send = counted  # type: ignore[method-assign]

    def reset(self) -> None:
        with self._lock:
            self.counts = Counter()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))


# -- the floor: the sync's registry calls from a bare client ---------------------------------------


class Floor:
    """Tag list, a HEAD per tag, then for every digest its manifest and its config: what a full
    sync of an empty index must ask, with requests and a thread pool of the same size, no parsing
    beyond the JSON that names the next request, no database."""

    def __init__(self, url: str, workers: int) -> None:
        from requests.adapters import HTTPAdapter

        self.url = url
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.mount("http://", HTTPAdapter(pool_connections=2, pool_maxsize=workers, max_retries=0))
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def close(self) -> None:
        self.pool.shutdown()
        self.session.close()

    def _get(self, path: str, accept: bool = False) -> bytes:
        r = self.session.get(self.url + path, headers={"Accept": MANIFEST_ACCEPT} if accept else None,
                             timeout=(5, 60))
        r.raise_for_status()
        return r.content

    def _head(self, path: str) -> str:
        r = self.session.head(self.url + path, headers={"Accept": MANIFEST_ACCEPT}, timeout=(5, 60))
        r.raise_for_status()
        return r.headers["Docker-Content-Digest"]

    def full(self, repo: str) -> dict[str, int]:
        tags = json.loads(self._get(f"/v2/{repo}/tags/list"))["tags"]
        digests = sorted(set(self.pool.map(lambda t: self._head(f"/v2/{repo}/manifests/{t}"), tags)))
        bodies = self.pool.map(lambda d: json.loads(self._get(f"/v2/{repo}/manifests/{d}", accept=True)), digests)
        configs = sorted({b["config"]["digest"] for b in bodies if "config" in b})
        list(self.pool.map(lambda d: self._get(f"/v2/{repo}/blobs/{d}"), configs))
        return {"GET tags/list": 1, "HEAD manifest": len(tags), "GET manifest": len(digests),
                "GET blob": len(configs)}

    def heads(self, repo: str) -> dict[str, int]:
        """What a resync with nothing changed must ask: the tag list and a HEAD per tag."""
        tags = json.loads(self._get(f"/v2/{repo}/tags/list"))["tags"]
        list(self.pool.map(lambda t: self._head(f"/v2/{repo}/manifests/{t}"), tags))
        return {"GET tags/list": 1, "HEAD manifest": len(tags)}


# -- the registry, seeded once and cached ----------------------------------------------------------


def seeded_storage(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The storage dir of a registry holding the bench's content, seeded now or found in the cache."""
    key = f"registry-v{SEED_VERSION}-s{args.small}-b{args.big}-r{args.repos}"
    home = args.cache / key
    stamp = home / "seeded.json"
    if stamp.exists() and not args.reseed:
        info = json.loads(stamp.read_text())
        print(f"seeded registry from the cache: {home} (seeded in {info['seconds']['total']:.0f} s)", flush=True)
        return home / "storage", info
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    print(f"seeding {SMALL} ({args.small} tags), {BIG} ({args.big} tags) and {args.repos} repositories "
          f"into {home} (once; later runs reuse it) …", flush=True)
    seconds: dict[str, float] = {}
    with RegistryServer(home) as server:
        started = time.perf_counter()
        # Different dates for the two repositories: different configs, so no digest is shared
        # and a full sync of the small one fetches every manifest however much else is indexed.
        seed_many_tags(server.url, SMALL, args.small, tag_format="v1.{i}.0", base_created="2023-01-01T00:00:00Z")
        seconds["small"] = time.perf_counter() - started
        started = time.perf_counter()
        seed_many_tags(server.url, BIG, args.big, tag_format="v2.{i}.0", base_created="2024-01-01T00:00:00Z")
        seconds["big"] = time.perf_counter() - started
        started = time.perf_counter()
        seed_many_repos(server.url, args.repos, prefix=MANY_PREFIX)
        seconds["repos"] = time.perf_counter() - started
    seconds["total"] = sum(seconds.values())
    info = {"seconds": {k: round(v, 1) for k, v in seconds.items()}, "small": args.small, "big": args.big,
            "repos": args.repos, "when": datetime.now(UTC).isoformat(timespec="seconds")}
    stamp.write_text(json.dumps(info, indent=2) + "\n")
    print(f"seeded in {seconds['total']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})",
          flush=True)
    return home / "storage", info


def working_copy(storage: Path, data_dir: Path) -> None:
    """A hard-linked copy of the cached storage where RegistryServer(data_dir) keeps its own: a
    push adds files and never rewrites one, so the cache stays as seeded."""
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(storage), str(data_dir / "storage")], check=True)


def start_registry(data_dir: Path, port: int | None, notifications: Any = None) -> RegistryServer:
    """The registry, as deploy/registry.yml runs it: no blob-descriptor cache; with
    `notifications`, its events go to the dashboard."""
    kwargs = {"notifications": notifications} if notifications is not None else {}
    return RegistryServer(data_dir, port=port, blob_cache=False, **kwargs).start()


# -- Django in this process, and the same settings for gunicorn and the worker ---------------------


def django_env(registry_url: str, data_dir: Path, database_url: str | None, events_token: str,
               concurrency: int | None) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "registryui.settings",
        "REGISTRYUI_REGISTRY_URL": registry_url,
        "REGISTRYUI_DATA_DIR": str(data_dir),
        "REGISTRYUI_ALLOWED_HOSTS": "testserver,127.0.0.1",
        "REGISTRYUI_ANONYMOUS_READ": "true",
        "REGISTRYUI_LOG_LEVEL": "WARNING",
        "REGISTRYUI_DEBUG": "false",
        "REGISTRYUI_EVENTS_TOKEN": events_token,
        # No scheduled sync in the middle of a measurement.
        "REGISTRYUI_SYNC_INTERVAL": "0",
        "REGISTRYUI_SECRET_KEY": secrets.token_urlsafe(50),
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    if concurrency is not None:
        env["REGISTRYUI_CONCURRENCY"] = str(concurrency)
    return env


def setup_django(env: dict[str, str]) -> None:
    # Only this process's settings: a developer's DATABASE_URL or cache must not leak in.
    for name in [n for n in os.environ if n.startswith("REGISTRYUI_")] + ["DATABASE_URL"]:
        os.environ.pop(name, None)
    os.environ.update(env)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def wipe_index() -> None:
    """An empty index and an empty cache, as a dashboard's first sync finds them (the cache by
    digest would otherwise answer the manifests and configs of the previous repetition)."""
    from django.core.cache import cache

    from dashboard import models as dm

    cache.clear()
    for model in (dm.TagHistory, dm.RegistryEvent, dm.IndexedTag, dm.RepositoryManifest, dm.ManifestBlob,
                  dm.ManifestChild, dm.IndexedManifest, dm.IndexedBlob, dm.IndexedRepository, dm.SyncRun):
        model.objects.all().delete()


def get_ok(client: Any, path: str, *, rows: int | None = None, contains: str | None = None) -> bytes:
    response = client.get(path)
    if response.status_code != 200:
        raise SystemExit(f"GET {path} answered {response.status_code}:\n{response.content[:1500].decode()}")
    body = response.content
    if rows is not None and body.count(b'class="tag-row') != rows:
        raise SystemExit(f"GET {path}: {body.count(b'class=\"tag-row')} tag rows, expected {rows}")
    if b'class="problem"' in body:
        raise SystemExit(f"GET {path} shows a problem")
    if contains is not None and contains.encode() not in body:
        raise SystemExit(f"GET {path} does not show {contains!r}")
    return body


# -- the parts -------------------------------------------------------------------------------------


def part_sync(report: Report, args: argparse.Namespace, registry_url: str, counter: RequestCounter) -> bool:
    """Full sync of the small repository vs the floor; a resync with nothing changed. True when
    the sync exists (the later parts then index with it)."""
    from dashboard import remote

    try:
        from dashboard.index.sync import sync_repository
    except ImportError as exc:
        report.not_measured("full sync / floor <= 1.3", f"dashboard.index.sync.sync_repository: {exc}")
        report.not_measured("resync: one HEAD per tag, nothing more", "no sync_repository")
        return False
    workers = remote.concurrency()
    floor = Floor(registry_url, workers)
    print(f"\nsync of {SMALL} ({args.small} tags) vs a bare client (requests + {workers} threads) …", flush=True)
    try:
        floor.full(SMALL)  # warm-up: connections, the registry's and the OS's caches
        wipe_index()
        warm = sync_repository(SMALL)
        if warm.problem or warm.tags != args.small:
            report.not_measured("full sync / floor <= 1.3", f"the sync said: {warm.problem or warm}")
            return True
        sync_samples, floor_samples = [], []
        sync_counts: dict[str, int] = {}
        floor_counts: dict[str, int] = {}
        for _ in range(args.repeat):
            # Alternate, so a busy moment of the machine hits both alike.
            wipe_index()
            counter.reset()
            started = time.perf_counter()
            result = sync_repository(SMALL)
            sync_samples.append((time.perf_counter() - started) * 1000)
            sync_counts = counter.snapshot()
            if result.problem or result.tags != args.small:
                raise SystemExit(f"sync_repository({SMALL}) said {result}")
            started = time.perf_counter()
            floor_counts = floor.full(SMALL)
            floor_samples.append((time.perf_counter() - started) * 1000)
        sync_row = report.row(Row(f"full sync of {SMALL} (index empty)", sync_samples, requests=sync_counts))
        floor_row = report.row(Row("floor: the same calls, bare client", floor_samples, requests=floor_counts))
        ratio = sync_row.median_ms / floor_row.median_ms
        report.figures["sync_ratio"] = round(ratio, 2)
        report.figures["sync_requests"] = sync_counts
        report.figures["floor_requests"] = floor_counts
        same = sum(sync_counts.values()) == sum(floor_counts.values())
        report.check("full sync / floor <= 1.3",
                     f"{'ok' if ratio <= SYNC_RATIO_TARGET else 'OVER'} ({ratio:.2f}x; "
                     f"{sum(sync_counts.values())} vs {sum(floor_counts.values())} requests"
                     f"{'' if same else ' — not the same calls: ' + json.dumps(sync_counts)})")

        resync_samples, heads_samples, changed = [], [], 0
        counts: dict[str, int] = {}
        for _ in range(args.repeat):
            counter.reset()
            started = time.perf_counter()
            changed += sync_repository(SMALL).changed
            resync_samples.append((time.perf_counter() - started) * 1000)
            counts = counter.snapshot()
            started = time.perf_counter()
            heads_counts = floor.heads(SMALL)
            heads_samples.append((time.perf_counter() - started) * 1000)
        resync = report.row(Row(f"resync of {SMALL}, nothing changed", resync_samples, requests=counts))
        heads = report.row(Row("floor: tag list and a HEAD per tag, bare client", heads_samples,
                               requests=heads_counts))
        report.figures["resync_requests"] = counts
        report.figures["resync_ratio"] = round(resync.median_ms / heads.median_ms, 2)
        expected = {"GET tags/list": 1, "HEAD manifest": args.small}
        report.check("resync: one HEAD per tag, nothing more",
                     ("ok" if counts == expected and not changed else "OVER") + f" ({json.dumps(counts)}, "
                     f"{changed} tags changed; {resync.median_ms / heads.median_ms:.2f}x its floor)")
    finally:
        floor.close()
    return True


def part_index_everything(report: Report, args: argparse.Namespace, have_sync: bool,
                          counter: RequestCounter) -> None:
    """Index the whole registry (the pages and the search read it): the big repository on its
    own, then a full sync of the catalog; with no working sync, the store directly, as a sync
    would. Informative figures: issue 7 sets no target for them."""
    print(f"\nindexing the whole registry ({args.repos + 2} repositories, {args.small + args.big + args.repos} "
          "tags) …", flush=True)
    try:
        if not have_sync:
            raise ImportError("no sync")
        from dashboard.index.sync import run_now, sync_repository

        counter.reset()
        started = time.perf_counter()
        result = sync_repository(BIG)
        seconds = time.perf_counter() - started
        if result.problem:
            raise RuntimeError(f"sync_repository({BIG}): {result.problem}")
        report.row(Row(f"first sync of {BIG} ({args.big} tags)", [seconds * 1000], requests=counter.snapshot()))
        counter.reset()
        started = time.perf_counter()
        run = run_now(trigger="command")
        seconds = time.perf_counter() - started
        if run.state != "succeeded":
            raise RuntimeError(f"sync run {run.pk} {run.state}: {run.error}")
        report.row(Row(f"full sync of the catalog ({args.repos} new repositories)", [seconds * 1000],
                       requests=counter.snapshot()))
        report.figures["index_everything"] = "dashboard.index.sync"
    except Exception as exc:  # noqa: BLE001 - fall back, and say so
        print(f"  the sync could not index everything ({type(exc).__name__}: {exc}); using the store", flush=True)
        started = time.perf_counter()
        index_with_store()
        report.row(Row("indexing everything with the store (no working sync)",
                       [(time.perf_counter() - started) * 1000]))
        report.figures["index_everything"] = f"dashboard.index.store ({type(exc).__name__}: {exc})"


def index_with_store() -> None:
    from dashboard import remote
    from dashboard.index import store
    from dashboard.registry.client import run_bounded

    client = remote.client()
    for name in remote.catalog():
        tags = client.tags(name)
        heads = run_bounded(lambda t, n=name: client.head_manifest(n, t), tags, remote.concurrency())
        digests = {t: h.digest for t, h in zip(tags, heads, strict=True) if not isinstance(h, BaseException)}
        store.set_tags(name, digests, source="sync", complete=True)
        store.fetch_and_index(name, sorted(set(digests.values())))


def part_pages(report: Report, args: argparse.Namespace, counter: RequestCounter) -> None:
    from django.test import Client

    client = Client()
    per_page = 100
    last_small = -(-args.small // per_page)
    last_big = -(-args.big // per_page)
    middle_big = max(1, last_big // 2)
    small_pages = {
        f"{SMALL} by created, page 1": f"/r/{SMALL}/?sort=created",
        f"{SMALL} by created, last page": f"/r/{SMALL}/?sort=created&page={last_small}",
    }
    big_pages = {
        f"{BIG} by version, page 1": f"/r/{BIG}/",
        f"{BIG} by version, middle page": f"/r/{BIG}/?page={middle_big}",
        f"{BIG} by version, last page": f"/r/{BIG}/?page={last_big}",
        f"{BIG} by created, middle page": f"/r/{BIG}/?sort=created&page={middle_big}",
        f"{BIG} by size, page 1": f"/r/{BIG}/?sort=size",
        f"{BIG} filtered (q=v2.1)": f"/r/{BIG}/?q=v2.1",
        f"{BIG} by version, middle page (htmx)": f"/r/{BIG}/?page={middle_big}&htmx",
    }
    print(f"\nrepository pages, server time, warm ({args.repeat * 2} repetitions) …", flush=True)
    counter.reset()
    for path in [*small_pages.values(), *big_pages.values()]:
        get_ok(client, path)  # warm-up: templates, query plans, the OS's caches
    small_rows, big_rows = [], []
    for pages, rows, target in ((small_pages, small_rows, TARGETS_MS["small"]),
                                (big_pages, big_rows, TARGETS_MS["big"])):
        for name, path in pages.items():
            htmx = path.endswith("&htmx")
            path = path.removesuffix("&htmx")
            expect = None if "q=" in path else min(per_page, args.small if SMALL in path else args.big)

            def one(path: str = path, htmx: bool = htmx, expect: int | None = expect) -> None:
                if htmx:
                    response = client.get(path, headers={"HX-Request": "true"})
                    assert response.status_code == 200, response.status_code
                else:
                    get_ok(client, path, rows=expect)

            rows.append(timed(report, name, args.repeat * 2, one, target_ms=target))
    registry_calls = counter.snapshot()
    report.figures["page_registry_requests"] = registry_calls
    worst_small = max(small_rows, key=lambda r: r.median_ms)
    worst_big = max(big_rows, key=lambda r: r.median_ms)
    report.check("repository page, 1,000 tags by created <= 100 ms",
                 f"{worst_small.verdict} (worst median {worst_small.median_ms:.1f} ms: {worst_small.name})")
    report.check("repository page, 20,000 tags <= 250 ms per page",
                 f"{worst_big.verdict} (worst median {worst_big.median_ms:.1f} ms: {worst_big.name}; "
                 f"registry requests while rendering: {sum(registry_calls.values())})")


def part_search(report: Report, args: argparse.Namespace) -> None:
    from django.test import Client

    from dashboard.models import IndexedManifest

    client = Client()
    digest = (IndexedManifest.objects.filter(repository_links__repository__name=BIG)
              .values_list("digest", flat=True).first() or "sha256:0123456789ab")
    queries = {
        "one repository (repo-0042)": "repo-0042",
        f"every repository ('{MANY_PREFIX}')": MANY_PREFIX,
        "a tag in the big repository": f"v2.{args.big // 2}.0",
        "a digest prefix": digest[:19],
        "a label (com.acme.build=7)": "com.acme.build=7",
    }
    print(f"\nsearch over {args.repos + 2} repositories, server time, warm …", flush=True)
    rows = []
    for name, q in queries.items():
        path = f"/-/search/?q={requests.utils.quote(q)}"
        get_ok(client, path)
        rows.append(timed(report, f"search: {name}", args.repeat * 2, lambda path=path: get_ok(client, path),
                          target_ms=TARGETS_MS["search"]))
    worst = max(rows, key=lambda r: r.median_ms)
    report.check("search over 10,000 repositories <= 100 ms",
                 f"{worst.verdict} (worst median {worst.median_ms:.1f} ms: {worst.name})")


# -- processes: gunicorn and the task worker -------------------------------------------------------


@dataclass
class Dashboard:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def worker_pids(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(c) for c in children]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@contextmanager
def gunicorn(env: dict[str, str], port: int, log_dir: Path) -> Iterator[Dashboard]:
    """The dashboard as the image runs it (gunicorn.conf.py), one worker process."""
    log = log_dir / "gunicorn.log"
    run_env = {**os.environ, **env, "REGISTRYUI_LISTEN": f"127.0.0.1:{port}", "REGISTRYUI_WEB_WORKERS": "1",
               "PYTHONUNBUFFERED": "1"}
    binary = Path(sys.executable).parent / "gunicorn"
    with log.open("ab") as out:
        proc = subprocess.Popen([str(binary), "-c", "gunicorn.conf.py", "registryui.wsgi"], cwd=ROOT, env=run_env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    dashboard = Dashboard(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(dashboard.url + "/-/live", timeout=2).status_code == 200 and dashboard.worker_pids():
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield dashboard
    finally:
        _kill_group(proc)


@contextmanager
def task_worker(env: dict[str, str], log_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py worker` with the options docker-compose.yml gives it."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["worker"]["command"]
    options = command[command.index("worker") + 1:]
    log = log_dir / "worker.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "manage.py", "worker", *options], cwd=ROOT,
                                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(0)  # started; it polls the database on its own
        yield proc
    finally:
        _kill_group(proc)


def _rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def part_memory(report: Report, args: argparse.Namespace, dashboard: Dashboard) -> None:
    [worker] = dashboard.worker_pids()
    per_page = 100
    pages = -(-args.big // per_page)
    paths = [f"/r/{BIG}/?page={n}" for n in range(1, pages + 1)]
    paths += [f"/r/{BIG}/?sort=created&page={n}" for n in range(1, pages + 1, 7)]
    paths += [f"/r/{BIG}/?sort=size&order=asc&page={n}" for n in range(1, pages + 1, 11)]
    session = requests.Session()
    session.get(dashboard.url + paths[0], timeout=60).raise_for_status()
    before = _rss_mb(worker)
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                samples.append(_rss_mb(worker))
            except OSError:
                return
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = int(os.environ.get("REGISTRYUI_WEB_THREADS", "4"))
    print(f"\ngunicorn worker memory while serving {len(paths)} pages of {BIG} ({threads} at a time) …", flush=True)
    latencies: list[float] = []

    def fetch(path: str) -> None:
        started = time.perf_counter()
        r = requests.get(dashboard.url + path, timeout=60)
        latencies.append((time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"gunicorn: GET {path} answered {r.status_code}")

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(fetch, paths))
    finally:
        stop.set()
        sampler.join()
    peak = _rss_mb(worker, "VmHWM")
    report.row(Row(f"gunicorn: {len(paths)} pages of {BIG}, {threads} at a time (client time)", latencies))
    report.figures["worker_rss_mb"] = {"before": round(before, 1), "max_sampled": round(max(samples or [0]), 1),
                                       "peak_VmHWM": round(peak, 1), "pages": len(paths)}
    report.check("worker memory serving 20,000-tag pages < 250 MB",
                 f"{'ok' if peak < RSS_TARGET_MB else 'OVER'} (peak RSS {peak:.0f} MB, {before:.0f} MB before)")


def part_events(report: Report, args: argparse.Namespace, dashboard: Dashboard, registry_url: str) -> None:
    """Push a new tag to the small repository and poll its page until the tag shows."""
    probe = requests.post(dashboard.url + "/-/events/", data=b"{}", timeout=10,
                          headers={"Content-Type": "application/vnd.docker.distribution.events.v1+json"})
    if probe.status_code == 404:
        report.not_measured("a push appears within 2 s through events", "/-/events/ answers 404 (not written yet)")
        return
    session = requests.Session()

    def push_and_wait(i: int) -> float:
        tag = f"event-{os.getpid()}-{i}"
        image = p.build_image([{f"{tag}.txt": secrets.token_bytes(64)}])
        p.push_image(registry_url, SMALL, image, tag)
        pushed = time.perf_counter()
        deadline = pushed + 30
        while True:
            r = session.get(f"{dashboard.url}/r/{SMALL}/?q={tag}", timeout=10)
            if r.status_code == 200 and f'data-tag="{tag}"'.encode() in r.content:
                return (time.perf_counter() - pushed) * 1000
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{SMALL}:{tag} did not appear within 30 s")
            time.sleep(0.02)

    print("\npush → on the repository page, through the registry's events and the worker …", flush=True)
    try:
        push_and_wait(0)  # warm-up: the worker's first task, the page's first filter
        samples = [push_and_wait(i) for i in range(1, args.repeat + 1)]
    except TimeoutError as exc:
        report.check("a push appears within 2 s through events", f"OVER ({exc}; see the gunicorn and worker logs)")
        return
    row = report.row(Row("push → tag on the repository page", samples, TARGETS_MS["event"]))
    report.check("a push appears within 2 s through events",
                 f"{'ok' if row.max_ms <= TARGETS_MS['event'] else 'OVER'} (median {row.median_ms:.0f} ms, "
                 f"slowest {row.max_ms:.0f} ms)")


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000, help=f"tags in {SMALL} (default 1000)")
    parser.add_argument("--big", type=int, default=20000, help=f"tags in {BIG} (default 20000)")
    parser.add_argument("--repos", type=int, default=10000, help="repositories besides those two (default 10000)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per measurement (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 / 2,000 tags, 500 repositories, repeat 2")
    parser.add_argument("--postgres", action="store_true", help="the index on a throwaway PostgreSQL cluster")
    parser.add_argument("--concurrency", type=int, default=None, help="REGISTRYUI_CONCURRENCY (default: the setting)")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"seeded registries (default {CACHE})")
    parser.add_argument("--reseed", action="store_true", help="seed again even when the cache has it")
    parser.add_argument("--out", type=Path, default=RESULTS / "index-latest.json", help="JSON results")
    args = parser.parse_args(argv)
    if args.quick:
        args.small, args.big, args.repos, args.repeat = 100, 2000, 500, 2
    if min(args.small, args.big, args.repeat) < 1 or args.repos < 0 or args.repos > 10000:
        parser.error("--small, --big and --repeat must be at least 1, --repos 0 to 10000")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    storage, seeded = seeded_storage(args)
    report = Report()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="registryui-bench-index-")))
        working_copy(storage, tmp / "registry")
        database_url = None
        if args.postgres:
            from testbed.postgres import PostgresCluster

            cluster = stack.enter_context(PostgresCluster())
            database_url = cluster.url
            print(f"PostgreSQL: {cluster!r}", flush=True)
        registry = start_registry(tmp / "registry", None)
        stack.callback(lambda: registry.stop())
        port = registry.port
        token = secrets.token_urlsafe(24)
        env = django_env(registry.url, tmp / "data", database_url, token, args.concurrency)
        setup_django(env)
        counter = RequestCounter()
        counter.install()
        try:
            have_sync = part_sync(report, args, registry.url, counter)
            part_index_everything(report, args, have_sync, counter)
            part_pages(report, args, counter)
            part_search(report, args)
        except SystemExit:
            raise
        except Exception:  # noqa: BLE001 - report what ran, say what broke
            traceback.print_exc()
            report.checks.setdefault("error", traceback.format_exc(limit=3).splitlines()[-1])

        # The registry again, now telling a real dashboard (gunicorn + worker) what happens.
        from django.db import connections

        connections.close_all()
        dashboard_port = free_port()
        notifications = _notifications(dashboard_port, token)
        registry.stop()
        if notifications is None:
            report.not_measured("a push appears within 2 s through events", "testbed has no Notifications yet")
        registry = start_registry(tmp / "registry", port, notifications)
        try:
            with gunicorn(env, dashboard_port, tmp) as dashboard:
                part_memory(report, args, dashboard)
                if notifications is not None:
                    with task_worker(env, tmp):
                        part_events(report, args, dashboard, registry.url)
        except Exception:  # noqa: BLE001 - any failure of one step is reported, the rest still run
            traceback.print_exc()
            report.checks.setdefault("error (processes)", traceback.format_exc(limit=3).splitlines()[-1])
            for log in ("gunicorn.log", "worker.log"):
                if (tmp / log).exists():
                    print(f"--- {log} (tail)\n{(tmp / log).read_text()[-3000:]}", file=sys.stderr)
        finally:
            registry.stop()
        write_results(report, args, seeded, env, time.perf_counter() - started)
    return 0


def _notifications(dashboard_port: int, token: str) -> Any:
    """The registry's notifications endpoint as deploy/registry.yml sets it, aimed at this machine."""
    try:
        from testbed import Notifications  # type: ignore[attr-defined]
    except ImportError:
        return None
    shipped = yaml.safe_load((ROOT / "deploy" / "registry.yml").read_text())["notifications"]["endpoints"][0]
    return Notifications(url=f"http://127.0.0.1:{dashboard_port}/-/events/", token=token,
                         timeout=str(shipped["timeout"]), threshold=int(shipped["threshold"]),
                         backoff=str(shipped["backoff"]))


def write_results(report: Report, args: argparse.Namespace, seeded: dict[str, Any], env: dict[str, str],
                  total_s: float) -> None:
    import django
    from django.db import connection

    print_table(report)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": {"small": args.small, "big": args.big, "repos": args.repos, "repeat": args.repeat,
                   "quick": args.quick, "database": connection.vendor,
                   "concurrency": int(env.get("REGISTRYUI_CONCURRENCY", "0")) or "default"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "django": django.get_version(),
                    "platform": platform.platform(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "seeded": seeded,
        "total_seconds": round(total_s, 1),
        "checks": report.checks,
        "figures": report.figures,
        "rows": [r.as_dict() for r in report.rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    stamped = args.out.with_name(f"index-{datetime.now(UTC):%Y%m%dT%H%M%S}-{connection.vendor}.json")
    shutil.copyfile(args.out, stamped)
    print(f"\nwrote {args.out} and {stamped.name} (whole run {total_s:.0f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    sys.exit(main())
