//! bitpeer ↔ bitpeer over WebRTC only, on 127.0.0.1 (str0m gathers loopback host
//! candidates, so no network namespace is needed): a seeder and a leecher that know of each
//! other only through `bitpeer tracker --ws` (no DHT, no LSD, no TCP peer given; the
//! WebSocket tracker relays offers and answers, never addresses) move a file byte for byte
//! over a data channel. Before the side that made the offer sent its BitTorrent handshake
//! first, both sides waited for the other's and this stalled.

mod common;

use std::time::Duration;

use common::{Proc, bitpeer_bin};

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
    let mut seeder = bitpeer_webrtc_only(
        &[
            "seed".as_ref(),
            torrent.as_ref(),
            "--data".as_ref(),
            data.as_ref(),
        ],
        &url,
    );
    seeder.wait_stderr_line(Duration::from_secs(30), |l| {
        l.starts_with("webrtc on udp").then_some(())
    });
    let out = dir.path().join("out");
    let mut leecher = bitpeer_webrtc_only(
        &[
            "download".as_ref(),
            torrent.as_ref(),
            "-o".as_ref(),
            out.as_ref(),
        ],
        &url,
    );
    let status = leecher.wait_exit(TIMEOUT);
    assert!(
        status.success(),
        "bitpeer download over WebRTC failed: {}",
        leecher.stderr_str()
    );
    assert!(
        leecher.stderr_str().contains("webrtc data channel open"),
        "the leecher did not use a WebRTC data channel"
    );
    assert_eq!(
        std::fs::read(out.join("rtc.bin")).unwrap(),
        std::fs::read(&file).unwrap(),
        "the leecher got different bytes"
    );
    seeder.assert_no_panic();
}
