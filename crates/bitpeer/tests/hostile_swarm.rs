//! Attacks a public node meets, run against the real `bitpeer` binary with an honest
//! libtorrent peer beside the attackers. Attackers use other loopback addresses
//! (127.0.0.2 and up look like other hosts); honest peers stay on 127.0.0.1.
//!
//! - 80 idle connections from one host do not lock a seeder (per-IP cap);
//! - re-dialled half-open handshakes (slowloris) do not starve newcomers;
//! - peers that request one block of every piece and never read do not blow up the
//!   seeder's memory, and lose their upload slots;
//! - a silent metadata peer does not stall a magnet download (run 10 times).
//!
//! Each checks that the honest transfer completes byte for byte within a bound close to
//! the unattacked time, and (where memory is the attack) the seeder's peak RSS. Fail when
//! libtorrent is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A seeded torrent: (torrent path, data dir, `bitpeer seed` process, its address).
fn seeder(
    root: &Path,
    size: usize,
    piece: usize,
) -> (std::path::PathBuf, std::path::PathBuf, Proc, String) {
    let data = root.join("seed");
    write_random(&data.join("file.bin"), 5, size);
    let torrent = root.join("file.torrent");
    bitpeer_create(
        &data.join("file.bin"),
        &torrent,
        &["--piece-length", &piece.to_string()],
    );
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("seed")
        .arg(&torrent)
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--no-dht", "--no-lsd"]);
    let mut p = Proc::spawn(cmd, Duration::from_secs(300));
    let addr = p.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("listening on ").map(|a| a.trim().to_owned())
    });
    (torrent, data, p, addr)
}

fn attackers(mode: &str, target: &str, torrent: &Path, from: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg(interop_dir().join("attackers.py"))
        .arg(mode)
        .args(["--target", target, "--from", from])
        .args(["--info-hash", &hex(&info_hash_v1(torrent))])
        .args(["--duration", "120"])
        .args(extra);
    Proc::spawn(cmd, Duration::from_secs(150))
}

/// The attackers' latest status line.
fn status(p: &Proc) -> Value {
    p.stdout_lines()
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null)
}

/// A libtorrent leecher from 127.0.0.1 downloads from `addr`; returns its time.
fn honest_download(
    torrent: &Path,
    data: &Path,
    out: &Path,
    addr: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    let (mut lt, _) = spawn_lt_peer(torrent, out, &[addr.to_owned()], &[]);
    let status = lt.wait_exit(limit);
    assert!(
        status.success(),
        "the honest leecher did not finish in {limit:?}: {}",
        lt.explain()
    );
    assert_same_tree(&data.join("file.bin"), &out.join("file.bin"));
    started.elapsed()
}

#[test]
fn idle_connections_from_one_host_do_not_lock_a_seeder() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, data, _seeder, addr) = seeder(tmp.path(), 4 << 20, 65536);
    let atk = attackers("idle", &addr, &torrent, "127.0.0.2", &["--count", "80"]);
    // Let all 80 dial and handshake.
    let end = Instant::now() + Duration::from_secs(30);
    while status(&atk)["dialled"].as_u64().unwrap_or(0) < 80 {
        assert!(Instant::now() < end, "attackers stuck: {}", atk.explain());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let took = honest_download(
        &torrent,
        &data,
        &tmp.path().join("out"),
        &addr,
        Duration::from_secs(30),
    );
    let st = status(&atk);
    eprintln!("honest download in {took:?} beside 80 idle connections; attackers: {st}");
    assert!(
        st["open"].as_u64().unwrap_or(99) <= 3,
        "one host keeps at most 3 connections to a torrent: {st}"
    );
}

#[test]
fn slowloris_does_not_starve_newcomers() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, data, _seeder, addr) = seeder(tmp.path(), 4 << 20, 65536);
    let atk = attackers(
        "slowloris",
        &addr,
        &torrent,
        "127.0.0.2",
        &["--count", "128"],
    );
    let end = Instant::now() + Duration::from_secs(30);
    while status(&atk)["dialled"].as_u64().unwrap_or(0) < 128 {
        assert!(Instant::now() < end, "attackers stuck: {}", atk.explain());
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = honest_download(
        &torrent,
        &data,
        &tmp.path().join("out"),
        &addr,
        Duration::from_secs(30),
    );
    eprintln!(
        "honest download in {took:?} beside a slowloris host: {}",
        status(&atk)
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn peers_that_request_and_never_read_do_not_blow_up_memory() {
    if !libtorrent_available() {
        return;
    }
    const PIECE: usize = 4 << 20;
    const PIECES: usize = 96;
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, data, seeder, addr) = seeder(tmp.path(), PIECE * PIECES, PIECE);
    let before = peak_rss_mib(seeder.pid());
    let pieces = PIECES.to_string();
    let atks: Vec<Proc> = (2..=5)
        .map(|i| {
            attackers(
                "noread",
                &addr,
                &torrent,
                &format!("127.0.0.{i}"),
                &["--count", "1", "--pieces", &pieces],
            )
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(30);
    while atks
        .iter()
        .any(|a| status(a)["unchoked"].as_u64().unwrap_or(0) < 1)
    {
        assert!(Instant::now() < end, "attackers never unchoked");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give the seeder time to read and queue what they asked for.
    std::thread::sleep(Duration::from_secs(3));
    let took = honest_download(
        &torrent,
        &data,
        &tmp.path().join("out"),
        &addr,
        Duration::from_secs(90),
    );
    let peak = peak_rss_mib(seeder.pid());
    eprintln!(
        "honest 384 MiB download in {took:?} beside 4 peers that never read; seeder peak RSS \
         {before} -> {peak} MiB"
    );
    // Each such peer pins at most 16 MiB of pieces in its outbox, reads are bounded per
    // peer (8 MiB) and per torrent (64 MiB), the read cache holds 8 MiB: far below the
    // 4 x 96 x 4 MiB = 1.5 GiB that holding every requested piece would take.
    assert!(peak < 256, "seeder peak RSS {peak} MiB");
}

#[test]
fn a_silent_metadata_peer_does_not_stall_a_magnet_download() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("seed");
    for i in 0..20 {
        write_random(
            &data.join("album").join(format!("track{i:02}.bin")),
            i,
            50_000,
        );
    }
    let torrent = tmp.path().join("album.torrent");
    bitpeer_create(&data.join("album"), &torrent, &["--piece-length", "16384"]);
    let (_lt, lt_port) = spawn_lt_peer(&torrent, &data, &[], &["--seed"]);
    let bytes = std::fs::read(&torrent).unwrap();
    let at = bytes.windows(6).position(|w| w == b"4:info").unwrap() + 6;
    let size = (bytes.len() - 1 - at).to_string();
    let mut silent = Command::new(python());
    silent
        .arg(interop_dir().join("attackers.py"))
        .args([
            "silent-metadata",
            "--from",
            "127.0.0.2",
            "--metadata-size",
            &size,
        ])
        .args([
            "--info-hash",
            &hex(&info_hash_v1(&torrent)),
            "--duration",
            "200",
        ]);
    let mut silent = Proc::spawn(silent, Duration::from_secs(220));
    let silent_port = silent.wait_line(Duration::from_secs(10), |l| {
        serde_json::from_str::<Value>(l).ok()?["port"].as_u64()
    });
    let link = format!(
        "magnet:?xt=urn:btih:{}&x.pe=127.0.0.2:{silent_port}&x.pe=127.0.0.1:{lt_port}",
        hex(&info_hash_v1(&torrent))
    );
    // Unattacked first (only libtorrent): the time to compare with, and libtorrent is
    // surely ready afterwards.
    let plain = format!(
        "magnet:?xt=urn:btih:{}&x.pe=127.0.0.1:{lt_port}",
        hex(&info_hash_v1(&torrent))
    );
    let unattacked = {
        let out = tmp.path().join("plain");
        let mut cmd = Command::new(bitpeer_bin());
        cmd.arg("download").arg(&plain).arg("-o").arg(&out).args([
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--no-dht",
            "--no-lsd",
        ]);
        let started = Instant::now();
        let mut dl = Proc::spawn(cmd, Duration::from_secs(60));
        finish_download(&mut dl, Duration::from_secs(60));
        started.elapsed()
    };
    let mut times = Vec::new();
    for run in 0..10 {
        let out = tmp.path().join(format!("out{run}"));
        let mut cmd = Command::new(bitpeer_bin());
        cmd.arg("download").arg(&link).arg("-o").arg(&out).args([
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--no-dht",
            "--no-lsd",
        ]);
        let started = Instant::now();
        let mut dl = Proc::spawn(cmd, Duration::from_secs(60));
        finish_download(&mut dl, Duration::from_secs(60));
        let took = started.elapsed();
        assert_same_tree(&data.join("album"), &out.join("album"));
        assert!(
            took < unattacked + Duration::from_secs(5),
            "run {run}: the magnet download took {took:?} beside a silent metadata peer \
             ({unattacked:?} without it)"
        );
        times.push(took);
    }
    eprintln!(
        "10 magnet downloads beside a silent metadata peer: {times:?}; without it: {unattacked:?}"
    );
    // The attack took place: bitpeer dialled the silent peer and asked it for metadata.
    let st = status(&silent);
    assert!(
        st["accepted"].as_u64().unwrap_or(0) >= 1 && st["asked"].as_u64().unwrap_or(0) >= 1,
        "the silent peer was dialled and asked: {st}"
    );
}
