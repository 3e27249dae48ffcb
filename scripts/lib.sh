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
