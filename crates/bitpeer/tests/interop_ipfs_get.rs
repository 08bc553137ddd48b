//! `bitpeer ipfs get` fetches from a real gateway of someone else's code (Helia 7 behind
//! @helia/verified-fetch and a Node http server, npm, Node 22) byte for byte, resumes from
//! blocks already held, and refuses a stand-in gateway that sends wrong blocks: a clear
//! error, nothing stored, nothing written.

mod common;
mod ipfs_util;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipfs_util::{helia, same_tree};

fn sample(root: &Path) -> PathBuf {
    let top = root.join("photos");
    common::write_random(&top.join("a.jpg"), 1, 4 * (1 << 20) + 99);
    common::write_random(&top.join("trip/été.raw"), 2, 300_000);
    fs::write(top.join("trip/notes"), b"notes\n").unwrap();
    fs::create_dir_all(top.join("empty")).unwrap();
    top
}

/// Helia + verified-fetch serving `data`: (the process, its URL, the root CID).
fn helia_gateway(h: &ipfs_util::Helia, data: &Path) -> (common::Proc, String, String) {
    let mut cmd = Command::new(&h.node);
    cmd.arg(ipfs_util::interop_script("helia_gateway.mjs"))
        .arg(&h.dir)
        .arg(data);
    let mut proc = common::Proc::spawn(cmd, Duration::from_secs(600));
    let (url, root) = proc.wait_line(Duration::from_secs(60), |l| {
        let mut parts = l.strip_prefix("gateway ")?.split(' ');
        Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
    });
    (proc, url, root)
}

fn get(store: &Path, cid: &str, out: Option<&Path>, gateways: &[&str]) -> common::Output {
    let mut cmd = Command::new(common::bitpeer_bin());
    cmd.args(["ipfs", "get", cid, "--store"]).arg(store);
    if let Some(o) = out {
        cmd.arg("-o").arg(o);
    }
    for g in gateways {
        cmd.args(["--gateway", g]);
    }
    common::run(cmd, ipfs_util::HELIA_TIMEOUT)
}

/// (fetched, held) from get's summary line.
fn counts(out: &common::Output) -> (u64, u64) {
    let err = out.stderr_str();
    let line = err
        .lines()
        .find(|l| l.contains("blocks fetched"))
        .unwrap_or_else(|| panic!("no summary: {}", out.explain()));
    let fetched = line.split(' ').next().unwrap().parse().unwrap();
    let held = line
        .rsplit(", ")
        .next()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (fetched, held)
}

fn block_files(store: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(store.join("blocks")) {
        for d in rd.flatten() {
            for f in fs::read_dir(d.path()).unwrap().flatten() {
                v.push(f.path());
            }
        }
    }
    v.sort();
    v
}

#[test]
fn fetches_from_helia_verified_fetch_and_resumes() {
    let Some(h) = helia() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = sample(dir.path());
    let (_helia, url, root) = helia_gateway(&h, &data);
    let store = dir.path().join("store");
    let out = dir.path().join("got");
    let run = get(&store, &root, Some(&out), &[&url]);
    run.assert_success();
    assert_eq!(ipfs_util::last_line(&run), root);
    same_tree(&data, &out);
    let (fetched, held) = counts(&run);
    assert!(fetched >= 8 && held == 0, "{}", run.explain());

    // An interrupted fetch: half the blocks are gone. The rest are used, not fetched again.
    let files = block_files(&store);
    for f in files.iter().step_by(2) {
        fs::remove_file(f).unwrap();
    }
    let out2 = dir.path().join("again");
    let run = get(&store, &root, Some(&out2), &[&url]);
    run.assert_success();
    same_tree(&data, &out2);
    let (fetched2, held2) = counts(&run);
    assert_eq!(fetched2 + held2, fetched, "{}", run.explain());
    assert_eq!(
        fetched2 as usize,
        files.len().div_ceil(2),
        "{}",
        run.explain()
    );
    assert_eq!(block_files(&store), files);
}

/// A stand-in gateway: answers every request 200 with bytes that are not the block asked.
struct Liar {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Liar {
    fn start() -> Liar {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf);
                        let body = b"certainly the block you asked for";
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ipld.raw\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(body);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Liar {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_gateway_sending_wrong_blocks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let liar = Liar::start();
    let store = dir.path().join("store");
    let out = dir.path().join("never");
    let cid = ipfs::cid_of(ipfs::RAW, b"the real block", false).to_string();
    let run = get(&store, &cid, Some(&out), &[&liar.url]);
    assert_eq!(run.code(), Some(1), "{}", run.explain());
    let err = run.stderr_str();
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: gateway ")
            && last.contains("sent a wrong block")
            && last.contains("refused"),
        "{}",
        run.explain()
    );
    assert!(block_files(&store).is_empty());
    assert!(!out.exists());
}

#[test]
fn a_lying_gateway_is_dropped_and_an_honest_one_used() {
    let Some(h) = helia() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = sample(dir.path());
    let (_helia, url, root) = helia_gateway(&h, &data);
    let liar = Liar::start();
    let store = dir.path().join("store");
    let out = dir.path().join("got");
    let run = get(&store, &root, Some(&out), &[&liar.url, &url]);
    run.assert_success();
    assert!(
        run.stderr_str().contains("warning: gateway"),
        "{}",
        run.explain()
    );
    same_tree(&data, &out);
}
