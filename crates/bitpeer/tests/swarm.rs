//! A swarm of 20 bitpeer processes on 127.0.0.1: one `bitpeer seed` and 19 `bitpeer
//! download`s running at once. The leechers start first, each dialing up to three leechers
//! started before it (at the addresses they print); then the seeder starts and dials all
//! 19. So all 20 nodes surely run at the same time, and pieces must also flow between
//! leechers (the seeder unchokes only 8 peers at once). All must finish within the deadline
//! with every byte right.

mod common;

use std::time::{Duration, Instant};

use common::*;

const LEECHERS: usize = 19;
const SWARM_DEADLINE: Duration = Duration::from_secs(150);

#[test]
fn twenty_nodes_one_seeder_nineteen_leechers() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("seed").join("swarm");
    write_random(&src.join("big.bin"), 51, 4 * 1024 * 1024 - 4321);
    write_random(&src.join("small/odd.txt"), 52, 54_321);
    std::fs::create_dir_all(src.join("small")).unwrap();
    std::fs::write(src.join("small/empty"), b"").unwrap();
    let torrent = tmp.path().join("swarm.torrent");
    bitpeer_create(&src, &torrent, &["--piece-length", "32768"]);

    let started = Instant::now();
    let mut leechers: Vec<Proc> = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    for i in 0..LEECHERS {
        let peers: Vec<String> = addrs.iter().rev().take(3).cloned().collect();
        let out = tmp.path().join(format!("leecher{i:02}"));
        let mut p = spawn_bitpeer_download(&torrent, &out, &peers, SWARM_DEADLINE);
        addrs.push(download_listen_addr(&mut p));
        leechers.push(p);
    }
    for p in &mut leechers {
        p.assert_no_panic();
        assert!(
            p.try_status().is_none(),
            "a leecher exited with no seeder: {}",
            p.explain()
        );
    }
    eprintln!(
        "{LEECHERS} leechers started in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (mut seeder, _) = spawn_bitpeer_seed(&torrent, src.parent().unwrap(), &addrs);

    let end = started + SWARM_DEADLINE;
    let mut uploaded_by_leechers = 0;
    let mut slowest = 0.0f64;
    for (i, p) in leechers.iter_mut().enumerate() {
        let left = end.saturating_duration_since(Instant::now());
        let last = finish_download(p, left);
        uploaded_by_leechers += last["uploaded"].as_u64().unwrap();
        slowest = slowest.max(last["elapsed"].as_f64().unwrap());
        assert_eq!(last["hash_failures"], 0, "leecher {i}: {last}");
        assert_same_tree(
            &src,
            &tmp.path().join(format!("leecher{i:02}")).join("swarm"),
        );
    }
    eprintln!(
        "all {LEECHERS} done {:.1} s after the first started (slowest took {slowest:.1} s); \
         leechers uploaded {uploaded_by_leechers} bytes to each other",
        started.elapsed().as_secs_f64()
    );
    seeder.assert_no_panic();
    assert!(
        seeder.try_status().is_none(),
        "the seeder exited: {}",
        seeder.explain()
    );
    assert!(
        uploaded_by_leechers > 0,
        "no leecher uploaded anything: the seeder served all {LEECHERS}"
    );
}
