#!/usr/bin/env bash
# Installs what the WebTorrent interop tests (crates/bitpeer/tests/interop_webtorrent.rs,
# browser_webtorrent.rs) and bench/webtorrent.py need:
#   - npm webtorrent, bittorrent-tracker and playwright-core, pinned, into
#     ${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/npm-webtorrent, with node-datachannel overridden
#     to 0.33.4 (its binary ships inside the npm package @node-datachannel/linux-x64-gnu;
#     --ignore-scripts and PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1: no install script downloads
#     anything from outside npm, and playwright-core drives Debian's chromium, never a
#     downloaded browser);
#   - Debian's chromium at /usr/bin/chromium (apt-get update, then apt-get install, only when
#     it is missing);
#   - iproute2 (`ip netns`: the tests run the peers in a network namespace they create,
#     because libdatachannel gathers no loopback candidates).
# Idempotent: does nothing when the pinned versions are already there. Prints the folder
# holding node_modules on its last line.
set -euo pipefail

WEBTORRENT_VERSION=3.0.21
TRACKER_VERSION=11.2.3
NODE_DATACHANNEL_VERSION=0.33.4
PLAYWRIGHT_CORE_VERSION=1.57.0 # the same as scripts/install-webui.sh

notice() { printf 'notice: %s\n' "$*" >&2; }

if ! command -v ip >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: iproute2"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iproute2 ||
            { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iproute2; }
    else
        notice "no ip (iproute2) and not root: the WebTorrent tests will fail unless BITPEER_SKIP_INTEROP=1"
    fi
fi

if [[ ! -x /usr/bin/chromium ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: chromium"
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
    else
        notice "no /usr/bin/chromium and not root: the browser WebTorrent tests will fail unless BITPEER_SKIP_INTEROP=1"
    fi
fi

dir="${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/npm-webtorrent"
has() { # has PACKAGE VERSION: that exact version is installed in $dir
    grep -qs "\"version\": \"$2\"" "$dir/node_modules/$1/package.json"
}
if has webtorrent "$WEBTORRENT_VERSION" && has bittorrent-tracker "$TRACKER_VERSION" &&
    has node-datachannel "$NODE_DATACHANNEL_VERSION" && has playwright-core "$PLAYWRIGHT_CORE_VERSION"; then
    echo "webtorrent $WEBTORRENT_VERSION, bittorrent-tracker $TRACKER_VERSION and playwright-core $PLAYWRIGHT_CORE_VERSION already in $dir"
elif ! command -v npm >/dev/null 2>&1; then
    notice "no npm here; cannot install webtorrent (apt-get install npm)"
else
    mkdir -p "$dir"
    cat >"$dir/package.json" <<JSON
{"name":"bitpeer-webtorrent-test","private":true,"type":"module",
 "overrides":{"node-datachannel":"$NODE_DATACHANNEL_VERSION"}}
JSON
    echo "installing: webtorrent@$WEBTORRENT_VERSION bittorrent-tracker@$TRACKER_VERSION playwright-core@$PLAYWRIGHT_CORE_VERSION into $dir"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$dir" --no-audit --no-fund \
        --ignore-scripts --save-exact "webtorrent@$WEBTORRENT_VERSION" \
        "bittorrent-tracker@$TRACKER_VERSION" "playwright-core@$PLAYWRIGHT_CORE_VERSION"
fi
echo "$dir"
