//! The web UI in a real browser against the real daemon: `tests/webui/ui_test.mjs` (Debian's
//! chromium driven by playwright-core, both from scripts/install-webui.sh) signs in, adds a
//! torrent through the upload dialog, waits until it seeds, sets priorities, category, tags
//! and limits, sees the IPFS CID the daemon's bridge found, adds a paused magnet, pauses, resumes and removes it with its data, and takes
//! screenshots at phone and desktop widths (kept in `target/webui-shots` to look at).
//!
//! The torrent's data is already in the download folder, so the daemon completes it by
//! checking. Fails when node, chromium or playwright-core is missing, unless
//! BITPEER_SKIP_INTEROP=1.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The npm folder of scripts/install-webui.sh (`PLAYWRIGHT_CORE_DIR` overrides, as in ui_test.mjs).
fn npm_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PLAYWRIGHT_CORE_DIR") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("bitpeer/npm-webui")
}

fn browser_tools_available() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let chromium =
        Path::new(&std::env::var("BITPEER_CHROMIUM").unwrap_or("/usr/bin/chromium".into()))
            .exists();
    let playwright = npm_dir()
        .join("node_modules/playwright-core/package.json")
        .exists();
    if node && chromium && playwright {
        return true;
    }
    let what = format!(
        "node: {node}, chromium: {chromium}, playwright-core: {playwright} (run scripts/install-webui.sh)"
    );
    if std::env::var("BITPEER_SKIP_INTEROP").is_ok_and(|v| v == "1") {
        eprintln!("notice: skipping the web UI browser test: {what}");
        return false;
    }
    panic!("the web UI browser test needs {what}; BITPEER_SKIP_INTEROP=1 skips it");
}

#[test]
fn the_web_ui_drives_the_real_daemon_in_chromium() {
    if !browser_tools_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let data = downloads.join("movie.bin");
    write_random(&data, 21, 3_000_000);
    let torrent = tmp.path().join("movie.torrent");
    bitpeer_create(&data, &torrent, &[]);
    // The IPFS bridge on: once seeding, the details panel shows the content's CID.
    let cid = bitpeer(["ipfs", "add", "--only-hash", data.to_str().unwrap()], None);
    cid.assert_success();
    let cid = cid
        .stdout_str()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let config = tmp.path().join("bitpeer.toml");
    std::fs::write(&config, "[ipfs]\nadd_on_complete = true\n").unwrap();
    let mut daemon = spawn_daemon(
        &tmp.path().join("state"),
        &downloads,
        &[
            "--api-user",
            "admin",
            "--api-password",
            "pw-for-the-ui",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let url = format!("http://{}", daemon.api);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("webui-shots");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webui/ui_test.mjs");
    let mut node = Command::new("node");
    node.arg(script)
        .args(["--url", &format!("{url}/")])
        .arg("--torrent")
        .arg(&torrent)
        .arg("--shots")
        .arg(&shots)
        .args(["--cid", &cid])
        .args([
            "--user",
            "admin",
            "--password",
            "pw-for-the-ui",
            "--timeout",
            "120",
        ])
        .env("PLAYWRIGHT_CORE_DIR", npm_dir());
    let out = run(node, Duration::from_secs(300));
    assert!(
        out.code() == Some(0),
        "ui_test.mjs failed: {}\ndaemon: {}",
        out.explain(),
        daemon.proc.explain()
    );
    assert!(
        out.stdout_str()
            .contains(&format!("details show the IPFS CID {cid}")),
        "{}",
        out.explain()
    );
    assert!(
        out.stdout_str().contains("ui_test: removed with data"),
        "{}",
        out.explain()
    );
    // Removed with its data: the file is gone.
    assert!(!data.exists(), "the torrent's data is still there");
    daemon.proc.terminate(Duration::from_secs(20));
    daemon.proc.assert_no_panic();
}
