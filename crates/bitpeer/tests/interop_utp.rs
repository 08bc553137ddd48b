//! uTP (BEP 29) interop on 127.0.0.1, both directions, byte for byte:
//!
//! - libtorrent (python3-libtorrent 2.0) with TCP turned off both ways
//!   (`enable_outgoing_tcp`/`enable_incoming_tcp` false), so only uTP can carry the
//!   transfer;
//! - Transmission 3.00 (transmission-cli, libutp) with uTP on, and bitpeer with
//!   `--transports utp`, so bitpeer can only dial it over uTP.
//!
//! bitpeer's side has no TCP listener at all with `--transports utp`, so a finished
//! transfer went over uTP on bitpeer's UDP port (the one the DHT shares).
//!
//! The tests fail when the real clients are missing, unless BITPEER_SKIP_INTEROP=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const TRANSFER_TIMEOUT: Duration = Duration::from_secs(180);

/// One file of pseudo-random bytes (a size that is not a multiple of the piece or block
/// size) and a bitpeer-made torrent of it.
fn make_torrent(root: &Path, len: usize) -> (PathBuf, PathBuf) {
    let data = root.join("seed").join("utp.bin");
    write_random(&data, 0x0b29, len);
    let torrent = root.join("utp.torrent");
    bitpeer_create(&data, &torrent, &[]);
    (data, torrent)
}

/// `bitpeer seed` (or `download`) with `--transports utp`, no DHT, no LSD, on loopback.
fn bitpeer_utp(sub: &str, torrent: &Path, dir_flag: &str, dir: &Path, peers: &[String]) -> Proc {
    bitpeer_utp_on("127.0.0.1:0", sub, torrent, dir_flag, dir, peers)
}

/// [`bitpeer_utp`] listening on `listen` (`[::1]:0`: uTP over IPv6).
fn bitpeer_utp_on(
    listen: &str,
    sub: &str,
    torrent: &Path,
    dir_flag: &str,
    dir: &Path,
    peers: &[String],
) -> Proc {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg(sub)
        .arg(torrent)
        .arg(dir_flag)
        .arg(dir)
        .args(["--listen", listen, "--transports", "utp"])
        .args(["--no-dht", "--no-lsd"]);
    if sub == "download" {
        cmd.arg("--json");
    }
    for p in peers {
        cmd.args(["--peer", p]);
    }
    Proc::spawn(cmd, TRANSFER_TIMEOUT + Duration::from_secs(60))
}

fn seed_addr(p: &mut Proc) -> String {
    let addr = p.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("listening on ").map(|a| a.trim().to_owned())
    });
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    addr
}

/// bitpeer listening on `listen` (uTP only) downloads `len` bytes from a uTP-only
/// libtorrent seeder on [::1], byte for byte.
fn download_from_utp_only_libtorrent_on_ipv6(listen: &str, len: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), len);
    let (_lt, port) = spawn_lt_peer(
        &torrent,
        data.parent().unwrap(),
        &[],
        &["--seed", "--utp-only", "--listen", "[::1]:0"],
    );
    let out = tmp.path().join("out");
    let peers = [format!("[::1]:{port}")];
    let mut dl = bitpeer_utp_on(listen, "download", &torrent, "-o", &out, &peers);
    finish_download(&mut dl, TRANSFER_TIMEOUT);
    assert_same_tree(&data, &out.join("utp.bin"));
}

/// Waits until `lt_peer.py` prints `{"done": true, ...}`.
fn wait_lt_done(p: &mut Proc) {
    let done = p.wait_line(TRANSFER_TIMEOUT, |l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v["done"].as_bool())
    });
    assert!(done, "libtorrent did not finish: {}", p.explain());
}

#[test]
fn libtorrent_utp_only_downloads_from_bitpeer() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), 6 * 1024 * 1024 + 4321);
    let mut seeder = bitpeer_utp("seed", &torrent, "--data", data.parent().unwrap(), &[]);
    let addr = seed_addr(&mut seeder);
    let save = tmp.path().join("lt");
    let (mut lt, _) = spawn_lt_peer(&torrent, &save, &[addr], &["--utp-only"]);
    wait_lt_done(&mut lt);
    assert_same_tree(&data, &save.join("utp.bin"));
    seeder.assert_no_panic();
}

#[test]
fn bitpeer_downloads_from_libtorrent_utp_only() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), 6 * 1024 * 1024 + 4321);
    let (_lt, port) = spawn_lt_peer(
        &torrent,
        data.parent().unwrap(),
        &[],
        &["--seed", "--utp-only"],
    );
    let out = tmp.path().join("out");
    let mut dl = bitpeer_utp(
        "download",
        &torrent,
        "-o",
        &out,
        &[format!("127.0.0.1:{port}")],
    );
    finish_download(&mut dl, TRANSFER_TIMEOUT);
    assert_same_tree(&data, &out.join("utp.bin"));
}

/// uTP over IPv6: bitpeer on [::1] with uTP only, libtorrent on [::1] with TCP off.
#[test]
fn libtorrent_utp_only_downloads_from_bitpeer_over_ipv6() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), 3 * 1024 * 1024 + 4321);
    let seed_dir = data.parent().unwrap();
    let mut seeder = bitpeer_utp_on("[::1]:0", "seed", &torrent, "--data", seed_dir, &[]);
    let addr = seeder.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("listening on ").map(|a| a.trim().to_owned())
    });
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let save = tmp.path().join("lt");
    let (mut lt, _) = spawn_lt_peer(
        &torrent,
        &save,
        &[addr],
        &["--utp-only", "--listen", "[::1]:0"],
    );
    wait_lt_done(&mut lt);
    assert_same_tree(&data, &save.join("utp.bin"));
    seeder.assert_no_panic();
}

#[test]
fn bitpeer_downloads_from_libtorrent_utp_only_over_ipv6() {
    if !libtorrent_available() {
        return;
    }
    download_from_utp_only_libtorrent_on_ipv6("[::1]:0", 3 * 1024 * 1024 + 4321);
}

/// A node listening on both families (`--listen 127.0.0.1:0,[::1]:0`, uTP only) has a
/// UDP socket per family: uTP-only libtorrent peers reach it over IPv4 and over IPv6.
#[test]
fn a_dual_stack_seeder_serves_utp_over_ipv4_and_ipv6() {
    if !libtorrent_available() || std::net::UdpSocket::bind("[::1]:0").is_err() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), 2 * 1024 * 1024 + 4321);
    let seed_dir = data.parent().unwrap();
    let listen = "127.0.0.1:0,[::1]:0";
    let mut seeder = bitpeer_utp_on(listen, "seed", &torrent, "--data", seed_dir, &[]);
    let a4 = seed_addr(&mut seeder);
    let a6 = seeder.wait_line(Duration::from_secs(10), |l| {
        l.strip_prefix("also listening on ")
            .map(|a| a.trim().to_owned())
    });
    assert!(a6.starts_with("[::1]:"), "{a6}");
    let (save4, save6) = (tmp.path().join("lt4"), tmp.path().join("lt6"));
    let (mut lt4, _) = spawn_lt_peer(&torrent, &save4, &[a4], &["--utp-only"]);
    let (mut lt6, _) = spawn_lt_peer(
        &torrent,
        &save6,
        &[a6],
        &["--utp-only", "--listen", "[::1]:0"],
    );
    wait_lt_done(&mut lt4);
    wait_lt_done(&mut lt6);
    assert_same_tree(&data, &save4.join("utp.bin"));
    assert_same_tree(&data, &save6.join("utp.bin"));
    seeder.assert_no_panic();
}

/// A dual-stack downloader dials an IPv6 uTP peer from its IPv6 socket.
#[test]
fn a_dual_stack_downloader_dials_utp_over_ipv6() {
    if !libtorrent_available() || std::net::UdpSocket::bind("[::1]:0").is_err() {
        return;
    }
    download_from_utp_only_libtorrent_on_ipv6("127.0.0.1:0,[::1]:0", 2 * 1024 * 1024 + 4321);
}

/// With both transports (the default), bitpeer reaches a uTP-only libtorrent: TCP fails,
/// the dial falls back to uTP.
#[test]
fn bitpeer_falls_back_to_utp_for_a_utp_only_peer() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), 1024 * 1024 + 77);
    let (_lt, port) = spawn_lt_peer(
        &torrent,
        data.parent().unwrap(),
        &[],
        &["--seed", "--utp-only"],
    );
    let out = tmp.path().join("out");
    let mut dl = spawn_bitpeer_download(
        &torrent,
        &out,
        &[format!("127.0.0.1:{port}")],
        TRANSFER_TIMEOUT,
    );
    finish_download(&mut dl, TRANSFER_TIMEOUT);
    assert_same_tree(&data, &out.join("utp.bin"));
}

/// A port free for both TCP and UDP on 127.0.0.1 (Transmission binds both).
fn free_port_both() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn transmission_cli_available() -> bool {
    let mut cmd = Command::new("transmission-cli");
    cmd.arg("--version");
    let ok = matches!(try_run(cmd, CLIENT_TIMEOUT), Ok(o) if o.status.success());
    available_or_fail(ok, "transmission-cli cannot be run")
}

/// `transmission-cli` with uTP on, no DHT/LPD/PEX/port mapping, on `port`, working in
/// `dir`. (Transmission ignores 127.x peers from trackers, so bitpeer always dials it.)
fn spawn_transmission(tmp: &Path, torrent: &Path, dir: &Path, port: u16) -> Proc {
    let config = tmp.join("transmission");
    std::fs::create_dir_all(&config).unwrap();
    let settings = serde_json::json!({
        "dht-enabled": false,
        "lpd-enabled": false,
        "pex-enabled": false,
        "utp-enabled": true,
        "port-forwarding-enabled": false,
        "peer-port": port,
        "peer-port-random-on-start": false,
        "bind-address-ipv4": "127.0.0.1",
        "encryption": 1,
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
        .args(["-p", &port.to_string(), "-v"])
        .arg(torrent);
    Proc::spawn(cmd, TRANSFER_TIMEOUT + Duration::from_secs(60))
}

/// Waits (bounded) until `path` holds exactly the bytes of `src`.
fn wait_same_file(src: &Path, path: &Path, who: &mut Proc) {
    let want = std::fs::read(src).unwrap();
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    loop {
        if std::fs::read(path).is_ok_and(|b| b == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not get {} in time: {}",
            who.desc,
            path.display(),
            who.explain()
        );
        assert!(
            who.try_status().is_none(),
            "{} exited: {}",
            who.desc,
            who.explain()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn transmission_downloads_from_bitpeer_over_utp() {
    if !transmission_cli_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), 4 * 1024 * 1024 + 999);
    let port = free_port_both();
    let leech = tmp.path().join("tr");
    std::fs::create_dir_all(&leech).unwrap();
    let mut tr = spawn_transmission(tmp.path(), &torrent, &leech, port);
    // Dial it over uTP once its UDP socket is open.
    wait_port_bound("udp", port, &mut tr, Duration::from_secs(30));
    let mut seeder = bitpeer_utp(
        "seed",
        &torrent,
        "--data",
        data.parent().unwrap(),
        &[format!("127.0.0.1:{port}")],
    );
    seed_addr(&mut seeder);
    wait_same_file(&data, &leech.join("utp.bin"), &mut tr);
    seeder.assert_no_panic();
}

#[test]
fn bitpeer_downloads_from_transmission_over_utp() {
    if !transmission_cli_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), 4 * 1024 * 1024 + 999);
    let port = free_port_both();
    let mut tr = spawn_transmission(tmp.path(), &torrent, data.parent().unwrap(), port);
    wait_port_bound("udp", port, &mut tr, Duration::from_secs(30));
    let out = tmp.path().join("out");
    let mut dl = bitpeer_utp(
        "download",
        &torrent,
        "-o",
        &out,
        &[format!("127.0.0.1:{port}")],
    );
    finish_download(&mut dl, TRANSFER_TIMEOUT);
    assert_same_tree(&data, &out.join("utp.bin"));
}
