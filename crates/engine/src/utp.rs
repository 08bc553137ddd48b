//! uTP (BEP 29) on the UDP socket the DHT uses, and the demultiplexer that shares it.
//!
//! One UDP socket is bound at the port of `--listen` (as libtorrent and Transmission do);
//! one task reads every datagram and sorts it by its first byte ([`classify`]): a KRPC
//! message is a bencoded dictionary (`d`), a uTP version 1 packet starts with its type
//! and version (0x01, 0x11, 0x21, 0x31, 0x41), anything else is dropped. KRPC goes to the
//! DHT ([`dht::Dht::start_shared`]), uTP to `librqbit-utp`'s dispatcher through a
//! [`Transport`] whose `recv_from` reads a bounded queue and whose sends go straight to
//! the socket. The queues are bounded: a flood of datagrams is dropped at the queue, it
//! never grows memory or blocks the other protocol.
//!
//! A uTP connection becomes a [`PeerStream`] of kind [`TransportKind::Utp`]: outgoing ones
//! through [`UtpConnector`], incoming ones through [`accept_loop`] into the session's
//! router, like TCP.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use librqbit_utp::{SocketOpts, Transport, UtpSocket};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::transport::{ConnectFuture, Connector, PeerAddr, PeerStream, TransportKind};

/// Datagrams waiting for the uTP dispatcher; more are dropped (uTP retransmits).
pub const UTP_QUEUE: usize = 4096;
/// Datagrams waiting for the DHT; more are dropped (KRPC queries are retried).
pub const DHT_QUEUE: usize = 1024;
/// The largest datagram read (uTP packets fit in an MTU; KRPC messages are below 1.5 KB).
const MAX_DATAGRAM: usize = 2048;
/// uTP streams open at once (each holds buffers and a task).
const MAX_UTP_STREAMS: usize = 1024;

/// Where a datagram on the shared socket belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// A KRPC (DHT) message: a bencoded dictionary.
    Krpc,
    /// A uTP version 1 packet (ST_DATA, ST_FIN, ST_STATE, ST_RESET or ST_SYN) with a full
    /// 20-byte header.
    Utp,
    /// Anything else: dropped.
    Other,
}

/// The length of a uTP header (BEP 29).
pub const UTP_HEADER_LEN: usize = 20;

/// Sort a datagram by its first bytes (the rule libtorrent uses on its shared socket).
pub fn classify(datagram: &[u8]) -> Datagram {
    match datagram.first() {
        Some(b'd') => Datagram::Krpc,
        Some(0x01 | 0x11 | 0x21 | 0x31 | 0x41) if datagram.len() >= UTP_HEADER_LEN => Datagram::Utp,
        _ => Datagram::Other,
    }
}

/// A uTP packet header (BEP 29), as far as the demultiplexer and tests need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtpHeader {
    /// 0 ST_DATA, 1 ST_FIN, 2 ST_STATE, 3 ST_RESET, 4 ST_SYN.
    pub kind: u8,
    pub extension: u8,
    pub connection_id: u16,
    pub timestamp_us: u32,
    pub timestamp_diff_us: u32,
    pub wnd_size: u32,
    pub seq_nr: u16,
    pub ack_nr: u16,
}

impl UtpHeader {
    /// Parse the fixed header of a version 1 packet; `None` for anything else.
    pub fn parse(b: &[u8]) -> Option<UtpHeader> {
        if classify(b) != Datagram::Utp {
            return None;
        }
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(UtpHeader {
            kind: b[0] >> 4,
            extension: b[1],
            connection_id: u16_at(2),
            timestamp_us: u32_at(4),
            timestamp_diff_us: u32_at(8),
            wnd_size: u32_at(12),
            seq_nr: u16_at(16),
            ack_nr: u16_at(18),
        })
    }

    /// The 20 header bytes (no extensions follow unless `extension` says so).
    pub fn encode(&self) -> [u8; UTP_HEADER_LEN] {
        let mut b = [0u8; UTP_HEADER_LEN];
        b[0] = (self.kind << 4) | 1;
        b[1] = self.extension;
        b[2..4].copy_from_slice(&self.connection_id.to_be_bytes());
        b[4..8].copy_from_slice(&self.timestamp_us.to_be_bytes());
        b[8..12].copy_from_slice(&self.timestamp_diff_us.to_be_bytes());
        b[12..16].copy_from_slice(&self.wnd_size.to_be_bytes());
        b[16..18].copy_from_slice(&self.seq_nr.to_be_bytes());
        b[18..20].copy_from_slice(&self.ack_nr.to_be_bytes());
        b
    }
}

/// One received datagram.
pub type Received = (Vec<u8>, SocketAddr);

/// The uTP side of the shared socket: receives what the demultiplexer queued for it,
/// sends on the socket itself.
pub struct ChannelTransport {
    socket: Arc<UdpSocket>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<Received>>,
    local: SocketAddr,
}

impl ChannelTransport {
    pub fn new(socket: Arc<UdpSocket>, inbox: mpsc::Receiver<Received>) -> io::Result<Self> {
        let local = socket.local_addr()?;
        Ok(ChannelTransport {
            socket,
            inbox: tokio::sync::Mutex::new(inbox),
            local,
        })
    }
}

impl librqbit_dualstack_sockets::PollSendToVectored for ChannelTransport {
    fn poll_send_to_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_send_to_vectored(cx, bufs, target)
    }
}

impl Transport for ChannelTransport {
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut inbox = self.inbox.lock().await;
        match inbox.recv().await {
            Some((data, from)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok((n, from))
            }
            // The sender ended (the session is shutting down).
            None => std::future::pending().await,
        }
    }

    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + Sync + 'a {
        self.socket.send_to(buf, target)
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_send_to(cx, buf, target)
    }

    fn bind_addr(&self) -> SocketAddr {
        self.local
    }
}

/// The uTP socket of a session.
pub type SessionUtp = UtpSocket<ChannelTransport, DefaultEnv>;

/// Names the second type parameter of a `UtpSocket`.
pub trait EnvOf {
    type Env;
}

impl<T, E> EnvOf for UtpSocket<T, E> {
    type Env = E;
}

/// `librqbit-utp`'s real clock and random numbers. The crate does not export the type or
/// its trait (so no simulated clock can be plugged in); it is reached through the type of
/// its UDP socket.
pub type DefaultEnv = <librqbit_utp::UtpSocketUdp as EnvOf>::Env;

/// A `librqbit-utp` socket over any [`Transport`] (the session's shared socket, a
/// simulated link in tests), with the real clock.
pub fn utp_socket<T: Transport>(
    transport: T,
    opts: SocketOpts,
) -> librqbit_utp::Result<Arc<UtpSocket<T, DefaultEnv>>> {
    UtpSocket::new_with_opts(transport, DefaultEnv::default(), opts)
}

/// The options our uTP sockets use: bounded streams, Nagle off (requests are small and
/// latency-bound), a 1 MiB receive and up to 2 MiB send buffer per stream (enough for
/// ~10 MB/s at 100 ms round trips).
pub fn socket_opts(cancel: tokio_util::sync::CancellationToken) -> SocketOpts {
    SocketOpts {
        disable_nagle: true,
        max_live_vsocks: NonZeroUsize::new(MAX_UTP_STREAMS),
        vsock_rx_bufsize_bytes: NonZeroUsize::new(1 << 20),
        vsock_tx_bufsize_bytes_max: NonZeroUsize::new(2 << 20),
        remote_inactivity_timeout: Some(Duration::from_secs(120)),
        cancellation_token: cancel,
        ..SocketOpts::default()
    }
}

/// What the shared socket's receive loop feeds.
pub struct Mux {
    pub socket: Arc<UdpSocket>,
    /// KRPC datagrams for the DHT (`None`: the DHT is off, they are dropped).
    pub dht: Option<mpsc::Sender<Received>>,
    /// uTP datagrams (`None`: uTP is off, they are dropped).
    pub utp: Option<mpsc::Sender<Received>>,
}

impl Mux {
    /// Read datagrams until the socket fails for good or both consumers are gone.
    pub async fn run(self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                // An ICMP error reported on the socket concerns one earlier datagram.
                Err(_) => {
                    if self.dht.as_ref().is_none_or(|t| t.is_closed())
                        && self.utp.as_ref().is_none_or(|t| t.is_closed())
                    {
                        return;
                    }
                    continue;
                }
            };
            let data = &buf[..n];
            let to = match classify(data) {
                Datagram::Krpc => &self.dht,
                Datagram::Utp => &self.utp,
                Datagram::Other => continue,
            };
            if let Some(tx) = to {
                match tx.try_send((data.to_vec(), from)) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        if self.dht.as_ref().is_none_or(|t| t.is_closed())
                            && self.utp.as_ref().is_none_or(|t| t.is_closed())
                        {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// A uTP stream as a peer connection.
pub fn peer_stream(stream: librqbit_utp::UtpStream, remote: SocketAddr) -> PeerStream {
    let (read, write) = stream.split();
    PeerStream {
        kind: TransportKind::Utp,
        remote: PeerAddr::Ip(remote),
        encrypted: false,
        read: Box::new(read),
        write: Box::new(write),
    }
}

/// Dials over uTP on the session's shared socket.
pub struct UtpConnector {
    pub socket: Arc<SessionUtp>,
}

impl Connector for UtpConnector {
    fn kind(&self) -> TransportKind {
        TransportKind::Utp
    }

    fn connect(&self, addr: SocketAddr, timeout: Duration) -> ConnectFuture {
        let socket = self.socket.clone();
        // A peer that does not answer two SYNs does not speak uTP (or is gone): give up
        // soon, as libtorrent does (`utp_connect_timeout`), so a TCP-only peer that refused
        // once is not kept from its next TCP dial for the whole handshake timeout.
        let timeout = timeout.min(UTP_CONNECT_TIMEOUT);
        Box::pin(async move {
            let stream = connect(&socket, addr, timeout).await?;
            Ok(peer_stream(stream, addr))
        })
    }
}

/// The longest a uTP dial waits for the SYN-ACK (two SYNs).
const UTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// How long one SYN waits for its answer before another is sent.
const SYN_WAIT: Duration = Duration::from_secs(2);

/// Open a uTP connection to `addr` within `timeout`. `librqbit-utp` does not resend a
/// lost SYN (its TODO), so a SYN without an answer after [`SYN_WAIT`] is sent again (as a
/// new connection; the remote drops a half-open one whose SYN-ACK goes unanswered).
pub async fn connect<T: Transport>(
    socket: &Arc<UtpSocket<T, DefaultEnv>>,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<librqbit_utp::UtpStream> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = io::Error::new(io::ErrorKind::TimedOut, "uTP connect timed out");
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(last);
        }
        let wait = (deadline - now).min(SYN_WAIT);
        match tokio::time::timeout(wait, socket.connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => {
                last = io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string());
                // A refusal (ST_RESET) or a dead dispatcher: do not hammer.
                tokio::time::sleep((deadline - tokio::time::Instant::now()).min(SYN_WAIT / 4))
                    .await;
            }
            Err(_) => {}
        }
    }
}

/// Accept uTP connections until the socket's dispatcher stops, handing each to `incoming`.
pub async fn accept_loop(socket: Arc<SessionUtp>, incoming: impl Fn(PeerStream) + Send) {
    while let Ok(stream) = socket.accept().await {
        let remote = stream.remote_addr();
        incoming(peer_stream(stream, remote));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_by_first_byte() {
        assert_eq!(classify(b"d1:ad2:id20:"), Datagram::Krpc);
        for t in [0x01u8, 0x11, 0x21, 0x31, 0x41] {
            let mut p = [0u8; 20];
            p[0] = t;
            assert_eq!(classify(&p), Datagram::Utp, "{t:#x}");
            assert_eq!(classify(&p[..19]), Datagram::Other, "truncated {t:#x}");
        }
        for b in [0x51u8, 0x02, 0x00, b'e', 0xff] {
            assert_eq!(classify(&[b; 20]), Datagram::Other);
        }
        assert_eq!(classify(&[]), Datagram::Other);
    }

    #[test]
    fn header_round_trip() {
        let h = UtpHeader {
            kind: 4,
            extension: 0,
            connection_id: 0xbeef,
            timestamp_us: 1,
            timestamp_diff_us: 2,
            wnd_size: 1 << 20,
            seq_nr: 7,
            ack_nr: 0,
        };
        assert_eq!(UtpHeader::parse(&h.encode()), Some(h));
        assert_eq!(h.encode()[0], 0x41);
        assert_eq!(UtpHeader::parse(&h.encode()[..19]), None);
    }
}
