//! Peer wire messages (BEP 3, BEP 6 fast extension, BEP 10 extended) and their encoding.
//!
//! Every message after the handshake is `<length:u32 big-endian><id:u8><payload>`; a
//! length of zero is a keep-alive. Decoding lives in [`crate::codec`], which checks
//! each length before it trusts it; this module only builds messages, so it needs no
//! bounds beyond the 4 GiB a length prefix can describe.
//!
//! Blocks are the bulk of the traffic, so [`encode_piece_header`] writes only the
//! 13-byte header of a piece message: the shell can then hand the header and the block
//! (a `Bytes` straight from storage) to a vectored write without copying the block.

use bytes::{BufMut, Bytes};

/// Message ids, as assigned by BEP 3, BEP 5 (port), BEP 6 and BEP 10.
pub mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 0x0D;
    pub const HAVE_ALL: u8 = 0x0E;
    pub const HAVE_NONE: u8 = 0x0F;
    pub const REJECT: u8 = 0x10;
    pub const ALLOWED_FAST: u8 = 0x11;
    pub const EXTENDED: u8 = 20;
}

/// Bytes of a piece message before the block: length (4), id (1), index (4), begin (4).
pub const PIECE_HEADER_LEN: usize = 13;

/// One block of one piece, as named by `request`, `cancel` and `reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRequest {
    /// Zero-based piece index.
    pub piece: u32,
    /// Byte offset of the block inside the piece.
    pub begin: u32,
    /// Length of the block in bytes.
    pub length: u32,
}

impl BlockRequest {
    pub fn new(piece: u32, begin: u32, length: u32) -> Self {
        Self {
            piece,
            begin,
            length,
        }
    }
}

/// A peer wire message.
///
/// Payloads are `Bytes`: after decoding they are slices of the connection's receive
/// buffer, so a block travels from the socket to the piece buffer without a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have {
        piece: u32,
    },
    /// The raw bitfield, high bit of the first byte is piece 0. Its length is checked
    /// against the torrent by [`crate::PeerState`], which knows the piece count.
    Bitfield(Bytes),
    Request(BlockRequest),
    Piece {
        piece: u32,
        begin: u32,
        data: Bytes,
    },
    Cancel(BlockRequest),
    /// BEP 5: the peer's DHT port.
    Port(u16),
    /// BEP 6.
    Suggest {
        piece: u32,
    },
    /// BEP 6.
    HaveAll,
    /// BEP 6.
    HaveNone,
    /// BEP 6.
    Reject(BlockRequest),
    /// BEP 6.
    AllowedFast {
        piece: u32,
    },
    /// BEP 10: `id` 0 is the extended handshake, others are the ids the receiver
    /// assigned in its handshake's `m` dictionary.
    Extended {
        id: u8,
        payload: Bytes,
    },
}

impl Message {
    /// The message id, or `None` for a keep-alive, which has none.
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => id::CHOKE,
            Message::Unchoke => id::UNCHOKE,
            Message::Interested => id::INTERESTED,
            Message::NotInterested => id::NOT_INTERESTED,
            Message::Have { .. } => id::HAVE,
            Message::Bitfield(_) => id::BITFIELD,
            Message::Request(_) => id::REQUEST,
            Message::Piece { .. } => id::PIECE,
            Message::Cancel(_) => id::CANCEL,
            Message::Port(_) => id::PORT,
            Message::Suggest { .. } => id::SUGGEST,
            Message::HaveAll => id::HAVE_ALL,
            Message::HaveNone => id::HAVE_NONE,
            Message::Reject(_) => id::REJECT,
            Message::AllowedFast { .. } => id::ALLOWED_FAST,
            Message::Extended { .. } => id::EXTENDED,
        })
    }

    /// Value of the length prefix: id plus payload.
    fn body_len(&self) -> usize {
        match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Have { .. } | Message::Suggest { .. } | Message::AllowedFast { .. } => 5,
            Message::Bitfield(bits) => 1 + bits.len(),
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 13,
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Port(_) => 3,
            Message::Extended { payload, .. } => 2 + payload.len(),
        }
    }

    /// Bytes this message takes on the wire, length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + self.body_len()
    }

    /// Appends the message to `dst` (a `BytesMut` or a `Vec<u8>`).
    ///
    /// # Panics
    /// If a payload is longer than a length prefix can describe (about 4 GiB). Payloads
    /// are built by us, never taken from a peer, so that is a bug in the caller.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        let len = u32::try_from(self.body_len()).expect("message longer than 4 GiB");
        dst.put_u32(len);
        let Some(id) = self.id() else {
            return;
        };
        dst.put_u8(id);
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => {}
            Message::Have { piece }
            | Message::Suggest { piece }
            | Message::AllowedFast { piece } => dst.put_u32(*piece),
            Message::Bitfield(bits) => dst.put_slice(bits),
            Message::Request(r) | Message::Cancel(r) | Message::Reject(r) => {
                dst.put_u32(r.piece);
                dst.put_u32(r.begin);
                dst.put_u32(r.length);
            }
            Message::Piece { piece, begin, data } => {
                dst.put_u32(*piece);
                dst.put_u32(*begin);
                dst.put_slice(data);
            }
            Message::Port(port) => dst.put_u16(*port),
            Message::Extended { id, payload } => {
                dst.put_u8(*id);
                dst.put_slice(payload);
            }
        }
    }

    /// The message as a fresh `Vec`; handy in tests and for small control messages.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

/// Writes the 13-byte header of a piece message whose block is `block_len` bytes long;
/// the caller sends the block itself right after, without copying it into `dst`.
///
/// # Panics
/// If `block_len` plus 9 does not fit in a `u32` (a bug: blocks are at most 16 KiB).
pub fn encode_piece_header<B: BufMut>(dst: &mut B, piece: u32, begin: u32, block_len: usize) {
    let len = u32::try_from(9 + block_len).expect("block longer than 4 GiB");
    dst.put_u32(len);
    dst.put_u8(id::PIECE);
    dst.put_u32(piece);
    dst.put_u32(begin);
}

/// The hand-written vectors, shared with the codec's tests.
#[cfg(test)]
pub(crate) fn tests_vectors() -> Vec<(Message, Vec<u8>)> {
    tests::vectors()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Byte vectors written by hand from the tables in BEP 3, BEP 5, BEP 6 and BEP 10.
    pub(crate) fn vectors() -> Vec<(Message, Vec<u8>)> {
        let r = BlockRequest::new(1, 0x4000, 0x4000);
        vec![
            (Message::KeepAlive, vec![0, 0, 0, 0]),
            (Message::Choke, vec![0, 0, 0, 1, 0]),
            (Message::Unchoke, vec![0, 0, 0, 1, 1]),
            (Message::Interested, vec![0, 0, 0, 1, 2]),
            (Message::NotInterested, vec![0, 0, 0, 1, 3]),
            (
                Message::Have { piece: 0x0102_0304 },
                vec![0, 0, 0, 5, 4, 1, 2, 3, 4],
            ),
            (
                Message::Bitfield(Bytes::from_static(&[0b1010_0000, 0xff])),
                vec![0, 0, 0, 3, 5, 0b1010_0000, 0xff],
            ),
            (
                Message::Request(r),
                vec![0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::Piece {
                    piece: 2,
                    begin: 0x10,
                    data: Bytes::from_static(b"abc"),
                },
                vec![0, 0, 0, 12, 7, 0, 0, 0, 2, 0, 0, 0, 0x10, b'a', b'b', b'c'],
            ),
            (
                Message::Cancel(r),
                vec![0, 0, 0, 13, 8, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (Message::Port(6881), vec![0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (
                Message::Suggest { piece: 7 },
                vec![0, 0, 0, 5, 0x0d, 0, 0, 0, 7],
            ),
            (Message::HaveAll, vec![0, 0, 0, 1, 0x0e]),
            (Message::HaveNone, vec![0, 0, 0, 1, 0x0f]),
            (
                Message::Reject(r),
                vec![0, 0, 0, 13, 0x10, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::AllowedFast { piece: 9 },
                vec![0, 0, 0, 5, 0x11, 0, 0, 0, 9],
            ),
            (
                Message::Extended {
                    id: 0,
                    payload: Bytes::from_static(b"d1:md6:ut_pexi1eee"),
                },
                {
                    let mut v = vec![0, 0, 0, 20, 20, 0];
                    v.extend_from_slice(b"d1:md6:ut_pexi1eee");
                    v
                },
            ),
        ]
    }

    #[test]
    fn encodes_hand_written_vectors() {
        for (msg, bytes) in vectors() {
            assert_eq!(msg.to_vec(), bytes, "{msg:?}");
            assert_eq!(msg.encoded_len(), bytes.len(), "{msg:?}");
            let mut b = bytes::BytesMut::new();
            msg.encode(&mut b);
            assert_eq!(&b[..], &bytes[..]);
        }
    }

    #[test]
    fn piece_header_matches_full_encoding() {
        let data = Bytes::from(vec![7u8; 16384]);
        let full = Message::Piece {
            piece: 3,
            begin: 32768,
            data: data.clone(),
        }
        .to_vec();
        let mut header = Vec::new();
        encode_piece_header(&mut header, 3, 32768, data.len());
        assert_eq!(header.len(), PIECE_HEADER_LEN);
        assert_eq!(&full[..PIECE_HEADER_LEN], &header[..]);
        assert_eq!(&full[PIECE_HEADER_LEN..], &data[..]);
    }
}
