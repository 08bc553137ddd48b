//! A torrent's connection loop driven over an in-memory stream (`tokio::io::duplex`) with
//! paused time: no socket and no real waiting. A scripted peer handshakes and then stays
//! silent; the node sends keep-alives every 90 s of its silence and closes the connection
//! after 180 s of the peer's. Another peer that asks for a block is answered.

use engine::session::Session;
use engine::torrent::TorrentConfig;
use engine::transport::{PeerAddr, PeerStream, TransportKind};
use metainfo::Metainfo;
use metainfo::create::{self, CreateOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

fn seed_torrent(dir: &std::path::Path) -> Metainfo {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    let opts = CreateOptions {
        piece_length: Some(16384),
        ..CreateOptions::default()
    };
    let bytes = create::create(
        &dir.join("f.bin"),
        &opts,
        &AtomicU64::new(0),
        &AtomicBool::new(false),
    )
    .unwrap();
    Metainfo::from_bytes(&bytes).unwrap()
}

/// Connect a scripted peer to the session over a duplex stream and exchange handshakes;
/// returns the peer's end with the node's handshake read.
async fn connect(session: &Session, info_hash: [u8; 20], peer_no: u8) -> DuplexStream {
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(ours);
    let addr = format!("127.0.0.{peer_no}:6881").parse().unwrap();
    session.incoming(PeerStream::from_halves(
        TransportKind::Tcp,
        PeerAddr::Ip(addr),
        r,
        w,
    ));
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]); // BEP 10 + BEP 6
    hs.extend_from_slice(&info_hash);
    hs.extend_from_slice(&[peer_no; 20]);
    theirs.write_all(&hs).await.unwrap();
    let mut back = [0u8; 68];
    theirs.read_exact(&mut back).await.unwrap();
    assert_eq!(&back[28..48], &info_hash);
    theirs
}

/// Read one length-prefixed message: (id or None for a keep-alive, payload).
async fn read_msg(s: &mut DuplexStream) -> Option<(Option<u8>, Vec<u8>)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Some((None, Vec::new()));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((Some(body[0]), body[1..].to_vec()))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keepalives_idle_timeout_and_requests_in_virtual_time() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = seed_torrent(tmp.path());
    let info_hash = meta.info_hashes.get_v1().unwrap().0;
    let session = Session::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    session
        .add_torrent(meta, TorrentConfig::new(tmp.path(), vec![]), Arc::default())
        .await
        .unwrap();

    // A silent peer: it reads only.
    let mut silent = connect(&session, info_hash, 2).await;
    let start = Instant::now();
    let mut keepalives = Vec::new();
    let mut closed_at = None;
    while let Some((id, _)) = tokio::time::timeout(Duration::from_secs(400), read_msg(&mut silent))
        .await
        .expect("the node closes the silent peer within 400 s")
    {
        if id.is_none() {
            keepalives.push(start.elapsed());
        }
    }
    if closed_at.is_none() {
        closed_at = Some(start.elapsed());
    }
    let closed_at = closed_at.unwrap();
    // Closed for idleness at 180 s of virtual time (not before), with a keep-alive at
    // about 90 s of our own silence on the way.
    assert!(
        closed_at >= Duration::from_secs(180) && closed_at < Duration::from_secs(185),
        "closed after {closed_at:?}"
    );
    assert_eq!(keepalives.len(), 1, "{keepalives:?}");
    assert!(
        keepalives[0] >= Duration::from_secs(89) && keepalives[0] <= Duration::from_secs(92),
        "{keepalives:?}"
    );

    // A peer that says interested and asks for a block gets unchoked and the block.
    let mut asker = connect(&session, info_hash, 3).await;
    asker.write_all(&[0, 0, 0, 1, 2]).await.unwrap(); // interested
    let mut unchoked = false;
    let mut got_piece = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !got_piece {
        let Ok(Some((id, payload))) =
            tokio::time::timeout(Duration::from_secs(30), read_msg(&mut asker)).await
        else {
            break;
        };
        match id {
            Some(1) if !unchoked => {
                unchoked = true;
                let mut req = vec![0, 0, 0, 13, 6];
                req.extend_from_slice(&1u32.to_be_bytes());
                req.extend_from_slice(&0u32.to_be_bytes());
                req.extend_from_slice(&16384u32.to_be_bytes());
                asker.write_all(&req).await.unwrap();
            }
            Some(7) => {
                assert_eq!(&payload[..8], &[0, 0, 0, 1, 0, 0, 0, 0]);
                let want: Vec<u8> = (16384..32768u32).map(|i| (i % 251) as u8).collect();
                assert_eq!(&payload[8..], &want[..]);
                got_piece = true;
            }
            _ => {}
        }
    }
    assert!(
        unchoked && got_piece,
        "unchoked {unchoked}, piece {got_piece}"
    );
    session.shutdown().await;
}
