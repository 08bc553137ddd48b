//! bitpeer ↔ bitpeer over WebRTC only, on 127.0.0.1 (str0m gathers loopback host
//! candidates, so no network namespace is needed): a seeder and a leecher that know of each
//! other only through `bitpeer tracker --ws` (no DHT, no LSD, no TCP peer given; the
//! WebSocket tracker relays offers and answers, never addresses) move a file byte for byte
//! over a data channel. Before the side that made the offer sent its BitTorrent handshake
//! first, both sides waited for the other's and this stalled.
//! - The daemon: a torrent added through `/api/v1` with `webtorrent_trackers` is seeded to a
//!   bitpeer leecher over WebRTC only; a magnet link whose `tr` is a `ws://` tracker is
//!   fetched (metadata, then pieces) from a bitpeer seeder over WebRTC only.

mod common;

use std::time::Duration;

use common::{Proc, bitpeer_bin};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(90);

/// `bitpeer tracker --ws` on 127.0.0.1; its `ws://` URL.
fn ws_tracker() -> (Proc, String) {
    let mut cmd = std::process::Command::new(bitpeer_bin());
    cmd.args([
        "tracker",
        "--no-http",
        "--udp",
        "127.0.0.1:0",
        "--ws",
        "127.0.0.1:0",
        "--ws-interval",
        "10",
    ]);
    let mut p = Proc::spawn(cmd, TIMEOUT + Duration::from_secs(30));
    let url = p.wait_line(Duration::from_secs(20), |l| {
        l.strip_prefix("websocket tracker listening on ")
            .map(str::to_owned)
    });
    (p, url)
}

/// `bitpeer ARGS` reachable only over WebRTC through the tracker at `url`.
fn bitpeer_webrtc_only(args: &[&std::ffi::OsStr], url: &str) -> Proc {
    let mut cmd = std::process::Command::new(bitpeer_bin());
    cmd.args(args)
        .args(["--listen", "127.0.0.1:0", "--no-dht", "--no-lsd"])
        .args(["--webtorrent-tracker", url])
        .env("RUST_LOG", "webtorrent=debug,engine=debug,bitpeer=debug");
    Proc::spawn(cmd, TIMEOUT + Duration::from_secs(30))
}

/// `bitpeer seed` reachable only over WebRTC; returned once its endpoint is up.
fn webrtc_seed(torrent: &Path, data: &Path, url: &str) -> Proc {
    let mut seeder = bitpeer_webrtc_only(
        &[
            "seed".as_ref(),
            torrent.as_ref(),
            "--data".as_ref(),
            data.as_ref(),
        ],
        url,
    );
    seeder.wait_stderr_line(Duration::from_secs(30), |l| {
        l.starts_with("webrtc on udp").then_some(())
    });
    seeder
}

/// `bitpeer download` of `torrent` (whose one file is `original`) into `dir`/out over
/// WebRTC only: it must finish, over a data channel, byte for byte.
fn leech_over_webrtc(torrent: &Path, url: &str, original: &Path, seeder: &mut Proc, dir: &Path) {
    let out = dir.join("out");
    let mut leecher = bitpeer_webrtc_only(
        &[
            "download".as_ref(),
            torrent.as_ref(),
            "-o".as_ref(),
            out.as_ref(),
        ],
        url,
    );
    let status = leecher.wait_exit(TIMEOUT);
    assert!(
        status.success(),
        "bitpeer download over WebRTC failed: {}\nseeder: {}",
        leecher.stderr_str(),
        seeder.explain()
    );
    assert!(
        leecher.stderr_str().contains("webrtc data channel open"),
        "the leecher did not use a WebRTC data channel"
    );
    assert_eq!(
        std::fs::read(out.join(original.file_name().unwrap())).unwrap(),
        std::fs::read(original).unwrap(),
        "the leecher got different bytes"
    );
    seeder.assert_no_panic();
}

#[test]
fn bitpeer_seeds_to_bitpeer_over_webrtc_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("rtc.bin");
    common::write_random(&file, 31, 3 * 1024 * 1024 + 4321);
    let torrent = dir.path().join("rtc.torrent");
    common::bitpeer_create(&file, &torrent, &[]);

    let (_tracker, url) = ws_tracker();
    let mut seeder = webrtc_seed(&torrent, &data, &url);
    leech_over_webrtc(&torrent, &url, &file, &mut seeder, dir.path());
}

/// `bitpeer daemon` on 127.0.0.1 with WebTorrent (and trackers) on, nothing else to find
/// peers with (no DHT, no LSD).
fn daemon(state: &Path, downloads: &Path) -> (Proc, String) {
    let mut cmd = std::process::Command::new(bitpeer_bin());
    cmd.arg("daemon")
        .args(["--api", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .args(["--no-dht", "--no-lsd", "--no-port-mapping"])
        .arg("--state-dir")
        .arg(state)
        .arg("--download-dir")
        .arg(downloads)
        .env_remove("BITPEER_API_PASSWORD")
        .env_remove("BITPEER_API_USER")
        .env("RUST_LOG", "webtorrent=debug,engine=debug,bitpeer=debug");
    let mut p = Proc::spawn(cmd, TIMEOUT + Duration::from_secs(30));
    let api = p.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("api listening on http://")
            .map(str::to_owned)
    });
    (p, api)
}

/// One JSON request to the daemon's `/api/v1`; (status, body).
fn api(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|v| v.to_string()).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} /api/v1{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, rest) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(rest).unwrap_or(Value::Null))
}

/// Polls torrent `id` of the daemon until it seeds.
fn wait_seeding(d: &mut Proc, addr: &str, id: u64) {
    let end = Instant::now() + TIMEOUT;
    loop {
        let (_, t) = api(addr, "GET", &format!("/torrents/{id}"), None);
        if t["state"] == "seeding" {
            return;
        }
        assert!(
            Instant::now() < end,
            "torrent {id} not seeding in time: {t}\n{}",
            d.explain()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn daemon_seeds_to_bitpeer_over_webrtc_with_a_tracker_given_at_add() {
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let file = downloads.join("held.bin");
    common::write_random(&file, 32, 2 * 1024 * 1024 + 999);
    let torrent = dir.path().join("held.torrent");
    common::bitpeer_create(&file, &torrent, &[]);

    let (_tracker, url) = ws_tracker();
    let (mut d, addr) = daemon(&dir.path().join("state"), &downloads);
    // Not a WebSocket URL: refused, nothing added.
    let b64 = base64_of(&std::fs::read(&torrent).unwrap());
    let (status, v) = api(
        &addr,
        "POST",
        "/torrents",
        Some(
            json!({"torrent_base64": b64, "webtorrent_trackers": ["http://127.0.0.1:1/announce"]}),
        ),
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = api(
        &addr,
        "POST",
        "/torrents",
        Some(json!({"torrent_base64": b64, "webtorrent_trackers": [url]})),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().unwrap();
    wait_seeding(&mut d, &addr, id);

    leech_over_webrtc(&torrent, &url, &file, &mut d, dir.path());
}

#[test]
fn daemon_fetches_a_magnet_with_a_ws_tracker_over_webrtc() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("magnet.bin");
    common::write_random(&file, 33, 1024 * 1024 + 5);
    let torrent = dir.path().join("m.torrent");
    common::bitpeer_create(&file, &torrent, &[]);
    let ih = metainfo_hex(&torrent);

    let (_tracker, url) = ws_tracker();
    let mut seeder = webrtc_seed(&torrent, &data, &url);
    let downloads = dir.path().join("downloads");
    let (mut d, addr) = daemon(&dir.path().join("state"), &downloads);
    let magnet = format!("magnet:?xt=urn:btih:{ih}&tr={}", percent(&url));
    let (status, v) = api(
        &addr,
        "POST",
        "/torrents",
        Some(json!({ "magnet": magnet })),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().unwrap();
    wait_seeding(&mut d, &addr, id);
    assert_eq!(
        std::fs::read(downloads.join("magnet.bin")).unwrap(),
        std::fs::read(&file).unwrap(),
        "the daemon got different bytes"
    );
    d.assert_no_panic();
    seeder.assert_no_panic();
}

fn metainfo_hex(torrent: &Path) -> String {
    common::info_hash_v1(torrent)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
