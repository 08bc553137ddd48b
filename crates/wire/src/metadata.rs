//! BEP 9, the metadata extension (`ut_metadata`): fetching a torrent's info dictionary
//! from peers, which is what makes magnet links work.
//!
//! The info dictionary is cut into pieces of 16 KiB ([`METADATA_PIECE_SIZE`]), the last
//! one shorter. Each `ut_metadata` message is a bencoded dictionary (`msg_type`, `piece`,
//! and for data `total_size`); a data message carries the raw piece bytes right after the
//! dictionary. [`MetadataMessage`] decodes and encodes these payloads (the part after the
//! extended message id byte of BEP 10).
//!
//! [`MetadataAssembler`] is the downloading side as a sans-IO core: it hands out which
//! piece to request next, checks every piece a peer sends (index, declared total size,
//! exact length), remembers which peer sent which piece, and at the end checks the SHA-1
//! of the whole dictionary against the info-hash. On a mismatch it names the peers that
//! contributed, so the caller can ban them. [`metadata_piece`] is the serving side.
//!
//! The metadata size comes from a peer (`metadata_size` in its extended handshake), so it
//! is bounded by [`MAX_METADATA_SIZE`] before anything is allocated.

use std::collections::BTreeSet;

use bytes::Bytes;
use sha1::{Digest as _, Sha1};
use thiserror::Error;

use bencode::{Encoder, Limits, Value};

/// Size of every metadata piece but the last (BEP 9).
pub const METADATA_PIECE_SIZE: usize = 16384;

/// Largest info dictionary we agree to fetch: 8 MiB. The info dictionary of a v1 torrent
/// is mostly its piece hashes (20 bytes per piece), so 8 MiB holds ~400,000 pieces, e.g. a
/// 100 GiB torrent with 256 KiB pieces; real ones are far smaller. libtorrent uses a
/// similar bound. Anything bigger is refused before a buffer is allocated for it.
pub const MAX_METADATA_SIZE: usize = 8 << 20;

/// Bounds for the bencoded header of a `ut_metadata` message. The whole payload (header
/// plus at most one piece of data) must fit in `max_input`; the header itself is a few
/// dozen bytes, so strings and item counts are kept small.
pub const LIMITS: Limits = Limits {
    max_input: METADATA_PIECE_SIZE + 4096,
    max_depth: 4,
    max_string: 1024,
    max_items: 64,
};

const MSG_REQUEST: i64 = 0;
const MSG_DATA: i64 = 1;
const MSG_REJECT: i64 = 2;

/// Why a `ut_metadata` message or piece was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataError {
    #[error("metadata message is not valid bencode: {0}")]
    Bencode(#[from] bencode::Error),
    #[error("metadata message is not a dictionary")]
    NotADictionary,
    #[error("metadata message lacks key `{0}`")]
    MissingKey(&'static str),
    #[error("metadata message key `{0}` has the wrong type or an out-of-range value")]
    InvalidValue(&'static str),
    /// BEP 9 says an unknown `msg_type` must be ignored: the caller should drop the
    /// message, not the connection.
    #[error("unknown metadata msg_type {0}")]
    UnknownMessageType(i64),
    #[error("metadata data message carries {0} bytes, more than one piece")]
    DataTooLong(usize),
    #[error("metadata size {0} is 0 or larger than the limit of {MAX_METADATA_SIZE} bytes")]
    InvalidSize(u64),
    #[error("metadata piece {piece} out of range ({pieces} pieces)")]
    PieceOutOfRange { piece: u32, pieces: u32 },
    #[error("peer says the metadata is {got} bytes, expected {expected}")]
    SizeMismatch { expected: u64, got: u64 },
    #[error("metadata piece {piece} is {got} bytes, expected {expected}")]
    WrongPieceLength {
        piece: u32,
        expected: usize,
        got: usize,
    },
    #[error("metadata is not complete yet")]
    Incomplete,
    /// The assembled info dictionary does not hash to the info-hash. `peers` are the keys
    /// (as given to [`MetadataAssembler::on_data`]) of every peer that sent a piece, sorted.
    #[error("metadata does not match the info-hash (pieces from {} peers)", peers.len())]
    HashMismatch { peers: Vec<u64> },
}

/// One `ut_metadata` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMessage {
    /// msg_type 0: please send piece `piece`.
    Request { piece: u32 },
    /// msg_type 1: piece `piece` of an info dictionary of `total_size` bytes. `data` is a
    /// slice of the received payload (no copy).
    Data {
        piece: u32,
        total_size: u32,
        data: Bytes,
    },
    /// msg_type 2: the sender will not send piece `piece`.
    Reject { piece: u32 },
}

impl MetadataMessage {
    /// Decodes the payload of a `ut_metadata` extended message (after the id byte).
    ///
    /// Extra keys in the dictionary are ignored. Bytes after the dictionary are the
    /// piece data of a data message (at most one piece, and `total_size` at most
    /// [`MAX_METADATA_SIZE`]); after a request or reject they are ignored, as libtorrent
    /// does.
    pub fn decode(payload: &Bytes) -> Result<Self, MetadataError> {
        let (value, rest) = bencode::decode_prefix_with(payload, &LIMITS)?;
        let dict = value.as_dict().ok_or(MetadataError::NotADictionary)?;
        let msg_type = dict
            .get(b"msg_type")
            .ok_or(MetadataError::MissingKey("msg_type"))?
            .as_int()
            .ok_or(MetadataError::InvalidValue("msg_type"))?;
        let piece = u32_key(dict.get(b"piece"), "piece")?;
        match msg_type {
            MSG_REQUEST => Ok(MetadataMessage::Request { piece }),
            MSG_REJECT => Ok(MetadataMessage::Reject { piece }),
            MSG_DATA => {
                let total_size = u32_key(dict.get(b"total_size"), "total_size")?;
                if total_size == 0 || total_size as usize > MAX_METADATA_SIZE {
                    return Err(MetadataError::InvalidSize(u64::from(total_size)));
                }
                if rest.len() > METADATA_PIECE_SIZE {
                    return Err(MetadataError::DataTooLong(rest.len()));
                }
                let start = payload.len() - rest.len();
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data: payload.slice(start..),
                })
            }
            other => Err(MetadataError::UnknownMessageType(other)),
        }
    }

    /// Encodes the message as the payload of a `ut_metadata` extended message (without
    /// the extended message id byte).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        let (msg_type, piece) = match self {
            MetadataMessage::Request { piece } => (MSG_REQUEST, piece),
            MetadataMessage::Data { piece, .. } => (MSG_DATA, piece),
            MetadataMessage::Reject { piece } => (MSG_REJECT, piece),
        };
        e.dict(|d| {
            d.int(b"msg_type", msg_type);
            d.int(b"piece", i64::from(*piece));
            if let MetadataMessage::Data { total_size, .. } = self {
                d.int(b"total_size", i64::from(*total_size));
            }
        });
        let mut out = e.into_bytes();
        if let MetadataMessage::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
        out
    }
}

fn u32_key(value: Option<&Value<'_>>, key: &'static str) -> Result<u32, MetadataError> {
    let value = value.ok_or(MetadataError::MissingKey(key))?;
    value
        .as_int()
        .and_then(|i| u32::try_from(i).ok())
        .ok_or(MetadataError::InvalidValue(key))
}

/// Number of metadata pieces for an info dictionary of `total_size` bytes.
pub fn piece_count(total_size: u64) -> u64 {
    total_size.div_ceil(METADATA_PIECE_SIZE as u64)
}

/// The serving side: piece `piece` of the info dictionary `info`, or `None` when the
/// index is past the end (answer with a reject).
pub fn metadata_piece(info: &[u8], piece: u32) -> Option<&[u8]> {
    let start = (piece as usize).checked_mul(METADATA_PIECE_SIZE)?;
    if start >= info.len() {
        return None;
    }
    let end = info.len().min(start + METADATA_PIECE_SIZE);
    Some(&info[start..end])
}

/// What [`MetadataAssembler::on_data`] did with a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The piece was stored; `missing` pieces are still to come.
    Stored { missing: u32 },
    /// The piece was already stored; the new copy was dropped.
    Duplicate,
    /// That was the last missing piece: call [`MetadataAssembler::finish`].
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Not requested, or its request was rejected or timed out.
    Missing,
    Requested,
    /// Stored, sent by the peer with this key.
    Have(u64),
}

/// Collects an info dictionary piece by piece from any number of peers (sans-IO).
///
/// The caller asks [`next_request`](Self::next_request) which piece to request from a
/// peer that offers `ut_metadata`, feeds every data message to
/// [`on_data`](Self::on_data) with a key naming that peer, reports rejects and timeouts
/// with [`request_failed`](Self::request_failed), and calls [`finish`](Self::finish) once
/// [`is_complete`](Self::is_complete).
#[derive(Debug, Clone)]
pub struct MetadataAssembler {
    info_hash: [u8; 20],
    total_size: u64,
    buf: Vec<u8>,
    slots: Vec<Slot>,
    missing: u32,
}

impl MetadataAssembler {
    /// Starts collecting an info dictionary of `total_size` bytes (from a peer's
    /// `metadata_size`) that must hash to `info_hash`. Sizes of 0 or over
    /// [`MAX_METADATA_SIZE`] are refused.
    pub fn new(info_hash: [u8; 20], total_size: u64) -> Result<Self, MetadataError> {
        if total_size == 0 || total_size > MAX_METADATA_SIZE as u64 {
            return Err(MetadataError::InvalidSize(total_size));
        }
        // Bounded above, so these conversions cannot truncate.
        let pieces = piece_count(total_size) as u32;
        Ok(MetadataAssembler {
            info_hash,
            total_size,
            buf: vec![0; total_size as usize],
            slots: vec![Slot::Missing; pieces as usize],
            missing: pieces,
        })
    }

    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    pub fn piece_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The next piece to request: one neither stored nor currently requested. Each piece
    /// is handed out once until [`request_failed`](Self::request_failed) gives it back.
    pub fn next_request(&mut self) -> Option<u32> {
        let i = self.slots.iter().position(|s| *s == Slot::Missing)?;
        self.slots[i] = Slot::Requested;
        Some(i as u32)
    }

    /// Like [`MetadataAssembler::next_request`], but once every missing piece is asked of
    /// someone, a piece already asked of another peer (not in `asked`, this peer's own
    /// requests) is handed out again: a silent peer then holds nothing up. The first copy
    /// to arrive is kept.
    pub fn next_request_excluding(&mut self, asked: &[u32]) -> Option<u32> {
        if let Some(p) = self.next_request() {
            return Some(p);
        }
        let i = self
            .slots
            .iter()
            .enumerate()
            .position(|(i, s)| *s == Slot::Requested && !asked.contains(&(i as u32)))?;
        Some(i as u32)
    }

    /// The request for `piece` was rejected, timed out, or its peer went away: hand the
    /// piece out again. Does nothing for a stored piece or an index out of range.
    pub fn request_failed(&mut self, piece: u32) {
        if let Some(slot) = self.slots.get_mut(piece as usize)
            && *slot == Slot::Requested
        {
            *slot = Slot::Missing;
        }
    }

    /// Stores piece `piece` sent by the peer `peer` (any key the caller likes, reported
    /// back on a hash mismatch). `total_size` is what the peer's data message declared.
    ///
    /// Data for a piece that was not requested (e.g. a late answer after a timeout) is
    /// accepted: the final hash check protects us either way. A second copy of a stored
    /// piece is dropped.
    pub fn on_data(
        &mut self,
        peer: u64,
        piece: u32,
        total_size: u32,
        data: &[u8],
    ) -> Result<Progress, MetadataError> {
        if u64::from(total_size) != self.total_size {
            return Err(MetadataError::SizeMismatch {
                expected: self.total_size,
                got: u64::from(total_size),
            });
        }
        let pieces = self.piece_count();
        let Some(slot) = self.slots.get_mut(piece as usize) else {
            return Err(MetadataError::PieceOutOfRange { piece, pieces });
        };
        let start = piece as usize * METADATA_PIECE_SIZE;
        let expected = (self.buf.len() - start).min(METADATA_PIECE_SIZE);
        if data.len() != expected {
            return Err(MetadataError::WrongPieceLength {
                piece,
                expected,
                got: data.len(),
            });
        }
        if let Slot::Have(_) = slot {
            return Ok(Progress::Duplicate);
        }
        *slot = Slot::Have(peer);
        self.buf[start..start + expected].copy_from_slice(data);
        self.missing -= 1;
        Ok(if self.missing == 0 {
            Progress::Complete
        } else {
            Progress::Stored {
                missing: self.missing,
            }
        })
    }

    /// Whether every piece is stored.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// The keys of the peers that sent the pieces stored so far, sorted, each once.
    pub fn contributors(&self) -> Vec<u64> {
        let set: BTreeSet<u64> = self
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Have(peer) => Some(*peer),
                _ => None,
            })
            .collect();
        set.into_iter().collect()
    }

    /// Checks the SHA-1 of the complete info dictionary against the info-hash and returns
    /// its bytes. On [`MetadataError::HashMismatch`] the caller bans the listed peers and
    /// starts over with a new assembler.
    pub fn finish(self) -> Result<Vec<u8>, MetadataError> {
        if !self.is_complete() {
            return Err(MetadataError::Incomplete);
        }
        let hash: [u8; 20] = Sha1::digest(&self.buf).into();
        if hash != self.info_hash {
            return Err(MetadataError::HashMismatch {
                peers: self.contributors(),
            });
        }
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sha1(b: &[u8]) -> [u8; 20] {
        Sha1::digest(b).into()
    }

    fn info(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn a_piece_held_by_a_silent_peer_is_handed_out_again() {
        let data = info(40_000); // 3 pieces
        let mut a = MetadataAssembler::new(sha1(&data), data.len() as u64).unwrap();
        // The silent peer asked for everything.
        let silent: Vec<u32> = std::iter::from_fn(|| a.next_request()).collect();
        assert_eq!(silent, [0, 1, 2]);
        // Another peer still gets each piece once, never its own twice.
        let mut mine = Vec::new();
        while let Some(p) = a.next_request_excluding(&mine) {
            mine.push(p);
        }
        assert_eq!(mine, [0, 1, 2]);
        for p in mine {
            let start = p as usize * METADATA_PIECE_SIZE;
            let end = (start + METADATA_PIECE_SIZE).min(data.len());
            a.on_data(2, p, data.len() as u32, &data[start..end])
                .unwrap();
        }
        assert!(a.is_complete());
        assert_eq!(a.finish().unwrap(), data);
    }

    #[test]
    fn decodes_the_bep9_examples() {
        let req = Bytes::from_static(b"d8:msg_typei0e5:piecei0ee");
        assert_eq!(
            MetadataMessage::decode(&req),
            Ok(MetadataMessage::Request { piece: 0 })
        );
        let reject = Bytes::from_static(b"d8:msg_typei2e5:piecei7ee");
        assert_eq!(
            MetadataMessage::decode(&reject),
            Ok(MetadataMessage::Reject { piece: 7 })
        );
        let data = Bytes::from_static(b"d8:msg_typei1e5:piecei1e10:total_sizei34256eexxxx");
        let msg = MetadataMessage::decode(&data).unwrap();
        assert_eq!(
            msg,
            MetadataMessage::Data {
                piece: 1,
                total_size: 34256,
                data: Bytes::from_static(b"xxxx"),
            }
        );
        // Zero-copy: the data is a slice of the payload.
        let MetadataMessage::Data { data: d, .. } = msg else {
            unreachable!()
        };
        assert_eq!(d.as_ptr(), data[data.len() - 4..].as_ptr());
    }

    #[test]
    fn encodes_byte_exact() {
        assert_eq!(
            MetadataMessage::Request { piece: 3 }.encode(),
            b"d8:msg_typei0e5:piecei3ee"
        );
        assert_eq!(
            MetadataMessage::Reject { piece: 0 }.encode(),
            b"d8:msg_typei2e5:piecei0ee"
        );
        assert_eq!(
            MetadataMessage::Data {
                piece: 2,
                total_size: 40000,
                data: Bytes::from_static(b"\x00ab"),
            }
            .encode(),
            b"d8:msg_typei1e5:piecei2e10:total_sizei40000ee\x00ab"
        );
    }

    #[test]
    fn lenient_on_extra_keys_and_unsorted_keys() {
        // libtorrent-style extra keys and unsorted order are fine.
        let p = Bytes::from_static(b"d5:piecei4e8:msg_typei0e3:zzzli1eee");
        assert_eq!(
            MetadataMessage::decode(&p),
            Ok(MetadataMessage::Request { piece: 4 })
        );
        // Trailing bytes after a request are ignored.
        let p = Bytes::from_static(b"d8:msg_typei2e5:piecei1eejunk");
        assert_eq!(
            MetadataMessage::decode(&p),
            Ok(MetadataMessage::Reject { piece: 1 })
        );
    }

    #[test]
    fn refuses_bad_messages() {
        let dec = |b: &'static [u8]| MetadataMessage::decode(&Bytes::from_static(b));
        assert_eq!(
            dec(b"d8:msg_typei3e5:piecei0ee"),
            Err(MetadataError::UnknownMessageType(3))
        );
        assert_eq!(dec(b"le"), Err(MetadataError::NotADictionary));
        assert_eq!(
            dec(b"d5:piecei0ee"),
            Err(MetadataError::MissingKey("msg_type"))
        );
        assert_eq!(
            dec(b"d8:msg_typei0ee"),
            Err(MetadataError::MissingKey("piece"))
        );
        assert_eq!(
            dec(b"d8:msg_typei0e5:piecei-1ee"),
            Err(MetadataError::InvalidValue("piece"))
        );
        assert_eq!(
            dec(b"d8:msg_typei0e5:piecei4294967296ee"),
            Err(MetadataError::InvalidValue("piece"))
        );
        assert_eq!(
            dec(b"d8:msg_type1:05:piecei0ee"),
            Err(MetadataError::InvalidValue("msg_type"))
        );
        assert_eq!(
            dec(b"d8:msg_typei1e5:piecei0eexx"),
            Err(MetadataError::MissingKey("total_size"))
        );
        assert_eq!(
            dec(b"d8:msg_typei1e5:piecei0e10:total_sizei0eexx"),
            Err(MetadataError::InvalidSize(0))
        );
        assert_eq!(
            dec(b"d8:msg_typei1e5:piecei0e10:total_sizei8388609eexx"),
            Err(MetadataError::InvalidSize(8388609))
        );
        assert!(matches!(
            dec(b"d8:msg_typei0e5:piece"),
            Err(MetadataError::Bencode(_))
        ));
        let mut long = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        long.resize(long.len() + METADATA_PIECE_SIZE + 1, b'x');
        assert_eq!(
            MetadataMessage::decode(&Bytes::from(long)),
            Err(MetadataError::DataTooLong(METADATA_PIECE_SIZE + 1))
        );
    }

    #[test]
    fn serves_pieces() {
        let info = info(2 * METADATA_PIECE_SIZE + 5);
        assert_eq!(metadata_piece(&info, 0), Some(&info[..METADATA_PIECE_SIZE]));
        assert_eq!(
            metadata_piece(&info, 2),
            Some(&info[2 * METADATA_PIECE_SIZE..])
        );
        assert_eq!(metadata_piece(&info, 2).map(<[u8]>::len), Some(5));
        assert_eq!(metadata_piece(&info, 3), None);
        assert_eq!(metadata_piece(&info, u32::MAX), None);
        assert_eq!(metadata_piece(&[], 0), None);
        let exact = self::info(METADATA_PIECE_SIZE);
        assert_eq!(metadata_piece(&exact, 1), None);
    }

    #[test]
    fn refuses_bad_sizes() {
        assert_eq!(
            MetadataAssembler::new([0; 20], 0).unwrap_err(),
            MetadataError::InvalidSize(0)
        );
        assert_eq!(
            MetadataAssembler::new([0; 20], MAX_METADATA_SIZE as u64 + 1).unwrap_err(),
            MetadataError::InvalidSize(MAX_METADATA_SIZE as u64 + 1)
        );
        let a = MetadataAssembler::new([0; 20], MAX_METADATA_SIZE as u64).unwrap();
        assert_eq!(a.piece_count(), 512);
    }

    #[test]
    fn assembles_out_of_order_from_several_peers() {
        let info = info(3 * METADATA_PIECE_SIZE + 100);
        let total = info.len() as u32;
        let mut a = MetadataAssembler::new(sha1(&info), info.len() as u64).unwrap();
        assert_eq!(a.piece_count(), 4);
        let reqs: Vec<u32> = std::iter::from_fn(|| a.next_request()).collect();
        assert_eq!(reqs, [0, 1, 2, 3]);
        assert_eq!(a.next_request(), None);
        // Last piece first, and it is short.
        let piece = |i: u32| metadata_piece(&info, i).unwrap();
        assert_eq!(
            a.on_data(9, 3, total, piece(3)),
            Ok(Progress::Stored { missing: 3 })
        );
        assert_eq!(
            a.on_data(7, 1, total, piece(1)),
            Ok(Progress::Stored { missing: 2 })
        );
        assert_eq!(
            a.on_data(9, 0, total, piece(0)),
            Ok(Progress::Stored { missing: 1 })
        );
        assert!(!a.is_complete());
        assert_eq!(a.on_data(7, 2, total, piece(2)), Ok(Progress::Complete));
        assert!(a.is_complete());
        assert_eq!(a.contributors(), [7, 9]);
        assert_eq!(a.finish(), Ok(info));
    }

    #[test]
    fn single_short_piece() {
        let info = b"d4:name3:abce".to_vec();
        let mut a = MetadataAssembler::new(sha1(&info), info.len() as u64).unwrap();
        assert_eq!(a.next_request(), Some(0));
        assert_eq!(
            a.on_data(1, 0, 13, &info[..12]),
            Err(MetadataError::WrongPieceLength {
                piece: 0,
                expected: 13,
                got: 12
            })
        );
        assert_eq!(a.on_data(1, 0, 13, &info), Ok(Progress::Complete));
        assert_eq!(a.finish(), Ok(info));
    }

    #[test]
    fn refuses_wrong_sizes_and_indices() {
        let info = info(METADATA_PIECE_SIZE + 10);
        let total = info.len() as u32;
        let mut a = MetadataAssembler::new(sha1(&info), info.len() as u64).unwrap();
        assert_eq!(
            a.on_data(1, 0, total + 1, &info[..METADATA_PIECE_SIZE]),
            Err(MetadataError::SizeMismatch {
                expected: u64::from(total),
                got: u64::from(total + 1)
            })
        );
        assert_eq!(
            a.on_data(1, 2, total, &info[..10]),
            Err(MetadataError::PieceOutOfRange {
                piece: 2,
                pieces: 2
            })
        );
        assert_eq!(
            a.on_data(1, u32::MAX, total, &[]),
            Err(MetadataError::PieceOutOfRange {
                piece: u32::MAX,
                pieces: 2
            })
        );
        // A non-last piece must be exactly 16 KiB; the last exactly the remainder.
        assert_eq!(
            a.on_data(1, 0, total, &info[..METADATA_PIECE_SIZE - 1]),
            Err(MetadataError::WrongPieceLength {
                piece: 0,
                expected: METADATA_PIECE_SIZE,
                got: METADATA_PIECE_SIZE - 1
            })
        );
        assert_eq!(
            a.on_data(1, 1, total, &info[..METADATA_PIECE_SIZE]),
            Err(MetadataError::WrongPieceLength {
                piece: 1,
                expected: 10,
                got: METADATA_PIECE_SIZE
            })
        );
        // Nothing was stored by the refused pieces.
        assert!(a.contributors().is_empty());
        assert_eq!(a.finish(), Err(MetadataError::Incomplete));
    }

    #[test]
    fn duplicate_data_keeps_the_first_copy() {
        let info = info(METADATA_PIECE_SIZE + 1);
        let total = info.len() as u32;
        let mut a = MetadataAssembler::new(sha1(&info), info.len() as u64).unwrap();
        let p0 = &info[..METADATA_PIECE_SIZE];
        assert_eq!(
            a.on_data(1, 0, total, p0),
            Ok(Progress::Stored { missing: 1 })
        );
        let garbage = vec![0xAA; METADATA_PIECE_SIZE];
        assert_eq!(a.on_data(2, 0, total, &garbage), Ok(Progress::Duplicate));
        assert_eq!(a.contributors(), [1]);
        // The stored piece is not handed out again.
        assert_eq!(a.next_request(), Some(1));
        a.request_failed(0);
        assert_eq!(a.next_request(), None);
        assert_eq!(
            a.on_data(3, 1, total, &info[METADATA_PIECE_SIZE..]),
            Ok(Progress::Complete)
        );
        assert_eq!(
            a.on_data(3, 1, total, &info[METADATA_PIECE_SIZE..]),
            Ok(Progress::Duplicate)
        );
        assert_eq!(a.finish(), Ok(info));
    }

    #[test]
    fn rejected_pieces_are_requested_again() {
        let info = info(3 * METADATA_PIECE_SIZE);
        let mut a = MetadataAssembler::new(sha1(&info), info.len() as u64).unwrap();
        assert_eq!(a.next_request(), Some(0));
        assert_eq!(a.next_request(), Some(1));
        a.request_failed(0);
        a.request_failed(99); // out of range: ignored
        assert_eq!(a.next_request(), Some(0));
        assert_eq!(a.next_request(), Some(2));
        assert_eq!(a.next_request(), None);
        a.request_failed(2);
        a.request_failed(1);
        assert_eq!(a.next_request(), Some(1));
        assert_eq!(a.next_request(), Some(2));
        assert_eq!(a.next_request(), None);
    }

    #[test]
    fn late_data_after_a_timeout_is_accepted() {
        let info = info(10);
        let mut a = MetadataAssembler::new(sha1(&info), 10).unwrap();
        assert_eq!(a.next_request(), Some(0));
        a.request_failed(0);
        assert_eq!(a.on_data(5, 0, 10, &info), Ok(Progress::Complete));
        assert_eq!(a.next_request(), None);
        assert_eq!(a.finish(), Ok(info));
    }

    #[test]
    fn hash_mismatch_blames_the_contributors() {
        let info = info(2 * METADATA_PIECE_SIZE + 1);
        let total = info.len() as u32;
        let mut a = MetadataAssembler::new(sha1(&info), info.len() as u64).unwrap();
        let mut bad = info[METADATA_PIECE_SIZE..2 * METADATA_PIECE_SIZE].to_vec();
        bad[100] ^= 1;
        a.on_data(42, 0, total, &info[..METADATA_PIECE_SIZE])
            .unwrap();
        a.on_data(13, 1, total, &bad).unwrap();
        assert_eq!(
            a.on_data(42, 2, total, &info[2 * METADATA_PIECE_SIZE..]),
            Ok(Progress::Complete)
        );
        assert_eq!(
            a.finish(),
            Err(MetadataError::HashMismatch {
                peers: vec![13, 42]
            })
        );
    }

    fn arb_message() -> impl Strategy<Value = MetadataMessage> {
        prop_oneof![
            any::<u32>().prop_map(|piece| MetadataMessage::Request { piece }),
            any::<u32>().prop_map(|piece| MetadataMessage::Reject { piece }),
            (
                any::<u32>(),
                1..=MAX_METADATA_SIZE as u32,
                proptest::collection::vec(any::<u8>(), 0..=METADATA_PIECE_SIZE)
            )
                .prop_map(|(piece, total_size, data)| MetadataMessage::Data {
                    piece,
                    total_size,
                    data: data.into(),
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn round_trips(msg in arb_message()) {
            let bytes = Bytes::from(msg.encode());
            prop_assert_eq!(MetadataMessage::decode(&bytes), Ok(msg));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let bytes = Bytes::from(bytes);
            if let Ok(msg) = MetadataMessage::decode(&bytes) {
                let again = Bytes::from(msg.encode());
                prop_assert_eq!(MetadataMessage::decode(&again), Ok(msg));
            }
        }

        #[test]
        fn header_prefixed_junk_never_panics(
            piece in any::<i64>(),
            total in any::<i64>(),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut p = format!("d8:msg_typei1e5:piecei{piece}e10:total_sizei{total}ee").into_bytes();
            p.extend_from_slice(&tail);
            let _ = MetadataMessage::decode(&Bytes::from(p));
        }

        #[test]
        fn assembler_never_panics(
            total in 1u64..=(4 * METADATA_PIECE_SIZE as u64),
            events in proptest::collection::vec((0u8..3, 0u32..6, 0usize..=METADATA_PIECE_SIZE + 1), 0..32),
        ) {
            let mut a = MetadataAssembler::new([0; 20], total).unwrap();
            let data = vec![0u8; METADATA_PIECE_SIZE + 1];
            for (kind, piece, len) in events {
                match kind {
                    0 => { let _ = a.next_request(); }
                    1 => a.request_failed(piece),
                    _ => { let _ = a.on_data(1, piece, total as u32, &data[..len]); }
                }
            }
            let complete = a.is_complete();
            let r = a.finish();
            prop_assert_eq!(complete, r != Err(MetadataError::Incomplete));
        }
    }
}
