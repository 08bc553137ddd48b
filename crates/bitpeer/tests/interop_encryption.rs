//! Protocol encryption (MSE/PE) against real clients on 127.0.0.1, byte for byte:
//!
//! - libtorrent (python3-libtorrent 2.0, `interop/lt_peer.py`) with encryption forced in
//!   and out and RC4 only: it downloads from `bitpeer seed --encryption require` (bitpeer
//!   receives the encrypted handshake), and `bitpeer download --encryption require`
//!   downloads from it (bitpeer starts it);
//! - the same with plaintext allowed after the handshake (`allowed_enc_level` both,
//!   policies forced) and bitpeer's default `prefer`;
//! - Transmission 3.00 (transmission-cli) with encryption required, both ways.
//! - hostile MSE handshakes (garbage, a bad key, huge padding, an unknown torrent, stalls)
//!   end in bounded time while libtorrent downloads from the same `bitpeer seed`.
//!
//! A forced or required peer refuses plaintext connections, so a finished transfer proves
//! the encrypted handshake worked. The tests fail when a client is missing, unless
//! BITPEER_SKIP_INTEROP=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(180);

/// `root/data/enc.bin` (3 MiB and a bit, 32 KiB pieces) and its torrent.
fn make(root: &Path) -> (PathBuf, PathBuf) {
    let data = root.join("data").join("enc.bin");
    write_random(&data, 1207, 3 * 1024 * 1024 + 4321);
    let torrent = root.join("enc.torrent");
    bitpeer_create(&data, &torrent, &["--piece-length", "32768"]);
    (data, torrent)
}

/// `bitpeer seed --encryption POLICY`, once it listens; returns the guard and address.
fn seed(torrent: &Path, data_dir: &Path, policy: &str, peers: &[String]) -> (Proc, String) {
    let extra = ["--no-dht", "--no-lsd", "--encryption", policy];
    spawn_bitpeer_seed_with(torrent, data_dir, peers, &extra)
}

/// `bitpeer download --encryption POLICY --json` from `peers`.
fn download(torrent: &Path, out: &Path, policy: &str, peers: &[String]) -> Proc {
    let extra = ["--no-dht", "--no-lsd", "--encryption", policy];
    spawn_bitpeer_download_with(torrent, out, peers, DOWNLOAD_TIMEOUT, &extra)
}

/// libtorrent with `lt_enc` downloads from `bitpeer seed --encryption policy`.
fn libtorrent_downloads_from_bitpeer(policy: &str, lt_enc: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make(tmp.path());
    let (mut seeder, seed_addr) = seed(&torrent, data.parent().unwrap(), policy, &[]);
    let save = tmp.path().join("lt-out");
    std::fs::create_dir_all(&save).unwrap();
    let started = Instant::now();
    let (mut lt, _) = spawn_lt_peer(&torrent, &save, &[seed_addr], lt_enc);
    let status = lt.wait_exit(LT_PEER_TIMEOUT);
    let done = lt
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|v| v["done"] == true);
    assert!(
        status.success() && done,
        "libtorrent ({lt_enc:?}) did not download from bitpeer seed --encryption {policy}: {}\nseeder: {}",
        lt.explain(),
        seeder.explain()
    );
    eprintln!(
        "libtorrent downloaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_same_tree(&data, &save.join("enc.bin"));
    seeder.assert_no_panic();
}

/// `bitpeer download --encryption policy` from a libtorrent seeder with `lt_enc`.
fn bitpeer_downloads_from_libtorrent(policy: &str, lt_enc: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make(tmp.path());
    let mut extra = vec!["--seed", "--stats"];
    extra.extend_from_slice(lt_enc);
    let (mut lt, port) = spawn_lt_peer(&torrent, data.parent().unwrap(), &[], &extra);
    wait_lt_seeding(&mut lt);
    let out = tmp.path().join("out");
    let mut dl = download(&torrent, &out, policy, &[format!("127.0.0.1:{port}")]);
    let status = dl.wait_exit(DOWNLOAD_TIMEOUT);
    assert!(
        status.success(),
        "bitpeer download --encryption {policy} from libtorrent ({lt_enc:?}) failed: {}\nlibtorrent: {}",
        dl.explain(),
        lt.explain()
    );
    dl.assert_no_panic();
    assert_same_tree(&data, &out.join("enc.bin"));
}

const LT_FORCED_RC4: &[&str] = &[
    "--out-enc-policy",
    "forced",
    "--in-enc-policy",
    "forced",
    "--allowed-enc-level",
    "rc4",
];

const LT_FORCED_BOTH: &[&str] = &[
    "--out-enc-policy",
    "forced",
    "--in-enc-policy",
    "forced",
    "--allowed-enc-level",
    "both",
];

#[test]
fn libtorrent_forced_rc4_downloads_from_bitpeer() {
    if libtorrent_available() {
        libtorrent_downloads_from_bitpeer("require", LT_FORCED_RC4);
    }
}

#[test]
fn bitpeer_downloads_from_libtorrent_forced_rc4() {
    if libtorrent_available() {
        bitpeer_downloads_from_libtorrent("require", LT_FORCED_RC4);
    }
}

#[test]
fn libtorrent_forced_plaintext_allowed_downloads_from_bitpeer() {
    if libtorrent_available() {
        libtorrent_downloads_from_bitpeer("prefer", LT_FORCED_BOTH);
    }
}

#[test]
fn bitpeer_downloads_from_libtorrent_forced_plaintext_allowed() {
    if libtorrent_available() {
        bitpeer_downloads_from_libtorrent("prefer", LT_FORCED_BOTH);
    }
}

/// A plaintext-only libtorrent and `bitpeer --encryption require` never exchange data,
/// while `prefer` falls back to plaintext with it: the policy really decides.
#[test]
fn require_refuses_plaintext_libtorrent_and_prefer_falls_back() {
    if !libtorrent_available() {
        return;
    }
    let plain = &[
        "--out-enc-policy",
        "disabled",
        "--in-enc-policy",
        "disabled",
    ];
    bitpeer_downloads_from_libtorrent("prefer", plain);

    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make(tmp.path());
    let mut extra = vec!["--seed", "--stats"];
    extra.extend_from_slice(plain);
    let (mut lt, port) = spawn_lt_peer(&torrent, data.parent().unwrap(), &[], &extra);
    wait_lt_seeding(&mut lt);
    let out = tmp.path().join("out");
    let mut dl = download(&torrent, &out, "require", &[format!("127.0.0.1:{port}")]);
    let first = dl.wait_line(Duration::from_secs(60), |l| {
        serde_json::from_str::<Value>(l).ok()
    });
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        dl.try_status().is_none(),
        "bitpeer download ended: {}",
        dl.explain()
    );
    let last = dl
        .stdout_lines()
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(first);
    assert_eq!(last["bytes"], 0, "data over a plaintext connection: {last}");
    assert_eq!(last["peers"], 0, "{last}");
    dl.assert_no_panic();
}

/// transmission-cli with encryption required (`-er`), on its own free port, no DHT,
/// LPD, PEX, uTP or port mapping. It seeds `data_dir`'s content or downloads into it.
fn spawn_transmission(tmp: &Path, torrent: &Path, dir: &Path) -> (Proc, u16) {
    let config = tmp.join("transmission");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let settings = serde_json::json!({
        "dht-enabled": false,
        "lpd-enabled": false,
        "pex-enabled": false,
        "utp-enabled": false,
        "port-forwarding-enabled": false,
        "bind-address-ipv4": "127.0.0.1",
        "peer-port": port,
        "peer-port-random-on-start": false,
        "encryption": 2,
        "ratio-limit-enabled": false,
        "idle-seeding-limit-enabled": false,
        "speed-limit-up-enabled": false,
        "rename-partial-files": true,
    });
    std::fs::write(config.join("settings.json"), settings.to_string()).unwrap();
    let mut cmd = Command::new("transmission-cli");
    cmd.arg("-g")
        .arg(&config)
        .arg("-w")
        .arg(dir)
        .args(["-p", &port.to_string(), "-M", "-er"])
        .arg(torrent);
    (
        Proc::spawn(cmd, DOWNLOAD_TIMEOUT + Duration::from_secs(60)),
        port,
    )
}

/// transmission-cli comes in the same package as transmission-create and -show.
fn transmission_ready() -> bool {
    transmission_available()
}

#[test]
fn bitpeer_downloads_from_transmission_encryption_required() {
    if !transmission_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make(tmp.path());
    let (mut tr, port) = spawn_transmission(tmp.path(), &torrent, data.parent().unwrap());
    // Transmission checks its data first; bitpeer retries the address meanwhile.
    let out = tmp.path().join("out");
    let mut dl = download(&torrent, &out, "require", &[format!("127.0.0.1:{port}")]);
    let status = dl.wait_exit(DOWNLOAD_TIMEOUT);
    assert!(
        status.success(),
        "bitpeer download from Transmission (-er) failed: {}\nTransmission: {}",
        dl.explain(),
        tr.explain()
    );
    assert_same_tree(&data, &out.join("enc.bin"));
    tr.kill();
}

#[test]
fn transmission_encryption_required_downloads_from_bitpeer() {
    if !transmission_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make(tmp.path());
    let out = tmp.path().join("tr-out");
    let (mut tr, port) = spawn_transmission(tmp.path(), &torrent, &out);
    // Transmission takes no peer address on its command line: bitpeer dials it.
    let (mut seeder, _) = seed(
        &torrent,
        data.parent().unwrap(),
        "require",
        &[format!("127.0.0.1:{port}")],
    );
    let want = std::fs::read(&data).unwrap();
    let target = out.join("enc.bin");
    let deadline = Instant::now() + DOWNLOAD_TIMEOUT;
    loop {
        if std::fs::read(&target).is_ok_and(|got| got == want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Transmission (-er) did not download from bitpeer seed --encryption require: {}\nseeder: {}",
            tr.explain(),
            seeder.explain()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    seeder.assert_no_panic();
    tr.kill();
}

/// Whether the node closed `s` (EOF or error) within `within`, reading on past what it
/// sends first (its Yb and PadB).
fn closed_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        s.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

/// `bitpeer seed` (default policy) gets hostile MSE handshakes: garbage, a degenerate
/// key, a valid key with padding far past 512 bytes, a correct handshake for an unknown
/// torrent, and two that stall mid-handshake. Each ends in bounded time; meanwhile a
/// libtorrent peer with encryption forced downloads everything; the seeder never panics.
#[test]
fn hostile_handshakes_do_not_stop_bitpeer_serving() {
    use std::io::{Read, Write};
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make(tmp.path());
    let (mut seeder, seed_addr) = seed(&torrent, data.parent().unwrap(), "prefer", &[]);
    let connect = || std::net::TcpStream::connect(&seed_addr).unwrap();
    let ya = mse::KeyPair::from_secret([0x5c; 20]);

    let mut garbage = connect();
    let junk: Vec<u8> = (0..3000u32).map(|i| (i * 151 + 3) as u8).collect();
    let _ = garbage.write_all(&junk);
    assert!(
        closed_within(&mut garbage, Duration::from_secs(5)),
        "garbage"
    );

    let mut bad_key = connect();
    let mut one = [0u8; 96];
    one[95] = 1;
    bad_key.write_all(&one).unwrap();
    assert!(
        closed_within(&mut bad_key, Duration::from_secs(5)),
        "bad key"
    );

    let mut huge_pad = connect();
    huge_pad.write_all(ya.public()).unwrap();
    let _ = huge_pad.write_all(&vec![0u8; 64 * 1024]);
    assert!(
        closed_within(&mut huge_pad, Duration::from_secs(5)),
        "huge padding"
    );

    let mut unknown = connect();
    let mut hs = mse::Handshake::initiator(
        [0xEE; 20],
        mse::CRYPTO_RC4,
        Vec::new(),
        mse::Entropy::random(16).unwrap(),
    );
    unknown.write_all(&hs.take_output()).unwrap();
    let mut yb = [0u8; 96];
    unknown.read_exact(&mut yb).unwrap();
    hs.feed(&yb).unwrap();
    unknown.write_all(&hs.take_output()).unwrap();
    assert!(
        closed_within(&mut unknown, Duration::from_secs(5)),
        "unknown torrent"
    );

    let mut stall_a = connect();
    stall_a.write_all(&ya.public()[..50]).unwrap();
    let mut stall_b = connect();
    stall_b.write_all(ya.public()).unwrap();

    let save = tmp.path().join("lt-out");
    std::fs::create_dir_all(&save).unwrap();
    let (mut lt, _) = spawn_lt_peer(
        &torrent,
        &save,
        std::slice::from_ref(&seed_addr),
        LT_FORCED_RC4,
    );
    let status = lt.wait_exit(LT_PEER_TIMEOUT);
    assert!(
        status.success(),
        "libtorrent could not download while others stall: {}\nseeder: {}",
        lt.explain(),
        seeder.explain()
    );
    assert_same_tree(&data, &save.join("enc.bin"));
    assert!(
        closed_within(&mut stall_a, Duration::from_secs(20)),
        "stall a"
    );
    assert!(
        closed_within(&mut stall_b, Duration::from_secs(20)),
        "stall b"
    );
    seeder.assert_no_panic();
    assert!(
        seeder.try_status().is_none(),
        "the seeder exited: {}",
        seeder.explain()
    );
}
