#!/usr/bin/python3
"""UnixFS import benchmark: `bitpeer ipfs add` vs Helia's importer, same file, same profile.

Run through bench/ipfs_add.sh, which builds target/release/bitpeer first. Makes (or reuses)
bench/work/data-1GiB.bin, reads it once untimed so the page cache is warm, then for ROUNDS
rounds, in interleaved order, for each profile (unixfs-v1-2025, v1-256k):

  bitpeer ipfs add --only-hash --profile P FILE           (CIDs only, like Helia's below)
  bitpeer ipfs add --store bench/work/ipfs-store --profile P FILE   (blocks written, fsynced)
  node crates/bitpeer/tests/interop/helia_import.mjs NPM P FILE     (Helia, blocks discarded)
  the same with HELIA_FS_STORE=bench/work/helia-store   (Helia, blocks to blockstore-fs,
                                                          which writes and renames, no fsync)

checks that every run gives the same root CID, and prints each one's median wall time,
throughput (MB/s, MB = 10^6 bytes), median CPU time (user + sys), and bitpeer's speed-up
over Helia. Every process is bounded by a timeout.
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
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bitpeer")
NPM = os.path.join(CACHE, "npm-ipfs-importer")
HELIA = os.path.join(ROOT, "crates", "bitpeer", "tests", "interop", "helia_import.mjs")
TIMEOUT = 900


def make_data(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        print(f"reusing {os.path.relpath(path, ROOT)} ({size} bytes)")
        return
    print(f"writing {os.path.relpath(path, ROOT)}: {size} pseudo-random bytes")
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(8 << 20, left)
            f.write(os.urandom(n))
            left -= n
    os.replace(tmp, path)


def timed(cmd, env=None):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout.strip().splitlines()[-1]


WAIT_END = None


def wait_for_load(max_load, max_wait):
    """The 1-minute load average now, after waiting for it to drop below `max_load` when
    one is given (all the waits together last at most `max_wait` seconds)."""
    global WAIT_END
    if WAIT_END is None:
        WAIT_END = time.monotonic() + max_wait
    while max_load is not None and os.getloadavg()[0] >= max_load and time.monotonic() < WAIT_END:
        time.sleep(2)
    return os.getloadavg()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1 << 30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-load", type=float, default=None,
                    help="before each run, wait for the 1-minute load average to drop below this "
                         "(at most --max-wait seconds in all)")
    ap.add_argument("--max-wait", type=float, default=600)
    ap.add_argument("--only", choices=["hash", "store"], default=None,
                    help="time only the --only-hash pair or only the block-store pair")
    args = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    data = os.path.join(WORK, "data-1GiB.bin" if args.size == 1 << 30 else f"data-{args.size}.bin")
    make_data(data, args.size)
    with open(data, "rb") as f:
        while f.read(8 << 20):
            pass
    store = os.path.join(WORK, "ipfs-store")
    helia_store = os.path.join(WORK, "helia-store")
    helia_env = dict(os.environ, HELIA_FS_STORE=helia_store)
    for profile in ["unixfs-v1-2025", "v1-256k"]:
        tools = {
            "bitpeer --only-hash": lambda: [BITPEER, "ipfs", "add", "--only-hash", "--profile", profile, data],
            "bitpeer --store": lambda: [BITPEER, "ipfs", "add", "--store", store, "--profile", profile, data],
            "helia importer": lambda: ["node", HELIA, NPM, profile, data],
            "helia + blockstore-fs": lambda: ["node", HELIA, NPM, profile, data],
        }
        if args.only == "hash":
            tools = {k: v for k, v in tools.items() if k in ("bitpeer --only-hash", "helia importer")}
        elif args.only == "store":
            tools = {k: v for k, v in tools.items() if k in ("bitpeer --store", "helia + blockstore-fs")}
        results = {name: [] for name in tools}
        loads = []
        cids = set()
        for r in range(args.rounds):
            for name, cmd in tools.items():
                shutil.rmtree(store, ignore_errors=True)
                shutil.rmtree(helia_store, ignore_errors=True)
                load = wait_for_load(args.max_load, args.max_wait)
                loads.append(load)
                wall, cpu, cid = timed(cmd(), helia_env if name == "helia + blockstore-fs" else None)
                cids.add(cid)
                results[name].append((wall, cpu))
                print(f"  {profile} round {r + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU (load {load:.2f})")
        if len(cids) != 1:
            sys.exit(f"{profile}: root CIDs differ: {cids}")
        print(f"\n{profile}: root CID {cids.pop()} ({args.size} bytes, median of {args.rounds}, "
              f"1-minute load average {min(loads):.2f} to {max(loads):.2f} before the runs)")
        med = {}
        for name, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            med[name] = wall
            print(f"  {name:22} {wall:7.2f} s  {args.size / wall / 1e6:8.1f} MB/s  CPU {cpu:6.2f} s")
        if "bitpeer --only-hash" in med:
            print(f"  bitpeer --only-hash is {med['helia importer'] / med['bitpeer --only-hash']:.1f}x Helia's importer")
        if "bitpeer --store" in med:
            print(f"  bitpeer --store is {med['helia + blockstore-fs'] / med['bitpeer --store']:.1f}x Helia + blockstore-fs")
        print()
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(helia_store, ignore_errors=True)


if __name__ == "__main__":
    main()
