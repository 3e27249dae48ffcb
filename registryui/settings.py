"""Settings, read from REGISTRYUI_* environment variables.

Never REGISTRY_*: the registry binary reads that prefix as its own configuration, and
a shared compose file or environment would leak ours into it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.utils.csp import CSP

from dashboard import conf
from registryui import __version__

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(f"REGISTRYUI_{name}", default)


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name, "")
    if not value:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_secret(name: str) -> str:
    """A secret from REGISTRYUI_<NAME>, or from the file REGISTRYUI_<NAME>_FILE names (Docker
    secrets); surrounding whitespace and the trailing newline of a file are dropped."""
    path = env(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return env(name)


def env_float(name: str, default: float) -> float:
    try:
        return float(env(name, str(default)))
    except ValueError:
        return default


DATA_DIR = Path(env("DATA_DIR", str(BASE_DIR / "var")))


def _secret_key() -> str:
    configured = env_secret("SECRET_KEY")
    if configured:
        return configured
    # A key generated once and kept in the data dir: sessions survive restarts without
    # shipping a default key anybody could read in this file.
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        path.write_text(key)
        path.chmod(0o600)
        return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG")
ALLOWED_HOSTS = [h.strip() for h in env("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_tasks_db",
    "dashboard",
]

MIDDLEWARE = [
    "dashboard.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "dashboard.auth.AccessMiddleware",
    "dashboard.middleware.RegistryErrorMiddleware",
]

ROOT_URLCONF = "registryui.urls"
WSGI_APPLICATION = "registryui.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.registry",
            ],
        },
    },
]


# The web processes, the task worker and the events endpoint all write: a transaction takes the
# write lock when it begins (a read-then-write one would otherwise fail at once with "database is
# locked"), waits for it up to 20 s, and WAL lets pages read while the worker writes.
_SQLITE_OPTIONS = {"transaction_mode": "IMMEDIATE", "timeout": 20,
                   "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}


def _database(url: str) -> dict[str, object]:
    if not url:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        # A file for the test database too: the garbage-collection worker writes from another
        # thread while pages read, which a shared in-memory SQLite refuses ("table is locked").
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "db.sqlite3",
                "OPTIONS": _SQLITE_OPTIONS,
                "TEST": {"NAME": DATA_DIR / f"test-db-{os.getpid()}.sqlite3"}}
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": 60,
        }
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parts.path) or ":memory:",
                "OPTIONS": _SQLITE_OPTIONS}
    raise ValueError(f"DATABASE_URL scheme “{parts.scheme}” is not supported (use postgres:// or sqlite://)")


DATABASES = {"default": _database(os.environ.get("DATABASE_URL", ""))}

_cache_url = env("CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}
        if _cache_url.startswith(("redis://", "rediss://", "unix://"))
        else {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "registryui",
            # Manifests and configs are small; thousands of tags need thousands of entries.
            "OPTIONS": {"MAX_ENTRIES": 50_000},
        }
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
try:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
except OSError:
    pass  # read-only image or volume: collectstatic made it, or finders serve the files
# Cache-busting names (app.<hash>.css) and pre-compressed .gz/.br files, made by `collectstatic`
# (the image runs it at build time with REGISTRYUI_STATIC_MANIFEST=true, and keeps it on). The
# default turns it on only where a manifest exists and DEBUG is off; `collectstatic` itself needs
# it forced on, since the manifest is what it writes.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG and (STATIC_ROOT / "staticfiles.json").exists())
# Without `collectstatic` (local runs, tests) WhiteNoise serves straight from the finders; with
# the manifest it serves STATIC_ROOT alone, hashed names cached for a year as immutable.
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Strict: no inline script or style anywhere, so hostile registry content cannot run.
SECURE_CSP = {
    "default-src": [CSP.NONE],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES")

# -- HTTPS in production: every switch off by default, since local runs and the test suite speak
# plain HTTP on localhost. `manage.py check --deploy` passes with them on (see .env.example).
# Behind a reverse proxy that terminates TLS: trust its X-Forwarded-Proto (is the request
# https?) and X-Forwarded-Host. Only safe when nothing but the proxy can reach the dashboard, and
# the proxy overwrites these headers (Caddy and the nginx example in the README do).
BEHIND_PROXY = env_bool("BEHIND_PROXY")
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
SECURE_SSL_REDIRECT = env_bool("SSL_REDIRECT")
# Never redirected: container healthchecks and scrapers call these over plain HTTP on the
# internal network (a redirect would fail them, and would not protect a token already sent).
# Machines call these over the internal network; a registry's POST redirected to HTTPS would
# come back as a GET (and its events be lost).
SECURE_REDIRECT_EXEMPT = [r"^-/live$", r"^-/health\.json$", r"^metrics$", r"^-/events/$"]
# HSTS: turn it on once HTTPS works with a trusted certificate; a browser that saw it refuses a
# certificate it does not trust without a way to click through, for this many seconds.
SECURE_HSTS_SECONDS = max(0, int(env_float("HSTS_SECONDS", 0)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
}

# -- the dashboard's own settings: their defaults and what each means are in dashboard/conf.py.
D = conf.DEFAULTS
REGISTRYUI = {
    "REGISTRY_URL": env("REGISTRY_URL", D.registry.url).rstrip("/"),
    "USERNAME": env_secret("REGISTRY_USERNAME"),
    "PASSWORD": env_secret("REGISTRY_PASSWORD"),
    "CA_BUNDLE": env("REGISTRY_CA_BUNDLE", D.registry.ca_bundle),
    "INSECURE": env_bool("REGISTRY_INSECURE", D.registry.insecure),
    "CONNECT_TIMEOUT": env_float("REGISTRY_CONNECT_TIMEOUT", D.registry.connect_timeout),
    "READ_TIMEOUT": env_float("REGISTRY_READ_TIMEOUT", D.registry.read_timeout),
    "CONCURRENCY": int(env_float("CONCURRENCY", D.registry.pool_size)),
    "PULL_HOST": env("PULL_HOST", D.pull_host),
    "CATALOG_TTL": env_float("CATALOG_TTL", D.catalog_ttl),
    "VERSION": __version__,
    "ANONYMOUS_READ": env_bool("ANONYMOUS_READ", D.anonymous_read),
    "GC_COMMAND": env("GC_COMMAND", D.gc_command),
    "GC_BEFORE_COMMAND": env("GC_BEFORE_COMMAND", D.gc_before_command),
    "GC_AFTER_COMMAND": env("GC_AFTER_COMMAND", D.gc_after_command),
    "GC_HOOK_TIMEOUT": env_float("GC_HOOK_TIMEOUT", D.gc_hook_timeout),
    "GC_TIMEOUT": env_float("GC_TIMEOUT", D.gc_timeout),
    "GC_STALE_SECONDS": env_float("GC_STALE_SECONDS", D.gc_stale_seconds),
    "STORAGE_PATH": env("STORAGE_PATH", D.storage_path),
    "DEBUG_URL": env("REGISTRY_DEBUG_URL", D.debug_url).rstrip("/"),
    "STORAGE_WARN_PERCENT": env_float("STORAGE_WARN_PERCENT", D.storage_warn_percent),
    "HEALTH_INTERVAL": env_float("HEALTH_INTERVAL", D.health_interval),
    "METRICS_TOKEN": env("METRICS_TOKEN", D.metrics_token),
    "EVENTS_TOKEN": env_secret("EVENTS_TOKEN"),
    "SYNC_INTERVAL": env_float("SYNC_INTERVAL", D.sync_interval),
    "SYNC_STALE_SECONDS": env_float("SYNC_STALE_SECONDS", D.sync_stale_seconds),
}

# Background work (garbage collection) goes through Django's tasks framework into the
# database; `manage.py db_worker` runs it.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalog"
LOGOUT_REDIRECT_URL = "login"
