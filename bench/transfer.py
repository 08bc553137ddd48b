#!/usr/bin/python3
"""Loopback transfer benchmark: bitpeer and libtorrent as seeder and leecher.

Run through bench/transfer.sh (it builds target/release/bitpeer). On one torrent of
SIZE bytes (default 1 GiB, one file, 1 MiB pieces) over 127.0.0.1, for ROUNDS rounds in a
rotated order, it times four pairs:

  libtorrent -> bitpeer     libtorrent -> libtorrent
  bitpeer    -> libtorrent  bitpeer    -> bitpeer

With --mode utp it times instead the uTP (BEP 29) goals of issue #12:

  bitpeer    -> bitpeer over uTP     bitpeer    -> bitpeer over TCP
  libtorrent -> bitpeer over uTP     libtorrent -> libtorrent over uTP

(uTP only: bitpeer with --transports utp, libtorrent with TCP off both ways), and prints
bitpeer->bitpeer uTP/TCP (goal >= 0.40) and libtorrent->bitpeer / libtorrent->libtorrent
over uTP (goal >= 1.0).

For each: wall seconds from starting the leecher to its exit with all pieces verified,
MB/s (10^6 bytes), the leecher's CPU seconds per GiB (user + system, from wait4) and its
peak RSS (MiB). It prints medians and each pair's ratio to libtorrent -> libtorrent.
The leecher's folder is emptied before each run. The seeder's data stays in the page
cache; the leecher writes to the page cache (no fsync), as both clients do by default.
Every process is bounded by a timeout and killed by PID.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", "work")
BITPEER = os.environ.get("BITPEER_BIN") or os.path.join(ROOT, "target", "release", "bitpeer")
LT_PEER = os.path.join(ROOT, "crates", "bitpeer", "tests", "interop", "lt_peer.py")
TIMEOUT = 600


def make_data(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(8 << 20, left)
            f.write(os.urandom(n))
            left -= n
    os.replace(tmp, path)


# A pair's variant: the transport, or for bitpeer -> bitpeer over TCP the encryption
# policy (`plain`: --encryption disable; `rc4`: --encryption require, RC4 after MSE).
BITPEER_VARIANT = {"tcp": ["--transports", "tcp"], "utp": ["--transports", "utp"],
                   "plain": ["--transports", "tcp", "--encryption", "disable"],
                   "rc4": ["--transports", "tcp", "--encryption", "require"]}


def bitpeer_transport(transport):
    return BITPEER_VARIANT[transport]


def lt_transport(transport):
    return ["--utp-only"] if transport == "utp" else []


def start_seeder(kind, torrent, data_dir, transport="tcp"):
    if kind == "bitpeer":
        # Like lt_peer.py: no DHT, no local discovery; only the peer it is given.
        p = subprocess.Popen([BITPEER, "seed", torrent, "--data", data_dir, "--listen", "127.0.0.1:0",
                              "--no-dht", "--no-lsd"] + bitpeer_transport(transport),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = p.stdout.readline()
        if "listening on" not in line:
            p.kill()
            sys.exit(f"error: bitpeer seed did not start: {line!r}")
        return p, int(line.strip().rsplit(":", 1)[1])
    p = subprocess.Popen(["/usr/bin/python3", LT_PEER, torrent, data_dir, "--seed", "--deadline", str(TIMEOUT)]
                         + lt_transport(transport),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = json.loads(p.stdout.readline())["port"]
    # Wait until libtorrent has checked its data; its first answer to a peer is then a
    # full bitfield. Checking 1 GiB from the page cache takes well under a few seconds.
    time.sleep(3)
    return p, port


def leecher_cmd(kind, torrent, out_dir, port, transport="tcp"):
    if kind == "bitpeer":
        return [BITPEER, "download", torrent, "-o", out_dir, "--peer", f"127.0.0.1:{port}",
                "--listen", "127.0.0.1:0", "--json", "--no-dht", "--no-lsd"] + bitpeer_transport(transport)
    return ["/usr/bin/python3", LT_PEER, torrent, out_dir, "--peer", f"127.0.0.1:{port}",
            "--deadline", str(TIMEOUT)] + lt_transport(transport)


def run_pair(seed_kind, leech_kind, torrent, data_dir, out_dir, transport="tcp"):
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    seeder, port = start_seeder(seed_kind, torrent, data_dir, transport)
    try:
        t0 = time.perf_counter()
        p = subprocess.Popen(leecher_cmd(leech_kind, torrent, out_dir, port, transport),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                sys.exit(f"error: {leech_kind} leecher timed out")
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"error: {leech_kind} leecher from {seed_kind} exited {status}")
        return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024
    finally:
        seeder.send_signal(signal.SIGKILL)
        seeder.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description="loopback transfer benchmark")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=1 << 30)
    ap.add_argument("--out", default=os.path.join(WORK, "transfer-out"),
                    help="the leecher's folder (e.g. /dev/shm/x to take the disk out of the figures:"
                         " libtorrent 2.0 writes through mmap, which is slow on some filesystems)")
    ap.add_argument("--mode", choices=["tcp", "utp", "encryption"], default="tcp",
                    help="tcp: the four pairs over TCP; utp: the uTP goals (see above);"
                         " encryption: bitpeer -> bitpeer in plaintext and with MSE/PE RC4")
    args = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    src = os.path.join(WORK, "transfer-src")
    os.makedirs(src, exist_ok=True)
    data = os.path.join(src, f"transfer-{args.size}.bin")
    make_data(data, args.size)
    torrent = os.path.join(WORK, f"transfer-{args.size}.torrent")
    if not os.path.exists(torrent):
        subprocess.run([BITPEER, "create", data, "-o", torrent, "--piece-length", str(1 << 20), "--force"],
                       check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT)
    subprocess.run(f"cat '{data}' > /dev/null", shell=True, check=True, timeout=TIMEOUT)
    out = args.out
    if args.mode == "utp":
        pairs = [("bitpeer", "bitpeer", "utp"), ("bitpeer", "bitpeer", "tcp"),
                 ("libtorrent", "bitpeer", "utp"), ("libtorrent", "libtorrent", "utp")]
    elif args.mode == "encryption":
        pairs = [("bitpeer", "bitpeer", "plain"), ("bitpeer", "bitpeer", "rc4")]
    else:
        pairs = [("libtorrent", "bitpeer", "tcp"), ("libtorrent", "libtorrent", "tcp"),
                 ("bitpeer", "libtorrent", "tcp"), ("bitpeer", "bitpeer", "tcp")]
    results = {p: [] for p in pairs}
    for rnd in range(args.rounds):
        order = pairs[rnd % len(pairs):] + pairs[:rnd % len(pairs)]
        for pair in order:
            wall, cpu, rss = run_pair(pair[0], pair[1], torrent, src, out, pair[2])
            results[pair].append((wall, cpu, rss))
            print(f"round {rnd + 1}: {pair[0]:>10} -> {pair[1]:<10} {pair[2]} {wall:7.2f} s "
                  f"{args.size / wall / 1e6:8.1f} MB/s  leecher cpu {cpu:6.2f} s  rss {rss:6.1f} MiB",
                  flush=True)
    shutil.rmtree(out, ignore_errors=True)
    gib = args.size / (1 << 30)
    lt_lt = pairs[0] if args.mode == "encryption" else ("libtorrent", "libtorrent", args.mode)
    base = statistics.median(args.size / w / 1e6 for w, _, _ in results[lt_lt])
    print(f"\n{args.size} bytes, 1 MiB pieces, {args.rounds} rounds, 127.0.0.1, {os.cpu_count()} cores, "
          f"leecher writes to {out}; medians:")
    base_name = "vs plain" if args.mode == "encryption" else "vs lt->lt"
    print(f"{'seeder -> leecher':<30} {'MB/s':>8} {'cpu s/GiB':>10} {'peak RSS MiB':>13} {base_name:>10}")
    med = {}
    for pair in pairs:
        r = results[pair]
        mbs = med[pair] = statistics.median(args.size / w / 1e6 for w, _, _ in r)
        cpu = statistics.median(c / gib for _, c, _ in r)
        rss = statistics.median(m for _, _, m in r)
        print(f"{pair[0] + ' -> ' + pair[1] + ' ' + pair[2]:<30} {mbs:8.1f} {cpu:10.2f} {rss:13.1f} "
              f"{mbs / base:9.2f}x")
    if args.mode == "utp":
        bb = med[("bitpeer", "bitpeer", "utp")] / med[("bitpeer", "bitpeer", "tcp")]
        lb = med[("libtorrent", "bitpeer", "utp")] / base
        print(f"\nbitpeer -> bitpeer, uTP / TCP: {bb:.2f} (goal >= 0.40)")
        print(f"libtorrent -> bitpeer uTP / libtorrent -> libtorrent uTP: {lb:.2f} (goal >= 1.0)")
    if args.mode == "encryption":
        r = med[("bitpeer", "bitpeer", "rc4")] / base
        print(f"\nbitpeer -> bitpeer, RC4 / plaintext: {r:.2f} (goal >= 0.70)")


if __name__ == "__main__":
    main()
