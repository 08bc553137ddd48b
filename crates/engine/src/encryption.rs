//! MSE/PE (Message Stream Encryption) over any [`PeerStream`]: the tokio shell around the
//! sans-IO handshake of the `mse` crate, and the stream halves that encrypt and decrypt
//! with RC4 once it is done. It wraps a stream of any transport (TCP now, uTP later):
//! the handshake, routing and connection loop above see an ordinary `PeerStream` with
//! `encrypted` set.
//!
//! Outgoing ([`connect`]): by the session's [`Encryption`] policy, `Require` offers RC4
//! only, `Prefer` offers RC4 and plaintext and dials again in plaintext when the peer
//! refuses the encrypted handshake (as libtorrent's `pe_enabled` does), `Disable` dials
//! in plaintext. Incoming ([`accept`]): the router sniffs the first 20 bytes; anything
//! but the plaintext BEP 3 prefix is taken as MSE, and the torrent is found through
//! `HASH('req2', SKEY) xor HASH('req3', S)`.

use crate::context::NodeContext;
use crate::settings::Encryption;
use crate::transport::{BoxRead, BoxWrite, Connector, PeerStream};
use mse::{CRYPTO_PLAINTEXT, CRYPTO_RC4, Entropy, Established, Handshake, Method, Rc4};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Most plaintext bytes encrypted per write (the rest waits for the next call).
const CHUNK: usize = 64 * 1024;
/// Bytes read per step of a handshake.
const READ: usize = 4096;

/// The `crypto_provide` (outgoing) or accepted (incoming) set of a policy.
fn methods(policy: Encryption) -> u32 {
    match policy {
        Encryption::Require => CRYPTO_RC4,
        Encryption::Prefer | Encryption::Disable => CRYPTO_RC4 | CRYPTO_PLAINTEXT,
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("MSE: {e}"))
}

/// Run `hs` over `stream` until it is done; `first` are bytes already read.
async fn drive(
    stream: &mut PeerStream,
    mut hs: Handshake,
    first: &[u8],
) -> io::Result<Established> {
    let mut buf = vec![0u8; READ];
    let mut input = first.len();
    buf[..input].copy_from_slice(first);
    loop {
        if input > 0 {
            hs.feed(&buf[..input]).map_err(invalid)?;
        }
        let out = hs.take_output();
        if !out.is_empty() {
            stream.write.write_all(&out).await?;
            stream.write.flush().await?;
        }
        if hs.is_done() {
            return hs.finish().ok_or_else(|| invalid("no outcome"));
        }
        input = stream.read.read(&mut buf).await?;
        if input == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "MSE: the peer closed the connection",
            ));
        }
    }
}

/// The stream after the handshake: RC4 both ways, or plaintext (with the payload
/// already received in front).
fn wrap(stream: PeerStream, est: Established) -> PeerStream {
    let PeerStream {
        kind,
        remote,
        read,
        write,
        ..
    } = stream;
    tracing::debug!(peer = %remote, method = ?est.method, "MSE/PE handshake done");
    let write: BoxWrite = match est.encrypt {
        Some(c) => Box::new(MseWrite::new(write, c)),
        None => write,
    };
    PeerStream {
        kind,
        remote,
        encrypted: est.method == Method::Rc4,
        read: Box::new(MseRead {
            inner: read,
            cipher: est.decrypt,
            head: est.initial,
            pos: 0,
        }),
        write,
    }
}

/// The encrypted handshake as the connecting side, within `timeout`.
pub(crate) async fn initiate(
    mut stream: PeerStream,
    info_hash: [u8; 20],
    provide: u32,
    timeout: Duration,
) -> io::Result<PeerStream> {
    let entropy = Entropy::random(mse::MAX_PAD).map_err(io::Error::other)?;
    let hs = Handshake::initiator(info_hash, provide, Vec::new(), entropy);
    let est = tokio::time::timeout(timeout, drive(&mut stream, hs, &[]))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "MSE handshake timed out"))??;
    Ok(wrap(stream, est))
}

/// Most peers remembered as plaintext-only.
const MAX_PLAINTEXT_PEERS: usize = 4096;

/// How long a peer stays marked as plaintext-only for a torrent.
const PLAINTEXT_MARK_TIME: Duration = Duration::from_secs(3600);

/// Peers that refused an encrypted handshake for a torrent: `prefer` dials them in
/// plaintext for that torrent for a while, not twice each time (libtorrent keeps the same
/// mark on its per-torrent peer entry). Keyed by peer *and* torrent, since a peer that
/// requires encryption also closes an encrypted handshake for a torrent it does not have;
/// a timeout marks nothing (it says nothing about what the peer accepts). Bounded; the
/// oldest is forgotten first, and every mark ends after [`PLAINTEXT_MARK_TIME`].
#[derive(Debug, Default)]
pub(crate) struct PlaintextPeers {
    set: HashMap<(SocketAddr, [u8; 20]), Instant>,
    order: VecDeque<(SocketAddr, [u8; 20])>,
}

impl PlaintextPeers {
    fn contains(&self, a: &SocketAddr, info_hash: &[u8; 20], now: Instant) -> bool {
        self.set
            .get(&(*a, *info_hash))
            .is_some_and(|&at| now.saturating_duration_since(at) < PLAINTEXT_MARK_TIME)
    }

    fn insert(&mut self, a: SocketAddr, info_hash: [u8; 20], now: Instant) {
        let key = (a, info_hash);
        if self.set.insert(key, now).is_none() {
            self.order.push_back(key);
            while self.order.len() > MAX_PLAINTEXT_PEERS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// Whether a failed encrypted handshake says the peer refuses encryption (it closed,
/// reset, or answered in plaintext), rather than that it was slow.
fn refused(e: &io::Error) -> bool {
    e.kind() != io::ErrorKind::TimedOut
}

/// Dial `addr` for `info_hash` as the session's policy says: the stream is ready for the
/// BEP 3 handshake (encrypted underneath or not).
pub(crate) async fn connect(
    ctx: &NodeContext,
    connector: &Arc<dyn Connector>,
    addr: SocketAddr,
    info_hash: [u8; 20],
    timeout: Duration,
) -> io::Result<PeerStream> {
    let plaintext_peers = || {
        ctx.plaintext_peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    };
    let policy = ctx.settings().encryption;
    let stream = connector.connect(addr, timeout).await?;
    match policy {
        Encryption::Disable => Ok(stream),
        Encryption::Require => initiate(stream, info_hash, CRYPTO_RC4, timeout).await,
        Encryption::Prefer if plaintext_peers().contains(&addr, &info_hash, Instant::now()) => {
            Ok(stream)
        }
        Encryption::Prefer => match initiate(stream, info_hash, methods(policy), timeout).await {
            Ok(s) => Ok(s),
            Err(e) => {
                tracing::debug!(peer = %addr, error = %e, "encrypted handshake failed; dialling again in plaintext");
                let s = connector.connect(addr, timeout).await?;
                if refused(&e) {
                    plaintext_peers().insert(addr, info_hash, Instant::now());
                }
                Ok(s)
            }
        },
    }
}

/// Whether the first 20 bytes of an incoming stream are the plaintext BEP 3 prefix.
pub(crate) fn is_plaintext(first: &[u8; 20]) -> bool {
    first[0] == 19 && &first[1..] == b"BitTorrent protocol"
}

/// An incoming stream whose first 20 bytes (`first`) are not the plaintext prefix: the
/// encrypted handshake as the receiving side. `lookup` finds our torrents by
/// `HASH('req2', info-hash)`. The caller bounds the time.
pub(crate) async fn accept(
    mut stream: PeerStream,
    first: &[u8; 20],
    policy: Encryption,
    lookup: mse::SkeyLookup,
) -> io::Result<(PeerStream, [u8; 20])> {
    let entropy = Entropy::random(mse::MAX_PAD).map_err(io::Error::other)?;
    let hs = Handshake::receiver(methods(policy), lookup, entropy);
    let est = drive(&mut stream, hs, first).await?;
    let skey = est.skey;
    Ok((wrap(stream, est), skey))
}

/// The read half after the handshake: `head` (payload already received, decrypted)
/// first, then the inner stream, decrypted with `cipher` when there is one.
struct MseRead {
    inner: BoxRead,
    cipher: Option<Rc4>,
    head: Vec<u8>,
    pos: usize,
}

impl AsyncRead for MseRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.pos);
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Some(c) = this.cipher.as_mut() {
            c.apply(&mut buf.filled_mut()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

/// The write half with RC4. A write reports only bytes the inner stream took, so
/// nothing hides in a buffer here: bytes encrypted but not yet taken are kept with
/// their plaintext, and sent when the caller writes the same bytes again (as every
/// caller retrying a write does). A caller that writes something else instead rewinds
/// the key stream to what was really sent.
struct MseWrite {
    inner: BoxWrite,
    /// The key stream after all of `enc`.
    cipher: Rc4,
    /// The key stream at the start of `enc`.
    base: Rc4,
    plain: Vec<u8>,
    enc: Vec<u8>,
    /// Bytes of `enc` already written.
    sent: usize,
    /// Reused for gathering vectored writes.
    gather: Vec<u8>,
}

impl MseWrite {
    fn new(inner: BoxWrite, cipher: Rc4) -> MseWrite {
        MseWrite {
            inner,
            base: cipher.clone(),
            cipher,
            plain: Vec::new(),
            enc: Vec::new(),
            sent: 0,
            gather: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.plain.clear();
        self.enc.clear();
        self.sent = 0;
    }

    fn write_some(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.sent < self.enc.len() {
            let n = buf.len().min(self.enc.len() - self.sent);
            if buf[..n] == self.plain[self.sent..self.sent + n] {
                let k = ready!(
                    Pin::new(&mut self.inner).poll_write(cx, &self.enc[self.sent..self.sent + n])
                )?;
                self.sent += k;
                if self.sent == self.enc.len() {
                    self.clear();
                }
                return Poll::Ready(Ok(k));
            }
            // Something else this time: rewind to what was really sent.
            let mut c = self.base.clone();
            c.skip(self.sent);
            self.cipher = c;
            self.clear();
        }
        let n = buf.len().min(CHUNK);
        self.base = self.cipher.clone();
        self.clear();
        self.plain.extend_from_slice(&buf[..n]);
        self.enc.extend_from_slice(&buf[..n]);
        self.cipher.apply(&mut self.enc);
        let k = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.enc))?;
        self.sent = k;
        if self.sent == self.enc.len() {
            self.clear();
        }
        Poll::Ready(Ok(k))
    }
}

impl AsyncWrite for MseWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_some(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut gather = std::mem::take(&mut this.gather);
        gather.clear();
        for b in bufs {
            let room = CHUNK - gather.len();
            gather.extend_from_slice(&b[..b.len().min(room)]);
            if gather.len() == CHUNK {
                break;
            }
        }
        let r = this.write_some(cx, &gather);
        this.gather = gather;
        r
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{PeerAddr, TransportKind};

    const IH: [u8; 20] = [0x42; 20];

    fn pair(buffer: usize) -> (PeerStream, PeerStream) {
        let (a, b) = tokio::io::duplex(buffer);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let addr = PeerAddr::Ip("127.0.0.1:1".parse().unwrap());
        (
            PeerStream::from_halves(TransportKind::Tcp, addr, ar, aw),
            PeerStream::from_halves(TransportKind::Tcp, addr, br, bw),
        )
    }

    fn lookup() -> mse::SkeyLookup {
        let k = mse::req2_hash(&IH);
        Box::new(move |r| (*r == k).then_some(IH))
    }

    /// Both ends over a small pipe (so writes are partial and wait), then `n` bytes each
    /// way, written in vectored batches.
    async fn roundtrip(provide: u32, policy: Encryption, n: usize) -> (bool, bool) {
        let (a, mut b) = pair(1000);
        let server = tokio::spawn(async move {
            let mut first = [0u8; 20];
            b.read.read_exact(&mut first).await.unwrap();
            assert!(!is_plaintext(&first));
            let (mut s, key) = accept(b, &first, policy, lookup()).await.unwrap();
            assert_eq!(key, IH);
            let mut got = vec![0u8; n];
            s.read.read_exact(&mut got).await.unwrap();
            s.write.write_all(&got).await.unwrap();
            s.write.flush().await.unwrap();
            s.encrypted
        });
        let mut s = initiate(a, IH, provide, Duration::from_secs(10))
            .await
            .unwrap();
        let data: Vec<u8> = (0..n).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut bufs: Vec<bytes::Bytes> = data
            .chunks(16 * 1024 + 13)
            .map(bytes::Bytes::copy_from_slice)
            .collect();
        let writer = async {
            crate::peer::write_all_vectored(&mut s.write, &mut bufs)
                .await
                .unwrap();
        };
        let mut back = vec![0u8; n];
        let reader = s.read.read_exact(&mut back);
        let (_, r) = tokio::join!(writer, reader);
        r.unwrap();
        assert!(back == data, "bytes differ after the round trip");
        (s.encrypted, server.await.unwrap())
    }

    #[test]
    fn plaintext_peers_are_bounded_oldest_out() {
        let mut p = PlaintextPeers::default();
        let now = Instant::now();
        let h = [7u8; 20];
        let a = |i: u32| SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 6881));
        for i in 0..(MAX_PLAINTEXT_PEERS as u32 + 10) {
            p.insert(a(i), h, now);
            p.insert(a(i), h, now);
        }
        assert_eq!(p.set.len(), MAX_PLAINTEXT_PEERS);
        assert_eq!(p.order.len(), MAX_PLAINTEXT_PEERS);
        assert!(!p.contains(&a(0), &h, now) && !p.contains(&a(9), &h, now));
        assert!(p.contains(&a(10), &h, now));
        assert!(p.contains(&a(MAX_PLAINTEXT_PEERS as u32 + 9), &h, now));
    }

    #[test]
    fn a_plaintext_mark_is_per_torrent_and_ends() {
        let mut p = PlaintextPeers::default();
        let now = Instant::now();
        let a = SocketAddr::from(([10, 0, 0, 1], 6881));
        p.insert(a, [1; 20], now);
        assert!(p.contains(&a, &[1; 20], now));
        assert!(
            !p.contains(&a, &[2; 20], now),
            "another torrent is not marked"
        );
        assert!(!p.contains(&a, &[1; 20], now + PLAINTEXT_MARK_TIME));
        assert!(!refused(&io::Error::new(io::ErrorKind::TimedOut, "slow")));
        assert!(refused(&io::Error::from(io::ErrorKind::UnexpectedEof)));
        assert!(refused(&io::Error::from(io::ErrorKind::ConnectionReset)));
    }

    #[tokio::test]
    async fn rc4_both_ways_over_a_small_pipe() {
        assert_eq!(
            roundtrip(CRYPTO_RC4, Encryption::Require, 300_000).await,
            (true, true)
        );
    }

    #[tokio::test]
    async fn plaintext_selected_after_the_handshake() {
        assert_eq!(
            roundtrip(CRYPTO_PLAINTEXT, Encryption::Prefer, 100_000).await,
            (false, false)
        );
    }

    #[tokio::test]
    async fn require_refuses_a_plaintext_only_offer() {
        let (a, mut b) = pair(4096);
        let server = tokio::spawn(async move {
            let mut first = [0u8; 20];
            b.read.read_exact(&mut first).await.unwrap();
            accept(b, &first, Encryption::Require, lookup()).await.err()
        });
        assert!(
            initiate(a, IH, CRYPTO_PLAINTEXT, Duration::from_secs(5))
                .await
                .is_err()
        );
        assert!(server.await.unwrap().is_some());
    }

    /// A writer that changes its mind after a partial write gets the key stream
    /// rewound: what arrives is exactly what was reported written.
    #[tokio::test]
    async fn a_different_retry_rewinds_the_key_stream() {
        let (tx, mut rx) = tokio::io::duplex(10);
        let key = [9u8; 20];
        let mut w = MseWrite::new(Box::new(tx), Rc4::mse(&key));
        let first = w.write(b"abcdefghijklmnopqrstuvwxyz").await.unwrap();
        assert_eq!(first, 10);
        // Drain so the next write has room, then write something else.
        let mut got = vec![0u8; 10];
        rx.read_exact(&mut got).await.unwrap();
        w.write_all(b"0123456789").await.unwrap();
        let mut more = vec![0u8; 10];
        rx.read_exact(&mut more).await.unwrap();
        got.extend_from_slice(&more);
        Rc4::mse(&key).apply(&mut got);
        assert_eq!(got, b"abcdefghij0123456789");
    }
}
