//! The bridge: `bitpeer ipfs add --torrent` imports exactly a completed torrent's files
//! (nothing else in the folder), and `bitpeer info` then shows the CID next to the
//! info-hash.

mod common;
mod ipfs_util;

use std::fs;
use std::path::Path;
use std::process::Command;

fn bitpeer_in(state: &Path, args: &[&str]) -> common::Output {
    let mut cmd = Command::new(common::bitpeer_bin());
    cmd.args(args).env("XDG_STATE_HOME", state);
    common::run(cmd, common::BITPEER_TIMEOUT)
}

#[test]
fn torrent_content_gets_a_cid_that_info_shows() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let data = dir.path().join("dl");
    let top = data.join("album");
    common::write_random(&top.join("01 intro.flac"), 1, 3_000_000);
    common::write_random(&top.join("art/cover.jpg"), 2, 200_000);
    common::write_random(&top.join("notes.txt"), 3, 1234);
    let torrent = dir.path().join("album.torrent");
    common::bitpeer_create(&top, &torrent, &[]);
    // The same files alone, imported as a plain folder: the CID the torrent must get.
    let plain = ipfs_util::bitpeer_cid("unixfs-v1-2025", &top);
    // A stray file in the download folder is not part of the torrent's content.
    fs::write(top.join("stray.part"), b"not in the torrent").unwrap();

    let torrent_s = torrent.to_str().unwrap();
    let data_s = data.to_str().unwrap();
    let info = bitpeer_in(&state, &["info", "--json", torrent_s]);
    info.assert_success();
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(v["ipfs_cid"].is_null(), "{v}");

    let out = bitpeer_in(&state, &["ipfs", "add", "--torrent", torrent_s, data_s]);
    out.assert_success();
    let cid = ipfs_util::last_line(&out);
    assert_eq!(cid, plain);

    let info = bitpeer_in(&state, &["info", "--json", torrent_s]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["ipfs_cid"].as_str(), Some(cid.as_str()), "{v}");
    let text = bitpeer_in(&state, &["info", torrent_s]).stdout_str();
    assert!(text.contains(&format!("ipfs cid      {cid}")), "{text}");
    // The content is in the default store: cat a file by path.
    let cat = bitpeer_in(&state, &["ipfs", "cat", &format!("{cid}/art/cover.jpg")]);
    cat.assert_success();
    assert_eq!(cat.stdout, fs::read(top.join("art/cover.jpg")).unwrap());

    // Content of the right sizes but with a wrong byte is refused by the piece hashes,
    // and nothing is recorded for it.
    let cover = top.join("art/cover.jpg");
    let good = fs::read(&cover).unwrap();
    let mut bad = good.clone();
    bad[100_000] ^= 0x01;
    fs::write(&cover, &bad).unwrap();
    let other_state = dir.path().join("state2");
    let out = bitpeer_in(
        &other_state,
        &["ipfs", "add", "--torrent", torrent_s, data_s],
    );
    assert_eq!(out.code(), Some(1), "{}", out.explain());
    assert!(
        out.stderr_str()
            .contains("pieces do not match the torrent's hashes"),
        "{}",
        out.explain()
    );
    let info = bitpeer_in(&other_state, &["info", "--json", torrent_s]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(v["ipfs_cid"].is_null(), "{v}");
    fs::write(&cover, &good).unwrap();

    // An incomplete download is refused.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(top.join("notes.txt"))
        .unwrap();
    f.set_len(10).unwrap();
    let out = bitpeer_in(&state, &["ipfs", "add", "--torrent", torrent_s, data_s]);
    assert_eq!(out.code(), Some(1), "{}", out.explain());
    assert!(
        out.stderr_str().contains("is the torrent complete"),
        "{}",
        out.explain()
    );
}

#[test]
fn single_file_torrent_is_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("movie.mkv");
    common::write_random(&file, 4, 2_500_000);
    let torrent = dir.path().join("movie.torrent");
    common::bitpeer_create(&file, &torrent, &[]);
    let out = bitpeer_in(
        &state,
        &[
            "ipfs",
            "add",
            "--torrent",
            torrent.to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ],
    );
    out.assert_success();
    assert_eq!(
        ipfs_util::last_line(&out),
        ipfs_util::bitpeer_cid("unixfs-v1-2025", &file)
    );
}
