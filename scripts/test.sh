#!/usr/bin/env bash
# Runs every test of bitpeer: formatting, clippy, a short fuzz of each cargo-fuzz target,
# and `cargo test --workspace` (unit, property and interop tests). This is THE test
# command: the README and CI (.ci/run) call it. Safe to run again and again.
#
# Installs the real clients the interop tests need (Debian packages python3-libtorrent,
# transmission-cli, aria2, opentracker; openssl and ca-certificates for the HTTPS tracker
# test; qbittorrent-nox and transmission-daemon as reference servers, python3-venv for the
# pinned PyPI clients of scripts/install-compat.sh) when one is missing, as root or through sudo.
#
# Environment:
#   BITPEER_SKIP_INTEROP=1   let interop tests pass (with a notice) when a client is missing
#   BITPEER_FUZZ_SECONDS=N   seconds per fuzz target (default 10); 0 skips the fuzz step
#   BITPEER_FUZZ_SANITIZER=S cargo fuzz's --sanitizer (default none: the decoders are safe
#                            Rust, so what the fuzz step looks for is panics, hangs and
#                            unbounded memory, which libFuzzer sees without AddressSanitizer;
#                            `address` builds some 30% slower)
#   CI                       when set, cargo prints no colour
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
notice() { printf 'notice: %s\n' "$*" >&2; }

if [[ -n "${CI:-}" ]]; then
    export CARGO_TERM_COLOR=never
fi

# --- Debian packages of the real clients ------------------------------------------------
step "checking Debian packages for interop tests"
packages=(python3-libtorrent transmission-cli aria2 opentracker openssl ca-certificates qbittorrent-nox transmission-daemon python3-venv)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]} == 0)); then
    echo "all installed: ${packages[*]}"
elif ! command -v apt-get >/dev/null 2>&1; then
    notice "missing ${missing[*]} and no apt-get here; interop tests will fail unless BITPEER_SKIP_INTEROP=1"
else
    as_root=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            as_root=(sudo -n)
        else
            as_root=(none)
        fi
    fi
    if [[ ${as_root[0]:-} == none ]]; then
        notice "missing ${missing[*]}, and not root and no sudo to install them; interop tests will fail unless BITPEER_SKIP_INTEROP=1"
    else
        echo "installing: ${missing[*]}"
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

step "scripts/install-pipe.sh (netcat-openbsd for the pipe tests)"
scripts/install-pipe.sh
step "scripts/install-ipv6.sh (miniupnpd, nftables for the port mapping tests)"
scripts/install-ipv6.sh
# --- IPFS software (npm packages pinned into cache folders) ------------------------------
step "installing IPFS interop software (scripts/install-ipfs.sh)"
if ! scripts/install-ipfs.sh; then
    notice "scripts/install-ipfs.sh failed; IPFS interop tests will fail unless BITPEER_SKIP_INTEROP=1"
fi

# --- the web UI's browser test: Debian chromium, playwright-core pinned from npm ----------
step "web UI test tools (scripts/install-webui.sh)"
scripts/install-webui.sh || notice "scripts/install-webui.sh failed; the web UI test will fail unless BITPEER_SKIP_INTEROP=1"

# --- WebTorrent peers (npm webtorrent, bittorrent-tracker, playwright-core pinned; Debian
# chromium; iproute2 for a netns) ---
step "WebTorrent interop software (scripts/install-webtorrent.sh)"
scripts/install-webtorrent.sh || notice "scripts/install-webtorrent.sh failed; the WebTorrent tests will fail unless BITPEER_SKIP_INTEROP=1"

# --- qBittorrent/Transmission client libraries for the compat tests (pinned PyPI, a venv) --
step "qBittorrent/Transmission client libraries (scripts/install-compat.sh)"
scripts/install-compat.sh || notice "scripts/install-compat.sh failed; the daemon_compat tests will fail unless BITPEER_SKIP_INTEROP=1"

# --- formatting and lints ---------------------------------------------------------------
step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# --- fuzzing -----------------------------------------------------------------------------
fuzz_seconds="${BITPEER_FUZZ_SECONDS:-10}"
fuzz_sanitizer="${BITPEER_FUZZ_SANITIZER:-none}"
step "fuzz: each cargo-fuzz target for ${fuzz_seconds} s"
fuzz_ready() {
    if [[ ! -f fuzz/Cargo.toml ]]; then
        notice "no fuzz/Cargo.toml yet; skipping the fuzz step"
        return 1
    fi
    if [[ "$fuzz_seconds" == 0 ]]; then
        notice "BITPEER_FUZZ_SECONDS=0; skipping the fuzz step"
        return 1
    fi
    if ! command -v rustup >/dev/null 2>&1 || ! rustup toolchain list | grep -q nightly; then
        notice "no nightly toolchain (rustup toolchain install nightly); skipping the fuzz step"
        return 1
    fi
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        echo "cargo-fuzz missing; installing it (at most 10 minutes)"
        if ! timeout 600 cargo install cargo-fuzz --locked; then
            notice "cannot install cargo-fuzz; skipping the fuzz step (the corpus tests still run in cargo test)"
            return 1
        fi
        if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
            notice "cargo +nightly fuzz still does not run; skipping the fuzz step"
            return 1
        fi
    fi
    return 0
}
if fuzz_ready; then
    targets=$(cargo +nightly fuzz list)
    if [[ -z "$targets" ]]; then
        notice "cargo fuzz list shows no targets"
    fi
    # libFuzzer adds the new inputs it finds to the first corpus folder it is given: make
    # that a scratch folder, so the checked-in seeds in fuzz/corpus/ stay as they are and a
    # second run starts from the same place. Crash inputs land in fuzz/artifacts/ (ignored).
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/bitpeer-fuzz.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    for target in $targets; do
        step "fuzz: $target (${fuzz_seconds} s)"
        corpora=("$scratch/$target")
        mkdir -p "$scratch/$target"
        if [[ -d "fuzz/corpus/$target" ]]; then
            corpora+=("$PWD/fuzz/corpus/$target")
        fi
        # A crash makes cargo fuzz exit non-zero, and set -e fails the script with it.
        # The outer timeout only guards against a hang in building or in libFuzzer itself.
        timeout $((fuzz_seconds + 1200)) \
            cargo +nightly fuzz run --sanitizer "$fuzz_sanitizer" "$target" "${corpora[@]}" -- -max_total_time="$fuzz_seconds"
    done
fi

# --- tests (last, so the output ends with the test runner's own summary) ------------------
# nextest prints one summary for the whole workspace; plain cargo test is the fallback.
# Doc-tests are left out: there are none, and their empty summary would close the log.
if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace --no-fail-fast"
    cargo nextest run --workspace --no-fail-fast
else
    step "cargo test --workspace --no-fail-fast --lib --bins --tests"
    cargo test --workspace --no-fail-fast --lib --bins --tests
fi
