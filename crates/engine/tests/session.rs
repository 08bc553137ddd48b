//! One session listener serving two torrents: each incoming connection is routed by the
//! info-hash in its handshake, and a handshake for an unknown torrent is dropped.

mod common;

use common::{add, make, make_with};
use engine::session::{LsdSettings, Session, SessionConfig};
use engine::torrent::TorrentConfig;
use metainfo::Metainfo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_routes_two_torrents() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let a = make(&src, "a.bin", 300_001, 1);
    let b = make(&src, "b.bin", 200_003, 2);
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();

    let seeder = Session::bind(local).await.unwrap();
    let sa = add(&seeder, &a, &src, vec![]).await;
    let sb = add(&seeder, &b, &src, vec![]).await;
    assert!(sa.is_complete() && sb.is_complete());
    let addr = seeder.listen_addr();

    // A handshake for a torrent the session does not have gets no answer.
    let mut stray = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&[0xAB; 20]);
    hs.extend_from_slice(&[0xCD; 20]);
    stray.write_all(&hs).await.unwrap();
    let mut buf = [0u8; 1];
    let answer = tokio::time::timeout(Duration::from_secs(5), stray.read(&mut buf)).await;
    assert!(matches!(answer, Ok(Ok(0)) | Ok(Err(_))), "{answer:?}");

    let out_a = tmp.path().join("out-a");
    let out_b = tmp.path().join("out-b");
    let la = Session::bind(local).await.unwrap();
    let lb = Session::bind(local).await.unwrap();
    let ta = add(&la, &a, &out_a, vec![addr]).await;
    let tb = add(&lb, &b, &out_b, vec![addr]).await;
    tokio::time::timeout(Duration::from_secs(60), async {
        ta.wait_complete().await;
        tb.wait_complete().await;
    })
    .await
    .expect("both downloads complete");
    assert_eq!(
        std::fs::read(out_a.join("a.bin")).unwrap(),
        std::fs::read(src.join("a.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read(out_b.join("b.bin")).unwrap(),
        std::fs::read(src.join("b.bin")).unwrap()
    );

    // The same torrent cannot be added twice to one session.
    let again = seeder
        .add_torrent(
            a.clone(),
            TorrentConfig::new(&src, vec![]),
            Arc::new(AtomicU64::new(0)),
        )
        .await;
    assert!(matches!(
        again,
        Err(engine::torrent::EngineError::Duplicate)
    ));
    for t in [&sa, &sb, &ta, &tb] {
        t.shutdown().await;
    }
}

/// Piece memory is let go: a finished download keeps no piece buffers, and a seeder whose
/// last peer left drops its read cache and spare buffers (a daemon holding many torrents
/// must not keep megabytes for each one that once had a peer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piece_memory_goes_when_the_download_ends_and_the_last_peer_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let meta = make(&src, "a.bin", 3_000_017, 3);
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let seeder = Session::bind(local).await.unwrap();
    let st = add(&seeder, &meta, &src, vec![]).await;
    let leecher = Session::bind(local).await.unwrap();
    let out = tmp.path().join("out");
    let lt = add(&leecher, &meta, &out, vec![seeder.listen_addr()]).await;
    tokio::time::timeout(Duration::from_secs(60), lt.wait_complete())
        .await
        .expect("the download completes");
    assert!(st.stats().uploaded > 0);
    // The last pieces' hash-and-write tasks end just after completion is announced.
    let settled = async |t: &engine::torrent::Torrent, what: &str| {
        for _ in 0..100 {
            if t.stats().buffered_bytes == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{what} still holds {} bytes of buffers",
            t.stats().buffered_bytes
        );
    };
    settled(&lt, "the finished download").await;
    assert!(
        st.stats().buffered_bytes > 0,
        "the seeder keeps what it read while its peer is there"
    );
    lt.shutdown().await;
    settled(&st, "the seeder without peers").await;
    assert_eq!(
        std::fs::read(out.join("a.bin")).unwrap(),
        std::fs::read(src.join("a.bin")).unwrap()
    );
    st.shutdown().await;
}

/// LSD (BEP 14) between two sessions over loopback multicast, on a group port of this test's
/// own: the leecher, given no peer at all, is found by the seeder and downloads the public
/// torrent; the private one (BEP 27) is never announced, so it finds nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_service_discovery_finds_peers_for_public_torrents_only() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let public = make_with(&src, "public.bin", 200_000, 7, false);
    let private = make_with(&src, "private.bin", 100_000, 8, true);
    let group_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = || {
        let mut c = SessionConfig::new("127.0.0.1:0".parse().unwrap());
        c.lsd = Some(LsdSettings {
            group: std::net::SocketAddrV4::new([239, 192, 152, 143].into(), group_port),
            interface: std::net::Ipv4Addr::LOCALHOST,
        });
        c
    };
    let seeder = Session::start(config()).await.unwrap();
    assert_eq!(seeder.lsd_error(), None);
    add(&seeder, &public, &src, vec![]).await;
    add(&seeder, &private, &src, vec![]).await;

    let leecher = Session::start(config()).await.unwrap();
    assert_eq!(leecher.lsd_error(), None);
    let out = tmp.path().join("out");
    let tp = add(&leecher, &public, &out, vec![]).await;
    let tq = add(&leecher, &private, &out, vec![]).await;
    tokio::time::timeout(Duration::from_secs(30), tp.wait_complete())
        .await
        .expect("the public torrent is found through LSD and downloaded");
    assert_eq!(
        std::fs::read(out.join("public.bin")).unwrap(),
        std::fs::read(src.join("public.bin")).unwrap()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = tq.stats();
    assert_eq!((s.peers, s.candidates, s.pieces_have), (0, 0, 0), "{s:?}");
    seeder.close();
    leecher.close();
}

/// The extension handshake a session sends for `meta` to a peer that dials it.
async fn extension_handshake_of(addr: SocketAddr, info_hash: [u8; 20]) -> wire::ExtendedHandshake {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut hs = wire::Handshake::new(info_hash, *b"-XX0000-extcheck0000");
    hs.set_extension_protocol(true);
    s.write_all(&hs.encode()).await.unwrap();
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).await.unwrap();
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        assert!(body.len() < 1 << 20);
        s.read_exact(&mut body).await.unwrap();
        if body.len() >= 2 && body[0] == 20 && body[1] == 0 {
            return wire::ExtendedHandshake::decode(&body[2..]).unwrap();
        }
    }
}

/// BEP 27: a private torrent offers no peer exchange; a public one does. Both serve their
/// metadata (BEP 9) and say its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_torrents_offer_no_peer_exchange() {
    let tmp = tempfile::tempdir().unwrap();
    let public = make_with(tmp.path(), "pub.bin", 50_000, 1, false);
    let private = make_with(tmp.path(), "priv.bin", 50_000, 2, true);
    let session = Session::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    add(&session, &public, tmp.path(), vec![]).await;
    add(&session, &private, tmp.path(), vec![]).await;
    let addr = session.listen_addr();
    let of = |m: &Metainfo| m.info_hashes.get_v1().unwrap().0;
    let p = tokio::time::timeout(
        Duration::from_secs(10),
        extension_handshake_of(addr, of(&public)),
    )
    .await
    .unwrap();
    assert!(p.extension_id("ut_pex").is_some(), "{p:?}");
    assert!(p.extension_id("ut_metadata").is_some(), "{p:?}");
    assert_eq!(p.metadata_size, Some(public.info_bytes.len() as u64));
    let q = tokio::time::timeout(
        Duration::from_secs(10),
        extension_handshake_of(addr, of(&private)),
    )
    .await
    .unwrap();
    assert!(q.extension_id("ut_pex").is_none(), "{q:?}");
    assert!(q.extension_id("ut_metadata").is_some(), "{q:?}");
    session.close();
}
