//! Transports: how the bytes of a peer connection move.
//!
//! A peer connection is a [`PeerStream`]: a reliable, ordered byte stream in each
//! direction plus what we know about the other end. TCP is the only transport today; uTP
//! (BEP 29), an MSE/PE-encrypted stream and a WebRTC data channel are further
//! [`Connector`]s and listeners that produce the same `PeerStream`, so the handshake and
//! the connection loop (`torrent`, `magnet`) never learn which one they run over (the way
//! rqbit's `stream_connect.rs` and libtorrent's `polymorphic_socket` do it).
//!
//! Incoming streams of every transport go to the one session router
//! ([`crate::context::NodeContext::route_incoming`]), which reads the BEP 3 handshake
//! prefix and hands the stream to the torrent it names.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The read half of a peer connection.
pub type BoxRead = Box<dyn AsyncRead + Send + Sync + Unpin>;
/// The write half of a peer connection (vectored writes are passed through).
pub type BoxWrite = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// Which transport a connection runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Tcp,
    Utp,
    WebRtc,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Utp => "utp",
            TransportKind::WebRtc => "webrtc",
        })
    }
}

/// Who is at the other end. An IP peer has a socket address; a WebRTC peer reached
/// through a signalling tracker has none, only the id the tracker relayed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    Ip(SocketAddr),
    /// A peer known by an opaque id of its transport (a WebRTC peer's tracker peer id,
    /// folded to 64 bits).
    Opaque {
        kind: TransportKind,
        id: u64,
    },
}

impl PeerAddr {
    /// The socket address of an IP peer.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Ip(a) => Some(*a),
            PeerAddr::Opaque { .. } => None,
        }
    }

    /// The key that strikes, bans, per-address limits and a torrent's peer table use: an
    /// IP peer's socket address; for an opaque peer, an address of its own in the IPv6
    /// discard prefix `100::/64` (RFC 6666), which no real peer has. Such a key is never
    /// dialled nor passed on in peer exchange ([`is_opaque_key`]).
    pub fn key(&self) -> SocketAddr {
        match self {
            PeerAddr::Ip(a) => *a,
            PeerAddr::Opaque { kind, id } => {
                let kind: u64 = match kind {
                    TransportKind::Tcp => 0,
                    TransportKind::Utp => 1,
                    TransportKind::WebRtc => 2,
                };
                let ip = (0x0100u128 << 112) | u128::from(*id ^ (kind << 62));
                SocketAddr::new(std::net::Ipv6Addr::from(ip).into(), 0)
            }
        }
    }
}

/// Whether `addr` is the [`PeerAddr::key`] of an opaque peer (not an address to dial).
pub fn is_opaque_key(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V6(v6) => v6.to_bits() >> 64 == 0x0100u128 << 48,
        std::net::IpAddr::V4(_) => false,
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(a) => write!(f, "{a}"),
            PeerAddr::Opaque { kind, id } => write!(f, "{kind}:{id:016x}"),
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> Self {
        PeerAddr::Ip(a)
    }
}

/// One peer connection's byte stream, whatever carries it.
pub struct PeerStream {
    pub kind: TransportKind,
    pub remote: PeerAddr,
    /// Whether the bytes are encrypted on the way (MSE/PE, DTLS).
    pub encrypted: bool,
    pub read: BoxRead,
    pub write: BoxWrite,
}

impl fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerStream")
            .field("kind", &self.kind)
            .field("remote", &self.remote)
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

impl PeerStream {
    /// A TCP connection (Nagle off: requests and haves are small and latency-bound).
    pub fn tcp(stream: tokio::net::TcpStream, remote: SocketAddr) -> PeerStream {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        PeerStream {
            kind: TransportKind::Tcp,
            remote: PeerAddr::Ip(remote),
            encrypted: false,
            read: Box::new(read),
            write: Box::new(write),
        }
    }

    /// Any pair of halves (tests use `tokio::io::duplex`).
    pub fn from_halves(
        kind: TransportKind,
        remote: PeerAddr,
        read: impl AsyncRead + Send + Sync + Unpin + 'static,
        write: impl AsyncWrite + Send + Sync + Unpin + 'static,
    ) -> PeerStream {
        PeerStream {
            kind,
            remote,
            encrypted: false,
            read: Box::new(read),
            write: Box::new(write),
        }
    }
}

/// Which transports a session uses for peer connections, both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    pub tcp: bool,
    pub utp: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Transports {
            tcp: true,
            utp: true,
        }
    }
}

impl std::str::FromStr for Transports {
    type Err = String;

    /// A comma-separated list: `tcp`, `utp`, or both.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut t = Transports {
            tcp: false,
            utp: false,
        };
        for part in s.split(',').map(str::trim) {
            match part.to_ascii_lowercase().as_str() {
                "tcp" => t.tcp = true,
                "utp" => t.utp = true,
                other => return Err(format!("unknown transport {other:?} (tcp, utp)")),
            }
        }
        Ok(t)
    }
}

impl fmt::Display for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.tcp, self.utp) {
            (true, true) => f.write_str("tcp,utp"),
            (true, false) => f.write_str("tcp"),
            (false, true) => f.write_str("utp"),
            (false, false) => f.write_str(""),
        }
    }
}

/// A future returned by a [`Connector`].
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<PeerStream>> + Send>>;

/// A way to dial an IP peer. The session holds one per enabled transport and a torrent
/// dials through them in order of preference.
pub trait Connector: Send + Sync + 'static {
    fn kind(&self) -> TransportKind;
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> ConnectFuture;
}

/// Dials over TCP.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }

    fn connect(&self, addr: SocketAddr, timeout: Duration) -> ConnectFuture {
        Box::pin(async move {
            let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            Ok(PeerStream::tcp(stream, addr))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn tcp_connector_gives_a_working_stream() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
        });
        let mut ps = TcpConnector
            .connect(addr, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(ps.kind, TransportKind::Tcp);
        assert_eq!(ps.remote, PeerAddr::Ip(addr));
        ps.write.write_all(b"hello").await.unwrap();
        let mut b = [0u8; 5];
        ps.read.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_fails() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(
            TcpConnector
                .connect(addr, Duration::from_secs(5))
                .await
                .is_err()
        );
    }

    #[test]
    fn transports_parse() {
        let both: Transports = "tcp,utp".parse().unwrap();
        assert_eq!(both, Transports::default());
        assert_eq!(both.to_string(), "tcp,utp");
        let utp: Transports = " UTP ".parse().unwrap();
        assert_eq!((utp.tcp, utp.utp), (false, true));
        assert_eq!("utp".parse::<Transports>().unwrap().to_string(), "utp");
        assert_eq!("tcp".parse::<Transports>().unwrap().to_string(), "tcp");
        assert!("quic".parse::<Transports>().is_err());
        assert!("".parse::<Transports>().is_err());
        assert!("tcp,".parse::<Transports>().is_err());
    }

    #[test]
    fn peer_addr_display() {
        let a: PeerAddr = "127.0.0.1:6881".parse::<SocketAddr>().unwrap().into();
        assert_eq!(a.to_string(), "127.0.0.1:6881");
        let o = PeerAddr::Opaque {
            kind: TransportKind::WebRtc,
            id: 0xab,
        };
        assert_eq!(o.to_string(), "webrtc:00000000000000ab");
        assert_eq!(o.ip(), None);
        assert_eq!(o.key().to_string(), "[100::8000:0:0:ab]:0");
        assert!(is_opaque_key(&o.key()));
        assert!(!is_opaque_key(&a.key()));
        assert!(!is_opaque_key(&"[2001:db8::1]:1".parse().unwrap()));
    }
}
