"""A libtorrent DHT node on 127.0.0.1 for the interop test (crates/dht/tests/interop_libtorrent.rs).

Run with Debian's /usr/bin/python3 (python3-libtorrent 2.x):

    lt_dht.py BOOTSTRAP_HOST:PORT MAX_SECONDS

Prints `port N` once listening, then reads commands on stdin, one per line:

    add HEX             add a torrent by info-hash (magnet, no trackers): libtorrent announces
                        it to the DHT on its listen port (python-libtorrent 2.0 cannot call
                        dht_announce: its flags type is not exported)
    get_peers HEX       dht_get_peers(info_hash); each reply prints `peers HEX ip:port ...`
    nodes               prints `nodes N` (routing table size, from a dht_stats_alert)
    put_mutable SEED PK SALT VALUE
                        BEP 44 dht_put_mutable_item of VALUE (a string) signed with the
                        ed25519 key of the 32-byte SEED (hex; PK is its public key in hex,
                        computed by the caller); SALT in hex, `-` for none. Prints
                        `put PKHEX SEQ N` with the nodes that stored it
    get_mutable PK SALT dht_get_mutable_item; prints `mutable PKHEX SEQ VALUEHEX` for each
                        item alert (VALUEHEX: the bencoded value, `-` when the bindings
                        cannot convert it)

Also prints `announced HEX ip:port` for every announce_peer libtorrent accepts, and
`bootstrapped` when its DHT bootstrap finishes. Exits after MAX_SECONDS or on EOF.
"""

import hashlib
import queue
import shutil
import sys
import tempfile
import threading
import time

try:
    import libtorrent as lt
except ImportError as e:
    print(f"error: cannot import libtorrent ({e}); install python3-libtorrent and run with "
          f"/usr/bin/python3", file=sys.stderr)
    sys.exit(3)


def say(*words):
    print(*words)
    sys.stdout.flush()


def main():
    bootstrap = sys.argv[1]
    max_seconds = float(sys.argv[2])
    settings = {
        "enable_dht": True,
        "dht_bootstrap_nodes": bootstrap,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        "dht_extended_routing_table": False,
        "dht_announce_interval": 5,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "listen_interfaces": "127.0.0.1:0",
        "alert_mask": lt.alert.category_t.dht_notification
        | lt.alert.category_t.dht_operation_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.error_notification,
    }
    ses = lt.session(settings)
    deadline = time.time() + max_seconds
    while ses.listen_port() == 0 and time.time() < deadline:
        time.sleep(0.05)
    say("port", ses.listen_port())

    save_dir = tempfile.mkdtemp(prefix="lt_dht_")
    try:
        loop(ses, deadline, save_dir)
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)
    say("exit")


def loop(ses, deadline, save_dir):
    commands = queue.Queue()

    def read_stdin():
        for line in sys.stdin:
            commands.put(line.split())
        commands.put(None)

    threading.Thread(target=read_stdin, daemon=True).start()

    while time.time() < deadline:
        try:
            cmd = commands.get(timeout=0.05)
        except queue.Empty:
            cmd = []
        if cmd is None:
            break
        if cmd:
            if cmd[0] == "add":
                params = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{cmd[1]}")
                params.save_path = save_dir
                ses.async_add_torrent(params)
            elif cmd[0] == "get_peers":
                ses.dht_get_peers(lt.sha1_hash(bytes.fromhex(cmd[1])))
            elif cmd[0] == "nodes":
                ses.post_dht_stats()
            elif cmd[0] == "put_mutable":
                # libtorrent's secret key is ed25519's expanded one: SHA-512 of the seed,
                # the first half clamped (as ed25519_create_keypair does).
                h = bytearray(hashlib.sha512(bytes.fromhex(cmd[1])).digest())
                h[0] &= 248
                h[31] &= 63
                h[31] |= 64
                salt = b"" if cmd[3] == "-" else bytes.fromhex(cmd[3])
                ses.dht_put_mutable_item(bytes(h), bytes.fromhex(cmd[2]), cmd[4], salt)
            elif cmd[0] == "get_mutable":
                salt = b"" if cmd[2] == "-" else bytes.fromhex(cmd[2])
                ses.dht_get_mutable_item(bytes.fromhex(cmd[1]), salt)
            elif cmd[0] == "bootstrap":
                host, port = cmd[1].rsplit(":", 1)
                ses.add_dht_node((host, int(port)))
        for a in ses.pop_alerts():
            if isinstance(a, lt.dht_get_peers_reply_alert):
                peers = " ".join(f"{ip}:{port}" for ip, port in a.peers())
                say("peers", str(a.info_hash), peers)
            elif isinstance(a, lt.dht_announce_alert):
                say("announced", str(a.info_hash), f"{a.ip}:{a.port}")
            elif isinstance(a, lt.dht_bootstrap_alert):
                say("bootstrapped")
            elif isinstance(a, lt.dht_put_alert):
                say("put", bytes(a.public_key).hex(), a.seq, a.num_success)
            elif isinstance(a, lt.dht_mutable_item_alert):
                # The bindings hand the item over as a dict of the alert's fields; some
                # values (binary strings in a list) they cannot convert: printed as `-`.
                try:
                    item = a.item
                    if isinstance(item, dict):
                        item = item.get("value", item.get(b"value"))
                    value = lt.bencode(item).hex()
                except RuntimeError:
                    value = "-"
                say("mutable", bytes(a.key).hex(), a.seq, value)
            elif isinstance(a, lt.dht_stats_alert):
                n = sum(b["num_nodes"] for b in a.routing_table)
                say("nodes", n)


if __name__ == "__main__":
    main()
