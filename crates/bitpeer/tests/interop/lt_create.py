#!/usr/bin/python3
"""Create a .torrent with libtorrent's own creator.

Usage: /usr/bin/python3 lt_create.py DATA_PATH OUT.torrent --mode v1|v2|hybrid
                                     [--piece-length N]

DATA_PATH is a file or a folder. Prints one JSON object with the info-hashes libtorrent
computes when it loads the file it just wrote:

  {"v1": "40 hex"|null, "v2": "64 hex"|null, ...}

plus what libtorrent reads back from it ("name", "piece_length", "num_pieces",
"total_size", "files", ...: see lt_common.describe).

Exit codes: 0 on success, 2 on a usage or libtorrent error, 3 when libtorrent cannot be
imported.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lt_common import describe, import_libtorrent, print_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("data_path")
    ap.add_argument("out")
    ap.add_argument("--mode", choices=["v1", "v2", "hybrid"], required=True)
    ap.add_argument("--piece-length", type=int, default=0,
                    help="bytes; 0 lets libtorrent choose")
    args = ap.parse_args()

    lt = import_libtorrent()

    flags = {
        "v1": lt.create_torrent.v1_only,
        "v2": lt.create_torrent.v2_only,
        "hybrid": 0,
    }[args.mode]

    data = os.path.abspath(args.data_path)
    if not os.path.exists(data):
        print(f"error: {args.data_path}: no such file or folder", file=sys.stderr)
        return 2
    try:
        fs = lt.file_storage()
        lt.add_files(fs, data)
        if fs.num_files() == 0:
            print(f"error: {args.data_path}: no files to add", file=sys.stderr)
            return 2
        ct = lt.create_torrent(fs, args.piece_length, flags=flags)
        ct.set_creator("bitpeer interop test (libtorrent %s)" % lt.__version__)
        # Paths in the file_storage are relative to the parent of DATA_PATH.
        lt.set_piece_hashes(ct, os.path.dirname(data))
        encoded = lt.bencode(ct.generate())
        with open(args.out, "wb") as f:
            f.write(encoded)
        ti = lt.torrent_info(args.out)
    except Exception as e:
        print(f"error: libtorrent: {e}", file=sys.stderr)
        return 2

    print_json(describe(lt, ti))
    return 0


if __name__ == "__main__":
    sys.exit(main())
