"""Hostile peers for the hostile-swarm tests: many connections from one other loopback
address (127.0.0.2 and up look like other hosts), each doing one thing a public node meets.

Usage: attackers.py MODE --target HOST:PORT --info-hash HEX --from IP [--count N]
                     [--pieces N] [--duration S]

MODE:
  idle      open N connections, handshake (BEP 3 + BEP 6 + BEP 10 bits), then send nothing
            and read nothing (they would fill a torrent's peer slots);
  slowloris keep re-dialling: open connections that send half a handshake and stall,
            N at a time, replacing each as soon as the node drops it;
  noread    N connections that say interested, and once unchoked request one 16 KiB block
            of each of PIECES pieces, and never read (tiny receive buffer);
  silent-metadata
            listen on --from (prints {"port": N} first) and answer every handshake with an
            extended handshake offering ut_metadata of --metadata-size bytes, then never
            answer a metadata request (a magnet download must not wait for it).

Prints {"mode": M, "open": N, "dropped": N, "unchoked": N} once a second to stdout and
exits after DURATION seconds (or on SIGTERM). Plain Python, standard library only; every
socket talks only to the target given.
"""

import argparse
import json
import select
import signal
import socket
import struct
import sys
import time

stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))


def handshake(info_hash, n):
    reserved = bytes([0, 0, 0, 0, 0, 0x10, 0, 0x04])
    peer_id = b"-AT0001-" + (b"%012d" % n)
    return b"\x13BitTorrent protocol" + reserved + info_hash + peer_id


def dial(src, target, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((src, 0))
    s.settimeout(5)
    s.connect(target)
    return s


def alive(s):
    """False once the node closed the connection (what it sent is read and dropped)."""
    try:
        while True:
            r, _, _ = select.select([s], [], [], 0)
            if not r:
                return True
            if not s.recv(65536):
                return False
    except OSError:
        return False


def bencode(x):
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, dict):
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(x.items())) + b"e"
    raise TypeError(x)


def silent_metadata(a):
    ih = bytes.fromhex(a.info_hash)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind((a.src, 0))
    ls.listen(16)
    ls.setblocking(False)
    print(json.dumps({"port": ls.getsockname()[1]}), flush=True)
    ext = bencode({b"m": {b"ut_metadata": 3}, b"metadata_size": a.metadata_size,
                   b"v": b"silent 1.0"})
    conns = []
    asked = 0
    end = time.monotonic() + a.duration
    n = 0
    next_report = 0
    while time.monotonic() < end and not stop:
        readable, _, _ = select.select([ls] + conns, [], [], 0.02)
        for r in readable:
            if r is ls:
                try:
                    s, _ = ls.accept()
                    s.settimeout(5)
                    hs = b""
                    while len(hs) < 68:
                        chunk = s.recv(68 - len(hs))
                        if not chunk:
                            raise OSError("closed")
                        hs += chunk
                    s.sendall(handshake(ih, n))
                    s.sendall(struct.pack(">IBB", 2 + len(ext), 20, 0) + ext)
                    s.setblocking(False)
                    conns.append(s)
                    n += 1
                except OSError:
                    pass
                continue
            try:
                data = r.recv(65536)
                if not data:
                    conns.remove(r)
                    r.close()
                elif b"msg_type" in data:
                    asked += 1
            except OSError:
                conns.remove(r)
        if time.monotonic() >= next_report:
            print(json.dumps({"mode": "silent-metadata", "accepted": n, "asked": asked}),
                  flush=True)
            next_report = time.monotonic() + 0.2
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["idle", "slowloris", "noread", "silent-metadata"])
    ap.add_argument("--target", default="")
    ap.add_argument("--metadata-size", type=int, default=0)
    ap.add_argument("--info-hash", required=True)
    ap.add_argument("--from", dest="src", required=True)
    ap.add_argument("--count", type=int, default=80)
    ap.add_argument("--pieces", type=int, default=0)
    ap.add_argument("--duration", type=float, default=60)
    a = ap.parse_args()
    if a.mode == "silent-metadata":
        return silent_metadata(a)
    host, port = a.target.rsplit(":", 1)
    target = (host, int(port))
    ih = bytes.fromhex(a.info_hash)
    end = time.monotonic() + a.duration
    conns = []
    dropped = 0
    unchoked = 0
    n = 0
    next_report = time.monotonic()
    bufs = {}
    requested = set()
    while time.monotonic() < end and not stop:
        # Keep COUNT connections open (idle and noread open them once; slowloris re-dials).
        if a.mode == "slowloris" or n < a.count:
            while len(conns) < a.count and time.monotonic() < end:
                try:
                    s = dial(a.src, target, 4096 if a.mode == "noread" else None)
                    hs = handshake(ih, n)
                    if a.mode == "slowloris":
                        s.sendall(hs[:30])  # half a handshake, then nothing
                    else:
                        s.sendall(hs)
                        if a.mode == "noread":
                            s.sendall(struct.pack(">IB", 1, 2))  # interested
                    conns.append(s)
                    n += 1
                except OSError:
                    dropped += 1
                    time.sleep(0.01)
                    break
        keep = []
        for s in conns:
            if a.mode == "noread" and s.fileno() not in requested:
                # Read just enough to see the unchoke, then ask and stop reading.
                try:
                    r, _, _ = select.select([s], [], [], 0)
                    if r:
                        data = s.recv(65536)
                        if not data:
                            raise OSError("closed")
                        buf = bufs.get(s.fileno(), b"") + data
                        # Skip the 68-byte handshake, then walk the messages.
                        pos = 68 if len(buf) >= 68 else len(buf)
                        seen_unchoke = False
                        while len(buf) >= 68 and pos + 4 <= len(buf):
                            ln = struct.unpack(">I", buf[pos:pos + 4])[0]
                            if pos + 4 + ln > len(buf):
                                break
                            if ln >= 1 and buf[pos + 4] == 1:
                                seen_unchoke = True
                            pos += 4 + ln
                        bufs[s.fileno()] = buf
                        if seen_unchoke:
                            reqs = b"".join(struct.pack(">IBIII", 13, 6, p, 0, 16384)
                                            for p in range(a.pieces))
                            s.setblocking(False)
                            try:
                                s.send(reqs)
                            except BlockingIOError:
                                pass
                            requested.add(s.fileno())
                            unchoked += 1
                except OSError:
                    dropped += 1
                    s.close()
                    continue
            if a.mode != "noread" and not alive(s):
                dropped += 1
                s.close()
                continue
            keep.append(s)
        conns = keep
        if time.monotonic() >= next_report:
            print(json.dumps({"mode": a.mode, "open": len(conns), "dropped": dropped,
                              "unchoked": unchoked, "dialled": n}), flush=True)
            next_report += 1
        time.sleep(0.05)
    for s in conns:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
