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


def stop_on_signals():
    """A list that gets an item when SIGTERM or SIGINT arrives: `while not stop: ...`."""
    import signal
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    return stop


def loopback_settings(**extra):
    """Session settings for a libtorrent peer on 127.0.0.1 that meets others only the way a
    test allows: a free port, no DHT, LSD, UPnP or NAT-PMP, TCP only unless the caller turns
    uTP on (libtorrent prefers uTP between two libtorrent peers, which would make lt -> lt a
    different, on loopback slower, transport; lt_peer.py --utp/--utp-only), several peers
    per IP allowed (everyone is 127.0.0.1). `extra` adds or overrides settings."""
    settings = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
    }
    settings.update(extra)
    return settings


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
