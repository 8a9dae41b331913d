# Sourced by the other scripts: a virtualenv in .venv with mahnwerk and its
# tools, made on first use from nothing but python3 (installs python3-venv on
# Debian if the venv module is missing, which needs root, as on a fresh machine).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MAHNWERK_VENV:-$ROOT/.venv}"

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "need: $* (run as root, or install them: apt-get install $*)" >&2
        exit 1
    fi
    if [ -z "${_APT_UPDATED:-}" ]; then
        apt-get update -qq
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PY="$(command -v python3 || true)"
if [ -z "$PY" ]; then
    apt_install python3 python3-venv
    PY="$(command -v python3)"
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "mahnwerk needs Python >= 3.11, found $("$PY" --version)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        "$PY" -m venv "$VENV"
    fi
fi
# Reinstall only when the dependencies changed.
STAMP="$VENV/.mahnwerk-installed"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
