#!/usr/bin/python3
"""Hostile-swarm benchmark: the honest download's time under each attack against the same
download unattacked, and the peak memory of the bitpeer process under attack, in one run.

Run through bench/hostile.sh (it builds target/release/bitpeer). Attackers bind other
loopback addresses (127.0.0.2), as another host would; honest peers stay on 127.0.0.1.
Not a test: it prints figures. Every process has a timeout and is killed by PID.

  liar      a peer on 127.0.0.2 answers every request with wrong bytes, beside an
            unlimited libtorrent seeder; bitpeer downloads SIZE bytes (issue #16 item 1).
            Unattacked: the libtorrent seeder alone. Peak RSS: the downloader.
  tracker   127.0.0.2 announces 50,000 made-up peers to one swarm of `bitpeer tracker`,
            then a libtorrent seeder and `bitpeer download` meet through it (item 5).
            Unattacked: a fresh tracker. Peak RSS: the tracker.
  files     FILES small files from `bitpeer seed` to `bitpeer download`, both under
            `ulimit -n 1024` (item 7). "Unattacked": the same without the ulimit.
            Peak RSS: the seeder.
  idle      127.0.0.2 opens 80 connections to a `bitpeer seed`, handshakes and goes quiet;
            a libtorrent leecher then downloads SIZE bytes (item 2). Peak RSS: the seeder.
  slowloris 127.0.0.2 keeps 128 half-open handshakes re-dialled against the seeder while
            the libtorrent leecher downloads (item 3). Peak RSS: the seeder.
  noread    four hosts (127.0.0.2-5) each request one block of every 4 MiB piece and never
            read, while the libtorrent leecher downloads (item 4). Peak RSS: the seeder.
  metadata  a peer on 127.0.0.2 offers metadata and never sends it; `bitpeer download` of
            the magnet link (with it and a libtorrent seeder in x.pe), 10 times (item 6).
            Unattacked: the libtorrent seeder alone. Peak RSS: the downloader.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", "work", "hostile")
BITPEER = os.environ.get("BITPEER_BIN") or os.path.join(ROOT, "target", "release", "bitpeer")
INTEROP = os.path.join(ROOT, "crates", "bitpeer", "tests", "interop")
TIMEOUT = 600


class Procs:
    """Child processes, killed by PID when the benchmark ends, however it ends."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, **kw):
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        self.procs = []


PROCS = Procs()


def vm_hwm_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def make_file(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".part", "wb") as f:
        left = size
        while left:
            n = min(8 << 20, left)
            f.write(os.urandom(n))
            left -= n
    os.replace(path + ".part", path)


def create(data, torrent, piece_length, tracker=None):
    cmd = [BITPEER, "create", data, "-o", torrent, "--piece-length", str(piece_length), "--force"]
    if tracker:
        cmd += ["--tracker", tracker]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT)


def info_hash(torrent):
    out = subprocess.run([BITPEER, "info", torrent, "--json"], check=True, capture_output=True,
                         text=True, timeout=TIMEOUT).stdout
    return bytes.fromhex(json.loads(out)["info_hash_v1"])


def lt_seeder(torrent, data_dir, tracker=None):
    """A libtorrent seeder; returns (process, port) once it has checked its data."""
    if tracker:
        cmd = ["/usr/bin/python3", os.path.join(INTEROP, "lt_tracker_peer.py"), torrent, data_dir,
               "--tracker", tracker, "--seed", "--deadline", str(TIMEOUT)]
    else:
        cmd = ["/usr/bin/python3", os.path.join(INTEROP, "lt_peer.py"), torrent, data_dir,
               "--seed", "--stats", "--deadline", str(TIMEOUT)]
    p = PROCS.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = json.loads(p.stdout.readline())["port"]
    if tracker:
        time.sleep(3)  # its data checked and its first announce sent
    else:
        while not json.loads(p.stdout.readline()).get("seeding"):
            pass
    return p, port


def download(torrent, out, peers, ulimit=None, extra=()):
    """Runs `bitpeer download` to the end; returns (seconds, peak RSS MiB, last JSON line)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [BITPEER, "download", torrent, "-o", out, "--listen", "127.0.0.1:0", "--json",
           "--no-dht", "--no-lsd", *extra]
    for p in peers:
        cmd += ["--peer", p]
    if ulimit:
        cmd = ["bash", "-c", f'ulimit -n {ulimit} && exec "$0" "$@"', *cmd]
    t0 = time.perf_counter()
    p = PROCS.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    last = {}
    for line in p.stdout:
        if line.strip():
            last = json.loads(line)
    deadline = time.monotonic() + TIMEOUT
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            sys.exit("error: bitpeer download timed out")
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0 or last.get("state") != "complete":
        sys.exit(f"error: bitpeer download failed ({p.returncode}): {last}")
    return wall, ru.ru_maxrss / 1024, last


# --- the liar: a peer that answers every request with wrong bytes ------------------------

def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def liar_conn(s, ih, piece_count):
    try:
        read_exact(s, 68)  # bitpeer dials and sends its handshake first
        s.sendall(b"\x13BitTorrent protocol" + bytes(8) + ih + b"-XX0001-hostile-liar")
        bits = bytearray((piece_count + 7) // 8)
        for i in range(piece_count):
            bits[i // 8] |= 0x80 >> (i % 8)
        s.sendall(struct.pack(">IB", 1 + len(bits), 5) + bits + struct.pack(">IB", 1, 1))
        while True:
            (n,) = struct.unpack(">I", read_exact(s, 4))
            if n == 0:
                continue
            body = read_exact(s, n)
            if body[0] == 6 and n == 13:
                piece, begin, length = struct.unpack(">III", body[1:])
                if length <= 1 << 17:
                    s.sendall(struct.pack(">IBII", 9 + length, 7, piece, begin) + os.urandom(length))
    except OSError:
        pass
    finally:
        s.close()


def start_liar(ih, piece_count):
    ls = socket.socket()
    ls.bind(("127.0.0.2", 0))
    ls.listen(16)

    def serve():
        while True:
            try:
                s, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=liar_conn, args=(s, ih, piece_count), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return ls, f"127.0.0.2:{ls.getsockname()[1]}"


def bench_liar(size, piece_length):
    data_dir = os.path.join(WORK, "liar-src")
    make_file(os.path.join(data_dir, "data.bin"), size)
    torrent = os.path.join(WORK, "liar.torrent")
    create(os.path.join(data_dir, "data.bin"), torrent, piece_length)
    out = os.path.join(WORK, "liar-out")
    _, port = lt_seeder(torrent, data_dir)
    honest = f"127.0.0.1:{port}"
    base, base_rss, _ = download(torrent, out, [honest])
    ls, liar = start_liar(info_hash(torrent), (size + piece_length - 1) // piece_length)
    wall, rss, last = download(torrent, out, [liar, honest])
    ls.close()
    PROCS.kill_all()
    note = f"banned {last['banned']}, hash failures {last['hash_failures']}"
    return base, wall, rss, "downloader", note


# --- attacks on a seeder: idle connections, slowloris, peers that never read -------------

def bitpeer_seeder(torrent, data_dir):
    p = PROCS.start([BITPEER, "seed", torrent, "--data", data_dir, "--listen", "127.0.0.1:0",
                     "--no-dht", "--no-lsd"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    text=True)
    line = p.stdout.readline()
    if "listening on" not in line:
        sys.exit(f"error: bitpeer seed did not start: {line!r}")
    return p, line.strip().rsplit(" ", 1)[1]


def attackers(mode, target, ih, src, *extra):
    cmd = [sys.executable, os.path.join(INTEROP, "attackers.py"), mode, "--target", target,
           "--info-hash", ih.hex(), "--from", src, "--duration", str(TIMEOUT), *extra]
    return PROCS.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def wait_status(p, key, at_least):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        try:
            if json.loads(line).get(key, 0) >= at_least:
                return
        except ValueError:
            pass
    sys.exit(f"error: attackers never reached {key} >= {at_least}")


def lt_leech(torrent, out, addr):
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    p = PROCS.start(["/usr/bin/python3", os.path.join(INTEROP, "lt_peer.py"), torrent, out,
                     "--peer", addr, "--deadline", str(TIMEOUT)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if p.wait(timeout=TIMEOUT) != 0:
        sys.exit("error: the honest libtorrent leecher did not finish")
    return time.perf_counter() - t0


def bench_seeder_attack(mode, size, piece_length):
    data_dir = os.path.join(WORK, f"{mode}-src")
    make_file(os.path.join(data_dir, "data.bin"), size)
    torrent = os.path.join(WORK, f"{mode}-{piece_length}.torrent")
    create(os.path.join(data_dir, "data.bin"), torrent, piece_length)
    ih = info_hash(torrent)
    out = os.path.join(WORK, f"{mode}-out")
    seeder, addr = bitpeer_seeder(torrent, data_dir)
    base = lt_leech(torrent, out, addr)
    PROCS.kill_all()
    seeder, addr = bitpeer_seeder(torrent, data_dir)
    if mode == "idle":
        a = attackers("idle", addr, ih, "127.0.0.2", "--count", "80")
        wait_status(a, "dialled", 80)
    elif mode == "slowloris":
        a = attackers("slowloris", addr, ih, "127.0.0.2", "--count", "128")
        wait_status(a, "dialled", 128)
    else:
        pieces = str((size + piece_length - 1) // piece_length)
        for i in range(2, 6):
            a = attackers("noread", addr, ih, f"127.0.0.{i}", "--count", "1", "--pieces", pieces)
            wait_status(a, "unchoked", 1)
        time.sleep(3)
    wall = lt_leech(torrent, out, addr)
    rss = vm_hwm_mib(seeder.pid)
    PROCS.kill_all()
    shutil.rmtree(out, ignore_errors=True)
    return base, wall, rss, "seeder", ""


def bench_metadata():
    data_dir = os.path.join(WORK, "metadata-src")
    album = os.path.join(data_dir, "album")
    for i in range(20):
        make_file(os.path.join(album, f"track{i:02}.bin"), 50_000)
    torrent = os.path.join(WORK, "metadata.torrent")
    create(album, torrent, 16384)
    ih = info_hash(torrent)
    raw = open(torrent, "rb").read()
    size = len(raw) - 1 - (raw.find(b"4:info") + 6)
    _, port = lt_seeder(torrent, data_dir)
    silent = PROCS.start([sys.executable, os.path.join(INTEROP, "attackers.py"), "silent-metadata",
                          "--from", "127.0.0.2", "--metadata-size", str(size), "--info-hash", ih.hex(),
                          "--duration", str(TIMEOUT)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    sport = json.loads(silent.stdout.readline())["port"]
    out = os.path.join(WORK, "metadata-out")

    def magnet_runs(peers):
        link = f"magnet:?xt=urn:btih:{ih.hex()}" + "".join(f"&x.pe={p}" for p in peers)
        times, rss = [], 0.0
        for _ in range(10):
            w, r, _ = download(link, out, [])
            times.append(w)
            rss = max(rss, r)
        return statistics.median(times), max(times), rss

    base, _, _ = magnet_runs([f"127.0.0.1:{port}"])
    wall, worst, rss = magnet_runs([f"127.0.0.2:{sport}", f"127.0.0.1:{port}"])
    PROCS.kill_all()
    shutil.rmtree(out, ignore_errors=True)
    return base, wall, rss, "downloader", f"median of 10 magnet runs, slowest {worst:.2f} s"


# --- the tracker flood ------------------------------------------------------------------

def udp_connect(s, to):
    for tid in range(10):
        s.sendto(struct.pack(">QII", 0x41727101980, 0, tid), to)
        try:
            data, _ = s.recvfrom(64)
            if len(data) == 16 and struct.unpack(">II", data[:8]) == (0, tid):
                return struct.unpack(">Q", data[8:])[0]
        except socket.timeout:
            pass
    sys.exit("error: the tracker does not answer UDP connects")


def flood(tracker_udp, ih, count=50_000, window=64):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    s.settimeout(1)
    cid = udp_connect(s, tracker_udp)
    for start in range(0, count, window):
        if start % 10_000 == 0:
            cid = udp_connect(s, tracker_udp)
        waiting = set(range(start, min(start + window, count)))
        for _ in range(10):
            for i in waiting:
                peer_id = b"-XX0001-" + struct.pack(">I", i) + b"floodxxx"
                s.sendto(struct.pack(">QII20s20sQQQIIIiH", cid, 1, i, ih, peer_id, 0, 1000, 0, 2,
                                     0, i, 200, 1 + i % 65000), tracker_udp)
            try:
                while waiting:
                    data, _ = s.recvfrom(4096)
                    waiting.discard(struct.unpack(">I", data[4:8])[0])
            except socket.timeout:
                pass
            if not waiting:
                break
    s.close()


def tracker_round(data_dir, attacked):
    p = PROCS.start([BITPEER, "tracker", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0",
                     "--interval", "10"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    p.stdout.readline()
    udp = p.stdout.readline().strip().rsplit(" ", 1)[1]
    host, port = udp.removeprefix("udp://").rsplit(":", 1)
    torrent = os.path.join(WORK, "tracked.torrent")
    create(os.path.join(data_dir, "data.bin"), torrent, 1 << 18, tracker=udp)
    if attacked:
        flood((host, int(port)), info_hash(torrent))
    lt_seeder(torrent, data_dir, tracker=udp)
    wall, _, _ = download(torrent, os.path.join(WORK, "tracked-out"), [])
    hwm = vm_hwm_mib(p.pid)
    PROCS.kill_all()
    return wall, hwm


def bench_tracker(size):
    data_dir = os.path.join(WORK, "liar-src")
    make_file(os.path.join(data_dir, "data.bin"), size)
    base, _ = tracker_round(data_dir, False)
    wall, hwm = tracker_round(data_dir, True)
    return base, wall, hwm, "tracker", "50,000 announces from 127.0.0.2 first"


# --- many files -------------------------------------------------------------------------

def many_files(root, count):
    marker = os.path.join(root, f".made-{count}")
    if os.path.exists(marker):
        return os.path.join(root, "many")
    shutil.rmtree(root, ignore_errors=True)
    for i in range(count):
        sub = os.path.join(root, "many", f"d{i // 100:04}")
        if i % 100 == 0:
            os.makedirs(sub)
        with open(os.path.join(sub, f"f{i}"), "wb") as f:
            f.write(os.urandom(1 + (i * 7919) % 2000))
    open(marker, "w").close()
    return os.path.join(root, "many")


def files_round(torrent, root, out, ulimit):
    cmd = [BITPEER, "seed", torrent, "--data", root, "--listen", "127.0.0.1:0", "--no-dht", "--no-lsd"]
    if ulimit:
        cmd = ["bash", "-c", f'ulimit -n {ulimit} && exec "$0" "$@"', *cmd]
    seeder = PROCS.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addr = seeder.stdout.readline().strip().rsplit(" ", 1)[1]
    wall, _, _ = download(torrent, out, [addr], ulimit=ulimit)
    hwm = vm_hwm_mib(seeder.pid)
    PROCS.kill_all()
    return wall, hwm


def bench_files(count, base_dir):
    root = os.path.join(base_dir, f"files-src-{count}")
    src = many_files(root, count)
    torrent = os.path.join(WORK, f"files-{count}.torrent")
    create(src, torrent, 1 << 18)
    out = os.path.join(base_dir, "files-out")
    base, _ = files_round(torrent, root, out, None)
    wall, hwm = files_round(torrent, root, out, 1024)
    shutil.rmtree(out, ignore_errors=True)
    return base, wall, hwm, "seeder", f"{count} files, ulimit -n 1024 on both"


def main():
    ap = argparse.ArgumentParser(description="hostile-swarm benchmark")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=256 << 20, help="bytes of the liar and tracker runs")
    ap.add_argument("--files", type=int, default=20_000, help="files of the many-files run")
    ap.add_argument("--only", action="append",
                    choices=["liar", "tracker", "files", "idle", "slowloris", "noread", "metadata"])
    args = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    # Many small files are made and removed in seconds in memory, in minutes on some disks.
    files_dir = "/dev/shm/bitpeer-bench-hostile" if os.path.isdir("/dev/shm") else WORK
    benches = {
        "liar": lambda: bench_liar(args.size, 1 << 16),
        "tracker": lambda: bench_tracker(args.size),
        "files": lambda: bench_files(args.files, files_dir),
        "idle": lambda: bench_seeder_attack("idle", args.size, 1 << 18),
        "slowloris": lambda: bench_seeder_attack("slowloris", args.size, 1 << 18),
        "noread": lambda: bench_seeder_attack("noread", max(args.size, 384 << 20), 4 << 20),
        "metadata": bench_metadata,
    }
    rows = []
    try:
        for name in args.only or benches:
            runs = []
            for rnd in range(args.rounds):
                r = benches[name]()
                runs.append(r)
                print(f"{name} round {rnd + 1}: unattacked {r[0]:.2f} s, attacked {r[1]:.2f} s, "
                      f"{r[3]} peak RSS {r[2]:.1f} MiB; {r[4]}", flush=True)
            rows.append((name, statistics.median(r[0] for r in runs),
                         statistics.median(r[1] for r in runs),
                         statistics.median(r[2] for r in runs), runs[-1][3], runs[-1][4]))
    finally:
        PROCS.kill_all()
        shutil.rmtree(files_dir, ignore_errors=True) if files_dir != WORK else None
    print(f"\nmedians of {args.rounds} rounds; {os.cpu_count()} cores; {args.size} bytes in 64 KiB "
          f"(liar) and 256 KiB (tracker) pieces")
    print(f"{'attack':<8} {'unattacked s':>12} {'attacked s':>11} {'ratio':>6} {'peak RSS MiB':>13}"
          f"  {'of':<10} notes")
    for name, base, wall, rss, who, note in rows:
        print(f"{name:<8} {base:12.2f} {wall:11.2f} {wall / base:6.2f} {rss:13.1f}  {who:<10} {note}")


if __name__ == "__main__":
    main()
