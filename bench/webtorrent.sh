#!/usr/bin/env bash
# WebTorrent seeding benchmark (bitpeer -> Node webtorrent against Node webtorrent -> Node
# webtorrent, over WebRTC in a network namespace). See bench/README.md. Not a test: it prints
# figures. Needs root and scripts/install-webtorrent.sh's npm packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "==> cargo build --release -p bitpeer"
timeout 3600 cargo build --release -p bitpeer
exec /usr/bin/python3 bench/webtorrent.py "$@"
