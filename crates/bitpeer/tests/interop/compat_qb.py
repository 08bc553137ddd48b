"""Drives bitpeer's qBittorrent WebUI API v2 as the real clients do.

Usage: compat_qb.py API USER PASS TORRENT DATA MAGNET MAGNET_DATA OUTSIDE_DIR

- the call sequence of Sonarr/Radarr (version probe without login, login, preferences,
  categories, add with a category, properties polled right after the add, list by category
  until complete, setShareLimits, stoppedUP once the ratio is reached, delete with files),
  made with raw HTTP as they make it;
- qbittorrent-api (PyPI) for the rest: add by magnet, files, peers, trackers, limits,
  category, tags, stop, start, delete;
- hostile calls: no login, a wrong password, malformed multipart, a save path outside the
  allowed folders, a huge body.

Prints {"added": HASH} once the .torrent file is added (the test then starts its seeder),
and {"ok": true} at the end; any failed check raises (exit code 1).
"""
import os
import sys

import qbittorrentapi
import requests

from compat_common import check, same_content, say, serve_file, wait

API, USER, PASS, TORRENT, DATA, MAGNET, MAGNET_DATA, OUTSIDE = sys.argv[1:9]
BASE = f"http://{API}/api/v2"


# --- hostile and unauthenticated calls first: nothing may change -------------------------
s = requests.Session()
r = s.get(f"{BASE}/app/webapiVersion", timeout=10)
check(r.status_code in (200, 403), f"version probe without login: {r.status_code}")
if r.status_code == 200:
    check(r.text.startswith("2."), f"webapiVersion {r.text!r}")
check(s.get(f"{BASE}/torrents/info", timeout=10).status_code == 403, "torrents/info without login")
check(s.post(f"{BASE}/torrents/add", files={"torrents": open(TORRENT, "rb")}, timeout=10).status_code == 403,
      "add without login")
r = s.post(f"{BASE}/auth/login", data={"username": USER, "password": "wrong"}, timeout=10)
check(r.text == "Fails." and "SID" not in s.cookies, f"wrong password: {r.status_code} {r.text!r}")
check(s.get(f"{BASE}/torrents/info", timeout=10).status_code == 403, "still no access after a failed login")
# Basic and a wrong Basic
check(requests.get(f"{BASE}/app/version", auth=(USER, PASS), timeout=10).text == "v5.1.4", "Basic auth")
check(requests.get(f"{BASE}/app/version", auth=(USER, "x"), timeout=10).status_code == 403, "wrong Basic")

# --- the *arr sequence -----------------------------------------------------------------
r = s.post(f"{BASE}/auth/login", data={"username": USER, "password": PASS}, timeout=10)
check(r.status_code == 200 and r.text == "Ok." and "SID" in s.cookies, f"login: {r.status_code} {r.text!r}")
check(s.get(f"{BASE}/app/webapiVersion", timeout=10).text == "2.11.4", "webapiVersion")
check(s.get(f"{BASE}/app/version", timeout=10).text == "v5.1.4", "version")
prefs = s.get(f"{BASE}/app/preferences", timeout=10).json()
for k in ("save_path", "max_ratio_enabled", "max_ratio", "max_seeding_time_enabled", "max_seeding_time",
          "max_inactive_seeding_time_enabled", "max_inactive_seeding_time", "max_ratio_act",
          "queueing_enabled", "dht"):
    check(k in prefs, f"preferences lacks {k}")
save_path = prefs["save_path"]
check(s.post(f"{BASE}/torrents/createCategory", data={"category": "tv", "savePath": ""}, timeout=10).ok,
      "createCategory")
cats = s.get(f"{BASE}/torrents/categories", timeout=10).json()
check(cats["tv"]["name"] == "tv", f"categories {cats}")

# hostile, logged in: malformed multipart, save path outside, huge body
r = s.post(f"{BASE}/torrents/add", data=b"--xx\r\nnot a part",
           headers={"Content-Type": "multipart/form-data; boundary=xx"}, timeout=10)
check(r.status_code == 400, f"malformed multipart: {r.status_code}")
r = s.post(f"{BASE}/torrents/add", files={"torrents": ("a.torrent", open(TORRENT, "rb"))},
           data={"savepath": OUTSIDE}, timeout=10)
check(r.status_code == 400, f"savepath outside: {r.status_code} {r.text!r}")
try:
    # Its own connection: the server may close it without reading the rest.
    r = requests.post(f"{BASE}/torrents/add", data=b"urls=" + b"x" * (20 << 20), cookies=s.cookies,
                      headers={"Content-Type": "application/x-www-form-urlencoded", "Connection": "close"},
                      timeout=30)
    check(r.status_code == 413, f"huge body: {r.status_code}")
except requests.exceptions.ConnectionError:
    pass  # refused before the whole body was sent
check(s.get(f"{BASE}/torrents/info", timeout=10).json() == [], "hostile calls added nothing")
check(not os.listdir(OUTSIDE), "nothing written outside")

r = s.post(f"{BASE}/torrents/add", files={"torrents": ("x.torrent", open(TORRENT, "rb"), "application/x-bittorrent")},
           data={"category": "tv", "stopped": "False", "ratioLimit": "-2", "seedingTimeLimit": "-2",
                 "sequentialDownload": "false", "firstLastPiecePrio": "false", "contentLayout": "Original",
                 "tags": "sonarr,x"}, timeout=10)
check(r.status_code == 200 and r.text != "Fails.", f"add: {r.status_code} {r.text!r}")
listed = s.get(f"{BASE}/torrents/info", params={"category": "tv"}, timeout=10).json()
check(len(listed) == 1, f"one torrent in tv: {listed}")
h = listed[0]["hash"]
# Sonarr polls properties right after adding: the first poll must find it.
r = s.get(f"{BASE}/torrents/properties", params={"hash": h}, timeout=10)
check(r.status_code == 200 and "save_path" in r.json() and "seeding_time" in r.json(), f"properties: {r.text}")
check(s.get(f"{BASE}/torrents/properties", params={"hash": "0" * 40}, timeout=10).status_code == 404,
      "properties of an unknown hash")
say({"added": h, "port": prefs["listen_port"]})


def tv():
    return s.get(f"{BASE}/torrents/info", params={"category": "tv"}, timeout=10).json()[0]


t = wait("the .torrent to complete", lambda: (lambda t: t if t["progress"] == 1 and t["state"] in (
    "uploading", "stalledUP", "queuedUP", "forcedUP") else None)(tv()))
for k in ("hash", "name", "size", "progress", "eta", "state", "category", "save_path", "content_path", "ratio",
          "ratio_limit", "seeding_time", "seeding_time_limit", "inactive_seeding_time_limit", "last_activity",
          "dlspeed", "upspeed", "added_on", "completion_on", "tags", "total_size", "num_seeds", "num_leechs",
          "downloaded", "uploaded", "completed", "seq_dl", "super_seeding", "num_complete", "num_incomplete"):
    check(k in t, f"torrents/info lacks {k}")
check(t["content_path"] != t["save_path"], "content_path is the content, not the save path")
check(os.path.realpath(os.path.dirname(t["content_path"])) == os.path.realpath(save_path), "content in save_path")
check(same_content(t["content_path"], DATA), "downloaded bytes equal the original")
check(t["tags"] == "sonarr,x" or t["tags"] == "sonarr, x", f"tags {t['tags']!r}")
trackers = s.get(f"{BASE}/torrents/trackers", params={"hash": h}, timeout=10).json()
check([x["url"] for x in trackers if x["url"].startswith("http")] == ["http://127.0.0.1:9/announce"]
      and all(isinstance(x["status"], int) for x in trackers), f"trackers {trackers}")
files = s.get(f"{BASE}/torrents/files", params={"hash": h}, timeout=10).json()
check(sorted(f["name"] for f in files) == ["Show.S01/e01.mkv", "Show.S01/sub/e01.srt"], f"files {files}")
check(t["eta"] == 8640000 or isinstance(t["eta"], int), "eta")
r = s.post(f"{BASE}/torrents/topPrio", data={"hashes": h}, timeout=10)
check(r.status_code in (200, 409), f"topPrio {r.status_code}")
check(s.post(f"{BASE}/torrents/setShareLimits",
             data={"hashes": h, "ratioLimit": "0", "seedingTimeLimit": "-1",
                   "inactiveSeedingTimeLimit": "-2"}, timeout=10).ok, "setShareLimits")
t = wait("stoppedUP once the ratio limit is reached", lambda: (lambda t: t if t["state"] == "stoppedUP" else None)(tv()),
         timeout=20)
check(t["ratio_limit"] == 0, f"ratio_limit {t['ratio_limit']}")
content = t["content_path"]
# A change cannot be made with a GET (what a link or an image on another site sends): 405.
r = s.get(f"{BASE}/torrents/delete", params={"hashes": h, "deleteFiles": "true"}, timeout=10)
check(r.status_code == 405 and r.headers.get("Allow") == "POST", f"GET torrents/delete: {r.status_code}")
check(len(s.get(f"{BASE}/torrents/info", timeout=10).json()) == 1 and os.path.exists(content),
      "a GET deleted nothing")
check(s.post(f"{BASE}/torrents/delete", data={"hashes": h, "deleteFiles": "true"}, timeout=10).ok, "delete")
check(s.get(f"{BASE}/torrents/info", timeout=10).json() == [], "deleted")
wait("the content deleted", lambda: not os.path.exists(content), timeout=10)
# urls may be http links to .torrent files (Prowlarr, scripts)
r = s.post(f"{BASE}/torrents/add", data={"urls": serve_file(TORRENT), "stopped": "TRUE"}, timeout=20)
check(r.text == "Ok.", f"add by URL: {r.text!r}")
check([(t["hash"], t["state"]) for t in s.get(f"{BASE}/torrents/info", timeout=10).json()] == [(h, "stoppedDL")],
      "added by URL, stopped")
check(s.post(f"{BASE}/torrents/delete", data={"hashes": "all", "deleteFiles": "false"}, timeout=10).ok, "delete")

# --- qbittorrent-api: magnet, files, peers, trackers, limits, category, stop, start -----
host, port = API.rsplit(":", 1)
c = qbittorrentapi.Client(host=host, port=int(port), username=USER, password=PASS,
                          REQUESTS_ARGS={"timeout": 10})
c.auth_log_in()
check(c.app.version == "v5.1.4" and str(c.app.web_api_version) == "2.11.4", "client versions")
check(c.torrents_add(urls=MAGNET, tags=["m"], is_paused=False) == "Ok.", "add magnet")
m = wait("the magnet's torrent", lambda: c.torrents_info(tag="m"))[0]
mh = m.hash
check(c.torrents_add(urls=MAGNET) == "Fails.", "a duplicate add fails")
m = wait("the magnet to complete", lambda: (lambda t: t if t.progress == 1 else None)(c.torrents_info(torrent_hashes=mh)[0]))
check(same_content(m.content_path, MAGNET_DATA), "magnet's bytes equal the original")
files = c.torrents_files(torrent_hash=mh)
check([f.name for f in files] == ["Movie.2026.mkv"], f"files {files}")
check(all(f.progress == 1 for f in files), "files complete")
check(all("url" in x for x in c.torrents_trackers(torrent_hash=mh)), "trackers")
peers = c.sync_torrent_peers(torrent_hash=mh)
check("peers" in peers, f"torrentPeers {peers}")
check(set(c.torrents_piece_states(torrent_hash=mh)) == {2}, "every piece have")
md = c.sync_maindata()
md2 = c.sync_maindata(rid=md.rid)
check(md2.rid > md.rid and mh in md.torrents, "maindata rid increments")
c.torrents_set_download_limit(limit=100000, torrent_hashes=mh)
c.torrents_set_upload_limit(limit=50000, torrent_hashes=mh)
m = c.torrents_info(torrent_hashes=mh)[0]
check(m.dl_limit == 100000 and m.up_limit == 50000, f"limits {m.dl_limit} {m.up_limit}")
c.torrents_create_category(name="movies")
c.torrents_set_category(category="movies", torrent_hashes=mh)
check(c.torrents_info(category="movies")[0].hash == mh, "category set")
try:
    c.torrents_set_category(category="nope", torrent_hashes=mh)
    raise AssertionError("an unknown category was accepted")
except qbittorrentapi.Conflict409Error:
    pass
c.torrents_add_tags(tags="t1,t2", torrent_hashes=mh)
check(set(c.torrents_info(torrent_hashes=mh)[0].tags.split(",")) >= {"t1", "t2"}, "tags added")
check({"t1", "t2", "m"} <= set(c.torrents_tags()), "tags listed")
c.torrents_remove_tags(tags="t1", torrent_hashes=mh)
check("t1" not in c.torrents_info(torrent_hashes=mh)[0].tags, "tag removed")
# availability: the swarm's distributed copies while it runs, -1 once stopped
live = c.torrents_info(torrent_hashes=mh)[0]
check(isinstance(live.availability, float) and live.availability >= 0, f"availability {live.availability}")
check(all(f.availability >= 0 for f in c.torrents_files(torrent_hash=mh)), "file availability")
c.torrents_stop(torrent_hashes=mh)
wait("stoppedUP", lambda: c.torrents_info(torrent_hashes=mh)[0].state == "stoppedUP", timeout=10)
check(c.torrents_info(torrent_hashes=mh)[0].availability == -1, "no availability when stopped")
check([t.hash for t in c.torrents_info(status_filter="stopped")] == [mh], "filter stopped")
c.torrents_start(torrent_hashes=mh)
wait("running again", lambda: c.torrents_info(torrent_hashes=mh)[0].state != "stoppedUP", timeout=10)
c.torrents_pause(torrent_hashes="all")
wait("paused via pause", lambda: c.torrents_info(torrent_hashes=mh)[0].state == "stoppedUP", timeout=10)
c.torrents_resume(torrent_hashes="all")
info = c.torrents_info(sort="name", reverse=True, limit=1, offset=0)
check(len(info) == 1, "limit")
tr = c.transfer_info()
check("dl_info_speed" in tr and "connection_status" in tr, f"transfer/info {tr}")
c.app_set_preferences(prefs={"dl_limit": 123000})
check(c.app_preferences()["dl_limit"] == 123000, "setPreferences")
c.app_set_preferences(prefs={"dl_limit": 0})
mpath = c.torrents_info(torrent_hashes=mh)[0].content_path
c.torrents_delete(delete_files=True, torrent_hashes=mh)
check(c.torrents_info() == [], "deleted")
wait("magnet content deleted", lambda: not os.path.exists(mpath), timeout=10)
c.auth_log_out()
say({"ok": True})
