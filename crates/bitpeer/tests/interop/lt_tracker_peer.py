"""A libtorrent peer on 127.0.0.1 that finds its peers only through trackers.

Usage: lt_tracker_peer.py TORRENT SAVE_PATH --tracker URL [--tracker URL]... [--seed]
                          [--deadline SECONDS]

Listens on 127.0.0.1 (a free port) and prints {"port": N} first. The torrent's own trackers
are replaced by the --tracker URLs (http:// or udp://); no peers are given, and DHT, LSD,
UPnP, NAT-PMP and PEX-by-DHT are off, so a tracker is the only way to meet anyone. Then:
  - with --seed: checks the data and serves it until killed or the deadline passes;
  - without: downloads until every piece is valid, prints {"done": true, ...} and exits 0,
    or prints {"done": false, ..., "trackers": [...]} and exits 1 at the deadline.
Each line is one JSON object; trackers' messages and errors are in "trackers".
"""

import argparse
import sys
import time

from lt_common import import_libtorrent, loopback_settings, print_json, stop_on_signals

lt = import_libtorrent()


def tracker_report(h):
    # Diagnostics only: never let a change in the bindings' shapes hide the result line.
    try:
        return _tracker_report(h)
    except Exception as e:  # noqa: BLE001
        return [{"report_error": repr(e)}]


def _tracker_report(h):
    out = []
    for t in h.trackers():
        entry = {"url": t["url"]}
        for ep in t.get("endpoints", []):
            for ih in ep.get("info_hashes", []):
                if ih.get("message"):
                    entry["message"] = ih["message"]
                err = ih.get("last_error")
                if isinstance(err, dict) and err.get("value"):
                    entry["error"] = f"{err.get('category')}:{err.get('value')}"
                entry["fails"] = ih.get("fails", 0)
        out.append(entry)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("save_path")
    ap.add_argument("--tracker", action="append", default=[], required=True)
    ap.add_argument("--deadline", type=float, default=120)
    ap.add_argument("--seed", action="store_true")
    a = ap.parse_args()

    stop = stop_on_signals()

    ses = lt.session(loopback_settings(announce_to_all_trackers=True, announce_to_all_tiers=True))
    ti = lt.torrent_info(a.torrent)
    params = lt.add_torrent_params()
    params.ti = ti
    params.save_path = a.save_path
    params.trackers = a.tracker
    h = ses.add_torrent(params)
    h.replace_trackers([lt.announce_entry(u) for u in a.tracker])
    print_json({"port": ses.listen_port()})

    deadline = time.monotonic() + a.deadline
    while time.monotonic() < deadline and not stop:
        st = h.status()
        if not a.seed and st.is_seeding:
            print_json({"done": True, "have": st.num_pieces, "num_pieces": ti.num_pieces()})
            return 0
        time.sleep(0.1)
    if a.seed:
        return 0
    st = h.status()
    print_json({"done": False, "have": st.num_pieces, "num_pieces": ti.num_pieces(),
                "state": str(st.state), "peers": st.num_peers,
                "trackers": tracker_report(h)})
    return 1


if __name__ == "__main__":
    sys.exit(main())
