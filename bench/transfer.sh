#!/usr/bin/env bash
# Loopback transfer benchmark (bitpeer and libtorrent, both directions). See bench/README.md.
# Not a test: it prints figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "==> cargo build --release -p bitpeer"
timeout 3600 cargo build --release -p bitpeer
exec /usr/bin/python3 bench/transfer.py "$@"
