#!/usr/bin/python3
"""WebTorrent seeding benchmark: bitpeer -> Node webtorrent against Node webtorrent -> Node
webtorrent (issue #13; goal: bitpeer at least as fast as webtorrent seeding itself).

Run through bench/webtorrent.sh (it builds target/release/bitpeer). Needs root (it creates a
network namespace: libdatachannel gathers no loopback candidates) and the npm packages of
scripts/install-webtorrent.sh. On one torrent of SIZE bytes (default 64 MiB, one file, made
by bitpeer), inside a namespace with a veth pair on 10.99.0.0/24 and a default route over
it (nothing leaves it), through one `bitpeer tracker --ws`, for ROUNDS rounds in a rotated
order it times two pairs over WebRTC data channels:

  bitpeer seed --webtorrent-tracker  -> Node webtorrent leecher
  Node webtorrent seeder             -> Node webtorrent leecher

Only one seeder runs at a time, started (and, for Node, done checking its data) before the
leecher starts. The leecher is the same program (bench/webtorrent_peer.mjs) in both pairs.
For each run: the transfer time from the leecher's first peer connection to its last
verified piece (MB/s = 10^6 bytes per second; the leecher's start, tracker round trip and
WebRTC set-up are left out, they are the same for both seeders) and the wall time from
starting the leecher, and the seeder's CPU seconds during the run (user + system, from
/proc). The leecher's file is compared with the source after each run. It prints the
medians and bitpeer's transfer MB/s divided by Node's (>= 1.0 meets the goal), and the load
average before and after. Every process is bounded by a timeout and killed by its PID; the
namespace is deleted at the end.

Between two libdatachannel peers a connection sometimes never forms ("Got a remote
candidate without ICE transport"); a run whose leecher has no peer after 30 s is retried
once with a new leecher, and the retries are counted in the output.
"""

import argparse
import filecmp
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time

from transfer import make_data  # bench/transfer.py: SIZE random bytes, reused when there

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", "work")
BITPEER = os.environ.get("BITPEER_BIN") or os.path.join(ROOT, "target", "release", "bitpeer")
PEER_JS = os.path.join(ROOT, "bench", "webtorrent_peer.mjs")
CACHE = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
WT_MODULES = os.path.join(CACHE, "bitpeer", "npm-webtorrent", "node_modules")
ADDR = "10.99.0.1"
TIMEOUT = 600
TICK = os.sysconf("SC_CLK_TCK")


class Netns:
    def __init__(self):
        self.name = f"bpwtbench{os.getpid()}"
        n = self.name
        for args in (["netns", "add", n], ["-n", n, "link", "set", "lo", "up"],
                     ["-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                     ["-n", n, "addr", "add", f"{ADDR}/24", "dev", "v0"],
                     ["-n", n, "addr", "add", "10.99.0.2/24", "dev", "v1"],
                     ["-n", n, "link", "set", "v0", "up"], ["-n", n, "link", "set", "v1", "up"],
                     ["-n", n, "route", "add", "default", "via", "10.99.0.2", "dev", "v0"]):
            subprocess.run(["ip"] + args, check=True, timeout=20)

    def cmd(self, args):
        # `ip netns exec` execs the program: the PID is the program's.
        return ["ip", "netns", "exec", self.name] + args

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], timeout=20)


class Child:
    """A process with its stdout read line by line and stderr in a file; killed by PID."""

    def __init__(self, args, log, env=None):
        self.log = log
        self.err = open(log, "w")
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                  env=env, stdin=subprocess.DEVNULL)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, pred, timeout):
        """The first stdout line for which pred(line) is true, or None after timeout."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self.lines.put(None)
                return None
            if pred(line):
                return line

    def stderr_line(self, prefix, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(self.log) as f:
                if any(l.startswith(prefix) for l in f):
                    return True
            if self.p.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def cpu_seconds(self):
        try:
            with open(f"/proc/{self.p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            return float("nan")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=30)
        self.err.close()


def start_seeder(ns, kind, torrent, data_dir, url, logdir):
    env = dict(os.environ, WT_MODULES=WT_MODULES)
    if kind == "bitpeer":
        c = Child(ns.cmd([BITPEER, "seed", torrent, "--data", data_dir, "--listen", f"{ADDR}:0",
                          "--no-dht", "--no-lsd", "--webtorrent-tracker", url]),
                  os.path.join(logdir, "seeder-bitpeer.log"))
        ok = c.stderr_line("webrtc on udp", 60)
    else:
        c = Child(ns.cmd(["node", PEER_JS, "seed", url, torrent, data_dir]),
                  os.path.join(logdir, "seeder-node.log"), env)
        ok = c.line(lambda l: l.startswith("seeding "), 300) is not None
    if not ok:
        c.kill()
        sys.exit(f"error: the {kind} seeder did not start; see {c.log}")
    return c


def leech(ns, url, torrent, out_dir, logdir):
    """(transfer seconds, wall seconds), or None if no peer connected within 30 s."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    env = dict(os.environ, WT_MODULES=WT_MODULES)
    start = time.monotonic()
    c = Child(ns.cmd(["node", PEER_JS, "get", url, torrent, out_dir]),
              os.path.join(logdir, "leecher.log"), env)
    try:
        wire = c.line(lambda l: l.startswith("wire "), 30)
        if wire is None:
            return None
        done = c.line(lambda l: l.startswith("done "), TIMEOUT)
        if done is None:
            sys.exit(f"error: the leecher did not finish within {TIMEOUT} s; see {c.log}")
        wall = time.monotonic() - start
        transfer = (int(done.split()[1]) - int(wire.split()[1])) / 1000
        return transfer, wall
    finally:
        c.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=64 << 20, help="bytes (default 64 MiB)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--piece-length", type=int, default=0,
                    help="bytes; default: what bitpeer create picks")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("error: needs root (it creates a network namespace)")
    for what, path in (("bitpeer", BITPEER), ("npm webtorrent", os.path.join(WT_MODULES, "webtorrent"))):
        if not os.path.exists(path):
            sys.exit(f"error: no {what} at {path} (bench/webtorrent.sh builds bitpeer; "
                     "scripts/install-webtorrent.sh installs webtorrent)")
    os.makedirs(WORK, exist_ok=True)
    data_dir = os.path.join(WORK, "wt-data")
    os.makedirs(data_dir, exist_ok=True)
    name = f"wt-{args.size}.bin"
    src = os.path.join(data_dir, name)
    make_data(src, args.size)
    torrent = os.path.join(WORK, f"wt-{args.size}-{args.piece_length}.torrent")
    create = [BITPEER, "create", src, "-o", torrent, "--force"]
    if args.piece_length:
        create += ["--piece-length", str(args.piece_length)]
    subprocess.run(create, check=True, timeout=TIMEOUT, stdout=subprocess.DEVNULL)
    out_dir = os.path.join(WORK, "wt-out")
    logdir = os.path.join(WORK, "wt-logs")
    os.makedirs(logdir, exist_ok=True)

    load_before = os.getloadavg()
    print(f"{args.size} bytes, {args.rounds} rounds; load average {load_before[0]:.2f} "
          f"{load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    ns = Netns()
    tracker = None
    results = {"bitpeer": [], "node": []}
    retries = {"bitpeer": 0, "node": 0}
    try:
        tracker = Child(ns.cmd([BITPEER, "tracker", "--no-http", "--udp", f"{ADDR}:0", "--ws",
                                f"{ADDR}:0", "--ws-interval", "10"]),
                        os.path.join(logdir, "tracker.log"))
        line = tracker.line(lambda l: l.startswith("websocket tracker listening on "), 30)
        if line is None:
            sys.exit("error: bitpeer tracker --ws did not start")
        url = line.rsplit(" ", 1)[1]
        order = ["bitpeer", "node"]
        for r in range(args.rounds):
            for kind in order[r % 2:] + order[:r % 2]:
                seeder = start_seeder(ns, kind, torrent, data_dir, url, logdir)
                try:
                    cpu0 = seeder.cpu_seconds()
                    res = leech(ns, url, torrent, out_dir, logdir)
                    if res is None:
                        retries[kind] += 1
                        res = leech(ns, url, torrent, out_dir, logdir)
                    if res is None:
                        sys.exit(f"error: no WebRTC connection to the {kind} seeder, twice")
                    cpu = seeder.cpu_seconds() - cpu0
                finally:
                    seeder.kill()
                if not filecmp.cmp(src, os.path.join(out_dir, name), shallow=False):
                    sys.exit(f"error: the leecher got different bytes from the {kind} seeder")
                transfer, wall = res
                results[kind].append((transfer, wall, cpu))
                print(f"round {r + 1} {kind:7} -> node: {args.size / transfer / 1e6:7.1f} MB/s "
                      f"transfer {transfer:6.2f} s, wall {wall:6.2f} s, seeder CPU {cpu:5.2f} s",
                      flush=True)
    finally:
        if tracker:
            tracker.kill()
        ns.delete()
    load_after = os.getloadavg()

    def med(kind, i):
        return statistics.median(x[i] for x in results[kind])

    print()
    print(f"{'seeder -> Node leecher':28} {'MB/s':>7} {'transfer s':>11} {'wall s':>7} {'seeder CPU s':>13}")
    for kind, label in (("bitpeer", "bitpeer seed"), ("node", "Node webtorrent")):
        print(f"{label:28} {args.size / med(kind, 0) / 1e6:7.1f} {med(kind, 0):11.2f} "
              f"{med(kind, 1):7.2f} {med(kind, 2):13.2f}")
    ratio = med("node", 0) / med("bitpeer", 0)
    print(f"bitpeer / Node webtorrent seeding (transfer MB/s, medians of {args.rounds}): "
          f"{ratio:.2f} (goal >= 1.0)")
    print(f"retries (no connection in 30 s): bitpeer {retries['bitpeer']}, node {retries['node']}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
