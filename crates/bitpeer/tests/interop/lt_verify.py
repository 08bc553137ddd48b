#!/usr/bin/python3
"""Check a .torrent against data on disk with libtorrent.

Usage: /usr/bin/python3 lt_verify.py TORRENT SAVE_PATH [--timeout SECONDS]

Loads TORRENT in a libtorrent session with all networking that could leave the host turned
off (no DHT, LSD, UPnP, NAT-PMP; listening on 127.0.0.1 port 0), adds it with SAVE_PATH as
its save path, waits until libtorrent has finished checking the files, and prints one JSON
object:

  {"num_pieces": N, "have": M, "state": "...", "v1": "hex"|null, "v2": "hex"|null,
   ...and what libtorrent read from the torrent: "name", "piece_length", "total_size",
   "private", "comment", "trackers" (list of tiers), "web_seeds", "files" (list of
   {"path", "size", "pad"}, paths without the torrent name, as in `bitpeer info --json`)}

Exit codes: 0 when every piece checked valid (have == num_pieces), 1 when some did not,
2 on a usage error or when libtorrent refuses the torrent, 3 when libtorrent cannot be
imported, 4 on timeout.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lt_common import describe, import_libtorrent, info_hashes_json, print_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("torrent")
    ap.add_argument("save_path")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    lt = import_libtorrent()

    try:
        ti = lt.torrent_info(args.torrent)
    except Exception as e:  # libtorrent raises RuntimeError with its error message
        print(f"error: libtorrent cannot load {args.torrent}: {e}", file=sys.stderr)
        return 2

    settings = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.storage_notification,
    }
    ses = lt.session(settings)

    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = os.path.abspath(args.save_path)
    # Not auto-managed, and stopped by libtorrent itself as soon as the check is done: we
    # only want the full hash check, never a download or an announce. (A paused torrent in
    # libtorrent 2.0 does not check its files, so it has to start unpaused.)
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    atp.flags |= lt.torrent_flags.stop_when_ready
    h = ses.add_torrent(atp)
    # No announces and no web seed requests, even if the torrent names some.
    h.replace_trackers([])
    for url in list(h.url_seeds()):
        h.remove_url_seed(url)
    for url in list(h.http_seeds()):
        h.remove_http_seed(url)

    checking_states = {
        lt.torrent_status.states.checking_files,
        lt.torrent_status.states.checking_resume_data,
    }
    deadline = time.monotonic() + args.timeout
    errors = []
    checked = False
    while True:
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_checked_alert):
                checked = True
            elif isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                errors.append(a.message())
        st = h.status()
        if checked and st.state not in checking_states:
            break
        if time.monotonic() > deadline:
            print_json({"num_pieces": ti.num_pieces(), "have": st.num_pieces,
                        "state": str(st.state), **info_hashes_json(lt, ti),
                        "error": "timeout waiting for the check to finish"})
            return 4
        ses.wait_for_alert(100)

    st = h.status()
    out = {
        **describe(lt, ti),
        "num_pieces": ti.num_pieces(),
        "have": st.num_pieces,
        "state": str(st.state),
    }
    if errors:
        out["errors"] = errors
    print_json(out)
    return 0 if st.num_pieces == ti.num_pieces() and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
