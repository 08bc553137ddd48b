#!/usr/bin/python3
"""Torrent-creation benchmark: bitpeer vs transmission-create vs libtorrent.

Run through bench/create.sh, which builds target/release/bitpeer first. Makes (or reuses)
bench/work/data-1GiB.bin, 1 GiB of pseudo-random bytes, reads it once untimed so the page
cache is warm, then for ROUNDS rounds times, in interleaved order, each tool creating a v1
torrent of it with 1 MiB pieces:

  bitpeer create FILE -o bench/work/bitpeer.torrent --piece-length 1048576
  transmission-create -s 1024 -o bench/work/transmission.torrent FILE
  libtorrent (python3-libtorrent): create_torrent(v1_only, 1 MiB) + set_piece_hashes

and prints each tool's median wall time and throughput (MB/s, MB = 10^6 bytes), its median
CPU time (user + sys of the child), and bitpeer's throughput ratio to each other tool.
Every process is bounded by a timeout.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", "work")
BITPEER = os.environ.get("BITPEER_BIN") or os.path.join(ROOT, "target", "release", "bitpeer")
PIECE = 1 << 20
TIMEOUT = 900  # seconds, per process

LT_SNIPPET = r"""
import sys, libtorrent as lt, os
data, out, piece = sys.argv[1], sys.argv[2], int(sys.argv[3])
fs = lt.file_storage()
lt.add_files(fs, data)
ct = lt.create_torrent(fs, piece, flags=lt.create_torrent.v1_only)
lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(data)))
open(out, "wb").write(lt.bencode(ct.generate()))
"""


def make_data(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        print(f"reusing {os.path.relpath(path, ROOT)} ({size} bytes)")
        return
    print(f"writing {os.path.relpath(path, ROOT)}: {size} pseudo-random bytes")
    tmp = path + ".part"
    chunk = 8 << 20
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n
    os.replace(tmp, path)


def cached_percent(path):
    """Share of the file in the page cache, from util-linux fincore, or None."""
    if not shutil.which("fincore"):
        return None
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", path],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
        return 100.0 * int(out[0]) / max(1, int(out[1]))
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def timed(cmd):
    """Runs cmd (bounded by TIMEOUT); returns (wall seconds, child CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=TIMEOUT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"error: {cmd[0]} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    ap = argparse.ArgumentParser(description="torrent creation benchmark")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=1 << 30, help="bytes of data (default 1 GiB)")
    args = ap.parse_args()

    for tool in ("transmission-create",):
        if not shutil.which(tool):
            sys.exit(f"error: {tool} not found (apt-get install transmission-cli)")
    if not os.access(BITPEER, os.X_OK):
        sys.exit(f"error: {BITPEER} missing; run bench/create.sh (it builds it)")
    if subprocess.run(["/usr/bin/python3", "-c", "import libtorrent"], timeout=60).returncode:
        sys.exit("error: /usr/bin/python3 cannot import libtorrent (apt-get install python3-libtorrent)")

    os.makedirs(WORK, exist_ok=True)
    label = f"{args.size >> 30}GiB" if args.size % (1 << 30) == 0 else f"{args.size}B"
    data = os.path.join(WORK, f"data-{label}.bin")
    make_data(data, args.size)

    # One untimed read warms the page cache, so every timed run reads from memory.
    subprocess.run(f"cat '{data}' > /dev/null", shell=True, check=True, timeout=TIMEOUT)
    pct = cached_percent(data)
    warm = "unknown (no fincore)" if pct is None else f"{pct:.0f}% of the file cached"
    print(f"page cache after warm-up read: {warm}")

    tools = {
        "bitpeer": lambda out: [BITPEER, "create", data, "-o", out,
                                "--piece-length", str(PIECE)],
        "transmission": lambda out: ["transmission-create", "-s", str(PIECE // 1024),
                                     "-o", out, data],
        "libtorrent": lambda out: ["/usr/bin/python3", "-c", LT_SNIPPET, data, out, str(PIECE)],
    }
    results = {name: [] for name in tools}
    names = list(tools)
    for rnd in range(args.rounds):
        # Rotate the order each round so no tool always runs first or last.
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            out = os.path.join(WORK, f"{name}.torrent")
            if os.path.exists(out):
                os.remove(out)  # start each run from nothing
            wall, cpu = timed(tools[name](out))
            results[name].append((wall, cpu))
            print(f"round {rnd + 1}: {name:<12} {wall:7.3f} s wall  {cpu:7.3f} s cpu  "
                  f"{args.size / 1e6 / wall:8.1f} MB/s")

    pct = cached_percent(data)
    warm_end = "unknown" if pct is None else f"{pct:.0f}% cached"
    print()
    print(f"data: {args.size} bytes, piece length {PIECE}, {args.rounds} rounds, "
          f"{os.cpu_count()} cores; page cache warm (after warm-up: {warm}; at end: {warm_end})")
    print(f"{'tool':<14}{'median s':>10}{'median MB/s':>13}{'cpu s':>9}{'bitpeer x':>11}")
    med = {}
    for name in names:
        walls = [w for w, _ in results[name]]
        cpus = [c for _, c in results[name]]
        med[name] = (statistics.median(walls), statistics.median(cpus))
    bp_rate = args.size / 1e6 / med["bitpeer"][0]
    for name in names:
        wall, cpu = med[name]
        rate = args.size / 1e6 / wall
        ratio = bp_rate / rate
        print(f"{name:<14}{wall:>10.3f}{rate:>13.1f}{cpu:>9.3f}{ratio:>10.2f}x")
    print("(bitpeer x = bitpeer's MB/s divided by that tool's; above 1 means bitpeer is faster)")


if __name__ == "__main__":
    main()
