//! Framing: cutting a byte stream from a peer into [`Message`]s (BEP 3, 5, 6, 10).
//!
//! The shell reads from the socket into a `BytesMut` and calls [`Decoder::decode`]
//! until it returns `Ok(None)`. Each length prefix is checked against a bound for its
//! message id as soon as the 5-byte header has arrived, before any of the payload is
//! buffered, so a peer cannot make us hold more than one bounded message. Payloads come
//! out as `Bytes` slices of the receive buffer (`split_to().freeze()`), never copied.
//!
//! Unknown message ids are skipped, not refused, by default: libtorrent does the same,
//! and new BEPs (BEP 52's hash messages, for instance) add ids that a peer may send to
//! anyone. Their bytes are dropped as they arrive, so skipping costs no memory; they
//! are still bounded by [`DecoderConfig::max_unknown_len`] so that a stream of noise
//! ends. Set [`DecoderConfig::reject_unknown_ids`] for the strict behaviour.
//!
//! An error means the stream can no longer be trusted to be in step: close the
//! connection. The decoder does not consume the offending message, so calling it again
//! returns the same error.

use bytes::{Buf, BytesMut};
use thiserror::Error;

use crate::message::{BlockRequest, Message, id};

/// Bounds on what a peer may send. All lengths are payload lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest block in a piece message. 16 KiB by default: it is what every client
    /// requests, and we only accept blocks we asked for.
    pub max_block_len: u32,
    /// Largest bitfield. 1 MiB by default (8 Mi pieces, more than any real torrent);
    /// [`DecoderConfig::for_piece_count`] sets it to the exact size once the torrent is
    /// known. The exact length is checked again by [`crate::PeerState`].
    pub max_bitfield_len: u32,
    /// Largest extended message payload, the extended id byte included. 128 KiB by
    /// default: the largest legitimate one is a ut_metadata data message (a 16 KiB
    /// block plus a small dictionary); PEX and handshakes are a few KiB at most.
    pub max_extended_len: u32,
    /// Largest message with an unknown id that is skipped. 1 MiB by default; skipped
    /// bytes are never buffered, so this only ends a stream of noise.
    pub max_unknown_len: u32,
    /// Refuse unknown ids with [`DecodeError::UnknownMessageId`] instead of skipping.
    pub reject_unknown_ids: bool,
}

/// Default largest block: 16 KiB.
pub const DEFAULT_MAX_BLOCK_LEN: u32 = 16 * 1024;
/// Default largest bitfield: 1 MiB.
pub const DEFAULT_MAX_BITFIELD_LEN: u32 = 1024 * 1024;
/// Default largest extended payload: 128 KiB.
pub const DEFAULT_MAX_EXTENDED_LEN: u32 = 128 * 1024;
/// Default largest skipped unknown message: 1 MiB.
pub const DEFAULT_MAX_UNKNOWN_LEN: u32 = 1024 * 1024;

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_block_len: DEFAULT_MAX_BLOCK_LEN,
            max_bitfield_len: DEFAULT_MAX_BITFIELD_LEN,
            max_extended_len: DEFAULT_MAX_EXTENDED_LEN,
            max_unknown_len: DEFAULT_MAX_UNKNOWN_LEN,
            reject_unknown_ids: false,
        }
    }
}

impl DecoderConfig {
    /// Defaults, with the bitfield bound set to exactly what `piece_count` pieces need.
    pub fn for_piece_count(piece_count: u32) -> Self {
        Self {
            max_bitfield_len: piece_count.div_ceil(8),
            ..Self::default()
        }
    }
}

/// Why a message was refused. Every variant means: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The length prefix (`len`, id included) is more than the bound for this id.
    #[error("message id {id} has length {len}, more than the maximum {max}")]
    MessageTooLong { id: u8, len: u32, max: u32 },
    /// An id we do not know, when [`DecoderConfig::reject_unknown_ids`] is set.
    #[error("unknown message id {0}")]
    UnknownMessageId(u8),
    /// A message whose length prefix cannot be right for its id, such as a `have` whose
    /// length is not 5.
    #[error("message id {id} cannot have length {len}")]
    BadLength { id: u8, len: u32 },
}

/// Cuts a byte stream into messages. Holds no buffer of its own: the bytes live in the
/// caller's `BytesMut`, which is what lets payloads be handed out without copies.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    config: DecoderConfig,
    /// Bytes of an unknown message still to drop.
    skip: usize,
    skipped_unknown: u64,
}

/// What the length prefix and id say about a frame.
enum Frame {
    Known,
    Unknown,
}

impl Decoder {
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            config,
            skip: 0,
            skipped_unknown: 0,
        }
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Changes the bounds, for instance once metadata arrives and the piece count is
    /// known. Takes effect from the next message header.
    pub fn set_config(&mut self, config: DecoderConfig) {
        self.config = config;
    }

    /// How many messages with unknown ids were skipped so far.
    pub fn skipped_unknown(&self) -> u64 {
        self.skipped_unknown
    }

    /// Takes the next whole message off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds no whole message yet; read more and call
    /// again. Bytes of a message are removed from `buf` only when the message is
    /// returned (or, for an unknown id, skipped).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len());
                buf.advance(n);
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            let Some(header) = buf.get(..4) else {
                return Ok(None);
            };
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            if len == 0 {
                buf.advance(4);
                return Ok(Some(Message::KeepAlive));
            }
            let Some(&msg_id) = buf.get(4) else {
                return Ok(None);
            };
            match self.check(msg_id, len)? {
                Frame::Unknown => {
                    buf.advance(5);
                    // len >= 1 here and fits usize on every platform we build for.
                    self.skip = len as usize - 1;
                    self.skipped_unknown += 1;
                }
                Frame::Known => {
                    let total = 4 + len as usize;
                    if buf.len() < total {
                        return Ok(None);
                    }
                    return Ok(Some(parse(msg_id, total, buf)));
                }
            }
        }
    }

    /// Checks a length prefix against its id, before any payload is buffered.
    fn check(&self, msg_id: u8, len: u32) -> Result<Frame, DecodeError> {
        let exact = |want: u32| {
            if len == want {
                Ok(Frame::Known)
            } else {
                Err(DecodeError::BadLength { id: msg_id, len })
            }
        };
        // `header` is the id byte plus fixed fields before the variable payload.
        let bounded = |header: u32, max_payload: u32| {
            let max = header.saturating_add(max_payload);
            if len < header {
                Err(DecodeError::BadLength { id: msg_id, len })
            } else if len > max {
                Err(DecodeError::MessageTooLong {
                    id: msg_id,
                    len,
                    max,
                })
            } else {
                Ok(Frame::Known)
            }
        };
        let c = &self.config;
        match msg_id {
            id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => exact(1),
            id::HAVE_ALL | id::HAVE_NONE => exact(1),
            id::HAVE | id::SUGGEST | id::ALLOWED_FAST => exact(5),
            id::REQUEST | id::CANCEL | id::REJECT => exact(13),
            id::PORT => exact(3),
            id::BITFIELD => bounded(1, c.max_bitfield_len),
            id::PIECE => bounded(9, c.max_block_len),
            // The extended id byte counts towards max_extended_len.
            id::EXTENDED => bounded(1, c.max_extended_len).and_then(|f| {
                if len < 2 {
                    Err(DecodeError::BadLength { id: msg_id, len })
                } else {
                    Ok(f)
                }
            }),
            _ if c.reject_unknown_ids => Err(DecodeError::UnknownMessageId(msg_id)),
            _ => bounded(1, c.max_unknown_len).map(|_| Frame::Unknown),
        }
    }
}

/// Builds a message whose length was checked by [`Decoder::check`] and whose `total`
/// bytes (prefix included) are all in `buf`.
fn parse(msg_id: u8, total: usize, buf: &mut BytesMut) -> Message {
    // Fixed-size messages are read in place; only variable payloads are split off, so
    // control messages cost no reference-count traffic.
    let u32_at =
        |b: &BytesMut, at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let fixed = |b: &BytesMut| BlockRequest::new(u32_at(b, 5), u32_at(b, 9), u32_at(b, 13));
    let msg = match msg_id {
        id::CHOKE => Message::Choke,
        id::UNCHOKE => Message::Unchoke,
        id::INTERESTED => Message::Interested,
        id::NOT_INTERESTED => Message::NotInterested,
        id::HAVE_ALL => Message::HaveAll,
        id::HAVE_NONE => Message::HaveNone,
        id::HAVE => Message::Have {
            piece: u32_at(buf, 5),
        },
        id::SUGGEST => Message::Suggest {
            piece: u32_at(buf, 5),
        },
        id::ALLOWED_FAST => Message::AllowedFast {
            piece: u32_at(buf, 5),
        },
        id::REQUEST => Message::Request(fixed(buf)),
        id::CANCEL => Message::Cancel(fixed(buf)),
        id::REJECT => Message::Reject(fixed(buf)),
        id::PORT => Message::Port(u16::from_be_bytes([buf[5], buf[6]])),
        id::BITFIELD => {
            let mut frame = buf.split_to(total).freeze();
            frame.advance(5);
            return Message::Bitfield(frame);
        }
        id::PIECE => {
            let piece = u32_at(buf, 5);
            let begin = u32_at(buf, 9);
            let mut frame = buf.split_to(total).freeze();
            frame.advance(13);
            return Message::Piece {
                piece,
                begin,
                data: frame,
            };
        }
        // Only EXTENDED is left: check() admits no other id as Known.
        _ => {
            let ext_id = buf[5];
            let mut frame = buf.split_to(total).freeze();
            frame.advance(6);
            return Message::Extended {
                id: ext_id,
                payload: frame,
            };
        }
    };
    buf.advance(total);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Message>, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn decodes_every_hand_written_vector() {
        for (msg, bytes) in crate::message::tests_vectors() {
            let mut d = Decoder::default();
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(d.decode(&mut buf), Ok(Some(msg.clone())), "{bytes:?}");
            assert!(buf.is_empty());
            assert_eq!(d.decode(&mut buf), Ok(None));
        }
    }

    #[test]
    fn decodes_byte_by_byte() {
        let mut all = Vec::new();
        let mut want = Vec::new();
        for (msg, bytes) in crate::message::tests_vectors() {
            all.extend_from_slice(&bytes);
            want.push(msg);
        }
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in all {
            buf.extend_from_slice(&[b]);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn piece_payload_is_a_slice_of_the_receive_buffer() {
        let mut buf = BytesMut::from(
            &Message::Piece {
                piece: 0,
                begin: 0,
                data: Bytes::from(vec![9u8; 16384]),
            }
            .to_vec()[..],
        );
        let start = buf.as_ptr() as usize;
        let Some(Message::Piece { data, .. }) = Decoder::default().decode(&mut buf).unwrap() else {
            panic!("not a piece")
        };
        assert_eq!(data.as_ptr() as usize, start + 13);
    }

    #[test]
    fn bad_length_for_fixed_size_messages() {
        let cases: &[(u8, u32)] = &[
            (id::CHOKE, 2),
            (id::UNCHOKE, 5),
            (id::INTERESTED, 2),
            (id::NOT_INTERESTED, 2),
            (id::HAVE, 4),
            (id::HAVE, 6),
            (id::REQUEST, 12),
            (id::CANCEL, 14),
            (id::REJECT, 1),
            (id::PORT, 5),
            (id::SUGGEST, 1),
            (id::HAVE_ALL, 2),
            (id::HAVE_NONE, 9),
            (id::ALLOWED_FAST, 3),
            (id::PIECE, 8),
            (id::EXTENDED, 1),
        ];
        for &(msg_id, len) in cases {
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.push(msg_id);
            assert_eq!(
                decode_all(&mut Decoder::default(), &bytes),
                Err(DecodeError::BadLength { id: msg_id, len }),
                "id {msg_id} len {len}"
            );
        }
    }

    #[test]
    fn too_long_is_refused_from_the_header_alone() {
        // Only 5 bytes arrive: the bound is checked before the payload is awaited.
        let mut d = Decoder::default();
        let too_long_piece = [0, 0, 0x40, 0x0a, id::PIECE]; // 9 + 16385
        assert_eq!(
            decode_all(&mut d, &too_long_piece),
            Err(DecodeError::MessageTooLong {
                id: id::PIECE,
                len: 16394,
                max: 16393
            })
        );
        let ok_piece_header = [0, 0, 0x40, 0x09, id::PIECE];
        assert_eq!(decode_all(&mut d, &ok_piece_header), Ok(vec![]));

        let huge = [0xff, 0xff, 0xff, 0xff, id::BITFIELD];
        assert_eq!(
            decode_all(&mut d, &huge),
            Err(DecodeError::MessageTooLong {
                id: id::BITFIELD,
                len: u32::MAX,
                max: DEFAULT_MAX_BITFIELD_LEN + 1
            })
        );
        let ext = (DEFAULT_MAX_EXTENDED_LEN + 2).to_be_bytes();
        assert_eq!(
            decode_all(&mut d, &[ext[0], ext[1], ext[2], ext[3], id::EXTENDED]),
            Err(DecodeError::MessageTooLong {
                id: id::EXTENDED,
                len: DEFAULT_MAX_EXTENDED_LEN + 2,
                max: DEFAULT_MAX_EXTENDED_LEN + 1
            })
        );
        let unk = [0x7f, 0, 0, 0, 99];
        assert!(matches!(
            decode_all(&mut d, &unk),
            Err(DecodeError::MessageTooLong { id: 99, .. })
        ));
    }

    #[test]
    fn bitfield_bound_follows_piece_count() {
        let mut d = Decoder::new(DecoderConfig::for_piece_count(9));
        assert_eq!(
            decode_all(&mut d, &[0, 0, 0, 3, 5, 0xff, 0x80]),
            Ok(vec![Message::Bitfield(Bytes::from_static(&[0xff, 0x80]))])
        );
        assert_eq!(
            decode_all(&mut d, &[0, 0, 0, 4, 5]),
            Err(DecodeError::MessageTooLong {
                id: 5,
                len: 4,
                max: 3
            })
        );
    }

    #[test]
    fn unknown_ids_are_skipped_without_buffering() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 21, 1, 2][..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.is_empty(), "skipped bytes are dropped as they come");
        buf.extend_from_slice(&[3, 4, 0, 0, 0, 1, 1]);
        assert_eq!(d.decode(&mut buf), Ok(Some(Message::Unchoke)));
        assert_eq!(d.skipped_unknown(), 1);
    }

    #[test]
    fn unknown_ids_can_be_refused() {
        let mut d = Decoder::new(DecoderConfig {
            reject_unknown_ids: true,
            ..DecoderConfig::default()
        });
        assert_eq!(
            decode_all(&mut d, &[0, 0, 0, 1, 0x0a]),
            Err(DecodeError::UnknownMessageId(0x0a))
        );
    }

    #[test]
    fn errors_are_sticky_and_consume_nothing() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 0, 0][..]);
        let e = d.decode(&mut buf);
        assert_eq!(e, Err(DecodeError::BadLength { id: 0, len: 2 }));
        assert_eq!(d.decode(&mut buf), e);
        assert_eq!(buf.len(), 6);
    }

    #[test]
    fn empty_piece_and_bitfield_and_extended_payloads() {
        let got = decode_all(
            &mut Decoder::default(),
            &[
                0, 0, 0, 9, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 5, 0, 0, 0, 2, 20, 3,
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Message::Piece {
                    piece: 1,
                    begin: 2,
                    data: Bytes::new()
                },
                Message::Bitfield(Bytes::new()),
                Message::Extended {
                    id: 3,
                    payload: Bytes::new()
                },
            ]
        );
    }
}
