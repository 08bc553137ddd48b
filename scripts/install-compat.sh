#!/usr/bin/env bash
# Installs what the qBittorrent/Transmission compatibility tests
# (crates/bitpeer/tests/daemon_compat.rs) need:
#   - PyPI qbittorrent-api and transmission-rpc, pinned, into a venv at
#     ${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/venv-compat
#   - npm flood, pinned, into ${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/npm-flood (a real
#     third-party web UI, run on Debian's Node 20 against both APIs)
#   - Debian's transmission-cli (transmission-remote), installed by scripts/test.sh's apt step
#   - Debian's qbittorrent-nox and transmission-daemon (the reference servers of the
#     differential tests) and python3-venv: also in scripts/test.sh's apt step
# Idempotent: does nothing when the pinned versions are already there. Prints the venv's
# python on its last line.
set -euo pipefail

QBITTORRENT_API_VERSION=2026.10.1
TRANSMISSION_RPC_VERSION=7.0.12
FLOOD_VERSION=4.11.0 # 4.16 needs Node 22; Debian has 20

notice() { printf 'notice: %s\n' "$*" >&2; }

venv="${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/venv-compat"
py="$venv/bin/python"
have() { # have DIST VERSION
    [[ -x $py ]] && "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null
}
if have qbittorrent-api "$QBITTORRENT_API_VERSION" && have transmission-rpc "$TRANSMISSION_RPC_VERSION"; then
    echo "qbittorrent-api $QBITTORRENT_API_VERSION and transmission-rpc $TRANSMISSION_RPC_VERSION already in $venv"
else
    if [[ ! -x $py ]]; then
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv" || { notice "cannot make a venv (apt-get install python3-venv)"; exit 1; }
    fi
    echo "installing: qbittorrent-api==$QBITTORRENT_API_VERSION transmission-rpc==$TRANSMISSION_RPC_VERSION into $venv"
    "$py" -m pip install -q --disable-pip-version-check \
        "qbittorrent-api==$QBITTORRENT_API_VERSION" "transmission-rpc==$TRANSMISSION_RPC_VERSION"
fi
flood="${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/npm-flood"
if grep -qs "\"version\": \"$FLOOD_VERSION\"" "$flood/node_modules/flood/package.json"; then
    echo "flood $FLOOD_VERSION already in $flood"
elif ! command -v npm >/dev/null 2>&1; then
    notice "no npm here; cannot install flood (apt-get install npm)"
else
    mkdir -p "$flood"
    [[ -f "$flood/package.json" ]] || echo '{"name":"bitpeer-flood-test","private":true}' >"$flood/package.json"
    echo "installing: flood@$FLOOD_VERSION into $flood"
    npm install --prefix "$flood" --no-audit --no-fund --save-exact "flood@$FLOOD_VERSION"
fi
echo "$py"
