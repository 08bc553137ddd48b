"""UDP announce load against `bitpeer tracker` on 127.0.0.1. See bench/README.md.

Not a test: it prints figures. For each round it starts a fresh `bitpeer tracker`, sends
--announces BEP 15 announces from distinct peers spread over --hashes info-hashes, from
--procs generator processes with --sockets UDP sockets each and at most --window requests
in flight per socket, and reports:
  - announces/s (wall clock from the first announce to the last answer),
  - the tracker's CPU seconds (utime + stime from /proc/PID/stat) and announces per CPU s,
  - the tracker's peak RSS (VmHWM from /proc/PID/status) and its RSS at the end,
  - the peers and swarms it holds (by scraping a sample of info-hashes over HTTP).
Then the medians over the rounds.
"""

import argparse
import multiprocessing as mp
import os
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.request

PROTOCOL_ID = 0x41727101980


def info_hash(n):
    return struct.pack(">I", n) + b"\x5a" * 16


def peer_id(n):
    return b"-LB0001-" + struct.pack(">I", n) + b"........"


def connect(sock, addr):
    sock.settimeout(2)
    for tid in range(5):
        sock.sendto(struct.pack(">QII", PROTOCOL_ID, 0, tid), addr)
        try:
            data, _ = sock.recvfrom(64)
        except socket.timeout:
            continue
        action, rtid, cid = struct.unpack(">IIQ", data[:16])
        if action == 0 and rtid == tid:
            return cid
    raise SystemExit("error: no answer to UDP connect")


def announce_packet(cid, tid, n, hashes):
    return struct.pack(">QII20s20sQQQIIIiH", cid, 1, tid, info_hash(n % hashes), peer_id(n),
                       0, 0 if n % 3 == 0 else 1000, 0, 2, 0, 0, 50, 1024 + n % 60000)


def generate(addr, ids, sockets, window, hashes, out):
    """Sends announces for `ids`; puts (answered, errors, resent) on `out`."""
    socks = []
    sel = selectors.DefaultSelector()
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind(("127.0.0.1", 0))
        cid = connect(s, addr)
        s.setblocking(False)
        socks.append({"sock": s, "cid": cid, "inflight": {}, "todo": []})
        sel.register(s, selectors.EVENT_READ, len(socks) - 1)
    for i, n in enumerate(ids):
        socks[i % sockets]["todo"].append(n)
    for st in socks:
        st["todo"].reverse()
    answered = errors = resent = 0
    last_progress = time.monotonic()
    while True:
        busy = False
        for st in socks:
            while st["todo"] and len(st["inflight"]) < window:
                n = st["todo"].pop()
                st["inflight"][n] = True
                st["sock"].sendto(announce_packet(st["cid"], n, n, hashes), addr)
            busy |= bool(st["inflight"]) or bool(st["todo"])
        if not busy:
            break
        for key, _ in sel.select(timeout=0.5):
            st = socks[key.data]
            while True:
                try:
                    data, _ = st["sock"].recvfrom(2048)
                except BlockingIOError:
                    break
                action, tid = struct.unpack(">II", data[:8])
                if st["inflight"].pop(tid, None):
                    answered += 1
                    errors += action == 3
                    last_progress = time.monotonic()
        if time.monotonic() - last_progress > 1.0:
            # Lost datagrams: send what is still in flight again.
            for st in socks:
                for n in st["inflight"]:
                    st["sock"].sendto(announce_packet(st["cid"], n, n, hashes), addr)
                    resent += 1
            last_progress = time.monotonic()
    out.put((answered, errors, resent))


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def scrape_counts(http_announce, hashes):
    base = http_announce.rsplit("/announce", 1)[0] + "/scrape?"
    peers = swarms = 0
    sample = list(range(0, hashes, max(1, hashes // 500)))
    for i in range(0, len(sample), 50):
        q = "&".join("info_hash=" + "".join(f"%{b:02X}" for b in info_hash(n))
                     for n in sample[i:i + 50])
        with urllib.request.urlopen(base + q, timeout=10) as r:
            body = r.read()
        # Count the sample's peers from the bencoded counts without a bencode library:
        # each entry is d8:completeiXe10:downloadediYe10:incompleteiZee.
        for part in body.split(b"d8:completei")[1:]:
            c = int(part.split(b"e", 1)[0])
            inc = int(part.split(b"10:incompletei", 1)[1].split(b"e", 1)[0])
            peers += c + inc
            swarms += (c + inc) > 0
    scale = hashes / len(sample)
    return round(peers * scale), round(swarms * scale)


def one_round(a):
    cmd = [a.bin, "tracker", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"]
    tracker = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        http = udp = None
        deadline = time.monotonic() + 30
        while (http is None or udp is None) and time.monotonic() < deadline:
            line = tracker.stdout.readline()
            if not line:
                raise SystemExit(f"error: tracker exited: {tracker.stderr.read()}")
            if line.startswith("http tracker listening on "):
                http = line.split()[-1]
            elif line.startswith("udp tracker listening on "):
                udp = line.split()[-1]
        host, port = udp[len("udp://"):].rsplit(":", 1)
        addr = (host, int(port))
        cpu0 = proc_cpu_seconds(tracker.pid)
        ids = list(range(a.announces))
        out = mp.Queue()
        workers = [mp.Process(target=generate,
                              args=(addr, ids[k::a.procs], a.sockets, a.window, a.hashes, out))
                   for k in range(a.procs)]
        t0 = time.monotonic()
        for w in workers:
            w.start()
        results = [out.get(timeout=a.timeout) for _ in workers]
        elapsed = time.monotonic() - t0
        for w in workers:
            w.join(timeout=10)
        cpu = proc_cpu_seconds(tracker.pid) - cpu0
        answered = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        resent = sum(r[2] for r in results)
        peers, swarms = scrape_counts(http, a.hashes)
        return {
            "rate": answered / elapsed,
            "elapsed": elapsed,
            "cpu": cpu,
            "per_cpu": answered / cpu if cpu > 0 else float("inf"),
            "hwm_mib": proc_status_kib(tracker.pid, "VmHWM") / 1024,
            "rss_mib": proc_status_kib(tracker.pid, "VmRSS") / 1024,
            "answered": answered,
            "errors": errors,
            "resent": resent,
            "peers": peers,
            "swarms": swarms,
        }
    finally:
        tracker.send_signal(signal.SIGKILL)
        tracker.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/bitpeer")
    ap.add_argument("--announces", type=int, default=200_000)
    ap.add_argument("--hashes", type=int, default=10_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--sockets", type=int, default=8)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    print(f"{a.announces} announces from distinct peers over {a.hashes} info-hashes; "
          f"{a.procs} generator processes x {a.sockets} sockets x window {a.window}; "
          f"{a.rounds} rounds, a fresh tracker each")
    rows = []
    for r in range(a.rounds):
        row = one_round(a)
        rows.append(row)
        print(f"round {r + 1}: {row['rate']:,.0f} announces/s ({row['elapsed']:.2f} s), "
              f"tracker CPU {row['cpu']:.2f} s = {row['per_cpu']:,.0f} announces per CPU s, "
              f"peak RSS {row['hwm_mib']:.1f} MiB (now {row['rss_mib']:.1f}), "
              f"{row['answered']} answered, {row['errors']} errors, {row['resent']} resent, "
              f"~{row['peers']} peers in ~{row['swarms']} swarms")
        sys.stdout.flush()
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    print(f"median: {med('rate'):,.0f} announces/s, {med('per_cpu'):,.0f} announces per "
          f"tracker CPU s, peak RSS {med('hwm_mib'):.1f} MiB")


if __name__ == "__main__":
    main()
