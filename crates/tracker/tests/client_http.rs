//! The tracker client against fake HTTP trackers on 127.0.0.1: what it sends, what it
//! accepts, and what it refuses.

mod client_common;

use std::time::{Duration, Instant};

use client_common::*;
use tracker::client::{ClientConfig, TrackerClient, TrackerError};
use tracker::proto::{AnnounceEvent, ScrapeEntry};

fn client() -> TrackerClient {
    TrackerClient::new(fast_config()).unwrap()
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_DEADLINE, f)
        .await
        .expect("test deadline")
}

#[tokio::test]
async fn compact_announce_sends_the_right_query_and_reads_everything() {
    let mut body =
        b"d8:completei4e10:incompletei9e8:intervali1200e12:min intervali300e5:peers12:".to_vec();
    body.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1, 192, 168, 1, 2, 0, 80]);
    body.extend_from_slice(b"6:peers618:");
    body.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0x1f, 0x90,
    ]);
    body.extend_from_slice(b"10:tracker id5:tid-715:warning message9:be gentlee");
    let server = fake_http(move |_| ok(&body)).await;
    let url = server.url("/announce?passkey=s3cr3t");
    let resp = bounded(client().announce(&url, &request(AnnounceEvent::Started), None))
        .await
        .unwrap();

    assert_eq!(resp.interval, 1200);
    assert_eq!(resp.min_interval, Some(300));
    assert_eq!((resp.complete, resp.incomplete), (Some(4), Some(9)));
    assert_eq!(
        resp.peers,
        vec![
            "10.0.0.1:6881".parse().unwrap(),
            "192.168.1.2:80".parse().unwrap(),
            "[2001:db8::7]:8080".parse().unwrap(),
        ]
    );
    assert_eq!(resp.tracker_id.as_deref(), Some(&b"tid-7"[..]));
    assert_eq!(resp.warning.as_deref(), Some("be gentle"));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let target = &requests[0];
    assert!(
        target.starts_with("/announce?passkey=s3cr3t&info_hash="),
        "{target}"
    );
    for part in [
        "info_hash=%01%02%03%20info-hash%20%26%3F%3D%25%FE%FF",
        "peer_id=-BP0001-abcdefghijkl",
        "port=6881",
        "uploaded=10",
        "downloaded=20",
        "left=30",
        "compact=1",
        "numwant=50",
        "key=1234abcd",
        "event=started",
    ] {
        assert!(
            target.split(['?', '&']).any(|p| p == part),
            "{part} missing in {target}"
        );
    }
    assert!(!target.contains("trackerid"));
}

#[tokio::test]
async fn tracker_id_is_sent_back_and_regular_announces_have_no_event() {
    let server = fake_http(|_| ok(b"d8:intervali60e5:peers0:e")).await;
    let c = client();
    bounded(c.announce(
        &server.url("/announce"),
        &request(AnnounceEvent::None),
        Some(b"t 1"),
    ))
    .await
    .unwrap();
    let target = &server.requests()[0];
    assert!(target.ends_with("&trackerid=t%201"), "{target}");
    assert!(!target.contains("event="), "{target}");
}

#[tokio::test]
async fn dictionary_peers_are_accepted() {
    let server = fake_http(|_| {
        ok(b"d8:intervali60e5:peersld2:ip8:10.1.2.34:porti6881e7:peer id20:aaaaaaaaaaaaaaaaaaaaed2:ip7:fe80::14:porti7000eed2:ip3:bad4:porti1eeee")
    })
    .await;
    let resp = bounded(client().announce(
        &server.url("/announce"),
        &request(AnnounceEvent::None),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(
        resp.peers,
        vec![
            "10.1.2.3:6881".parse().unwrap(),
            "[fe80::1]:7000".parse().unwrap()
        ]
    );
}

#[tokio::test]
async fn failure_reason_is_a_typed_error_with_the_text() {
    let server = fake_http(|_| ok(b"d14:failure reason22:unregistered info-hashe")).await;
    let err = bounded(client().announce(
        &server.url("/announce"),
        &request(AnnounceEvent::None),
        None,
    ))
    .await
    .unwrap_err();
    match err {
        TrackerError::Failure(text) => assert_eq!(text, "unregistered info-hash"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn http_errors_carry_the_failure_reason_or_the_status() {
    let server = fake_http(|target| {
        if target.starts_with("/bencoded") {
            Reply::Raw(http_response(
                "403 Forbidden",
                b"d14:failure reason6:bannede",
            ))
        } else {
            Reply::Raw(http_response("404 Not Found", b"<html>nope</html>"))
        }
    })
    .await;
    let c = client();
    let req = request(AnnounceEvent::None);
    match bounded(c.announce(&server.url("/bencoded/announce"), &req, None)).await {
        Err(TrackerError::Failure(t)) => assert_eq!(t, "banned"),
        other => panic!("{other:?}"),
    }
    match bounded(c.announce(&server.url("/announce"), &req, None)).await {
        Err(TrackerError::HttpStatus(404)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn garbage_is_rejected() {
    let server = fake_http(|target| {
        if target.starts_with("/html") {
            ok(b"<html><body>Welcome to nginx</body></html>")
        } else if target.starts_with("/list") {
            ok(b"li1ei2ee")
        } else {
            Reply::Raw(b"this is not HTTP at all\r\n\r\n".to_vec())
        }
    })
    .await;
    let c = client();
    let req = request(AnnounceEvent::None);
    assert!(matches!(
        bounded(c.announce(&server.url("/html/announce"), &req, None)).await,
        Err(TrackerError::Bencode(_))
    ));
    assert!(matches!(
        bounded(c.announce(&server.url("/list/announce"), &req, None)).await,
        Err(TrackerError::Malformed(_))
    ));
    assert!(matches!(
        bounded(c.announce(&server.url("/announce"), &req, None)).await,
        Err(TrackerError::Http(_))
    ));
}

#[tokio::test]
async fn oversized_bodies_are_rejected_without_reading_them_all() {
    let mut declared = b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n".to_vec();
    declared.extend_from_slice(b"d8:interval");
    let server = fake_http(move |target| {
        if target.starts_with("/declared") {
            Reply::Raw(declared.clone())
        } else {
            Reply::Endless
        }
    })
    .await;
    let cfg = ClientConfig {
        max_body: 64 * 1024,
        http_timeout: Duration::from_secs(10),
        ..fast_config()
    };
    let c = TrackerClient::new(cfg).unwrap();
    let req = request(AnnounceEvent::None);
    for path in ["/declared/announce", "/announce"] {
        let started = Instant::now();
        match bounded(c.announce(&server.url(path), &req, None)).await {
            Err(TrackerError::BodyTooLarge { max: 65536 }) => {}
            other => panic!("{path}: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} read too long"
        );
    }
}

#[tokio::test]
async fn a_slow_tracker_times_out() {
    let server = fake_http(|_| {
        Reply::Delayed(
            Duration::from_secs(10),
            http_response("200 OK", b"d8:intervali60ee"),
        )
    })
    .await;
    let cfg = ClientConfig {
        http_timeout: Duration::from_millis(400),
        ..fast_config()
    };
    let started = Instant::now();
    let err = bounded(TrackerClient::new(cfg).unwrap().announce(
        &server.url("/announce"),
        &request(AnnounceEvent::None),
        None,
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, TrackerError::Timeout), "{err:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn endless_redirects_stop() {
    let server = fake_http(|_| {
        Reply::Raw(b"HTTP/1.1 302 Found\r\nLocation: /announce\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec())
    })
    .await;
    let err = bounded(client().announce(
        &server.url("/announce"),
        &request(AnnounceEvent::None),
        None,
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, TrackerError::Http(_)), "{err:?}");
    let hops = server.requests().len();
    assert!((2..=10).contains(&hops), "{hops} requests");
}

#[tokio::test]
async fn scrape_uses_the_scrape_url_and_keeps_the_order_asked() {
    let (known, unknown) = ([0xab; 20], [0x01; 20]);
    let mut body = b"d5:filesd20:".to_vec();
    body.extend_from_slice(&known);
    body.extend_from_slice(b"d8:completei11e10:downloadedi22e10:incompletei33eeee");
    let server = fake_http(move |target| {
        if target.starts_with("/x/scrape.php?") {
            ok(&body)
        } else {
            Reply::Raw(http_response("404 Not Found", b""))
        }
    })
    .await;
    let entries = bounded(client().scrape(&server.url("/x/announce.php"), &[unknown, known]))
        .await
        .unwrap();
    assert_eq!(
        entries,
        vec![
            ScrapeEntry::default(),
            ScrapeEntry {
                complete: 11,
                downloaded: 22,
                incomplete: 33
            }
        ]
    );
    assert_eq!(
        server.requests(),
        vec![format!(
            "/x/scrape.php?info_hash={}&info_hash={}",
            "%01".repeat(20),
            "%AB".repeat(20)
        )]
    );
    assert!(matches!(
        bounded(client().scrape(&server.url("/tracker"), &[known])).await,
        Err(TrackerError::ScrapeUnsupported)
    ));
}

#[tokio::test]
async fn unknown_schemes_and_closed_ports_are_errors() {
    let c = client();
    let req = request(AnnounceEvent::None);
    assert!(matches!(
        c.announce("wss://tracker.example/announce", &req, None)
            .await,
        Err(TrackerError::UnsupportedScheme(_))
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = bounded(c.announce(&format!("http://127.0.0.1:{port}/announce"), &req, None))
        .await
        .unwrap_err();
    assert!(matches!(err, TrackerError::Http(_)), "{err:?}");
}
