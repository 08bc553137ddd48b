#!/usr/bin/env bash
# Benchmark of `bitpeer pipe` on loopback (not a test: it prints figures): 1 GiB from a
# file through `nc -l` <- `nc -N` (netcat-openbsd), through `bitpeer pipe --plain`, and
# through the encrypted `bitpeer pipe` (Noise, --no-dht, a ticket), one run each, in the
# same run so a noisy machine still gives a fair ratio. Goals: --plain at least 90% of
# netcat's throughput, encrypted at least 50%.
#
#   bench/pipe.sh [SIZE_MIB]        (default 1024)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size_mib="${1:-1024}"
echo "==> cargo build --release -p bitpeer"
timeout 3600 cargo build --release -p bitpeer
bin="${CARGO_TARGET_DIR:-target}/release/bitpeer"
command -v nc >/dev/null || { echo "nc (netcat-openbsd) is needed: scripts/install-pipe.sh" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

data="$work/data"
echo "==> ${size_mib} MiB of random data"
head -c "$((size_mib << 20))" /dev/urandom > "$data"

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listen() { # port
    local hex; hex=$(printf '0100007F:%04X' "$1")
    for _ in $(seq 500); do
        awk -v a="$hex" '$2==a && $4=="0A" {f=1} END {exit !f}' /proc/net/tcp && return 0
        sleep 0.01
    done
    echo "nothing listens on $1" >&2; exit 1
}
now() { date +%s.%N; }
cpu() { awk '{print $1 + $2}' "$1"; } # user + sys seconds written by /usr/bin/time
report() { # name start end
    /usr/bin/python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{sys.argv[3]:<22} {s:7.2f} s  {int(sys.argv[4])/s/1e6:8.0f} MB/s   CPU s: receiver {sys.argv[5]}, sender {sys.argv[6]}')" "$2" "$3" "$1" "$((size_mib << 20))" "$(cpu "$work/l.cpu")" "$(cpu "$work/c.cpu")"
}
timed() { # file cmd...
    local out="$1"; shift
    /usr/bin/time -f '%U %S' -o "$out" "$@"
}

# 1. netcat to netcat.
port=$(free_port)
timed "$work/l.cpu" nc -l 127.0.0.1 "$port" > /dev/null < /dev/null & pids+=($!); lpid=$!
wait_listen "$port"
t0=$(now); timed "$work/c.cpu" nc -N 127.0.0.1 "$port" < "$data" > /dev/null; wait "$lpid"; t1=$(now)
nc_line=$(report "nc -l <- nc -N" "$t0" "$t1")

# 2. bitpeer --plain to bitpeer --plain.
port=$(free_port)
timed "$work/l.cpu" "$bin" pipe listen --plain --listen "127.0.0.1:$port" > /dev/null < /dev/null 2>/dev/null & pids+=($!); lpid=$!
wait_listen "$port"
t0=$(now); timed "$work/c.cpu" "$bin" pipe connect --plain "127.0.0.1:$port" < "$data" > /dev/null; wait "$lpid"; t1=$(now)
plain_line=$(report "bitpeer pipe --plain" "$t0" "$t1")

# 3. encrypted bitpeer pipe (ticket, no DHT).
timed "$work/l.cpu" "$bin" pipe listen --no-dht --key "$work/key" --listen 127.0.0.1:0 > /dev/null < /dev/null 2> "$work/l.err" & pids+=($!); lpid=$!
for _ in $(seq 500); do grep -q '^ticket: ' "$work/l.err" && break; sleep 0.01; done
ticket=$(sed -n 's/^ticket: //p' "$work/l.err")
t0=$(now); timed "$work/c.cpu" "$bin" pipe connect "$ticket" < "$data" > /dev/null; wait "$lpid"; t1=$(now)
noise_line=$(report "bitpeer pipe (Noise)" "$t0" "$t1")

echo
echo "$nc_line"
echo "$plain_line"
echo "$noise_line"
/usr/bin/python3 - "$nc_line" "$plain_line" "$noise_line" <<'PY'
import sys
nc, plain, noise = (float(l.split("MB/s")[0].split()[-1]) for l in sys.argv[1:])
print(f"--plain / nc    {plain / nc:6.0%}  (goal >= 90%)")
print(f"encrypted / nc  {noise / nc:6.0%}  (goal >= 50%)")
PY
