//! WebRTC data channels for WebTorrent peers: str0m (sans-IO ICE, DTLS, SCTP), each
//! session on a UDP socket of its own (as browsers and libdatachannel do: DTLS and SCTP
//! packets carry no session id, so two sessions with the same remote socket, say two
//! bitpeer nodes that answered each other's offers, could not be told apart on one
//! socket), all driven by one tokio task, with each open data channel handed out as a
//! [`DataChannel`] byte stream (`AsyncRead + AsyncWrite`) that carries the ordinary
//! BitTorrent wire.
//!
//! - Host candidates: with an unspecified `bind` IP, one for each of the node's usable
//!   addresses (see [`crate::local_addrs`]: the default route's first, at most
//!   [`MAX_HOST_IPS`], no loopback or link-local), each on a UDP socket of the session's
//!   own; with a specific IP, that one alone. Datagrams a socket receives are given to
//!   str0m as sent to that socket's address, and each datagram str0m sends leaves from
//!   the socket of its source address.
//! - No trickle: our host candidates are in the SDP of every offer and answer (the whole
//!   SDP in one tracker message, as webtorrent expects); with a STUN server configured, a
//!   session's first socket of the server's family (the default route's) first asks it for
//!   its public address (one Binding request, resent, bounded by `stun_timeout`), offered
//!   as a server-reflexive candidate. No STUN server is ever asked unless one is
//!   configured.
//! - Writes leave in channel messages of at most [`MAX_CHUNK`] bytes, only while the SCTP
//!   buffered amount is under [`MAX_BUFFERED`]; a writer waits (is not buffered without
//!   bound) when its outbox holds [`OUTBOX`] bytes, and is woken when the buffered amount
//!   falls. Received bytes wait in an inbox of at most [`INBOX`] bytes; a peer that sends
//!   more than that without our reading it is disconnected (a BitTorrent peer only sends
//!   what we asked for, far less).
//! - Timeouts: a session whose channel is not open within `connect_timeout` is dropped (its
//!   [`PendingChannel`] resolves to an error); str0m's ICE and SCTP timers end a session
//!   whose peer goes away. At most `max_sessions` sessions at once.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
// (str0m's `Candidate` is re-exported from its ICE crate.)
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc, oneshot};

pub use crate::local_addrs::MAX_HOST_IPS;

/// Largest channel message we send (webtorrent splits at 16 KiB too).
pub const MAX_CHUNK: usize = 16 * 1024;
/// SCTP bytes in flight or queued in str0m per channel before we stop handing it more.
pub const MAX_BUFFERED: usize = 256 * 1024;
/// Bytes a writer may have waiting in our outbox.
pub const OUTBOX: usize = 64 * 1024;
/// Received bytes not yet read, beyond which the peer is disconnected.
pub const INBOX: usize = 8 * 1024 * 1024;
/// Largest SDP we accept from a peer.
pub const MAX_SDP: usize = crate::codec::MAX_SDP;
const LOW_WATER: usize = 64 * 1024;
const UDP_BUF: usize = 2048;
/// Datagrams received and not yet handled by the driver, over every session.
const RECEIVED_QUEUE: usize = 1024;
/// How long a channel we closed may take to say so before its session is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Why a session could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    #[error("cannot bind the WebRTC UDP socket: {0}")]
    Bind(io::Error),
    #[error("no address to offer as a host candidate")]
    NoAddress,
    #[error("too many WebRTC sessions")]
    TooMany,
    #[error("invalid SDP: {0}")]
    Sdp(String),
    #[error("WebRTC: {0}")]
    Rtc(String),
    #[error("the WebRTC endpoint stopped")]
    Stopped,
    #[error("the data channel did not open in time")]
    Timeout,
}

/// Where and how the endpoint works.
#[derive(Debug, Clone)]
pub struct RtcConfig {
    /// The IP each session's socket binds to and offers as its host candidate (the port
    /// is ignored: each session takes a free one). An unspecified IP stands for each of
    /// the node's usable addresses (the default route's first, of the unspecified IP's
    /// family), a socket and a host candidate each.
    pub bind: SocketAddr,
    /// The IPs to offer host candidates on instead of `bind`'s (at most [`MAX_HOST_IPS`],
    /// the first one asks the STUN server); none by default.
    pub host_ips: Option<Vec<IpAddr>>,
    /// A STUN server to learn each session's public address from (none by default).
    pub stun: Option<SocketAddr>,
    /// How long a session waits for the STUN server before going on without it.
    pub stun_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_sessions: usize,
}

impl Default for RtcConfig {
    fn default() -> Self {
        RtcConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            host_ips: None,
            stun: None,
            stun_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
            max_sessions: 256,
        }
    }
}

/// A session's number in the endpoint.
pub type SessionId = u64;

/// The data channel of a session, once it opens.
pub type PendingChannel = oneshot::Receiver<DataChannel>;

enum Cmd {
    Offer(
        Sockets,
        oneshot::Sender<Result<(SessionId, String, PendingChannel), RtcError>>,
    ),
    Accept(
        Sockets,
        Box<SdpOffer>,
        oneshot::Sender<Result<(SessionId, String, PendingChannel), RtcError>>,
    ),
    Answer(SessionId, String, oneshot::Sender<Result<(), RtcError>>),
    Drop(SessionId),
}

/// A handle on the WebRTC endpoint (cheap to clone). The driver task ends when every
/// handle is dropped.
#[derive(Clone)]
pub struct RtcEndpoint {
    cmds: mpsc::Sender<Cmd>,
    /// Never empty.
    ips: Arc<[IpAddr]>,
    stun: Option<(SocketAddr, Duration)>,
}

/// A new session's UDP sockets (one per host IP, with its local address), and the public
/// address of one of them (its local address, the public one) when a STUN server told it.
struct Sockets {
    sockets: Vec<(SocketAddr, UdpSocket)>,
    public: Option<(SocketAddr, SocketAddr)>,
}

/// Socket buffers of the WebRTC socket: a burst of SCTP packets (up to `MAX_BUFFERED` per
/// channel) must not overflow the kernel's default ~200 KiB and cost retransmission
/// timeouts.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    // Best effort: the kernel caps them at net.core.[rw]mem_max.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// The IPs of the host candidates `config` asks for (not yet checked), at most
/// [`MAX_HOST_IPS`], once each.
fn host_ips(config: &RtcConfig) -> Vec<IpAddr> {
    let mut ips = match &config.host_ips {
        Some(ips) => ips.clone(),
        None if config.bind.ip().is_unspecified() => {
            crate::local_addrs::host_ips(config.bind.is_ipv6())
        }
        None => vec![config.bind.ip()],
    };
    let mut seen = Vec::with_capacity(ips.len());
    ips.retain(|ip| {
        let new = !ip.is_unspecified() && !seen.contains(ip);
        seen.push(*ip);
        new
    });
    ips.truncate(MAX_HOST_IPS);
    ips
}

impl RtcEndpoint {
    /// Finds the host IPs (see [`RtcConfig::bind`]), keeps those a UDP socket can be bound
    /// on, and starts the driver task (on the current tokio runtime).
    pub async fn start(config: RtcConfig) -> Result<Self, RtcError> {
        let mut ips = host_ips(&config);
        if ips.is_empty() {
            return Err(RtcError::NoAddress);
        }
        let mut error = None;
        ips.retain(|ip| match bind_udp(SocketAddr::new(*ip, 0)) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(%ip, "webrtc: cannot bind: {e}");
                error = Some(e);
                false
            }
        });
        if ips.is_empty() {
            return Err(error.map_or(RtcError::NoAddress, RtcError::Bind));
        }
        let (tx, rx) = mpsc::channel(64);
        let (received_tx, received) = mpsc::channel(RECEIVED_QUEUE);
        let stun = config.stun.map(|a| (a, config.stun_timeout));
        let driver = Driver {
            config,
            sessions: HashMap::new(),
            next_id: 1,
            notify: Arc::new(Notify::new()),
            received_tx,
        };
        tokio::spawn(driver.run(rx, received));
        Ok(RtcEndpoint {
            cmds: tx,
            ips: ips.into(),
            stun,
        })
    }

    /// The IP of our first host candidate (the default route's; each session has its own
    /// UDP ports).
    pub fn local_ip(&self) -> IpAddr {
        self.ips[0]
    }

    /// The IPs of our host candidates, the first one first.
    pub fn local_ips(&self) -> &[IpAddr] {
        &self.ips
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, RtcError>>) -> Cmd,
    ) -> Result<T, RtcError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(make(tx))
            .await
            .map_err(|_| RtcError::Stopped)?;
        rx.await.map_err(|_| RtcError::Stopped)?
    }

    /// A new session's sockets, one per host IP (an IP that cannot be bound any more is
    /// left out; none at all is an error), with the public address of the first one of
    /// the STUN server's family when a STUN server is set and answers in time.
    async fn sockets(&self) -> Result<Sockets, RtcError> {
        let mut sockets = Vec::with_capacity(self.ips.len());
        let mut error = None;
        for ip in self.ips.iter() {
            let bound = bind_udp(SocketAddr::new(*ip, 0)).and_then(|s| Ok((s.local_addr()?, s)));
            match bound {
                Ok((local, socket)) => sockets.push((local, socket)),
                Err(e) => {
                    tracing::debug!(%ip, "webrtc: cannot bind: {e}");
                    error = Some(e);
                }
            }
        }
        if sockets.is_empty() {
            return Err(error.map_or(RtcError::NoAddress, RtcError::Bind));
        }
        let mut public = None;
        if let Some((server, timeout)) = self.stun
            && let Some((local, socket)) = sockets
                .iter()
                .find(|(local, _)| local.is_ipv4() == server.is_ipv4())
        {
            public = stun_query(socket, server, timeout)
                .await
                .map(|p| (*local, p));
        }
        Ok(Sockets { sockets, public })
    }

    /// A new session with one data channel: our offer's SDP (with our candidate).
    pub async fn create_offer(&self) -> Result<(SessionId, String, PendingChannel), RtcError> {
        let sockets = self.sockets().await?;
        self.ask(|tx| Cmd::Offer(sockets, tx)).await
    }

    /// Answers a remote offer: our answer's SDP (with our candidate). An SDP that is not
    /// an offer is refused before any socket is bound.
    pub async fn accept_offer(
        &self,
        sdp: String,
    ) -> Result<(SessionId, String, PendingChannel), RtcError> {
        let offer = Box::new(parse_offer(&sdp)?);
        let sockets = self.sockets().await?;
        self.ask(|tx| Cmd::Accept(sockets, offer, tx)).await
    }

    /// Whether `sdp` is an offer [`accept_offer`](Self::accept_offer) can take (bounded
    /// and parsed; no socket is bound): lets a caller refuse junk at once.
    pub fn check_offer(sdp: &str) -> Result<(), RtcError> {
        parse_offer(sdp).map(drop)
    }

    /// The remote answer to our offer `id`.
    pub async fn accept_answer(&self, id: SessionId, sdp: String) -> Result<(), RtcError> {
        if sdp.len() > MAX_SDP {
            return Err(RtcError::Sdp("too large".into()));
        }
        self.ask(|tx| Cmd::Answer(id, sdp, tx)).await
    }

    /// Forgets a session (an offer never answered); an open channel is not affected.
    pub fn drop_session(&self, id: SessionId) {
        let _ = self.cmds.try_send(Cmd::Drop(id));
    }
}

/// What a [`DataChannel`] and the driver share.
#[derive(Default)]
struct Pipe {
    inbox: VecDeque<u8>,
    read_waker: Option<Waker>,
    outbox: VecDeque<u8>,
    write_waker: Option<Waker>,
    /// The session ended (remote close, error, timeout).
    closed: bool,
    /// Our side shut down or dropped its stream.
    shut: bool,
}

fn lock(p: &Mutex<Pipe>) -> std::sync::MutexGuard<'_, Pipe> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// An open data channel as a byte stream. Dropping it closes the session.
pub struct DataChannel {
    pipe: Arc<Mutex<Pipe>>,
    notify: Arc<Notify>,
    label: String,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl DataChannel {
    /// The channel's label, as the offerer chose it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `f` when the stream is dropped.
    pub fn on_drop(&mut self, f: Box<dyn FnOnce() + Send + Sync>) {
        self.on_drop = Some(f);
    }
}

impl AsyncRead for DataChannel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut p = lock(&self.pipe);
        if p.inbox.is_empty() {
            if p.closed {
                return Poll::Ready(Ok(()));
            }
            p.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.remaining().min(p.inbox.len());
        let (a, b) = p.inbox.as_slices();
        let from_a = n.min(a.len());
        buf.put_slice(&a[..from_a]);
        buf.put_slice(&b[..n - from_a]);
        p.inbox.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for DataChannel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut p = lock(&self.pipe);
        if p.closed || p.shut {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = OUTBOX.saturating_sub(p.outbox.len());
        if room == 0 {
            p.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        p.outbox.extend(&data[..n]);
        drop(p);
        self.notify.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut p = lock(&self.pipe);
        if p.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if p.outbox.is_empty() {
            return Poll::Ready(Ok(()));
        }
        p.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.pipe).shut = true;
        self.notify.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for DataChannel {
    fn drop(&mut self) {
        lock(&self.pipe).shut = true;
        self.notify.notify_one();
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

/// One of a session's UDP sockets (one per host candidate), and the task that reads it
/// into the driver.
struct SessionSocket {
    local: SocketAddr,
    socket: Arc<UdpSocket>,
    reader: tokio::task::JoinHandle<()>,
}

struct Session {
    rtc: Rtc,
    /// The session's own UDP sockets, the first one first.
    sockets: Vec<SessionSocket>,
    pending_offer: Option<SdpPendingOffer>,
    /// Given the channel when it opens.
    waiting: Option<oneshot::Sender<DataChannel>>,
    channel: Option<(ChannelId, Arc<Mutex<Pipe>>)>,
    started: Instant,
    /// When we closed the channel.
    closing: Option<Instant>,
}

impl Session {
    /// The stream ends for our side (readers and writers woken), the session lives on.
    fn end_stream(&mut self) {
        if let Some((_, pipe)) = &self.channel {
            let mut p = lock(pipe);
            p.closed = true;
            if let Some(w) = p.read_waker.take() {
                w.wake();
            }
            if let Some(w) = p.write_waker.take() {
                w.wake();
            }
        }
    }

    fn close(&mut self) {
        self.end_stream();
        self.rtc.disconnect();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for s in &self.sockets {
            s.reader.abort();
        }
    }
}

/// An SDP offer, bounded by [`MAX_SDP`] and parsed.
fn parse_offer(sdp: &str) -> Result<SdpOffer, RtcError> {
    if sdp.len() > MAX_SDP {
        return Err(RtcError::Sdp("too large".into()));
    }
    SdpOffer::from_sdp_string(sdp).map_err(|e| RtcError::Sdp(e.to_string()))
}

/// Asks the STUN server at `server` for `socket`'s public address: a Binding request,
/// resent every 500 ms, until an answer to it or `timeout`. Other datagrams are dropped
/// (nobody knows this socket yet).
async fn stun_query(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> Option<SocketAddr> {
    let mut tid = [0u8; 12];
    getrandom::fill(&mut tid).ok()?;
    let request = crate::stun::binding_request(&tid);
    let end = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 512];
    while tokio::time::Instant::now() < end {
        socket.send_to(&request, server).await.ok()?;
        let resend = (tokio::time::Instant::now() + Duration::from_millis(500)).min(end);
        while let Ok(r) = tokio::time::timeout_at(resend, socket.recv_from(&mut buf)).await {
            let Ok((n, from)) = r else { continue };
            if from != server {
                continue;
            }
            match crate::stun::parse_binding_response(&buf[..n], &tid) {
                Ok(addr) => return Some(addr),
                Err(e) => tracing::debug!(%server, "stun: {e}"),
            }
        }
    }
    tracing::debug!(%server, "stun: no answer in time");
    None
}

/// A datagram a session's socket (whose address is `destination`) received.
struct Received {
    session: SessionId,
    source: SocketAddr,
    destination: SocketAddr,
    data: Vec<u8>,
}

/// Reads `socket` (whose address is `local`) into the driver until the driver goes away
/// (or the task is aborted with its session).
async fn read_socket(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    session: SessionId,
    to: mpsc::Sender<Received>,
) {
    let mut buf = vec![0u8; UDP_BUF];
    loop {
        let Ok((n, source)) = socket.recv_from(&mut buf).await else {
            // ICMP errors surface here on some systems; the socket stays usable.
            continue;
        };
        let data = buf[..n].to_vec();
        if to
            .send(Received {
                session,
                source,
                destination: local,
                data,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

struct Driver {
    config: RtcConfig,
    sessions: HashMap<SessionId, Session>,
    next_id: SessionId,
    notify: Arc<Notify>,
    received_tx: mpsc::Sender<Received>,
}

/// A new session's sockets, and the str0m instance with their host candidates.
struct NewRtc {
    rtc: Rtc,
    sockets: Vec<(SocketAddr, UdpSocket)>,
}

impl Driver {
    fn new_rtc(&self, sockets: Sockets, now: Instant) -> Result<NewRtc, RtcError> {
        let Sockets { sockets, public } = sockets;
        let mut rtc = Rtc::builder()
            .set_sctp_max_buffered_amount(MAX_BUFFERED)
            .build(now);
        for (local, _) in &sockets {
            let host = Candidate::host(*local, "udp").map_err(|e| RtcError::Rtc(e.to_string()))?;
            rtc.add_local_candidate(host);
        }
        if let Some((local, public)) = public.filter(|(l, p)| p != l)
            && let Ok(c) = Candidate::server_reflexive(public, local, "udp")
        {
            rtc.add_local_candidate(c);
        }
        Ok(NewRtc { rtc, sockets })
    }

    fn add(
        &mut self,
        new: NewRtc,
        pending_offer: Option<SdpPendingOffer>,
        now: Instant,
    ) -> (SessionId, PendingChannel) {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id;
        self.next_id += 1;
        let sockets = new
            .sockets
            .into_iter()
            .map(|(local, socket)| {
                let socket = Arc::new(socket);
                let to = self.received_tx.clone();
                let reader = tokio::spawn(read_socket(socket.clone(), local, id, to));
                SessionSocket {
                    local,
                    socket,
                    reader,
                }
            })
            .collect();
        self.sessions.insert(
            id,
            Session {
                rtc: new.rtc,
                sockets,
                pending_offer,
                waiting: Some(tx),
                channel: None,
                started: now,
                closing: None,
            },
        );
        (id, rx)
    }

    fn command(&mut self, cmd: Cmd, now: Instant) {
        let full = self.sessions.len() >= self.config.max_sessions;
        match cmd {
            Cmd::Offer(sockets, reply) => {
                let r = (|| {
                    if full {
                        return Err(RtcError::TooMany);
                    }
                    let mut new = self.new_rtc(sockets, now)?;
                    let mut api = new.rtc.sdp_api();
                    api.add_channel("webtorrent".into());
                    let (offer, pending) = api
                        .apply()
                        .ok_or_else(|| RtcError::Rtc("no offer made".into()))?;
                    let sdp = offer.to_sdp_string();
                    let (id, rx) = self.add(new, Some(pending), now);
                    Ok((id, sdp, rx))
                })();
                let _ = reply.send(r);
            }
            Cmd::Accept(sockets, offer, reply) => {
                let r = (|| {
                    if full {
                        return Err(RtcError::TooMany);
                    }
                    let mut new = self.new_rtc(sockets, now)?;
                    let answer = new
                        .rtc
                        .sdp_api()
                        .accept_offer(*offer)
                        .map_err(|e| RtcError::Sdp(e.to_string()))?;
                    let sdp = answer.to_sdp_string();
                    let (id, rx) = self.add(new, None, now);
                    Ok((id, sdp, rx))
                })();
                let _ = reply.send(r);
            }
            Cmd::Answer(id, sdp, reply) => {
                let r = (|| {
                    let s = self
                        .sessions
                        .get_mut(&id)
                        .ok_or_else(|| RtcError::Rtc("no such session".into()))?;
                    let pending = s
                        .pending_offer
                        .take()
                        .ok_or_else(|| RtcError::Rtc("already answered".into()))?;
                    let answer = SdpAnswer::from_sdp_string(&sdp)
                        .map_err(|e| RtcError::Sdp(e.to_string()))?;
                    s.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| RtcError::Sdp(e.to_string()))
                })();
                if r.is_err()
                    && let Some(mut s) = self.sessions.remove(&id)
                {
                    s.close();
                }
                let _ = reply.send(r);
            }
            Cmd::Drop(id) => {
                if self.sessions.get(&id).is_some_and(|s| s.channel.is_none())
                    && let Some(mut s) = self.sessions.remove(&id)
                {
                    s.close();
                }
            }
        }
    }

    /// Moves queued bytes of every channel into str0m while its buffer has room; wakes
    /// writers whose outbox emptied; closes sessions whose stream was dropped.
    fn pump(&mut self) {
        let now = Instant::now();
        for s in self.sessions.values_mut() {
            let Some((cid, pipe)) = &s.channel else {
                continue;
            };
            if s.closing.is_some() {
                // Closed by our side: its stream reset is under way (see ChannelClose).
                continue;
            }
            let (cid, pipe) = (*cid, pipe.clone());
            let mut p = lock(&pipe);
            let mut wrote = false;
            match s.rtc.channel(cid) {
                None => p.closed = true,
                Some(mut ch) => {
                    while !p.outbox.is_empty() && ch.buffered_amount() < MAX_BUFFERED {
                        let n = p.outbox.len().min(MAX_CHUNK);
                        p.outbox.make_contiguous();
                        let chunk = &p.outbox.as_slices().0[..n];
                        match ch.write(true, chunk) {
                            Ok(true) => {
                                p.outbox.drain(..n);
                                wrote = true;
                            }
                            Ok(false) => break,
                            Err(_) => {
                                p.closed = true;
                                break;
                            }
                        }
                    }
                }
            }
            if (wrote || p.closed)
                && let Some(w) = p.write_waker.take()
            {
                w.wake();
            }
            let (closed, flushed) = (p.closed, p.shut && p.outbox.is_empty());
            drop(p);
            if closed {
                s.close();
            } else if flushed && s.closing.is_none() {
                // Our side is done: reset the channel's stream so the other side sees the
                // end at once (not after ICE times out); the session ends on ChannelClose
                // or after CLOSE_GRACE.
                s.rtc.direct_api().close_data_channel(cid);
                s.closing = Some(now);
            }
        }
    }

    /// Runs a session's outputs until its next timeout; returns it.
    fn drain(&mut self, id: SessionId) -> Option<Instant> {
        let notify = self.notify.clone();
        let s = self.sessions.get_mut(&id)?;
        loop {
            if !s.rtc.is_alive() {
                s.close();
                return None;
            }
            let out = match s.rtc.poll_output() {
                Ok(o) => o,
                Err(_) => {
                    s.close();
                    return None;
                }
            };
            match out {
                Output::Timeout(t) => return Some(t),
                Output::Transmit(t) => {
                    // From the socket of the candidate str0m chose (a server-reflexive
                    // candidate's base is its socket's address).
                    let from = s.sockets.iter().find(|x| {
                        x.local.ip() == t.source.ip() && x.local.port() == t.source.port()
                    });
                    match from {
                        Some(x) => {
                            let _ = x.socket.try_send_to(&t.contents, t.destination);
                        }
                        None => tracing::trace!(
                            source = %t.source,
                            "webrtc: no socket for a datagram's source; dropped"
                        ),
                    }
                }
                Output::Event(e) => match e {
                    Event::ChannelOpen(cid, label) => {
                        if s.channel.is_some() {
                            continue;
                        }
                        let pipe = Arc::new(Mutex::new(Pipe::default()));
                        if let Some(mut ch) = s.rtc.channel(cid) {
                            ch.set_buffered_amount_low_threshold(LOW_WATER);
                        }
                        s.channel = Some((cid, pipe.clone()));
                        let dc = DataChannel {
                            pipe,
                            notify: notify.clone(),
                            label: label.chars().take(256).collect(),
                            on_drop: None,
                        };
                        if let Some(tx) = s.waiting.take() {
                            // Nobody waits any more: the channel drops and closes.
                            let _ = tx.send(dc);
                        }
                    }
                    Event::ChannelData(d) => {
                        let Some((cid, pipe)) = &s.channel else {
                            continue;
                        };
                        if d.id != *cid {
                            continue;
                        }
                        let mut p = lock(pipe);
                        if p.inbox.len() + d.data.len() > INBOX {
                            p.closed = true;
                        } else {
                            p.inbox.extend(&d.data);
                        }
                        if let Some(w) = p.read_waker.take() {
                            w.wake();
                        }
                        let closed = p.closed;
                        drop(p);
                        if closed {
                            s.close();
                        }
                    }
                    Event::ChannelClose(cid)
                        if s.channel.as_ref().is_some_and(|(c, _)| *c == cid) =>
                    {
                        if s.closing.is_some() {
                            // Our own close: str0m reports it before the stream reset has
                            // left; the session stays (for CLOSE_GRACE) so the reset goes
                            // out and the peer sees the end at once.
                            s.end_stream();
                        } else {
                            s.close();
                        }
                    }
                    Event::ChannelBufferedAmountLow(_) => notify.notify_one(),
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        s.close();
                    }
                    _ => {}
                },
            }
        }
    }

    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>, mut received: mpsc::Receiver<Received>) {
        let notify = self.notify.clone();
        let mut next: Instant;
        let mut cmds_open = true;
        loop {
            let now = Instant::now();
            // Timeouts of sessions that never opened.
            let timeout = self.config.connect_timeout;
            for s in self.sessions.values_mut() {
                let unopened =
                    s.channel.is_none() && now.saturating_duration_since(s.started) > timeout;
                let closed = s
                    .closing
                    .is_some_and(|t| now.saturating_duration_since(t) > CLOSE_GRACE);
                if unopened || closed {
                    s.close();
                }
            }
            self.pump();
            next = now + Duration::from_secs(1);
            let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
            for id in ids {
                if let Some(t) = self.drain(id) {
                    next = next.min(t.max(now));
                }
            }
            self.sessions.retain(|_, s| s.rtc.is_alive());
            if !cmds_open && self.sessions.is_empty() {
                // Every handle and every channel is gone.
                return;
            }
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
            tokio::select! {
                Some(r) = received.recv() => {
                    let Some(s) = self.sessions.get_mut(&r.session) else { continue };
                    let Ok(contents) = r.data.as_slice().try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive {
                        proto: Protocol::Udp,
                        source: r.source,
                        destination: r.destination,
                        contents,
                    });
                    // What is not for this session (stray or forged packets) is ignored.
                    if s.rtc.accepts(&input) && s.rtc.handle_input(input).is_err() {
                        s.close();
                    }
                }
                cmd = cmds.recv(), if cmds_open => match cmd {
                    Some(cmd) => self.command(cmd, Instant::now()),
                    None => cmds_open = false,
                },
                _ = notify.notified() => {}
                _ = sleep => {
                    let now = Instant::now();
                    for s in self.sessions.values_mut() {
                        if s.rtc.handle_input(Input::Timeout(now)).is_err() {
                            s.close();
                        }
                    }
                }
            }
        }
    }
}
