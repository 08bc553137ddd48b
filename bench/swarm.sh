#!/usr/bin/env bash
# Swarm benchmark: one seeder and 20 leechers of bitpeer, then of libtorrent, on 127.0.0.1.
# See bench/README.md. Not a test: it prints figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "==> cargo build --release -p bitpeer"
timeout 3600 cargo build --release -p bitpeer
exec /usr/bin/python3 bench/swarm.py "$@"
