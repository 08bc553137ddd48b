"""A libtorrent peer on 127.0.0.1 for transfer interop tests.

Usage: lt_peer.py TORRENT SAVE_PATH [--peer HOST:PORT]... [--deadline SECONDS] [--seed]

Listens on 127.0.0.1 (a free port), prints {"port": N} as its first line, connects to the
given peers, and then:
  - with --seed: checks the data and serves it until killed or the deadline passes;
  - without: downloads until every piece is valid, prints {"done": true, ...} and exits 0,
    or exits 1 at the deadline.
No DHT, LSD, UPnP or NAT-PMP; trackers are removed, so nothing leaves 127.0.0.1.
"""

import argparse
import sys
import time

from lt_common import import_libtorrent, print_json

lt = import_libtorrent()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("save_path")
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--deadline", type=float, default=120)
    ap.add_argument("--seed", action="store_true")
    a = ap.parse_args()

    ses = lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
    })
    ti = lt.torrent_info(a.torrent)
    params = lt.add_torrent_params()
    params.ti = ti
    params.save_path = a.save_path
    params.trackers = []
    h = ses.add_torrent(params)
    h.replace_trackers([])
    print_json({"port": ses.listen_port()})

    deadline = time.monotonic() + a.deadline
    connected = False
    while time.monotonic() < deadline:
        st = h.status()
        if not connected and st.state not in (lt.torrent_status.checking_files,
                                              lt.torrent_status.checking_resume_data):
            for p in a.peer:
                host, port = p.rsplit(":", 1)
                h.connect_peer((host, int(port)))
            connected = True
        if not a.seed and st.is_seeding:
            print_json({"done": True, "have": st.num_pieces, "num_pieces": ti.num_pieces()})
            return 0
        time.sleep(0.1)
    if a.seed:
        return 0
    st = h.status()
    print_json({"done": False, "have": st.num_pieces, "num_pieces": ti.num_pieces(),
                "state": str(st.state), "peers": st.num_peers})
    return 1


if __name__ == "__main__":
    sys.exit(main())
