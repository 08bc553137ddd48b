#!/usr/bin/env bash
# What the port mapping tests (crates/bitpeer/tests/port_mapping.rs) need: Debian's
# miniupnpd with its nftables backend, nft, and ip (iproute2) for the network namespaces the
# tests create. miniupnpd is only run by the tests, inside their namespaces (the package's
# own service is not started here). Idempotent: installs only what is missing, as root (or
# with sudo -n).
set -euo pipefail

pkgs=(miniupnpd-nftables nftables iproute2)
missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "${pkgs[*]}: installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "notice: ${missing[*]} missing and no apt-get; port mapping tests fail unless BITPEER_SKIP_INTEROP=1" >&2
    exit 0
fi
as_root=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "notice: ${missing[*]} missing, not root and no sudo; port mapping tests fail unless BITPEER_SKIP_INTEROP=1" >&2
        exit 0
    fi
fi
echo "installing ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
