#!/usr/bin/env bash
# Installs the real IPFS software the `ipfs` interop tests run, pinned, into cache folders
# (idempotent: a folder whose pinned packages are present is left alone):
#
#   $CACHE/npm-ipfs-importer  ipfs-unixfs-importer (Helia's UnixFS importer; runs on Node 20)
#   $CACHE/npm-helia          node@22 (Helia needs Node >= 22.19), helia, @helia/unixfs,
#                             @helia/verified-fetch, @helia/block-brokers, @helia/routers
#
# with CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer. Needs npm (Debian's nodejs + npm).
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer"
mkdir -p "$cache"

# npm_pinned DIR PACKAGE@VERSION...: installs the packages into DIR unless a stamp file says
# exactly these pins are already there.
npm_pinned() {
    local dir=$1
    shift
    local want="$*"
    if [[ -f "$dir/.pins" && "$(cat "$dir/.pins")" == "$want" && -d "$dir/node_modules" ]]; then
        echo "already installed in $dir: $want"
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "notice: npm missing; cannot install $want (ipfs interop tests will fail unless BITPEER_SKIP_INTEROP=1)" >&2
        return 0
    fi
    mkdir -p "$dir"
    [[ -f "$dir/package.json" ]] || echo '{"name":"bitpeer-ipfs-interop","private":true}' >"$dir/package.json"
    echo "installing into $dir: $want"
    (cd "$dir" && npm install --no-audit --no-fund --save-exact --loglevel=error "$@")
    echo "$want" >"$dir/.pins"
}

npm_pinned "$cache/npm-ipfs-importer" ipfs-unixfs-importer@17.1.1 blockstore-core@7.0.1
# Helia 7 (full node, gateway client, verified-fetch) needs Node >= 22.19: npm's `node`
# package ships a Node 22 binary (node_modules/node/bin/node).
npm_pinned "$cache/npm-helia" node@22.23.3 helia@7.1.15 @helia/unixfs@8.0.5 \
    @helia/verified-fetch@8.0.4 @helia/block-brokers@5.2.4 @helia/routers@5.1.1
