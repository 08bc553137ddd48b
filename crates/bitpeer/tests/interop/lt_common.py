"""Shared helpers for the libtorrent interop scripts.

Run with Debian's /usr/bin/python3 (python3-libtorrent 2.x), not a pyenv python.
"""

import json
import sys


def import_libtorrent():
    try:
        import libtorrent as lt  # noqa: F401
    except ImportError as e:
        print(f"error: cannot import libtorrent ({e}); install python3-libtorrent "
              f"and run with /usr/bin/python3", file=sys.stderr)
        sys.exit(3)
    return lt


def hex_or_none(h):
    """Hex of a sha1_hash/sha256_hash, or None when libtorrent reports it as all zeros."""
    if h is None or h.is_all_zeros():
        return None
    return str(h)


def info_hashes_json(lt, ti):
    ih = ti.info_hashes()
    return {
        "v1": hex_or_none(ih.v1) if ih.has_v1() else None,
        "v2": hex_or_none(ih.v2) if ih.has_v2() else None,
    }


def print_json(obj):
    print(json.dumps(obj, sort_keys=True))
    sys.stdout.flush()


def describe(lt, ti):
    """What libtorrent reads from a torrent, in the shape of `bitpeer info --json`.

    File paths are joined with '/' and, for multi-file torrents, do not start with the
    torrent's name (for a single-file torrent the path is the name).
    """
    name = ti.name()
    fs = ti.files()
    files = []
    for i in range(fs.num_files()):
        path = fs.file_path(i).replace("\\", "/")
        if path != name and path.startswith(name + "/"):
            path = path[len(name) + 1:]
        files.append({
            "path": path,
            "size": fs.file_size(i),
            "pad": bool(fs.file_flags(i) & lt.file_storage.flag_pad_file),
        })
    tiers = {}
    for t in ti.trackers():
        tiers.setdefault(t.tier, []).append(t.url)
    return {
        "name": name,
        "piece_length": ti.piece_length(),
        "num_pieces": ti.num_pieces(),
        "total_size": ti.total_size(),
        "private": bool(ti.priv()),
        "comment": ti.comment() or None,
        "trackers": [tiers[k] for k in sorted(tiers)],
        "web_seeds": [w["url"] for w in ti.web_seeds()],
        "files": files,
        **info_hashes_json(lt, ti),
    }
