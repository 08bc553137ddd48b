//! WebTorrent in a real browser: the npm webtorrent package's own `webtorrent.min.js` in
//! Debian's headless `chromium` (/usr/bin/chromium, never a downloaded browser), driven by
//! `playwright-core` (npm, pinned; scripts/install-webtorrent.sh installs both), through
//! `tests/webtorrent/browser.mjs`. The page uses no STUN server (`rtcConfig: {iceServers:
//! []}`) and only the test's WebSocket tracker. Everything runs inside a network namespace
//! the test creates (Chromium gathers host candidates only with a default route; see
//! tests/common/netns.rs), so nothing leaves the machine.
//!
//! - The browser downloads a file from `bitpeer seed` through `bitpeer tracker --ws`; the
//!   page computes the SHA-256 of what it got, compared with the file's.
//! - The browser seeds a file (the torrent made by webtorrent in the page) and `bitpeer
//!   download` fetches it byte for byte.
//! - The bridge: a libtorrent seeder on TCP, `bitpeer download --seed` in the middle, and the
//!   browser, which can reach only bitpeer (a page has no TCP): it gets the file.
//!
//! Fails when node, chromium, playwright-core or webtorrent is missing, unless
//! BITPEER_SKIP_INTEROP=1 (then it passes with a notice).

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Proc;
use common::netns::{
    Netns, bitpeer_bridge, bitpeer_in, bitpeer_ws_seeder, bitpeer_ws_tracker, kill_descendants,
    shared_file, webtorrent_setup, wt_modules,
};

/// Deadline of one browser run (browser.mjs exits by itself after `BROWSER_DEADLINE`).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(150);

fn chromium() -> PathBuf {
    PathBuf::from(std::env::var_os("BITPEER_CHROMIUM").unwrap_or("/usr/bin/chromium".into()))
}

/// The namespace, or `None` after a notice when something is missing and
/// BITPEER_SKIP_INTEROP=1.
fn setup() -> Option<Netns> {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let chromium = chromium();
    let playwright = wt_modules().join("playwright-core/package.json");
    webtorrent_setup(&[
        ("no node on PATH (apt-get install nodejs)", node),
        (
            &format!(
                "no chromium at {} (scripts/install-webtorrent.sh)",
                chromium.display()
            ),
            chromium.is_file(),
        ),
        (
            &format!(
                "no playwright-core at {} (scripts/install-webtorrent.sh)",
                playwright.display()
            ),
            playwright.is_file(),
        ),
    ])
}

/// Node running browser.mjs, which runs Chromium. Dropping it kills Chromium's processes
/// (by the PIDs found under Node's) and then Node.
struct Browser {
    proc: Proc,
}

impl Browser {
    fn spawn(ns: &Netns, args: &[&OsStr]) -> Browser {
        let mut cmd = ns.command("node");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webtorrent/browser.mjs"))
            .args(args)
            .env("WT_MODULES", wt_modules())
            .env("BITPEER_CHROMIUM", chromium())
            .env(
                "BROWSER_DEADLINE",
                (BROWSER_TIMEOUT.as_secs() - 10).to_string(),
            );
        Browser {
            proc: Proc::spawn(cmd, BROWSER_TIMEOUT),
        }
    }

    /// Waits for the page's `done <infohash> <length> <sha256>` line.
    fn wait_done(&mut self) -> (u64, String) {
        self.proc.wait_line(BROWSER_TIMEOUT, |l| {
            let mut w = l.strip_prefix("done ")?.split(' ').skip(1);
            Some((w.next()?.parse().ok()?, w.next()?.to_owned()))
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.proc.try_status().is_none() {
            kill_descendants(self.proc.pid());
        }
        self.proc.kill();
    }
}

/// SHA-256 of a file, by coreutils' `sha256sum`.
fn sha256(file: &Path) -> String {
    let out = common::run(
        {
            let mut c = Command::new("sha256sum");
            c.arg(file);
            c
        },
        Duration::from_secs(30),
    );
    out.assert_success();
    out.stdout_str()
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_owned()
}

/// The browser downloads `torrent` through `url` and must get `file`'s bytes.
fn browser_gets(ns: &Netns, url: &str, torrent: &Path, file: &Path) {
    let mut browser = Browser::spawn(ns, &["get".as_ref(), url.as_ref(), torrent.as_ref()]);
    let (len, digest) = browser.wait_done();
    assert_eq!(
        len,
        std::fs::metadata(file).unwrap().len(),
        "length differs"
    );
    assert_eq!(
        digest,
        sha256(file),
        "the browser got different bytes: {}",
        browser.proc.explain()
    );
}

#[test]
fn browser_downloads_from_bitpeer_seed() {
    let Some(ns) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (data, file, torrent) =
        shared_file(dir.path(), "to-browser.bin", 31, 3 * 1024 * 1024 + 4321);

    let (_tracker, url) = bitpeer_ws_tracker(&ns);
    let mut seeder = bitpeer_ws_seeder(&ns, &torrent, &data, &url);
    browser_gets(&ns, &url, &torrent, &file);
    seeder.assert_no_panic();
}

#[test]
fn bitpeer_downloads_from_browser_seed() {
    let Some(ns) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-browser.bin");
    common::write_random(&file, 32, 2 * 1024 * 1024 + 999);
    let torrent = dir.path().join("b.torrent");

    let (_tracker, url) = bitpeer_ws_tracker(&ns);
    let mut browser = Browser::spawn(
        &ns,
        &[
            "seed".as_ref(),
            url.as_ref(),
            file.as_ref(),
            torrent.as_ref(),
        ],
    );
    browser.proc.wait_line(Duration::from_secs(90), |l| {
        l.starts_with("seeding ").then_some(())
    });
    let out = dir.path().join("out");
    let mut leecher = bitpeer_in(
        &ns,
        &[
            "download".as_ref(),
            torrent.as_ref(),
            "-o".as_ref(),
            out.as_ref(),
        ],
        &url,
    );
    let status = leecher.wait_exit(Duration::from_secs(120));
    assert!(
        status.success(),
        "bitpeer download failed: {}\nbrowser: {}",
        leecher.explain(),
        browser.proc.explain()
    );
    assert_eq!(
        std::fs::read(out.join("from-browser.bin")).unwrap(),
        std::fs::read(&file).unwrap(),
        "bitpeer got different bytes"
    );
}

#[test]
fn bridge_libtorrent_tcp_seeder_to_browser_through_bitpeer() {
    let Some(ns) = setup() else { return };
    if !common::libtorrent_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (data, file, torrent) = shared_file(dir.path(), "bridged.bin", 33, 4 * 1024 * 1024 + 77);

    // libtorrent seeds on TCP only, on the namespace's loopback: the browser cannot reach it.
    let (mut lt, port) = common::spawn_lt_peer_in(
        ns.command(common::python()),
        &torrent,
        &data,
        &[],
        &["--seed", "--stats"],
    );
    common::wait_lt_seeding(&mut lt);

    let (_tracker, url) = bitpeer_ws_tracker(&ns);
    let middle = dir.path().join("middle");
    let mut bridge = bitpeer_bridge(&ns, &torrent, &middle, port, &url);
    browser_gets(&ns, &url, &torrent, &file);
    assert_eq!(
        std::fs::read(middle.join("bridged.bin")).unwrap(),
        std::fs::read(&file).unwrap(),
        "bitpeer got different bytes"
    );
    bridge.assert_no_panic();
}
