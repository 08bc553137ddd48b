#!/usr/bin/env bash
# Benchmark of UnixFS import: `bitpeer ipfs add` vs Helia's importer (ipfs-unixfs-importer,
# npm) on one 1 GiB pseudo-random file, median of 3. See bench/README.md. Not a test: it
# prints figures. Needs scripts/install-ipfs.sh to have run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "==> cargo build --release -p bitpeer"
timeout 3600 cargo build --release -p bitpeer
exec timeout 3600 python3 bench/ipfs_add.py "$@"
