//! A mixed swarm (issue #12): one bitpeer download reaches, at once, three libtorrent
//! seeders that each speak to it in only one way: uTP only (TCP off both ways), RC4
//! encryption only (MSE/PE forced in and out), and IPv6 only (listening on ::1). Each
//! seeder is rate limited so that the download needs all three; the test checks that every
//! one of them uploaded to bitpeer and that the file is byte for byte the original.
//!
//! Needs python3-libtorrent and an IPv6 loopback; without them it fails unless
//! BITPEER_SKIP_INTEROP=1 (then it passes with a notice).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(180);
/// Each seeder's upload limit: 6 MB at three times this takes several seconds, so no
/// seeder can be done before the others have connected.
const SEED_LIMIT: &str = "300000";

fn ready() -> bool {
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    available_or_fail(v6, "no IPv6 loopback (::1)") && libtorrent_available()
}

/// Waits (up to `within`) for an lt_peer.py `--stats` line with a non-zero `uploaded`.
fn uploaded(p: &mut Proc, within: Duration) -> u64 {
    p.wait_line(within, |l| {
        let v: Value = serde_json::from_str(l).ok()?;
        v["uploaded"].as_u64().filter(|&n| n > 0)
    })
}

fn seeder(torrent: &Path, data: &Path, extra: &[&str]) -> (Proc, u16) {
    let mut args = vec!["--seed", "--stats", "--upload-limit", SEED_LIMIT];
    args.extend_from_slice(extra);
    let (mut p, port) = spawn_lt_peer(torrent, data, &[], &args);
    wait_lt_seeding(&mut p);
    (p, port)
}

#[test]
fn bitpeer_reaches_a_utp_only_an_encryption_only_and_an_ipv6_only_peer_at_once() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("seed");
    write_random(&data.join("mixed.bin"), 1212, 6_000_000);
    let torrent = tmp.path().join("mixed.torrent");
    bitpeer_create(
        &data.join("mixed.bin"),
        &torrent,
        &["--piece-length", "65536"],
    );

    let (mut utp, utp_port) = seeder(&torrent, &data, &["--utp-only"]);
    let (mut rc4, rc4_port) = seeder(
        &torrent,
        &data,
        &[
            "--out-enc-policy",
            "forced",
            "--in-enc-policy",
            "forced",
            "--allowed-enc-level",
            "rc4",
        ],
    );
    let (mut v6, v6_port) = seeder(&torrent, &data, &["--listen", "[::1]:0"]);

    // bitpeer's defaults: TCP and uTP, encryption preferred; it listens on both families.
    let out = tmp.path().join("out");
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download")
        .arg(&torrent)
        .arg("-o")
        .arg(&out)
        .args([
            "--listen",
            "127.0.0.1:0,[::1]:0",
            "--json",
            "--no-dht",
            "--no-lsd",
        ])
        .args(["--peer", &format!("127.0.0.1:{utp_port}")])
        .args(["--peer", &format!("127.0.0.1:{rc4_port}")])
        .args(["--peer", &format!("[::1]:{v6_port}")]);
    let mut dl = Proc::spawn(cmd, TIMEOUT);
    finish_download(&mut dl, TIMEOUT);
    assert_same_tree(&data.join("mixed.bin"), &out.join("mixed.bin"));
    dl.assert_no_panic();

    // Every seeder gave bitpeer a share (stats come once a second; `uploaded` panics with
    // the seeder's output if one never reports a byte).
    for (name, p) in [
        ("uTP-only", &mut utp),
        ("RC4-only", &mut rc4),
        ("IPv6-only", &mut v6),
    ] {
        let up = uploaded(p, Duration::from_secs(10));
        eprintln!("the {name} libtorrent seeder uploaded {up} bytes");
        p.kill();
    }
}
