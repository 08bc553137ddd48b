#!/usr/bin/env bash
# UDP announce load against `bitpeer tracker` (announces/s, peak RSS). See bench/README.md.
# Not a test: it prints figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "==> cargo build --release -p bitpeer"
timeout 3600 cargo build --release -p bitpeer
exec timeout 3600 python3 bench/tracker_load.py "$@"
