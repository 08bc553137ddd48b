"""Drives bitpeer's Transmission RPC as the real clients do.

Usage: compat_tr.py API USER PASS TORRENT DATA MAGNET MAGNET_DATA OUTSIDE_DIR

- raw HTTP: Basic checked before the session id (401), the 409 exchange, a wrong session
  id, a huge body, a download-dir outside the allowed folders;
- transmission-rpc (PyPI): add a .torrent file and a magnet, watch them complete, read
  files, peers and trackers, set limits, labels and seed limits, stop, start, verify, queue,
  remove with data;
- Debian's transmission-remote: list, info, stop, start.

Prints {"added": HASH} once the .torrent file is added (the test then starts its seeder),
and {"ok": true} at the end; any failed check raises (exit code 1).
"""
import base64
import os
import subprocess
import sys

import requests
import transmission_rpc

from compat_common import check, same_content, say, serve_file, wait

API, USER, PASS, TORRENT, DATA, MAGNET, MAGNET_DATA, OUTSIDE = sys.argv[1:9]
URL = f"http://{API}/transmission/rpc"


def remote(*args):
    """Debian's transmission-remote against the daemon (it posts to .../rpc/)."""
    out = subprocess.run(["transmission-remote", f"{API}/transmission/rpc/", "-n", f"{USER}:{PASS}", *args],
                         capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, f"transmission-remote {args}: {out.returncode} {out.stdout} {out.stderr}")
    return out.stdout


# --- raw HTTP: auth, session id, hostile bodies -------------------------------------------
body = {"method": "torrent-get", "arguments": {"fields": ["id"]}}
r = requests.post(URL, json=body, timeout=10)
check(r.status_code == 401, f"no credentials: {r.status_code}")
r = requests.post(URL, json=body, auth=(USER, "wrong"), timeout=10)
check(r.status_code == 401, f"wrong password: {r.status_code}")
r = requests.post(URL, json=body, auth=(USER, PASS), timeout=10)
check(r.status_code == 409 and "X-Transmission-Session-Id" in r.headers, f"first call: {r.status_code}")
sid = r.headers["X-Transmission-Session-Id"]
r = requests.post(URL, json=body, auth=(USER, PASS), headers={"X-Transmission-Session-Id": "nope"}, timeout=10)
check(r.status_code == 409 and r.headers.get("X-Transmission-Session-Id") == sid, f"wrong session id: {r.status_code}")
H = {"X-Transmission-Session-Id": sid}
r = requests.post(URL, json=body, auth=(USER, PASS), headers=H, timeout=10)
check(r.status_code == 200 and r.json()["result"] == "success", f"with the id: {r.text}")
r = requests.post(URL + "/", json={"method": "session-get", "tag": 7}, auth=(USER, PASS), headers=H, timeout=10)
check(r.json()["tag"] == 7 and r.json()["arguments"]["rpc-version"] == 17, "rpc/ and the tag")
meta = base64.b64encode(open(TORRENT, "rb").read()).decode()
r = requests.post(URL, json={"method": "torrent-add", "arguments": {"metainfo": meta, "download-dir": OUTSIDE}},
                  auth=(USER, PASS), headers=H, timeout=10)
check(r.status_code == 200 and r.json()["result"] != "success", f"download-dir outside: {r.text}")
try:
    r = requests.post(URL, data=b'{"method":"torrent-add","arguments":{"metainfo":"' + b"A" * (20 << 20) + b'"}}',
                      auth=(USER, PASS), headers=H, timeout=30)
    check(r.status_code == 413, f"huge body: {r.status_code}")
except requests.exceptions.ConnectionError:
    pass
r = requests.post(URL, data=b"{not json", auth=(USER, PASS), headers=H, timeout=10)
check(r.status_code == 400, f"bad JSON: {r.status_code}")
r = requests.post(URL, json={"method": "torrent-get", "arguments": {"fields": ["id"]}}, auth=(USER, PASS),
                  headers=H, timeout=10)
check(r.json()["arguments"]["torrents"] == [], "nothing added by hostile calls")
check(not os.listdir(OUTSIDE), "nothing written outside")

# --- transmission-rpc ---------------------------------------------------------------------
host, port = API.rsplit(":", 1)
c = transmission_rpc.Client(host=host, port=int(port), username=USER, password=PASS, timeout=10)
sess = c.get_session()
check(sess.version.startswith("4.0.6") and sess.rpc_version == 17, f"session {sess.version} {sess.rpc_version}")
t = c.add_torrent(open(TORRENT, "rb"), labels=["tv"])
h = t.hash_string
check(c.add_torrent(open(TORRENT, "rb")).hash_string == h, "duplicate answered with the same torrent")
check(len(c.get_torrents()) == 1, "a duplicate adds nothing")
say({"added": h, "port": sess.peer_port})
t = wait("the .torrent to complete", lambda: (lambda t: t if t.percent_done == 1 and t.status == "seeding" else None)(
    c.get_torrent(h)))
check(same_content(os.path.join(t.download_dir, t.name), DATA), "downloaded bytes equal the original")
check(t.labels == ["tv"], f"labels {t.labels}")
check([x.announce for x in t.trackers] == ["http://127.0.0.1:9/announce"], f"trackers {t.trackers}")
check(sorted(f.name for f in t.get_files()) == ["Show.S01/e01.mkv", "Show.S01/sub/e01.srt"], "files")
check(t.left_until_done == 0 and t.total_size > 0, "sizes")
m = c.add_torrent(MAGNET, paused=False)
mid = m.id
m = wait("the magnet to complete", lambda: (lambda t: t if t.percent_done == 1 and t.status == "seeding" else None)(
    c.get_torrent(mid)))
check(same_content(os.path.join(m.download_dir, m.name), MAGNET_DATA), "magnet's bytes equal the original")
files = m.get_files()
check(len(files) >= 1 and all(f.completed == f.size for f in files), f"files {files}")
check(isinstance(m.peers, list) and isinstance(m.trackers, list), "peers and trackers")
c.change_torrent(mid, download_limit=100, download_limited=True, upload_limit=50, upload_limited=True,
                 labels=["movies", "x"], seed_ratio_limit=3.0, seed_ratio_mode=1, seed_idle_limit=60, seed_idle_mode=1)
m = c.get_torrent(mid)
check(m.download_limit == 100 and m.download_limited and m.upload_limit == 50, "limits")
check(m.labels == ["movies", "x"], f"labels {m.labels}")
check(m.seed_ratio_limit == 3.0 and m.seed_ratio_mode.value == 1 and m.seed_idle_limit == 60, "seed limits")
c.stop_torrent(mid)
wait("stopped", lambda: c.get_torrent(mid).status == "stopped", timeout=10)
check(c.get_torrent(mid).is_finished, "a stopped complete torrent is finished")
c.start_torrent(mid)
wait("seeding again", lambda: c.get_torrent(mid).status == "seeding", timeout=10)
c.queue_top(mid)
c.verify_torrent(mid)
wait("verified and seeding", lambda: c.get_torrent(mid).status == "seeding", timeout=30)
check(c.free_space(sess.download_dir) > 0, "free-space")
check(c.port_test() is False, "port-test answers honestly")
recent = c.get_recently_active_torrents()
check(isinstance(recent, tuple) or isinstance(recent, list), "recently-active")

# --- transmission-remote (numeric ids) ----------------------------------------------------
out = remote("-l")
check(t.name in out and m.name in out and "100%" in out, f"-l:\n{out}")
out = remote("-t", str(t.id), "-i")
check(t.hash_string in out, f"-i:\n{out}")
remote("-t", str(t.id), "-S")
wait("stopped by transmission-remote", lambda: c.get_torrent(t.id).status == "stopped", timeout=10)
remote("-t", str(t.id), "-s")
wait("started by transmission-remote", lambda: c.get_torrent(t.id).status == "seeding", timeout=10)

paths = [os.path.join(x.download_dir, x.name) for x in (t, m)]
c.remove_torrent([h, mid], delete_data=True)
check(c.get_torrents() == [], "removed")
for p in paths:
    wait(f"{p} deleted", lambda: not os.path.exists(p), timeout=10)
# filename may be an http link to a .torrent file
added = c.add_torrent(serve_file(TORRENT), paused=True)
check(added.hash_string == h and c.get_torrent(h).status == "stopped", "added by URL, stopped")
c.remove_torrent(h)
say({"ok": True})
