"""Gunicorn's configuration, used by the image: `gunicorn -c gunicorn.conf.py registryui.wsgi`.

Every knob reads a REGISTRYUI_* variable (gunicorn's own command-line flags still win):

    REGISTRYUI_LISTEN                 address to bind (default 127.0.0.1:8000; the image sets 0.0.0.0:8000)
    REGISTRYUI_WEB_WORKERS            processes (default: the CPUs this container may use, 2 to 8)
    REGISTRYUI_WEB_THREADS            threads per process (default 4)
    REGISTRYUI_WEB_TIMEOUT            seconds a silent worker lives before it is restarted (default 60)
    REGISTRYUI_FORWARDED_ALLOW_IPS    proxies whose X-Forwarded-Proto gunicorn believes (default
                                      127.0.0.1,::1; `*` when only the proxy can reach the port)

With the default local-memory cache each process has its own cache (the catalog is read once per
process, and failed logins are counted per process): set REGISTRYUI_CACHE_URL to Redis to share it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"REGISTRYUI_{name}", "").strip() or default


def _env_int(name: str, default: int) -> int:
    try:
        return int(_env(name, str(default)))
    except ValueError:
        return default


def _cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (`docker run --cpus`)."""
    count = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


wsgi_app = "registryui.wsgi:application"
bind = [_env("LISTEN", "127.0.0.1:8000")]

# The dashboard waits on the registry far more than it computes, so threads do most of the work;
# a few processes use the cores and survive one another's crashes.
workers = _env_int("WEB_WORKERS", max(2, min(_cpus(), 8)))
threads = _env_int("WEB_THREADS", 4)
worker_class = "gthread"
# With threads, the timeout is the worker's heartbeat, not a limit on one request: a long blob
# download keeps streaming while the worker stays alive.
timeout = _env_int("WEB_TIMEOUT", 60)
graceful_timeout = 30
keepalive = 5
# Heartbeat files in memory, not on the container's overlay filesystem (which can stall them).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# X-Forwarded-Proto from these addresses makes the request https to Django (so do
# REGISTRYUI_BEHIND_PROXY's settings, for other servers than gunicorn).
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Logs to stdout/stderr for `docker logs`; the proxy's X-Forwarded-For next to the peer address.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%({x-forwarded-for}i)s" %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
loglevel = _env("LOG_LEVEL", "info").lower()

# Gunicorn 25+ opens a control socket under $HOME, which is the data volume in the image (shared
# by replicas): nothing here uses it.
control_socket_disable = True
