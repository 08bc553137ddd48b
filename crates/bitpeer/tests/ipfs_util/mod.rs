//! Helpers of the IPFS interop tests: where scripts/install-ipfs.sh put the real IPFS
//! software (npm packages pinned into cache folders), and running it under a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{self, Output};

/// Deadline for one run of Helia's importer (a 1 GiB sparse file takes ~5 s here).
pub const HELIA_TIMEOUT: Duration = Duration::from_secs(180);

/// `${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer`, where scripts/install-ipfs.sh installs.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set")
        .join("bitpeer")
}

/// The npm folder of Helia's UnixFS importer, if installed (else panics, or returns None
/// with a notice under BITPEER_SKIP_INTEROP=1).
pub fn importer_dir() -> Option<PathBuf> {
    let dir = cache_dir().join("npm-ipfs-importer");
    let ok = dir
        .join("node_modules/ipfs-unixfs-importer/package.json")
        .is_file()
        && Command::new("node").arg("--version").output().is_ok();
    let why = format!(
        "Helia's importer is not installed in {} (run scripts/install-ipfs.sh)",
        dir.display()
    );
    common::available_or_fail(ok, &why).then_some(dir)
}

pub fn interop_script(name: &str) -> PathBuf {
    common::interop_dir().join(name)
}

/// The root CID Helia's importer gives `path` with `profile`.
pub fn helia_cid(npm: &Path, profile: &str, path: &Path) -> String {
    let mut cmd = Command::new("node");
    cmd.arg(interop_script("helia_import.mjs"))
        .arg(npm)
        .arg(profile)
        .arg(path);
    let out = common::run(cmd, HELIA_TIMEOUT);
    out.assert_success();
    last_line(&out)
}

/// `bitpeer ipfs add --only-hash --profile PROFILE PATH`'s root CID.
pub fn bitpeer_cid(profile: &str, path: &Path) -> String {
    let out = bitpeer_ok(&[
        "ipfs".as_ref(),
        "add".as_ref(),
        "--only-hash".as_ref(),
        "--profile".as_ref(),
        profile.as_ref(),
        path.as_os_str(),
    ]);
    last_line(&out)
}

pub fn bitpeer_ok(args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(common::bitpeer_bin());
    cmd.args(args);
    let out = common::run(cmd, HELIA_TIMEOUT);
    out.assert_success();
    out
}

pub fn last_line(out: &Output) -> String {
    out.stdout_str()
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{} printed nothing: {}", out.desc, out.explain()))
        .trim()
        .to_owned()
}
