//! Interop with Transmission 3.00 (Debian's transmission-cli).
//!
//! `bitpeer info` reports the info-hash `transmission-show` prints for torrents made by
//! `transmission-create`, and `transmission-show` reads torrents made by `bitpeer create`
//! (name, hash, files, trackers, privacy).
//!
//! The tests fail when transmission-cli is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// transmission-show lists `NAME/path` for multi-file torrents, `NAME` for single-file ones.
fn transmission_paths(show: &TransmissionShow, multi_file: bool) -> Vec<String> {
    let mut paths: Vec<String> = show
        .files
        .iter()
        .map(|p| {
            if multi_file {
                let prefix = format!("{}/", show.name);
                p.strip_prefix(&prefix).unwrap_or(p).to_owned()
            } else {
                p.clone()
            }
        })
        .collect();
    paths.sort();
    paths
}

fn transmission_create(data: &Path, out: &Path, extra: &[&str]) {
    let mut cmd = Command::new("transmission-create");
    cmd.args(extra).arg("-o").arg(out).arg(data);
    run(cmd, CLIENT_TIMEOUT).assert_success();
    assert!(
        out.is_file(),
        "transmission-create did not write {}",
        out.display()
    );
}

fn check_transmission_torrent(data: &Path, out: &Path, extra: &[&str]) {
    transmission_create(data, out, extra);
    let show = transmission_show(out);
    let info = bitpeer_info_json(out);
    assert_eq!(info["version"], "v1");
    assert_eq!(
        info["info_hash_v1"],
        show.hash.as_str(),
        "v1 info-hash differs from Transmission's"
    );
    assert_eq!(info["name"], show.name.as_str());
    assert_eq!(info["piece_count"].as_u64(), show.piece_count);
    // transmission-create leaves out empty files.
    let expected: Vec<(String, u64)> = disk_files(data)
        .into_iter()
        .filter(|(_, size)| *size > 0)
        .collect();
    assert_eq!(info_files(&info), expected);
}

#[test]
fn info_hash_matches_transmission_folder() {
    if !transmission_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = make_tree(&tmp.path().join("data"), "tree");
    check_transmission_torrent(&data, &tmp.path().join("t.torrent"), &[]);
    check_transmission_torrent(&data, &tmp.path().join("t16.torrent"), &["-s", "16"]);
    let extra = ["-p", "-c", "a comment", "-t", "http://127.0.0.1:1/announce"];
    check_transmission_torrent(&data, &tmp.path().join("tp.torrent"), &extra);
    let info = bitpeer_info_json(tmp.path().join("tp.torrent"));
    assert_eq!(info["private"], true);
    assert_eq!(info["comment"], "a comment");
    assert_eq!(
        info["trackers"],
        serde_json::json!([["http://127.0.0.1:1/announce"]])
    );
}

#[test]
fn info_hash_matches_transmission_single_file() {
    if !transmission_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data").join("one file.bin");
    write_random(&data, 11, 1_000_003);
    check_transmission_torrent(&data, &tmp.path().join("t.torrent"), &[]);
    check_transmission_torrent(&data, &tmp.path().join("t1m.torrent"), &["-s", "1024"]);
}

fn check_transmission_reads(data: &Path, out: &Path, extra: &[&str], multi_file: bool) {
    bitpeer_create(data, out, extra);
    let info = bitpeer_info_json(out);
    let show = transmission_show(out);
    assert_eq!(
        info["info_hash_v1"],
        show.hash.as_str(),
        "Transmission sees another info-hash"
    );
    assert_eq!(info["name"], show.name.as_str());
    assert_eq!(info["piece_count"].as_u64(), show.piece_count);
    assert_eq!(info["private"].as_bool(), show.private);
    let ours: Vec<String> = info_files(&info).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        transmission_paths(&show, multi_file),
        ours,
        "Transmission sees other files"
    );
    let trackers: Vec<&str> = info["trackers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|tier| tier.as_array().unwrap())
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(show.trackers, trackers);
    assert_eq!(show.comment.as_deref(), info["comment"].as_str());
}

#[test]
fn transmission_reads_bitpeer_folder() {
    if !transmission_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = make_tree(&tmp.path().join("data"), "tree");
    check_transmission_reads(&data, &tmp.path().join("a.torrent"), &[], true);
    let extra = [
        "--piece-length",
        "16384",
        "--private",
        "--tracker",
        "http://127.0.0.1:6969/announce",
        "--tracker",
        "udp://127.0.0.1:6969",
        "--comment",
        "hello",
    ];
    check_transmission_reads(&data, &tmp.path().join("b.torrent"), &extra, true);
}

#[test]
fn transmission_reads_bitpeer_single_file() {
    if !transmission_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data").join("single.bin");
    write_random(&data, 12, 1_000_003);
    check_transmission_reads(&data, &tmp.path().join("a.torrent"), &[], false);
    let extra = ["--piece-length", "16384"];
    check_transmission_reads(&data, &tmp.path().join("b.torrent"), &extra, false);
}
