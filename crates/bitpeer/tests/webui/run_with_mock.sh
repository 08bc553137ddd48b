#!/usr/bin/env bash
# Runs the web UI's tests without the daemon: the unit tests of the formatting helpers, then
# the browser test (ui_test.mjs) against mock_api.py on a free loopback port.
#
#   crates/bitpeer/tests/webui/run_with_mock.sh [SHOTS_DIR]
#
# Needs scripts/install-webui.sh to have run (chromium, playwright-core). The mock is
# stopped by its PID when this script ends, pass or fail. Screenshots go to SHOTS_DIR
# (default: a new temporary folder, printed at the end).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shots="${1:-$(mktemp -d -t bitpeer-webui-shots.XXXXXX)}"
work="$(mktemp -d -t bitpeer-webui.XXXXXX)"
mock_pid=""
cleanup() {
    if [[ -n "$mock_pid" ]]; then kill "$mock_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

node --test "$here/util.test.mjs"

python3 "$here/mock_api.py" --port 0 --empty >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
url=""
for _ in $(seq 1 100); do # up to 10 s for the "api listening on" line
    url="$(sed -n 's/^api listening on \(http:[^ ]*\)$/\1/p' "$work/mock.out")"
    [[ -n "$url" ]] && break
    if ! kill -0 "$mock_pid" 2>/dev/null; then
        echo "error: mock_api.py exited: $(cat "$work/mock.err")" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$url" ]]; then
    echo "error: mock_api.py did not say where it listens within 10 s" >&2
    exit 1
fi

python3 "$here/mock_api.py" --write-torrent "$work/sample.torrent" >/dev/null
node "$here/ui_test.mjs" --url "$url/" --torrent "$work/sample.torrent" --shots "$shots" --timeout 120
echo "screenshots: $shots"
