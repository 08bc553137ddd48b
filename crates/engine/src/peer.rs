//! What torrents and metadata fetches share about a peer connection: the BEP 3 handshake
//! exchange over any [`PeerStream`], the ids we give our extensions (BEP 10), vectored
//! writes, and the [`Handoff`] of a live connection from a metadata fetch to its torrent.

use crate::transport::PeerStream;
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wire::{Decoder, Handshake, Message};

/// The ids under which we receive extension messages (BEP 10; our choice).
pub(crate) const UT_PEX_ID: u8 = 1;
pub(crate) const UT_METADATA_ID: u8 = 3;

/// Most messages a connection may send while we fetch metadata and cannot use them yet
/// (haves, mostly); they are replayed once the torrent knows its pieces. A peer that sends
/// more is dropped.
pub(crate) const MAX_REPLAYED: usize = 100_000;

/// Our client name in extended handshakes.
pub(crate) const CLIENT_NAME: &str = concat!("bitpeer ", env!("CARGO_PKG_VERSION"));

/// Send `ours` and read the peer's handshake (BEP 3), which must name the same info-hash
/// and not be our own (a connection to ourselves). On an incoming connection the router
/// has already read the first 48 bytes (`prefix`), and we answer after the peer id.
pub(crate) async fn exchange_handshakes(
    stream: &mut PeerStream,
    ours: &Handshake,
    prefix: Option<[u8; 48]>,
) -> io::Result<Handshake> {
    let mut theirs = [0u8; 68];
    if let Some(prefix) = prefix {
        theirs[..48].copy_from_slice(&prefix);
        stream.read.read_exact(&mut theirs[48..]).await?;
        stream.write.write_all(&ours.encode()).await?;
    } else {
        stream.write.write_all(&ours.encode()).await?;
        stream.read.read_exact(&mut theirs).await?;
    }
    stream.write.flush().await?;
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let hs = Handshake::parse(&theirs)
        .map_err(|e| bad(&e.to_string()))?
        .ok_or_else(|| bad("short handshake"))?;
    if hs.info_hash != ours.info_hash {
        return Err(bad("wrong info-hash"));
    }
    if hs.peer_id == ours.peer_id {
        return Err(bad("connected to ourselves"));
    }
    Ok(hs)
}

/// Two connections with the same peer (same peer id): which one both sides keep. Each
/// side dials the other when both learn of each other at once (from a tracker, PEX), and
/// two connections between the same pair would carry every HAVE twice and split the
/// requests. Both sides keep the connection dialled by the one with the lower peer id, so
/// they agree without a word. Returns whether the `new` connection replaces the existing
/// one (otherwise the new one is refused); two connections in the same direction keep the
/// older.
pub(crate) fn duplicate_keeps_new(
    ours: &[u8; 20],
    theirs: &[u8; 20],
    existing_incoming: bool,
    new_incoming: bool,
) -> bool {
    let keep_incoming = ours > theirs;
    new_incoming == keep_incoming && existing_incoming != keep_incoming
}

/// Write every buffer of `bufs`, in order, with as few vectored writes as the stream
/// allows; `bufs` is empty afterwards.
pub(crate) async fn write_all_vectored<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    bufs: &mut Vec<Bytes>,
) -> io::Result<()> {
    let mut first = 0;
    while first < bufs.len() {
        let mut n = {
            let slices: Vec<io::IoSlice<'_>> =
                bufs[first..].iter().map(|b| io::IoSlice::new(b)).collect();
            w.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 && first < bufs.len() {
            let b = &mut bufs[first];
            if n >= b.len() {
                n -= b.len();
                first += 1;
            } else {
                b.advance(n);
                n = 0;
            }
        }
    }
    bufs.clear();
    Ok(())
}

/// A live connection that fetched metadata, handed to the torrent once the info
/// dictionary is verified: the torrent carries on with it (no new connection, no second
/// handshake).
pub(crate) struct Handoff {
    pub(crate) stream: PeerStream,
    /// The decoder, with any partial skip state, and the bytes read but not decoded.
    pub(crate) decoder: Decoder,
    pub(crate) buf: BytesMut,
    /// The handshakes exchanged: they decide what the connection may speak (BEP 6, 10).
    pub(crate) ours: Handshake,
    pub(crate) theirs: Handshake,
    /// Messages from the peer that only make sense once the piece count is known
    /// (bitfield, haves, choke and interest changes, its extended handshake), in order.
    pub(crate) replay: Vec<Message>,
    /// Whether we sent our availability (a have-none, with the fast extension).
    pub(crate) sent_availability: bool,
    /// It dialled us.
    pub(crate) incoming: bool,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("remote", &self.stream.remote)
            .field("replay", &self.replay.len())
            .field("incoming", &self.incoming)
            .finish_non_exhaustive()
    }
}

/// Whether a message received before the metadata is kept for replay.
pub(crate) fn kept_for_replay(msg: &Message) -> bool {
    matches!(
        msg,
        Message::Bitfield(_)
            | Message::Have { .. }
            | Message::HaveAll
            | Message::HaveNone
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::AllowedFast { .. }
            | Message::Extended { id: 0, .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{PeerAddr, TransportKind};

    #[test]
    fn both_sides_keep_the_same_duplicate() {
        let (lo, hi) = ([1u8; 20], [2u8; 20]);
        // The connection `lo` dialled is outgoing for `lo` and incoming for `hi`. Whatever
        // order each side sees the two connections in, both keep that one.
        for lo_first_sees_own in [true, false] {
            // `lo`: existing is its own dial (outgoing) or the other's (incoming).
            let lo_keeps_new = duplicate_keeps_new(&lo, &hi, !lo_first_sees_own, lo_first_sees_own);
            let lo_keeps_own = lo_first_sees_own != lo_keeps_new;
            for hi_first_sees_lo_dial in [true, false] {
                // For `hi` the connection `lo` dialled is the incoming one.
                let hi_keeps_new =
                    duplicate_keeps_new(&hi, &lo, hi_first_sees_lo_dial, !hi_first_sees_lo_dial);
                // `hi` keeps the connection `lo` dialled (incoming for `hi`)?
                let hi_keeps_lo_dial = hi_first_sees_lo_dial != hi_keeps_new;
                assert!(lo_keeps_own);
                assert!(hi_keeps_lo_dial);
            }
        }
        // Two connections in the same direction: the older stays.
        assert!(!duplicate_keeps_new(&lo, &hi, true, true));
        assert!(!duplicate_keeps_new(&lo, &hi, false, false));
        assert!(!duplicate_keeps_new(&hi, &lo, true, true));
    }

    fn pair() -> (PeerStream, PeerStream) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        (
            PeerStream::from_halves(TransportKind::Tcp, PeerAddr::Ip(addr), ar, aw),
            PeerStream::from_halves(TransportKind::Tcp, PeerAddr::Ip(addr), br, bw),
        )
    }

    #[tokio::test]
    async fn handshakes_over_any_stream() {
        let (mut a, mut b) = pair();
        let ha = Handshake::new([7; 20], [1; 20]);
        let hb = Handshake::new([7; 20], [2; 20]);
        let (ra, rb) = tokio::join!(
            exchange_handshakes(&mut a, &ha, None),
            exchange_handshakes(&mut b, &hb, None)
        );
        assert_eq!(ra.unwrap().peer_id, [2; 20]);
        assert_eq!(rb.unwrap().peer_id, [1; 20]);
    }

    #[tokio::test]
    async fn wrong_info_hash_and_self_connections_are_refused() {
        let (mut a, mut b) = pair();
        let ha = Handshake::new([7; 20], [1; 20]);
        let hb = Handshake::new([8; 20], [2; 20]);
        let (ra, _) = tokio::join!(
            exchange_handshakes(&mut a, &ha, None),
            exchange_handshakes(&mut b, &hb, None)
        );
        assert!(ra.is_err());
        let (mut a, mut b) = pair();
        let same = Handshake::new([7; 20], [1; 20]);
        let (ra, _) = tokio::join!(
            exchange_handshakes(&mut a, &same, None),
            exchange_handshakes(&mut b, &same, None)
        );
        assert!(ra.is_err());
    }

    #[tokio::test]
    async fn vectored_writes_keep_order() {
        let (mut a, mut b) = pair();
        let mut bufs: Vec<Bytes> = (0..100u8).map(|i| Bytes::from(vec![i; 1000])).collect();
        let writer = async {
            write_all_vectored(&mut a.write, &mut bufs).await.unwrap();
            a.write.shutdown().await.unwrap();
        };
        let reader = async {
            let mut all = Vec::new();
            b.read.read_to_end(&mut all).await.unwrap();
            all
        };
        let ((), all) = tokio::join!(writer, reader);
        assert_eq!(all.len(), 100_000);
        assert!(
            all.chunks(1000)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&x| x == i as u8))
        );
    }
}
