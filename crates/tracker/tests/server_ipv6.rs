//! The tracker over IPv6 loopback (BEP 7 and BEP 15): UDP requesters on ::1 get 18-byte
//! peer entries, HTTP compact answers carry them in `peers6`.

mod server_util;

use std::net::{Ipv6Addr, UdpSocket};
use std::time::Duration;

use server_util::*;
use tracker::server::ServerConfig;

#[test]
fn ipv6_peers_over_udp_and_http() {
    let t = Running::start_at(ServerConfig {
        http: Some("[::1]:0".parse().unwrap()),
        udp: Some("[::1]:0".parse().unwrap()),
        ..ServerConfig::default()
    });
    let ih = [0x66; 20];
    let client = || {
        let s = UdpSocket::bind("[::1]:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let (a, b) = (client(), client());
    let (ca, cb) = (udp_connect(&a, t.udp), udp_connect(&b, t.udp));
    let mut buf = [0u8; 2048];
    a.send_to(&announce_packet(ca, 1, &ih, &[1; 20], 0, 4001), t.udp)
        .unwrap();
    let (n, _) = a.recv_from(&mut buf).unwrap();
    assert_eq!(n, 20);
    b.send_to(&announce_packet(cb, 2, &ih, &[2; 20], 10, 4002), t.udp)
        .unwrap();
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(n, 20 + 18, "one IPv6 peer expected: {:?}", &buf[..n]);
    assert_eq!(buf[20..36], Ipv6Addr::LOCALHOST.octets());
    assert_eq!(buf[36..38], 4001u16.to_be_bytes());

    let q = format!(
        "/announce?info_hash={}&peer_id=-XX0001-abcdefghijkl&port=4003&left=5",
        escape(&ih)
    );
    let (status, body) = http_get(t.http, &q);
    assert_eq!(status, 200);
    let v = bencode::decode(&body).unwrap();
    let d = v.as_dict().unwrap();
    assert_eq!(d.get(b"peers").unwrap().as_bytes(), Some(&b""[..]));
    let six = d.get(b"peers6").unwrap().as_bytes().unwrap();
    assert_eq!(six.len(), 36, "both UDP peers in peers6");
    let ports: Vec<u16> = six
        .chunks(18)
        .map(|c| {
            assert_eq!(c[..16], Ipv6Addr::LOCALHOST.octets());
            u16::from_be_bytes([c[16], c[17]])
        })
        .collect();
    assert!(ports.contains(&4001) && ports.contains(&4002), "{ports:?}");
}
