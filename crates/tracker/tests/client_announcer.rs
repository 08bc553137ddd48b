//! `run_announcer` end to end against fake trackers: tiers, events, peers, status, stop.

mod client_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use client_common::*;
use tokio::sync::{mpsc, watch};
use tracker::client::{Progress, TrackerClient, TrackerStatus, run_announcer};
use tracker::proto::AnnounceEvent;

/// Wait until `cond` holds, failing the test after the deadline.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TEST_DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn events(requests: &[String], event: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.split(['?', '&']).any(|p| p == format!("event={event}")))
        .count()
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn announces_through_the_tiers_and_sends_every_event_once() {
    let mut body = b"d8:intervali1800e8:completei2e10:incompletei5e5:peers18:".to_vec();
    body.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1, 0, 0, 0, 0, 0, 1, 10, 0, 0, 2, 0, 0]);
    body.push(b'e');
    let good = fake_http(move |_| ok(&body)).await;
    let dead = format!("http://127.0.0.1:{}/announce", closed_port());
    let tiers = vec![vec![dead.clone()], vec![good.url("/announce")]];

    let client = TrackerClient::new(fast_config()).unwrap();
    let (progress_tx, progress_rx) = watch::channel(Progress {
        uploaded: 0,
        downloaded: 0,
        left: 1000,
    });
    let (peers_tx, mut peers_rx) = mpsc::channel(16);
    let (status_tx, status_rx) = watch::channel(Vec::<TrackerStatus>::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_announcer(
        client,
        tiers,
        request(AnnounceEvent::None),
        progress_rx,
        peers_tx,
        status_tx,
        stop_rx,
    ));

    let got: Vec<SocketAddr> = tokio::time::timeout(TEST_DEADLINE, peers_rx.recv())
        .await
        .expect("peers in time")
        .unwrap();
    assert_eq!(got, vec!["10.0.0.1:6881".parse::<SocketAddr>().unwrap()]);
    assert_eq!(events(&good.requests(), "started"), 1);

    eventually("status of both trackers", || {
        let s = status_rx.borrow();
        s.len() == 2
            && s.iter()
                .any(|t| t.url == dead && t.tier == 0 && t.last_error.is_some())
            && s.iter().any(|t| {
                t.tier == 1
                    && t.successes == 1
                    && t.peers_received == 1
                    && t.seeders == Some(2)
                    && t.leechers == Some(5)
                    && t.last_error.is_none()
            })
    })
    .await;

    // Download finishes: `completed` goes out at once, and only once.
    progress_tx.send_replace(Progress {
        uploaded: 5,
        downloaded: 1000,
        left: 0,
    });
    eventually("completed", || events(&good.requests(), "completed") == 1).await;
    let completed = good
        .requests()
        .into_iter()
        .find(|r| r.contains("event=completed"))
        .unwrap();
    assert!(completed.contains("&left=0&") && completed.contains("&downloaded=1000&"));

    // Stop: `stopped` goes out and the task ends.
    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(8), task)
        .await
        .expect("run_announcer ends after stop")
        .unwrap();
    let requests = good.requests();
    assert_eq!(events(&requests, "stopped"), 1);
    let stopped = requests
        .iter()
        .find(|r| r.contains("event=stopped"))
        .unwrap();
    assert!(stopped.contains("&numwant=0&"), "{stopped}");
    assert_eq!(events(&requests, "completed"), 1);
    assert_eq!(events(&requests, "started"), 1);
    assert_eq!(requests.len(), 3, "{requests:?}");
}

#[tokio::test]
async fn udp_tracker_through_the_driver() {
    let server = fake_udp(
        "127.0.0.1:0",
        UdpBehaviour {
            peers: vec!["10.9.9.9:1234".parse().unwrap()],
            ..Default::default()
        },
    )
    .await;
    let client = TrackerClient::new(fast_config()).unwrap();
    let (_progress_tx, progress_rx) = watch::channel(Progress::default());
    let (peers_tx, mut peers_rx) = mpsc::channel(16);
    let (status_tx, _status_rx) = watch::channel(Vec::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_announcer(
        client,
        vec![vec![server.url()]],
        request(AnnounceEvent::None),
        progress_rx,
        peers_tx,
        status_tx,
        stop_rx,
    ));
    let got = tokio::time::timeout(TEST_DEADLINE, peers_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, vec!["10.9.9.9:1234".parse::<SocketAddr>().unwrap()]);
    drop(stop_tx); // A dropped stop sender stops too.
    tokio::time::timeout(Duration::from_secs(8), task)
        .await
        .unwrap()
        .unwrap();
    // started, then stopped; a seeder from the start never sends completed.
    let events: Vec<u32> = server
        .log()
        .announces
        .iter()
        .map(|p| u32::from_be_bytes(p[80..84].try_into().unwrap()))
        .collect();
    assert_eq!(events, vec![2, 3]);
}

#[tokio::test]
async fn stop_is_prompt_while_a_tracker_hangs() {
    let slow =
        fake_http(|_| Reply::Delayed(Duration::from_secs(30), http_response("200 OK", b"de")))
            .await;
    let client = TrackerClient::new(tracker::client::ClientConfig {
        http_timeout: Duration::from_secs(60),
        ..fast_config()
    })
    .unwrap();
    let (_progress_tx, progress_rx) = watch::channel(Progress {
        left: 1,
        ..Default::default()
    });
    let (peers_tx, _peers_rx) = mpsc::channel(16);
    let (status_tx, _status_rx) = watch::channel(Vec::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_announcer(
        client,
        vec![vec![slow.url("/announce")]],
        request(AnnounceEvent::None),
        progress_rx,
        peers_tx,
        status_tx,
        stop_rx,
    ));
    eventually("the announce to arrive", || slow.requests().len() == 1).await;
    let started = Instant::now();
    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(8), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // `started` was never answered, so no tracker knows us: nothing more is sent.
    assert_eq!(slow.requests().len(), 1);
}
