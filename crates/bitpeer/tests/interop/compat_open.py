"""A loopback daemon without credentials: qBittorrent's local-auth bypass (any login is
accepted, every call works without one) and Transmission without Basic (still the 409
session-id exchange). Usage: compat_open.py API. Prints {"ok": true}."""
import sys

import qbittorrentapi
import requests
import transmission_rpc

from compat_common import check, say

API = sys.argv[1]
BASE = f"http://{API}/api/v2"
check(requests.get(f"{BASE}/torrents/info", timeout=10).json() == [], "torrents/info without login")
r = requests.post(f"{BASE}/auth/login", data={"username": "anyone", "password": "anything"}, timeout=10)
check(r.text == "Ok." and "SID" in r.cookies, f"any login accepted: {r.text!r}")
host, port = API.rsplit(":", 1)
c = qbittorrentapi.Client(host=host, port=int(port), username="x", password="y")
check(c.app.version == "v5.1.4", "qbittorrent-api with any credentials")
r = requests.post(f"http://{API}/transmission/rpc", json={"method": "session-get"}, timeout=10)
check(r.status_code == 409, f"session id still exchanged: {r.status_code}")
t = transmission_rpc.Client(host=host, port=int(port))
check(t.get_session().rpc_version == 17, "transmission-rpc without credentials")
say({"ok": True})
