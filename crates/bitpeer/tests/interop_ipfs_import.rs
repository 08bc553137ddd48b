//! bitpeer's UnixFS import gives the same root CIDs as Helia's importer
//! (`ipfs-unixfs-importer`, npm, run here), for both CIDv1 profiles (and Helia's take on the
//! CIDv0 one): files around chunk and node boundaries, a large random file, a nested folder
//! with an empty subfolder and non-ASCII and mixed-case names, and HAMT-sharded folders.

mod common;
mod ipfs_util;

use std::fs;
use std::path::Path;

use ipfs_util::{bitpeer_cid, helia_cid, importer_dir};

const PROFILES: [(&str, u64, u64); 3] = [
    ("unixfs-v1-2025", 1 << 20, 1024),
    ("v1-256k", 256 << 10, 174),
    ("unixfs-v0-2015", 256 << 10, 174),
];

fn compare(npm: &Path, profile: &str, path: &Path) {
    let theirs = helia_cid(npm, profile, path);
    let ours = bitpeer_cid(profile, path);
    assert_eq!(
        ours,
        theirs,
        "{profile}: {} gives {ours} with bitpeer, {theirs} with Helia",
        path.display()
    );
    eprintln!(
        "{profile} {}: {ours}",
        path.file_name().unwrap().to_string_lossy()
    );
}

#[test]
fn files_have_helia_cids() {
    let Some(npm) = importer_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (profile, chunk, links) in PROFILES {
        for (name, len) in ipfs_util::file_cases(chunk, links) {
            let path = dir.path().join(format!("{profile}-{name}"));
            ipfs_util::write_case(&path, name, len);
            compare(&npm, profile, &path);
            fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn nested_folder_has_helia_cids() {
    let Some(npm) = importer_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let top = ipfs_util::nested_folder(dir.path());
    for (profile, _, _) in PROFILES {
        compare(&npm, profile, &top);
    }
}

#[test]
fn sharded_folder_has_helia_cids() {
    let Some(npm) = importer_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let top = ipfs_util::sharded_folder(dir.path());
    for (profile, _, _) in PROFILES {
        compare(&npm, profile, &top);
    }
}

/// Folders of 5-byte names and 4-byte files one entry below and one above the threshold:
/// 4 + 49 bytes per link for `unixfs-v1-2025` (exact block size), 5 + 36 bytes per entry
/// for `v1-256k` (name + CID length), 5 + 34 for `unixfs-v0-2015`.
#[test]
fn shard_threshold_is_helias() {
    let Some(npm) = importer_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (profile, under) in [
        ("unixfs-v1-2025", 5349u32),
        ("v1-256k", 6393),
        ("unixfs-v0-2015", 6721),
    ] {
        let top = dir.path().join(profile);
        fs::create_dir_all(&top).unwrap();
        for i in 0..under {
            fs::write(top.join(format!("n{i:04}")), i.to_le_bytes()).unwrap();
        }
        compare(&npm, profile, &top);
        fs::write(top.join(format!("n{under:04}")), under.to_le_bytes()).unwrap();
        compare(&npm, profile, &top);
    }
}
