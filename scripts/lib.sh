# Shared by the scripts: find Python 3.12+, keep .venv in step with pyproject.toml.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.14 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
      echo "$candidate"; return 0
    fi
  done
  echo "registryui needs Python 3.12 or newer (python3 here is $(python3 --version 2>&1))." >&2
  echo "On Debian: apt-get install python3.12 python3.12-venv, or use pyenv (.python-version says 3.13)." >&2
  return 1
}

ensure_venv() {
  local extra="${1:-}"
  local py stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    py="$(find_python)"
    echo "== creating .venv with $("$py" --version)"
    "$py" -m venv "$VENV"
  fi
  stamp="$VENV/.installed"
  want="$(sha256sum pyproject.toml | cut -c1-16)${extra}"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "== installing registryui${extra:+ with [$extra]} into .venv"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e ".${extra:+[$extra]}"
    echo "$want" > "$stamp"
  fi
}

# Debian packages the tests drive for real: the registry, image tools, a browser, and PostgreSQL
# for the second run of the index tests (testbed/postgres.py finds its binaries under
# /usr/lib/postgresql/<version>/bin, which Debian keeps off PATH; its own cluster is not used).
need_apt_packages() {
  local missing=()
  command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
  command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
  command -v umoci >/dev/null 2>&1 || missing+=(umoci)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    missing+=(postgresql)
  if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
  if [ "$(id -u)" -eq 0 ]; then
    echo "== apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  else
    echo "The tests need these Debian packages: ${missing[*]}. Install them with:" >&2
    echo "    sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

# `make run`: the dashboard served as the image serves it (gunicorn with gunicorn.conf.py, static
# files collected with hashed names and served by WhiteNoise), plus the task worker. Django's
# development server is for `make demo` only. Listens on REGISTRYUI_LISTEN (127.0.0.1:8000).
serve() {
  local addr="${REGISTRYUI_LISTEN:-127.0.0.1:8000}"
  export REGISTRYUI_LISTEN="$addr" PYTHONUNBUFFERED=1
  # Collected into var/ (git-ignored), not ./staticfiles: the tests and `make demo` keep serving
  # static/ from the source tree, never a manifest a later edit has made stale.
  export REGISTRYUI_STATIC_ROOT="${REGISTRYUI_STATIC_ROOT:-$ROOT/var/staticfiles}"
  export REGISTRYUI_STATIC_MANIFEST="${REGISTRYUI_STATIC_MANIFEST:-true}"
  "$VENV/bin/python" manage.py migrate --noinput -v0
  REGISTRYUI_STATIC_MANIFEST=true "$VENV/bin/python" manage.py collectstatic --noinput --clear -v0
  # The sign-in box (or, once there is an admin, how to reset a password) is the last thing
  # before "listening on": the server and the worker start after it, so their lines follow it.
  "$VENV/bin/python" manage.py ensure_admin --url "http://${addr/#0.0.0.0:/localhost:}"
  echo "== registryui listening on http://$addr, reading ${REGISTRYUI_REGISTRY_URL:-http://localhost:5000} (Ctrl+C stops it)"
  "$VENV/bin/gunicorn" -c gunicorn.conf.py registryui.wsgi &
  SERVE_WEB=$!
  # A short poll: registry events (a push, a delete) show on the pages within a second. Garbage
  # collection runs here, never in a request.
  "$VENV/bin/python" manage.py worker --interval 0.5 &
  SERVE_WORKER=$!
  trap 'kill "$SERVE_WEB" "$SERVE_WORKER" 2>/dev/null; wait' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # Either one ending ends both (a port in use stops gunicorn at once): its exit code is ours.
  wait -n "$SERVE_WEB" "$SERVE_WORKER"
}
