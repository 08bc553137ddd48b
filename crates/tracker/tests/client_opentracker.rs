//! The tracker client against a real tracker: Debian's `opentracker`, on free 127.0.0.1
//! ports, with the test's info-hash in its whitelist. Two peers announce, one over HTTP and
//! one over UDP, and each must be told about the other; scrape counts must match.
//!
//! Needs `/usr/bin/opentracker` (`apt-get install opentracker`). Set BITPEER_SKIP_INTEROP=1
//! to skip when it cannot run; otherwise a missing opentracker fails the test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracker::client::{ClientConfig, TrackerClient, TrackerError};
use tracker::proto::{AnnounceEvent, AnnounceRequest, ScrapeEntry};

const OPENTRACKER: &str = "/usr/bin/opentracker";
const DEADLINE: Duration = Duration::from_secs(20);

/// A running opentracker, killed (by its PID) when dropped.
struct Opentracker {
    child: Child,
    dir: tempfile::TempDir,
    tcp: u16,
    udp: u16,
}

impl Drop for Opentracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

impl Opentracker {
    /// Start opentracker tracking only `hashes`, or `None` if it is not installed.
    fn start(hashes: &[[u8; 20]]) -> Option<Self> {
        if !PathBuf::from(OPENTRACKER).exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let whitelist: String = hashes.iter().map(|h| hex(h) + "\n").collect();
        std::fs::write(dir.path().join("whitelist"), whitelist).unwrap();
        // opentracker may drop to `nobody`: keep the folder readable.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let (tcp, udp) = (free_tcp_port(), free_udp_port());
        let child = Command::new(OPENTRACKER)
            .current_dir(dir.path())
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &tcp.to_string(),
                "-P",
                &udp.to_string(),
            ])
            .arg("-w")
            .arg(dir.path().join("whitelist"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn opentracker");
        let ot = Opentracker {
            child,
            dir,
            tcp,
            udp,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", tcp)).is_err() {
            if Instant::now() > deadline {
                panic!(
                    "opentracker did not listen on 127.0.0.1:{tcp} within 10 s; its output: {}",
                    ot.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(ot)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.tcp)
    }

    fn udp(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.udp)
    }
}

fn peer(
    id: u8,
    port: u16,
    left: u64,
    event: AnnounceEvent,
    info_hash: [u8; 20],
) -> AnnounceRequest {
    AnnounceRequest {
        info_hash,
        peer_id: [id; 20],
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event,
        numwant: Some(50),
        key: id.into(),
    }
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("opentracker answered in time")
}

#[tokio::test]
async fn two_peers_find_each_other_through_opentracker_over_http_and_udp() {
    let info_hash: [u8; 20] = *b"bitpeer opentracker!";
    let Some(ot) = Opentracker::start(&[info_hash]) else {
        if std::env::var("BITPEER_SKIP_INTEROP").as_deref() == Ok("1") {
            eprintln!("{OPENTRACKER} missing; skipped because BITPEER_SKIP_INTEROP=1");
            return;
        }
        panic!(
            "{OPENTRACKER} is missing: `apt-get install opentracker`, \
             or set BITPEER_SKIP_INTEROP=1 to skip this interop test"
        );
    };
    let client = TrackerClient::new(ClientConfig {
        udp_timeout: Duration::from_millis(500),
        udp_max_retries: 3,
        udp_bind_v4: "127.0.0.1:0".parse().unwrap(),
        http_timeout: Duration::from_secs(5),
        use_env_proxy: false,
        ..ClientConfig::default()
    })
    .unwrap();
    let (port_a, port_b) = (41001, 41002);
    let addr_a: SocketAddr = ([127, 0, 0, 1], port_a).into();
    let addr_b: SocketAddr = ([127, 0, 0, 1], port_b).into();

    // opentracker listens before it has read its whitelist: wait until it accepts the
    // hash, probing with a `stopped` announce, which adds no peer.
    let probe = peer(b'p', 41009, 0, AnnounceEvent::Stopped, info_hash);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match bounded(client.announce(&ot.http(), &probe, None)).await {
            Ok(_) => break,
            Err(TrackerError::Failure(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!(
                "opentracker never accepted the whitelisted hash: {e}; it says: {}",
                ot.log()
            ),
        }
    }

    // A, a leecher, over HTTP; B, a seeder, over UDP.
    let a = peer(b'a', port_a, 1000, AnnounceEvent::Started, info_hash);
    let b = peer(b'b', port_b, 0, AnnounceEvent::Started, info_hash);
    let first = bounded(client.announce(&ot.http(), &a, None))
        .await
        .unwrap_or_else(|e| panic!("HTTP announce: {e}; opentracker says: {}", ot.log()));
    assert!(first.interval > 0);
    assert!(!first.peers.contains(&addr_b));

    let from_b = bounded(client.announce(&ot.udp(), &b, None))
        .await
        .unwrap_or_else(|e| panic!("UDP announce: {e}; opentracker says: {}", ot.log()));
    assert!(from_b.peers.contains(&addr_a), "B got {:?}", from_b.peers);
    assert_eq!((from_b.complete, from_b.incomplete), (Some(1), Some(1)));

    let a_again = peer(b'a', port_a, 1000, AnnounceEvent::None, info_hash);
    let from_a = bounded(client.announce(&ot.http(), &a_again, None))
        .await
        .unwrap();
    assert!(from_a.peers.contains(&addr_b), "A got {:?}", from_a.peers);
    assert_eq!((from_a.complete, from_a.incomplete), (Some(1), Some(1)));

    // Scrape both ways; an unknown hash has no counts.
    let unknown = [0x55; 20];
    for url in [ot.http(), ot.udp()] {
        let entries = bounded(client.scrape(&url, &[info_hash, unknown]))
            .await
            .unwrap_or_else(|e| panic!("scrape {url}: {e}"));
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[0].complete, entries[0].incomplete),
            (1, 1),
            "{url}"
        );
        assert_eq!(entries[1], ScrapeEntry::default(), "{url}");
    }

    // A hash outside the whitelist is refused: over HTTP with a failure reason; over UDP
    // opentracker answers with a bare 8-byte announce header, which is no valid answer.
    let stranger = peer(b'c', 41003, 5, AnnounceEvent::Started, unknown);
    match bounded(client.announce(&ot.http(), &stranger, None)).await {
        Err(TrackerError::Failure(reason)) => {
            assert!(reason.contains("not authorized"), "{reason}")
        }
        other => panic!("HTTP: a non-whitelisted hash was accepted: {other:?}"),
    }
    let udp = bounded(client.announce(&ot.udp(), &stranger, None)).await;
    assert!(
        udp.is_err(),
        "UDP: a non-whitelisted hash was accepted: {udp:?}"
    );

    // B stops: A no longer hears of it.
    let b_stop = peer(b'b', port_b, 0, AnnounceEvent::Stopped, info_hash);
    bounded(client.announce(&ot.udp(), &b_stop, None))
        .await
        .unwrap();
    let after = bounded(client.announce(&ot.http(), &a_again, None))
        .await
        .unwrap();
    assert!(
        !after.peers.contains(&addr_b),
        "A still got {:?}",
        after.peers
    );
    assert_eq!(after.complete, Some(0));
}
