//! Interop with libtorrent (Debian's python3-libtorrent 2.0, run as /usr/bin/python3).
//!
//! Two directions: libtorrent loads torrents that `bitpeer create` makes and finds every
//! piece of the data valid; and `bitpeer info` reports exactly the info-hashes (v1, v2,
//! hybrid) that libtorrent computes for torrents that libtorrent makes.
//!
//! The tests fail when libtorrent is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Checks `bitpeer info --json` of a bitpeer-made v1 torrent against what libtorrent read
/// from the same file (`lt`, the report of lt_verify.py) and against the data on disk.
fn check_bitpeer_torrent(torrent: &Path, data: &Path, lt: &Value) -> Value {
    let info = bitpeer_info_json(torrent);
    assert_eq!(
        info["version"], "v1",
        "bitpeer create makes v1 torrents: {info}"
    );
    assert_eq!(
        info["info_hash_v1"], lt["v1"],
        "v1 info-hash differs from libtorrent's"
    );
    assert_eq!(
        lt["v2"],
        Value::Null,
        "libtorrent sees a v2 info-hash: {lt}"
    );
    assert_eq!(info["name"], lt["name"]);
    assert_eq!(info["piece_length"], lt["piece_length"]);
    assert_eq!(info["piece_count"], lt["num_pieces"]);
    assert_eq!(info["total_size"], lt["total_size"]);
    assert_eq!(info["private"], lt["private"]);
    assert_eq!(info["comment"], lt["comment"]);
    assert_eq!(info["trackers"], lt["trackers"]);
    assert_eq!(info["web_seeds"], lt["web_seeds"]);
    assert_eq!(
        info["files"], lt["files"],
        "file list differs from libtorrent's"
    );
    assert_eq!(
        info_files(&info),
        disk_files(data),
        "file list differs from the data"
    );
    let name = data.file_name().unwrap().to_str().unwrap();
    assert_eq!(info["name"], name);
    let magnet = info["magnet"].as_str().unwrap().to_ascii_lowercase();
    let btih = format!("xt=urn:btih:{}", lt["v1"].as_str().unwrap());
    assert!(magnet.contains(&btih), "magnet link lacks {btih}: {magnet}");
    info
}

/// bitpeer creates a torrent of `data`, libtorrent checks the data against it.
fn create_and_verify(data: &Path, out: &Path, extra: &[&str]) -> Value {
    bitpeer_create(data, out, extra);
    let lt = lt_verify(out, data.parent().unwrap());
    check_bitpeer_torrent(out, data, &lt)
}

#[test]
fn libtorrent_verifies_single_file_auto_piece_length() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data").join("single.bin");
    write_random(&data, 42, 1_000_003);
    let info = create_and_verify(&data, &tmp.path().join("single.torrent"), &[]);
    let pl = info["piece_length"].as_u64().unwrap();
    assert!(
        pl.is_power_of_two() && pl >= 16384,
        "odd automatic piece length {pl}"
    );
    assert_eq!(info["files"].as_array().unwrap().len(), 1);
    assert_eq!(info["files"][0]["path"], "single.bin");
}

#[test]
fn libtorrent_verifies_single_file_small_pieces() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data").join("single.bin");
    write_random(&data, 43, 1_000_003);
    let out = tmp.path().join("single-16k.torrent");
    let info = create_and_verify(&data, &out, &["--piece-length", "16384"]);
    assert_eq!(info["piece_length"], 16384);
    assert_eq!(info["piece_count"], 1_000_003u64.div_ceil(16384));
}

#[test]
fn libtorrent_verifies_folder_auto_piece_length() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = make_tree(&tmp.path().join("data"), "folder");
    create_and_verify(&data, &tmp.path().join("folder.torrent"), &[]);
}

#[test]
fn libtorrent_verifies_folder_small_pieces() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = make_tree(&tmp.path().join("data"), "folder");
    let out = tmp.path().join("folder-16k.torrent");
    let info = create_and_verify(&data, &out, &["--piece-length", "16384"]);
    assert_eq!(info["piece_length"], 16384);
    let paths: Vec<&str> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"sub/deep/deeper/d.dat"),
        "nested path missing: {paths:?}"
    );
    assert!(
        paths.contains(&"sub/empty"),
        "empty file missing: {paths:?}"
    );
}

#[test]
fn libtorrent_reads_trackers_private_comment_web_seeds() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = make_tree(&tmp.path().join("data"), "meta");
    let out = tmp.path().join("meta.torrent");
    let extra = [
        "--tracker",
        "http://127.0.0.1:6969/announce",
        "--tracker",
        "udp://127.0.0.1:6969",
        "--private",
        "--comment",
        "made by bitpeer: ünïcødé",
        "--web-seed",
        "http://127.0.0.1:8080/files/",
    ];
    let info = create_and_verify(&data, &out, &extra);
    assert_eq!(info["private"], true);
    assert_eq!(info["comment"], "made by bitpeer: ünïcødé");
    assert_eq!(
        info["web_seeds"],
        serde_json::json!(["http://127.0.0.1:8080/files/"])
    );
    let urls: Vec<&str> = info["trackers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|tier| tier.as_array().unwrap())
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        ["http://127.0.0.1:6969/announce", "udp://127.0.0.1:6969"]
    );
}

#[test]
fn libtorrent_finds_corrupt_data() {
    // A control for the tests above: lt_verify.py must notice one flipped byte.
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data").join("single.bin");
    write_random(&data, 44, 100_000);
    let out = tmp.path().join("single.torrent");
    bitpeer_create(&data, &out, &["--piece-length", "16384"]);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[50_000] ^= 1;
    std::fs::write(&data, bytes).unwrap();
    let (code, v, o) = python_helper(
        "lt_verify.py",
        &[out.as_os_str(), data.parent().unwrap().as_os_str()],
    );
    assert_eq!(
        code,
        Some(1),
        "lt_verify.py should report a bad piece: {}",
        o.explain()
    );
    assert_eq!(
        v["have"].as_u64(),
        v["num_pieces"].as_u64().map(|n| n - 1),
        "{v}"
    );
}

/// libtorrent makes a torrent of `data` in `mode`; bitpeer info must agree on the hashes.
fn check_libtorrent_torrent(data: &Path, out: &Path, mode: &str, piece_length: Option<u64>) {
    let lt = lt_create(data, out, mode, piece_length);
    let info = bitpeer_info_json(out);
    assert_eq!(
        info["version"], mode,
        "version of a libtorrent {mode} torrent: {info}"
    );
    assert_eq!(
        info["info_hash_v1"], lt["v1"],
        "v1 info-hash of a libtorrent {mode} torrent"
    );
    assert_eq!(
        info["info_hash_v2"], lt["v2"],
        "v2 info-hash of a libtorrent {mode} torrent"
    );
    assert_eq!(info["name"], lt["name"]);
    assert_eq!(info["piece_length"], lt["piece_length"]);
    if mode != "v2" {
        assert_eq!(info["piece_count"], lt["num_pieces"]);
    }
    assert_eq!(
        info_files(&info),
        disk_files(data),
        "files of a libtorrent {mode} torrent"
    );
    let magnet = info["magnet"].as_str().unwrap().to_ascii_lowercase();
    if let Some(v1) = lt["v1"].as_str() {
        assert!(
            magnet.contains(&format!("xt=urn:btih:{v1}")),
            "no btih in {magnet}"
        );
    }
    if let Some(v2) = lt["v2"].as_str() {
        assert!(
            magnet.contains(&format!("xt=urn:btmh:1220{v2}")),
            "no btmh in {magnet}"
        );
    }
    // The magnet link printed must itself be understood by `bitpeer info`.
    let m = bitpeer_info_json(info["magnet"].as_str().unwrap());
    assert_eq!(m["version"], "magnet");
    assert_eq!(m["info_hash_v1"], lt["v1"]);
    assert_eq!(m["info_hash_v2"], lt["v2"]);
}

#[test]
fn info_hashes_match_libtorrent_multi_file() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = make_tree(&tmp.path().join("data"), "tree");
    for mode in ["v1", "v2", "hybrid"] {
        for pl in [None, Some(16384), Some(65536)] {
            let out = tmp.path().join(format!("lt-{mode}-{pl:?}.torrent"));
            check_libtorrent_torrent(&data, &out, mode, pl);
        }
    }
}

#[test]
fn info_hashes_match_libtorrent_single_file() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data").join("one.bin");
    write_random(&data, 7, 1_000_003);
    for mode in ["v1", "v2", "hybrid"] {
        for pl in [None, Some(262144)] {
            let out = tmp.path().join(format!("lt-{mode}-{pl:?}.torrent"));
            check_libtorrent_torrent(&data, &out, mode, pl);
        }
    }
}
