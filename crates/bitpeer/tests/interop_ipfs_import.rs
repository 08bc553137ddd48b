//! bitpeer's UnixFS import gives the same root CIDs as Helia's importer
//! (`ipfs-unixfs-importer`, npm, run here), for both CIDv1 profiles (and Helia's take on the
//! CIDv0 one): files around chunk and node boundaries, a large random file, a nested folder
//! with an empty subfolder and non-ASCII and mixed-case names, and HAMT-sharded folders.

mod common;
mod ipfs_util;

use std::fs;
use std::path::{Path, PathBuf};

use ipfs_util::{bitpeer_cid, helia_cid, importer_dir};

const PROFILES: [(&str, usize, usize); 3] = [
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

/// A sparse file of `len` bytes, zero but for a few random bytes: big DAGs cost no disk.
fn sparse(path: &Path, len: u64) {
    use std::os::unix::fs::FileExt;
    let f = fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    for (i, at) in [0, len / 3, len.saturating_sub(7)].into_iter().enumerate() {
        f.write_all_at(&common::pseudo_random(i as u64, 7), at)
            .unwrap();
    }
}

#[test]
fn files_have_helia_cids() {
    let Some(npm) = importer_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (profile, chunk, links) in PROFILES {
        let cases: [(&str, u64); 6] = [
            ("empty", 0),
            ("one-byte", 1),
            ("one-chunk", chunk as u64),
            ("chunk-plus-one", chunk as u64 + 1),
            ("large-random", 20 * (1 << 20) + 12_345),
            // One full node of leaves plus one more chunk: the root is two levels up.
            ("two-level", (chunk * links) as u64 + 1),
        ];
        for (name, len) in cases {
            let path = dir.path().join(format!("{profile}-{name}"));
            if name == "two-level" {
                sparse(&path, len);
            } else {
                common::write_random(&path, len, len as usize);
            }
            compare(&npm, profile, &path);
            fs::remove_file(&path).unwrap();
        }
    }
}

fn nested_folder(root: &Path) -> PathBuf {
    let top = root.join("nested");
    let w = |rel: &str, seed: u64, len: usize| common::write_random(&top.join(rel), seed, len);
    w("a.txt", 1, 10);
    w("A.txt", 2, 11);
    w("b", 3, 300_000);
    w("B", 4, 0);
    w("Zebra", 5, 1);
    w("café/crème brûlée.md", 6, 2_000_000);
    w("日本語/ファイル", 7, 262_145);
    w("deep/er/still/x", 8, 5);
    w("deep/y", 9, 1 << 20);
    fs::create_dir_all(top.join("empty")).unwrap();
    fs::create_dir_all(top.join("deep/er/void")).unwrap();
    top
}

#[test]
fn nested_folder_has_helia_cids() {
    let Some(npm) = importer_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let top = nested_folder(dir.path());
    for (profile, _, _) in PROFILES {
        compare(&npm, profile, &top);
    }
}

#[test]
fn sharded_folder_has_helia_cids() {
    let Some(npm) = importer_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    // 5000 entries of ~70 estimated bytes each: well past the 256 KiB threshold, with
    // sub-shards where names collide on the first byte of their hash; a subfolder with
    // content and an empty one among them.
    let top = dir.path().join("sharded");
    fs::create_dir_all(top.join("sub dir")).unwrap();
    fs::write(top.join("sub dir/inner"), b"inner").unwrap();
    fs::create_dir_all(top.join("empty")).unwrap();
    for i in 0..5000u32 {
        let name = format!("a-file-with-a-rather-long-name-{i:05}.txt");
        fs::write(top.join(name), i.to_le_bytes()).unwrap();
    }
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
