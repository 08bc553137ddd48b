"""A libtorrent downloader on 127.0.0.1 that fetches a torrent's metadata from one peer.

Usage: lt_magnet.py WORKDIR INFO_HASH_HEX PEER_PORT [--deadline SECONDS]

Adds the magnet link of INFO_HASH_HEX (no trackers) to a session listening on 127.0.0.1,
connects to 127.0.0.1:PEER_PORT, and prints "metadata NAME" once libtorrent has the info
dictionary (it checks its SHA-1 against the info-hash itself). Then it keeps running, so
that it can dial peers it learns about through PEX, until stdin closes or the deadline
passes. BITPEER_LT_LOG=1 prints libtorrent's log on stderr. Nothing leaves 127.0.0.1.
Run with Debian's /usr/bin/python3 (python3-libtorrent 2.x).
"""

import argparse
import os
import select
import sys
import time

try:
    import libtorrent as lt
except ImportError as e:
    print(f"error: cannot import libtorrent ({e}); install python3-libtorrent", file=sys.stderr)
    sys.exit(3)

LOG = os.environ.get("BITPEER_LT_LOG") == "1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("info_hash")
    ap.add_argument("peer_port", type=int)
    ap.add_argument("--deadline", type=float, default=120)
    a = ap.parse_args()

    ses = lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        # Plain BitTorrent on the wire: the test peer speaks no MSE/PE encryption.
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.disabled),
        "alert_mask": lt.alert.category_t.all_categories if LOG else 0,
    })
    params = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{a.info_hash}")
    params.save_path = a.workdir
    params.flags &= ~lt.torrent_flags.paused & ~lt.torrent_flags.auto_managed
    h = ses.add_torrent(params)
    h.connect_peer(("127.0.0.1", a.peer_port))

    deadline = time.monotonic() + a.deadline
    announced = False
    while time.monotonic() < deadline:
        if not announced and h.status().has_metadata:
            print(f"metadata {h.torrent_file().name()}", flush=True)
            announced = True
        r, _, _ = select.select([sys.stdin], [], [], 0.1)
        if LOG:
            for alert in ses.pop_alerts():
                print(f"lt: {alert.message()}", file=sys.stderr, flush=True)
        if r and not os.read(sys.stdin.fileno(), 4096):
            break


if __name__ == "__main__":
    main()
