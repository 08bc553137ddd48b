//! A hostile host on the shared UDP socket: while a real download runs over uTP, another
//! socket sprays the seeder's port with uTP packets carrying forged connection ids and
//! sequence numbers (every connection id, every packet type), truncated headers, junk that
//! looks like neither uTP nor KRPC, and a flood of SYNs. Nothing may panic or hang, and the
//! real transfer must still complete, byte for byte.

use engine::session::{Session, SessionConfig};
use engine::torrent::TorrentConfig;
use engine::transport::Transports;
use engine::utp::UtpHeader;
use metainfo::Metainfo;
use metainfo::create::{self, CreateOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn make(dir: &Path, name: &str, len: usize) -> Metainfo {
    let data: Vec<u8> = (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join(name), &data).unwrap();
    let bytes = create::create(
        &dir.join(name),
        &CreateOptions::default(),
        &AtomicU64::new(0),
        &AtomicBool::new(false),
    )
    .unwrap();
    Metainfo::from_bytes(&bytes).unwrap()
}

async fn utp_session() -> Session {
    let mut config = SessionConfig::new("127.0.0.1:0".parse().unwrap());
    config.lsd = None;
    config.dht = None;
    config.transports = Transports {
        tcp: false,
        utp: true,
    };
    Session::start(config).await.unwrap()
}

fn header(kind: u8, connection_id: u16, seq_nr: u16, ack_nr: u16) -> [u8; 20] {
    UtpHeader {
        kind,
        extension: 0,
        connection_id,
        timestamp_us: 0x1234_5678,
        timestamp_diff_us: 0,
        wnd_size: 1 << 20,
        seq_nr,
        ack_nr,
    }
    .encode()
}

/// Sends the attack until `stop`; returns how many datagrams it sent.
async fn attack(target: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let socks = [
        tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
    ];
    let mut sent = 0u64;
    let mut round = 0u32;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while !stop.load(Ordering::SeqCst) {
        let s = &socks[(round % 2) as usize];
        let mut batch: Vec<Vec<u8>> = Vec::new();
        // Forged ids and sequence numbers: data, fin, state, reset for every id in turn,
        // with a payload on data packets.
        for _ in 0..64 {
            let r = next();
            let kind = (r % 4) as u8;
            let mut p = header(kind, (r >> 8) as u16, (r >> 24) as u16, (r >> 40) as u16).to_vec();
            if kind == 0 {
                p.extend_from_slice(&[0x13; 100]);
            }
            batch.push(p);
        }
        // A SYN flood: new connection ids every time.
        for _ in 0..64 {
            let r = next();
            batch.push(header(4, r as u16, (r >> 16) as u16, 0).to_vec());
        }
        // Truncated headers, unknown versions and types, extension chains that run off
        // the end, junk, and a KRPC-looking datagram (the DHT is off).
        for n in 0..20usize {
            batch.push(header(0, 1, 1, 1)[..n].to_vec());
        }
        let mut ext = header(0, 7, 7, 7).to_vec();
        ext[1] = 1;
        ext.extend_from_slice(&[2, 200, 1]);
        batch.push(ext);
        batch.push(vec![0x51; 40]);
        batch.push(vec![0x02; 40]);
        batch.push(vec![0xff; 1400]);
        batch.push(b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe".to_vec());
        for p in &batch {
            if s.send_to(p, target).await.is_ok() {
                sent += 1;
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_packets_and_a_syn_flood_do_not_stop_a_transfer() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let meta = make(&src, "h.bin", 4 * 1024 * 1024 + 17);

    let seeder = utp_session().await;
    let seed = seeder
        .add_torrent(
            meta.clone(),
            TorrentConfig::new(&src, vec![]),
            Arc::new(AtomicU64::new(0)),
        )
        .await
        .unwrap();
    assert!(seed.is_complete());
    let target = seeder.listen_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = tokio::spawn(attack(target, stop.clone()));
    // Let the flood fill the seeder's queues before the real peer arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let out = tmp.path().join("out");
    let leecher = utp_session().await;
    let leech = leecher
        .add_torrent(
            meta.clone(),
            TorrentConfig::new(&out, vec![target]),
            Arc::new(AtomicU64::new(0)),
        )
        .await
        .unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(120), leech.wait_complete()).await;
    stop.store(true, Ordering::SeqCst);
    let sent = tokio::time::timeout(Duration::from_secs(10), attacker)
        .await
        .expect("the attacker stops")
        .unwrap();
    assert!(
        finished.is_ok(),
        "the download did not finish under attack ({sent} hostile datagrams)"
    );
    assert!(sent > 10_000, "only {sent} hostile datagrams were sent");
    assert_eq!(
        std::fs::read(out.join("h.bin")).unwrap(),
        std::fs::read(src.join("h.bin")).unwrap()
    );
    eprintln!("transfer completed alongside {sent} hostile datagrams");
    // Both sessions still shut down promptly.
    tokio::time::timeout(Duration::from_secs(20), async {
        leech.shutdown().await;
        seed.shutdown().await;
        leecher.shutdown().await;
        seeder.shutdown().await;
    })
    .await
    .expect("shutdown after the attack");
}
