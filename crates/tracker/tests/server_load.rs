//! Load on a running tracker over loopback UDP: 12,000 announces from distinct peers over
//! 600 info-hashes, from a generator with a bounded number of requests in flight, while an
//! HTTP probe checks that the server keeps answering. The tracker's caps are set below the
//! load, so the test also checks that they hold: every announce is answered (peers, or a
//! `tracker is full` error for a new swarm) and the counts never pass the caps.

mod server_util;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use server_util::*;
use tracker::server::{Config, ServerConfig};

const ANNOUNCES: u32 = 12_000;
const HASHES: u32 = 600;
const SOCKETS: usize = 8;
const WINDOW: usize = 32;
const MAX_PEERS: usize = 5_000;
const MAX_SWARMS: usize = 400;
const MAX_PER_SWARM: usize = 15;

fn info_hash(n: u32) -> [u8; 20] {
    let mut h = [0x5a; 20];
    h[..4].copy_from_slice(&n.to_be_bytes());
    h
}

fn peer_id(n: u32) -> [u8; 20] {
    let mut p = *b"-LD0001-............";
    p[8..12].copy_from_slice(&n.to_be_bytes());
    p
}

#[derive(Default)]
struct Tally {
    peers_answers: u32,
    full_errors: u32,
    most_peers: usize,
}

/// Sends announces `ids` from `sock` (connection id `cid`), WINDOW at a time, resending
/// any without an answer up to 5 times.
fn drive(sock: &UdpSocket, cid: u64, ids: &[u32], to: std::net::SocketAddr, tally: &mut Tally) {
    let mut buf = [0u8; 2048];
    for window in ids.chunks(WINDOW) {
        let mut waiting: HashMap<u32, u32> = window.iter().map(|&i| (i, i % HASHES)).collect();
        for _attempt in 0..5 {
            for (&i, &h) in &waiting {
                let port = 1024 + (i % 60_000) as u16;
                let left = if i % 3 == 0 { 0 } else { 1000 };
                let p = announce_packet(cid, i, &info_hash(h), &peer_id(i), left, port);
                sock.send_to(&p, to).unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while !waiting.is_empty() && Instant::now() < deadline {
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    break;
                };
                assert!(n >= 8, "short reply");
                let action = u32::from_be_bytes(buf[..4].try_into().unwrap());
                let tid = u32::from_be_bytes(buf[4..8].try_into().unwrap());
                if waiting.remove(&tid).is_none() {
                    continue; // an answer to a resend already counted
                }
                match action {
                    1 => {
                        assert!(n >= 20 && (n - 20) % 6 == 0, "announce reply of {n} bytes");
                        tally.peers_answers += 1;
                        tally.most_peers = tally.most_peers.max((n - 20) / 6);
                    }
                    3 => {
                        let msg = String::from_utf8_lossy(&buf[8..n]);
                        assert!(msg.contains("full"), "unexpected error {msg:?}");
                        tally.full_errors += 1;
                    }
                    a => panic!("unexpected action {a}"),
                }
            }
            if waiting.is_empty() {
                break;
            }
        }
        assert!(
            waiting.is_empty(),
            "{} announces never answered",
            waiting.len()
        );
    }
}

#[test]
fn ten_thousand_udp_announces_stay_within_caps() {
    let tracker = Config {
        max_peers: MAX_PEERS,
        max_swarms: MAX_SWARMS,
        max_peers_per_swarm: MAX_PER_SWARM,
        // Every announce comes from 127.0.0.1: this test is about the global caps.
        max_peers_per_ip: usize::MAX,
        ..Config::default()
    };
    let t = Running::start(ServerConfig {
        tracker,
        ..ServerConfig::default()
    });
    let start = Instant::now();

    // An HTTP probe alongside the load: every scrape must come back quickly.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        let http = t.http;
        std::thread::spawn(move || {
            let target = format!("/scrape?info_hash={}", escape(&info_hash(1)));
            let (mut worst, mut count) = (Duration::ZERO, 0u32);
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let (status, _) = http_get(http, &target);
                assert_eq!(status, 200);
                worst = worst.max(t0.elapsed());
                count += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (worst, count)
        })
    };

    let sockets: Vec<(UdpSocket, u64)> = (0..SOCKETS)
        .map(|_| {
            let s = udp_client(Duration::from_millis(500));
            let cid = udp_connect(&s, t.udp);
            (s, cid)
        })
        .collect();
    let ids: Vec<u32> = (0..ANNOUNCES).collect();
    let per_socket = ids.len().div_ceil(SOCKETS);
    let mut tally = Tally::default();
    // Interleave the sockets window by window so load comes from many addresses at once.
    let chunks: Vec<Vec<&[u32]>> = ids
        .chunks(per_socket)
        .map(|c| c.chunks(WINDOW).collect())
        .collect();
    for round in 0..chunks.iter().map(Vec::len).max().unwrap_or(0) {
        for (k, (sock, cid)) in sockets.iter().enumerate() {
            if let Some(w) = chunks.get(k).and_then(|c| c.get(round)) {
                drive(sock, *cid, w, t.udp, &mut tally);
            }
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (worst_probe, probes) = probe.join().expect("the HTTP probe failed");

    let stats = t.stats();
    eprintln!(
        "{ANNOUNCES} announces in {elapsed:?}: {} with peers, {} refused as full; \
         tracker holds {} peers in {} swarms; HTTP probe worst {worst_probe:?} over {probes}",
        tally.peers_answers, tally.full_errors, stats.peers, stats.swarms
    );
    assert_eq!(tally.peers_answers + tally.full_errors, ANNOUNCES);
    assert!(stats.announces >= ANNOUNCES as u64);
    // The caps hold, and the load was big enough to reach them.
    assert!(stats.peers <= MAX_PEERS, "{stats:?}");
    assert!(stats.swarms <= MAX_SWARMS, "{stats:?}");
    assert!(
        tally.full_errors > 0 && stats.rejected > 0,
        "caps never reached"
    );
    assert!(stats.peers >= MAX_PEERS - MAX_PER_SWARM, "{stats:?}");
    assert!(
        tally.most_peers <= 50,
        "more than numwant peers in one answer"
    );
    let sample: Vec<String> = (0..HASHES)
        .step_by(7)
        .map(|h| escape(&info_hash(h)))
        .collect();
    for chunk in sample.chunks(40) {
        let q = chunk
            .iter()
            .map(|h| format!("info_hash={h}"))
            .collect::<Vec<_>>()
            .join("&");
        let (status, body) = http_get(t.http, &format!("/scrape?{q}"));
        assert_eq!(status, 200);
        let v = bencode::decode(&body).unwrap();
        let files = v
            .as_dict()
            .unwrap()
            .get(b"files")
            .unwrap()
            .as_dict()
            .unwrap();
        for (_, e) in files.iter() {
            let e = e.as_dict().unwrap();
            let n = |k: &[u8]| e.get(k).unwrap().as_int().unwrap() as usize;
            assert!(n(b"complete") + n(b"incomplete") <= MAX_PER_SWARM);
        }
    }
    // Still responsive after the flood: a fresh client connects and announces at once.
    let s = udp_client(Duration::from_secs(2));
    let cid = udp_connect(&s, t.udp);
    s.send_to(
        &announce_packet(cid, 1, &info_hash(0), &peer_id(0), 5, 7),
        t.udp,
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    s.recv_from(&mut buf).expect("no answer after the load");
    assert!(
        worst_probe < Duration::from_secs(3),
        "HTTP stalled {worst_probe:?} under load"
    );
    assert!(probes > 0);
    assert!(elapsed < Duration::from_secs(120), "load took {elapsed:?}");
}
