//! Fuzzes the peer wire decoders (BEP 3, 6, 10): the handshake parsers, the message
//! framing decoder fed whole and byte by byte, the extended handshake, and the peer
//! state machine fed every decoded message. Nothing may panic, and chunking must not
//! change what the decoder yields.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wire::{
    Decoder, DecoderConfig, ExtendedHandshake, Handshake, HandshakePrefix, Message, PeerConfig,
    PeerState, PieceGeometry,
};

/// Every message the decoder yields, then the error that stopped it, if any.
fn decode(data: &[u8], chunk: usize) -> (Vec<Message>, Option<wire::DecodeError>) {
    let mut d = Decoder::new(DecoderConfig::for_piece_count(100));
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let prefix = HandshakePrefix::parse(data);
    let mut rest = data;
    if let Ok(Some(hs)) = Handshake::parse(data) {
        assert_eq!(prefix, Ok(Some(hs.prefix())));
        assert_eq!(Handshake::parse(&hs.encode()), Ok(Some(hs)));
        rest = &data[wire::handshake::HANDSHAKE_LEN..];
    }

    let whole = decode(rest, rest.len());
    assert_eq!(whole, decode(rest, 1));

    // 100 pieces of 32 KiB, matching the decoder's bitfield bound.
    let geometry = PieceGeometry::new(100 * 32 * 1024, 32 * 1024).expect("valid geometry");
    let mut state = PeerState::new(
        PeerConfig {
            fast_extension: true,
            extension_protocol: true,
            ..PeerConfig::default()
        },
        geometry,
    );
    state.unchoke();
    for msg in whole.0 {
        if let Message::Extended { payload, .. } = &msg {
            if let Ok(hs) = ExtendedHandshake::decode(payload) {
                assert_eq!(ExtendedHandshake::decode(&hs.encode()), Ok(hs));
            }
        }
        if state.handle_message(msg).is_err() {
            break;
        }
        while state.poll_event().is_some() {}
        while state.poll_message().is_some() {}
    }
});
