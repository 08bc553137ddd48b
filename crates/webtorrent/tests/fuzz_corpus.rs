//! The fuzz target's seed files (fuzz/corpus/webtorrent_tracker) run in `cargo test`: each
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
