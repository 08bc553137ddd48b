//! Fuzzes what trackers send the client: HTTP announce and scrape answers (BEP 3, 23, 7,
//! 48) and UDP answers (BEP 15). Nothing may panic, at most `MAX_PEERS` peers come back,
//! and every one of them is routable. The input also drives the BEP 12 announce schedule
//! with arbitrary outcomes and clock steps, which must never have two announces in flight.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tracker::client::announcer::Announcer;
use tracker::client::http::{self, is_routable};
use tracker::client::udp::{self, UdpResponse};
use tracker::proto::AnnounceResponse;

const MAX_PEERS: usize = 64;

fn check_peers(r: &AnnounceResponse) {
    assert!(r.peers.len() <= MAX_PEERS);
    assert!(r.peers.iter().all(is_routable));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = http::parse_announce(data, MAX_PEERS) {
        check_peers(&r);
    }
    let hashes = [[0u8; 20], *b"aaaaaaaaaaaaaaaaaaaa"];
    if let Ok(entries) = http::parse_scrape(data, &hashes) {
        assert_eq!(entries.len(), hashes.len());
    }
    let _ = http::failure_reason(data);
    for ipv6 in [false, true] {
        if let Ok((txid, response)) = udp::decode_response(data, ipv6, MAX_PEERS) {
            assert_eq!(Some(txid), udp::transaction_id(data));
            if let UdpResponse::Announce(r) = response {
                check_peers(&r);
            }
        }
    }

    // The schedule: each byte is an outcome or a clock step.
    let tiers = vec![
        vec!["udp://a:1".to_string(), "http://b/announce".to_string()],
        vec!["http://c/announce".to_string()],
    ];
    let t0 = Instant::now();
    let mut now = t0;
    let mut announcer = Announcer::new(tiers, data.len() as u64, t0);
    let mut in_flight: Option<String> = None;
    for &b in data.iter().take(256) {
        match b % 6 {
            0 => now += Duration::from_secs(u64::from(b) * 7),
            1 => announcer.on_completed(now),
            2 => announcer.on_stop(now),
            3 | 4 => {
                if let Some(url) = in_flight.take() {
                    if b % 6 == 3 {
                        let resp = AnnounceResponse {
                            interval: u32::from(b) * 3,
                            min_interval: (b & 1 == 1).then_some(u32::from(b)),
                            ..Default::default()
                        };
                        announcer.on_success(now, &url, &resp);
                    } else {
                        announcer.on_failure(now, &url);
                    }
                }
            }
            _ => {
                if let Some(deadline) = announcer.poll_timeout() {
                    now = now.max(deadline);
                }
            }
        }
        if let Some((url, _event)) = announcer.next_action(now) {
            assert!(in_flight.is_none(), "two announces in flight");
            in_flight = Some(url);
        }
    }
});
