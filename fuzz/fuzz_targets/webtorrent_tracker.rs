//! Fuzzes the WebSocket tracker messages (what a tracker or a browser peer can send us):
//! both decoders on arbitrary text (UTF-8 as a WebSocket text frame must be), the sans-IO
//! tracker server fed the frames from three connections, and the sans-IO tracker client fed
//! them as tracker replies. Nothing may panic; decoded messages re-encode to themselves;
//! the server never relays more offers than its cap nor tracks more peers than allowed.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use webtorrent::client::{ClientConfig, Progress, TrackerClient};
use webtorrent::codec::{ClientMessage, ServerMessage};
use webtorrent::server::{Config, WsTracker};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(m) = ClientMessage::decode(&text) {
        assert_eq!(ClientMessage::decode(&m.encode()).as_ref(), Ok(&m));
    }
    if let Ok(m) = ServerMessage::decode(&text) {
        assert_eq!(ServerMessage::decode(&m.encode()).as_ref(), Ok(&m));
    }

    let t0 = Instant::now();
    let config = Config {
        max_relay: 2,
        max_peers: 4,
        max_swarms: 2,
        max_swarms_per_conn: 2,
        max_pending_per_conn: 3,
        ..Config::default()
    };
    let mut server = WsTracker::new(config, 9);
    for c in 0..3 {
        server.connect(c, t0);
    }
    let mut client = TrackerClient::new([1; 20], ClientConfig::default(), 3, t0);
    client.add_torrent([0xaa; 20], Progress::default(), t0);
    client.connected(t0);
    // Frames separated by newlines, each from connection (line number % 3).
    for (i, line) in text.split('\n').enumerate() {
        let now = t0 + Duration::from_secs(i as u64);
        let out = server.handle(i as u64 % 3, now, line);
        let offers = out
            .iter()
            .filter(|o| matches!(o.msg, ServerMessage::Offer(_)))
            .count();
        assert!(offers <= 2);
        assert!(server.stats().peers <= 4 && server.stats().swarms <= 2);
        client.handle_message(line, now);
        client.handle_timeout(now);
        while client.poll_event().is_some() {}
        while client.poll_transmit().is_some() {}
        if i % 7 == 6 {
            server.expire(now);
            server.disconnect(i as u64 % 3);
            server.connect(i as u64 % 3, now);
        }
    }
});
