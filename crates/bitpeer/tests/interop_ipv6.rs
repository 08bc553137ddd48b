//! IPv6 (issue #12 item 3) with the real binary on ::1: libtorrent downloads from bitpeer
//! and bitpeer from libtorrent over IPv6 byte for byte; a node listening on one address of
//! each family (`--listen 127.0.0.1:0,[::1]:0`) is reached over both; `bitpeer tracker`
//! answers an IPv6 announcer with `peers6` (BEP 7) over HTTP and 18-byte peers over UDP, and
//! bitpeer downloads through it; the DHT over IPv6 (BEP 32) with a libtorrent node on ::1.
//!
//! The tests fail when libtorrent is missing, unless BITPEER_SKIP_INTEROP=1. They pass with
//! a notice only when this machine has no IPv6 loopback (::1 cannot be bound).

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(180);

/// Whether ::1 can be bound; if not, the test passes with a notice.
fn ipv6_loopback() -> bool {
    match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: no IPv6 loopback on this machine ({e})");
            false
        }
    }
}

fn ready() -> bool {
    ipv6_loopback() && libtorrent_available()
}

/// 2.5 MB of random data in ROOT/seed/NAME and its torrent (64 KiB pieces, `extra` flags).
fn make(root: &Path, name: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let seed_dir = root.join("seed");
    write_random(&seed_dir.join(name), 6666, 2_500_000);
    let torrent = root.join(format!("{name}.torrent"));
    let mut flags = vec!["--piece-length", "65536"];
    flags.extend_from_slice(extra);
    bitpeer_create(&seed_dir.join(name), &torrent, &flags);
    (torrent, seed_dir)
}

/// `bitpeer seed TORRENT --data DIR --no-lsd --no-dht --listen LISTEN [EXTRA]`: its guard,
/// and the lines it printed up to and including `listening on ...` (and `also listening on`).
fn spawn_seed(torrent: &Path, data: &Path, listen: &str, extra: &[&str]) -> (Proc, Vec<String>) {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("seed")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .args(["--listen", listen, "--no-lsd"])
        .args(extra);
    let mut p = Proc::spawn(cmd, TIMEOUT);
    let first = p.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("listening on ").map(|a| a.trim().to_owned())
    });
    let mut lines = vec![first];
    if listen.contains(',') {
        lines.push(p.wait_line(Duration::from_secs(10), |l| {
            l.strip_prefix("also listening on ")
                .map(|a| a.trim().to_owned())
        }));
    }
    (p, lines)
}

fn download(torrent_or_link: &str, out: &Path, listen: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download")
        .arg(torrent_or_link)
        .arg("-o")
        .arg(out)
        .args(["--listen", listen, "--json", "--no-lsd"])
        .args(extra);
    Proc::spawn(cmd, TIMEOUT)
}

#[test]
fn libtorrent_seeds_bitpeer_downloads_over_ipv6() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, seed_dir) = make(tmp.path(), "v6-a.bin", &[]);
    let (mut lt, port) =
        spawn_lt_peer(&torrent, &seed_dir, &[], &["--seed", "--listen", "[::1]:0"]);
    let out = tmp.path().join("out");
    let peer = format!("[::1]:{port}");
    let mut dl = download(
        torrent.to_str().unwrap(),
        &out,
        "[::1]:0",
        &["--no-dht", "--peer", &peer],
    );
    finish_download(&mut dl, TIMEOUT);
    assert_same_tree(&seed_dir.join("v6-a.bin"), &out.join("v6-a.bin"));
    dl.assert_no_panic();
    lt.kill();
}

#[test]
fn bitpeer_seeds_libtorrent_downloads_over_ipv6() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, seed_dir) = make(tmp.path(), "v6-b.bin", &[]);
    let (mut seeder, addrs) = spawn_seed(&torrent, &seed_dir, "[::1]:0", &["--no-dht"]);
    let addr: SocketAddr = addrs[0].parse().unwrap();
    assert!(addr.is_ipv6() && addr.ip().is_loopback(), "{addr}");
    let save = tmp.path().join("lt");
    let (mut lt, _) = spawn_lt_peer(
        &torrent,
        &save,
        &[addrs[0].clone()],
        &["--listen", "[::1]:0"],
    );
    let status = lt.wait_exit(TIMEOUT);
    assert!(
        status.success(),
        "libtorrent: {}\nbitpeer: {}",
        lt.explain(),
        seeder.explain()
    );
    assert_same_tree(&seed_dir.join("v6-b.bin"), &save.join("v6-b.bin"));
    seeder.assert_no_panic();
}

/// One node, two listening addresses of one port: a libtorrent peer over IPv4 and one over
/// IPv6 both download from it.
#[test]
fn a_dual_stack_seeder_serves_ipv4_and_ipv6_peers() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, seed_dir) = make(tmp.path(), "v6-c.bin", &[]);
    let (mut seeder, addrs) = spawn_seed(&torrent, &seed_dir, "127.0.0.1:0,[::1]:0", &["--no-dht"]);
    let a4: SocketAddr = addrs[0].parse().unwrap();
    let a6: SocketAddr = addrs[1].parse().unwrap();
    assert!(a4.is_ipv4() && a6.is_ipv6(), "{addrs:?}");
    assert_eq!(a4.port(), a6.port(), "one port for both families");
    let (save4, save6) = (tmp.path().join("lt4"), tmp.path().join("lt6"));
    let (mut lt4, _) = spawn_lt_peer(&torrent, &save4, &[a4.to_string()], &[]);
    let (mut lt6, _) = spawn_lt_peer(
        &torrent,
        &save6,
        &[a6.to_string()],
        &["--listen", "[::1]:0"],
    );
    for lt in [&mut lt4, &mut lt6] {
        let status = lt.wait_exit(TIMEOUT);
        assert!(
            status.success(),
            "libtorrent: {}\nbitpeer: {}",
            lt.explain(),
            seeder.explain()
        );
    }
    assert_same_tree(&seed_dir.join("v6-c.bin"), &save4.join("v6-c.bin"));
    assert_same_tree(&seed_dir.join("v6-c.bin"), &save6.join("v6-c.bin"));
    seeder.assert_no_panic();
}

/// `bitpeer tracker` on ::1: its HTTP and UDP announce URLs.
fn spawn_tracker() -> (Proc, String, String) {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.args(["tracker", "--http", "[::1]:0", "--udp", "[::1]:0"]);
    let mut proc = Proc::spawn(cmd, TIMEOUT);
    let (mut http, mut udp) = (None, None);
    while http.is_none() || udp.is_none() {
        let line = proc.wait_line(Duration::from_secs(60), |l| Some(l.to_owned()));
        if let Some(u) = line.strip_prefix("http tracker listening on ") {
            http = Some(u.trim().to_owned());
        } else if let Some(u) = line.strip_prefix("udp tracker listening on ") {
            udp = Some(u.trim().to_owned());
        }
    }
    (proc, http.unwrap(), udp.unwrap())
}

fn percent(b: &[u8]) -> String {
    b.iter().map(|x| format!("%{x:02X}")).collect()
}

/// A compact HTTP announce from ::1 (`port`, a fresh peer id): the bencoded answer.
fn http_announce(url: &str, info_hash: &[u8; 20], port: u16) -> Vec<u8> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let addr: SocketAddr = host.parse().unwrap();
    let target = format!(
        "/{path}?info_hash={}&peer_id=-XX0001-abcdefghijkl&port={port}&uploaded=0&downloaded=0&left=100&compact=1&event=started",
        percent(info_hash)
    );
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    answer[at + 4..].to_vec()
}

/// BEP 7 end to end: a bitpeer seeder on ::1 announces over HTTP, an IPv6 announcer gets it
/// in `peers6` (18 bytes each, nothing in `peers`), and a bitpeer downloader on ::1 whose
/// torrent names only the UDP tracker (::1, 18-byte peers) finds the seeder and downloads.
#[test]
fn a_tracker_over_ipv6_hands_out_peers6_and_bitpeer_downloads_through_it() {
    if !ipv6_loopback() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut tracker, http, udp) = spawn_tracker();
    assert!(http.starts_with("http://[::1]:"), "{http}");
    assert!(udp.starts_with("udp://[::1]:"), "{udp}");
    let (torrent, seed_dir) = make(tmp.path(), "v6-d.bin", &["--tracker", &http]);
    let (mut seeder, addrs) = spawn_seed(&torrent, &seed_dir, "127.0.0.1:0,[::1]:0", &["--no-dht"]);
    let seed_addr: SocketAddr = addrs[1].parse().unwrap();
    let info_hash = info_hash_v1(&torrent);

    // The seeder's announce reaches the tracker within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut expected = Vec::new();
    match seed_addr {
        SocketAddr::V6(a) => {
            expected.extend_from_slice(&a.ip().octets());
            expected.extend_from_slice(&a.port().to_be_bytes());
        }
        SocketAddr::V4(_) => unreachable!(),
    }
    loop {
        let body = http_announce(&http, &info_hash, 1);
        let v = bencode::decode(&body)
            .unwrap_or_else(|e| panic!("announce answer is not bencode ({e}): {body:?}"));
        let d = v.as_dict().expect("a dictionary");
        let peers6 = d.get(b"peers6").and_then(|p| p.as_bytes()).unwrap_or(&[]);
        let peers = d.get(b"peers").and_then(|p| p.as_bytes()).unwrap_or(&[]);
        assert_eq!(peers6.len() % 18, 0, "peers6 of 18-byte entries");
        assert!(peers.is_empty(), "no IPv4 peer in this swarm: {peers:?}");
        if peers6.chunks(18).any(|c| c == expected.as_slice()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the seeder {seed_addr} is not in peers6: {body:?}\ntracker: {}\nseeder: {}",
            tracker.explain(),
            seeder.explain()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // The same torrent with only the UDP tracker: the info-hash is the same swarm.
    let udp_torrent = tmp.path().join("udp.torrent");
    bitpeer_create(
        &seed_dir.join("v6-d.bin"),
        &udp_torrent,
        &["--piece-length", "65536", "--tracker", &udp],
    );
    assert_eq!(info_hash_v1(&udp_torrent), info_hash);
    let out = tmp.path().join("out");
    let mut dl = download(
        udp_torrent.to_str().unwrap(),
        &out,
        "127.0.0.1:0,[::1]:0",
        &["--no-dht"],
    );
    finish_download(&mut dl, TIMEOUT);
    assert_same_tree(&seed_dir.join("v6-d.bin"), &out.join("v6-d.bin"));
    dl.assert_no_panic();
    seeder.assert_no_panic();
    tracker.assert_no_panic();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `lt_dht_peer.py WHAT SAVE --dht-bootstrap BOOT --listen [::1]:0 [EXTRA]` and its port.
fn spawn_lt_dht_peer6(what: &str, save: &Path, boot: &str, extra: &[&str]) -> (Proc, u16) {
    let mut cmd = Command::new(python());
    cmd.arg(interop_dir().join("lt_dht_peer.py"))
        .arg(what)
        .arg(save)
        .args(["--dht-bootstrap", boot, "--listen", "[::1]:0"])
        .args(["--deadline", &(TIMEOUT.as_secs() - 10).to_string()])
        .args(extra);
    let mut p = Proc::spawn(cmd, TIMEOUT);
    let port = p.wait_line(Duration::from_secs(60), |l| {
        serde_json::from_str::<Value>(l)
            .ok()
            .and_then(|v| v["port"].as_u64())
    });
    (p, port as u16)
}

/// A libtorrent DHT node on ::1 that knows nobody (it bootstraps from a socket that never
/// answers, and holds a torrent of its own, `seed` repeated, so it runs its DHT), and the
/// address to bootstrap from it.
fn lt_dht_node6(tmp: &Path, seed: u8) -> (Proc, String) {
    let nobody = format!("magnet:?xt=urn:btih:{}", hex(&[seed; 20]));
    let dead = {
        let s = std::net::UdpSocket::bind("[::1]:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let (node, node_port) = spawn_lt_dht_peer6(&nobody, &tmp.join("node"), &dead, &["--seed"]);
    (node, format!("[::1]:{node_port}"))
}

/// BEP 32 with libtorrent: a libtorrent DHT node on ::1 (bootstrapping from nowhere) is the
/// only way in; bitpeer seeds on 127.0.0.1 and ::1 (one DHT node, a socket per family) and
/// announces over the IPv6 DHT; a libtorrent
/// downloader on ::1 with only a magnet link finds it through the DHT and downloads.
#[test]
fn libtorrent_finds_a_bitpeer_seeder_through_the_ipv6_dht() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_node, boot) = lt_dht_node6(tmp.path(), 0x5b);
    let (torrent, seed_dir) = make(tmp.path(), "v6-e.bin", &[]);
    let (mut seeder, addrs) = spawn_seed(
        &torrent,
        &seed_dir,
        "127.0.0.1:0,[::1]:0",
        &["--dht-bootstrap", &boot],
    );
    assert!(addrs[1].starts_with("[::1]:"), "{addrs:?}");
    let link = format!("magnet:?xt=urn:btih:{}", hex(&info_hash_v1(&torrent)));
    let out = tmp.path().join("out");
    let started = Instant::now();
    let (mut lt, _) = spawn_lt_dht_peer6(&link, &out, &boot, &[]);
    let status = lt.wait_exit(TIMEOUT);
    assert!(
        status.success(),
        "libtorrent: {}\nbitpeer: {}",
        lt.explain(),
        seeder.explain()
    );
    eprintln!(
        "libtorrent found bitpeer through the IPv6 DHT and downloaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_same_tree(&seed_dir.join("v6-e.bin"), &out.join("v6-e.bin"));
    seeder.assert_no_panic();
}

/// The reverse: a libtorrent seeder on ::1 announces over the IPv6 DHT, bitpeer on 127.0.0.1
/// and ::1
/// with a magnet link and the ::1 DHT node as its only bootstrap finds it and downloads.
#[test]
fn bitpeer_finds_a_libtorrent_seeder_through_the_ipv6_dht() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_node, boot) = lt_dht_node6(tmp.path(), 0x5c);
    let (torrent, seed_dir) = make(tmp.path(), "v6-f.bin", &[]);
    let (_seeder, _) = spawn_lt_dht_peer6(torrent.to_str().unwrap(), &seed_dir, &boot, &["--seed"]);
    let link = format!("magnet:?xt=urn:btih:{}", hex(&info_hash_v1(&torrent)));
    let out = tmp.path().join("out");
    let mut dl = download(
        &link,
        &out,
        "127.0.0.1:0,[::1]:0",
        &["--dht-bootstrap", &boot],
    );
    finish_download(&mut dl, TIMEOUT);
    assert_same_tree(&seed_dir.join("v6-f.bin"), &out.join("v6-f.bin"));
    dl.assert_no_panic();
}
