#!/usr/bin/env bash
# Hostile-swarm benchmark: honest download time under attack vs unattacked, and the peak
# RSS of the bitpeer process under attack. See bench/README.md. Not a test: it prints figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "==> cargo build --release -p bitpeer"
timeout 3600 cargo build --release -p bitpeer
exec /usr/bin/python3 bench/hostile.py "$@"
