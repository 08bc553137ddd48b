//! Hostile input against a running tracker server on 127.0.0.1: UDP garbage, wrong
//! connection ids, short and oversized packets get no reply and the server keeps serving;
//! bad HTTP requests get a `failure reason` (or a refusal from the HTTP layer for a head
//! beyond its bound); the HTTP connection cap holds.

mod server_util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use server_util::*;
use tracker::server::ServerConfig;

/// splitmix64: the same garbage on every run.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn udp_garbage_gets_no_reply_and_serving_goes_on() {
    let t = Running::start(ServerConfig::default());
    let sock = udp_client(Duration::from_secs(5));
    let cid = udp_connect(&sock, t.udp);
    let ih = [0x42; 20];
    let mut packets: Vec<Vec<u8>> = Vec::new();
    for i in 0..1500u64 {
        let len = (garbage(i, 8)[0] as usize * 7) % 1700;
        let mut p = garbage(i + 1_000_000, len);
        // Half of them look like announces and scrapes, with a wrong connection id.
        if i % 2 == 0 && p.len() >= 16 {
            p[8..12].copy_from_slice(&((i % 4) as u32).to_be_bytes());
            if p[..8] == cid.to_be_bytes() {
                p[0] ^= 1;
            }
        }
        packets.push(p);
    }
    packets.push(announce_packet(cid ^ 1, 1, &ih, &[1; 20], 0, 1000));
    packets.push(announce_packet(cid, 2, &ih, &[1; 20], 0, 1000)[..97].to_vec());
    packets.push(connect_packet(3)[..15].to_vec());
    let mut oversized = announce_packet(cid, 4, &ih, &[1; 20], 0, 1000);
    oversized.resize(3000, 0);
    packets.push(oversized);
    // Sent in batches small enough for the socket buffers, each followed by a valid
    // connect. The server answers datagrams in order, so the first reply seen after a
    // batch must be the one to its connect: nothing in the batch got an answer.
    let mut buf = [0u8; 2048];
    for (batch, chunk) in packets.chunks(50).enumerate() {
        for p in chunk {
            sock.send_to(p, t.udp).unwrap();
        }
        let tid = 0x1000 + batch as u32;
        sock.send_to(&connect_packet(tid), t.udp).unwrap();
        let (n, _) = sock
            .recv_from(&mut buf)
            .expect("the server stopped answering");
        assert_eq!(n, 16, "reply {:?} in batch {batch}", &buf[..n]);
        assert_eq!(&buf[..4], &[0; 4]);
        assert_eq!(
            buf[4..8],
            tid.to_be_bytes(),
            "a reply to garbage in batch {batch}"
        );
    }
    sock.send_to(&announce_packet(cid, 0xabcd, &ih, &[2; 20], 0, 2000), t.udp)
        .unwrap();
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("the server stopped answering");
    assert_eq!(n, 20, "reply {:?}", &buf[..n]);
    assert_eq!(&buf[..8], &[0, 0, 0, 1, 0, 0, 0xab, 0xcd]);
    // Only the valid announce made a peer.
    assert_eq!(t.stats().peers, 1);
    // And the server still serves HTTP.
    let (status, body) = http_get(t.http, &format!("/scrape?info_hash={}", escape(&ih)));
    assert_eq!(status, 200);
    assert!(
        body.starts_with(b"d5:files"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn bad_http_requests_get_a_failure_reason() {
    let t = Running::start(ServerConfig::default());
    let pid = "-XX0001-abcdefghijkl";
    let ih = escape(&[7; 20]);
    for (query, reason) in [
        ("".to_owned(), "missing info_hash"),
        (
            format!("info_hash={}", escape(&[7; 21])),
            "invalid info_hash",
        ),
        (
            format!("info_hash={ih}&peer_id=short&port=1&left=0"),
            "invalid peer_id",
        ),
        (
            format!("info_hash={ih}&peer_id={pid}&left=0"),
            "missing port",
        ),
        (
            format!("info_hash={ih}&peer_id={pid}&port=-1&left=0"),
            "invalid port",
        ),
        (
            format!("info_hash={ih}&peer_id={pid}&port=1&left=x"),
            "invalid number",
        ),
        (format!("info_hash={ih}%ZZ"), "invalid percent-encoding"),
        (
            format!("info_hash={}", "%41".repeat(2900)),
            "request too long",
        ),
    ] {
        let (status, body) = http_get(t.http, &format!("/announce?{query}"));
        assert_eq!(status, 200);
        let v = bencode::decode(&body).expect("failure is bencode");
        let got = v
            .as_dict()
            .and_then(|d| d.get(b"failure reason"))
            .and_then(|r| r.as_str())
            .unwrap_or_else(|| panic!("no failure reason for {query:.50}: {v:?}"));
        assert!(got.contains(reason), "{query:.50}: {got}");
    }
    let (status, body) = http_get(t.http, "/scrape");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("failure reason"));
    assert_eq!(t.stats().peers, 0);
}

#[test]
fn http_head_bound_keep_alive_and_method() {
    let t = Running::start(ServerConfig::default());
    // A 64 KiB request head is refused (431) or the connection closed; nothing grows.
    let mut s = TcpStream::connect(t.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let huge = format!(
        "GET /announce?x={} HTTP/1.1\r\nHost: t\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = s.write_all(huge.as_bytes());
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    if let Some((status, _)) = split_response(&resp) {
        assert_eq!(status, 431);
    }
    // Two requests on one kept-alive connection.
    let mut s = TcpStream::connect(t.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let q = format!(
        "/announce?info_hash={}&peer_id=-XX0001-abcdefghijkl&port=5&left=1",
        escape(&[9; 20])
    );
    for _ in 0..2 {
        write!(s, "GET {q} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let (status, body) = split_response(&buf[..n]).expect("a response");
        assert_eq!(status, 200);
        assert!(
            body.starts_with(b"d8:complete"),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    let mut s = TcpStream::connect(t.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /announce HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    assert_eq!(split_response(&resp).unwrap().0, 405);
    assert_eq!(http_get(t.http, "/").0, 404);
}

#[test]
fn http_connection_cap_holds() {
    let config = ServerConfig {
        max_http_connections: 3,
        ..ServerConfig::default()
    };
    let t = Running::start(config);
    // Three idle connections take every slot...
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(t.http).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // ...so a fourth is not served...
    let mut s = TcpStream::connect(t.http).unwrap();
    write!(
        s,
        "GET /scrape HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(
        matches!(s.read(&mut buf), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "a fourth connection was served while three held every slot"
    );
    // ...until one of them goes away.
    drop(idle);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let (status, _) = split_response(&resp).expect("served once a slot was free");
    assert_eq!(status, 200);
    assert!(start.elapsed() < Duration::from_secs(10));
}
