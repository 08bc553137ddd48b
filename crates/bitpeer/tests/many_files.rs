//! Torrents of more files than the open-file limit (issue #16): `bitpeer download` (and
//! `bitpeer seed`) run under `ulimit -n 1024` and must get every file, byte for byte, since
//! storage keeps a bounded pool of open files and creates each file when first written.
//!
//! - 2,000 files from a libtorrent seeder (needs python3-libtorrent; skipped with
//!   BITPEER_SKIP_INTEROP=1);
//! - 200,000 tiny files from `bitpeer seed`, itself under the same limit.
//!
//! Before the pool, storage opened every file at start and failed with "Too many open
//! files".

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The limit the downloads run under.
const ULIMIT: u32 = 1024;

/// `bitpeer ARGS...` run by `bash -c 'ulimit -n 1024; exec ...'`, so only this process
/// (and not the test) gets the lower limit.
fn bitpeer_under_ulimit<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("ulimit -n {ULIMIT} && exec \"$0\" \"$@\""))
        .arg(bitpeer_bin())
        .args(args);
    cmd
}

/// `count` files of 1 to `max_len` pseudo-random bytes in `root/name`, 100 to a folder.
fn many_files(root: &Path, name: &str, count: usize, max_len: usize) -> PathBuf {
    let dir = root.join(name);
    for i in 0..count {
        let sub = dir.join(format!("d{:04}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        let len = 1 + (i * 7919) % max_len;
        std::fs::write(sub.join(format!("f{i}")), pseudo_random(i as u64, len)).unwrap();
    }
    dir
}

/// Starts `bitpeer download TORRENT -o OUT --peer PEER` under the limit (no DHT, LSD or
/// trackers: the peer is all there is).
fn download_under_ulimit(torrent: &Path, out: &Path, peer: &str, timeout: Duration) -> Proc {
    let mut args: Vec<&OsStr> = vec![OsStr::new("download"), torrent.as_os_str()];
    args.extend([OsStr::new("-o"), out.as_os_str()]);
    args.extend(
        [
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--no-dht",
            "--no-lsd",
            "--peer",
            peer,
        ]
        .map(OsStr::new),
    );
    Proc::spawn(bitpeer_under_ulimit(args), timeout)
}

/// The limit really applies: bash reports it to a child.
#[test]
fn the_limit_is_applied() {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &format!("ulimit -n {ULIMIT} && ulimit -n")]);
    let out = run(cmd, Duration::from_secs(10));
    out.assert_success();
    assert_eq!(out.stdout_str().trim(), ULIMIT.to_string());
}

#[test]
fn two_thousand_files_from_libtorrent_under_ulimit() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = many_files(&tmp.path().join("seed"), "many", 2000, 3000);
    let torrent = tmp.path().join("many.torrent");
    bitpeer_create(&src, &torrent, &["--piece-length", "65536"]);
    let (_lt, port) = spawn_lt_peer(&torrent, &tmp.path().join("seed"), &[], &["--seed"]);
    let out = tmp.path().join("out");
    let started = Instant::now();
    let mut dl = download_under_ulimit(
        &torrent,
        &out,
        &format!("127.0.0.1:{port}"),
        Duration::from_secs(180),
    );
    finish_download(&mut dl, Duration::from_secs(180));
    eprintln!(
        "2,000 files under ulimit -n {ULIMIT}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_same_tree(&src, &out.join("many"));
}

/// A temporary folder in memory (/dev/shm) when it has room, where 400,000 small files
/// take a second to make and remove, not minutes as on a journaling disk.
fn fast_tempdir(room_kib: u64) -> tempfile::TempDir {
    let mut df = Command::new("df");
    df.args(["-k", "--output=avail", "/dev/shm"]);
    let avail = try_run(df, Duration::from_secs(10)).ok().and_then(|o| {
        let text = o.stdout_str();
        text.lines().nth(1)?.trim().parse::<u64>().ok()
    });
    match avail {
        Some(kib) if kib >= room_kib => tempfile::tempdir_in("/dev/shm").unwrap(),
        _ => tempfile::tempdir().unwrap(),
    }
}

#[test]
fn two_hundred_thousand_files_from_bitpeer_under_ulimit() {
    // Two copies of 200,000 files, a page each: about 1.6 GiB; ask for twice that.
    let tmp = fast_tempdir(4 << 20);
    let started = Instant::now();
    let src = many_files(&tmp.path().join("seed"), "many", 200_000, 60);
    let torrent = tmp.path().join("many.torrent");
    bitpeer_create(&src, &torrent, &["--piece-length", "65536"]);
    eprintln!(
        "made 200,000 files and their torrent in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut seed_args: Vec<&OsStr> = vec![OsStr::new("seed"), torrent.as_os_str()];
    let seed_dir = tmp.path().join("seed");
    seed_args.extend([OsStr::new("--data"), seed_dir.as_os_str()]);
    seed_args.extend(["--listen", "127.0.0.1:0", "--no-dht", "--no-lsd"].map(OsStr::new));
    let mut seeder = Proc::spawn(bitpeer_under_ulimit(seed_args), Duration::from_secs(600));
    let addr = seeder.wait_line(Duration::from_secs(300), |l| {
        l.strip_prefix("listening on ").map(|a| a.trim().to_owned())
    });
    eprintln!(
        "seeder ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let out = tmp.path().join("out");
    let mut dl = download_under_ulimit(&torrent, &out, &addr, Duration::from_secs(400));
    finish_download(&mut dl, Duration::from_secs(400));
    eprintln!("downloaded after {:.1} s", started.elapsed().as_secs_f64());
    let rss = peak_rss_mib(seeder.pid());
    eprintln!("seeder peak RSS {rss} MiB");
    assert!(rss < 512, "the seeder's peak RSS reached {rss} MiB");
    assert_same_tree(&src, &out.join("many"));
    seeder.assert_no_panic();
    assert!(
        seeder.try_status().is_none(),
        "the seeder exited: {}",
        seeder.explain()
    );
}
