//! The fuzz targets' seed files (fuzz/corpus/webtorrent_tracker, stun_response) run in `cargo test`: each
//! frame decodes as the kind of message it was written as, re-encodes to itself, and the
//! tracker core answers the sequence without panicking.

use std::time::Instant;

use webtorrent::codec::{ClientMessage, ServerMessage};
use webtorrent::server::{Config, WsTracker};

#[test]
fn corpus_frames_decode_and_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus/webtorrent_tracker");
    let mut decoded = 0;
    let mut server = WsTracker::new(Config::default(), 1);
    let t = Instant::now();
    server.connect(1, t);
    server.connect(2, t);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (i, line) in text.lines().enumerate() {
            if let Ok(m) = ClientMessage::decode(line) {
                assert_eq!(ClientMessage::decode(&m.encode()), Ok(m));
                decoded += 1;
            }
            if let Ok(m) = ServerMessage::decode(line) {
                assert_eq!(ServerMessage::decode(&m.encode()), Ok(m));
                decoded += 1;
            }
            let _ = server.handle(1 + (i as u64 % 2), t, line);
        }
    }
    // announce, answer, relayed offer, reply, failure, and the sequence's four frames.
    assert!(decoded >= 9, "only {decoded} frames decoded");
}

/// The STUN fuzz target's seed files (fuzz/corpus/stun_response: 12 bytes of transaction
/// id, then the datagram): the responses parse to the address written in them, the
/// request does not, and what parses writes back as itself.
#[test]
fn stun_corpus_parses() {
    use webtorrent::stun::{binding_success, parse_binding_response};
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/stun_response");
    let mut parsed = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let (tid, msg) = data.split_first_chunk::<12>().unwrap();
        if let Ok(addr) = parse_binding_response(msg, tid) {
            assert_eq!(
                parse_binding_response(&binding_success(tid, addr), tid),
                Ok(addr)
            );
            parsed.push(addr.to_string());
        }
    }
    parsed.sort();
    assert_eq!(
        parsed,
        ["192.0.2.1:32853", "192.0.2.1:3478", "203.0.113.7:54321"]
    );
}
