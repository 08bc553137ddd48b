//! Rate limits hold against a real peer: bitpeer downloading from an unlimited libtorrent
//! seeder with `--download-limit`, and seeding to an unlimited libtorrent leecher with
//! `--upload-limit`, moves data within 10% of the set rate over 20 seconds.
//!
//! Fail when libtorrent is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// 1 MiB/s; the file takes about 28 s at that rate, so 20 s fit after a 2 s start.
const RATE: u64 = 1 << 20;
const FILE: usize = 28 << 20;

/// The average rate between the first sample at or after `from` seconds and the first at
/// or after `from + 20` seconds; samples are (elapsed seconds, bytes so far).
fn rate_over_20s(samples: &[(f64, u64)], from: f64) -> f64 {
    let a = samples
        .iter()
        .find(|(t, _)| *t >= from)
        .unwrap_or_else(|| panic!("no sample after {from} s: {samples:?}"));
    let b = samples
        .iter()
        .find(|(t, _)| *t >= a.0 + 20.0)
        .unwrap_or_else(|| panic!("no sample 20 s after {a:?}: {samples:?}"));
    (b.1 - a.1) as f64 / (b.0 - a.0)
}

fn assert_near(rate: f64, what: &str) {
    let ratio = rate / RATE as f64;
    eprintln!("{what}: {rate:.0} B/s = {ratio:.3} of the limit");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{what}: {rate:.0} B/s is not within 10% of {RATE} B/s"
    );
}

#[test]
fn download_limit_holds_against_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("seed");
    write_random(&data.join("big.bin"), 7, FILE);
    let torrent = tmp.path().join("big.torrent");
    bitpeer_create(
        &data.join("big.bin"),
        &torrent,
        &["--piece-length", "262144"],
    );
    // Dialled once it is seeding: a refused first dial would cost the window seconds.
    let (mut seeder, port) = spawn_lt_peer(&torrent, &data, &[], &["--seed", "--stats"]);
    wait_lt_seeding(&mut seeder);
    let out = tmp.path().join("out");
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download")
        .arg(&torrent)
        .arg("-o")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--json", "--no-dht", "--no-lsd"])
        .args(["--download-limit", "1M", "--peer"])
        .arg(format!("127.0.0.1:{port}"));
    let mut dl = Proc::spawn(cmd, Duration::from_secs(120));
    finish_download(&mut dl, Duration::from_secs(120));
    assert_same_tree(&data.join("big.bin"), &out.join("big.bin"));
    let samples: Vec<(f64, u64)> = dl
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["elapsed"].as_f64()?, v["downloaded"].as_u64()?)))
        .collect();
    assert_near(rate_over_20s(&samples, 2.0), "download");
}

#[test]
fn upload_limit_holds_against_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("seed");
    write_random(&data.join("big.bin"), 8, FILE);
    let torrent = tmp.path().join("big.torrent");
    bitpeer_create(
        &data.join("big.bin"),
        &torrent,
        &["--piece-length", "262144"],
    );
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("seed")
        .arg(&torrent)
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--no-dht", "--no-lsd"])
        .args(["--upload-limit", "1M"]);
    let mut seeder = Proc::spawn(cmd, Duration::from_secs(150));
    let addr = seeder.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("listening on ").map(|a| a.trim().to_owned())
    });
    let out = tmp.path().join("out");
    let (mut leecher, _port) = spawn_lt_peer(&torrent, &out, &[addr], &["--stats"]);
    let status = leecher.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "{}", leecher.explain());
    assert_same_tree(&data.join("big.bin"), &out.join("big.bin"));
    // One stats line a second: its index is the elapsed time.
    let downloaded: Vec<u64> = leecher
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["downloaded"].as_u64())
        .collect();
    let samples: Vec<(f64, u64)> = downloaded
        .iter()
        .enumerate()
        .map(|(i, d)| (i as f64 + 1.0, *d))
        .collect();
    let start = samples
        .iter()
        .find(|(_, d)| *d > 0)
        .map_or(0.0, |(t, _)| *t);
    assert_near(rate_over_20s(&samples, start + 1.0), "upload");
}
