#!/usr/bin/env bash
# What the `bitpeer pipe` tests need: Debian's netcat-openbsd (`nc`), on either side of a
# `--plain` pipe. Idempotent: installs only what is missing, as root (or with sudo -n).
set -euo pipefail

if dpkg-query -W -f='${Status}' netcat-openbsd 2>/dev/null | grep -q 'install ok installed'; then
    echo "netcat-openbsd: installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "notice: netcat-openbsd missing and no apt-get; pipe tests fail unless BITPEER_SKIP_INTEROP=1" >&2
    exit 0
fi
as_root=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "notice: netcat-openbsd missing, not root and no sudo; pipe tests fail unless BITPEER_SKIP_INTEROP=1" >&2
        exit 0
    fi
fi
echo "installing netcat-openbsd"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends netcat-openbsd
