//! bitpeer ↔ bitpeer over WebRTC only, on 127.0.0.1 (str0m gathers loopback host
//! candidates, so no network namespace is needed): a seeder and a leecher that know of each
//! other only through `bitpeer tracker --ws` (no DHT, no LSD, no TCP peer given; the
//! WebSocket tracker relays offers and answers, never addresses) move a file byte for byte
//! over a data channel. Before the side that made the offer sent its BitTorrent handshake
//! first, both sides waited for the other's and this stalled.
//! - The daemon: a torrent added with `bitpeer add --webtorrent-tracker` is seeded to a
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
    // Added with the CLI client (`bitpeer add --webtorrent-tracker`, which sends
    // `webtorrent_trackers`).
    let mut add = std::process::Command::new(bitpeer_bin());
    add.arg("add")
        .arg(&torrent)
        .args(["--webtorrent-tracker", &url, "--json"])
        .args(["--api", &format!("http://{addr}")]);
    let out = common::run(add, Duration::from_secs(60));
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout_str()).unwrap();
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

/// What a hostile WebRTC peer sends once its data channel to the seeder opens.
fn garbage(kind: usize, info_hash: [u8; 20], peer_id: [u8; 20]) -> Vec<u8> {
    let mut handshake = b"\x13BitTorrent protocol".to_vec();
    handshake.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 4]);
    handshake.extend_from_slice(&info_hash);
    handshake.extend_from_slice(&peer_id);
    match kind {
        // Random bytes (no handshake at all), more than one channel message.
        0 => common::pseudo_random(7, 64 * 1024),
        // A valid handshake, then a message length of almost 4 GiB.
        1 => {
            let mut v = handshake;
            v.extend_from_slice(&[0xff, 0xff, 0xff, 0xf0, 7]);
            v.extend_from_slice(&common::pseudo_random(8, 16 * 1024));
            v
        }
        // A valid handshake, then junk: a bitfield of the wrong length, then noise.
        _ => {
            let mut v = handshake;
            v.extend_from_slice(&[0, 0, 0, 100, 5]);
            v.extend_from_slice(&[0xff; 99]);
            v.extend_from_slice(&common::pseudo_random(9, 4096));
            v
        }
    }
}

/// One hostile peer (its own WebRTC endpoint and peer id) joins the swarm through the
/// tracker at `url`, sends `garbage(kind)` over its first data channel, and must see the
/// seeder close the channel. Returns how long that took, or `None` when it did not.
async fn hostile_peer(url: &str, info_hash: [u8; 20], kind: usize) -> Option<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use webtorrent::node::WebTorrentNode;
    use webtorrent::rtc::{RtcConfig, RtcEndpoint};
    let rtc = RtcEndpoint::start(RtcConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..RtcConfig::default()
    })
    .await
    .unwrap();
    let mut peer_id = *b"-XX0001-hostile00000";
    peer_id[19] = b'0' + kind as u8;
    let (node, mut conns) = WebTorrentNode::new(rtc, peer_id);
    node.add(url, info_hash, std::sync::Arc::new(Default::default));
    // The first channel to the seeder (hostile peers meet each other too: skipped).
    let mut c = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let c = conns.recv().await.expect("the node stopped");
            if c.peer_id.starts_with(b"-BP") {
                return c;
            }
        }
    })
    .await
    .expect("no data channel to the seeder in 30 s");
    let start = Instant::now();
    let bytes = garbage(kind, info_hash, peer_id);
    // The seeder may close before it has read everything: a failed write is fine.
    let _ = tokio::time::timeout(Duration::from_secs(20), c.channel.write_all(&bytes)).await;
    let _ = c.channel.flush().await;
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match c.channel.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    node.remove(url, info_hash);
    closed.ok().map(|()| start.elapsed())
}

#[test]
fn hostile_data_channel_peers_are_closed_and_an_honest_transfer_completes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("honest.bin");
    common::write_random(&file, 34, 2 * 1024 * 1024 + 1);
    let torrent = dir.path().join("h.torrent");
    common::bitpeer_create(&file, &torrent, &[]);
    let info_hash = common::info_hash_v1(&torrent);

    let (_tracker, url) = ws_tracker();
    let mut seeder = webrtc_seed(&torrent, &data, &url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Three kinds of garbage at once, each from its own peer.
    let took = rt.block_on(async {
        let peers = (0..3).map(|k| hostile_peer(&url, info_hash, k));
        futures_util::future::join_all(peers).await
    });
    for (kind, t) in took.iter().enumerate() {
        assert!(
            t.is_some(),
            "hostile peer {kind}: the seeder kept the channel open 10 s after garbage\n{}",
            seeder.explain()
        );
    }
    eprintln!("hostile peers closed after {took:?}");
    // The seeder is still there and serves an honest peer, byte for byte.
    assert!(seeder.try_status().is_none(), "the seeder died");
    leech_over_webrtc(&torrent, &url, &file, &mut seeder, dir.path());
    drop(rt);
}
