//! MSE/PE between sessions in one process: encrypted downloads under every pair of
//! policies that can talk, the plaintext fallback of `prefer`, refusals, and hostile
//! handshakes that must end without hanging the listener.

mod common;

use common::{add, make};
use engine::session::{Session, SessionConfig};
use engine::settings::{Encryption, Settings};
use engine::torrent::TorrentConfig;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn session(policy: Encryption) -> Session {
    let mut c = SessionConfig::new("127.0.0.1:0".parse().unwrap());
    c.lsd = None;
    c.dht = None;
    c.settings = Settings {
        encryption: policy,
        ..Settings::default()
    };
    Session::start(c).await.unwrap()
}

/// A seeder with `seed` policy, a leecher with `leech` policy dialling it: the download
/// completes byte for byte.
async fn download(seed: Encryption, leech: Encryption) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let meta = make(&src, "f.bin", 700_001, 3);
    let s = session(seed).await;
    let st = add(&s, &meta, &src, vec![]).await;
    let out = tmp.path().join("out");
    let l = session(leech).await;
    let lt = add(&l, &meta, &out, vec![s.listen_addr()]).await;
    tokio::time::timeout(Duration::from_secs(60), lt.wait_complete())
        .await
        .unwrap_or_else(|_| panic!("seed {seed}, leech {leech}: no download"));
    assert_eq!(
        std::fs::read(out.join("f.bin")).unwrap(),
        std::fs::read(src.join("f.bin")).unwrap()
    );
    lt.shutdown().await;
    st.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_under_every_compatible_pair_of_policies() {
    use Encryption::*;
    for (seed, leech) in [
        (Require, Require),
        (Prefer, Require),
        (Require, Prefer),
        (Prefer, Prefer),
        // prefer dials encrypted, is refused, dials again in plaintext.
        (Disable, Prefer),
        (Prefer, Disable),
    ] {
        download(seed, leech).await;
    }
}

/// The connection is closed (EOF or error) within the deadline without an answer that
/// goes on.
async fn closed(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // Yb and PadB: read on
            Err(_) => return false,
        }
    }
}

fn plaintext_handshake(info_hash: [u8; 20]) -> Vec<u8> {
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&info_hash);
    hs.extend_from_slice(&[0xCD; 20]);
    hs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_by_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make(tmp.path(), "f.bin", 50_000, 1);
    let ih = meta.info_hashes.get_v1().unwrap().0;

    // require: a plaintext handshake gets no answer.
    let s = session(Encryption::Require).await;
    let t = add(&s, &meta, tmp.path(), vec![]).await;
    let mut c = tokio::net::TcpStream::connect(s.listen_addr())
        .await
        .unwrap();
    c.write_all(&plaintext_handshake(ih)).await.unwrap();
    assert!(closed(&mut c, Duration::from_secs(5)).await);
    t.shutdown().await;

    // disable: an MSE handshake gets no answer (not even Yb).
    let s = session(Encryption::Disable).await;
    let t = add(&s, &meta, tmp.path(), vec![]).await;
    let mut c = tokio::net::TcpStream::connect(s.listen_addr())
        .await
        .unwrap();
    let ya = mse::KeyPair::from_secret([7; 20]);
    c.write_all(ya.public()).await.unwrap();
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    t.shutdown().await;
}

/// Hostile handshakes against a `prefer` node: each is closed in bounded time, and the
/// node keeps serving an honest encrypted peer while one stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_handshakes_end_and_others_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let meta = make(&src, "f.bin", 400_000, 9);
    let s = session(Encryption::Prefer).await;
    let st = add(&s, &meta, &src, vec![]).await;
    let addr = s.listen_addr();

    // Garbage.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let garbage: Vec<u8> = (0..2000u32).map(|i| (i * 131 + 7) as u8).collect();
    let _ = c.write_all(&garbage).await;
    assert!(closed(&mut c, Duration::from_secs(5)).await, "garbage");

    // A valid Ya, then padding past 512 bytes that never holds HASH('req1', S).
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let ya = mse::KeyPair::from_secret([7; 20]);
    c.write_all(ya.public()).await.unwrap();
    let _ = c.write_all(&[0u8; 5000]).await;
    assert!(closed(&mut c, Duration::from_secs(5)).await, "huge padding");

    // A degenerate public key (1).
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut one = [0u8; 96];
    one[95] = 1;
    c.write_all(&one).await.unwrap();
    assert!(closed(&mut c, Duration::from_secs(5)).await, "bad key");

    // A correct handshake for a torrent the node does not have.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut hs = mse::Handshake::initiator(
        [0xEE; 20],
        mse::CRYPTO_RC4,
        Vec::new(),
        mse::Entropy::random(64).unwrap(),
    );
    c.write_all(&hs.take_output()).await.unwrap();
    let mut yb = [0u8; 96];
    c.read_exact(&mut yb).await.unwrap();
    hs.feed(&yb).unwrap();
    c.write_all(&hs.take_output()).await.unwrap();
    assert!(
        closed(&mut c, Duration::from_secs(5)).await,
        "unknown info-hash"
    );

    // Stalls: one after part of Ya, one after Ya (holding half-open slots).
    let mut stall1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    stall1.write_all(&ya.public()[..40]).await.unwrap();
    let mut stall2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    stall2.write_all(ya.public()).await.unwrap();

    // Meanwhile an honest encrypted peer downloads everything.
    let out = tmp.path().join("out");
    let l = session(Encryption::Require).await;
    let lt = add(&l, &meta, &out, vec![addr]).await;
    tokio::time::timeout(Duration::from_secs(60), lt.wait_complete())
        .await
        .expect("served while others stall");
    assert_eq!(
        std::fs::read(out.join("f.bin")).unwrap(),
        std::fs::read(src.join("f.bin")).unwrap()
    );

    // The stalled handshakes hit their deadline (10 s for MSE) and are closed.
    assert!(
        closed(&mut stall1, Duration::from_secs(20)).await,
        "stall 1"
    );
    assert!(
        closed(&mut stall2, Duration::from_secs(20)).await,
        "stall 2"
    );
    lt.shutdown().await;
    st.shutdown().await;
}

/// A magnet link's metadata and data over encrypted connections only, both when the
/// fetch dials the seeder and when the seeder dials the fetch (then the router finds the
/// fetch by its obfuscated info-hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magnet_downloads_over_required_encryption_both_ways() {
    use engine::session::{AddSource, AddTorrent};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let meta = make(&src, "m.bin", 300_007, 5);
    let ih = meta.info_hashes.get_v1().unwrap().0;
    let hex: String = ih.iter().map(|b| format!("{b:02x}")).collect();
    let magnet = metainfo::magnet::Magnet::parse(&format!("magnet:?xt=urn:btih:{hex}")).unwrap();
    for seeder_dials in [false, true] {
        let leecher = session(Encryption::Require).await;
        let out = tmp.path().join(format!("out-{seeder_dials}"));
        let seeder = session(Encryption::Require).await;
        let seed_peers = if seeder_dials {
            vec![leecher.listen_addr()]
        } else {
            vec![]
        };
        let st = add(&seeder, &meta, &src, seed_peers).await;
        let leech_peers = if seeder_dials {
            vec![]
        } else {
            vec![seeder.listen_addr()]
        };
        let id = leecher
            .add(AddTorrent {
                source: AddSource::Magnet(Box::new(magnet.clone())),
                config: TorrentConfig::new(&out, leech_peers),
                paused: false,
            })
            .unwrap();
        let lt = tokio::time::timeout(Duration::from_secs(60), leecher.wait_live(id))
            .await
            .unwrap_or_else(|_| panic!("metadata (seeder dials: {seeder_dials})"))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), lt.wait_complete())
            .await
            .unwrap_or_else(|_| panic!("data (seeder dials: {seeder_dials})"));
        assert_eq!(
            std::fs::read(out.join("m.bin")).unwrap(),
            std::fs::read(src.join("m.bin")).unwrap()
        );
        lt.shutdown().await;
        st.shutdown().await;
    }
}
