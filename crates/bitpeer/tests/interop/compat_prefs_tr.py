"""Transmission's session-set and torrent-set-location without move, driven by
transmission-rpc.

Usage: compat_prefs_tr.py PHASE API USER PASS TORRENT DATA DL OUTSIDE

Phase "first": session-set with the keys that map onto the daemon's settings (speed limits,
seeding limits, queue sizes, peer limits, the download folder) and one it cannot apply live
(dht-enabled, ignored); session-get shows them; a download-dir outside the allowed folders
is refused. A torrent added in an empty folder is pointed with `move: false` at a folder
that holds its data: it is checked there and complete, nothing moved.
Phase "second" (the daemon restarted on the same state folder): the settings and the new
location are still there.

Prints {"ok": true} at the end; any failed check raises (exit code 1).
"""
import filecmp
import os
import shutil
import sys

import transmission_rpc

from compat_common import check, say, wait

PHASE, API, USER, PASS, TORRENT, DATA, DL, OUTSIDE = sys.argv[1:9]
host, port = API.rsplit(":", 1)
c = transmission_rpc.Client(host=host, port=int(port), username=USER, password=PASS, timeout=10)
name = os.path.basename(DATA)
new_default = os.path.join(DL, "tr-default")
there = os.path.join(DL, "b")

WANT = {"speed_limit_down": 250, "speed_limit_down_enabled": True, "speed_limit_up": 125,
        "speed_limit_up_enabled": True, "seed_ratio_limit": 1.5, "seed_ratio_limited": True,
        "idle_seeding_limit": 45, "idle_seeding_limit_enabled": True, "download_queue_size": 3,
        "download_queue_enabled": True, "seed_queue_size": 4, "seed_queue_enabled": True,
        "peer_limit_global": 123, "peer_limit_per_torrent": 21}


def check_session():
    s = c.get_session()
    for k, v in WANT.items():
        check(getattr(s, k) == v, f"session {k}: {getattr(s, k)!r}, wanted {v!r}")
    check(os.path.realpath(s.download_dir) == os.path.realpath(new_default), f"download-dir {s.download_dir}")
    return s


def torrent():
    ts = c.get_torrents(arguments=["id", "percentDone", "downloadDir", "status", "hashString"])
    check(len(ts) == 1, f"one torrent: {ts}")
    return ts[0]


if PHASE == "second":
    check_session()
    t = wait("the torrent checked complete at its new place",
             lambda: (lambda t: t if t.fields["percentDone"] == 1 else None)(torrent()), timeout=30)
    check(os.path.realpath(t.fields["downloadDir"]) == os.path.realpath(there), f"downloadDir {t.fields}")
    say({"ok": True})
    sys.exit(0)

dht_before = c.get_session().dht_enabled
c.set_session(download_dir=new_default, dht_enabled=not dht_before, **WANT)
s = check_session()
check(s.dht_enabled == dht_before, "dht-enabled (not changeable live) unchanged")
try:
    c.set_session(download_dir=OUTSIDE)
    raise AssertionError("a download-dir outside the allowed folders was accepted")
except transmission_rpc.TransmissionError:
    pass
check(os.path.realpath(c.get_session().download_dir) == os.path.realpath(new_default), "refused dir unchanged")

# torrent-set-location with move: false
empty = os.path.join(DL, "a")
with open(TORRENT, "rb") as f:
    c.add_torrent(f.read(), download_dir=empty, paused=False)
t = torrent()
check(t.fields["percentDone"] == 0, f"nothing there yet: {t.fields}")
os.makedirs(there, exist_ok=True)
shutil.copyfile(DATA, os.path.join(there, name))
c.move_torrent_data(t.id, there, move=False)
t = wait("the torrent checked complete at its new place",
         lambda: (lambda t: t if t.fields["percentDone"] == 1 else None)(torrent()), timeout=30)
check(os.path.realpath(t.fields["downloadDir"]) == os.path.realpath(there), f"downloadDir {t.fields}")
check(filecmp.cmp(os.path.join(there, name), DATA, shallow=False), "the data left as it was")
check(not os.path.exists(os.path.join(empty, name)), "nothing written in the old folder")
say({"ok": True})
