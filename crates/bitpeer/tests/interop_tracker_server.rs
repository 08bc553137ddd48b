//! `bitpeer tracker` as the only way real clients meet: each test starts our tracker on
//! 127.0.0.1 (ports picked by the OS), gives real clients nothing but its URL (no peers, no
//! DHT entry point, no LSD), and checks that the download completes byte for byte.
//!
//! - libtorrent seeder and libtorrent leecher through `http://`;
//! - aria2 downloads from a libtorrent seeder through `udp://`, and through `http://` (aria2
//!   sends UDP tracker requests from its DHT socket, so its DHT is on, with no entry point);
//! - Transmission (transmission-cli) seeds, libtorrent finds it and downloads. Transmission
//!   drops 127.x addresses a tracker hands it, so it is the one that is found.
//!
//! Interop tests are skipped when BITPEER_SKIP_INTEROP=1; a missing client fails them
//! otherwise. `tracker_cli_answers_and_survives_garbage` does not need a real client and
//! always runs.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tracker::client::udp::{self, UdpResponse};
use tracker::proto::{AnnounceEvent, AnnounceRequest, AnnounceResponse};

/// Deadline of a tracker process started by a test.
const TRACKER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a real client may take to download the test file through the tracker.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(150);

fn skip_interop() -> bool {
    if std::env::var("BITPEER_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("skipping interop test (BITPEER_SKIP_INTEROP=1)");
        return true;
    }
    false
}

/// Panics with a clear message when `prog --version` cannot be run.
fn require(prog: &str, package: &str) {
    let mut cmd = Command::new(prog);
    cmd.arg("--version");
    let ok = matches!(try_run(cmd, CLIENT_TIMEOUT), Ok(o) if o.status.success());
    assert!(
        ok,
        "{prog} cannot be run: install it (`apt-get install {package}`, scripts/test.sh does) \
         or set BITPEER_SKIP_INTEROP=1"
    );
}

/// A running `bitpeer tracker` and the endpoints it printed.
struct Tracker {
    proc: Proc,
    /// `http://127.0.0.1:P/announce`
    http: String,
    /// `udp://127.0.0.1:P`
    udp: String,
}

impl Tracker {
    fn spawn(extra: &[&str]) -> Tracker {
        let mut cmd = Command::new(bitpeer_bin());
        cmd.args(["tracker", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"])
            .args(extra);
        let mut proc = Proc::spawn(cmd, TRACKER_TIMEOUT);
        let (mut http, mut udp) = (None, None);
        while http.is_none() || udp.is_none() {
            let line = proc.wait_line(Duration::from_secs(60), |l| Some(l.to_owned()));
            if let Some(u) = line.strip_prefix("http tracker listening on ") {
                http = Some(u.trim().to_owned());
            } else if let Some(u) = line.strip_prefix("udp tracker listening on ") {
                udp = Some(u.trim().to_owned());
            } else {
                panic!("unexpected tracker line {line:?}: {}", proc.explain());
            }
        }
        let (http, udp) = (http.unwrap(), udp.unwrap());
        assert!(
            http.starts_with("http://127.0.0.1:") && http.ends_with("/announce"),
            "{http}"
        );
        assert!(udp.starts_with("udp://127.0.0.1:"), "{udp}");
        Tracker { proc, http, udp }
    }

    fn http_addr(&self) -> SocketAddr {
        let rest = self.http.strip_prefix("http://").unwrap();
        rest.split('/').next().unwrap().parse().unwrap()
    }

    fn udp_addr(&self) -> SocketAddr {
        self.udp.strip_prefix("udp://").unwrap().parse().unwrap()
    }

    /// `GET path?query` over HTTP/1.1; returns the status code and the body.
    fn get(&self, target: &str) -> (u16, Vec<u8>) {
        http_get(self.http_addr(), target)
    }

    /// (seeders, completed, leechers) for `info_hash`, by an HTTP scrape.
    fn scrape(&self, info_hash: &[u8; 20]) -> (i64, i64, i64) {
        let (status, body) = self.get(&format!("/scrape?info_hash={}", escape(info_hash)));
        assert_eq!(status, 200);
        let v = bencode::decode(&body)
            .unwrap_or_else(|e| panic!("scrape answer is not bencode ({e}): {body:?}"));
        let files = v
            .as_dict()
            .and_then(|d| d.get(b"files"))
            .and_then(|f| f.as_dict());
        let entry = files
            .and_then(|f| f.get(info_hash))
            .and_then(|e| e.as_dict())
            .unwrap_or_else(|| panic!("scrape answer without our info-hash: {v:?}"));
        let n = |k: &[u8]| entry.get(k).and_then(|x| x.as_int()).unwrap_or(-1);
        (n(b"complete"), n(b"downloaded"), n(b"incomplete"))
    }

    /// The completed downloads the tracker counted for `info_hash`, once it counts any (or
    /// after 30 s).
    fn completed(&self, info_hash: &[u8; 20]) -> i64 {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let n = self.scrape(info_hash).1;
            if n >= 1 || Instant::now() >= end {
                return n;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the tracker knows at least one seeder of `info_hash`.
    fn wait_for_seeder(&mut self, info_hash: &[u8; 20], who: &mut Proc) {
        let end = Instant::now() + Duration::from_secs(90);
        loop {
            let (seeders, _, _) = self.scrape(info_hash);
            if seeders >= 1 {
                return;
            }
            assert!(
                who.try_status().is_none(),
                "the seeder exited before it announced: {}",
                who.explain()
            );
            assert!(
                Instant::now() < end,
                "no seeder announced to our tracker within 90 s\nseeder: {}\ntracker: {}",
                who.explain(),
                self.proc.explain()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

fn http_get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read the HTTP answer");
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&resp)));
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, resp[split + 4..].to_vec())
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One file of pseudo-random bytes in `dir/name` and a torrent of it naming `tracker`.
fn make_torrent(root: &Path, tracker: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = root.join("seed").join("tracked.bin");
    write_random(&data, 0x7ac4, 3 * 1024 * 1024 + 12_345);
    let torrent = root.join("tracked.torrent");
    bitpeer_create(&data, &torrent, &["--tracker", tracker]);
    (data, torrent)
}

fn spawn_lt(torrent: &Path, save: &Path, tracker: &str, seed: bool) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg(interop_dir().join("lt_tracker_peer.py"))
        .arg(torrent)
        .arg(save)
        .args(["--tracker", tracker])
        .args(["--deadline", &DOWNLOAD_TIMEOUT.as_secs().to_string()]);
    if seed {
        cmd.arg("--seed");
    }
    let mut p = Proc::spawn(cmd, DOWNLOAD_TIMEOUT + Duration::from_secs(60));
    p.wait_line(Duration::from_secs(60), |l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v["port"].as_u64())
    });
    p
}

/// Waits for an `lt_tracker_peer.py` leecher to say it is done, and checks that it is.
fn expect_lt_done(leecher: &mut Proc, tracker: &Tracker, others: &Proc) {
    let v = leecher.wait_line(DOWNLOAD_TIMEOUT + Duration::from_secs(30), |l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .filter(|v| v.get("done").is_some())
    });
    assert_eq!(
        v["done"],
        true,
        "libtorrent did not finish through our tracker: {v}\nleecher: {}\nseeder: {}\ntracker: {}",
        leecher.explain(),
        others.explain(),
        tracker.proc.explain()
    );
}

#[test]
fn libtorrent_peers_meet_through_http_tracker() {
    if skip_interop() || !libtorrent_available() {
        return;
    }
    let mut tracker = Tracker::spawn(&["--interval", "10"]);
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), &tracker.http);
    let ih = info_hash_v1(&torrent);
    let mut seeder = spawn_lt(&torrent, &tmp.path().join("seed"), &tracker.http, true);
    tracker.wait_for_seeder(&ih, &mut seeder);
    let leech_dir = tmp.path().join("leech");
    let mut leecher = spawn_lt(&torrent, &leech_dir, &tracker.http, false);
    expect_lt_done(&mut leecher, &tracker, &seeder);
    assert_same_tree(&data, &leech_dir.join("tracked.bin"));
    // The leecher told the tracker it completed.
    assert_eq!(tracker.completed(&ih), 1, "no completed event was counted");
    tracker.proc.assert_no_panic();
}

/// aria2 downloads from a libtorrent seeder that it can only learn of from our tracker at
/// `pick(tracker)` (the torrent's own tracker list is dropped with `--bt-exclude-tracker`).
fn aria2_from_libtorrent(pick: fn(&Tracker) -> String) {
    if skip_interop() || !libtorrent_available() {
        return;
    }
    require("aria2c", "aria2");
    let mut tracker = Tracker::spawn(&["--interval", "10"]);
    let url = pick(&tracker);
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), &url);
    let ih = info_hash_v1(&torrent);
    // libtorrent announces to the same URL; the HTTP scrape sees the same swarm.
    let mut seeder = spawn_lt(&torrent, &tmp.path().join("seed"), &url, true);
    tracker.wait_for_seeder(&ih, &mut seeder);
    let out = tmp.path().join("aria2");
    let mut cmd = Command::new("aria2c");
    cmd.arg("-d")
        .arg(&out)
        .args([
            "--seed-time=0",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            // aria2 sends UDP tracker requests from its DHT socket; no entry point is
            // given, so the DHT itself finds nobody.
            "--enable-dht=true",
            "--enable-dht6=false",
            "--bt-exclude-tracker=*",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--follow-torrent=false",
            "--bt-tracker-connect-timeout=10",
            "--bt-tracker-timeout=10",
        ])
        .arg(format!("--bt-tracker={url}"))
        .arg(format!("--listen-port={}", free_tcp_port()))
        .arg(format!("--dht-listen-port={}", free_udp_port()))
        .arg(format!(
            "--dht-file-path={}",
            tmp.path().join("dht.dat").display()
        ))
        .arg(&torrent);
    let o = run(cmd, DOWNLOAD_TIMEOUT);
    assert!(
        o.status.success(),
        "aria2c failed through our tracker at {url}: {}\nseeder: {}\ntracker: {}",
        o.explain(),
        seeder.explain(),
        tracker.proc.explain()
    );
    assert_same_tree(&data, &out.join("tracked.bin"));
    tracker.proc.assert_no_panic();
}

#[test]
fn aria2_downloads_from_libtorrent_through_udp_tracker() {
    aria2_from_libtorrent(|t| t.udp.clone());
}

#[test]
fn aria2_downloads_from_libtorrent_through_http_tracker() {
    aria2_from_libtorrent(|t| t.http.clone());
}

/// A Transmission seeder (transmission-cli) announcing to `tracker` only; returned once
/// the tracker counts it as a seeder. Transmission drops 127.x peers a tracker hands it, so
/// on loopback it can only be the one others find.
fn spawn_transmission_seeder(tmp: &Path, torrent: &Path, tracker: &mut Tracker) -> Proc {
    require("transmission-cli", "transmission-cli");
    let config = tmp.join("transmission");
    std::fs::create_dir_all(&config).unwrap();
    let port = free_tcp_port();
    let settings = serde_json::json!({
        "dht-enabled": false,
        "lpd-enabled": false,
        "pex-enabled": false,
        "utp-enabled": false,
        "port-forwarding-enabled": false,
        "peer-port": port,
        "peer-port-random-on-start": false,
        "encryption": 1,
        "ratio-limit-enabled": false,
        "idle-seeding-limit-enabled": false,
        "speed-limit-up-enabled": false,
    });
    std::fs::write(config.join("settings.json"), settings.to_string()).unwrap();
    let mut cmd = Command::new("transmission-cli");
    cmd.arg("-g")
        .arg(&config)
        .arg("-w")
        .arg(tmp.join("seed"))
        .args(["-p", &port.to_string(), "-M", "-v"])
        .arg(torrent);
    let mut seeder = Proc::spawn(cmd, DOWNLOAD_TIMEOUT + Duration::from_secs(60));
    tracker.wait_for_seeder(&info_hash_v1(torrent), &mut seeder);
    seeder
}

#[test]
fn libtorrent_finds_transmission_seeder_through_http_tracker() {
    if skip_interop() || !libtorrent_available() {
        return;
    }
    let mut tracker = Tracker::spawn(&["--interval", "10"]);
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), &tracker.http);
    let seeder = spawn_transmission_seeder(tmp.path(), &torrent, &mut tracker);
    let leech_dir = tmp.path().join("leech");
    let mut leecher = spawn_lt(&torrent, &leech_dir, &tracker.http, false);
    expect_lt_done(&mut leecher, &tracker, &seeder);
    assert_same_tree(&data, &leech_dir.join("tracked.bin"));
    tracker.proc.assert_no_panic();
}

#[test]
fn bitpeer_finds_transmission_seeder_through_http_tracker() {
    if skip_interop() {
        return;
    }
    let mut tracker = Tracker::spawn(&["--interval", "10"]);
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), &tracker.http);
    let _seeder = spawn_transmission_seeder(tmp.path(), &torrent, &mut tracker);
    let out = tmp.path().join("out");
    let mut dl = bitpeer_download_through_trackers(&torrent, &out);
    finish_download(&mut dl, DOWNLOAD_TIMEOUT);
    assert_same_tree(&data, &out.join("tracked.bin"));
    tracker.proc.assert_no_panic();
}

/// The binary itself, no real client: the printed endpoints answer, garbage gets no UDP
/// reply and a `failure reason` over HTTP, the server keeps serving, and `--allow` works.
#[test]
fn tracker_cli_answers_and_survives_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = [0x11u8; 20];
    let allow = tmp.path().join("allow.txt");
    std::fs::write(&allow, format!("# test\n{}\n\n", "11".repeat(20))).unwrap();
    let tracker = Tracker::spawn(&["--allow", allow.to_str().unwrap(), "--interval", "60"]);

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let to = tracker.udp_addr();
    let mut buf = [0u8; 2048];
    // Garbage, a short packet, a connect without the magic, an announce with a made-up
    // connection id, an oversized packet: no reply to any.
    let mut fake_announce = vec![0u8; 98];
    fake_announce[8..12].copy_from_slice(&1u32.to_be_bytes());
    let junk: Vec<Vec<u8>> = vec![
        b"hello tracker".to_vec(),
        vec![0; 15],
        [&[0u8; 8][..], &[0, 0, 0, 0, 0, 0, 0, 1]].concat(),
        fake_announce,
        vec![0x41; 4000],
    ];
    for j in &junk {
        sock.send_to(j, to).unwrap();
        assert!(
            sock.recv_from(&mut buf).is_err(),
            "reply to {} garbage bytes",
            j.len()
        );
    }
    // A real connect still gets an answer.
    let mut connect = 0x0417_2710_1980u64.to_be_bytes().to_vec();
    connect.extend_from_slice(&0u32.to_be_bytes());
    connect.extend_from_slice(&0xfeedu32.to_be_bytes());
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&connect, to).unwrap();
    let (n, _) = sock.recv_from(&mut buf).expect("no answer to a connect");
    assert_eq!(n, 16);
    assert_eq!(&buf[..8], &[0, 0, 0, 0, 0, 0, 0xfe, 0xed]);

    // HTTP: bad queries get a failure reason with status 200.
    let peer = "-XX0001-abcdefghijkl";
    for (query, reason) in [
        (String::new(), "missing info_hash"),
        (
            format!("info_hash={}", escape(&[1; 19])),
            "invalid info_hash",
        ),
        (
            format!(
                "info_hash={}&peer_id={peer}&port=99999&left=0",
                escape(&allowed)
            ),
            "invalid port",
        ),
        (
            format!("info_hash={}", "%41".repeat(3000)),
            "request too long",
        ),
        (
            format!(
                "info_hash={}&peer_id={peer}&port=1&left=0",
                escape(&[2; 20])
            ),
            "not allowed",
        ),
    ] {
        let (status, body) = tracker.get(&format!("/announce?{query}"));
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.starts_with("d14:failure reason") && text.contains(reason),
            "{query:.60}: expected a failure reason with {reason:?}, got {text}"
        );
    }
    // An allowed info-hash is tracked.
    let q = format!(
        "info_hash={}&peer_id={peer}&port=6881&left=0",
        escape(&allowed)
    );
    let (status, body) = tracker.get(&format!("/announce?{q}"));
    assert_eq!(status, 200);
    let v = bencode::decode(&body).unwrap();
    assert_eq!(
        v.as_dict()
            .unwrap()
            .get(b"complete")
            .and_then(|c| c.as_int()),
        Some(1),
        "{v:?}"
    );
    assert_eq!(tracker.scrape(&allowed), (1, 0, 0));
    let (status, _) = tracker.get("/nothing-here");
    assert_eq!(status, 404);
}

/// Bad command lines: one `error:` line on stderr and exit 1.
#[test]
fn tracker_cli_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let bad_allow = tmp.path().join("allow.txt");
    std::fs::write(&bad_allow, "not-a-hash\n").unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    for (args, what) in [
        (vec!["--http", "127.0.0.1:99999"], "invalid --http address"),
        (
            vec!["--allow", bad_allow.to_str().unwrap()],
            "not an info-hash",
        ),
        (
            vec!["--http", taken_addr.as_str()],
            "cannot listen for HTTP",
        ),
    ] {
        let mut all = vec!["tracker", "--udp", "127.0.0.1:0"];
        all.extend(args.iter().copied());
        let o = bitpeer(&all, None);
        assert_eq!(o.code(), Some(1), "{all:?}: {}", o.explain());
        let err = o.stderr_str();
        assert!(
            err.starts_with("error: ") && err.contains(what) && err.trim_end().lines().count() == 1,
            "{all:?}: {err}"
        );
    }
}

/// `bitpeer download TORRENT` with no peer, LSD and DHT off: the torrent's tracker (ours)
/// is its only way to the seeder.
fn bitpeer_download_through_trackers(torrent: &Path, out: &Path) -> Proc {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download").arg(torrent).arg("-o").arg(out).args([
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--no-lsd",
        "--no-dht",
    ]);
    Proc::spawn(cmd, DOWNLOAD_TIMEOUT)
}

/// A libtorrent seeder of `torrent` (data in `root/seed`) announces to `tracker`'s UDP
/// endpoint; `bitpeer download`, with nothing but the tracker, must find it and get every
/// byte into `root/out`.
fn bitpeer_from_libtorrent_through(
    tracker: &mut Tracker,
    root: &Path,
    data: &Path,
    torrent: &Path,
) {
    let ih = info_hash_v1(torrent);
    let mut seeder = spawn_lt(torrent, &root.join("seed"), &tracker.udp, true);
    tracker.wait_for_seeder(&ih, &mut seeder);
    let out = root.join("out");
    let mut dl = bitpeer_download_through_trackers(torrent, &out);
    finish_download(&mut dl, DOWNLOAD_TIMEOUT);
    assert_same_tree(data, &out.join("tracked.bin"));
}

#[test]
fn bitpeer_finds_libtorrent_through_our_udp_tracker() {
    if skip_interop() || !libtorrent_available() {
        return;
    }
    let mut tracker = Tracker::spawn(&["--interval", "10"]);
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), &tracker.udp);
    let ih = info_hash_v1(&torrent);
    bitpeer_from_libtorrent_through(&mut tracker, tmp.path(), &data, &torrent);
    // bitpeer said `completed` (and `stopped` on its way out).
    assert_eq!(
        tracker.completed(&ih),
        1,
        "bitpeer's completed event was not counted"
    );
    tracker.proc.assert_no_panic();
}

#[test]
fn libtorrent_finds_bitpeer_through_our_http_tracker() {
    if skip_interop() || !libtorrent_available() {
        return;
    }
    let mut tracker = Tracker::spawn(&["--interval", "10"]);
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), &tracker.http);
    let ih = info_hash_v1(&torrent);
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("seed")
        .arg(&torrent)
        .arg("--data")
        .arg(tmp.path().join("seed"))
        .args(["--listen", "127.0.0.1:0", "--no-lsd", "--no-dht"]);
    let mut seeder = Proc::spawn(cmd, DOWNLOAD_TIMEOUT + Duration::from_secs(60));
    tracker.wait_for_seeder(&ih, &mut seeder);
    let leech_dir = tmp.path().join("leech");
    let mut leecher = spawn_lt(&torrent, &leech_dir, &tracker.http, false);
    expect_lt_done(&mut leecher, &tracker, &seeder);
    assert_same_tree(&data, &leech_dir.join("tracked.bin"));
    seeder.assert_no_panic();
}

/// A magnet link's `tr=` tracker is used: bitpeer, with no DHT, no LSD and no peer, meets the
/// libtorrent seeder through it, fetches the metadata (BEP 9) and then the data.
#[test]
fn bitpeer_downloads_a_magnet_link_through_its_tr_tracker() {
    if skip_interop() || !libtorrent_available() {
        return;
    }
    let mut tracker = Tracker::spawn(&["--interval", "10"]);
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), &tracker.udp);
    let ih = info_hash_v1(&torrent);
    let mut seeder = spawn_lt(&torrent, &tmp.path().join("seed"), &tracker.udp, true);
    tracker.wait_for_seeder(&ih, &mut seeder);
    let hex: String = ih.iter().map(|b| format!("{b:02x}")).collect();
    let link = format!("magnet:?xt=urn:btih:{hex}&tr={}", tracker.udp);
    let out = tmp.path().join("out");
    let mut dl = bitpeer_download_through_trackers(Path::new(&link), &out);
    finish_download(&mut dl, DOWNLOAD_TIMEOUT);
    assert_same_tree(&data, &out.join("tracked.bin"));
}

/// A BEP 15 connect from `sock` to `to`; the connection id.
fn udp_connect(sock: &UdpSocket, to: SocketAddr) -> u64 {
    let mut buf = [0u8; 64];
    for attempt in 0..10u32 {
        sock.send_to(&udp::encode_connect(attempt), to).unwrap();
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end {
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && let Ok((t, UdpResponse::Connect { connection_id })) =
                    udp::decode_response(&buf[..n], false, 0)
                && t == attempt
            {
                return connection_id;
            }
        }
    }
    panic!("no answer to 10 UDP connects to {to}");
}

/// A BEP 15 announce (event `started`, numwant 200).
fn udp_announce_packet(
    cid: u64,
    tid: u32,
    info_hash: &[u8; 20],
    peer_id: &[u8; 20],
    left: u64,
    port: u16,
) -> [u8; udp::ANNOUNCE_LEN] {
    let req = AnnounceRequest {
        info_hash: *info_hash,
        peer_id: *peer_id,
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: AnnounceEvent::Started,
        numwant: Some(200),
        key: tid,
    };
    udp::encode_announce(cid, tid, &req)
}

/// One announce from `sock`, resent until answered (10 tries).
fn udp_announce_once(
    sock: &UdpSocket,
    to: SocketAddr,
    ih: &[u8; 20],
    peer_id: &[u8; 20],
    left: u64,
    port: u16,
) -> UdpResponse {
    let cid = udp_connect(sock, to);
    let mut buf = [0u8; 4096];
    for tid in 0..10u32 {
        sock.send_to(&udp_announce_packet(cid, tid, ih, peer_id, left, port), to)
            .unwrap();
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end {
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && let Ok((t, answer)) = udp::decode_response(&buf[..n], false, 1000)
                && t == tid
            {
                return answer;
            }
        }
    }
    panic!("no answer to 10 UDP announces to {to}");
}

/// One host (127.0.0.2, another address of the loopback) announces 50,000 made-up peers to
/// one swarm of a `bitpeer tracker` with its default caps. The tracker keeps at most 4 of
/// them (`--max-peers-per-ip`), so an honest seeder and leecher on 127.0.0.1 still get in
/// and find each other; with libtorrent available, a libtorrent seeder and `bitpeer
/// download` then meet through the tracker and the download completes byte for byte.
/// (Before the cap, the 50,000 filled the swarm and every newcomer was told "swarm is
/// full" until they expired.)
#[test]
fn one_host_cannot_fill_a_swarm() {
    const FLOOD: u32 = 50_000;
    const WINDOW: u32 = 64;
    let mut tracker = Tracker::spawn(&["--interval", "10"]);
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = make_torrent(tmp.path(), &tracker.udp);
    let ih = info_hash_v1(&torrent);
    let to = tracker.udp_addr();

    let attacker = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2 (loopback)");
    attacker
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let (mut answered, mut refused, mut last_refusal) = (0u32, 0u32, String::new());
    let mut buf = [0u8; 4096];
    let mut cid = udp_connect(&attacker, to);
    let mut next = 0u32;
    while next < FLOOD {
        if next.is_multiple_of(10_000) {
            cid = udp_connect(&attacker, to); // connection ids last a minute or two
        }
        let window: Vec<u32> = (next..(next + WINDOW).min(FLOOD)).collect();
        let mut waiting: std::collections::HashSet<u32> = window.iter().copied().collect();
        for _ in 0..10 {
            for &i in &waiting {
                let mut peer_id = *b"-XX0001-flood.......";
                peer_id[12..16].copy_from_slice(&i.to_be_bytes());
                let p = udp_announce_packet(cid, i, &ih, &peer_id, 1000, 1 + (i % 65_000) as u16);
                attacker.send_to(&p, to).unwrap();
            }
            let end = Instant::now() + Duration::from_secs(1);
            while !waiting.is_empty() && Instant::now() < end {
                let Ok((n, _)) = attacker.recv_from(&mut buf) else {
                    break;
                };
                if let Ok((tid, answer)) = udp::decode_response(&buf[..n], false, 1000)
                    && waiting.remove(&tid)
                {
                    answered += 1;
                    if let UdpResponse::Error(why) = answer {
                        refused += 1;
                        last_refusal = why;
                    }
                }
            }
            if waiting.is_empty() {
                break;
            }
        }
        assert!(
            waiting.is_empty(),
            "{} flood announces never answered",
            waiting.len()
        );
        next += WINDOW;
        tracker.proc.assert_no_panic();
    }
    eprintln!(
        "{FLOOD} announces from 127.0.0.2 in {:.1} s: {answered} answered, {refused} refused \
         ({last_refusal:?})",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(answered, FLOOD);
    // Memory stays small: the flood holds a handful of places, not the swarm.
    let rss = peak_rss_mib(tracker.proc.pid());
    eprintln!("tracker peak RSS after the flood: {rss} MiB");
    assert!(rss < 64, "the tracker's peak RSS reached {rss} MiB");
    let (seeders, _, leechers) = tracker.scrape(&ih);
    assert!(
        seeders + leechers <= 4,
        "one host holds {leechers} places in the swarm"
    );

    // Honest peers on 127.0.0.1: a seeder gets in, and a leecher is handed it.
    let seeder_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    seeder_sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let seeder_port = seeder_sock.local_addr().unwrap().port();
    let answer = udp_announce_once(
        &seeder_sock,
        to,
        &ih,
        b"-XX0001-honest-seedr",
        0,
        seeder_port,
    );
    assert!(
        matches!(answer, UdpResponse::Announce(_)),
        "the honest seeder was refused: {answer:?}"
    );
    let leecher_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    leecher_sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let answer = udp_announce_once(&leecher_sock, to, &ih, b"-XX0001-honest-leech", 5, 7);
    let UdpResponse::Announce(AnnounceResponse { peers, .. }) = answer else {
        panic!("the honest leecher was refused: {answer:?}");
    };
    assert!(
        peers.contains(&SocketAddr::from(([127, 0, 0, 1], seeder_port))),
        "the honest leecher was not handed the honest seeder: {peers:?}"
    );
    assert!(peers.len() <= 5, "{peers:?}");

    // Real clients through the flooded tracker.
    if skip_interop() || !libtorrent_available() {
        return;
    }
    bitpeer_from_libtorrent_through(&mut tracker, tmp.path(), &data, &torrent);
    tracker.proc.assert_no_panic();
}
