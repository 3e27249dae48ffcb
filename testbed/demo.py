"""`make demo`: a local registry with sample images, and the dashboard against it.

The registry is Debian's `docker-registry` on loopback, its data under `.demo/` (git-ignored),
so a second start reuses what the first one pushed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path

import requests

from .seed import seed_standard
from .server import Notifications, RegistryServer, free_port, registry_binary

ROOT = Path(__file__).resolve().parents[1]


def demo_registry(data: Path, *, port: int, notifications: Notifications | None = None) -> RegistryServer:
    """The demo's registry, configured as deploy/registry.yml is for garbage collection: deletes
    on, and no in-memory blob-descriptor cache, so GC then a re-push of the same layers leaves a
    whole image (tests/gc/test_stale_cache.py runs that on this very function)."""
    return RegistryServer(data, port=port, delete_enabled=True, blob_cache=False, notifications=notifications)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default=os.environ.get("REGISTRYUI_LISTEN", "127.0.0.1:8000"),
                        help="address the dashboard listens on (default 127.0.0.1:8000)")
    parser.add_argument("--data", type=Path, default=ROOT / ".demo", help="where the demo registry keeps its data")
    args = parser.parse_args()

    args.data.mkdir(parents=True, exist_ok=True)
    port = 5000 if _port_free(5000) else free_port()
    # The registry reports pushes, pulls and deletes to the dashboard, as deploy/registry.yml does.
    token = os.environ.get("REGISTRYUI_EVENTS_TOKEN") or secrets.token_urlsafe(32)
    events = Notifications(url=f"http://{args.listen}/-/events/", token=token, threshold=3, backoff="1s")
    with demo_registry(args.data, port=port, notifications=events) as server:
        catalog = requests.get(f"{server.url}/v2/_catalog", timeout=5).json().get("repositories") or []
        if catalog:
            print(f"== demo registry at {server.url} (reusing {len(catalog)}+ repositories in {args.data})")
        else:
            print(f"== demo registry at {server.url}: pushing sample images…")
            seeded = seed_standard(server.url, skopeo_workdir=args.data / "skopeo")
            print(f"   pushed {len(seeded.repos)} repositories in {seeded.seconds:.1f} s")
        env = {**os.environ, "REGISTRYUI_REGISTRY_URL": server.url, "REGISTRYUI_EVENTS_TOKEN": token}
        python = sys.executable
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        # Garbage collection from the dashboard runs the same packaged binary on the demo's data.
        env.setdefault("REGISTRYUI_GC_COMMAND", f"{registry_binary()} garbage-collect {server.config_path}")
        env.setdefault("REGISTRYUI_STORAGE_PATH", str(server.storage_dir))
        # The worker logs every task (hundreds of events after seeding): to a file, so the sign-in
        # box stays on screen.
        worker_log = args.data / "worker.log"
        print(f"== the task worker logs to {worker_log}")
        # The sign-in box is the last thing before "listening on": the server and the worker
        # start after it, so their lines follow it.
        subprocess.run([python, "manage.py", "ensure_admin", "--url", f"http://{args.listen}"], cwd=ROOT, env=env,
                       check=True)
        print(f"== registryui listening on http://{args.listen}  (Ctrl+C stops everything)", flush=True)
        web = subprocess.Popen([python, "manage.py", "runserver", "--noreload", args.listen], cwd=ROOT, env=env)
        # A short poll: a push shows on the page within a second.
        with worker_log.open("a") as log:
            worker = subprocess.Popen([python, "manage.py", "worker", "--interval", "0.5"], cwd=ROOT, env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            web.wait()
        except KeyboardInterrupt:
            pass
        finally:
            for process in (web, worker):
                process.terminate()
            for process in (web, worker):
                process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
