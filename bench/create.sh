#!/usr/bin/env bash
# Benchmark of torrent creation: bitpeer vs transmission-create vs libtorrent, on one
# 1 GiB pseudo-random file. See bench/README.md. Not a test: it prints figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "==> cargo build --release -p bitpeer"
timeout 3600 cargo build --release -p bitpeer
exec /usr/bin/python3 bench/create.py "$@"
