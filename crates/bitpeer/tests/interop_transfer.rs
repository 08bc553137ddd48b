//! Transfers between bitpeer and libtorrent (Debian's python3-libtorrent 2.0, driven by
//! `tests/interop/lt_peer.py`) over TCP on 127.0.0.1.
//!
//! - libtorrent seeds, `bitpeer download` fetches a multi-file torrent whose pieces cross
//!   file boundaries (with nested folders and an empty file);
//! - two libtorrent seeders at once, both of which must upload something;
//! - `bitpeer seed` serves, libtorrent downloads;
//! - `bitpeer download` is killed with SIGKILL halfway and started again: it resumes, and
//!   pieces it had verified are not downloaded again.
//!
//! Every transfer is checked byte for byte against the source. The tests fail when
//! libtorrent is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Deadline of one `bitpeer download` (debug build, two cores shared with libtorrent).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(180);

/// A multi-file folder `root/multi` with odd sizes, nested folders and an empty file; with
/// 16 KiB pieces most file boundaries fall inside a piece.
fn make_multi(root: &Path) -> PathBuf {
    let dir = root.join("multi");
    write_random(&dir.join("one.bin"), 11, 100_003);
    write_random(&dir.join("nested/deeper/two.bin"), 12, 5_000_001);
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::write(dir.join("nested/empty"), b"").unwrap();
    write_random(&dir.join("nested/three.dat"), 13, 77_777);
    write_random(&dir.join("z/last"), 14, 3);
    dir
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The `uploaded` of the last `--stats` line an lt_peer.py printed.
fn lt_uploaded(p: &Proc) -> u64 {
    p.stdout_lines()
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["uploaded"].as_u64())
        .unwrap_or(0)
}

#[test]
fn libtorrent_seeds_bitpeer_downloads_multi_file() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = make_multi(&tmp.path().join("seed"));
    let torrent = tmp.path().join("multi.torrent");
    bitpeer_create(&src, &torrent, &["--piece-length", "16384"]);

    let (mut seeder, port) = spawn_lt_peer(&torrent, src.parent().unwrap(), &[], &["--seed"]);
    let out = tmp.path().join("out");
    let started = Instant::now();
    let mut dl = spawn_bitpeer_download(&torrent, &out, &[addr(port)], DOWNLOAD_TIMEOUT);
    let last = finish_download(&mut dl, DOWNLOAD_TIMEOUT);
    eprintln!(
        "downloaded in {:.1} s: {last}",
        started.elapsed().as_secs_f64()
    );
    assert_same_tree(&src, &out.join("multi"));
    assert_eq!(last["total_bytes"], 100_003 + 5_000_001 + 77_777 + 3);
    assert_eq!(last["hash_failures"], 0, "{last}");
    assert!(
        last["downloaded"].as_u64() >= last["total_bytes"].as_u64(),
        "{last}"
    );
    assert!(
        seeder.try_status().is_none(),
        "the seeder stopped: {}",
        seeder.explain()
    );
}

#[test]
fn two_libtorrent_seeders_bitpeer_downloads_from_both() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("seed1").join("pair.bin");
    write_random(&src, 21, 6_000_017);
    // A torrent made by libtorrent this time (v1 only, so bitpeer can download it).
    let torrent = tmp.path().join("pair.torrent");
    lt_create(&src, &torrent, "v1", Some(65536));
    let copy = tmp.path().join("seed2").join("pair.bin");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(&src, &copy).unwrap();

    // Each seeder uploads at most 1.5 MB/s, so the download lasts a few seconds and a
    // fair picker takes blocks from both.
    let extra = ["--seed", "--stats", "--upload-limit", "1500000"];
    let (mut s1, p1) = spawn_lt_peer(&torrent, src.parent().unwrap(), &[], &extra);
    let (mut s2, p2) = spawn_lt_peer(&torrent, copy.parent().unwrap(), &[], &extra);
    wait_lt_seeding(&mut s1);
    wait_lt_seeding(&mut s2);

    let out = tmp.path().join("out");
    let started = Instant::now();
    let mut dl = spawn_bitpeer_download(&torrent, &out, &[addr(p1), addr(p2)], DOWNLOAD_TIMEOUT);
    let last = finish_download(&mut dl, DOWNLOAD_TIMEOUT);
    let secs = started.elapsed().as_secs_f64();
    assert_same_tree(&src, &out.join("pair.bin"));
    assert_eq!(last["hash_failures"], 0, "{last}");

    // The seeders print their totals every second and once more on SIGTERM.
    s1.terminate(Duration::from_secs(10));
    s2.terminate(Duration::from_secs(10));
    let (u1, u2) = (lt_uploaded(&s1), lt_uploaded(&s2));
    eprintln!("downloaded in {secs:.1} s; seeder 1 uploaded {u1}, seeder 2 uploaded {u2}: {last}");
    assert!(
        u1 > 0 && u2 > 0,
        "both seeders should have uploaded: {u1} and {u2}\n{}\n{}",
        s1.explain(),
        s2.explain()
    );
    assert!(
        u1 + u2 >= 6_000_017,
        "seeders uploaded {u1} + {u2} bytes in all"
    );
}

#[test]
fn bitpeer_seeds_libtorrent_downloads_multi_file() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = make_multi(&tmp.path().join("seed"));
    let torrent = tmp.path().join("multi.torrent");
    bitpeer_create(&src, &torrent, &["--piece-length", "16384"]);

    let (mut seeder, seed_addr) = spawn_bitpeer_seed(&torrent, src.parent().unwrap(), &[]);
    let save = tmp.path().join("lt-out");
    std::fs::create_dir_all(&save).unwrap();
    let started = Instant::now();
    let (mut lt, _) = spawn_lt_peer(&torrent, &save, &[seed_addr], &[]);
    let status = lt.wait_exit(LT_PEER_TIMEOUT);
    let done = lt
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("done").is_some());
    assert!(
        status.success() && done.as_ref().is_some_and(|v| v["done"] == true),
        "libtorrent did not download from bitpeer seed: {}\nseeder: {}",
        lt.explain(),
        seeder.explain()
    );
    eprintln!(
        "libtorrent downloaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_same_tree(&src, &save.join("multi"));
    // And libtorrent's own check of what it wrote agrees.
    lt_verify(&torrent, &save);
    seeder.assert_no_panic();
    assert!(
        seeder.try_status().is_none(),
        "bitpeer seed exited: {}",
        seeder.explain()
    );
}

#[test]
fn bitpeer_resumes_after_sigkill() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("seed").join("big.bin");
    let total = 12 * 1024 * 1024 + 12_345;
    write_random(&src, 31, total);
    let torrent = tmp.path().join("big.torrent");
    bitpeer_create(&src, &torrent, &["--piece-length", "65536"]);

    // 1 MB/s: the first run is killed after about 7 s, with roughly half the data.
    let extra = ["--seed", "--stats", "--upload-limit", "1000000"];
    let (mut seeder, port) = spawn_lt_peer(&torrent, src.parent().unwrap(), &[], &extra);
    wait_lt_seeding(&mut seeder);
    let out = tmp.path().join("out");
    let peers = [addr(port)];

    let started = Instant::now();
    let mut first = spawn_bitpeer_download(&torrent, &out, &peers, DOWNLOAD_TIMEOUT);
    let at_kill = first.wait_line(Duration::from_secs(120), |l| {
        let v = progress_line(l);
        let (have, count) = (v["pieces"].as_u64()?, v["piece_count"].as_u64()?);
        // Past 6 s a resume file has been written (every 5 s).
        (have > 0 && have < count && started.elapsed() >= Duration::from_secs(7)).then_some(v)
    });
    first.kill();
    first.assert_no_panic();
    eprintln!(
        "killed the first run after {:.1} s at {at_kill}",
        started.elapsed().as_secs_f64()
    );
    let resume_files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".bitpeer-"))
        .collect();
    assert_eq!(
        resume_files.len(),
        1,
        "no resume file in {} after {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    let had = at_kill["bytes"].as_u64().unwrap();

    let mut second = spawn_bitpeer_download(&torrent, &out, &peers, DOWNLOAD_TIMEOUT);
    let first_line = second.wait_line(Duration::from_secs(120), |l| Some(progress_line(l)));
    let last = finish_download(&mut second, DOWNLOAD_TIMEOUT);
    eprintln!("second run: first line {first_line}, last line {last}");
    assert_same_tree(&src, &out.join("big.bin"));
    let downloaded = last["downloaded"].as_u64().unwrap();
    let total = total as u64;
    assert!(
        first_line["bytes"].as_u64().unwrap() >= had,
        "the second run started with less than the first had verified: {first_line} < {at_kill}"
    );
    // What the first run verified is not fetched again (a little slack for blocks that
    // were in flight in endgame).
    assert!(
        downloaded + had <= total + 4 * 65536,
        "the second run downloaded {downloaded} of {total} bytes, though {had} were verified"
    );
    assert!(
        downloaded < total * 3 / 4,
        "the second run downloaded {downloaded} of {total}"
    );
}
