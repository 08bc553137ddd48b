#!/usr/bin/python3
"""Many-torrent daemon benchmark: `bitpeer daemon` vs Debian's `qbittorrent-nox`.

Run through bench/daemon.sh (it builds target/release/bitpeer; BITPEER_BIN overrides).
Both daemons run side by side in one run, each with a temporary profile on 127.0.0.1 and no
network beyond loopback (no DHT, LSD, PeX, UPnP or trackers; the torrents have no announce
URL). N small torrents (default 10,000; one file of SIZE bytes each, one piece) are made,
their content written to a folder per daemon, so both check the data when a torrent is added
and then *seed* it (same data, same state on both sides). Queueing is off on both, so every
torrent is active.

For each daemon:
  1. start it, add the N .torrent files through its API, one request each
     (bitpeer: POST /api/v1/torrents with torrent_base64; qbittorrent-nox: POST
     /api/v2/torrents/add, multipart), and wait until all N are listed as seeding;
  2. stop it (SIGTERM) and start it again on the same profile: the time from the start to
     the API answering with all N torrents loaded and seeding;
  3. idle: RSS and CPU time over IDLE seconds (default 60) with no API call;
  4. the latency of listing all N torrents (GET /api/v1/torrents, GET
     /api/v2/torrents/info), median of LISTS calls.
Peak RSS is VmHWM of each run's process; CPU is utime + stime from /proc/PID/stat.
Every process is bounded by a timeout and killed by its PID.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", "work", "daemon")
BITPEER = os.environ.get("BITPEER_BIN") or os.path.join(ROOT, "target", "release", "bitpeer")
QBT = shutil.which("qbittorrent-nox") or "/usr/bin/qbittorrent-nox"
TIMEOUT = 1800
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, str):
        return bencode(v.encode())
    if isinstance(v, dict):
        out = b"d"
        for k in sorted(v, key=lambda k: k.encode() if isinstance(k, str) else k):
            out += bencode(k) + bencode(v[k])
        return out + b"e"
    raise TypeError(type(v))


def make_torrents(n, size):
    """N torrents of one SIZE-byte file each (one piece), their data in data-bitpeer/ and
    data-qbt/. Reused when already made with the same N and SIZE."""
    stamp = os.path.join(WORK, "made.json")
    want = {"n": n, "size": size}
    if os.path.exists(stamp) and json.load(open(stamp)) == want:
        return sorted(os.path.join(WORK, "torrents", f) for f in os.listdir(os.path.join(WORK, "torrents")))
    shutil.rmtree(WORK, ignore_errors=True)
    tdir = os.path.join(WORK, "torrents")
    dirs = [os.path.join(WORK, "data-bitpeer"), os.path.join(WORK, "data-qbt")]
    for d in [tdir] + dirs:
        os.makedirs(d)
    plen = 16384
    while plen < size:
        plen *= 2
    paths = []
    for i in range(n):
        name = f"small-{i:05d}.bin"
        data = os.urandom(size)
        for d in dirs:
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        info = {"name": name, "length": size, "piece length": plen, "pieces": hashlib.sha1(data).digest()}
        p = os.path.join(tdir, f"{i:05d}.torrent")
        with open(p, "wb") as f:
            f.write(bencode({"info": info, "created by": "bench/daemon.py"}))
        paths.append(p)
    json.dump(want, open(stamp, "w"))
    return paths


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def proc_mem(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024
    return out


class Http:
    """One keep-alive connection to 127.0.0.1:port."""

    def __init__(self, port, headers=None):
        self.port = port
        self.headers = headers or {}
        self.conn = None

    def request(self, method, path, body=None, headers=None, timeout=60):
        h = dict(self.headers)
        h.update(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


class Bitpeer:
    name = "bitpeer"
    SEEDING = {"seeding"}

    def __init__(self, base):
        self.base = base
        self.state = os.path.join(base, "state")
        self.data = os.path.join(WORK, "data-bitpeer")
        self.conf = os.path.join(base, "bitpeer.toml")
        os.makedirs(self.state, exist_ok=True)
        with open(self.conf, "w") as f:
            # Queueing off (every torrent active), no trackers, DHT or LSD.
            f.write("trackers = false\ndht = false\nlsd = false\n"
                    "max_active_downloads = 0\nmax_active_seeds = 0\n")
        self.proc = None

    def start(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [BITPEER, "daemon", "--config", self.conf, "--api", f"127.0.0.1:{self.port}",
             "--listen", "127.0.0.1:0", "--state-dir", self.state, "--download-dir", self.data,
             "--no-dht", "--no-lsd", "--no-trackers"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
        self.http = Http(self.port)

    def add(self, path):
        body = json.dumps({"torrent_base64": base64.b64encode(open(path, "rb").read()).decode()})
        st, out = self.http.request("POST", "/api/v1/torrents", body, {"Content-Type": "application/json"})
        if st != 201:
            raise RuntimeError(f"bitpeer add: {st} {out[:200]!r}")

    def persisted(self):
        """Torrents saved in the state folder (bitpeer writes each one at its add)."""
        return sum(1 for f in os.listdir(os.path.join(self.state, "torrents")) if f.endswith(".json"))

    def states(self):
        st, out = self.http.request("GET", "/api/v1/torrents")
        if st != 200:
            return None
        return [t["state"] for t in json.loads(out)]

    def list_raw(self):
        st, out = self.http.request("GET", "/api/v1/torrents")
        assert st == 200, st
        return out


class Qbt:
    name = "qbittorrent-nox"
    SEEDING = {"uploading", "stalledUP", "forcedUP"}

    def __init__(self, base):
        self.base = base
        self.profile = os.path.join(base, "profile")
        self.data = os.path.join(WORK, "data-qbt")
        self.proc = None
        self.webui = free_port()
        conf = os.path.join(self.profile, "qBittorrent", "config")
        os.makedirs(conf, exist_ok=True)
        with open(os.path.join(conf, "qBittorrent.conf"), "w") as f:
            f.write(f"""[LegalNotice]
Accepted=true

[BitTorrent]
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\DefaultSavePath={self.data}
Session\\Port={free_port()}
Session\\Interface=lo
Session\\InterfaceName=lo
Session\\InterfaceAddress=127.0.0.1
Session\\QueueingSystemEnabled=false
Session\\AddTrackersEnabled=false

[Preferences]
Connection\\UPnP=false
Connection\\ResolvePeerCountries=false
General\\Locale=en
WebUI\\Address=127.0.0.1
WebUI\\Port={self.webui}
WebUI\\LocalHostAuth=false
WebUI\\CSRFProtection=false
WebUI\\HostHeaderValidation=false
WebUI\\UseUPnP=false
""")

    def start(self):
        self.port = self.webui
        self.proc = subprocess.Popen(
            [QBT, f"--profile={self.profile}", f"--webui-port={self.webui}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.http = Http(self.port)

    def add(self, path):
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"torrents\"; "
                f"filename=\"{os.path.basename(path)}\"\r\nContent-Type: application/x-bittorrent\r\n\r\n").encode()
        body += open(path, "rb").read()
        body += (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"savepath\"\r\n\r\n"
                 f"{self.data}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"skip_checking\"\r\n\r\n"
                 f"true\r\n--{boundary}--\r\n").encode()
        st, out = self.http.request("POST", "/api/v2/torrents/add", body,
                                    {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if st != 200 or out.strip() != b"Ok.":
            raise RuntimeError(f"qbittorrent-nox add: {st} {out[:200]!r}")

    def persisted(self):
        """Torrents with their resume data in the profile (qBittorrent writes them some
        time after the add, and a stop before that loses them)."""
        d = os.path.join(self.profile, "qBittorrent", "data", "BT_backup")
        if not os.path.isdir(d):
            return 0
        return sum(1 for f in os.listdir(d) if f.endswith(".fastresume"))

    def states(self):
        st, out = self.http.request("GET", "/api/v2/torrents/info")
        if st != 200:
            return None
        return [t["state"] for t in json.loads(out)]

    def list_raw(self):
        st, out = self.http.request("GET", "/api/v2/torrents/info")
        assert st == 200, st
        return out


def wait_all_seeding(d, n, t0, deadline):
    """Poll the list until n torrents are listed, all seeding; the time since t0."""
    last = None
    shown = time.monotonic()
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            sys.exit(f"error: {d.name} exited ({d.proc.returncode})")
        try:
            states = d.states()
        except (OSError, http.client.HTTPException, ValueError):
            states = None
            d.http.close()
        if states is not None:
            last = states
            if len(states) == n and all(s in d.SEEDING for s in states):
                return time.monotonic() - t0
            if time.monotonic() - shown > 30:
                shown = time.monotonic()
                print(f"    {d.name}: {len(states)} listed, " +
                      ", ".join(f"{k} {states.count(k)}" for k in sorted(set(states))), flush=True)
        time.sleep(0.1)
    summary = {s: last.count(s) for s in set(last)} if last else None
    sys.exit(f"error: {d.name}: not all {n} torrents seeding in time: {summary}")


def stop(d, timeout=300):
    if d.proc is None:
        return 0.0
    t0 = time.monotonic()
    d.http.close()
    d.proc.send_signal(signal.SIGTERM)
    try:
        d.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait()
        print(f"  {d.name}: did not stop within {timeout} s: killed", flush=True)
    d.proc = None
    return time.monotonic() - t0


def run(d, torrents, idle, lists):
    n = len(torrents)
    r = {}
    deadline = time.monotonic() + TIMEOUT
    t0 = time.monotonic()
    d.start()
    wait_all_seeding(d, 0, t0, deadline)
    t_add = time.monotonic()
    for p in torrents:
        d.add(p)
    r["add_s"] = time.monotonic() - t_add
    r["added_to_seeding_s"] = wait_all_seeding(d, n, t_add, deadline)
    # Every torrent saved in the daemon's state before it stops.
    while d.persisted() < n:
        if time.monotonic() > deadline:
            sys.exit(f"error: {d.name}: only {d.persisted()} of {n} torrents saved in time")
        time.sleep(0.5)
    r["added_to_persisted_s"] = time.monotonic() - t_add
    r["first_peak_rss_mib"] = proc_mem(d.proc.pid)["VmHWM"]
    print(f"  {d.name}: {n} added in {r['add_s']:.1f} s, all seeding after {r['added_to_seeding_s']:.1f} s, "
          f"all saved in its state after {r['added_to_persisted_s']:.1f} s, "
          f"peak RSS {r['first_peak_rss_mib']:.0f} MiB", flush=True)
    r["stop_s"] = stop(d)
    t0 = time.monotonic()
    d.start()
    r["restart_ready_s"] = wait_all_seeding(d, n, t0, deadline)
    d.http.close()
    print(f"  {d.name}: restarted, API ready with all {n} seeding after {r['restart_ready_s']:.2f} s", flush=True)
    time.sleep(5)  # let start-up work settle before measuring idle
    c0, w0 = proc_cpu(d.proc.pid), time.monotonic()
    time.sleep(idle)
    c1, w1 = proc_cpu(d.proc.pid), time.monotonic()
    r["idle_cpu_pct"] = 100 * (c1 - c0) / (w1 - w0)
    m = proc_mem(d.proc.pid)
    r["idle_rss_mib"] = m["VmRSS"]
    times = []
    cpu = []
    size = 0
    for _ in range(lists):
        c = proc_cpu(d.proc.pid)
        t = time.monotonic()
        body = d.list_raw()
        times.append(time.monotonic() - t)
        cpu.append(proc_cpu(d.proc.pid) - c)
        size = len(body)
        assert len(json.loads(body)) == n
    r["list_ms"] = 1000 * statistics.median(times)
    # The daemon's CPU time per list (10 ms ticks): what a busy machine does not change.
    r["list_cpu_ms"] = 1000 * sum(cpu) / len(cpu)
    r["list_bytes"] = size
    r["peak_rss_mib"] = proc_mem(d.proc.pid)["VmHWM"]
    print(f"  {d.name}: idle CPU {r['idle_cpu_pct']:.2f}% over {idle} s, idle RSS {r['idle_rss_mib']:.0f} MiB, "
          f"list {r['list_ms']:.0f} ms ({size} bytes, {r['list_cpu_ms']:.0f} ms of CPU), peak RSS after restart {r['peak_rss_mib']:.0f} MiB", flush=True)
    r["stop2_s"] = stop(d)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torrents", type=int, default=10000)
    ap.add_argument("--size", type=int, default=16384, help="bytes of each torrent's one file")
    ap.add_argument("--idle", type=int, default=60, help="seconds of idle measurement")
    ap.add_argument("--lists", type=int, default=9, help="list calls; the median is reported")
    ap.add_argument("--only", choices=["bitpeer", "qbittorrent-nox"])
    a = ap.parse_args()
    if not os.access(BITPEER, os.X_OK):
        sys.exit(f"error: no bitpeer binary at {BITPEER} (set BITPEER_BIN)")
    if not os.access(QBT, os.X_OK) and a.only != "bitpeer":
        sys.exit("error: qbittorrent-nox is not installed (apt-get install qbittorrent-nox)")
    os.makedirs(WORK, exist_ok=True)
    print(f"==> making {a.torrents} torrents of {a.size} bytes", flush=True)
    torrents = make_torrents(a.torrents, a.size)
    results = {}
    daemons = []
    try:
        for cls in (Bitpeer, Qbt):
            if a.only and cls.name != a.only:
                continue
            base = os.path.join(WORK, "run-" + cls.name)
            shutil.rmtree(base, ignore_errors=True)
            # Resume files bitpeer keeps beside the data, from an earlier run.
            for f in os.listdir(os.path.join(WORK, "data-bitpeer")):
                if f.startswith(".bitpeer-"):
                    os.remove(os.path.join(WORK, "data-bitpeer", f))
            d = cls(base)
            daemons.append(d)
            print(f"==> {d.name}", flush=True)
            results[d.name] = run(d, torrents, a.idle, a.lists)
    finally:
        for d in daemons:
            if d.proc is not None:
                d.proc.kill()
                d.proc.wait()
    print()
    print(json.dumps(results, indent=1))
    if len(results) == 2:
        b, q = results["bitpeer"], results["qbittorrent-nox"]
        print()
        print(f"{'':34}{'bitpeer':>12}{'qbittorrent-nox':>18}{'ratio':>8}")
        for k, label in [("add_s", "add N through the API (s)"),
                         ("added_to_seeding_s", "then until all seeding (s)"),
                         ("first_peak_rss_mib", "peak RSS while adding (MiB)"),
                         ("restart_ready_s", "restart to ready (s)"),
                         ("peak_rss_mib", "peak RSS after restart (MiB)"),
                         ("idle_rss_mib", "idle RSS (MiB)"),
                         ("idle_cpu_pct", "idle CPU (% of a core)"),
                         ("list_ms", "list all (ms, median)"),
                         ("list_cpu_ms", "daemon CPU per list (ms)")]:
            ratio = b[k] / q[k] if q[k] else float("nan")
            print(f"{label:34}{b[k]:12.2f}{q[k]:18.2f}{ratio:8.2f}")


if __name__ == "__main__":
    main()
