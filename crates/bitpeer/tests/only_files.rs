//! `bitpeer download --only`: from a libtorrent seeder of a multi-file torrent, only the
//! chosen files are downloaded, byte for byte, and no skipped file is created (bytes of
//! skipped files that share a piece with a chosen one stay in a part file). The download
//! exits 0 when the chosen files are complete.
//!
//! Fails when libtorrent is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn only_the_chosen_files_are_downloaded_from_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("seed").join("set");
    // Odd sizes, so pieces of 32 KiB straddle file boundaries.
    let sizes = [70_001usize, 33_333, 150_007, 5_000, 90_001, 64_000];
    for (i, len) in sizes.iter().enumerate() {
        write_random(&data.join(format!("f{i}.bin")), 40 + i as u64, *len);
    }
    let torrent = tmp.path().join("set.torrent");
    bitpeer_create(&data, &torrent, &["--piece-length", "32768"]);
    // The indexes bitpeer info lists: files in the torrent's order.
    let info = bitpeer_info_json(&torrent);
    let names: Vec<String> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    let (_seeder, port) = spawn_lt_peer(&torrent, &tmp.path().join("seed"), &[], &["--seed"]);
    let out = tmp.path().join("out");
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download")
        .arg(&torrent)
        .arg("-o")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--json", "--no-dht", "--no-lsd"])
        .args(["--only", "0,3-4", "--peer"])
        .arg(format!("127.0.0.1:{port}"));
    let mut dl = Proc::spawn(cmd, Duration::from_secs(120));
    let status = dl.wait_exit(Duration::from_secs(120));
    dl.assert_no_panic();
    assert!(status.success(), "{}", dl.explain());
    for (i, name) in names.iter().enumerate() {
        let got = out.join("set").join(name);
        let want = data.join(name);
        if [0, 3, 4].contains(&i) {
            assert_eq!(
                std::fs::read(&got).unwrap_or_default(),
                std::fs::read(&want).unwrap(),
                "file {i} ({name}) differs"
            );
        } else {
            assert!(!got.exists(), "skipped file {i} ({name}) was created");
        }
    }
    // An index past the torrent's files is refused with one clear line.
    let bad = bitpeer(
        [
            "download".as_ref(),
            torrent.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--only".as_ref(),
            "9".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--no-dht".as_ref(),
            "--no-lsd".as_ref(),
        ],
        None,
    );
    assert_eq!(bad.code(), Some(1), "{}", bad.explain());
    assert!(
        bad.stderr_str()
            .contains("file 9 does not exist: the torrent has 6 files"),
        "{}",
        bad.explain()
    );
}
