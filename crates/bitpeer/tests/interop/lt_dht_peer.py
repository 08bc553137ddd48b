"""A libtorrent peer on 127.0.0.1 that finds others through the DHT only.

Usage: lt_dht_peer.py TORRENT|MAGNET SAVE_PATH --dht-bootstrap HOST:PORT [--seed]
                      [--deadline SECONDS] [--listen IFACE:PORT]

Listens on 127.0.0.1 (a free port, TCP for peers and UDP for the DHT) and prints
{"port": N} first (--listen [::1]:0: on IPv6 loopback, the DHT included). The DHT starts from the one bootstrap node given, with the rules that
keep a DHT off loopback and private addresses turned off; no trackers, LSD, UPnP or NAT-PMP.
The torrent (a .torrent, or a magnet link whose metadata then comes from peers) is
announced to the DHT every few seconds. Then:
  - with --seed: serves until killed or the deadline passes;
  - without: downloads until every piece is valid, prints {"done": true, ...} and exits 0,
    or prints {"done": false, ...} and exits 1 at the deadline.
"""

import argparse
import sys
import time

from lt_common import import_libtorrent, loopback_settings, print_json, stop_on_signals

lt = import_libtorrent()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("save_path")
    ap.add_argument("--dht-bootstrap", required=True)
    ap.add_argument("--seed", action="store_true")
    ap.add_argument("--deadline", type=float, default=120)
    ap.add_argument("--listen", default="127.0.0.1:0")
    a = ap.parse_args()

    stop = stop_on_signals()

    ses = lt.session(loopback_settings(
        enable_dht=True,
        dht_bootstrap_nodes=a.dht_bootstrap,
        dht_restrict_routing_ips=False,
        dht_restrict_search_ips=False,
        dht_enforce_node_id=False,
        dht_prefer_verified_node_ids=False,
        dht_announce_interval=5,
        listen_interfaces=a.listen,
    ))
    if a.torrent.startswith("magnet:"):
        params = lt.parse_magnet_uri(a.torrent)
    else:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(a.torrent)
    params.save_path = a.save_path
    params.trackers = []
    # Started at once and left alone: an auto-managed torrent waits for the queue.
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    h = ses.add_torrent(params)
    deadline = time.monotonic() + a.deadline
    while ses.listen_port() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    print_json({"port": ses.listen_port()})

    while time.monotonic() < deadline and not stop:
        st = h.status()
        if not a.seed and st.is_seeding:
            print_json({"done": True, "have": st.num_pieces,
                        "num_pieces": h.torrent_file().num_pieces()})
            return 0
        time.sleep(0.1)
    if a.seed:
        return 0
    st = h.status()
    print_json({"done": False, "have": st.num_pieces, "peers": st.num_peers,
                "state": str(st.state)})
    return 1


if __name__ == "__main__":
    sys.exit(main())
