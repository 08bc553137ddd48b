//! WebTorrent interop with real WebTorrent peers (npm `webtorrent` 3.0.21 on
//! node-datachannel, `bittorrent-tracker` 11.2.3; scripts/install-webtorrent.sh installs
//! them). Everything runs inside a network namespace the test creates (a veth pair on
//! 10.99.0.0/24 and a default route over it: libdatachannel gathers no loopback candidates),
//! so nothing leaves the machine; the namespace is deleted when the test ends.
//!
//! - Node webtorrent seeds, another Node webtorrent downloads through `bitpeer tracker --ws`:
//!   byte for byte (the tracker relays their offers and answers).
//! - `bitpeer seed --webtorrent-tracker` serves Node webtorrent, and `bitpeer download
//!   --webtorrent-tracker` downloads from it, over WebRTC data channels (str0m), through
//!   npm bittorrent-tracker and through `bitpeer tracker --ws`; byte for byte.
//! - The bridge: a libtorrent seeder on TCP (inside the namespace, on its 127.0.0.1),
//!   `bitpeer download --seed` connected to it and to the WebSocket tracker, and a Node
//!   webtorrent leecher that can reach only bitpeer (WebRTC only): it gets the file byte for
//!   byte, from pieces bitpeer downloaded over TCP.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::netns::{
    ADDR, Netns, bitpeer_bridge, bitpeer_in, bitpeer_ws_seeder, bitpeer_ws_tracker, shared_file,
    wt_modules,
};
use common::{Proc, bitpeer_bin};

const TIMEOUT: Duration = Duration::from_secs(120);

/// The namespace, or `None` (after a notice) when the test cannot run and
/// BITPEER_SKIP_INTEROP=1 says that is fine.
fn setup() -> Option<Netns> {
    common::netns::webtorrent_setup(&[])
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webtorrent/peer.mjs")
}

fn node(ns: &Netns, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = ns.command("node");
    cmd.arg(script()).args(args).env("WT_MODULES", wt_modules());
    cmd
}

/// Starts a Node webtorrent seeder of `file`; returns it once it has announced.
fn node_seed(ns: &Netns, tracker: &str, file: &Path, torrent: &Path) -> Proc {
    let mut p = Proc::spawn(
        node(
            ns,
            &[
                "seed".as_ref(),
                tracker.as_ref(),
                file.as_ref(),
                torrent.as_ref(),
            ],
        ),
        TIMEOUT,
    );
    p.wait_line(Duration::from_secs(30), |l| {
        l.starts_with("seeding ").then_some(())
    });
    p
}

fn node_get(ns: &Netns, tracker: &str, torrent: &Path, out: &Path) -> Proc {
    Proc::spawn(
        node(
            ns,
            &[
                "get".as_ref(),
                tracker.as_ref(),
                torrent.as_ref(),
                out.as_ref(),
            ],
        ),
        TIMEOUT,
    )
}

#[test]
fn node_webtorrent_peers_meet_through_bitpeer_ws_tracker() {
    let Some(ns) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.bin");
    common::write_random(&file, 13, 3 * 1024 * 1024 + 17);
    let torrent = dir.path().join("shared.torrent");
    let out = dir.path().join("out");

    let (_tracker, url) = bitpeer_ws_tracker(&ns);
    let _seeder = node_seed(&ns, &url, &file, &torrent);
    // Between two libdatachannel peers a connection sometimes fails on the Node side
    // ("Got a remote candidate without ICE transport", seen through npm's tracker too) and
    // that pair never retries: a second leecher (a new peer id) is started once if the
    // first has not finished in 50 s. The tracker's part (relaying) is what is tested here.
    let mut done = false;
    for _ in 0..2 {
        let mut leecher = node_get(&ns, &url, &torrent, &out);
        let finished = std::iter::from_fn(|| leecher.next_line(Duration::from_secs(50)))
            .any(|l| l.starts_with("done "));
        if finished {
            done = true;
            break;
        }
        eprintln!("node leecher did not finish: {}", leecher.stderr_str());
    }
    assert!(
        done,
        "no Node leecher finished through bitpeer tracker --ws"
    );
    assert_eq!(
        std::fs::read(out.join("shared.bin")).unwrap(),
        std::fs::read(&file).unwrap(),
        "the file differs"
    );
}

fn npm_tracker(ns: &Netns) -> (Proc, String) {
    let mut p = Proc::spawn(node(ns, &["tracker".as_ref(), ADDR.as_ref()]), TIMEOUT);
    let url = p.wait_line(Duration::from_secs(20), |l| {
        l.strip_prefix("tracker ").map(str::to_owned)
    });
    (p, url)
}

/// bitpeer seeds, Node webtorrent downloads.
fn bitpeer_seeds_to_node(ns: &Netns, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (data, file, torrent) =
        shared_file(dir.path(), "from-bitpeer.bin", 21, 2 * 1024 * 1024 + 333);
    let _seeder = bitpeer_ws_seeder(ns, &torrent, &data, url);
    let out = dir.path().join("out");
    let mut leecher = node_get(ns, url, &torrent, &out);
    leecher.wait_line(TIMEOUT, |l| l.starts_with("done ").then_some(()));
    assert_eq!(
        std::fs::read(out.join("from-bitpeer.bin")).unwrap(),
        std::fs::read(&file).unwrap(),
        "Node got different bytes"
    );
}

/// Node webtorrent seeds, bitpeer downloads.
fn node_seeds_to_bitpeer(ns: &Netns, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-node.bin");
    common::write_random(&file, 22, 2 * 1024 * 1024 + 777);
    let torrent = dir.path().join("n.torrent");
    let _seeder = node_seed(ns, url, &file, &torrent);
    let out = dir.path().join("out");
    let mut leecher = bitpeer_in(
        ns,
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
        "bitpeer download failed: {}",
        leecher.stderr_str()
    );
    assert_eq!(
        std::fs::read(out.join("from-node.bin")).unwrap(),
        std::fs::read(&file).unwrap(),
        "bitpeer got different bytes"
    );
}

#[test]
fn bitpeer_and_node_webtorrent_through_npm_tracker() {
    let Some(ns) = setup() else { return };
    let (_tracker, url) = npm_tracker(&ns);
    bitpeer_seeds_to_node(&ns, &url);
    node_seeds_to_bitpeer(&ns, &url);
}

#[test]
fn bitpeer_and_node_webtorrent_through_bitpeer_tracker() {
    let Some(ns) = setup() else { return };
    let (_tracker, url) = bitpeer_ws_tracker(&ns);
    bitpeer_seeds_to_node(&ns, &url);
    node_seeds_to_bitpeer(&ns, &url);
}

#[test]
fn bridge_libtorrent_tcp_seeder_to_node_webtorrent_through_bitpeer() {
    let Some(ns) = setup() else { return };
    if !common::libtorrent_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (data, file, torrent) = shared_file(dir.path(), "bridged.bin", 23, 3 * 1024 * 1024 + 99);

    // libtorrent seeds on TCP inside the namespace (its loopback).
    let (_lt, port) = common::spawn_lt_peer_in(
        ns.command(common::python()),
        &torrent,
        &data,
        &[],
        &["--seed"],
    );

    let (_tracker, url) = bitpeer_ws_tracker(&ns);
    let middle = dir.path().join("middle");
    let _bridge = bitpeer_bridge(&ns, &torrent, &middle, port, &url);
    let out = dir.path().join("out");
    let mut leecher = node_get(&ns, &url, &torrent, &out);
    leecher.wait_line(TIMEOUT, |l| l.starts_with("done ").then_some(()));
    assert_eq!(
        std::fs::read(out.join("bridged.bin")).unwrap(),
        std::fs::read(&file).unwrap(),
        "the browser-side peer got different bytes"
    );
    assert_eq!(
        std::fs::read(middle.join("bridged.bin")).unwrap(),
        std::fs::read(&file).unwrap(),
        "bitpeer got different bytes"
    );
}

/// The daemon holds a torrent whose announce list names `bitpeer tracker --ws` (added with
/// the CLI, no WebTorrent option: its ws:// tracker is used by itself); a Node webtorrent
/// leecher downloads it over WebRTC, byte for byte.
#[test]
fn node_webtorrent_downloads_from_the_daemon() {
    let Some(ns) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("from-daemon.bin");
    common::write_random(&file, 24, 2 * 1024 * 1024 + 4242);
    let (_tracker, url) = bitpeer_ws_tracker(&ns);
    let torrent = dir.path().join("d.torrent");
    common::bitpeer_create(&file, &torrent, &["-t", &url]);

    let mut cmd = ns.command(bitpeer_bin());
    cmd.arg("daemon")
        .args(["--api", "127.0.0.1:0", "--listen", &format!("{ADDR}:0")])
        .args(["--no-dht", "--no-lsd", "--no-port-mapping"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--download-dir")
        .arg(&data)
        .env_remove("BITPEER_API_PASSWORD")
        .env_remove("BITPEER_API_USER")
        .env("RUST_LOG", "webtorrent=debug,engine=debug,bitpeer=debug");
    let mut daemon = Proc::spawn(cmd, TIMEOUT);
    let api = daemon.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("api listening on ").map(str::to_owned)
    });
    let mut add = ns.command(bitpeer_bin());
    add.arg("add").arg(&torrent).args(["--api", &api]);
    let out = common::run(add, Duration::from_secs(60));
    out.assert_success();

    let out = dir.path().join("out");
    let mut leecher = node_get(&ns, &url, &torrent, &out);
    leecher.wait_line(TIMEOUT, |l| l.starts_with("done ").then_some(()));
    assert_eq!(
        std::fs::read(out.join("from-daemon.bin")).unwrap(),
        std::fs::read(&file).unwrap(),
        "Node got different bytes from the daemon"
    );
    daemon.assert_no_panic();
}
