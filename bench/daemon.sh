#!/usr/bin/env bash
# Many-torrent daemon benchmark: bitpeer daemon vs qbittorrent-nox, 10,000 small seeding
# torrents each. See bench/README.md. Not a test: it prints figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${BITPEER_BIN:-}" ]; then
  echo "==> cargo build --release -p bitpeer"
  timeout 3600 cargo build --release -p bitpeer
fi
exec /usr/bin/python3 bench/daemon.py "$@"
