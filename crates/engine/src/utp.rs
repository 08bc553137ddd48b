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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use librqbit_utp::{CongestionConfig, CongestionControllerKind, SocketOpts, Transport, UtpSocket};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::transport::{ConnectFuture, Connector, PeerAddr, PeerStream, TransportKind};

/// Datagrams waiting for the uTP dispatcher; more are dropped (uTP retransmits).
pub const UTP_QUEUE: usize = 4096;
/// Datagrams waiting for the DHT; more are dropped (KRPC queries are retried).
pub const DHT_QUEUE: usize = 1024;
/// The largest datagram taken: librqbit-utp's dispatcher reads into 16 KiB; KRPC messages
/// are below 1.5 KB. A longer one is dropped (not cut short: a cut uTP packet would look
/// like a whole one with less payload).
pub const MAX_DATAGRAM: usize = 16384;
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

/// The kernel buffers of a socket that carries uTP: one burst of a stream's send window
/// (1-2 MiB) must fit in the receiver's queue, or most of it is dropped there and the
/// sender backs off. The kernel caps the request at `net.core.rmem_max`/`wmem_max`
/// (often 4 MiB, as here; 208 KiB by default holds only a dozen 16 KiB datagrams).
pub fn size_buffers(socket: &impl std::os::fd::AsFd) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(UDP_BUFFER);
    let _ = s.set_send_buffer_size(UDP_BUFFER);
}

/// The kernel buffer size asked for on the shared UDP socket.
const UDP_BUFFER: usize = 4 << 20;

/// The uTP side of the shared socket: receives what the demultiplexer queued for it,
/// sends on the socket itself.
pub struct ChannelTransport {
    socket: Arc<UdpSocket>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<Received>>,
    local: SocketAddr,
    large: Arc<LargeDatagrams>,
}

impl ChannelTransport {
    pub fn new(socket: Arc<UdpSocket>, inbox: mpsc::Receiver<Received>) -> io::Result<Self> {
        let local = socket.local_addr()?;
        Ok(ChannelTransport {
            socket,
            inbox: tokio::sync::Mutex::new(inbox),
            local,
            large: Arc::default(),
        })
    }

    /// What this transport knows of the peers that take large datagrams; the receive
    /// loop ([`Mux`]) feeds it.
    pub fn large_datagrams(&self) -> Arc<LargeDatagrams> {
        self.large.clone()
    }
}

impl librqbit_dualstack_sockets::PollSendToVectored for ChannelTransport {
    fn poll_send_to_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.first().and_then(|b| b.first())
            && LargeDatagrams::may_mark(*first)
        {
            let packet: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(marked) = self.large.on_sending(&packet, target) {
                return self
                    .socket
                    .poll_send_to(cx, &marked, target)
                    .map_ok(|_| packet.len());
            }
        }
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
        let marked = self.large.on_sending(buf, target);
        async move {
            match marked {
                Some(m) => self.socket.send_to(&m, target).await.map(|_| buf.len()),
                None => self.socket.send_to(buf, target).await,
            }
        }
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        match self.large.on_sending(buf, target) {
            Some(m) => self
                .socket
                .poll_send_to(cx, &m, target)
                .map_ok(|_| buf.len()),
            None => self.socket.poll_send_to(cx, buf, target),
        }
    }

    fn bind_addr(&self) -> SocketAddr {
        self.local
    }

    fn known_link_mtu(&self, remote: SocketAddr) -> Option<u16> {
        self.large.known_link_mtu(remote)
    }
}

/// The uTP header extension that carries our mark: type 2, uTorrent's 8 "extension
/// bits" (libtorrent and librqbit-utp skip it; libutp, Transmission's uTP, does not answer
/// a SYN with an extension type it does not know, and was seen not to answer this one
/// either). Our mark is [`MARK`] and then "I take datagrams up to N bytes" (2 bytes,
/// big-endian), then zeros. It rides on our SYNs to loopback peers (the only ones sent
/// large datagrams) until one goes unanswered (the next SYN to that peer goes without
/// it), and on the SYN-ACK (the `ST_STATE` acknowledging a SYN) answering a SYN that
/// carried it.
pub const EXT_BITS: u8 = 2;
/// The first bytes of our mark in the extension bits.
const MARK: &[u8; 2] = b"bp";

/// Below this a peer's announced size is not worth using.
const MIN_LARGE_DATAGRAM: usize = 4096;
/// Peers (and SYNs to answer) remembered; when full, the table starts again.
const MAX_LARGE_PEERS: usize = 4096;
/// The longest extension chain read before giving up (BEP 29 knows two extensions).
const MAX_EXTENSIONS: usize = 8;

const ST_STATE: u8 = 2;
const ST_SYN: u8 = 4;

/// Large datagrams to same-host peers. The peers that said (with our mark, see [`EXT_BITS`]) that
/// they take datagrams above the 1500-byte Ethernet MTU, by address: a uTP stream to such
/// a peer over loopback (MTU 64 KiB) sends segments of up to [`MAX_DATAGRAM`] bytes, a
/// tenth of the packets (and of the per-packet CPU) of 1452-byte ones. Anyone else gets
/// librqbit-utp's MTU probing up to 1500 bytes: libtorrent reads datagrams into 1500
/// bytes and would take a longer one cut short as a whole packet.
#[derive(Default)]
pub struct LargeDatagrams {
    state: Mutex<LargeState>,
}

#[derive(Default)]
struct LargeState {
    /// Peer → the largest datagram it takes.
    peers: HashMap<SocketAddr, u16>,
    /// Peer → the sequence number of its marked SYN (our SYN-ACK carries the mark too).
    syns: HashMap<SocketAddr, u16>,
    /// Peers we sent a marked SYN and have heard nothing from since.
    unanswered: HashSet<SocketAddr>,
    /// Peers that did not answer a marked SYN (libutp, Transmission's uTP, drops it): our
    /// SYNs to them go without the mark.
    no_mark: HashSet<SocketAddr>,
}

impl LargeDatagrams {
    /// Whether a packet starting with `first` may need the mark (a SYN or an `ST_STATE`).
    fn may_mark(first: u8) -> bool {
        first == (ST_SYN << 4) | 1 || first == (ST_STATE << 4) | 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LargeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Learn from a received uTP datagram (the receive loop calls this before the uTP
    /// dispatcher sees it, so a stream created for this SYN or SYN-ACK already knows).
    pub fn on_received(&self, datagram: &[u8], from: SocketAddr) {
        let Some(h) = UtpHeader::parse(datagram) else {
            return;
        };
        if h.kind == ST_STATE {
            self.lock().unanswered.remove(&from);
        }
        let size = find_extension(datagram, EXT_BITS)
            .filter(|d| d.len() == 8 && d.starts_with(MARK))
            .map(|d| u16::from_be_bytes([d[2], d[3]]))
            .filter(|&n| usize::from(n) >= MIN_LARGE_DATAGRAM);
        match (h.kind, size) {
            (ST_SYN, Some(n)) => {
                let mut s = self.lock();
                s.remember(from, n);
                if s.syns.len() >= MAX_LARGE_PEERS {
                    s.syns.clear();
                }
                s.syns.insert(from, h.seq_nr);
            }
            // A SYN without the mark: whoever is at that address now does not take them.
            (ST_SYN, None) => {
                let mut s = self.lock();
                s.peers.remove(&from);
                s.syns.remove(&from);
            }
            (ST_STATE, Some(n)) => self.lock().remember(from, n),
            _ => {}
        }
    }

    /// The packet to send instead of `packet` (the same with our mark), if it is our SYN,
    /// or the SYN-ACK to a marked SYN.
    pub fn on_sending(&self, packet: &[u8], to: SocketAddr) -> Option<Vec<u8>> {
        if !packet.first().is_some_and(|&b| Self::may_mark(b)) {
            return None;
        }
        let h = UtpHeader::parse(packet)?;
        let mut s = self.lock();
        match h.kind {
            // Only loopback peers are ever sent large datagrams: no mark for anyone else.
            ST_SYN if !to.ip().is_loopback() || s.no_mark.contains(&to) => return None,
            ST_SYN => {
                // What was known of this address is stale: its SYN-ACK tells again.
                s.peers.remove(&to);
                // A second SYN while the marked one is unanswered: this peer may drop
                // SYNs with extension bits it does not expect; try without, from now on.
                if s.unanswered.remove(&to) {
                    bounded_insert(&mut s.no_mark, to);
                    return None;
                }
                bounded_insert(&mut s.unanswered, to);
            }
            ST_STATE if s.syns.get(&to) == Some(&h.ack_nr) => {}
            _ => return None,
        }
        drop(s);
        Some(with_extension(packet, EXT_BITS, &mark(MAX_DATAGRAM as u16)))
    }

    /// The link MTU for a stream to `remote`: a loopback peer that takes large datagrams
    /// gets them (up to our own limit, with the IP and UDP headers); `None` otherwise.
    pub fn known_link_mtu(&self, remote: SocketAddr) -> Option<u16> {
        if !remote.ip().is_loopback() {
            return None;
        }
        let size = usize::from(*self.lock().peers.get(&remote)?).min(MAX_DATAGRAM);
        let ip_header = if remote.is_ipv4() { 20 } else { 40 };
        u16::try_from(size + ip_header + 8).ok()
    }
}

/// Inserts into a set that starts again when it holds [`MAX_LARGE_PEERS`].
fn bounded_insert(set: &mut HashSet<SocketAddr>, peer: SocketAddr) {
    if set.len() >= MAX_LARGE_PEERS {
        set.clear();
    }
    set.insert(peer);
}

impl LargeState {
    fn remember(&mut self, peer: SocketAddr, size: u16) {
        if self.peers.len() >= MAX_LARGE_PEERS && !self.peers.contains_key(&peer) {
            self.peers.clear();
        }
        self.peers.insert(peer, size);
    }
}

/// Our mark in the extension bits: we take datagrams up to `size` bytes.
pub fn mark(size: u16) -> [u8; 8] {
    let mut m = [0u8; 8];
    m[..2].copy_from_slice(MARK);
    m[2..4].copy_from_slice(&size.to_be_bytes());
    m
}

/// The data of extension `wanted` in a uTP packet's extension chain, if it is there and
/// the chain is well formed (bounded: at most [`MAX_EXTENSIONS`] links, never past the
/// datagram).
pub fn find_extension(packet: &[u8], wanted: u8) -> Option<&[u8]> {
    if classify(packet) != Datagram::Utp {
        return None;
    }
    let mut kind = packet[1];
    let mut at = UTP_HEADER_LEN;
    for _ in 0..MAX_EXTENSIONS {
        if kind == 0 {
            return None;
        }
        let next = *packet.get(at)?;
        let len = usize::from(*packet.get(at + 1)?);
        let data = packet.get(at + 2..at + 2 + len)?;
        if kind == wanted {
            return Some(data);
        }
        kind = next;
        at += 2 + len;
    }
    None
}

/// `packet` with extension `kind` (`data`) put first in its extension chain.
pub fn with_extension(packet: &[u8], kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 2 + data.len());
    out.extend_from_slice(&packet[..UTP_HEADER_LEN]);
    out[1] = kind;
    out.push(packet[1]);
    out.push(data.len() as u8);
    out.extend_from_slice(data);
    out.extend_from_slice(&packet[UTP_HEADER_LEN..]);
    out
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
/// ~10 MB/s at 100 ms round trips), and LEDBAT congestion control (BEP 29: back off when
/// our traffic adds more than 100 ms of queuing delay, so a seeding node does not fill
/// its uplink's buffers; the vendored `librqbit-utp` change, see VENDORED.md).
pub fn socket_opts(cancel: tokio_util::sync::CancellationToken) -> SocketOpts {
    SocketOpts {
        disable_nagle: true,
        congestion: CongestionConfig {
            kind: CongestionControllerKind::Ledbat,
            tracing: false,
        },
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
    /// uTP datagrams (`None`: uTP is off, they are dropped), and what the uTP transport
    /// learns from them.
    pub utp: Option<(mpsc::Sender<Received>, Arc<LargeDatagrams>)>,
}

impl Mux {
    /// Read datagrams until the socket fails for good or both consumers are gone.
    pub async fn run(self) {
        // One byte more than is taken, to tell a datagram that was too long.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let all_closed = || {
            self.dht.as_ref().is_none_or(|t| t.is_closed())
                && self.utp.as_ref().is_none_or(|(t, _)| t.is_closed())
        };
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                // An ICMP error reported on the socket concerns one earlier datagram.
                Err(_) => {
                    if all_closed() {
                        return;
                    }
                    continue;
                }
            };
            if n > MAX_DATAGRAM {
                continue;
            }
            let data = &buf[..n];
            let to = match classify(data) {
                Datagram::Krpc => self.dht.as_ref(),
                Datagram::Utp => self.utp.as_ref().map(|(tx, large)| {
                    large.on_received(data, from);
                    tx
                }),
                Datagram::Other => continue,
            };
            if let Some(tx) = to {
                match tx.try_send((data.to_vec(), from)) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        if all_closed() {
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
    /// uTP on the socket of the other address family, when the node listens on both:
    /// a peer's address picks the socket of its family.
    pub socket6: Option<Arc<SessionUtp>>,
}

impl Connector for UtpConnector {
    fn kind(&self) -> TransportKind {
        TransportKind::Utp
    }

    fn connect(&self, addr: SocketAddr, timeout: Duration) -> ConnectFuture {
        let socket = match &self.socket6 {
            Some(s6) if addr.is_ipv4() != self.socket.bind_addr().is_ipv4() => s6.clone(),
            _ => self.socket.clone(),
        };
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

    fn packet(kind: u8, seq_nr: u16, ack_nr: u16) -> Vec<u8> {
        UtpHeader {
            kind,
            extension: 0,
            connection_id: 7,
            timestamp_us: 0,
            timestamp_diff_us: 0,
            wnd_size: 1 << 20,
            seq_nr,
            ack_nr,
        }
        .encode()
        .to_vec()
    }

    #[test]
    fn extension_put_first_and_found() {
        // A SACK (type 1, 4 bytes) already in the chain stays after ours.
        let mut p = packet(ST_STATE, 1, 2);
        p[1] = 1;
        p.extend_from_slice(&[0, 4, 0xaa, 0xbb, 0xcc, 0xdd]);
        let marked = with_extension(&p, EXT_BITS, &mark(0x4000));
        assert_eq!(find_extension(&marked, EXT_BITS), Some(&mark(0x4000)[..]));
        assert_eq!(
            find_extension(&marked, 1),
            Some(&[0xaa, 0xbb, 0xcc, 0xdd][..])
        );
        assert_eq!(find_extension(&p, EXT_BITS), None);
        // A chain running past the datagram, or looping, is not read.
        assert_eq!(find_extension(&marked[..marked.len() - 1], 1), None);
        let mut looping = packet(ST_STATE, 1, 2);
        looping[1] = 9;
        for _ in 0..20 {
            looping.extend_from_slice(&[9, 0]);
        }
        assert_eq!(find_extension(&looping, EXT_BITS), None);
    }

    #[test]
    fn large_datagrams_only_to_marked_loopback_peers() {
        let peer: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        let far: SocketAddr = "192.0.2.1:6881".parse().unwrap();
        let large = LargeDatagrams::default();
        // Our SYN carries the mark; anything else goes out as it is.
        let syn = packet(ST_SYN, 100, 0);
        let sent = large.on_sending(&syn, peer).expect("SYN marked");
        assert_eq!(find_extension(&sent, EXT_BITS), Some(&mark(16384)[..]));
        assert_eq!(UtpHeader::parse(&sent).unwrap().seq_nr, 100);
        assert_eq!(large.on_sending(&packet(0, 5, 6), peer), None);
        assert_eq!(large.on_sending(&packet(ST_STATE, 5, 6), peer), None);
        assert_eq!(large.known_link_mtu(peer), None);

        // A marked SYN from the peer: large datagrams to it, and our SYN-ACK (the
        // ST_STATE acknowledging that SYN) is marked.
        let their_syn = with_extension(&packet(ST_SYN, 500, 0), EXT_BITS, &mark(0x4000));
        large.on_received(&their_syn, peer);
        large.on_received(&their_syn, far);
        assert_eq!(large.known_link_mtu(peer), Some(16384 + 28));
        assert_eq!(large.known_link_mtu(far), None, "not over loopback");
        let syn_ack = large
            .on_sending(&packet(ST_STATE, 9, 500), peer)
            .expect("SYN-ACK marked");
        assert!(find_extension(&syn_ack, EXT_BITS).is_some());
        assert_eq!(large.on_sending(&packet(ST_STATE, 10, 501), peer), None);

        // A smaller announced size is kept; one too small is ignored.
        let small = with_extension(&packet(ST_STATE, 1, 1), EXT_BITS, &mark(0x2000));
        large.on_received(&small, peer);
        assert_eq!(large.known_link_mtu(peer), Some(8192 + 28));
        // An unmarked SYN from that address: whoever is there now gets 1500-byte MTUs.
        large.on_received(&packet(ST_SYN, 7, 0), peer);
        assert_eq!(large.known_link_mtu(peer), None);

        // A marked SYN-ACK to our SYN, then our next SYN to it forgets it again.
        let their_syn_ack = with_extension(&packet(ST_STATE, 1, 100), EXT_BITS, &mark(0x4000));
        large.on_received(&their_syn_ack, peer);
        assert_eq!(large.known_link_mtu(peer), Some(16384 + 28));
        large.on_sending(&syn, peer);
        assert_eq!(large.known_link_mtu(peer), None);
        // Extension bits that are not our mark say nothing.
        let other = with_extension(&packet(ST_SYN, 1, 1), EXT_BITS, &[0xff; 8]);
        large.on_received(&other, peer);
        assert_eq!(large.known_link_mtu(peer), None);
        let tiny = with_extension(&packet(ST_SYN, 1, 1), EXT_BITS, &mark(0x0100));
        large.on_received(&tiny, peer);
        assert_eq!(large.known_link_mtu(peer), None);
    }

    #[test]
    fn a_peer_that_does_not_answer_a_marked_syn_gets_plain_ones() {
        let peer: SocketAddr = "127.0.0.1:51413".parse().unwrap();
        let far: SocketAddr = "192.0.2.1:6881".parse().unwrap();
        let large = LargeDatagrams::default();
        let syn = packet(ST_SYN, 100, 0);
        assert_eq!(large.on_sending(&syn, far), None, "no mark beyond loopback");
        assert!(large.on_sending(&syn, peer).is_some(), "first SYN marked");
        // No answer; the dial sends its SYN again: this time, and from now on, plain.
        assert_eq!(large.on_sending(&syn, peer), None);
        assert_eq!(large.on_sending(&syn, peer), None);
        // A peer that answers its marked SYN keeps getting marked ones.
        let other: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        assert!(large.on_sending(&syn, other).is_some());
        large.on_received(&packet(ST_STATE, 1, 100), other);
        assert!(large.on_sending(&syn, other).is_some());
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
