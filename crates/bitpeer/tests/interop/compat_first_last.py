"""firstLastPiecePrio changes the order pieces come in: with the download slowed by a
global limit, the first pieces the daemon has (as soon as it has two) include the file's
first and last ones.

Usage: compat_first_last.py API USER PASS TORRENT

Prints {"added": HASH, "port": LISTEN_PORT} once the torrent is added (the test then
starts a libtorrent seeder that connects to the daemon), and {"ok": true} at the end.
"""
import sys

import qbittorrentapi

from compat_common import check, say, wait

API, USER, PASS, TORRENT = sys.argv[1:5]
host, port = API.rsplit(":", 1)
c = qbittorrentapi.Client(host=host, port=int(port), username=USER, password=PASS,
                          REQUESTS_ARGS={"timeout": 10})
c.auth_log_in()
c.app_set_preferences(prefs={"dl_limit": 64 * 1024})
with open(TORRENT, "rb") as f:
    check(c.torrents_add(torrent_files=f, is_first_last_piece_priority=True) == "Ok.", "add")
t = wait("the torrent", lambda: c.torrents_info())[0]
check(t.f_l_piece_prio is True, "f_l_piece_prio")
say({"added": t.hash, "port": c.app_preferences()["listen_port"]})


def first_pieces():
    # The first two pieces done: both prioritized pieces are fetched at once, and the
    # last (shorter) one may be done a moment before the first.
    states = c.torrents_piece_states(torrent_hash=t.hash)
    have = [i for i, s in enumerate(states) if s == 2]
    return (have, len(states)) if len(have) >= 2 else None


have, n = wait("the first pieces", first_pieces, timeout=60)
check(len(have) < n, f"the download was not slowed: {len(have)} of {n} at once")
check(0 in have and n - 1 in have, f"the first and last pieces come first: {have} of {n}")
c.app_set_preferences(prefs={"dl_limit": 0})
wait("the download to complete", lambda: c.torrents_info()[0].progress == 1, timeout=60)
say({"ok": True})
