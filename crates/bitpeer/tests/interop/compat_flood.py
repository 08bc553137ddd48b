"""Drives npm flood 4.11 (a real third-party web UI) pointed at bitpeer, through Flood's own
HTTP API, as its browser front end does.

Usage: compat_flood.py FLOOD_API TORRENT MAGNET MAGNET_DATA DOWNLOAD_DIR

Flood runs with --auth none and a --qburl or --trurl of bitpeer. Checks: connected, a
.torrent added (stopped) and a magnet added and downloaded to completion, its contents,
peers and trackers, tags, a global speed limit, stop, start, delete with data.
Prints {"ok": true}; any failed check raises.
"""
import base64
import os
import sys

import requests

from compat_common import check, same_content, say, wait

FLOOD, TORRENT, MAGNET, MAGNET_DATA, DL = sys.argv[1:6]
API = f"http://{FLOOD}/api"
s = requests.Session()


def verify():
    try:
        return s.get(f"{API}/auth/verify", timeout=5).ok
    except requests.exceptions.ConnectionError:
        return False


wait("flood to answer", verify, timeout=60)
wait("flood connected to bitpeer",
     lambda: s.get(f"{API}/client/connection-test", timeout=10).json().get("isConnected"), timeout=30)


def torrents():
    return s.get(f"{API}/torrents", timeout=10).json()["torrents"]


r = s.post(f"{API}/torrents/add-files", json={"files": [base64.b64encode(open(TORRENT, "rb").read()).decode()],
                                               "destination": DL, "start": False, "tags": ["file"]}, timeout=10)
check(r.ok, f"add-files {r.status_code} {r.text}")
r = s.post(f"{API}/torrents/add-urls", json={"urls": [MAGNET], "destination": DL, "start": True, "tags": ["mag"]},
           timeout=10)
check(r.ok, f"add-urls {r.status_code} {r.text}")
wait("two torrents", lambda: len(torrents()) == 2, timeout=20)
stopped = [t for t in torrents().values() if "file" in t["tags"]]
check(len(stopped) == 1 and "stopped" in stopped[0]["status"], f"the .torrent added stopped: {stopped}")
m = wait("the magnet complete", lambda: [t for t in torrents().values()
                                         if "mag" in t["tags"] and t["percentComplete"] == 100], timeout=120)[0]
h = m["hash"]
check(same_content(os.path.join(m["directory"], m["name"]), MAGNET_DATA), "the magnet's bytes")
contents = s.get(f"{API}/torrents/{h}/contents", timeout=10).json()
check([c["path"] for c in contents] == [os.path.basename(MAGNET_DATA)] and contents[0]["percentComplete"] == 100,
      f"contents {contents}")
check(isinstance(s.get(f"{API}/torrents/{h}/peers", timeout=10).json(), list), "peers")
check(isinstance(s.get(f"{API}/torrents/{h}/trackers", timeout=10).json(), list), "trackers")
check(s.patch(f"{API}/torrents/tags", json={"hashes": [h], "tags": ["mag", "done"]}, timeout=10).ok, "tags")
wait("tags set", lambda: sorted(torrents()[h]["tags"]) == ["done", "mag"], timeout=10)
check(s.patch(f"{API}/client/settings", json={"throttleGlobalDownSpeed": 2048000}, timeout=10).ok, "set limit")
got = s.get(f"{API}/client/settings", timeout=10).json()["throttleGlobalDownSpeed"]
check(abs(got - 2048000) <= 2048000 * 0.03, f"global limit {got}")
check(s.patch(f"{API}/client/settings", json={"throttleGlobalDownSpeed": 0}, timeout=10).ok, "unset limit")
check(s.post(f"{API}/torrents/stop", json={"hashes": [h]}, timeout=10).ok, "stop")
wait("stopped", lambda: "stopped" in torrents()[h]["status"], timeout=10)
check(s.post(f"{API}/torrents/start", json={"hashes": [h]}, timeout=10).ok, "start")
wait("seeding", lambda: "seeding" in torrents()[h]["status"], timeout=10)
path = os.path.join(m["directory"], m["name"])
check(s.post(f"{API}/torrents/delete", json={"hashes": list(torrents()), "deleteData": True}, timeout=10).ok, "delete")
wait("none left", lambda: torrents() == {}, timeout=10)
wait("data deleted", lambda: not os.path.exists(path), timeout=10)
say({"ok": True})
