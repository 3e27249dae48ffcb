"""Time the dashboard's pages against a real registry with 1,000 tags and 2,000 repositories.

One run: start a throwaway Distribution registry, seed it, configure Django in-process, time
each page with `django.test.Client` (median and min over --repeat runs), time a bare
concurrent HTTP client making the same registry calls (the floor), count the registry
requests of each, print a table and write it to bench/results/latest.json.

    ./scripts/bench                 # 1,000 tags, 2,000 repositories, 5 repetitions
    ./scripts/bench --quick         # 100 tags, 200 repositories, 2 repetitions

Not a test: nothing here asserts a speed. It only fails when a page does not answer 200 or
shows the wrong number of tags.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testbed import RegistryServer, seed_many_repos, seed_many_tags

REPO = "bench/big"
MANY_PREFIX = "many"  # seed_many_repos makes many/repo-0000 … many/repo-NNNN
RESULTS = ROOT / "bench" / "results" / "latest.json"
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


# -- results ---------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    samples_ms: list[float]
    requests: int | None = None
    by_method: dict[str, int] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)


def print_table(rows: list[Row]) -> None:
    width = max(len(r.name) for r in rows)
    print(f"\n{'measurement':<{width}}  {'median ms':>10}  {'min ms':>10}  {'requests':>8}")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 10}  {'-' * 8}")
    for r in rows:
        req = "" if r.requests is None else str(r.requests)
        print(f"{r.name:<{width}}  {r.median_ms:>10.1f}  {r.min_ms:>10.1f}  {req:>8}")


# -- counting the dashboard's registry requests ----------------------------------------


class RequestCounter:
    """Counts RegistryClient._send calls (every registry request goes through it) by method."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        from dashboard.registry.client import RegistryClient

        original = RegistryClient._send
        counter = self

        def counted(self: Any, method: str, path: str, **kwargs: Any) -> Any:
            with counter._lock:
                counter.counts[method] += 1
            return original(self, method, path, **kwargs)

        RegistryClient._send = counted  # type: ignore[method-assign]

    def reset(self) -> None:
        with self._lock:
            self.counts = Counter()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


# -- timing ----------------------------------------------------------------------------


def timed(name: str, repeat: int, run: Callable[[], dict[str, int] | None],
          before: Callable[[], None] | None = None, counter: RequestCounter | None = None) -> Row:
    """Run `run` `repeat` times (`before` untimed ahead of each) and keep the last run's counts."""
    samples: list[float] = []
    counts: dict[str, int] = {}
    for _ in range(repeat):
        if before:
            before()
        if counter:
            counter.reset()
        started = time.perf_counter()
        got = run()
        samples.append((time.perf_counter() - started) * 1000)
        counts = counter.snapshot() if counter else (got or {})
    row = Row(name, samples, sum(counts.values()), counts)
    print(f"  {name}: median {row.median_ms:.0f} ms, min {row.min_ms:.0f} ms, {row.requests} requests",
          flush=True)
    return row


# -- the floor: a bare concurrent client -----------------------------------------------


class Floor:
    """The same registry calls the page makes, with no parsing, caching or rendering."""

    def __init__(self, url: str, workers: int) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        self.url = url
        self.workers = workers
        self.session = requests.Session()
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=workers, max_retries=0)
        self.session.mount("http://", adapter)
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.manifest_digests: list[str] = []
        self.config_digests: list[str] = []

    def close(self) -> None:
        self.pool.shutdown()
        self.session.close()

    def _get(self, path: str, accept: bool = False) -> None:
        r = self.session.get(self.url + path, headers={"Accept": MANIFEST_ACCEPT} if accept else None,
                             timeout=(5, 30))
        r.raise_for_status()
        r.content  # noqa: B018 - read the body, as the page does

    def _head(self, path: str) -> None:
        r = self.session.head(self.url + path, headers={"Accept": MANIFEST_ACCEPT}, timeout=(5, 30))
        r.raise_for_status()

    def learn(self, repo: str) -> None:
        """Untimed: which manifests and configs a cold page reads, so the timed runs parse nothing."""
        tags = self.session.get(f"{self.url}/v2/{repo}/tags/list", timeout=(5, 30)).json()["tags"]
        heads = list(self.pool.map(lambda t: self.session.head(
            f"{self.url}/v2/{repo}/manifests/{t}", headers={"Accept": MANIFEST_ACCEPT}, timeout=(5, 30)), tags))
        self.manifest_digests = sorted({h.headers["Docker-Content-Digest"] for h in heads})
        bodies = self.pool.map(lambda d: self.session.get(
            f"{self.url}/v2/{repo}/manifests/{d}", headers={"Accept": MANIFEST_ACCEPT}, timeout=(5, 30)).json(),
            self.manifest_digests)
        self.config_digests = sorted({b["config"]["digest"] for b in bodies if "config" in b})

    def _tags(self, repo: str) -> list[str]:
        r = self.session.get(f"{self.url}/v2/{repo}/tags/list", timeout=(5, 30))
        r.raise_for_status()
        # The tag names are needed to address the HEADs: the one parse the floor cannot skip.
        return r.json()["tags"]

    def warm(self, repo: str) -> dict[str, int]:
        # The least a warm page can do: learn each tag's digest (a HEAD; manifests come from the cache).
        tags = self._tags(repo)
        list(self.pool.map(lambda t: self._head(f"/v2/{repo}/manifests/{t}"), tags))
        return {"GET": 1, "HEAD": len(tags)}

    def cold(self, repo: str) -> dict[str, int]:
        # The least a cold page can do: each tag's manifest (its digest comes with it), then configs.
        tags = self._tags(repo)
        list(self.pool.map(lambda t: self._get(f"/v2/{repo}/manifests/{t}", accept=True), tags))
        list(self.pool.map(lambda d: self._get(f"/v2/{repo}/blobs/{d}"), self.config_digests))
        return {"GET": 1 + len(tags) + len(self.config_digests)}


# -- Django ----------------------------------------------------------------------------


def setup_django(registry_url: str, data_dir: Path, concurrency: int | None) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "registryui.settings"
    os.environ["REGISTRYUI_REGISTRY_URL"] = registry_url
    os.environ["REGISTRYUI_DATA_DIR"] = str(data_dir)
    os.environ["REGISTRYUI_CATALOG_TTL"] = "0"  # the catalog page really re-reads every time
    os.environ["REGISTRYUI_ALLOWED_HOSTS"] = "testserver"  # django.test.Client's host
    os.environ["REGISTRYUI_LOG_LEVEL"] = "WARNING"
    os.environ["REGISTRYUI_DEBUG"] = "false"
    if concurrency is not None:
        os.environ["REGISTRYUI_CONCURRENCY"] = str(concurrency)
    # A local SQLite and the in-process cache: the bench clears the cache, so never a shared one.
    for name in ("DATABASE_URL", "REGISTRYUI_CACHE_URL", "REGISTRYUI_SECRET_KEY"):
        os.environ.pop(name, None)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def get_page(client: Any, path: str, *, htmx: bool = False, expect_rows: int | None = None) -> None:
    response = client.get(path, headers={"HX-Request": "true"} if htmx else {})
    if response.status_code != 200:
        raise SystemExit(f"GET {path} answered {response.status_code}:\n{response.content[:2000].decode()}")
    if expect_rows is not None:
        body = response.content
        rows = body.count(b'class="tag-row')
        problems = body.count(b'class="problem"')
        if rows != expect_rows or problems:
            raise SystemExit(f"GET {path}: {rows} tag rows (expected {expect_rows}), {problems} problems")


# -- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tags", type=int, default=1000, help=f"tags in {REPO} (default 1000)")
    parser.add_argument("--repos", type=int, default=2000, help="extra repositories (default 2000)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per measurement (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 tags, 200 repositories, repeat 2")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="REGISTRYUI_CONCURRENCY for the page and the floor (default: the setting, 16)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.quick:
        args.tags, args.repos, args.repeat = 100, 200, 2
    if args.tags < 1 or args.repeat < 1 or args.repos < 0:
        parser.error("--tags and --repeat must be at least 1, --repos at least 0")

    # SIGTERM (a CI timeout, `kill`) should still run the finally that stops the registry.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="registryui-bench-") as tmp:
        server = RegistryServer(Path(tmp) / "registry")
        try:
            server.start()
            return run(args, server, Path(tmp), started)
        except BaseException:
            if server.process is not None:
                print(f"registry log tail ({server.log_path}):\n{server.log_tail(20)}", file=sys.stderr)
            raise
        finally:
            server.stop()


def run(args: argparse.Namespace, server: RegistryServer, tmp: Path, started: float) -> int:
    print(f"registry at {server.url}; seeding {REPO} with {args.tags} tags and {args.repos} repositories …",
          flush=True)
    t0 = time.perf_counter()
    tag_digests = seed_many_tags(server.url, REPO, args.tags)
    seed_tags_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    seed_many_repos(server.url, args.repos, prefix=MANY_PREFIX)
    seed_repos_s = time.perf_counter() - t0
    print(f"seeded {args.tags} tags in {seed_tags_s:.1f} s, {args.repos} repositories in {seed_repos_s:.1f} s",
          flush=True)

    setup_django(server.url, tmp / "data", args.concurrency)
    from django.conf import settings
    from django.core.cache import cache
    from django.test import Client

    from dashboard import remote

    workers = remote.concurrency()
    counter = RequestCounter()
    counter.install()
    client = Client()
    page = f"/r/{REPO}/"
    first_tag = sorted(tag_digests)[0]
    manifest_page = f"/r/{REPO}/-/manifests/{first_tag}/"

    # Untimed warm-up: templates compiled, URL conf loaded, the registry's own caches and the
    # OS page cache filled, so the first timed repetition is not the odd one out.
    get_page(client, page)
    get_page(client, page, htmx=True, expect_rows=args.tags)
    get_page(client, "/")
    get_page(client, manifest_page)

    print(f"timing the dashboard (concurrency {workers}, {args.repeat} repetitions) …", flush=True)
    r = args.repeat
    rows = [
        timed("repository page skeleton", r, lambda: get_page(client, page, expect_rows=args.tags),
              counter=counter),
        timed("details (htmx) cold cache", r, lambda: get_page(client, page, htmx=True, expect_rows=args.tags),
              before=cache.clear, counter=counter),
        timed("details (htmx) warm cache", r, lambda: get_page(client, page, htmx=True, expect_rows=args.tags),
              counter=counter),  # the cold runs above left the cache filled
        timed("catalog /", r, lambda: get_page(client, "/"), counter=counter),
        timed("catalog /?counts=1", r, lambda: get_page(client, "/?counts=1"), counter=counter),
        timed("manifest page cold cache", r, lambda: get_page(client, manifest_page), before=cache.clear,
              counter=counter),
        timed("manifest page warm cache", r, lambda: get_page(client, manifest_page), counter=counter),
    ]

    print(f"timing the floor (bare requests.Session + {workers} threads) …", flush=True)
    floor = Floor(server.url, workers)
    try:
        floor.learn(REPO)
        floor.cold(REPO)  # warm-up: connections open
        rows += [
            timed("floor: cold calls (bare client)", r, lambda: floor.cold(REPO)),
            timed("floor: warm calls (bare client)", r, lambda: floor.warm(REPO)),
        ]
    finally:
        floor.close()

    print_table(rows)
    by_name = {row.name: row for row in rows}
    cold, warm = by_name["details (htmx) cold cache"], by_name["details (htmx) warm cache"]
    fc, fw = by_name["floor: cold calls (bare client)"], by_name["floor: warm calls (bare client)"]
    print(f"\ncold details / floor: {cold.median_ms / fc.median_ms:.1f}x "
          f"({cold.requests} vs {fc.requests} requests); "
          f"warm details / floor: {warm.median_ms / fw.median_ms:.1f}x ({warm.requests} vs {fw.requests} requests)")

    import django

    total_s = time.perf_counter() - started
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": {"tags": args.tags, "repos": args.repos, "repeat": args.repeat, "concurrency": workers,
                   "catalog_ttl": settings.REGISTRYUI["CATALOG_TTL"], "quick": args.quick},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "django": django.get_version(),
                    "platform": platform.platform()},
        "seed_seconds": {"tags": round(seed_tags_s, 2), "repos": round(seed_repos_s, 2)},
        "total_seconds": round(total_s, 1),
        "rows": [{**asdict(row), "median_ms": round(row.median_ms, 1), "min_ms": round(row.min_ms, 1),
                  "samples_ms": [round(s, 1) for s in row.samples_ms]} for row in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} (whole run {total_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
