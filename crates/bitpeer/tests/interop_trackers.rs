//! Finding peers without `--peer`: through trackers (BEP 3, 15) and the local network
//! (BEP 14), with real clients on 127.0.0.1.
//!
//! - Debian's `opentracker` with a libtorrent seeder (`interop/lt_tracker_peer.py`, which
//!   meets peers through trackers only): `bitpeer download` with nothing but the torrent's
//!   `http://` or `udp://` announce URL finds the seeder and downloads the right bytes.
//! - A tracker that fails (nothing listening) or answers garbage does not stop a download
//!   that has another way to its peers, and is reported once, not at every retry.
//! - LSD: `bitpeer seed` and `bitpeer download`, given no peer and no tracker, find each
//!   other by multicast on loopback.
//!
//! The tests fail when opentracker or libtorrent is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const OPENTRACKER: &str = "/usr/bin/opentracker";

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn opentracker_available() -> bool {
    if Path::new(OPENTRACKER).exists() {
        return true;
    }
    assert!(
        std::env::var_os("BITPEER_SKIP_INTEROP").is_some(),
        "{OPENTRACKER} is missing: `apt-get install opentracker` (or BITPEER_SKIP_INTEROP=1)"
    );
    false
}

/// opentracker on free 127.0.0.1 ports, tracking only `info_hash` (its whitelist), killed
/// by its guard.
struct Opentracker {
    _proc: Proc,
    _dir: tempfile::TempDir,
    tcp: u16,
    udp: u16,
}

impl Opentracker {
    fn start(info_hash: [u8; 20]) -> Opentracker {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("whitelist"), hex(&info_hash) + "\n").unwrap();
        // opentracker may drop to `nobody`: keep the folder readable.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (tcp, udp) = (free_tcp_port(), free_udp_port());
        let mut cmd = Command::new(OPENTRACKER);
        cmd.current_dir(dir.path())
            .args(["-i", "127.0.0.1", "-p", &tcp.to_string()])
            .args(["-P", &udp.to_string()])
            .arg("-w")
            .arg(dir.path().join("whitelist"));
        let proc = Proc::spawn(cmd, Duration::from_secs(300));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", tcp)).is_err() {
            assert!(
                Instant::now() < deadline,
                "opentracker did not listen on 127.0.0.1:{tcp} in 10 s: {}",
                proc.explain()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // It listens before it has read its whitelist: wait until it takes our info-hash.
        while !announce_accepted(tcp, &info_hash) {
            assert!(
                Instant::now() < deadline,
                "opentracker did not accept the whitelisted info-hash in 10 s: {}",
                proc.explain()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Opentracker {
            _proc: proc,
            _dir: dir,
            tcp,
            udp,
        }
    }
}

/// One HTTP announce (as a stopped peer, so it leaves nothing behind); whether the tracker
/// answered without a `failure reason`.
fn announce_accepted(port: u16, info_hash: &[u8; 20]) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let ih: String = info_hash.iter().map(|b| format!("%{b:02x}")).collect();
    let req = format!(
        "GET /announce?info_hash={ih}&peer_id=-XX0000-probeprobe00&port=1&uploaded=0&\
         downloaded=0&left=0&compact=1&event=stopped HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut body);
    let text = String::from_utf8_lossy(&body);
    text.contains("200") && text.contains("interval") && !text.contains("failure")
}

/// A single-file torrent of `len` pseudo-random bytes in `root/seed/NAME`, announcing to
/// `trackers`. Returns (torrent, data folder).
fn make_torrent(root: &Path, name: &str, len: usize, trackers: &[String]) -> (PathBuf, PathBuf) {
    let seed_dir = root.join("seed");
    write_random(&seed_dir.join(name), len as u64 ^ 0x5eed, len);
    let torrent = root.join(format!("{name}.torrent"));
    let mut extra = vec!["--piece-length", "32768", "--force"];
    for t in trackers {
        extra.extend(["--tracker", t.as_str()]);
    }
    bitpeer_create(&seed_dir.join(name), &torrent, &extra);
    (torrent, seed_dir)
}

/// `lt_tracker_peer.py TORRENT SAVE --seed --tracker URL`: a libtorrent seeder that
/// announces to `url` only. Waits for its port line.
fn spawn_lt_tracker_seeder(torrent: &Path, save: &Path, url: &str) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg(interop_dir().join("lt_tracker_peer.py"))
        .arg(torrent)
        .arg(save)
        .args(["--seed", "--tracker", url])
        .args(["--deadline", &(LT_PEER_TIMEOUT.as_secs() - 10).to_string()]);
    let mut p = Proc::spawn(cmd, LT_PEER_TIMEOUT);
    p.wait_line(Duration::from_secs(60), |l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v["port"].as_u64())
    });
    p
}

/// A bitpeer download with no `--peer` and LSD off: the torrent's trackers are its only
/// way to meet the seeder.
fn download_through_trackers(torrent: &Path, out: &Path) -> Proc {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download").arg(torrent).arg("-o").arg(out).args([
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--no-lsd",
    ]);
    Proc::spawn(cmd, DOWNLOAD_TIMEOUT)
}

fn libtorrent_seeds_bitpeer_finds_it_through_opentracker(udp: bool) {
    if !opentracker_available() || !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let name = if udp { "via-udp.bin" } else { "via-http.bin" };
    // The info-hash does not depend on the announce URL: make the torrent once to learn it,
    // start opentracker with it whitelisted, then make it again with the tracker's URL.
    let (probe, _) = make_torrent(tmp.path(), name, 3_000_017, &[]);
    let tracker = Opentracker::start(info_hash_v1(&probe));
    let url = if udp {
        format!("udp://127.0.0.1:{}/announce", tracker.udp)
    } else {
        format!("http://127.0.0.1:{}/announce", tracker.tcp)
    };
    let (torrent, seed_dir) = make_torrent(tmp.path(), name, 3_000_017, std::slice::from_ref(&url));
    assert_eq!(info_hash_v1(&torrent), info_hash_v1(&probe));

    let _seeder = spawn_lt_tracker_seeder(&torrent, &seed_dir, &url);
    let out = tmp.path().join("out");
    let started = Instant::now();
    let mut dl = download_through_trackers(&torrent, &out);
    let last = finish_download(&mut dl, DOWNLOAD_TIMEOUT);
    eprintln!(
        "{url}: downloaded in {:.1} s: {last}",
        started.elapsed().as_secs_f64()
    );
    assert_same_tree(&seed_dir.join(name), &out.join(name));
    assert!(
        !dl.stderr_str().contains("warning: tracker"),
        "the tracker worked, yet bitpeer warned: {}",
        dl.explain()
    );
}

#[test]
fn libtorrent_seeds_bitpeer_finds_it_through_opentracker_http() {
    libtorrent_seeds_bitpeer_finds_it_through_opentracker(false);
}

#[test]
fn libtorrent_seeds_bitpeer_finds_it_through_opentracker_udp() {
    libtorrent_seeds_bitpeer_finds_it_through_opentracker(true);
}

/// A server that answers every HTTP request with garbage and closes. Returns its port and
/// the start of each request it answered.
fn garbage_http_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let answered = Arc::new(Mutex::new(Vec::new()));
    let log = answered.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        // Bounded: a test run makes a handful of announces.
        for _ in 0..200 {
            let Ok((mut s, _)) = l.accept() else { return };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nd8:intervali1800e5:p");
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).into_owned());
        }
    });
    (port, answered)
}

#[test]
fn failing_trackers_are_reported_once_and_do_not_stop_the_download() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}/announce", free_tcp_port());
    let (garbage_port, garbage_answers) = garbage_http_server();
    let garbage = format!("http://127.0.0.1:{garbage_port}/announce");
    // (A silent UDP tracker would hold the announcer for its retransmissions, minutes,
    // before the others are retried; the tracker crate's UDP tests cover that case.)
    let trackers = [dead.clone(), garbage.clone()];
    let (torrent, seed_dir) = make_torrent(tmp.path(), "data.bin", 1_000_003, &trackers);
    let (_seeder, addr) = spawn_bitpeer_seed(&torrent, &seed_dir, &[]);
    let out = tmp.path().join("out");
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download")
        .arg(&torrent)
        .arg("-o")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--json", "--no-lsd", "--seed"])
        .args(["--peer", &addr]);
    let mut dl = Proc::spawn(cmd, DOWNLOAD_TIMEOUT);
    // Complete, and then seeding for a while, so the trackers are retried meanwhile.
    dl.wait_line(DOWNLOAD_TIMEOUT, |l| {
        (progress_line(l)["state"] == "complete").then_some(())
    });
    assert_same_tree(&seed_dir.join("data.bin"), &out.join("data.bin"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let warned = |p: &Proc, url: &str| {
        p.stderr_str()
            .lines()
            .filter(|l| l.starts_with("warning: tracker ") && l.contains(url))
            .count()
    };
    while warned(&dl, &dead) == 0 || warned(&dl, &garbage) == 0 {
        assert!(
            Instant::now() < deadline,
            "no warning about the failing trackers: {}",
            dl.explain()
        );
        dl.assert_no_panic();
        std::thread::sleep(Duration::from_millis(200));
    }
    // bitpeer retries the garbage tracker (after a 15 s backoff); the retry fails the same
    // way and stays quiet. (The seeder announces there too: count the downloader's own.)
    let dl_port = download_listen_addr(&mut dl)
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let ours = format!("&port={dl_port}&");
    let deadline = Instant::now() + Duration::from_secs(60);
    while garbage_answers
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.contains(&ours))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the garbage tracker was not retried: {}",
            dl.explain()
        );
        dl.assert_no_panic();
        std::thread::sleep(Duration::from_millis(200));
    }
    // A second warning would be printed as soon as the answer is read: a second is ample.
    let _ = dl.next_line(Duration::from_secs(1));
    dl.assert_no_panic();
    assert!(
        dl.try_status().is_none(),
        "bitpeer exited: {}",
        dl.explain()
    );
    assert_eq!(warned(&dl, &dead), 1, "{}", dl.explain());
    assert_eq!(warned(&dl, &garbage), 1, "{}", dl.explain());
}

#[test]
fn bitpeer_nodes_find_each_other_through_local_service_discovery() {
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, seed_dir) = make_torrent(tmp.path(), "lsd.bin", 2_000_003, &[]);
    // LSD on (the default): the seeder hears the downloader's announce and dials it.
    let (_seeder, _) = spawn_bitpeer_seed(&torrent, &seed_dir, &[]);
    let out = tmp.path().join("out");
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download").arg(&torrent).arg("-o").arg(&out).args([
        "--listen",
        "127.0.0.1:0",
        "--json",
    ]);
    let mut dl = Proc::spawn(cmd, DOWNLOAD_TIMEOUT);
    let last = finish_download(&mut dl, Duration::from_secs(60));
    assert_same_tree(&seed_dir.join("lsd.bin"), &out.join("lsd.bin"));
    assert!(
        !dl.stderr_str().contains("local peer discovery is off"),
        "{}",
        dl.explain()
    );
    eprintln!("found through LSD: {last}");
}
