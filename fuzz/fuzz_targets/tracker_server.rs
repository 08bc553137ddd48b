//! Fuzzes what the tracker server (`bitpeer tracker`) is sent: UDP datagrams (BEP 15, with
//! a made-up and with a valid connection id) and HTTP announce and scrape queries (BEP 3,
//! 23, 7, 48), and drives its sans-IO state with an arbitrary sequence of announces from a
//! few addresses under tiny caps. Nothing may panic, no cap may be passed, and no address
//! may hold more than its share of a swarm.

#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tracker::proto::{AnnounceEvent, AnnounceRequest};
use tracker::server::http::{self, Endpoint};
use tracker::server::udp;
use tracker::server::{Config, ConnectionIds, Family, TrackerState};

const MAX_SWARMS: usize = 3;
const MAX_PER_SWARM: usize = 5;
const MAX_PEERS: usize = 8;
const MAX_PER_IP: usize = 2;

fn check_caps(state: &TrackerState, hashes: &[[u8; 20]]) {
    let stats = state.stats();
    assert!(
        stats.peers <= MAX_PEERS && stats.swarms <= MAX_SWARMS,
        "{stats:?}"
    );
    for e in state.scrape(Instant::now(), hashes) {
        assert!(
            (e.complete + e.incomplete) as usize <= MAX_PER_SWARM,
            "{e:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut config = Config::with_interval(Duration::from_secs(10));
    config.max_swarms = MAX_SWARMS;
    config.max_peers_per_swarm = MAX_PER_SWARM;
    config.max_peers = MAX_PEERS;
    config.max_peers_per_ip = MAX_PER_IP;
    let mut state = TrackerState::new(config);
    let t0 = Instant::now();
    let ids = ConnectionIds::new([7; 32], t0);
    let v4: SocketAddr = "10.0.0.1:6881".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::1]:6881".parse().unwrap();

    // Datagrams as they come, then with a valid connection id in front.
    for src in [v4, v6] {
        let _ = udp::handle(&mut state, &ids, t0, data, src);
        if data.len() >= 16 {
            let mut p = data.to_vec();
            p[..8].copy_from_slice(&ids.issue(t0, src).to_be_bytes());
            if let Some(reply) = udp::handle(&mut state, &ids, t0, &p, src) {
                assert!(
                    reply.len() >= 8 && reply[4..8] == p[12..16],
                    "transaction id"
                );
            }
        }
        for endpoint in [Endpoint::Announce, Endpoint::Scrape] {
            let body = http::handle(&mut state, t0, endpoint, data, src.ip());
            assert!(
                bencode::decode(&body).is_ok(),
                "an HTTP answer that is not bencode"
            );
        }
    }

    // Announces: 4 bytes each (address, peer, swarm, event and time step).
    let hashes: Vec<[u8; 20]> = (0..5u8).map(|h| [h; 20]).collect();
    let mut now = t0;
    for chunk in data.chunks_exact(4) {
        let (ip, peer, swarm, misc) = (chunk[0], chunk[1], chunk[2], chunk[3]);
        now += Duration::from_secs(u64::from(misc >> 4));
        let source = if ip & 0x80 == 0 {
            IpAddr::from([10, 0, 0, ip & 7])
        } else {
            // Addresses in two /64s.
            IpAddr::from([
                0x2001,
                0xdb8,
                0,
                u16::from(ip & 1),
                0,
                0,
                0,
                u16::from(ip & 0x0e),
            ])
        };
        let mut peer_id = [b'-'; 20];
        peer_id[0] = peer;
        let req = AnnounceRequest {
            info_hash: hashes[usize::from(swarm) % hashes.len()],
            peer_id,
            port: u16::from(peer) + 1,
            uploaded: 0,
            downloaded: 0,
            left: u64::from(misc & 1),
            event: AnnounceEvent::from_udp(u32::from((misc >> 1) & 3))
                .unwrap_or(AnnounceEvent::None),
            numwant: Some(u32::from(misc)),
            key: 0,
        };
        if let Ok(a) = state.announce_peers(now, &req, source, Family::Any) {
            assert!(a.peers.len() <= MAX_PER_SWARM);
            assert!(a.peers.iter().all(|p| p.peer_id != peer_id));
            // No address group (an IPv4 address, an IPv6 /64) holds more than its share.
            let group = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => u128::from(v4.to_bits()),
                IpAddr::V6(v6) => v6.to_bits() >> 64 << 64 | 1,
            };
            for p in &a.peers {
                let same = a
                    .peers
                    .iter()
                    .filter(|q| group(q.addr.ip()) == group(p.addr.ip()));
                assert!(same.count() <= MAX_PER_IP, "{:?}", a.peers);
            }
        }
        if misc & 0x0f == 0x0f {
            state.expire(now);
        }
        check_caps(&state, &hashes);
    }
});
