//! Joining a swarm through the mainline DHT (BEP 5) alone, with libtorrent's DHT on
//! 127.0.0.1 (`interop/lt_dht_peer.py`: a libtorrent session whose only way to meet peers is
//! the DHT, started from one bootstrap node, with its loopback restrictions off).
//!
//! A libtorrent node N is the bootstrap node everyone is given.
//! - libtorrent seeds and announces; `bitpeer download MAGNET --dht-bootstrap N` (no peer,
//!   no tracker) finds the seeder, fetches the metadata (BEP 9) and downloads the data;
//! - `bitpeer seed --dht-bootstrap N` announces; libtorrent, given only the magnet link and
//!   N, finds bitpeer and downloads.
//!
//! Every transfer is compared byte for byte. The tests fail when libtorrent is missing,
//! unless BITPEER_SKIP_INTEROP=1.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(150);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `lt_dht_peer.py WHAT SAVE --dht-bootstrap BOOT [EXTRA]`; returns it and its port (TCP
/// for peers, UDP for the DHT).
fn spawn_lt_dht_peer(what: &str, save: &Path, boot: &str, extra: &[&str]) -> (Proc, u16) {
    let mut cmd = Command::new(python());
    cmd.arg(interop_dir().join("lt_dht_peer.py"))
        .arg(what)
        .arg(save)
        .args(["--dht-bootstrap", boot])
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

/// A libtorrent DHT node for everyone to bootstrap from: a session with one torrent nobody
/// has (so it never finishes), itself bootstrapping from nowhere.
fn spawn_bootstrap_node(dir: &Path) -> (Proc, String) {
    let nobody = format!("magnet:?xt=urn:btih:{}", hex(&[0x5a; 20]));
    let dead = format!("127.0.0.1:{}", {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    });
    let (p, port) = spawn_lt_dht_peer(&nobody, &dir.join("node"), &dead, &["--seed"]);
    (p, format!("127.0.0.1:{port}"))
}

fn make(root: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let seed_dir = root.join("seed");
    write_random(&seed_dir.join(name), 4242, 2_500_000);
    let torrent = root.join(format!("{name}.torrent"));
    bitpeer_create(&seed_dir.join(name), &torrent, &["--piece-length", "65536"]);
    (torrent, seed_dir)
}

#[test]
fn bitpeer_finds_a_libtorrent_seeder_through_the_dht_from_a_magnet_link() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_node, boot) = spawn_bootstrap_node(tmp.path());
    let (torrent, seed_dir) = make(tmp.path(), "dht-a.bin");
    let (_seeder, _) = spawn_lt_dht_peer(torrent.to_str().unwrap(), &seed_dir, &boot, &["--seed"]);
    let link = format!("magnet:?xt=urn:btih:{}", hex(&info_hash_v1(&torrent)));
    let out = tmp.path().join("out");
    let started = Instant::now();
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download")
        .arg(&link)
        .arg("-o")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--json", "--no-lsd"])
        .args(["--dht-bootstrap", &boot]);
    let mut dl = Proc::spawn(cmd, TIMEOUT);
    let last = finish_download(&mut dl, TIMEOUT);
    eprintln!(
        "found through the DHT and downloaded in {:.1} s: {last}",
        started.elapsed().as_secs_f64()
    );
    assert_same_tree(&seed_dir.join("dht-a.bin"), &out.join("dht-a.bin"));
}

#[test]
fn libtorrent_finds_a_bitpeer_seeder_through_the_dht_from_a_magnet_link() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_node, boot) = spawn_bootstrap_node(tmp.path());
    let (torrent, seed_dir) = make(tmp.path(), "dht-b.bin");
    // A fixed port, so that the routing table is kept (in XDG_STATE_HOME) when it stops.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = tmp.path().join("state");
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("seed")
        .arg(&torrent)
        .arg("--data")
        .arg(&seed_dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-lsd"])
        .args(["--dht-bootstrap", &boot])
        .env("XDG_STATE_HOME", &state);
    let mut seeder = Proc::spawn(cmd, TIMEOUT);
    seeder.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("listening on ").map(|_| ())
    });
    let link = format!("magnet:?xt=urn:btih:{}", hex(&info_hash_v1(&torrent)));
    let out = tmp.path().join("out");
    let started = Instant::now();
    let (mut lt, _) = spawn_lt_dht_peer(&link, &out, &boot, &[]);
    let status = lt.wait_exit(TIMEOUT);
    assert!(
        status.success(),
        "libtorrent: {}\nbitpeer: {}",
        lt.explain(),
        seeder.explain()
    );
    eprintln!(
        "libtorrent found bitpeer through the DHT and downloaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_same_tree(&seed_dir.join("dht-b.bin"), &out.join("dht-b.bin"));
    seeder.assert_no_panic();

    // SIGTERM: a clean stop that saves the routing table, with the nodes it met.
    let status = seeder.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "bitpeer seed did not stop cleanly on SIGTERM: {status:?}"
    );
    let saved = std::fs::read(state.join(format!("bitpeer/dht-{port}.dat")))
        .unwrap_or_else(|e| panic!("no saved routing table: {e}; {}", seeder.explain()));
    let v = bencode::decode(&saved).expect("the routing table file is bencode");
    let nodes = v
        .as_dict()
        .and_then(|d| d.get(b"nodes"))
        .and_then(|n| n.as_bytes())
        .map_or(0, |n| n.len() / 26);
    assert!(nodes >= 1, "the saved routing table has no node: {v:?}");
}
