//! Property tests for the wire codecs (BEP 3, 6, 10): decode(encode(x)) == x, chunking
//! never changes what the decoder yields, and no input makes anything panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{Bytes, BytesMut};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use wire::{
    BlockRequest, DecodeError, Decoder, DecoderConfig, ExtendedHandshake, Handshake,
    HandshakePrefix, Message, PeerConfig, PeerState, PieceGeometry,
};

fn block_request() -> impl Strategy<Value = BlockRequest> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(p, b, l)| BlockRequest::new(p, b, l))
}

fn payload(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        any::<u32>().prop_map(|piece| Message::Have { piece }),
        payload(200).prop_map(Message::Bitfield),
        block_request().prop_map(Message::Request),
        (any::<u32>(), any::<u32>(), payload(16 * 1024))
            .prop_map(|(piece, begin, data)| Message::Piece { piece, begin, data }),
        block_request().prop_map(Message::Cancel),
        any::<u16>().prop_map(Message::Port),
        any::<u32>().prop_map(|piece| Message::Suggest { piece }),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        block_request().prop_map(Message::Reject),
        any::<u32>().prop_map(|piece| Message::AllowedFast { piece }),
        (any::<u8>(), payload(300)).prop_map(|(id, payload)| Message::Extended { id, payload }),
    ]
}

/// Every message the decoder yields for `data` fed in pieces of the given sizes
/// (cycled), then the error that stopped it, if any.
fn decode_chunked(
    config: DecoderConfig,
    data: &[u8],
    sizes: &[usize],
) -> (Vec<Message>, Option<DecodeError>) {
    let mut d = Decoder::new(config);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    loop {
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        if rest.is_empty() {
            return (out, None);
        }
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        i += 1;
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

fn config() -> DecoderConfig {
    DecoderConfig::default()
}

fn extended_handshake() -> impl Strategy<Value = ExtendedHandshake> {
    (
        btree_map("[a-zA-Z_]{1,20}", any::<u8>(), 0..10),
        proptest::option::of("\\PC{0,30}"),
        proptest::option::of(1u16..),
        proptest::option::of(1u32..),
        proptest::option::of(prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ]),
        proptest::option::of(any::<[u8; 4]>().prop_map(Ipv4Addr::from)),
        proptest::option::of(any::<[u8; 16]>().prop_map(Ipv6Addr::from)),
        proptest::option::of(1u64..=i64::MAX as u64),
    )
        .prop_map(
            |(m, v, p, reqq, yourip, ipv4, ipv6, metadata_size)| ExtendedHandshake {
                m,
                v,
                p,
                reqq,
                yourip,
                ipv4,
                ipv6,
                metadata_size,
            },
        )
}

proptest! {
    #[test]
    fn message_round_trips(msg in message()) {
        let bytes = msg.to_vec();
        prop_assert_eq!(bytes.len(), msg.encoded_len());
        let mut buf = BytesMut::from(&bytes[..]);
        let mut d = Decoder::new(config());
        prop_assert_eq!(d.decode(&mut buf), Ok(Some(msg)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn message_streams_survive_any_chunking(
        msgs in vec(message(), 0..20),
        sizes in vec(1usize..100, 1..10),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            m.encode(&mut bytes);
        }
        prop_assert_eq!(decode_chunked(config(), &bytes, &sizes), (msgs, None));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_does_not_matter(
        data in vec(any::<u8>(), 0..2000),
        sizes in vec(1usize..64, 1..10),
        reject_unknown_ids in any::<bool>(),
        max_bitfield_len in 0u32..64,
    ) {
        let config = DecoderConfig { reject_unknown_ids, max_bitfield_len, ..config() };
        let whole = decode_chunked(config, &data, &[data.len()]);
        prop_assert_eq!(decode_chunked(config, &data, &sizes), whole);
    }

    /// Mostly-valid streams reach deeper code than uniform noise does.
    #[test]
    fn corrupted_streams_never_panic(
        msgs in vec(message(), 1..10),
        flips in vec((any::<usize>(), any::<u8>()), 1..5),
        sizes in vec(1usize..64, 1..10),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            m.encode(&mut bytes);
        }
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        let whole = decode_chunked(config(), &bytes, &[bytes.len()]);
        prop_assert_eq!(decode_chunked(config(), &bytes, &sizes), whole);
    }

    #[test]
    fn handshake_round_trips(reserved in any::<[u8; 8]>(), info_hash in any::<[u8; 20]>(), peer_id in any::<[u8; 20]>()) {
        let hs = Handshake { reserved, info_hash, peer_id };
        let bytes = hs.encode();
        prop_assert_eq!(Handshake::parse(&bytes), Ok(Some(hs)));
        prop_assert_eq!(HandshakePrefix::parse(&bytes[..48]), Ok(Some(hs.prefix())));
    }

    #[test]
    fn handshake_parsers_never_panic(data in vec(any::<u8>(), 0..100)) {
        let full = Handshake::parse(&data);
        let prefix = HandshakePrefix::parse(&data);
        if let Ok(Some(hs)) = full {
            prop_assert_eq!(prefix, Ok(Some(hs.prefix())));
        }
        // An error on a prefix of the input stays an error on all of it.
        for n in 0..data.len() {
            if Handshake::parse(&data[..n]).is_err() {
                prop_assert!(full.is_err());
            }
        }
    }

    #[test]
    fn extended_handshake_round_trips(hs in extended_handshake()) {
        prop_assert_eq!(ExtendedHandshake::decode(&hs.encode()), Ok(hs));
    }

    #[test]
    fn extended_handshake_decoder_never_panics(data in vec(any::<u8>(), 0..300)) {
        if let Ok(hs) = ExtendedHandshake::decode(&data) {
            // Whatever we accept, we can send back and read again unchanged.
            prop_assert_eq!(ExtendedHandshake::decode(&hs.encode()), Ok(hs));
        }
    }

    #[test]
    fn bencode_like_noise_never_panics(parts in vec(prop_oneof![
        Just(b"d".to_vec()), Just(b"l".to_vec()), Just(b"e".to_vec()),
        Just(b"1:m".to_vec()), Just(b"1:v".to_vec()), Just(b"4:reqq".to_vec()),
        Just(b"6:yourip".to_vec()), Just(b"i-1e".to_vec()), Just(b"i300e".to_vec()),
        Just(b"4:abcd".to_vec()), Just(b"99:".to_vec()), Just(b"i01e".to_vec()),
    ], 0..40)) {
        let data = parts.concat();
        if let Ok(hs) = ExtendedHandshake::decode(&data) {
            prop_assert_eq!(ExtendedHandshake::decode(&hs.encode()), Ok(hs));
        }
    }

    /// The peer state machine takes any message sequence without panicking and keeps
    /// its bounds.
    #[test]
    fn peer_state_never_panics(
        msgs in vec(message(), 0..60),
        fast in any::<bool>(),
        extension_protocol in any::<bool>(),
        unchoke in any::<bool>(),
    ) {
        let geometry = PieceGeometry::new(10 * 16384 + 5, 16384).unwrap();
        let config = PeerConfig { fast_extension: fast, extension_protocol, max_peer_requests: 8, ..PeerConfig::default() };
        let mut s = PeerState::new(config, geometry);
        if unchoke {
            s.unchoke();
        }
        for m in msgs {
            // Ask for what the peer says it has, so pieces can match requests.
            if let Message::Piece { piece, begin, data } = &m {
                let _ = s.request(BlockRequest::new(*piece, *begin, data.len() as u32));
            }
            if s.handle_message(m).is_err() {
                break;
            }
            while s.poll_event().is_some() {}
            while s.poll_message().is_some() {}
            prop_assert!(s.peer_requests().len() <= 8);
            prop_assert!(s.allowed_fast().len() <= config.max_allowed_fast);
        }
    }
}
