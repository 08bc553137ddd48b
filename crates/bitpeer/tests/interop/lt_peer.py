"""A libtorrent peer on 127.0.0.1 for transfer interop tests.

Usage: lt_peer.py TORRENT|MAGNET SAVE_PATH [--peer HOST:PORT]... [--deadline SECONDS] [--seed]
                  [--upload-limit BYTES_PER_S] [--download-limit BYTES_PER_S] [--stats]
                  [--count-incoming] [--keep-trackers] [--utp-only | --utp] [--listen IFACE:PORT]
                  [--out-enc-policy P] [--in-enc-policy P] [--allowed-enc-level L] [--prefer-rc4]

Listens on 127.0.0.1 (a free port; --listen [::1]:0 for IPv6 loopback), prints {"port": N} as its first line, connects to the
given peers, and then:
  - with --seed: checks the data and serves it until killed or the deadline passes;
  - without: downloads until every piece is valid, prints {"done": true, ...} and exits 0,
    or exits 1 at the deadline.
With --upload-limit (--download-limit), uploads (downloads) are limited to that many bytes
per second, loopback peers included (libtorrent exempts local peers from rate limits unless
told otherwise).
With --stats, prints {"uploaded": N, "downloaded": N, "peers": N, "seeding": B} every second and once
more when it stops (deadline, SIGTERM or SIGINT); without it nothing more is printed while
seeding, so a reader that only reads the port line never fills the pipe.
With --count-incoming, the stats also say how many connections peers opened to us
("incoming", from libtorrent's incoming_connection_alert).
With --utp-only, TCP is off both ways and uTP (BEP 29) on: every connection is uTP. With
--utp, uTP is on besides TCP (libtorrent's default: it dials over uTP first).
With a magnet link, the metadata is fetched from the peers first (BEP 9).
Peer exchange (BEP 11) is on, as in libtorrent's default session.
Protocol encryption (MSE/PE) follows libtorrent's settings: --out-enc-policy and
--in-enc-policy are forced, enabled or disabled (libtorrent's default: enabled);
--allowed-enc-level is rc4, plaintext or both (default both); --prefer-rc4 makes
libtorrent pick RC4 when a peer offers both.
No DHT, LSD, UPnP or NAT-PMP; trackers are removed (unless --keep-trackers, for a test's
own tracker on 127.0.0.1), so nothing leaves 127.0.0.1.
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
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--deadline", type=float, default=120)
    ap.add_argument("--seed", action="store_true")
    ap.add_argument("--upload-limit", type=int, default=0)
    ap.add_argument("--download-limit", type=int, default=0)
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("--count-incoming", action="store_true")
    ap.add_argument("--keep-trackers", action="store_true")
    policies = {"forced": lt.enc_policy.pe_forced, "enabled": lt.enc_policy.pe_enabled,
                "disabled": lt.enc_policy.pe_disabled}
    levels = {"rc4": lt.enc_level.pe_rc4, "plaintext": lt.enc_level.pe_plaintext,
              "both": lt.enc_level.pe_both}
    ap.add_argument("--out-enc-policy", choices=sorted(policies))
    ap.add_argument("--in-enc-policy", choices=sorted(policies))
    ap.add_argument("--allowed-enc-level", choices=sorted(levels))
    ap.add_argument("--prefer-rc4", action="store_true")
    ap.add_argument("--utp-only", action="store_true")
    ap.add_argument("--utp", action="store_true")
    ap.add_argument("--listen", default="127.0.0.1:0")
    a = ap.parse_args()

    stop = stop_on_signals()

    extra = {}
    if a.count_incoming:
        extra["alert_mask"] = int(lt.alert_category.connect) | int(lt.alert_category.peer)
    if a.out_enc_policy:
        extra["out_enc_policy"] = int(policies[a.out_enc_policy])
    if a.in_enc_policy:
        extra["in_enc_policy"] = int(policies[a.in_enc_policy])
    if a.allowed_enc_level:
        extra["allowed_enc_level"] = int(levels[a.allowed_enc_level])
    if a.prefer_rc4:
        extra["prefer_rc4"] = True
    if a.utp_only or a.utp:
        extra["enable_outgoing_utp"] = True
        extra["enable_incoming_utp"] = True
    if a.utp_only:
        extra["enable_outgoing_tcp"] = False
        extra["enable_incoming_tcp"] = False
    extra["listen_interfaces"] = a.listen
    ses = lt.session(loopback_settings(**extra))
    incoming = [0]

    def pop_alerts():
        for al in ses.pop_alerts():
            if isinstance(al, lt.incoming_connection_alert):
                incoming[0] += 1
    if a.torrent.startswith("magnet:"):
        params = lt.parse_magnet_uri(a.torrent)
    else:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(a.torrent)
    params.save_path = a.save_path
    if not a.keep_trackers:
        params.trackers = []
    h = ses.add_torrent(params)
    if not a.keep_trackers:
        h.replace_trackers([])
    if a.upload_limit > 0 or a.download_limit > 0:
        # Put every address in the global peer class only, so the session's limit also
        # applies to loopback peers (by default they are in the unlimited local class).
        f = lt.ip_filter()
        f.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        ses.set_peer_class_filter(f)
    if a.upload_limit > 0:
        ses.apply_settings({"upload_rate_limit": a.upload_limit})
        h.set_upload_limit(a.upload_limit)
    if a.download_limit > 0:
        ses.apply_settings({"download_rate_limit": a.download_limit})
        h.set_download_limit(a.download_limit)
    print_json({"port": ses.listen_port()})

    def stats():
        st = h.status()
        out = {"uploaded": st.total_payload_upload,
               "downloaded": st.total_payload_download,
               "peers": st.num_peers, "seeding": st.is_seeding}
        if a.count_incoming:
            pop_alerts()
            out["incoming"] = incoming[0]
        print_json(out)

    deadline = time.monotonic() + a.deadline
    connected = False
    next_stats = time.monotonic() + 1
    while time.monotonic() < deadline and not stop:
        if a.stats and time.monotonic() >= next_stats:
            stats()
            next_stats += 1
        st = h.status()
        if not connected and st.state not in (lt.torrent_status.checking_files,
                                              lt.torrent_status.checking_resume_data):
            for p in a.peer:
                host, port = p.rsplit(":", 1)
                h.connect_peer((host.strip("[]"), int(port)))
            connected = True
        if not a.seed and st.is_seeding:
            print_json({"done": True, "have": st.num_pieces,
                        "num_pieces": h.torrent_file().num_pieces()})
            return 0
        time.sleep(0.1)
    if a.stats:
        stats()
    if a.seed:
        return 0
    st = h.status()
    ti = h.torrent_file()
    print_json({"done": False, "have": st.num_pieces,
                "num_pieces": ti.num_pieces() if ti else None,
                "state": str(st.state), "peers": st.num_peers})
    return 1


if __name__ == "__main__":
    sys.exit(main())
