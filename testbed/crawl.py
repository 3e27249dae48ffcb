"""Crawl the dashboard page by page and compare two crawls: proof that a refactor changed nothing a user sees.

    python -m testbed.crawl both --before DIR_A --after DIR_B [--out-dir DIR]
    python -m testbed.crawl run --checkout DIR --out FILE.json [--registry-url URL]
    python -m testbed.crawl snapshot --url URL --user U --password P --out FILE.json
    python -m testbed.crawl compare A.json B.json

`snapshot` signs in, then walks every same-origin ``<a href>`` and ``hx-get`` breadth-first (GET only,
never a state-changing URL, never a form), plus a fixed list of extra URLs, and records each answer: status,
content type, redirect target, and for HTML the title, the visible text, links, htmx GETs, forms and assets.
Snapshots keep the text as served; `compare` normalises both sides (``normalise``) before diffing, so a rule
can be tightened without crawling again.

`run` starts one checkout's dashboard (its own code, a fresh data dir, a full index sync) against a registry
and snapshots it; `both` seeds ONE registry and runs both checkouts against it (seeded digests differ from one
seed to the next, so two registries could never compare equal).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urljoin, urlsplit

import requests

from .server import RegistryServer, free_port, registry_binary

__all__ = ["compare", "extract_html", "normalise", "normalise_page", "run_checkout", "snapshot"]

MAX_URLS = 800
# The demo registry has 120 identical bulk/repo-NNNN repositories and a filter link per repository: without a
# limit per URL shape they would fill the cap before the few interesting repositories' deeper pages are reached.
PER_SHAPE = 10
TIMEOUT_S = 60
SHOWN_KEYS = 10  # pages named above a difference they share
# A link with one of these path segments changes state: never follow it (nor Django's admin, under /admin/).
UNSAFE = frozenset({"logout", "delete", "restore", "rollback", "untag", "start"})
# What links may not reach: machine endpoints, a wrong method (GET /-/events/ is 405), deliberately bad
# addresses, and what the GET filter and search forms would ask (typed by hand: forms are never submitted).
EXTRA_URLS = (
    "/-/health.json",
    "/-/live",
    "/metrics",
    "/-/events/",
    "/-/login/",
    "/r/UPPER/",
    "/r/nope/",
    "/r/acme/web/-/manifests/sha256:bad/",
    "/r/acme/web/-/tags/nope/history/",
    "/r/acme/web/-/blobs/sha256:bad/",
    "/-/sync/runs/999999/",
    "/-/gc/runs/999999/",
    "/does-not-exist/",
    "/?q=acme",
    "/?q=zzz-no-match",
    "/-/search/",
    "/-/search/?q=web",
    "/-/search/?q=latest",
    "/-/search/?q=org.opencontainers",
    "/-/search/?q=zzz-no-match",
    "/r/acme/web/?q=1.",
    "/r/acme/web/?kind=signature",
    "/r/acme/multi/?platform=linux%2Farm64",
    "/-/storage/?q=acme",
    "/-/activity/?action=push",
    "/-/activity/?chart=1",
)
# Also asked without signing in: the sign-in page, and what the access rules answer a stranger.
ANON_URLS = ("/", "/-/login/", "/r/acme/web/", "/-/health.json", "/-/live")
METRICS_TOKEN = "crawl-metrics-token"  # `run` sets it: /metrics is covered too
ADMIN = ("admin", "crawl-admin-password")

# -- HTML -----------------------------------------------------------------------------------------------

# Elements that start a new line of visible text: the text diff follows the page's layout, not the
# template's whitespace, so re-indenting a template (or splitting it into includes) changes nothing.
_BLOCK = frozenset(
    "address article aside blockquote br caption dd details dialog div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr li main nav ol option p pre section summary table tbody td tfoot th thead "
    "tr ul".split()
)
_HIDDEN = frozenset({"script", "style", "template"})


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = {"hidden": 0, "pre": 0, "svg": 0}
        self.in_title = False
        self.title: list[str] = []
        self.chunks: list[str] = []
        self.links: list[str] = []
        self.hx: list[str] = []
        self.forms: list[str] = []
        self.assets: list[str] = []

    def _count(self, tag: str, step: int) -> None:
        kind = "hidden" if tag in _HIDDEN else tag if tag in ("pre", "svg") else None
        if kind:
            self.depth[kind] = max(0, self.depth[kind] + step)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self._count(tag, 1)
        if tag == "title" and not self.depth["svg"]:  # an SVG <title> is a tooltip: text like any other
            self.in_title = True
        if tag in _BLOCK:
            self.chunks.append("\n")
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if "hx-get" in a:
            self.hx.append(a["hx-get"])
        if tag == "form":
            self.forms.append(f"{a.get('method', 'get').upper()} {a.get('action', '')}")
        if tag == "link" and a.get("href"):
            self.assets.append(a["href"])
        if tag == "script" and a.get("src"):
            self.assets.append(a["src"])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self._count(tag, -1)

    def handle_endtag(self, tag: str) -> None:
        self._count(tag, -1)
        if tag == "title":
            self.in_title = False
        if tag in _BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.depth["hidden"]:
            # Line breaks come from the layout (block elements, <pre>), not from how the template is wrapped.
            self.chunks.append(data if self.depth["pre"] else re.sub(r"\s+", " ", data))


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def extract_html(html: str) -> dict[str, Any]:
    """Title, visible text (one line per block, whitespace collapsed), and the page's links, htmx GETs,
    forms ("METHOD action") and assets, in document order."""
    p = _PageParser()
    p.feed(html)
    p.close()
    lines = [_collapse(line) for line in "".join(p.chunks).split("\n")]
    return {
        "title": _collapse("".join(p.title)),
        "text": [line for line in lines if line],
        "links": p.links,
        "hx": p.hx,
        "forms": p.forms,
        "assets": p.assets,
    }


def _json_shape(value: Any) -> Any:
    """The keys of a JSON document, and the type of each leaf; a list shows each distinct item shape once."""
    if isinstance(value, dict):
        return {k: _json_shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        shapes = {json.dumps(_json_shape(v), sort_keys=True) for v in value}
        return [json.loads(s) for s in sorted(shapes)]
    return type(value).__name__


def _metric_series(text: str) -> list[str]:
    """Prometheus exposition: which series exist (names and labels), without their values."""
    return sorted({line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")})


# -- normalisation -------------------------------------------------------------------------------------------

_UNITS = r"(?:second|minute|hour|day|week|month|year)s?"
_AMOUNT = rf"(?:\d+|an?)\s{_UNITS}(?:,\s(?:\d+|an?)\s{_UNITS})*"
_DURATION = r"\d+ (?:h|min|s)(?: \d\d (?:min|s))?"
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
# A date-time, not a bare date: ISO 8601, "%Y-%m-%d %H:%M(:%S)( UTC)", and Django's "Dec. 4, 2026, 3:05 p.m.".
_TIMESTAMP = re.compile(
    r"\b(?P<iso>\d{4}-\d\d-\d\d)[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d| UTC)?"
    r"|\b(?P<month>(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?) (?P<day>\d{1,2}), (?P<year>\d{4}), "
    r"(?:\d{1,2}(?::\d\d)? [ap]\.m\.|noon|midnight)"
)
_HASHED = re.compile(r"\.[0-9a-f]{12}(\.(?:css|js|svg|png|ico|woff2?))\b")
# Each rule: something that changes from one run to the next although the code did not. Digests, tag names,
# counts and image sizes are never touched. CSRF tokens and CSP nonces need no rule: they only live in
# attributes (hidden inputs, hx-headers, nonce=), which the extraction never records.
RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Django's naturaltime and timeuntil ("3 minutes ago", "1 day, 2 hours from now", "in 14 minutes") and the
    # dashboard's own "5 s ago", "just now". naturaltime's "now" (under a second) needs no rule: `run` starts
    # crawling more than a second after its sync ended, and nothing else is that recent.
    (re.compile(rf"\b{_AMOUNT}\s(?:ago|from now)\b|\bin {_AMOUNT}\b"), "{reltime}"),
    (re.compile(r"\b(?:just now|\d+ (?:s|min|h|days?) ago)\b"), "{reltime}"),
    # A time of day on its own ("next 16:15 UTC", "started 16:00:04 UTC"); not the time inside a date-time the
    # timestamp rule kept (an image's creation date).
    (re.compile(r"(?<![\d:])(?<!\d{4}-\d\d-\d\d[ T])(?<!\d{4}, )\b\d\d:\d\d(?::\d\d)?(?: UTC)?\b"), "{time}"),
    # How long a sync took ("took 3 s", "running for 1 min 05 s", "about 2 s left", its own column).
    (re.compile(rf"\b(took|running for|about) {_DURATION}\b"), r"\1 {duration}"),
    (re.compile(rf"^{_DURATION}$"), "{duration}"),
    # The registry API's latency, and the disk the registry's storage lives on (shared with the rest of the host).
    (re.compile(r"\b\d+(?:\.\d+)? ?ms\b"), "{ms}"),
    (re.compile(r"\b\d+(?:\.\d+)? [KMGTP]?B free of\b"), "{free} free of"),
    (re.compile(r"\b\d+% used\b"), "{percent} used"),
    # Static files behind ManifestStaticFilesStorage: app.3f2a1b9c0d1e.css.
    (_HASHED, r".{hash}\1"),
)


def _timestamp(match: re.Match[str], today: date | None) -> str:
    """A date-time of the run (within a day of ``today``) becomes "{timestamp}"; an older one is content."""
    if today is not None:
        try:
            day = (
                date.fromisoformat(match["iso"])
                if match["iso"]
                else date(int(match["year"]), _MONTHS.index(match["month"][:3].lower()) + 1, int(match["day"]))
            )
        except ValueError:
            return match[0]
        if abs((day - today).days) > 1:
            return match[0]
    return "{timestamp}"


def normalise(text: str, origin: str = "", today: date | None = None) -> str:
    """``text`` with what legitimately differs between two runs replaced by placeholders.

    ``origin`` is the crawled dashboard's own address; ``today`` the date of the crawl (None: every date-time
    counts as the run's own).
    """
    if origin:
        # Each run's dashboard listens on its own port: absolute URLs to itself differ by it.
        text = text.replace(origin, "{dashboard}").replace(urlsplit(origin).netloc, "{dashboard}")
    text = _TIMESTAMP.sub(lambda m: _timestamp(m, today), text)
    for pattern, replacement in RULES:
        text = pattern.sub(replacement, text)
    return text


_COMPARED = (
    "status",
    "content_type",
    "location",
    "title",
    "text",
    "links",
    "hx",
    "forms",
    "assets",
    "json",
    "hx_headers",
    "body",
)


def normalise_page(page: dict[str, Any], origin: str = "", today: date | None = None) -> dict[str, Any]:
    """The fields compared, every string in them normalised."""

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return normalise(value, origin, today)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return {k: walk(page[k]) for k in _COMPARED if k in page}


# -- crawling -----------------------------------------------------------------------------------------------


def _same_origin_path(url: str, base: str) -> str | None:
    """``url`` (relative to ``base``) as path+query if it is on the dashboard, else None; no fragment."""
    absolute = urljoin(base, url)
    parts, origin = urlsplit(absolute), urlsplit(base)
    if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
        return None
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _shape(path: str) -> str:
    """``path`` with digests, numbers and query values blanked: /r/bulk/repo-#/?sort=&order= ."""
    path = re.sub(r"sha256[:-][0-9a-f]{64}", "sha256:#", path)
    return re.sub(r"=[^&]*", "=", re.sub(r"\d+", "#", path))


def _safe(path: str) -> bool:
    # By path segment, so the read-only /-/deleted/ list is crawled while .../delete/ is not.
    segments = set(urlsplit(path).path.split("/"))
    return not (segments & UNSAFE) and not path.startswith(("/admin/", "/static/"))


def _wants_partial(path: str) -> bool:
    return ("?" in path or path.startswith("/r/")) and not path.endswith("/download")


def sign_in(session: requests.Session, base: str, user: str, password: str) -> None:
    """The dashboard's own login form: its CSRF token, then a POST with the Referer Django checks."""
    login = f"{base}/-/login/"
    form = session.get(login, timeout=TIMEOUT_S)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    if form.status_code != 200 or not match:
        raise RuntimeError(f"GET {login} answered {form.status_code} without a CSRF token")
    r = session.post(
        login,
        data={"csrfmiddlewaretoken": match[1], "username": user, "password": password, "next": "/"},
        headers={"Referer": login},
        allow_redirects=False,
        timeout=TIMEOUT_S,
    )
    if r.status_code != 302 or "sessionid" not in session.cookies:
        raise RuntimeError(f"signing in as {user!r} failed: POST {login} answered {r.status_code}")


def _fetch(session: requests.Session, base: str, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One GET, redirects not followed, reduced to what is compared."""
    with session.get(base + path, headers=headers, allow_redirects=False, timeout=TIMEOUT_S, stream=True) as r:
        ctype = r.headers.get("Content-Type", "")
        page: dict[str, Any] = {"status": r.status_code, "content_type": ctype}
        if "Location" in r.headers:
            page["location"] = _same_origin_path(r.headers["Location"], base + path) or r.headers["Location"]
        hx = {k: v for k, v in sorted(r.headers.items()) if k.lower().startswith("hx-")}
        if hx:
            page["hx_headers"] = hx
        if ctype.startswith("text/html"):
            page.update(extract_html(r.text))
        elif ctype.startswith("application/json"):
            try:
                page["json"] = _json_shape(r.json())
            except ValueError:
                page["body"] = r.text.splitlines()
        elif ctype.startswith("text/plain") and "version=" in ctype:  # Prometheus exposition
            page["body"] = _metric_series(r.text)
        elif ctype.startswith("text/plain"):
            page["body"] = r.text.splitlines()
        else:  # blob downloads, static files: their bytes, as a digest
            digest, size = hashlib.sha256(), 0
            for chunk in r.iter_content(1 << 16):
                digest.update(chunk)
                size += len(chunk)
            page["body"] = f"{size} bytes sha256:{digest.hexdigest()}"
    return page


def snapshot(
    base: str, user: str, password: str, max_urls: int = MAX_URLS, per_shape: int = PER_SHAPE
) -> dict[str, Any]:
    """Sign in and crawl the dashboard at ``base``.

    Returns ``{"origin", "date", ..., "pages": {"GET /path": page, "HX /path": page, "ANON /path": page}}``:
    "HX" is the same URL asked as htmx does, "ANON" without signing in. At most ``max_urls`` pages are
    crawled by link, and at most ``per_shape`` URLs of one ``_shape`` (0: no limit).
    """
    base = base.rstrip("/")
    started, today = time.monotonic(), datetime.now(UTC).date().isoformat()
    anonymous = requests.Session()
    pages = {f"ANON {path}": _fetch(anonymous, base, path) for path in ANON_URLS}
    session = requests.Session()
    sign_in(session, base, user, password)
    crawled: list[str] = []
    seen, shapes, assets, skipped, limited = {"/"}, {"/": 1}, set(), set(), 0
    pending = ["/"]
    # Breadth-first, one level at a time in sorted order: the same pages give the same crawl.
    while pending and len(crawled) < max_urls:
        room = max_urls - len(crawled)
        level, pending = pending[:room], pending[room:]
        found: set[str] = set()
        for path in level:
            crawled.append(path)
            page = pages[f"GET {path}"] = _fetch(session, base, path)
            for target in page.get("links", []) + page.get("hx", []) + [page.get("location") or "#"]:
                if (target_path := _same_origin_path(target, base + path)) is not None:
                    (found if _safe(target_path) else skipped).add(target_path)
            assets.update(p for a in page.get("assets", []) if (p := _same_origin_path(a, base + path)))
        for path in sorted(found - seen):
            shape = _shape(path)
            if not per_shape or shapes.get(shape, 0) < per_shape:
                shapes[shape] = shapes.get(shape, 0) + 1
                pending.append(path)
            else:
                limited += 1
        seen |= found
    for path in sorted(assets - set(crawled)):
        pages[f"GET {path}"] = _fetch(session, base, path)
    for path in EXTRA_URLS:
        if f"GET {path}" not in pages:
            pages[f"GET {path}"] = _fetch(session, base, path)
    for path in sorted({*crawled, *EXTRA_URLS}):
        if _wants_partial(path):
            pages[f"HX {path}"] = _fetch(session, base, path, {"HX-Request": "true"})
    # Last, so that the request counters it lists cover the whole crawl.
    pages["GET /metrics (token)"] = _fetch(session, base, "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    return {
        "origin": base,
        "date": today,
        "seconds": round(time.monotonic() - started, 1),
        "crawled": len(crawled),
        "not_crawled_cap": len(pending),
        "not_crawled_shape": limited,
        "skipped_unsafe": sorted(skipped),
        "pages": dict(sorted(pages.items())),
    }


# -- comparing ----------------------------------------------------------------------------------------------


def _lines(value: Any) -> list[str]:
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in value]
    if isinstance(value, dict):
        return json.dumps(value, indent=1, sort_keys=True).splitlines()
    return [] if value is None else [str(value)]


def _context(snap: dict[str, Any]) -> tuple[str, date | None]:
    return snap.get("origin", ""), date.fromisoformat(snap["date"]) if snap.get("date") else None


def page_diff(
    a: dict[str, Any],
    b: dict[str, Any],
    context_a: tuple[str, date | None] = ("", None),
    context_b: tuple[str, date | None] = ("", None),
) -> list[str]:
    """How page ``b`` differs from page ``a`` once both are normalised (each with its snapshot's origin and
    date): lines to print, none if they are equal."""
    na, nb = normalise_page(a, *context_a), normalise_page(b, *context_b)
    out: list[str] = []
    for field in _COMPARED:
        if na.get(field) == nb.get(field):
            continue
        la, lb = _lines(na.get(field)), _lines(nb.get(field))
        if not isinstance(na.get(field, nb.get(field)), list | dict):  # status, title, location…: one value
            out.append(f"  {field}: {la[0] if la else '(none)'} -> {lb[0] if lb else '(none)'}")
        else:
            out.append(f"  {field}:")
            out += [f"    {line}" for line in difflib.unified_diff(la, lb, "before", "after", n=2, lineterm="")]
    return out


def compare(a: dict[str, Any], b: dict[str, Any], out: TextIO | None = None) -> int:
    """Print every page that differs, and those crawled on one side only; returns how many differ.

    Pages with the very same difference (a change to the base template shows on every page) are listed
    together, under one diff.
    """
    out = out or sys.stdout
    # Static files under hashed names (collectstatic) are the same page whatever their hash.
    pa = {_HASHED.sub(r".{hash}\1", k): v for k, v in a["pages"].items()}
    pb = {_HASHED.sub(r".{hash}\1", k): v for k, v in b["pages"].items()}
    groups: dict[tuple[str, ...], list[str]] = {}
    for key in sorted(pa.keys() | pb.keys()):
        if key not in pb or key not in pa:
            lines = [f"  only in {'before' if key in pa else 'after'}"]
        else:
            lines = page_diff(pa[key], pb[key], _context(a), _context(b))
        if lines:
            groups.setdefault(tuple(lines), []).append(key)
    for lines, keys in groups.items():
        more = f"\n(and {len(keys) - SHOWN_KEYS} more pages with this difference)" if len(keys) > SHOWN_KEYS else ""
        print("\n".join(f"{key}:" for key in keys[:SHOWN_KEYS]) + more, *lines, sep="\n", file=out)
    differ = sum(len(keys) for keys in groups.values())
    print(f"{len(pa.keys() | pb.keys())} pages compared, {differ} differ", file=out)
    return differ


# -- running a checkout ---------------------------------------------------------------------------------------


def _wait_live(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {process.returncode}; log: {log}\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/-/live", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the dashboard at {url} did not answer /-/live within {timeout:.0f} s; log: {log}")


def run_checkout(
    checkout: Path,
    out: Path,
    registry_url: str,
    *,
    storage_path: str = "",
    gc_command: str = "",
    python: str = "",
    max_urls: int = MAX_URLS,
    per_shape: int = PER_SHAPE,
) -> dict[str, Any]:
    """Start ``checkout``'s dashboard on a fresh data dir against ``registry_url``, sync the index, crawl it and
    stop it; the snapshot is written to ``out`` and returned."""
    checkout = checkout.resolve()
    venv = checkout / ".venv/bin/python"
    python = python or (str(venv) if venv.exists() else sys.executable)
    data = Path(tempfile.mkdtemp(prefix="registryui-crawl-"))
    # Nothing of the caller's environment configures the dashboard: both runs see exactly this.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REGISTRYUI_", "DJANGO_")) and k not in ("DATABASE_URL", "PYTHONPATH")
    }
    env |= {
        "REGISTRYUI_DATA_DIR": str(data),
        "REGISTRYUI_REGISTRY_URL": registry_url,
        # No leftover collectstatic manifest of the checkout switches on hashed static names.
        "REGISTRYUI_STATIC_ROOT": str(data / "static"),
        "REGISTRYUI_METRICS_TOKEN": METRICS_TOKEN,
        "REGISTRYUI_STORAGE_PATH": storage_path,
        "REGISTRYUI_GC_COMMAND": gc_command,
        "DJANGO_SUPERUSER_USERNAME": ADMIN[0],
        "DJANGO_SUPERUSER_PASSWORD": ADMIN[1],
        "DJANGO_SUPERUSER_EMAIL": "admin@example.invalid",
    }

    def manage(*args: str) -> None:
        subprocess.run([python, "manage.py", *args], cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)

    # The venv may hold an editable install of another checkout: make sure this checkout's code is what runs.
    where = subprocess.run(
        [python, "-c", "import dashboard; print(dashboard.__file__)"],
        cwd=checkout,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(checkout):
        raise RuntimeError(f"{python} in {checkout} imports dashboard from {where}, not from the checkout")
    manage("migrate", "--noinput", "-v0")
    manage("ensure_admin")
    manage("sync")
    synced = time.monotonic()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data / "runserver.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=checkout,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_live(url, server, log)
        # naturaltime says "now" for under a second, "a second ago" after: keep the sync out of that first second.
        time.sleep(max(0.0, synced + 1.5 - time.monotonic()))
        result = {"checkout": str(checkout), **snapshot(url, *ADMIN, max_urls, per_shape)}
    except BaseException:
        print(f"crawl of {checkout} failed; its data dir is kept: {data}", file=sys.stderr)
        raise
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    shutil.rmtree(data, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


@contextmanager
def seeded_registry() -> Iterator[tuple[str, str, str]]:
    """A registry with ``seed_standard``'s content: (URL, storage root, garbage-collect command)."""
    from .seed import seed_standard

    with tempfile.TemporaryDirectory(prefix="registryui-crawl-registry-") as tmp, RegistryServer(Path(tmp)) as server:
        seed_standard(server.url, skopeo_workdir=Path(tmp) / "skopeo")
        yield server.url, str(server.storage_dir), f"{registry_binary()} garbage-collect {server.config_path}"


def _summary(result: dict[str, Any]) -> str:
    left = f"; not crawled: {result['not_crawled_cap']} over the cap" if result["not_crawled_cap"] else ""
    return (
        f"{len(result['pages'])} URLs ({result['crawled']} pages by link, "
        f"{result['not_crawled_shape']} more of the same shape left out{left}) in {result['seconds']} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.crawl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("snapshot", help="crawl a running dashboard")
    s.add_argument("--url", required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--password", required=True)
    s.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare", help="compare two snapshots; exit code 1 if any page differs")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    r = sub.add_parser("run", help="start one checkout's dashboard against a registry and crawl it")
    r.add_argument("--checkout", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--registry-url", help="default: start and seed a registry for this run")
    r.add_argument("--storage-path", default="", help="that registry's storage root (REGISTRYUI_STORAGE_PATH)")
    r.add_argument("--gc-command", default="", help="its garbage-collect command (REGISTRYUI_GC_COMMAND)")
    b = sub.add_parser("both", help="one seeded registry, two checkouts, one comparison")
    b.add_argument("--before", type=Path, required=True)
    b.add_argument("--after", type=Path, required=True)
    b.add_argument("--out-dir", type=Path, help="where before.json and after.json go (default: a new temp dir)")
    for p in (s, r, b):
        p.add_argument("--max-urls", type=int, default=MAX_URLS, help=f"pages to crawl by link at most ({MAX_URLS})")
        p.add_argument(
            "--per-shape",
            type=int,
            default=PER_SHAPE,
            help=f"of URLs that differ only by numbers, digests or query values, crawl at most this "
            f"many ({PER_SHAPE}; 0: no limit)",
        )
    for p in (r, b):
        p.add_argument("--python", default="", help="the checkouts' interpreter (default: DIR/.venv, else this one)")
    args = parser.parse_args(argv)

    if args.mode == "compare":
        return 1 if compare(json.loads(args.a.read_text()), json.loads(args.b.read_text())) else 0
    if args.mode == "snapshot":
        result = snapshot(args.url, args.user, args.password, args.max_urls, args.per_shape)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        print(f"{args.out}: {_summary(result)}")
        return 0
    limits = {"python": args.python, "max_urls": args.max_urls, "per_shape": args.per_shape}
    if args.mode == "run":
        if args.registry_url:
            registry = nullcontext((args.registry_url, args.storage_path, args.gc_command))
        else:
            registry = seeded_registry()
        with registry as (url, storage, gc):
            result = run_checkout(args.checkout, args.out, url, storage_path=storage, gc_command=gc, **limits)
        print(f"{args.out}: {_summary(result)}")
        return 0
    started = time.monotonic()
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="registryui-crawl-"))
    results = []
    with seeded_registry() as (url, storage, gc):
        print(f"== registry {url} seeded in {time.monotonic() - started:.0f} s")
        for name, checkout in (("before", args.before), ("after", args.after)):
            t0 = time.monotonic()
            out = out_dir / f"{name}.json"
            results.append(run_checkout(checkout, out, url, storage_path=storage, gc_command=gc, **limits))
            print(
                f"== {name}: {checkout} -> {out}: {_summary(results[-1])}; "
                f"{time.monotonic() - t0:.0f} s with migrate, sync and start-up"
            )
    differ = compare(*results)
    print(f"== both: {time.monotonic() - started:.0f} s in all")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
