#!/usr/bin/env bash
# Installs what the WebTorrent interop tests (crates/bitpeer/tests/interop_webtorrent.rs) need:
#   - npm webtorrent and bittorrent-tracker, pinned, into
#     ${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/npm-webtorrent, with node-datachannel overridden
#     to 0.33.4 (its binary ships inside the npm package @node-datachannel/linux-x64-gnu;
#     --ignore-scripts: no install script downloads anything from outside npm);
#   - iproute2 (`ip netns`: the tests run the peers in a network namespace they create,
#     because libdatachannel gathers no loopback candidates).
# Idempotent: does nothing when the pinned versions are already there. Prints the folder
# holding node_modules on its last line.
set -euo pipefail

WEBTORRENT_VERSION=3.0.21
TRACKER_VERSION=11.2.3
NODE_DATACHANNEL_VERSION=0.33.4

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

dir="${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/npm-webtorrent"
has() { # has PACKAGE VERSION: that exact version is installed in $dir
    grep -qs "\"version\": \"$2\"" "$dir/node_modules/$1/package.json"
}
if has webtorrent "$WEBTORRENT_VERSION" && has bittorrent-tracker "$TRACKER_VERSION" &&
    has node-datachannel "$NODE_DATACHANNEL_VERSION"; then
    echo "webtorrent $WEBTORRENT_VERSION and bittorrent-tracker $TRACKER_VERSION already in $dir"
elif ! command -v npm >/dev/null 2>&1; then
    notice "no npm here; cannot install webtorrent (apt-get install npm)"
else
    mkdir -p "$dir"
    cat >"$dir/package.json" <<JSON
{"name":"bitpeer-webtorrent-test","private":true,"type":"module",
 "overrides":{"node-datachannel":"$NODE_DATACHANNEL_VERSION"}}
JSON
    echo "installing: webtorrent@$WEBTORRENT_VERSION bittorrent-tracker@$TRACKER_VERSION into $dir"
    npm install --prefix "$dir" --no-audit --no-fund --ignore-scripts --save-exact \
        "webtorrent@$WEBTORRENT_VERSION" "bittorrent-tracker@$TRACKER_VERSION"
fi
echo "$dir"
