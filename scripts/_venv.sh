# Sourced by the shell scripts here: makes .venv with the project in it.
# Usage: ensure_venv [EXTRAS]   (EXTRAS e.g. "test"; re-installs only when pyproject.toml changed)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${COZE_EDGE_VENV:-$ROOT/.venv}"

find_python() {
    # The distribution's python3 first: it is what a Raspberry Pi runs (Debian bookworm's
    # 3.11.2 has quirks later 3.11 releases fixed, and the tests must meet them).
    for candidate in /usr/bin/python3 python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' \
                2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "coze-edge needs Python >= 3.11 with venv (apt install python3-venv); none found" >&2
    return 1
}

ensure_venv() {
    local extras="${1:-}"
    local python
    python="$(find_python)"
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.coze-edge-python" 2>/dev/null)" != "$python" ]; then
        echo "== $VENV was made with another Python; making it again with $python"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV with $python ($("$python" --version))"
        "$python" -m venv "$VENV"
        echo "$python" >"$VENV/.coze-edge-python"
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    local stamp
    stamp="$VENV/.coze-edge-$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-${extras:-runtime}"
    if [ ! -f "$stamp" ]; then
        echo "== installing coze-edge${extras:+[$extras]} into $VENV"
        if [ -n "$extras" ]; then
            "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]"
        else
            "$VENV/bin/python" -m pip install -q -e "$ROOT"
        fi
        if [ "$extras" = "test" ]; then
            # The official SDK as an independent reference client. It pins websockets<15,
            # so it goes in without its pins; its real dependencies come from the test extra.
            "$VENV/bin/python" -m pip install -q --no-deps "cozepy==0.20.0"
        fi
        touch "$stamp"
    fi
}

ensure_apt() {
    # ensure_apt PACKAGE...: installs the missing ones when root, else says what is missing.
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "!! missing system packages: ${missing[*]} (run as root, or install them)" >&2
        return 1
    fi
}

ensure_node_packages() {
    # ensure_node_packages DIR: `npm ci` in DIR (its package.json and package-lock.json pin
    # every package) when DIR/node_modules is missing or was made from another lock file.
    local dir="$1"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        ensure_apt nodejs npm
    fi
    if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
        echo "!! Node.js >= 18 is needed for $dir, found $(node --version)" >&2
        return 1
    fi
    local stamp="$dir/node_modules/.coze-edge-lock"
    local lock
    lock="$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$lock" ]; then
        echo "== npm ci in $dir"
        (cd "$dir" && npm ci --loglevel=error)
        echo "$lock" >"$stamp"
    fi
}
