//! `bitpeer ipfs add/cat/export/import` round trips through the block store and CAR files,
//! and hostile DAGs and CAR files: clear errors, nothing unverified stored, nothing written
//! outside the output folder.

mod common;
mod ipfs_util;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use ipfs::dagpb::{PbLink, PbNode};
use ipfs::unixfs::{Data, DataType};
use ipfs::{Cid, DAG_PB, RAW, car, cid_of};

fn bitpeer(args: &[&OsStr]) -> common::Output {
    common::run(
        {
            let mut c = std::process::Command::new(common::bitpeer_bin());
            c.args(args);
            c
        },
        common::BITPEER_TIMEOUT,
    )
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn add(store: &Path, path: &Path, profile: &str) -> String {
    let out = bitpeer(&[
        os("ipfs"),
        os("add"),
        os("--store"),
        store.as_os_str(),
        os("--profile"),
        os(profile),
        path.as_os_str(),
    ]);
    out.assert_success();
    ipfs_util::last_line(&out)
}

fn cat(store: &Path, arg: &str) -> common::Output {
    bitpeer(&[
        os("ipfs"),
        os("cat"),
        os("--store"),
        store.as_os_str(),
        os(arg),
    ])
}

/// Every file under `dir` with its bytes, sorted, and every folder.
fn tree(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Option<Vec<u8>>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.push((rel, None));
                walk(base, &p, out);
            } else {
                out.push((rel, Some(fs::read(&p).unwrap())));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn sample(root: &Path) -> std::path::PathBuf {
    let top = root.join("sample");
    common::write_random(&top.join("big.bin"), 1, 3 * (1 << 20) + 17);
    common::write_random(&top.join("Ünïcode/small"), 2, 100);
    fs::write(top.join("empty-file"), b"").unwrap();
    fs::create_dir_all(top.join("empty-dir")).unwrap();
    // Enough long names to make "many" a HAMT-sharded folder.
    fs::create_dir_all(top.join("many")).unwrap();
    for i in 0..5000 {
        fs::write(
            top.join(format!("many/entry-with-a-long-name-{i:04}")),
            [i as u8],
        )
        .unwrap();
    }
    top
}

#[test]
fn add_cat_export_and_car_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let top = sample(dir.path());
    for profile in ["unixfs-v1-2025", "unixfs-v0-2015"] {
        let store = dir.path().join(format!("store-{profile}"));
        let root = add(&store, &top, profile);
        {
            // "many" is sharded, so the reads below go through a HAMT.
            let s = ipfs::FsStore::open(&store).unwrap();
            let many = ipfs::dag::resolve(&s, &ipfs::parse_cid(&root).unwrap(), "many").unwrap();
            assert!(
                matches!(
                    ipfs::dag::load(&s, &many).unwrap(),
                    ipfs::dag::Node::Hamt(_)
                ),
                "{profile}: many/ is not sharded"
            );
        }
        // cat of a file inside the (sharded) folder and of a big file.
        let out = cat(&store, &format!("{root}/many/entry-with-a-long-name-0042"));
        out.assert_success();
        assert_eq!(out.stdout, vec![42u8]);
        let out = cat(&store, &format!("/ipfs/{root}/big.bin"));
        out.assert_success();
        assert_eq!(out.stdout, fs::read(top.join("big.bin")).unwrap());
        // Export to files.
        let exported = dir.path().join(format!("out-{profile}"));
        bitpeer(&[
            os("ipfs"),
            os("export"),
            os("--store"),
            store.as_os_str(),
            os(&root),
            os("-o"),
            exported.as_os_str(),
        ])
        .assert_success();
        assert_eq!(tree(&exported), tree(&top));
        // Export to a CAR, import it into an empty store, and export the files again.
        let car_path = dir.path().join(format!("{profile}.car"));
        bitpeer(&[
            os("ipfs"),
            os("export"),
            os("--store"),
            store.as_os_str(),
            os(&root),
            os("--car"),
            car_path.as_os_str(),
        ])
        .assert_success();
        let store2 = dir.path().join(format!("store2-{profile}"));
        let out = bitpeer(&[
            os("ipfs"),
            os("import"),
            os("--store"),
            store2.as_os_str(),
            os("--car"),
            car_path.as_os_str(),
        ]);
        out.assert_success();
        assert_eq!(ipfs_util::last_line(&out), root);
        let again = dir.path().join(format!("again-{profile}"));
        bitpeer(&[
            os("ipfs"),
            os("export"),
            os("--store"),
            store2.as_os_str(),
            os(&root),
            os("-o"),
            again.as_os_str(),
        ])
        .assert_success();
        assert_eq!(tree(&again), tree(&top));
    }
}

fn dir_block(entries: &[(&str, Cid)]) -> (Cid, Vec<u8>) {
    let block = PbNode {
        links: entries
            .iter()
            .map(|(n, c)| PbLink {
                hash: *c,
                name: Some((*n).to_owned()),
                tsize: Some(1),
            })
            .collect(),
        data: Some(Data::new(DataType::Directory).encode()),
    }
    .encode();
    (cid_of(DAG_PB, &block, false), block)
}

fn write_car(path: &Path, root: &Cid, blocks: &[(Cid, Vec<u8>)]) {
    let mut out = car::header(&[*root]);
    for (c, b) in blocks {
        car::write_block(&mut out, c, b).unwrap();
    }
    fs::write(path, out).unwrap();
}

fn import_car(store: &Path, car_path: &Path) -> common::Output {
    bitpeer(&[
        os("ipfs"),
        os("import"),
        os("--store"),
        store.as_os_str(),
        os("--car"),
        car_path.as_os_str(),
    ])
}

#[test]
fn hostile_folder_names_write_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let leaf = (cid_of(RAW, b"pwned", false), b"pwned".to_vec());
    for bad in ["..", "/etc", "a/../../x", "nul\0byte", ".", ""] {
        let (root, block) = dir_block(&[("fine", leaf.0), (bad, leaf.0)]);
        let car_path = dir.path().join("bad.car");
        write_car(&car_path, &root, &[(root, block), leaf.clone()]);
        import_car(&store, &car_path).assert_success();
        let dest = dir.path().join("inside").join("out");
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let out = bitpeer(&[
            os("ipfs"),
            os("export"),
            os("--store"),
            store.as_os_str(),
            os(&root.to_string()),
            os("-o"),
            dest.as_os_str(),
        ]);
        assert_eq!(out.code(), Some(1), "{bad:?}: {}", out.explain());
        assert!(
            out.stderr_str().contains("unsafe name"),
            "{}",
            out.explain()
        );
        assert!(!dir.path().join("x").exists() && !dir.path().join("inside/x").exists());
        let _ = fs::remove_dir_all(&dest);
    }
}

#[test]
fn car_with_a_wrong_block_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let good = cid_of(RAW, b"good", false);
    let claimed = cid_of(RAW, b"real content", false);
    let car_path = dir.path().join("bad.car");
    write_car(
        &car_path,
        &good,
        &[
            (good, b"good".to_vec()),
            (claimed, b"fake content".to_vec()),
        ],
    );
    let out = import_car(&store, &car_path);
    assert_eq!(out.code(), Some(1), "{}", out.explain());
    assert!(
        out.stderr_str().contains("does not match"),
        "{}",
        out.explain()
    );
    assert!(cat(&store, &good.to_string()).status.success());
    let out = cat(&store, &claimed.to_string());
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr_str().contains("not found"), "{}", out.explain());
    // Truncated and garbage CAR files: one clear line, exit 1.
    for junk in [
        &b""[..],
        b"\x05abc",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    ] {
        fs::write(&car_path, junk).unwrap();
        let out = import_car(&store, &car_path);
        assert_eq!(out.code(), Some(1), "{}", out.explain());
        assert_eq!(out.stderr_str().lines().count(), 1, "{}", out.explain());
    }
}

#[test]
fn malformed_cids_and_missing_roots_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for bad in [
        "not-a-cid",
        "bafy",
        "Qm123",
        "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        &"b".repeat(600),
    ] {
        let out = cat(&store, bad);
        assert_eq!(out.code(), Some(1), "{bad}: {}", out.explain());
        assert!(
            out.stderr_str().starts_with("error: invalid CID"),
            "{}",
            out.explain()
        );
    }
    let missing = cid_of(RAW, b"nobody has this", false).to_string();
    let out = cat(&store, &missing);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr_str().contains("not found"), "{}", out.explain());
}
