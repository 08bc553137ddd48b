#!/usr/bin/env bash
# Installs what the web UI browser test (crates/bitpeer/tests/webui/ui_test.mjs) needs:
#   - Debian's chromium at /usr/bin/chromium (apt-get, as root or through sudo)
#   - playwright-core and axe-core, pinned, into ${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/npm-webui
#     (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1: it drives the system chromium, never a downloaded one;
#     axe-core is the accessibility checker the test runs inside the page)
# Idempotent: does nothing when both are already there. Prints the folder holding
# node_modules on its last line, so a caller can set NODE_PATH from it.
set -euo pipefail

PLAYWRIGHT_CORE_VERSION=1.57.0
AXE_CORE_VERSION=4.11.0 # accessibility checks run in the page by ui_test.mjs

notice() { printf 'notice: %s\n' "$*" >&2; }

as_root=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        as_root=(none)
    fi
fi

if [[ ! -x /usr/bin/chromium ]]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        notice "no /usr/bin/chromium and no apt-get here; the web UI test will fail unless BITPEER_SKIP_INTEROP=1"
    elif [[ ${as_root[0]:-} == none ]]; then
        notice "no /usr/bin/chromium, and not root and no sudo to install it"
    else
        echo "installing: chromium"
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends chromium
    fi
fi

dir="${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/npm-webui"
has() { # has PACKAGE VERSION: that exact version is installed in $dir
    grep -qs "\"version\": \"$2\"" "$dir/node_modules/$1/package.json"
}
if has playwright-core "$PLAYWRIGHT_CORE_VERSION" && has axe-core "$AXE_CORE_VERSION"; then
    echo "playwright-core $PLAYWRIGHT_CORE_VERSION and axe-core $AXE_CORE_VERSION already in $dir"
elif ! command -v npm >/dev/null 2>&1; then
    notice "no npm here; cannot install playwright-core (apt-get install npm)"
else
    mkdir -p "$dir"
    [[ -f "$dir/package.json" ]] || echo '{"name":"bitpeer-webui-test","private":true}' >"$dir/package.json"
    echo "installing: playwright-core@$PLAYWRIGHT_CORE_VERSION axe-core@$AXE_CORE_VERSION into $dir"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$dir" --no-audit --no-fund \
        --save-exact "playwright-core@$PLAYWRIGHT_CORE_VERSION" "axe-core@$AXE_CORE_VERSION"
fi
echo "$dir"
