//! The session owns its torrents' lifecycle: add, pause, resume, recheck and remove at
//! run time, by id; duplicates refused before any file is touched; a paused torrent holds
//! no connection; removing with data deletes exactly that torrent's files.

mod common;

use engine::error::EngineError;
use engine::session::{AddSource, AddTorrent, Session, TorrentState};
use engine::torrent::TorrentConfig;
use metainfo::Metainfo;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn make(dir: &Path, name: &str, len: usize, seed: u8) -> Metainfo {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    // A folder of two files, so removal has folders to clean up.
    for (i, part) in [len / 3, len - len / 3].iter().enumerate() {
        let data: Vec<u8> = (0..*part)
            .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8) ^ seed)
            .collect();
        std::fs::write(path.join(format!("part{i}.bin")), &data).unwrap();
    }
    common::torrent_of(&path, false)
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn add(meta: &Metainfo, dir: &Path, peers: Vec<SocketAddr>, paused: bool) -> AddTorrent {
    AddTorrent {
        source: AddSource::Torrent(Box::new(meta.clone())),
        config: TorrentConfig::new(dir, peers),
        paused,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_recheck_remove_at_run_time() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let a = make(&src, "alpha", 3_000_000, 1);
    let b = make(&src, "beta", 500_000, 2);

    let seeder = Session::bind(local()).await.unwrap();
    seeder
        .add_torrent(a.clone(), TorrentConfig::new(&src, vec![]), Arc::default())
        .await
        .unwrap();
    seeder
        .add_torrent(b.clone(), TorrentConfig::new(&src, vec![]), Arc::default())
        .await
        .unwrap();
    let seed_addr = seeder.listen_addr();
    // A slow seeder, so a pause lands in the middle of the download.
    let mut s = seeder.settings();
    s.upload_limit = 400_000;
    seeder.set_settings(s);

    let out = tmp.path().join("out");
    let leecher = Session::bind(local()).await.unwrap();
    let ida = leecher.add(add(&a, &out, vec![seed_addr], false)).unwrap();
    let idb = leecher.add(add(&b, &out, vec![seed_addr], true)).unwrap();

    // A duplicate is refused by info-hash, before its folder is even created.
    let elsewhere = tmp.path().join("elsewhere");
    assert!(matches!(
        leecher.add(add(&a, &elsewhere, vec![], false)),
        Err(EngineError::Duplicate)
    ));
    assert!(!elsewhere.exists());

    // Added paused: nothing on disk, no connection.
    assert_eq!(leecher.info(idb).unwrap().state, TorrentState::Paused);
    assert!(!out.join("beta").exists());

    let t = leecher.wait_live(ida).await.unwrap();
    wait_for("some data", Duration::from_secs(30), || {
        t.stats().bytes_have > 0
    })
    .await;
    leecher.pause(ida).await.unwrap();
    let info = leecher.info(ida).unwrap();
    assert_eq!(info.state, TorrentState::Paused);
    assert!(
        info.stats.bytes_have < info.stats.total_bytes,
        "paused too late"
    );
    assert!(leecher.torrent(ida).is_none());
    wait_for("connections closed", Duration::from_secs(5), || {
        leecher.connection_count() == 0
    })
    .await;
    let frozen = leecher.info(ida).unwrap().stats.bytes_have;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(leecher.info(ida).unwrap().stats.bytes_have, frozen);

    // Resume: the resume file spares a recheck, and the download finishes.
    leecher.resume(ida).unwrap();
    leecher.resume(idb).unwrap();
    let t = leecher.wait_live(ida).await.unwrap();
    assert!(t.stats().bytes_have >= frozen);
    tokio::time::timeout(Duration::from_secs(60), t.wait_complete())
        .await
        .expect("alpha completes after resume");
    let tb = leecher.wait_live(idb).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), tb.wait_complete())
        .await
        .expect("beta completes");
    for f in [
        "alpha/part0.bin",
        "alpha/part1.bin",
        "beta/part0.bin",
        "beta/part1.bin",
    ] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(src.join(f)).unwrap(),
            "{f}"
        );
    }

    // Recheck: damage a byte, the recheck finds the piece missing.
    let p = out.join("beta/part0.bin");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    leecher.pause(idb).await.unwrap();
    leecher.recheck(idb).await.unwrap();
    leecher.resume(idb).unwrap();
    let tb = leecher.wait_live(idb).await.unwrap();
    // Fetched again from the seeder.
    tokio::time::timeout(Duration::from_secs(60), tb.wait_complete())
        .await
        .expect("beta completes after recheck");
    assert_eq!(
        std::fs::read(&p).unwrap(),
        std::fs::read(src.join("beta/part0.bin")).unwrap()
    );

    // Remove alpha with its data: exactly its files and folder go; beta stays.
    std::fs::write(out.join("keep.txt"), b"not the torrent's").unwrap();
    leecher.remove(ida, true).await.unwrap();
    assert!(!out.join("alpha").exists());
    assert!(out.join("beta/part0.bin").exists());
    assert!(out.join("keep.txt").exists());
    assert!(leecher.info(ida).is_none());
    assert!(matches!(
        leecher.pause(ida).await,
        Err(EngineError::UnknownTorrent(_))
    ));
    // Remove beta keeping its data.
    leecher.remove(idb, false).await.unwrap();
    assert!(out.join("beta/part1.bin").exists());
    assert!(leecher.list().is_empty());
    // It can be added again now.
    leecher.add(add(&a, &out, vec![], true)).unwrap();

    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// Moving a torrent's data while it runs: the files (and resume file) go to the new
/// folder, the old folder is left without them, and the torrent is live again with every
/// piece still verified (no download, trusted from its resume data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_data_while_running() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let meta = make(&src, "gamma", 700_000, 3);
    let session = Session::bind(local()).await.unwrap();
    let id = session.add(add(&meta, &src, vec![], false)).unwrap();
    let t = session.wait_live(id).await.unwrap();
    assert!(t.is_complete());
    let dest = tmp.path().join("elsewhere/deeper");
    session.move_data(id, dest.clone()).await.unwrap();
    assert!(!src.join("gamma").exists(), "the old folder is emptied");
    for f in ["gamma/part0.bin", "gamma/part1.bin"] {
        assert!(dest.join(f).is_file(), "{f} moved");
    }
    let info = session.info(id).unwrap();
    assert_eq!(info.save_path, dest);
    let t = session.wait_live(id).await.unwrap();
    assert!(t.is_complete(), "still complete after the move");
    assert_eq!(t.stats().downloaded, 0);
    // A folder that already holds the files is refused, and nothing moves.
    std::fs::create_dir_all(src.join("gamma")).unwrap();
    std::fs::write(src.join("gamma/part0.bin"), b"someone else's").unwrap();
    assert!(session.move_data(id, src.clone()).await.is_err());
    assert!(dest.join("gamma/part1.bin").is_file());
    session.shutdown().await;
}
