//! Two WebRTC endpoints (str0m) on 127.0.0.1 make a data channel through an offer and an
//! answer, and move a few MiB each way through it as a byte stream, byte for byte; bad
//! SDPs are refused; a closed side is seen as end of stream by the other. An endpoint
//! offers a host candidate on each of its IPs (given, or the node's own when the bind IP
//! is unspecified), and connects through any of them.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webtorrent::rtc::{RtcConfig, RtcEndpoint};

const DEADLINE: Duration = Duration::from_secs(30);

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn endpoint() -> RtcEndpoint {
    RtcEndpoint::start(RtcConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..RtcConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_data_channel_carries_bytes_both_ways() {
    let a = endpoint().await;
    let b = endpoint().await;
    let (id, offer, a_chan) = a.create_offer().await.unwrap();
    assert!(
        offer.contains("a=candidate:"),
        "no candidate in the offer: {offer}"
    );
    assert!(offer.contains("webrtc-datachannel"));
    let (_, answer, b_chan) = b.accept_offer(offer).await.unwrap();
    assert!(answer.contains("a=candidate:"));
    a.accept_answer(id, answer).await.unwrap();
    let (mut x, mut y) = tokio::time::timeout(DEADLINE, async {
        (a_chan.await.unwrap(), b_chan.await.unwrap())
    })
    .await
    .expect("the channel did not open in time");
    assert_eq!(y.label(), "webtorrent");

    // 4 MiB one way while 1 MiB goes the other: nothing stalls, nothing is lost.
    let big = data(1, 4 * 1024 * 1024 + 5);
    let small = data(2, 1024 * 1024);
    let (big2, small2) = (big.clone(), small.clone());
    let work = async move {
        let (mut xr, mut xw) = tokio::io::split(&mut x);
        let (mut yr, mut yw) = tokio::io::split(&mut y);
        let send_big = async {
            xw.write_all(&big2).await.unwrap();
            xw.flush().await.unwrap();
        };
        let send_small = async {
            yw.write_all(&small2).await.unwrap();
            yw.flush().await.unwrap();
        };
        let recv_big = async {
            let mut got = vec![0u8; big2.len()];
            yr.read_exact(&mut got).await.unwrap();
            got
        };
        let recv_small = async {
            let mut got = vec![0u8; small2.len()];
            xr.read_exact(&mut got).await.unwrap();
            got
        };
        let (_, _, gb, gs) = tokio::join!(send_big, send_small, recv_big, recv_small);
        (gb, gs, x, y)
    };
    let (gb, gs, x, mut y) = tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("the transfer stalled");
    assert!(gb == big, "the 4 MiB differ");
    assert!(gs == small, "the 1 MiB differ");

    // Closing one side ends the other's stream.
    drop(x);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), y.read_to_end(&mut rest))
        .await
        .expect("no end of stream within 3 s after the other side closed");
    assert_eq!(n.unwrap_or(0), 0);
}

#[tokio::test]
async fn bad_sdps_are_refused() {
    let a = endpoint().await;
    assert!(a.accept_offer("v=0\r\nnonsense".into()).await.is_err());
    assert!(a.accept_offer("x".repeat(1 << 20)).await.is_err());
    // The same, checked without a socket (how the node refuses a flood of junk offers).
    assert!(RtcEndpoint::check_offer("v=0\r\nnonsense").is_err());
    assert!(RtcEndpoint::check_offer(&"x".repeat(1 << 20)).is_err());
    let (id, offer, pending) = a.create_offer().await.unwrap();
    assert!(RtcEndpoint::check_offer(&offer).is_ok());
    assert!(a.accept_answer(id, "garbage".into()).await.is_err());
    // The session was dropped: its channel never comes.
    assert!(
        tokio::time::timeout(DEADLINE, pending)
            .await
            .unwrap()
            .is_err()
    );
    assert!(a.accept_answer(999, "v=0".into()).await.is_err());
}

/// Two endpoints that answered each other's offers (two bitpeer nodes that both offered
/// through the tracker) have two sessions between them at once: each must carry its own
/// bytes (on one shared socket per endpoint, DTLS and SCTP packets of the two sessions
/// could not be told apart).
#[tokio::test]
async fn two_sessions_between_the_same_endpoints_both_work() {
    let a = endpoint().await;
    let b = endpoint().await;
    let (id1, offer1, a1) = a.create_offer().await.unwrap();
    let (id2, offer2, b2) = b.create_offer().await.unwrap();
    let (_, answer1, b1) = b.accept_offer(offer1).await.unwrap();
    let (_, answer2, a2) = a.accept_offer(offer2).await.unwrap();
    a.accept_answer(id1, answer1).await.unwrap();
    b.accept_answer(id2, answer2).await.unwrap();
    let work = async {
        let (mut a1, mut b1, mut a2, mut b2) = (
            a1.await.unwrap(),
            b1.await.unwrap(),
            a2.await.unwrap(),
            b2.await.unwrap(),
        );
        let (one, two) = (data(3, 300_000), data(4, 300_000));
        a1.write_all(&one).await.unwrap();
        b2.write_all(&two).await.unwrap();
        let mut got1 = vec![0u8; one.len()];
        let mut got2 = vec![0u8; two.len()];
        b1.read_exact(&mut got1).await.unwrap();
        a2.read_exact(&mut got2).await.unwrap();
        assert!(got1 == one, "session 1 carried other bytes");
        assert!(got2 == two, "session 2 carried other bytes");
    };
    tokio::time::timeout(DEADLINE, work)
        .await
        .expect("two sessions between the same endpoints did not both work");
}

/// A STUN server on 127.0.0.1 that answers every Binding request with `public`'s IP and
/// the requester's port (as a NAT keeping ports would); returns its address.
async fn stun_responder(public: std::net::IpAddr) -> std::net::SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if let Some(tid) = webtorrent::stun::request_tid(&buf[..n]) {
                let mapped = std::net::SocketAddr::new(public, from.port());
                let reply = webtorrent::stun::binding_success(&tid, mapped);
                let _ = sock.send_to(&reply, from).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_configured_stun_server_gives_a_server_reflexive_candidate() {
    let public: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    let stun = stun_responder(public).await;
    let config = |stun| RtcConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        stun: Some(stun),
        stun_timeout: Duration::from_secs(2),
        ..RtcConfig::default()
    };
    let a = RtcEndpoint::start(config(stun)).await.unwrap();
    let b = endpoint().await;
    let (id, offer, a_chan) = a.create_offer().await.unwrap();
    assert!(
        offer.contains("198.51.100.7") && offer.contains("typ srflx"),
        "no server-reflexive candidate in the offer: {offer}"
    );
    // The host candidate still connects.
    let (_, answer, b_chan) = b.accept_offer(offer).await.unwrap();
    a.accept_answer(id, answer).await.unwrap();
    tokio::time::timeout(DEADLINE, async {
        (a_chan.await.unwrap(), b_chan.await.unwrap())
    })
    .await
    .expect("the channel did not open");

    // A STUN server that never answers costs at most stun_timeout, and no candidate.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let c = RtcEndpoint::start(config(silent.local_addr().unwrap()))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    let (_, offer, _) = c.create_offer().await.unwrap();
    let took = start.elapsed();
    assert!(!offer.contains("typ srflx"), "{offer}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "the offer took {took:?} with a silent STUN server (timeout 2 s)"
    );
}

/// The `a=candidate` lines of type host in an SDP.
fn host_candidates(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" typ host"))
        .collect()
}

/// Whether an SDP candidate line is for `ip` (its fifth field).
fn candidate_ip(line: &str) -> Option<std::net::IpAddr> {
    line.split_whitespace().nth(4)?.parse().ok()
}

/// An exchange of a few bytes each way over an open pair of channels.
async fn ping(a_chan: webtorrent::rtc::PendingChannel, b_chan: webtorrent::rtc::PendingChannel) {
    let work = async {
        let (mut x, mut y) = (a_chan.await.unwrap(), b_chan.await.unwrap());
        x.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        y.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        y.write_all(b"pong").await.unwrap();
        x.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    };
    tokio::time::timeout(DEADLINE, work)
        .await
        .expect("the channel did not open and carry bytes in time");
}

/// An endpoint with several host IPs offers a host candidate on each, and a peer that can
/// reach only the second one (its own socket) still connects through it.
#[tokio::test]
async fn every_host_ip_is_a_host_candidate_and_each_connects() {
    let v4: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let v6: std::net::IpAddr = "::1".parse().unwrap();
    let a = RtcEndpoint::start(RtcConfig {
        host_ips: Some(vec![v4, v6, v4]),
        ..RtcConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(a.local_ips(), &[v4, v6]);
    assert_eq!(a.local_ip(), v4);
    let (id, offer, a_chan) = a.create_offer().await.unwrap();
    let hosts = host_candidates(&offer);
    let ips: Vec<_> = hosts.iter().filter_map(|l| candidate_ip(l)).collect();
    assert_eq!(ips, vec![v4, v6], "host candidates: {hosts:?}");

    // b has only ::1: the pair is a's second socket and b's.
    let b = RtcEndpoint::start(RtcConfig {
        host_ips: Some(vec![v6]),
        ..RtcConfig::default()
    })
    .await
    .unwrap();
    let (_, answer, b_chan) = b.accept_offer(offer).await.unwrap();
    let ips: Vec<_> = host_candidates(&answer)
        .iter()
        .filter_map(|l| candidate_ip(l))
        .collect();
    assert_eq!(ips, vec![v6]);
    a.accept_answer(id, answer).await.unwrap();
    ping(a_chan, b_chan).await;

    // And the other way round: b offers, a (both families) answers.
    let (id, offer, b_chan) = b.create_offer().await.unwrap();
    let (_, answer, a_chan) = a.accept_offer(offer).await.unwrap();
    assert_eq!(host_candidates(&answer).len(), 2, "{answer}");
    b.accept_answer(id, answer).await.unwrap();
    ping(a_chan, b_chan).await;
}

/// With an unspecified bind IP, an endpoint offers a host candidate on each of the node's
/// usable addresses (never loopback), and two such endpoints connect.
#[tokio::test]
async fn endpoints_on_every_address_connect() {
    let a = match RtcEndpoint::start(RtcConfig::default()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skipped: this machine has no address but loopback ({e})");
            return;
        }
    };
    let b = RtcEndpoint::start(RtcConfig::default()).await.unwrap();
    let ips = a.local_ips().to_vec();
    eprintln!("host IPs: {ips:?}");
    assert!(!ips.is_empty() && ips.len() <= webtorrent::rtc::MAX_HOST_IPS);
    assert!(ips.iter().all(|ip| !ip.is_loopback()), "{ips:?}");
    let (id, offer, a_chan) = a.create_offer().await.unwrap();
    let offered: Vec<_> = host_candidates(&offer)
        .iter()
        .filter_map(|l| candidate_ip(l))
        .collect();
    assert_eq!(offered, ips, "{offer}");
    let (_, answer, b_chan) = b.accept_offer(offer).await.unwrap();
    a.accept_answer(id, answer).await.unwrap();
    ping(a_chan, b_chan).await;
}
