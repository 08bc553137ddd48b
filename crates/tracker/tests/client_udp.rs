//! The tracker client against fake UDP trackers (BEP 15) on 127.0.0.1 and ::1: lost
//! packets, wrong transaction ids, forged senders, connection-id reuse, errors, scrape.

mod client_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use client_common::*;
use tracker::client::{ClientConfig, TrackerClient, TrackerError};
use tracker::proto::{AnnounceEvent, ScrapeEntry};

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_DEADLINE, f)
        .await
        .expect("test deadline")
}

fn peers() -> Vec<SocketAddr> {
    vec![
        "10.0.0.1:6881".parse().unwrap(),
        "0.0.0.0:6881".parse().unwrap(),
        "10.0.0.2:0".parse().unwrap(),
        "10.0.0.3:51413".parse().unwrap(),
    ]
}

#[tokio::test]
async fn announce_sends_the_request_and_reads_the_answer() {
    let server = fake_udp(
        "127.0.0.1:0",
        UdpBehaviour {
            peers: peers(),
            ..Default::default()
        },
    )
    .await;
    let c = TrackerClient::new(fast_config()).unwrap();
    let req = request(AnnounceEvent::Started);
    let resp = bounded(c.announce(&server.url(), &req, None))
        .await
        .unwrap();
    assert_eq!(resp.interval, 1800);
    assert_eq!((resp.complete, resp.incomplete), (Some(3), Some(7)));
    assert_eq!(
        resp.peers,
        vec![
            "10.0.0.1:6881".parse::<SocketAddr>().unwrap(),
            "10.0.0.3:51413".parse().unwrap()
        ],
        "unroutable peers are dropped"
    );

    let log = server.log();
    assert_eq!(log.connects, 1);
    assert_eq!(log.bad_connection_ids, 0);
    let p = &log.announces[0];
    assert_eq!(p.len(), 98);
    assert_eq!(&p[16..36], &req.info_hash);
    assert_eq!(&p[36..56], &req.peer_id);
    assert_eq!(u64::from_be_bytes(p[56..64].try_into().unwrap()), 20);
    assert_eq!(u64::from_be_bytes(p[64..72].try_into().unwrap()), 30);
    assert_eq!(u64::from_be_bytes(p[72..80].try_into().unwrap()), 10);
    assert_eq!(u32::from_be_bytes(p[80..84].try_into().unwrap()), 2);
    assert_eq!(
        u32::from_be_bytes(p[88..92].try_into().unwrap()),
        0x1234_abcd
    );
    assert_eq!(u32::from_be_bytes(p[92..96].try_into().unwrap()), 50);
    assert_eq!(u16::from_be_bytes(p[96..98].try_into().unwrap()), 6881);
}

#[tokio::test]
async fn a_lost_packet_is_retransmitted() {
    let server = fake_udp(
        "127.0.0.1:0",
        UdpBehaviour {
            drop: vec![1],
            peers: peers(),
            ..Default::default()
        },
    )
    .await;
    let c = TrackerClient::new(fast_config()).unwrap();
    let started = Instant::now();
    let resp = bounded(c.announce(&server.url(), &request(AnnounceEvent::None), None))
        .await
        .unwrap();
    assert_eq!(resp.peers.len(), 2);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(190),
        "answered before the retransmission: {took:?}"
    );
    let log = server.log();
    assert_eq!((log.received, log.connects, log.announces.len()), (3, 1, 1));
}

#[tokio::test]
async fn a_connection_id_that_expires_while_retransmitting_is_renewed() {
    // Packet 2 is the first announce: lost. By the retransmission 200 ms later the
    // 100 ms connection id is too old, so the client connects again first.
    let server = fake_udp(
        "127.0.0.1:0",
        UdpBehaviour {
            drop: vec![2],
            ..Default::default()
        },
    )
    .await;
    let cfg = ClientConfig {
        connection_id_ttl: Duration::from_millis(100),
        ..fast_config()
    };
    let c = TrackerClient::new(cfg).unwrap();
    bounded(c.announce(&server.url(), &request(AnnounceEvent::None), None))
        .await
        .unwrap();
    let log = server.log();
    assert_eq!((log.received, log.connects, log.announces.len()), (4, 2, 1));
    assert_eq!(log.bad_connection_ids, 0);
}

#[tokio::test]
async fn a_silent_tracker_times_out_after_the_retransmissions() {
    let server = fake_udp(
        "127.0.0.1:0",
        UdpBehaviour {
            silent: true,
            ..Default::default()
        },
    )
    .await;
    let cfg = ClientConfig {
        udp_timeout: Duration::from_millis(100),
        udp_max_retries: 2,
        ..fast_config()
    };
    let c = TrackerClient::new(cfg).unwrap();
    let started = Instant::now();
    let err = bounded(c.announce(&server.url(), &request(AnnounceEvent::None), None))
        .await
        .unwrap_err();
    assert!(matches!(err, TrackerError::Timeout), "{err:?}");
    // 100 + 200 + 400 ms.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(690) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(server.log().received, 3);
}

#[tokio::test]
async fn answers_with_a_wrong_transaction_id_are_ignored() {
    let server = fake_udp(
        "127.0.0.1:0",
        UdpBehaviour {
            wrong_txid_first: true,
            peers: peers(),
            ..Default::default()
        },
    )
    .await;
    let c = TrackerClient::new(fast_config()).unwrap();
    let resp = bounded(c.announce(&server.url(), &request(AnnounceEvent::None), None))
        .await
        .unwrap();
    assert_eq!(resp.peers.len(), 2);
    // Nothing was retransmitted: the wrong answers were skipped, not taken as failures.
    let log = server.log();
    assert_eq!(
        (log.received, log.connects, log.bad_connection_ids),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn answers_from_another_address_are_ignored() {
    let server = fake_udp(
        "127.0.0.1:0",
        UdpBehaviour {
            spoof_from_other_address: true,
            peers: peers(),
            ..Default::default()
        },
    )
    .await;
    let c = TrackerClient::new(fast_config()).unwrap();
    let resp = bounded(c.announce(&server.url(), &request(AnnounceEvent::None), None))
        .await
        .expect("the forged error must not be believed");
    assert_eq!(resp.peers.len(), 2);
    assert_eq!(
        server.log().bad_connection_ids,
        0,
        "the forged connection id was used"
    );
}

#[tokio::test]
async fn connection_id_is_reused_for_its_lifetime() {
    let server = fake_udp("127.0.0.1:0", UdpBehaviour::default()).await;
    let cfg = ClientConfig {
        connection_id_ttl: Duration::from_millis(500),
        ..fast_config()
    };
    let c = TrackerClient::new(cfg).unwrap();
    let clone = c.clone();
    let req = request(AnnounceEvent::None);
    bounded(c.announce(&server.url(), &req, None))
        .await
        .unwrap();
    bounded(clone.announce(&server.url(), &req, None))
        .await
        .unwrap();
    bounded(c.scrape(&server.url(), &[[1; 20]])).await.unwrap();
    assert_eq!(server.log().connects, 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    bounded(c.announce(&server.url(), &req, None))
        .await
        .unwrap();
    let log = server.log();
    assert_eq!(
        (log.connects, log.announces.len(), log.bad_connection_ids),
        (2, 3, 0)
    );
}

#[tokio::test]
async fn concurrent_announces_share_the_socket() {
    let server = fake_udp(
        "127.0.0.1:0",
        UdpBehaviour {
            peers: peers(),
            ..Default::default()
        },
    )
    .await;
    let c = TrackerClient::new(fast_config()).unwrap();
    let url = server.url();
    let tasks: Vec<_> = (0..20u8)
        .map(|i| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut req = request(AnnounceEvent::None);
                req.info_hash = [i; 20];
                c.announce(&url, &req, None).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(bounded(t).await.unwrap().unwrap().peers.len(), 2);
    }
    assert_eq!(server.log().announces.len(), 20);
}

#[tokio::test]
async fn error_action_is_a_failure_with_the_text() {
    let server = fake_udp(
        "127.0.0.1:0",
        UdpBehaviour {
            error: Some("torrent not registered".into()),
            ..Default::default()
        },
    )
    .await;
    let c = TrackerClient::new(fast_config()).unwrap();
    match bounded(c.announce(&server.url(), &request(AnnounceEvent::None), None)).await {
        Err(TrackerError::Failure(text)) => assert_eq!(text, "torrent not registered"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn scrape_splits_into_packets_of_74() {
    let server = fake_udp("127.0.0.1:0", UdpBehaviour::default()).await;
    let c = TrackerClient::new(fast_config()).unwrap();
    let hashes: Vec<[u8; 20]> = (0..80u8).map(|i| [i; 20]).collect();
    let entries = bounded(c.scrape(&server.url(), &hashes)).await.unwrap();
    assert_eq!(entries.len(), 80);
    assert_eq!(
        entries[0],
        ScrapeEntry {
            complete: 1,
            downloaded: 100,
            incomplete: 1000
        }
    );
    // The fake numbers entries within each packet: the 75th hash opens the second one.
    assert_eq!(entries[73].complete, 74);
    assert_eq!(entries[74].complete, 1);
    let log = server.log();
    assert_eq!(log.scrapes.len(), 2);
    assert_eq!(log.scrapes[0].len(), 16 + 74 * 20);
    assert_eq!(&log.scrapes[1][16..36], &[74; 20]);
}

#[tokio::test]
async fn ipv6_trackers_send_18_byte_peers() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; nothing to test");
        return;
    }
    let server = fake_udp(
        "[::1]:0",
        UdpBehaviour {
            peers: vec![
                "[2001:db8::1]:6881".parse().unwrap(),
                "[::]:6881".parse().unwrap(),
                "[2001:db8::2]:51413".parse().unwrap(),
            ],
            ..Default::default()
        },
    )
    .await;
    let c = TrackerClient::new(fast_config()).unwrap();
    let resp = bounded(c.announce(&server.url(), &request(AnnounceEvent::None), None))
        .await
        .unwrap();
    assert_eq!(
        resp.peers,
        vec![
            "[2001:db8::1]:6881".parse::<SocketAddr>().unwrap(),
            "[2001:db8::2]:51413".parse().unwrap()
        ]
    );
}

#[tokio::test]
async fn bad_udp_urls_are_errors() {
    let c = TrackerClient::new(fast_config()).unwrap();
    let req = request(AnnounceEvent::None);
    for url in ["udp://127.0.0.1/announce", "udp://", "udp://[::1/x"] {
        assert!(
            matches!(
                c.announce(url, &req, None).await,
                Err(TrackerError::InvalidUrl(_))
            ),
            "{url}"
        );
    }
}
