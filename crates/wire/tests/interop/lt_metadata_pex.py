"""A libtorrent seed on 127.0.0.1 for the BEP 9 / BEP 11 interop test of crates/wire.

Usage: lt_metadata_pex.py WORKDIR [--deadline SECONDS]

Creates a v1 torrent whose info dictionary spans several 16 KiB metadata pieces (the piece
hashes are made up: no payload is ever served, only metadata and peer lists), adds it to a
session listening on 127.0.0.1 (a free port) with the default ut_metadata and ut_pex
plugins, waits until it accepts peers, and prints one line "PORT INFO_HASH_HEX METADATA_SIZE". Then it idles until stdin
closes or the deadline passes. Nothing leaves 127.0.0.1 (no DHT, LSD, UPnP, NAT-PMP,
trackers). Run with Debian's /usr/bin/python3 (python3-libtorrent 2.x).
"""

import argparse
import hashlib
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
PIECE_LEN = 16384
PIECES = 2500  # 50,000 bytes of piece hashes: four metadata pieces, the last one short


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--deadline", type=float, default=120)
    a = ap.parse_args()

    fs = lt.file_storage()
    fs.add_file("bitpeer-interop.bin", PIECE_LEN * PIECES)
    ct = lt.create_torrent(fs, PIECE_LEN, flags=lt.create_torrent.v1_only)
    for i in range(PIECES):
        ct.set_hash(i, hashlib.sha1(i.to_bytes(4, "big")).digest())
    info = lt.torrent_info(ct.generate())

    ses = lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        # Our test opens two connections from 127.0.0.1; each must be kept.
        "allow_multiple_connections_per_ip": True,
        # BITPEER_LT_LOG=1 prints libtorrent's peer log on stderr, to debug this test.
        "alert_mask": lt.alert.category_t.all_categories if LOG else 0,
    })
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = a.workdir
    params.trackers = []
    # Start now, not at the auto-manager's next tick: a paused torrent refuses peers.
    params.flags &= ~lt.torrent_flags.paused & ~lt.torrent_flags.auto_managed
    h = ses.add_torrent(params)
    # Until its (absent) files are checked, the torrent refuses peers.
    ready = time.monotonic() + 30
    while h.status().paused or h.status().state in (lt.torrent_status.checking_files,
                                                    lt.torrent_status.checking_resume_data):
        if time.monotonic() > ready:
            print("error: torrent still checking after 30 s", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.05)
    size = len(info.info_section())
    print(f"{ses.listen_port()} {info.info_hashes().v1} {size}", flush=True)

    deadline = time.monotonic() + a.deadline
    while time.monotonic() < deadline:
        r, _, _ = select.select([sys.stdin], [], [], 0.5)
        if LOG:
            for alert in ses.pop_alerts():
                print(f"lt: {alert.message()}", file=sys.stderr, flush=True)
        if r and not os.read(sys.stdin.fileno(), 4096):
            break


if __name__ == "__main__":
    main()
