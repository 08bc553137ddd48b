#!/usr/bin/env python3
"""A stand-in for `bitpeer daemon`'s HTTP API v1 (docs/api.md), Python standard library only.

It keeps fake torrents in memory that download and seed over time, streams Server-Sent
Events, and serves the web UI folder at `/`, so the UI can be developed and its browser test
(ui_test.mjs) run without the real daemon. Nothing here touches the network beyond the
loopback socket it listens on, and nothing is written to disk.

    python3 mock_api.py [--port 0] [--webui DIR] [--user U --password P] [--empty]

Prints `api listening on http://127.0.0.1:PORT` once ready (like the daemon).
"""

import argparse
import base64
import email.parser
import email.policy
import hashlib
import json
import mimetypes
import os
import random
import re
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MAX_BODY = 16 * 1024 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# --- bencode (just enough to read a .torrent and hash its info dictionary) -----------------


class BencodeError(ValueError):
    pass


def bdecode(data, i=0, depth=0):
    """Returns (value, end). Dictionaries carry '__span__' {key: (start, end)} of raw values."""
    if depth > 64:
        raise BencodeError("nested too deep")
    if i >= len(data):
        raise BencodeError("truncated")
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c == b"l":
        i += 1
        out = []
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i, depth + 1)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = {}
        spans = {}
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i, depth + 1)
            if not isinstance(k, bytes):
                raise BencodeError("dictionary key is not a string")
            start = i
            v, i = bdecode(data, i, depth + 1)
            out[k] = v
            spans[k] = (start, i)
        out[b"__span__"] = spans
        return out, i + 1
    if c.isdigit():
        colon = data.index(b":", i)
        n = int(data[i:colon])
        if n < 0 or colon + 1 + n > len(data):
            raise BencodeError("string runs past the end")
        return data[colon + 1:colon + 1 + n], colon + 1 + n
    raise BencodeError(f"unexpected byte {c!r}")


def parse_torrent(raw):
    try:
        meta, _ = bdecode(raw)
    except (BencodeError, ValueError) as e:
        raise ValueError(f"not a valid .torrent file ({e})") from None
    if not isinstance(meta, dict) or b"info" not in meta or not isinstance(meta[b"info"], dict):
        raise ValueError("not a valid .torrent file (no info dictionary)")
    start, end = meta[b"__span__"][b"info"]
    info_hash = hashlib.sha1(raw[start:end]).hexdigest()
    info = meta[b"info"]
    name = info.get(b"name", b"unnamed").decode("utf-8", "replace")
    piece_length = int(info.get(b"piece length", 16 * KIB))
    files = []
    if b"files" in info:
        for f in info[b"files"]:
            parts = [p.decode("utf-8", "replace") for p in f.get(b"path", [])]
            files.append(("/".join([name] + parts), int(f.get(b"length", 0))))
    else:
        files.append((name, int(info.get(b"length", 0))))
    trackers = []
    if isinstance(meta.get(b"announce"), bytes):
        trackers.append(meta[b"announce"].decode("utf-8", "replace"))
    comment = meta.get(b"comment", b"").decode("utf-8", "replace") if isinstance(meta.get(b"comment"), bytes) else ""
    return {
        "info_hash": info_hash, "name": name, "piece_length": max(1, piece_length),
        "files": files, "trackers": trackers, "comment": comment,
        "private": bool(info.get(b"private", 0)),
        "created_by": meta.get(b"created by", b"").decode("utf-8", "replace") if isinstance(meta.get(b"created by"), bytes) else "",
        "creation_date": meta.get(b"creation date") if isinstance(meta.get(b"creation date"), int) else None,
    }


# --- the fake session ----------------------------------------------------------------------

CLIENTS = ["qBittorrent 4.6.7", "Transmission 4.0.6", "libtorrent 2.0.10", "rqbit 8.0",
           "aria2 1.37.0", "bitpeer 0.1.0", "Deluge 2.1.1"]


class Torrent:
    def __init__(self, tid, name, files, piece_length=256 * KIB, info_hash=None, save_path="/srv/downloads",
                 category="", tags=(), trackers=(), paused=False, progress=0.0, target_rate=4 * MIB,
                 comment="", created_by="", creation_date=None, private=False):
        self.id = tid
        self.info_hash = info_hash or hashlib.sha1(f"{name}/{tid}".encode()).hexdigest()
        self.name = name
        self.files = [{"path": p, "size": s, "priority": "normal"} for p, s in files]
        self.size = sum(s for _, s in files)
        self.piece_length = piece_length
        self.piece_count = max(1, -(-self.size // piece_length))
        self.order = list(range(self.piece_count))
        rnd = random.Random(tid)
        # pieces arrive roughly in order with some spread, like rarest-first on a young swarm
        self.order.sort(key=lambda i: i + rnd.random() * self.piece_count * 0.3)
        self.save_path = save_path
        self.category = category
        self.tags = list(tags)
        self.trackers = list(trackers)
        self.state = "paused" if paused else "checking"
        self.error = None
        self.have_bytes = int(self.size * progress)
        self.downloaded = self.have_bytes
        self.uploaded = int(self.have_bytes * rnd.uniform(0, 2.5)) if progress >= 1 else int(self.have_bytes * rnd.uniform(0, .3))
        self.download_rate = 0
        self.upload_rate = 0
        self.target_rate = target_rate
        self.added_at = int(time.time()) - rnd.randint(60, 86400 * 20)
        self.completed_at = self.added_at + 3600 if progress >= 1 else None
        self.queue_position = tid
        self.download_limit = 0
        self.upload_limit = 0
        self.sequential = False
        self.comment = comment
        self.created_by = created_by
        self.creation_date = creation_date
        self.private = private
        self.peers_list = []
        self.checking_ticks = 1
        self.seeding_upload = rnd.choice([0, 0, 40 * KIB, 300 * KIB, 1.2 * MIB])
        self.changed = True
        if not paused:
            self.state = "seeding" if progress >= 1 else "downloading"

    def wanted_size(self):
        return sum(f["size"] for f in self.files if f["priority"] != "skip")

    def progress(self):
        w = self.wanted_size()
        return 1.0 if w == 0 else min(1.0, self.have_bytes / w)

    def have_bitfield(self):
        n = self.piece_count
        have_pieces = int(n * (self.have_bytes / self.size)) if self.size else n
        if self.have_bytes >= self.size:
            have_pieces = n
        bits = bytearray((n + 7) // 8)
        for i in self.order[:have_pieces]:
            bits[i >> 3] |= 0x80 >> (i & 7)
        return bits

    def file_list(self):
        out = []
        frac = self.have_bytes / self.size if self.size else 1
        for i, f in enumerate(self.files):
            have = int(f["size"] * frac) if f["priority"] != "skip" else 0
            out.append({"index": i, "path": f["path"], "size": f["size"], "have_bytes": have,
                        "progress": (have / f["size"]) if f["size"] else 1.0, "priority": f["priority"]})
        return out

    def json(self):
        eta = None
        if self.state == "downloading" and self.download_rate > 0:
            eta = int((self.wanted_size() - self.have_bytes) / self.download_rate)
        ratio = self.uploaded / self.downloaded if self.downloaded else 0.0
        seeds = sum(1 for p in self.peers_list if p["progress"] >= 1)
        return {
            "id": self.id, "info_hash": self.info_hash, "name": self.name, "state": self.state,
            "error": self.error, "progress": round(self.progress(), 5), "size": self.size,
            "wanted_size": self.wanted_size(), "have_bytes": self.have_bytes,
            "save_path": self.save_path,
            "content_path": f"{self.save_path}/{self.name}",
            "download_rate": int(self.download_rate), "upload_rate": int(self.upload_rate),
            "downloaded": self.downloaded, "uploaded": self.uploaded, "ratio": round(ratio, 4),
            "peers": len(self.peers_list), "seeds": seeds, "eta": eta,
            "added_at": self.added_at, "completed_at": self.completed_at,
            "category": self.category or None, "tags": self.tags,
            "queue_position": self.queue_position, "download_limit": self.download_limit,
            "upload_limit": self.upload_limit, "sequential": self.sequential,
            "ratio_limit": None, "seeding_time_limit": None, "private": self.private,
        }

    def detail(self):
        d = self.json()
        d.update({"files": self.file_list(), "trackers": self.tracker_list(),
                  "piece_count": self.piece_count, "piece_length": self.piece_length,
                  "comment": self.comment, "created_by": self.created_by,
                  "creation_date": self.creation_date})
        return d

    def tracker_list(self):
        out = []
        for i, url in enumerate(self.trackers):
            working = self.state not in ("paused",)
            out.append({"url": url, "tier": i, "status": ("working" if i % 3 != 2 else "error") if working else "not_contacted",
                        "message": "" if i % 3 != 2 else "connection timed out",
                        "seeds": 40 + 7 * i if working else None, "leechers": 12 + i if working else None,
                        "peers": 50 if working else None, "next_announce": 1200 - (int(time.time()) % 1200) if working else None})
        return out

    def tick(self, rnd, dl_budget):
        """One second passes. Returns the bytes downloaded (against the global limit)."""
        before = (self.state, self.have_bytes, int(self.download_rate), int(self.upload_rate))
        got = 0
        if self.state == "checking":
            self.checking_ticks -= 1
            if self.checking_ticks <= 0:
                self.state = "seeding" if self.progress() >= 1 else "downloading"
        elif self.state == "downloading":
            rate = self.target_rate * rnd.uniform(0.7, 1.15)
            if self.download_limit:
                rate = min(rate, self.download_limit)
            rate = min(rate, dl_budget, self.wanted_size() - self.have_bytes)
            got = int(max(0, rate))
            self.have_bytes += got
            self.downloaded += got
            self.download_rate = got
            self.upload_rate = int(rnd.uniform(5, 120) * KIB)
            self.uploaded += self.upload_rate
            if self.have_bytes >= self.wanted_size():
                self.have_bytes = self.wanted_size()
                self.state = "seeding"
                self.completed_at = int(time.time())
                self.download_rate = 0
        elif self.state == "seeding":
            self.download_rate = 0
            self.upload_rate = int(self.seeding_upload * rnd.uniform(0.6, 1.3)) if self.seeding_upload else 0
            self.uploaded += self.upload_rate
        else:
            self.download_rate = 0
            self.upload_rate = 0
        self.update_peers(rnd)
        after = (self.state, self.have_bytes, int(self.download_rate), int(self.upload_rate))
        if after != before:
            self.changed = True
        return got

    def update_peers(self, rnd):
        if self.state in ("paused", "queued", "checking", "error"):
            self.peers_list = []
            return
        want = 0 if self.state == "seeding" and not self.upload_rate else (6 if self.state == "seeding" else 14)
        while len(self.peers_list) < want:
            a = rnd.randint(1, 223)
            self.peers_list.append({
                "address": f"{a}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}:{rnd.randint(1024, 65535)}",
                "client": rnd.choice(CLIENTS), "transport": rnd.choice(["tcp", "tcp", "utp"]),
                "encrypted": rnd.random() < 0.5, "flags": rnd.choice(["D", "U", "D X", "d U", "D H", "U E"]),
                "download_rate": 0, "upload_rate": 0,
                "progress": rnd.choice([1.0, 1.0, round(rnd.random(), 3)]), "downloaded": 0, "uploaded": 0})
        del self.peers_list[want:]
        n = max(1, len(self.peers_list))
        for p in self.peers_list:
            p["download_rate"] = int(self.download_rate / n * rnd.uniform(0.3, 1.7)) if p["progress"] > 0 else 0
            p["upload_rate"] = int(self.upload_rate / n * rnd.uniform(0.3, 1.7))
            p["downloaded"] += p["download_rate"]
            p["uploaded"] += p["upload_rate"]


class Session:
    def __init__(self, demo):
        self.lock = threading.Condition()
        self.torrents = {}
        self.next_id = 1
        self.events = []  # (seq, name, json text)
        self.seq = 0
        self.download_limit = 0
        self.upload_limit = 0
        self.downloaded = 0
        self.uploaded = 0
        self.download_rate = 0
        self.upload_rate = 0
        self.categories = {"movies": {"name": "movies", "save_path": "/srv/media/movies"},
                           "linux": {"name": "linux", "save_path": "/srv/iso"},
                           "tv": {"name": "tv", "save_path": "/srv/media/tv"}}
        self.rnd = random.Random(7)
        if demo:
            self.add_demo()

    def new_id(self):
        tid = self.next_id
        self.next_id += 1
        return tid

    def add_idle(self, count):
        """`count` small complete torrents that do nothing (to try the UI with a big list)."""
        for i in range(count):
            tid = self.new_id()
            t = Torrent(tid, f"dataset-{i:05d}.bin", [(f"dataset-{i:05d}.bin", (i % 97 + 1) * 37 * KIB)],
                        piece_length=16 * KIB, progress=1.0, tags=["bulk"] if i % 3 == 0 else [])
            t.info_hash = hashlib.sha1(b"idle%d" % i).hexdigest()
            t.seeding_upload = 0
            self.torrents[tid] = t

    def add_demo(self):
        trk = ["udp://tracker.opentrackr.org:1337/announce", "https://torrent.ubuntu.com/announce",
               "udp://open.demonii.com:1337/announce"]
        demo = [
            ("debian-13.2.0-amd64-netinst.iso", [("debian-13.2.0-amd64-netinst.iso", 754 * MIB)], "linux", ["iso"], 0.0, False, 6 * MIB),
            ("ubuntu-24.04.3-desktop-amd64.iso", [("ubuntu-24.04.3-desktop-amd64.iso", int(5.9 * GIB))], "linux", ["iso", "lts"], 0.37, False, 11 * MIB),
            ("Big Buck Bunny (2008) [1080p]", [("Big Buck Bunny (2008) [1080p]/Big.Buck.Bunny.1080p.mkv", 691 * MIB),
                                               ("Big Buck Bunny (2008) [1080p]/subs/en.srt", 48 * KIB),
                                               ("Big Buck Bunny (2008) [1080p]/poster.jpg", 310 * KIB)], "movies", ["blender"], 1.0, False, 0),
            ("Sintel.2010.4K.OpenMovie", [("Sintel.2010.4K.OpenMovie/sintel-4k.mp4", int(3.2 * GIB)),
                                          ("Sintel.2010.4K.OpenMovie/sintel.en.srt", 12 * KIB)], "movies", ["blender", "4k"], 0.62, True, 0),
            ("archlinux-2026.11.01-x86_64.iso", [("archlinux-2026.11.01-x86_64.iso", 1210 * MIB)], "linux", ["iso"], 1.0, False, 0),
            ("Tears of Steel — Blender Foundation <open movie> & friends", [("Tears of Steel/tos-1080p.mov", int(2.4 * GIB))], "", [], 0.08, False, 900 * KIB),
            ("Cosmos Laundromat S01 Complete", [(f"Cosmos Laundromat S01/E{i:02d}.mkv", 380 * MIB + i * MIB) for i in range(1, 9)], "tv", ["series"], 1.0, False, 0),
            ("linux-6.18.tar.xz", [("linux-6.18.tar.xz", 148 * MIB)], "", ["src"], 0.0, False, 0),
            ("Elephants Dream (2006) [720p]", [("Elephants Dream/ed_hd.avi", 854 * MIB)], "movies", [], 0.31, False, 0),
        ]
        for name, files, cat, tags, progress, paused, rate in demo:
            tid = self.new_id()
            t = Torrent(tid, name, files, piece_length=4 * MIB if sum(s for _, s in files) > GIB else MIB,
                        save_path=self.categories[cat]["save_path"] if cat else "/srv/downloads",
                        category=cat, tags=tags, trackers=trk[: 1 + tid % 3], paused=paused,
                        progress=progress, target_rate=rate or 2 * MIB, comment="Demo torrent of the mock API",
                        created_by="mktorrent 1.1", creation_date=1735689600)
            if name.startswith("linux-"):
                t.state = "queued"
            if name.startswith("Elephants"):
                t.state = "error"
                t.error = "cannot write ed_hd.avi: no space left on device"
            if name.startswith("debian"):
                t.state = "metadata"
                t.checking_ticks = 0
            self.torrents[tid] = t
        # make some history for the graph and the stats
        self.downloaded = 38 * GIB
        self.uploaded = 91 * GIB

    # events: every mutation appends; SSE clients follow the log -------------------------------

    def emit(self, name, data):
        self.seq += 1
        self.events.append((self.seq, name, json.dumps(data)))
        if len(self.events) > 2000:
            del self.events[:1000]
        self.lock.notify_all()

    def session_json(self):
        return {"version": "0.1.0-mock", "listen_addr": "0.0.0.0:6881", "download_dir": "/srv/downloads",
                "download_rate": int(self.download_rate), "upload_rate": int(self.upload_rate),
                "downloaded": self.downloaded, "uploaded": self.uploaded,
                "torrents": len(self.torrents), "dht_nodes": 312 + self.seq % 17,
                "download_limit": self.download_limit, "upload_limit": self.upload_limit}

    def tick(self):
        with self.lock:
            budget = self.download_limit or 1 << 60
            up_total = 0
            down_total = 0
            for t in list(self.torrents.values()):
                if t.state == "metadata" and self.rnd.random() < 0.25:
                    t.state = "downloading"
                    t.changed = True
                got = t.tick(self.rnd, budget)
                budget = max(0, budget - got)
                down_total += got
                up_total += t.upload_rate
            if self.upload_limit and up_total > self.upload_limit:
                scale = self.upload_limit / up_total
                for t in self.torrents.values():
                    t.upload_rate = int(t.upload_rate * scale)
                up_total = self.upload_limit
            self.download_rate = down_total
            self.upload_rate = up_total
            self.downloaded += down_total
            self.uploaded += up_total
            changed = [t.json() for t in self.torrents.values() if t.changed]
            for t in self.torrents.values():
                t.changed = False
            if changed:
                self.emit("torrents", changed)
            self.emit("session", self.session_json())


SESSION = None
ARGS = None
SESSIONS = set()  # valid login cookies


def ticker():
    while True:
        time.sleep(1)
        SESSION.tick()


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def truthy(v):
    return str(v).strip().lower() in ("1", "true", "yes", "on")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bitpeer-mock/0.1"

    def log_message(self, fmt, *args):
        if ARGS.verbose:
            sys.stderr.write("mock: " + fmt % args + "\n")

    # --- plumbing ---------------------------------------------------------------------------

    def send_json(self, status, data, headers=()):
        body = b"" if data is None else json.dumps(data).encode()
        self.send_response(status)
        if data is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ApiError(413, f"request body larger than {MAX_BODY // MIB} MiB")
        return self.rfile.read(n) if n else b""

    def json_body(self):
        raw = self.read_body()
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data

    def authorized(self):
        if not ARGS.user:
            return True
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return user == ARGS.user and pw == ARGS.password
        if auth.startswith("Bearer "):
            return secrets.compare_digest(auth[7:], ARGS.password)
        for part in self.headers.get("Cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == "bitpeer_sid" and v in SESSIONS:
                return True
        return False

    def do_GET(self):
        self.route("GET")

    def do_HEAD(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        url = urlsplit(self.path)
        path = url.path
        query = parse_qs(url.query)
        try:
            if not path.startswith("/api/") and path != "/metrics":
                if method != "GET":
                    raise ApiError(405, "method not allowed")
                return self.static(path)
            if path == "/api/v1/login" and method == "POST":
                return self.login()
            if not self.authorized():
                raise ApiError(401, "sign in first: credentials are required")
            if path == "/metrics":
                return self.metrics()
            for pattern, meth, fn in ROUTES:
                m = re.fullmatch(pattern, path)
                if m and meth == method:
                    return fn(self, query, *m.groups())
            raise ApiError(404, f"no such endpoint: {method} {path}")
        except ApiError as e:
            try:
                self.send_json(e.status, {"error": e.message})
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            pass

    def static(self, path):
        if path == "/":
            path = "/index.html"
        rel = unquote(path).lstrip("/")
        root = os.path.realpath(ARGS.webui)
        full = os.path.realpath(os.path.join(root, rel))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            raise ApiError(404, "not found")
        with open(full, "rb") as f:
            body = f.read()
        ctype = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8",
                 ".svg": "image/svg+xml"}.get(os.path.splitext(full)[1]) or mimetypes.guess_type(full)[0] or "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        # the policy the daemon should send too: the UI needs nothing inline or remote
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def login(self):
        ctype = self.headers.get("Content-Type", "")
        raw = self.read_body()
        if ctype.startswith("application/json"):
            try:
                data = json.loads(raw or b"{}")
            except ValueError:
                raise ApiError(400, "the body is not valid JSON") from None
        else:
            data = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        if not ARGS.user:
            return self.send_json(200, {"ok": True})
        if data.get("username") != ARGS.user or data.get("password") != ARGS.password:
            raise ApiError(401, "wrong user or password")
        sid = secrets.token_hex(16)
        SESSIONS.add(sid)
        self.send_json(200, {"ok": True}, [("Set-Cookie", f"bitpeer_sid={sid}; Path=/; HttpOnly; SameSite=Strict")])

    def metrics(self):
        with SESSION.lock:
            s = SESSION.session_json()
        body = (f"# TYPE bitpeer_torrents gauge\nbitpeer_torrents {s['torrents']}\n"
                f"# TYPE bitpeer_download_bytes_total counter\nbitpeer_download_bytes_total {s['downloaded']}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # --- endpoints --------------------------------------------------------------------------

    def torrent(self, tid):
        t = SESSION.torrents.get(int(tid))
        if t is None:
            raise ApiError(404, f"no torrent with id {tid}")
        return t

    def get_session(self, q):
        with SESSION.lock:
            self.send_json(200, SESSION.session_json())

    def patch_session(self, q):
        data = self.json_body()
        with SESSION.lock:
            for key in ("download_limit", "upload_limit"):
                if key in data:
                    v = data[key]
                    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                        raise ApiError(400, f"{key} must be a whole number of bytes per second, 0 or more")
                    setattr(SESSION, key, v)
            SESSION.emit("session", SESSION.session_json())
            self.send_json(200, SESSION.session_json())

    def list_torrents(self, q):
        with SESSION.lock:
            out = [t.json() for t in SESSION.torrents.values()]
        if "state" in q:
            out = [t for t in out if t["state"] == q["state"][0]]
        if "category" in q:
            out = [t for t in out if (t["category"] or "") == q["category"][0]]
        if "tag" in q:
            out = [t for t in out if q["tag"][0] in t["tags"]]
        self.send_json(200, out)

    def add_torrent(self, q):
        ctype = self.headers.get("Content-Type", "")
        items = []  # ("torrent", bytes) | ("magnet", str) | ("url", str)
        opts = {}
        if ctype.startswith("multipart/form-data"):
            raw = self.read_body()
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            if not msg.is_multipart():
                raise ApiError(400, "malformed multipart body")
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                value = part.get_payload(decode=True) or b""
                if name == "torrent":
                    items.append(("torrent", value))
                elif name in ("magnet", "url"):
                    items.append((name, value.decode("utf-8", "replace").strip()))
                elif name in ("save_path", "paused", "category", "tags"):
                    opts[name] = value.decode("utf-8", "replace")
            opts["tags"] = [s.strip() for s in opts.get("tags", "").split(",") if s.strip()]
        else:
            data = self.json_body()
            for key in ("magnet", "url"):
                if isinstance(data.get(key), str):
                    items.append((key, data[key].strip()))
            if isinstance(data.get("torrent_base64"), str):
                try:
                    items.append(("torrent", base64.b64decode(data["torrent_base64"], validate=True)))
                except ValueError:
                    raise ApiError(400, "torrent_base64 is not base64") from None
            opts = {k: data[k] for k in ("save_path", "paused", "category", "tags") if k in data}
            if not isinstance(opts.get("tags", []), list):
                raise ApiError(400, "tags must be an array of strings")
        if not items:
            raise ApiError(400, "give a torrent file, a magnet link or a url")
        save_path = str(opts.get("save_path") or "")
        if ".." in save_path.split("/"):
            raise ApiError(400, "save_path must not contain '..'")
        category = str(opts.get("category") or "")
        paused = truthy(opts.get("paused", False))
        kind, value = items[0]
        if kind == "torrent":
            try:
                meta = parse_torrent(value)
            except ValueError as e:
                raise ApiError(400, str(e)) from None
        elif kind == "magnet":
            m = re.search(r"xt=urn:btih:([0-9a-fA-F]{40})", value)
            if not value.startswith("magnet:?") or not m:
                raise ApiError(400, "not a magnet link with a hex info-hash")
            dn = re.search(r"[?&]dn=([^&]+)", value)
            meta = {"info_hash": m.group(1).lower(), "name": unquote(dn.group(1).replace("+", " ")) if dn else m.group(1).lower(),
                    "piece_length": MIB, "files": [("file.bin", 700 * MIB)], "trackers": [], "comment": "",
                    "created_by": "", "creation_date": None, "private": False}
        else:
            if not re.match(r"https?://", value):
                raise ApiError(400, "the url must be http or https")
            meta = {"info_hash": hashlib.sha1(value.encode()).hexdigest(), "name": value.rsplit("/", 1)[-1] or "download",
                    "piece_length": MIB, "files": [("file.bin", 300 * MIB)], "trackers": [], "comment": "",
                    "created_by": "", "creation_date": None, "private": False}
        with SESSION.lock:
            if any(t.info_hash == meta["info_hash"] for t in SESSION.torrents.values()):
                raise ApiError(409, f"this torrent is already added ({meta['info_hash']})")
            tid = SESSION.new_id()
            if not save_path:
                save_path = SESSION.categories.get(category, {}).get("save_path", "/srv/downloads")
            size = sum(s for _, s in meta["files"])
            t = Torrent(tid, meta["name"], meta["files"], piece_length=meta["piece_length"],
                        info_hash=meta["info_hash"], save_path=save_path, category=category,
                        tags=[str(x) for x in opts.get("tags", [])], trackers=meta["trackers"], paused=paused,
                        target_rate=max(size // ARGS.finish_seconds + 1, 64 * KIB),
                        comment=meta["comment"], created_by=meta["created_by"],
                        creation_date=meta["creation_date"], private=meta["private"])
            t.added_at = int(time.time())
            if kind == "magnet":
                t.state = "metadata" if not paused else "paused"
            else:
                t.state = "checking" if not paused else "paused"
            SESSION.torrents[tid] = t
            SESSION.emit("torrents", [t.json()])
            t.changed = False
        self.send_json(201, {"id": tid, "info_hash": meta["info_hash"]})

    def get_torrent(self, q, tid):
        with SESSION.lock:
            self.send_json(200, self.torrent(tid).detail())

    def patch_torrent(self, q, tid):
        data = self.json_body()
        with SESSION.lock:
            t = self.torrent(tid)
            for key in ("download_limit", "upload_limit"):
                if key in data:
                    if not isinstance(data[key], int) or data[key] < 0:
                        raise ApiError(400, f"{key} must be a whole number, 0 or more")
                    setattr(t, key, data[key])
            if "sequential" in data:
                t.sequential = bool(data["sequential"])
            if "category" in data:
                t.category = str(data["category"] or "")
            if "tags" in data:
                if not isinstance(data["tags"], list):
                    raise ApiError(400, "tags must be an array of strings")
                t.tags = [str(x) for x in data["tags"]]
            t.changed = True
            self.send_json(200, t.json())

    def delete_torrent(self, q, tid):
        with SESSION.lock:
            t = self.torrent(tid)
            del SESSION.torrents[t.id]
            SESSION.emit("removed", {"id": t.id})
            if ARGS.verbose:
                sys.stderr.write(f"mock: removed {t.id} delete_data={q.get('delete_data', ['false'])[0]}\n")
        self.send_json(204, None)

    def action(self, q, tid, verb):
        with SESSION.lock:
            t = self.torrent(tid)
            if verb == "pause":
                if t.state != "paused":
                    t.state = "paused"
                    t.download_rate = t.upload_rate = 0
                    t.peers_list = []
            elif verb in ("resume", "force_start"):
                if t.state in ("paused", "queued", "error"):
                    t.state = "seeding" if t.progress() >= 1 else "downloading"
            elif verb == "recheck":
                t.state = "checking"
                t.checking_ticks = 2
            t.changed = True
            self.send_json(200, t.json())

    def move(self, q, tid):
        data = self.json_body()
        path = data.get("save_path")
        if not isinstance(path, str) or not path or ".." in path.split("/"):
            raise ApiError(400, "save_path must be a folder path without '..'")
        with SESSION.lock:
            t = self.torrent(tid)
            t.save_path = path
            t.changed = True
            self.send_json(200, t.json())

    def queue(self, q, tid):
        data = self.json_body()
        if data.get("position") not in ("top", "bottom", "up", "down"):
            raise ApiError(400, "position must be top, bottom, up or down")
        with SESSION.lock:
            self.send_json(200, self.torrent(tid).json())

    def files(self, q, tid):
        with SESSION.lock:
            self.send_json(200, self.torrent(tid).file_list())

    def patch_files(self, q, tid):
        data = self.json_body()
        pr = data.get("priorities")
        if not isinstance(pr, dict):
            raise ApiError(400, "priorities must be an object {index: skip|normal|high}")
        with SESSION.lock:
            t = self.torrent(tid)
            for k, v in pr.items():
                if not str(k).isdigit() or int(k) >= len(t.files):
                    raise ApiError(400, f"no file with index {k}")
                if v not in ("skip", "normal", "high"):
                    raise ApiError(400, f"priority must be skip, normal or high, not {v!r}")
            for k, v in pr.items():
                t.files[int(k)]["priority"] = v
            t.have_bytes = min(t.have_bytes, t.wanted_size())
            if t.state == "seeding" and t.progress() < 1:
                t.state = "downloading"
            t.changed = True
            self.send_json(200, t.file_list())

    def peers(self, q, tid):
        with SESSION.lock:
            self.send_json(200, list(self.torrent(tid).peers_list))

    def trackers(self, q, tid):
        with SESSION.lock:
            self.send_json(200, self.torrent(tid).tracker_list())

    def pieces(self, q, tid):
        with SESSION.lock:
            t = self.torrent(tid)
            rnd = random.Random(t.id)
            self.send_json(200, {"piece_count": t.piece_count, "piece_length": t.piece_length,
                                 "have": base64.b64encode(bytes(t.have_bitfield())).decode(),
                                 "availability": [rnd.randint(0, 30) for _ in range(min(t.piece_count, 100000))]})

    def categories(self, q):
        with SESSION.lock:
            self.send_json(200, SESSION.categories)

    def add_category(self, q):
        data = self.json_body()
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "name is required")
        with SESSION.lock:
            SESSION.categories[name] = {"name": name, "save_path": str(data.get("save_path") or "")}
            self.send_json(201, SESSION.categories[name])

    def delete_category(self, q, name):
        with SESSION.lock:
            if SESSION.categories.pop(unquote(name), None) is None:
                raise ApiError(404, "no such category")
        self.send_json(204, None)

    def events(self, q):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        with SESSION.lock:
            snap = {"session": SESSION.session_json(), "torrents": [t.json() for t in SESSION.torrents.values()]}
            last = SESSION.seq
        self.wfile.write(f"event: snapshot\ndata: {json.dumps(snap)}\n\n".encode())
        self.wfile.flush()
        while True:
            with SESSION.lock:
                SESSION.lock.wait_for(lambda: SESSION.seq > last, timeout=15)
                batch = [e for e in SESSION.events if e[0] > last]
                last = SESSION.seq
            out = "".join(f"event: {name}\ndata: {data}\n\n" for _, name, data in batch) or ": keep-alive\n\n"
            self.wfile.write(out.encode())
            self.wfile.flush()


T = r"/api/v1/torrents/(\d+)"
ROUTES = [
    (r"/api/v1/session", "GET", Handler.get_session),
    (r"/api/v1/session", "PATCH", Handler.patch_session),
    (r"/api/v1/torrents", "GET", Handler.list_torrents),
    (r"/api/v1/torrents", "POST", Handler.add_torrent),
    (T, "GET", Handler.get_torrent),
    (T, "PATCH", Handler.patch_torrent),
    (T, "DELETE", Handler.delete_torrent),
    (T + r"/(pause|resume|recheck|force_start)", "POST", Handler.action),
    (T + r"/move", "POST", Handler.move),
    (T + r"/queue", "POST", Handler.queue),
    (T + r"/files", "GET", Handler.files),
    (T + r"/files", "PATCH", Handler.patch_files),
    (T + r"/peers", "GET", Handler.peers),
    (T + r"/trackers", "GET", Handler.trackers),
    (T + r"/pieces", "GET", Handler.pieces),
    (r"/api/v1/categories", "GET", Handler.categories),
    (r"/api/v1/categories", "POST", Handler.add_category),
    (r"/api/v1/categories/([^/]+)", "DELETE", Handler.delete_category),
    (r"/api/v1/events", "GET", Handler.events),
]


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(type(v))


def write_sample_torrent(path):
    """A 3-file torrent over random bytes (its pieces hash real data, so a real client
    could seed it from the same bytes; the mock only reads its name and sizes)."""
    rnd = random.Random(int(time.time()))
    piece = 16 * KIB
    files = [("readme.txt", 3000), ("data/part-1.bin", 200_000), ("data/part-2.bin", 120_000)]
    blob = bytes(rnd.getrandbits(8) for _ in range(sum(n for _, n in files)))
    pieces = b"".join(hashlib.sha1(blob[i:i + piece]).digest() for i in range(0, len(blob), piece))
    name = f"bitpeer-ui-test-{rnd.randrange(1 << 32):08x}"
    info = {"name": name, "piece length": piece, "pieces": pieces,
            "files": [{"length": n, "path": p.split("/")} for p, n in files]}
    with open(path, "wb") as f:
        f.write(bencode({"info": info, "created by": "bitpeer mock_api.py", "creation date": int(time.time())}))
    print(name)


def main():
    global SESSION, ARGS
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    p.add_argument("--webui", default=os.path.join(here, "..", "..", "webui"), help="folder served at /")
    p.add_argument("--user", default="", help="require this user (and --password)")
    p.add_argument("--password", default="")
    p.add_argument("--empty", action="store_true", help="start without the demo torrents")
    p.add_argument("--idle", type=int, default=0, metavar="N",
                   help="also hold N small idle torrents (to try the UI with a big list)")
    p.add_argument("--finish-seconds", type=int, default=6,
                   help="an added torrent downloads in about this many seconds (default 6)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    p.add_argument("--write-torrent", metavar="FILE",
                   help="write a small sample .torrent file (for ui_test.mjs) and exit")
    ARGS = p.parse_args()
    if ARGS.write_torrent:
        write_sample_torrent(ARGS.write_torrent)
        return
    ARGS.finish_seconds = max(1, ARGS.finish_seconds)
    SESSION = Session(demo=not ARGS.empty)
    SESSION.add_idle(max(0, min(ARGS.idle, 1_000_000)))
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=ticker, daemon=True).start()
    print(f"api listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
