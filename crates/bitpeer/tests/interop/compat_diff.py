"""Differential checks: the same calls against a reference server (Debian's qbittorrent-nox
or transmission-daemon on loopback) and against bitpeer, the answers compared field by
field for presence and JSON type, and for value where they must agree (hash, name, sizes,
state, file names).

Usage:
  compat_diff.py qb-profile DIR USER PASS SAVE_DIR WEBUI_PORT   write a qbittorrent-nox profile
  compat_diff.py tr-config DIR USER PASS SAVE_DIR RPC_PORT      write a transmission-daemon config
  compat_diff.py qb REF_API OUR_API USER PASS TORRENT
  compat_diff.py tr REF_API OUR_API USER PASS TORRENT

Prints {"ok": true, "missing": {...}} (fields the reference has that bitpeer leaves out,
outside those the clients read) and exits 0, or raises.
"""
import base64
import hashlib
import json
import os
import sys

import qbittorrentapi
import transmission_rpc

from compat_common import check, say, wait


def kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if v is None:
        return "null"
    return type(v).__name__


def compare(what, ref, ours, required, equal=()):
    """Every `required` key in both with the same kind; `equal` keys with equal values.
    Returns the other keys of ref that ours lacks."""
    for k in required:
        check(k in ref, f"{what}: the reference lacks {k} (test out of date)")
        check(k in ours, f"{what}: bitpeer lacks {k}")
        check(kind(ref[k]) == kind(ours[k]) or "null" in (kind(ref[k]), kind(ours[k])),
              f"{what}.{k}: reference {ref[k]!r} ({kind(ref[k])}), bitpeer {ours[k]!r} ({kind(ours[k])})")
    for k in equal:
        check(ref[k] == ours[k], f"{what}.{k}: reference {ref[k]!r}, bitpeer {ours[k]!r}")
    return sorted(k for k in ref if k not in ours)


def qb_profile(d, user, password, save, port):
    salt = os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 100000, 64)
    conf = os.path.join(d, "qBittorrent", "config")
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(conf, "qBittorrent.conf"), "w") as f:
        f.write(f"""[LegalNotice]
Accepted=true

[BitTorrent]
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\DefaultSavePath={save}
Session\\Port=0
Session\\Interface=lo
Session\\InterfaceName=lo
Session\\QueueingSystemEnabled=true

[Preferences]
Connection\\UPnP=false
General\\Locale=en
WebUI\\Address=127.0.0.1
WebUI\\Port={port}
WebUI\\Username={user}
WebUI\\Password_PBKDF2="@ByteArray({base64.b64encode(salt).decode()}:{base64.b64encode(key).decode()})"
WebUI\\LocalHostAuth=true
WebUI\\CSRFProtection=false
WebUI\\HostHeaderValidation=false
WebUI\\UseUPnP=false
""")


def tr_config(d, user, password, save, port):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "settings.json"), "w") as f:
        json.dump({
            "rpc-enabled": True, "rpc-bind-address": "127.0.0.1", "rpc-port": int(port),
            "rpc-authentication-required": True, "rpc-username": user, "rpc-password": password,
            "rpc-whitelist-enabled": False, "rpc-host-whitelist-enabled": False,
            "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False,
            "port-forwarding-enabled": False, "peer-port": 0, "bind-address-ipv4": "127.0.0.1",
            "bind-address-ipv6": "::1", "download-dir": save, "incomplete-dir-enabled": False,
            "message-level": 1,
        }, f)


def qb(ref_api, our_api, user, password, torrent):
    clients = []
    for api in (ref_api, our_api):
        host, port = api.rsplit(":", 1)
        c = qbittorrentapi.Client(host=host, port=int(port), username=user, password=password,
                                  REQUESTS_ARGS={"timeout": 10})
        wait(f"{api} to log in", lambda: c.auth_log_in() is None, timeout=30)
        c.torrents_add(torrent_files=torrent, is_paused=True, category="tv", tags="x")
        clients.append(c)
    ref, ours = clients
    missing = {}
    t_ref = wait("the reference's torrent checked and paused",
                 lambda: [t for t in ref.torrents_info() if t.state.startswith(("paused", "stopped"))],
                 timeout=30)[0]
    t_ours = ours.torrents_info()[0]
    # qBittorrent 4.5 (API 2.8) says pausedDL where 5.x says stoppedDL.
    t_ref = dict(t_ref)
    t_ref["state"] = t_ref["state"].replace("paused", "stopped")
    missing["torrents/info"] = compare(
        "torrents/info", t_ref, dict(t_ours),
        ["hash", "name", "size", "total_size", "progress", "dlspeed", "upspeed", "eta", "state", "category",
         "tags", "save_path", "content_path", "ratio", "ratio_limit", "seeding_time", "seeding_time_limit",
         "added_on", "completion_on", "num_seeds", "num_leechs", "num_complete", "num_incomplete",
         "downloaded", "uploaded", "completed", "seq_dl", "super_seeding", "last_activity", "priority",
         "amount_left", "dl_limit", "up_limit", "force_start", "magnet_uri", "tracker", "time_active",
         "auto_tmm", "availability", "f_l_piece_prio", "max_ratio", "max_seeding_time"],
        ["hash", "name", "size", "total_size", "state", "category", "tags", "progress", "eta"])
    h = t_ref["hash"]
    p_ref, p_ours = ref.torrents_properties(torrent_hash=h), ours.torrents_properties(torrent_hash=h)
    missing["torrents/properties"] = compare(
        "torrents/properties", dict(p_ref), dict(p_ours),
        ["save_path", "seeding_time", "creation_date", "piece_size", "comment", "total_uploaded",
         "total_downloaded", "up_limit", "dl_limit", "time_elapsed", "nb_connections", "share_ratio",
         "addition_date", "completion_date", "created_by", "eta", "pieces_have", "pieces_num",
         "total_size", "seeds", "peers"],
        ["piece_size", "pieces_num", "total_size", "pieces_have"])
    f_ref, f_ours = ref.torrents_files(torrent_hash=h), ours.torrents_files(torrent_hash=h)
    check(len(f_ref) == len(f_ours), "file counts")
    for a, b in zip(f_ref, f_ours):
        missing["torrents/files"] = compare("torrents/files", dict(a), dict(b),
                                            ["index", "name", "size", "progress", "priority",
                                             "piece_range"], ["name", "size", "priority", "piece_range"])
    pr, po = dict(ref.app_preferences()), dict(ours.app_preferences())
    missing["app/preferences"] = compare(
        "app/preferences", pr, po,
        ["save_path", "max_ratio_enabled", "max_ratio", "max_seeding_time_enabled", "max_seeding_time",
         "max_ratio_act", "queueing_enabled", "dht", "dl_limit", "up_limit", "listen_port"],
        ["max_ratio_enabled", "max_seeding_time_enabled", "queueing_enabled", "dht"])
    cr, co = ref.torrents_categories(), ours.torrents_categories()
    compare("torrents/categories", dict(cr["tv"]), dict(co["tv"]), ["name", "savePath"], ["name"])
    tr_ref, tr_ours = dict(ref.transfer_info()), dict(ours.transfer_info())
    missing["transfer/info"] = compare("transfer/info", tr_ref, tr_ours,
                                       ["dl_info_speed", "up_info_speed", "dl_info_data", "up_info_data",
                                        "dl_rate_limit", "up_rate_limit", "dht_nodes", "connection_status"])
    m_ref, m_ours = ref.sync_maindata(), ours.sync_maindata()
    compare("sync/maindata", dict(m_ref), dict(m_ours), ["rid", "full_update", "torrents", "categories",
                                                          "tags", "server_state"])
    for c in clients:
        c.torrents_delete(delete_files=True, torrent_hashes=h)
    say({"ok": True, "missing": missing})


def tr(ref_api, our_api, user, password, torrent):
    clients = []
    for api in (ref_api, our_api):
        host, port = api.rsplit(":", 1)
        c = wait(f"{api} to answer", lambda: _tr_client(host, port, user, password), timeout=30)
        c.add_torrent(open(torrent, "rb"), paused=True)
        clients.append(c)
    ref, ours = clients
    fields = ["id", "hashString", "name", "downloadDir", "totalSize", "leftUntilDone", "isFinished", "eta",
              "status", "secondsDownloading", "secondsSeeding", "errorString", "uploadedEver", "downloadedEver",
              "seedRatioLimit", "seedRatioMode", "seedIdleLimit", "seedIdleMode", "percentDone", "rateDownload",
              "rateUpload", "sizeWhenDone", "uploadRatio", "peersConnected", "addedDate", "doneDate",
              "error", "files", "fileStats", "trackers", "peers", "queuePosition", "downloadLimit",
              "uploadLimit", "downloadLimited", "uploadLimited", "pieceCount", "pieceSize", "isPrivate",
              "magnetLink", "priorities", "wanted", "peersSendingToUs", "peersGettingFromUs"]
    t_ref = wait("the reference's torrent checked and stopped",
                 lambda: [t for t in ref.get_torrents(arguments=fields) if t.fields["status"] == 0],
                 timeout=30)[0].fields
    t_ours = ours.get_torrents(arguments=fields)[0].fields
    missing = {"torrent-get": compare("torrent-get", t_ref, t_ours, fields,
                                      ["hashString", "name", "totalSize", "leftUntilDone", "status",
                                       "sizeWhenDone", "pieceCount", "pieceSize", "isFinished",
                                       "percentDone", "priorities", "wanted"])}
    check([f["name"] for f in t_ref["files"]] == [f["name"] for f in t_ours["files"]], "file names")
    check([f["length"] for f in t_ref["files"]] == [f["length"] for f in t_ours["files"]], "file sizes")
    s_ref, s_ours = ref.get_session().fields, ours.get_session().fields
    missing["session-get"] = compare(
        "session-get", s_ref, s_ours,
        ["version", "rpc-version", "rpc-version-minimum", "download-dir", "seedRatioLimit", "seedRatioLimited",
         "idle-seeding-limit", "idle-seeding-limit-enabled", "speed-limit-down", "speed-limit-down-enabled",
         "speed-limit-up", "speed-limit-up-enabled", "dht-enabled", "peer-port", "units",
         "download-queue-enabled", "download-queue-size", "config-dir"], ["dht-enabled"])
    for c in clients:
        c.remove_torrent(t_ref["hashString"], delete_data=True)
    say({"ok": True, "missing": missing})


def _tr_client(host, port, user, password):
    try:
        return transmission_rpc.Client(host=host, port=int(port), username=user, password=password, timeout=10)
    except Exception:
        return None


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"qb-profile": qb_profile, "tr-config": tr_config, "qb": qb, "tr": tr}[mode](*args)
