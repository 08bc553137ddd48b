"""The qBittorrent API's settings, sync and auth, driven by qbittorrent-api and raw HTTP.

Usage: compat_prefs_qb.py PHASE API USER PASS KEY TORRENT DATA DL OUTSIDE SET_TORRENT SET_DATA

Phase "first" (a fresh daemon):
- the Bearer API key and HTTP Basic on any call, wrong ones refused (403);
- app/setPreferences with the keys that map onto the daemon's settings (and unknown keys,
  ignored), app/preferences shows them, a save_path outside the allowed folders is refused;
- live: queueing with max_active_downloads 1 holds a second magnet queued, 2 lets it run;
- sync/maindata with rid: a full update first, then only what changed (a new torrent whole,
  a changed category field alone, categories added and removed, server_state fields,
  torrents_removed), and a full update again for a rid that is not the last one;
- contentLayout=NoSubfolder puts a multi-file torrent's files in the save folder without
  their top folder, and a delete with files removes just them;
- contentLayout=Subfolder puts a single-file torrent in a folder of its name (the data
  placed there beforehand is found complete by the check); firstLastPiecePrio is kept and
  toggled;
- a seeding limit set through setPreferences with the action "remove" removes that torrent;
- createTags on no torrent;
- five failed logins ban the address: the sixth, right or wrong, gets 403 and qBittorrent's
  message; Basic and the API key still work.
Phase "second" (the same state folder, daemon restarted): the preferences and the created
tag are still there, and the ban is gone (it lives in memory, as qBittorrent's).

Prints {"ok": true} at the end; any failed check raises (exit code 1).
"""
import os
import shutil
import sys

import qbittorrentapi
import requests

from compat_common import check, say, wait

PHASE, API, USER, PASS, KEY, TORRENT, DATA, DL, OUTSIDE, SET_TORRENT, SET_DATA = sys.argv[1:12]
BASE = f"http://{API}/api/v2"
host, port = API.rsplit(":", 1)
BANNED = "Your IP address has been banned after too many failed authentication attempts."


def client():
    c = qbittorrentapi.Client(host=host, port=int(port), username=USER, password=PASS,
                              REQUESTS_ARGS={"timeout": 10})
    c.auth_log_in()
    return c


PREFS = {"dl_limit": 300000, "up_limit": 200000, "max_connec": 150, "max_connec_per_torrent": 40,
         "queueing_enabled": True, "max_active_downloads": 1, "max_active_uploads": 4,
         "max_active_torrents": 6, "max_ratio_enabled": True, "max_ratio": 3.5,
         "max_seeding_time_enabled": True, "max_seeding_time": 90, "max_ratio_act": 0,
         "save_path": os.path.join(DL, "new-default"), "no_such_key": 1, "web_ui_clickjacking": False}


def check_prefs(p, want):
    for k, v in want.items():
        if k in ("no_such_key", "web_ui_clickjacking"):
            continue
        got = p[k]
        if k == "save_path":
            got = os.path.realpath(got)
            v = os.path.realpath(v)
        check(got == v, f"preference {k}: {got!r}, wanted {v!r}")


if PHASE == "second":
    c = client()  # the ban did not survive the restart
    check_prefs(c.app_preferences(), PREFS | {"max_active_downloads": 2, "max_ratio_act": 1,
                                              "max_ratio": 0, "max_seeding_time_enabled": False,
                                              "max_seeding_time": -1})
    check("keepme" in c.torrents_tags(), f"created tag kept: {c.torrents_tags()}")
    check(c.transfer_info()["dl_rate_limit"] == 300000, "the rate limit applied at start")
    say({"ok": True})
    sys.exit(0)

# --- API key and Basic on any call --------------------------------------------------------
r = requests.get(f"{BASE}/app/version", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
check(r.status_code == 200 and r.text == "v5.1.4", f"Bearer: {r.status_code} {r.text!r}")
r = requests.get(f"{BASE}/torrents/info", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
check(r.status_code == 200 and r.json() == [], f"Bearer torrents/info: {r.status_code}")
r = requests.get(f"{BASE}/torrents/info", headers={"Authorization": f"Bearer {KEY}x"}, timeout=10)
check(r.status_code == 403, f"a wrong key: {r.status_code}")
r = requests.get(f"{BASE}/torrents/info", headers={"Authorization": "Bearer "}, timeout=10)
check(r.status_code == 403, f"an empty key: {r.status_code}")
check(requests.get(f"{BASE}/torrents/info", auth=(USER, PASS), timeout=10).json() == [], "Basic")
check(requests.get(f"{BASE}/torrents/info", auth=(USER, PASS + "x"), timeout=10).status_code == 403,
      "a wrong Basic password")

# --- preferences ----------------------------------------------------------------------------
c = client()
before = c.app_preferences()
c.app_set_preferences(prefs=PREFS)
check_prefs(c.app_preferences(), PREFS)
check(c.app_default_save_path() == PREFS["save_path"], "defaultSavePath follows save_path")
check(c.transfer_info()["dl_rate_limit"] == 300000, "transfer/info shows the new limit")
check(c.app_preferences()["dht"] == before["dht"], "dht (not changeable live) unchanged")
try:
    c.app_set_preferences(prefs={"save_path": OUTSIDE})
    raise AssertionError("a save_path outside the allowed folders was accepted")
except qbittorrentapi.exceptions.HTTP400Error:
    pass
check(c.app_preferences()["save_path"] == PREFS["save_path"], "refused save_path left unchanged")

# --- sync/maindata with rid ------------------------------------------------------------------
full = c.sync_maindata()
check(full.get("full_update") is True and full["torrents"] == {}, f"first maindata is full: {full}")
check("server_state" in full and full["server_state"]["dl_rate_limit"] == 300000, "full server_state")
rid = full["rid"]

# queueing applies live: with one download slot a second magnet waits
m1 = "magnet:?xt=urn:btih:" + "1" * 40 + "&dn=one"
m2 = "magnet:?xt=urn:btih:" + "2" * 40 + "&dn=two"
check(c.torrents_add(urls=m1) == "Ok.", "add magnet 1")
check(c.torrents_add(urls=m2) == "Ok.", "add magnet 2")
states = lambda: {t.hash: t.state for t in c.torrents_info()}
wait("one running, one queued", lambda: states() == {"1" * 40: "metaDL", "2" * 40: "queuedDL"}, timeout=10)
part = c.sync_maindata(rid=rid)
check("full_update" not in part and part["rid"] > rid, f"a partial update: {part}")
check(set(part["torrents"]) == {"1" * 40, "2" * 40} and "name" in part["torrents"]["1" * 40],
      f"new torrents come whole: {part['torrents']}")
rid = part["rid"]
c.app_set_preferences(prefs={"max_active_downloads": 2})
wait("both running", lambda: set(states().values()) == {"metaDL"}, timeout=10)
c.torrents_create_category(name="cat1")
c.torrents_set_category(category="cat1", torrent_hashes="1" * 40)
part = c.sync_maindata(rid=rid)
t1 = part["torrents"]["1" * 40]
check(t1["category"] == "cat1" and "name" not in t1 and "hash" not in t1,
      f"a changed torrent comes with its changed fields only: {t1}")
check(part["categories"] == {"cat1": part["categories"]["cat1"]} and part["categories"]["cat1"]["name"] == "cat1",
      f"a new category: {part.get('categories')}")
check("tags" not in part and "torrents_removed" not in part, f"nothing else: {part}")
rid = part["rid"]
c.transfer_set_download_limit(limit=310000)
c.torrents_remove_categories(categories="cat1")
c.torrents_delete(delete_files=False, torrent_hashes="2" * 40)
part = c.sync_maindata(rid=rid)
check(part["torrents_removed"] == ["2" * 40], f"torrents_removed: {part}")
check(part["categories_removed"] == ["cat1"], f"categories_removed: {part}")
check(part["server_state"]["dl_rate_limit"] == 310000, f"server_state diff: {part.get('server_state')}")
check("dl_info_data" not in part["server_state"], f"unchanged server fields left out: {part['server_state']}")
stale = c.sync_maindata(rid=1)
check(stale.get("full_update") is True and set(stale["torrents"]) == {"1" * 40}, "an old rid gets a full update")
c.transfer_set_download_limit(limit=300000)
c.torrents_delete(delete_files=False, torrent_hashes="all")

# --- contentLayout=NoSubfolder for a multi-file torrent ---------------------------------------
flat = os.path.join(PREFS["save_path"], "flat")
shutil.copytree(SET_DATA, flat)
with open(SET_TORRENT, "rb") as f:
    check(c.torrents_add(torrent_files=f, save_path=flat, content_layout="NoSubfolder", tags="flat") == "Ok.",
          "add with NoSubfolder")
t = wait("the torrent found complete without its top folder",
         lambda: (lambda l: l[0] if l and l[0].progress == 1 else None)(c.torrents_info(tag="flat")), timeout=30)
check(t.name == os.path.basename(SET_DATA), f"name {t.name}")
check(os.path.realpath(t.content_path) == os.path.realpath(flat), f"content_path {t.content_path}")
names = sorted(f.name for f in c.torrents_files(torrent_hash=t.hash))
check(names == ["e01.mkv", "sub/e01.srt"], f"files {names}")
check(not os.path.exists(os.path.join(flat, os.path.basename(SET_DATA))), "no top folder made")
os.makedirs(os.path.join(flat, "keep"))
c.torrents_delete(delete_files=True, torrent_hashes=t.hash)
wait("its files deleted", lambda: not os.path.exists(os.path.join(flat, "e01.mkv")), timeout=10)
check(sorted(os.listdir(flat)) == ["keep"], f"only the torrent's files went: {os.listdir(flat)}")

# --- contentLayout=Subfolder for a single-file torrent ---------------------------------------
name = os.path.basename(DATA)
stem = os.path.splitext(name)[0]
folder = os.path.join(PREFS["save_path"], stem)
os.makedirs(folder, exist_ok=True)
with open(DATA, "rb") as src, open(os.path.join(folder, name), "wb") as dst:
    dst.write(src.read())
with open(TORRENT, "rb") as f:
    check(c.torrents_add(torrent_files=f, content_layout="Subfolder", tags="sub",
                         is_first_last_piece_priority=True) == "Ok.", "add with Subfolder")
t = wait("the torrent found complete in its subfolder",
         lambda: (lambda l: l[0] if l and l[0].progress == 1 else None)(c.torrents_info(tag="sub")), timeout=30)
check(os.path.realpath(t.save_path) == os.path.realpath(folder), f"save_path {t.save_path}")
check(os.path.realpath(t.content_path) == os.path.realpath(os.path.join(folder, name)), f"content_path {t.content_path}")
check(not os.path.exists(os.path.join(PREFS["save_path"], name)), "nothing beside the subfolder")
check(t.f_l_piece_prio is True, "firstLastPiecePrio kept")
c.torrents_toggle_first_last_piece_priority(torrent_hashes=t.hash)
check(c.torrents_info(tag="sub")[0].f_l_piece_prio is False, "firstLastPiecePrio toggled off")

# --- a seeding limit with the action "remove", set live --------------------------------------
c.app_set_preferences(prefs={"max_ratio_enabled": True, "max_ratio": 0, "max_ratio_act": 1,
                             "max_seeding_time_enabled": False})
wait("the torrent removed at its ratio limit", lambda: c.torrents_info() == [], timeout=15)
check(os.path.exists(os.path.join(folder, name)), "removed without its data")

# --- tags on no torrent ----------------------------------------------------------------------
c.torrents_create_tags(tags="keepme,other")
c.torrents_delete_tags(tags="other")
check(set(c.torrents_tags()) == {"keepme", "sub"} or set(c.torrents_tags()) == {"keepme"},
      f"tags {c.torrents_tags()}")

# --- the ban after five failed logins --------------------------------------------------------
for i in range(5):
    r = requests.post(f"{BASE}/auth/login", data={"username": USER, "password": f"wrong{i}"}, timeout=10)
    check(r.status_code == 200 and r.text == "Fails.", f"failed login {i}: {r.status_code} {r.text!r}")
r = requests.post(f"{BASE}/auth/login", data={"username": USER, "password": PASS}, timeout=10)
check(r.status_code == 403 and r.text == BANNED and "SID" not in r.cookies,
      f"banned: {r.status_code} {r.text!r}")
try:
    client()
    raise AssertionError("qbittorrent-api logged in from a banned address")
except qbittorrentapi.APIError:
    pass
# The ban holds for every way in, not only the login form (no guessing through Basic).
r = requests.get(f"{BASE}/app/version", auth=(USER, PASS), timeout=10)
check(r.status_code == 403, f"Basic from a banned address: {r.status_code} {r.text!r}")
r = requests.get(f"{BASE}/app/version", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
check(r.status_code == 403, f"the API key from a banned address: {r.status_code}")
r = requests.post(f"{BASE.replace('/api/v2', '/transmission/rpc')}", auth=(USER, PASS), timeout=10)
check(r.status_code == 403, f"the Transmission RPC from a banned address: {r.status_code}")
r = requests.get(f"{BASE.replace('/api/v2', '/api/v1')}/torrents", auth=(USER, PASS), timeout=10)
check(r.status_code == 401, f"/api/v1 from a banned address: {r.status_code}")
# A session that logged in before the ban keeps working (qbittorrent-api's own session).
check(c.app_version() == "v5.1.4", "a session from before the ban")
say({"ok": True})
