#!/usr/bin/python3
"""Swarm benchmark: one seeder and N leechers of the same client on 127.0.0.1.

Run through bench/swarm.sh (it builds target/release/bitpeer). On one torrent of SIZE
bytes (default 256 MiB, one file, 256 KiB pieces), for ROUNDS rounds, for each client
(bitpeer, libtorrent) it starts a `bitpeer tracker` on 127.0.0.1, one seeder and LEECHERS
leechers (default 20) of that client, all announcing to that tracker (TCP only, no DHT,
LSD, UPnP), and measures:

  - the wall time from starting the leechers until the last one exits with every piece
    verified (each leecher exits when it is done, as `bitpeer download` and lt_peer.py do);
  - the CPU seconds of the whole swarm (user + system of the seeder and every leecher,
    from wait4; the seeder is stopped with SIGTERM once the last leecher is done);
  - the largest peak RSS of one leecher.

It prints per run and medians, and bitpeer's time as a fraction of libtorrent's. Leechers
write to OUT (default /dev/shm/...), emptied before each run. Every process is bounded by a
timeout and killed by PID.
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
TIMEOUT = 900


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


def wait_exit(p, deadline):
    """wait4 the child with a deadline; returns (exit code, cpu seconds, max rss MiB)."""
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024
        if time.monotonic() > deadline:
            p.kill()
            _, status, ru = os.wait4(p.pid, 0)
            return None, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024
        time.sleep(0.02)


def start_tracker():
    p = subprocess.Popen([BITPEER, "tracker", "--http", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        if "http" in line and "127.0.0.1:" in line:
            port = int(line.strip().rsplit(":", 1)[1].split("/")[0])
            return p, f"http://127.0.0.1:{port}/announce"
    p.kill()
    sys.exit("error: bitpeer tracker did not start")


def seeder_cmd(kind, torrent, data_dir):
    if kind == "bitpeer":
        return [BITPEER, "seed", torrent, "--data", data_dir, "--listen", "127.0.0.1:0",
                "--no-dht", "--no-lsd"]
    return ["/usr/bin/python3", LT_PEER, torrent, data_dir, "--seed", "--keep-trackers",
            "--deadline", str(TIMEOUT)]


def leecher_cmd(kind, torrent, out_dir):
    if kind == "bitpeer":
        return [BITPEER, "download", torrent, "-o", out_dir, "--listen", "127.0.0.1:0",
                "--json", "--no-dht", "--no-lsd"]
    return ["/usr/bin/python3", LT_PEER, torrent, out_dir, "--keep-trackers",
            "--deadline", str(TIMEOUT)]


def run_swarm(kind, torrent, data_dir, out, leechers):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    seeder = subprocess.Popen(seeder_cmd(kind, torrent, data_dir), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    procs = []
    try:
        # The seeder checks its data (from the page cache) and announces first.
        time.sleep(3)
        t0 = time.perf_counter()
        for i in range(leechers):
            d = os.path.join(out, f"l{i}")
            os.makedirs(d)
            procs.append(subprocess.Popen(leecher_cmd(kind, torrent, d), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + TIMEOUT
        cpu = 0.0
        rss = 0.0
        for p in procs:
            code, c, r = wait_exit(p, deadline)
            if code != 0:
                sys.exit(f"error: a {kind} leecher exited {code}")
            cpu += c
            rss = max(rss, r)
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        seeder.send_signal(signal.SIGTERM)
    _, c, _ = wait_exit(seeder, time.monotonic() + 30)
    cpu += c
    shutil.rmtree(out, ignore_errors=True)
    return wall, cpu, rss


def main():
    ap = argparse.ArgumentParser(description="swarm benchmark: 1 seeder + N leechers per client")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=256 << 20)
    ap.add_argument("--leechers", type=int, default=20)
    ap.add_argument("--out", default="/dev/shm/bitpeer-swarm-bench")
    ap.add_argument("--only", choices=["bitpeer", "libtorrent"],
                    help="run one client's swarm only (for profiling; no ratio)")
    args = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    src = os.path.join(WORK, "swarm-src")
    os.makedirs(src, exist_ok=True)
    data = os.path.join(src, f"swarm-{args.size}.bin")
    make_data(data, args.size)
    tracker, url = start_tracker()
    try:
        torrent = os.path.join(WORK, f"swarm-{args.size}.torrent")
        subprocess.run([BITPEER, "create", data, "-o", torrent, "--piece-length", str(256 << 10),
                        "--tracker", url, "--force"],
                       check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT)
        subprocess.run(f"cat '{data}' > /dev/null", shell=True, check=True, timeout=TIMEOUT)
        kinds = [args.only] if args.only else ["bitpeer", "libtorrent"]
        results = {k: [] for k in kinds}
        for rnd in range(args.rounds):
            for kind in (kinds if rnd % 2 == 0 else kinds[::-1]):
                wall, cpu, rss = run_swarm(kind, torrent, src, args.out, args.leechers)
                results[kind].append((wall, cpu, rss))
                print(f"round {rnd + 1}: {kind:<10} 1 seeder + {args.leechers} leechers: "
                      f"{wall:7.2f} s, swarm cpu {cpu:7.2f} s, largest leecher rss {rss:6.1f} MiB",
                      flush=True)
    finally:
        tracker.kill()
        tracker.wait()
    print(f"\n{args.size} bytes, 256 KiB pieces, 1 seeder + {args.leechers} leechers per client, "
          f"{args.rounds} rounds, 127.0.0.1, {os.cpu_count()} cores; medians:")
    print(f"{'client':<12} {'last done s':>12} {'swarm cpu s':>12} {'leecher RSS MiB':>16}")
    med = {}
    for k in kinds:
        r = results[k]
        med[k] = statistics.median(w for w, _, _ in r)
        print(f"{k:<12} {med[k]:12.2f} {statistics.median(c for _, c, _ in r):12.2f} "
              f"{statistics.median(m for _, _, m in r):16.1f}")
    if len(kinds) == 2:
        print(f"bitpeer's time / libtorrent's: {med['bitpeer'] / med['libtorrent']:.2f}")


if __name__ == "__main__":
    main()
