//! A tracker server (`bitpeer tracker`): HTTP (BEP 3, 23, 7, 48) and UDP (BEP 15) announce
//! and scrape over one shared, bounded [`TrackerState`].
//!
//! - [`state`]: the sans-IO core: swarms, peers, caps, expiry, with explicit `now`.
//! - [`http`]: HTTP query parsing and bencoded answers, sans-IO.
//! - [`udp`]: UDP packet parsing, stateless connection ids and answers, sans-IO.
//!
//! This file is the tokio shell: it binds the sockets, moves bytes between them and the cores
//! under a short mutex (never held across an `.await`), and expires peers on a timer. The
//! HTTP side is a plain hyper HTTP/1.1 server: two routes whose query must be read as raw
//! bytes need no router. It bounds the request head (16 KiB), the connections open at once
//! and their lifetime.

pub mod http;
pub mod state;
pub mod udp;

pub use state::{Announced, Config, Family, PeerEntry, Rejection, Stats, TrackerState};
pub use udp::ConnectionIds;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

/// Default for [`ServerConfig::max_http_connections`].
pub const MAX_HTTP_CONNECTIONS: usize = 1024;
/// Largest HTTP request head read: room for a query of [`http::MAX_QUERY`] and headers;
/// a larger head is refused by hyper (431) before it reaches the tracker.
pub const MAX_HTTP_HEAD: usize = 16 * 1024;
/// How long one HTTP connection may stay open (keep-alive included).
const HTTP_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long a client may take to send a request head.
const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen for HTTP on {addr}: {source}")]
    BindHttp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for UDP on {addr}: {source}")]
    BindUdp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no endpoint: give an HTTP or a UDP address")]
    NoEndpoint,
    #[error("cannot get random bytes for the connection-id secret: {0}")]
    Random(String),
}

/// Where to listen and how to track.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub http: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    pub tracker: Config,
    /// HTTP connections served at once; further ones wait in the kernel's accept queue.
    pub max_http_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: None,
            udp: None,
            tracker: Config::default(),
            max_http_connections: MAX_HTTP_CONNECTIONS,
        }
    }
}

/// A bound tracker server; [`Server::run`] serves until the future is dropped.
pub struct Server {
    http: Option<TcpListener>,
    udp: Option<UdpSocket>,
    state: Arc<Mutex<TrackerState>>,
    ids: ConnectionIds,
    max_http_connections: usize,
}

impl Server {
    /// Binds the sockets (port 0: any free port). Must be called inside a tokio runtime.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        if config.http.is_none() && config.udp.is_none() {
            return Err(ServerError::NoEndpoint);
        }
        let http = match config.http {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::BindHttp { addr, source })?,
            ),
            None => None,
        };
        let udp = match config.udp {
            Some(addr) => {
                Some(bind_udp(addr).map_err(|source| ServerError::BindUdp { addr, source })?)
            }
            None => None,
        };
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| ServerError::Random(e.to_string()))?;
        Ok(Server {
            http,
            udp,
            state: Arc::new(Mutex::new(TrackerState::new(config.tracker))),
            ids: ConnectionIds::new(secret, Instant::now()),
            max_http_connections: config.max_http_connections.max(1),
        })
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The shared state, to read [`TrackerState::stats`] while running.
    pub fn state(&self) -> Arc<Mutex<TrackerState>> {
        self.state.clone()
    }

    /// Serves HTTP and UDP and expires peers, until dropped. Each runs as its own task
    /// (so HTTP and UDP use both cores); dropping this future aborts them.
    pub async fn run(self) {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(expire_loop(self.state.clone()));
        if let Some(l) = self.http {
            tasks.spawn(serve_http(l, self.state.clone(), self.max_http_connections));
        }
        if let Some(s) = self.udp {
            tasks.spawn(serve_udp(s, self.state.clone(), self.ids.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Kernel receive buffer asked for the UDP socket: a burst of announces waits there while
/// the tracker answers the ones before (the default ~200 KiB holds only ~150 datagrams).
const UDP_RECV_BUFFER: usize = 4 << 20;

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

fn lock(state: &Mutex<TrackerState>) -> std::sync::MutexGuard<'_, TrackerState> {
    // A panic inside the core would be a bug; keep serving with the state as it is.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

async fn expire_loop(state: Arc<Mutex<TrackerState>>) {
    let every = lock(&state).expire_every();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        lock(&state).expire(Instant::now());
    }
}

async fn serve_udp(socket: UdpSocket, state: Arc<Mutex<TrackerState>>, ids: ConnectionIds) {
    // One more byte than the largest packet answered, to tell an oversized one.
    let mut buf = vec![0u8; udp::MAX_UDP_PACKET + 1];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors from earlier sends and the like: keep serving.
            Err(_) => continue,
        };
        let reply = udp::handle(&mut lock(&state), &ids, Instant::now(), &buf[..n], from);
        if let Some(reply) = reply {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

async fn serve_http(listener: TcpListener, state: Arc<Mutex<TrackerState>>, max: usize) {
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                // Out of file descriptors and the like: back off a little.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, req, from)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HTTP_HEADER_TIMEOUT)
                .max_buf_size(MAX_HTTP_HEAD)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(HTTP_CONNECTION_LIFETIME, conn).await;
            drop(permit);
        });
    }
}

fn answer(
    state: &Mutex<TrackerState>,
    req: Request<hyper::body::Incoming>,
    from: SocketAddr,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain"),
        );
        r
    };
    if req.method() != hyper::Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            http::encode_failure("only GET is supported"),
        );
    }
    let Some(endpoint) = http::endpoint(req.uri().path()) else {
        return reply(StatusCode::NOT_FOUND, http::encode_failure("not found"));
    };
    let query = req.uri().query().unwrap_or("").as_bytes();
    let body = http::handle(&mut lock(state), Instant::now(), endpoint, query, from.ip());
    reply(StatusCode::OK, body)
}
