//! Runs every seed of the `wire_decode` fuzz target through the decoders, so the seeds
//! stay valid (each is a handshake and/or well-formed messages, BEP 3/6/10) and the
//! fuzz target's paths are exercised by plain `cargo test`.

use std::path::Path;

use bytes::BytesMut;
use wire::handshake::HANDSHAKE_LEN;
use wire::{
    Decoder, DecoderConfig, ExtendedHandshake, Handshake, HandshakePrefix, Message, PeerConfig,
    PeerState, PieceGeometry,
};

fn decode(data: &[u8], chunk: usize) -> Vec<Message> {
    let mut d = Decoder::new(DecoderConfig::for_piece_count(4));
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(m) = d.decode(&mut buf).expect("seeds are valid") {
            out.push(m);
        }
    }
    assert!(buf.is_empty(), "seed ends mid-message");
    out
}

#[test]
fn fuzz_seeds_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/wire_decode");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus folder exists") {
        let path = entry.expect("readable entry").path();
        let data = std::fs::read(&path).expect("readable seed");
        let name = path.display();

        let mut rest = &data[..];
        if data.first() == Some(&19) {
            let hs = Handshake::parse(&data)
                .expect("valid handshake")
                .expect("whole handshake");
            assert_eq!(
                HandshakePrefix::parse(&data[..48]),
                Ok(Some(hs.prefix())),
                "{name}"
            );
            rest = &data[HANDSHAKE_LEN..];
        }
        let msgs = decode(rest, rest.len().max(1));
        assert_eq!(decode(rest, 1), msgs, "{name}: chunking changed the result");
        for m in &msgs {
            let mut again = Vec::new();
            m.encode(&mut again);
            assert_eq!(decode(&again, again.len()), vec![m.clone()], "{name}");
        }

        let geometry = PieceGeometry::new(4 * 32 * 1024, 32 * 1024).expect("valid geometry");
        let mut s = PeerState::new(
            PeerConfig {
                fast_extension: true,
                extension_protocol: true,
                ..PeerConfig::default()
            },
            geometry,
        );
        s.unchoke();
        for m in msgs {
            if let Message::Extended { id: 0, payload } = &m {
                ExtendedHandshake::decode(payload).expect("valid extended handshake");
            }
            // Seeds are single messages, not whole conversations: a piece nobody
            // requested is a legitimate refusal, anything else must be accepted.
            let unsolicited = matches!(m, Message::Piece { .. });
            let r = s.handle_message(m);
            assert!(r.is_ok() || unsolicited, "{name}: {r:?}");
        }
        seeds += 1;
    }
    assert!(seeds >= 5, "expected at least 5 seeds in {}", dir.display());
}
