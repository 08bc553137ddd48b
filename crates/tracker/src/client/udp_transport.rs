//! Moving BEP 15 packets over UDP: one socket per address family shared by every announce,
//! transaction ids to match answers to requests, cached connection ids, retransmission.
//!
//! There is no reader task: whoever is waiting for an answer reads the socket, and hands
//! each packet to the waiter registered under its transaction id, if it came from the
//! address that waiter asked. Anything else is dropped. So the sockets need no background
//! task and close when the last clone of the client goes away.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{OnceCell, mpsc};
use tokio::time::Instant;

use super::udp::{self, UdpResponse};
use super::{ClientConfig, TrackerError};
use crate::proto::{AnnounceRequest, AnnounceResponse, ScrapeEntry, UDP_MAX_SCRAPE};

/// Largest UDP answer read; anything longer is truncated (and then only yields fewer peers).
const MAX_PACKET: usize = 65_536;

/// Random numbers for transaction ids. They only need to be unpredictable to an off-path
/// sender, so the standard library's randomly keyed hasher is enough.
fn random_u32() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish() as u32
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) struct UdpClient {
    timeout: Duration,
    max_retries: u32,
    connection_id_ttl: Duration,
    max_peers: usize,
    bind_v4: SocketAddr,
    bind_v6: SocketAddr,
    v4: OnceCell<Arc<Endpoint>>,
    v6: OnceCell<Arc<Endpoint>>,
    /// Connection ids by tracker address, with when they were received.
    connections: Mutex<HashMap<SocketAddr, (u64, Instant)>>,
}

/// A socket and the transactions waiting on it.
struct Endpoint {
    socket: UdpSocket,
    waiting: Mutex<HashMap<u32, Waiter>>,
}

struct Waiter {
    from: SocketAddr,
    answers: mpsc::Sender<Vec<u8>>,
}

/// A transaction id registered on an endpoint; unregistered on drop.
struct Transaction {
    endpoint: Arc<Endpoint>,
    id: u32,
    answers: mpsc::Receiver<Vec<u8>>,
}

impl Drop for Transaction {
    fn drop(&mut self) {
        lock(&self.endpoint.waiting).remove(&self.id);
    }
}

impl Endpoint {
    fn begin(self: &Arc<Self>, to: SocketAddr) -> Transaction {
        let (tx, rx) = mpsc::channel(4);
        let mut waiting = lock(&self.waiting);
        let id = loop {
            let id = random_u32();
            if !waiting.contains_key(&id) {
                break id;
            }
        };
        waiting.insert(
            id,
            Waiter {
                from: to,
                answers: tx,
            },
        );
        Transaction {
            endpoint: self.clone(),
            id,
            answers: rx,
        }
    }

    /// Hand a received packet to the transaction it answers, if any.
    fn dispatch(&self, packet: &[u8], from: SocketAddr) {
        let Some(id) = udp::transaction_id(packet) else {
            return;
        };
        if let Some(w) = lock(&self.waiting).get(&id)
            && w.from == from
        {
            let _ = w.answers.try_send(packet.to_vec());
        }
    }

    /// Send `packet` and wait up to `timeout` for an answer to `tx`, reading the socket for
    /// every other waiter meanwhile.
    async fn exchange(
        &self,
        tx: &mut Transaction,
        to: SocketAddr,
        packet: &[u8],
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, TrackerError> {
        self.socket.send_to(packet, to).await?;
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            tokio::select! {
                answer = tx.answers.recv() => return Ok(answer),
                received = self.socket.recv_from(&mut buf) => {
                    // Errors such as ICMP port unreachable say nothing certain about this
                    // transaction: keep waiting until the deadline.
                    match received {
                        Ok((n, from)) => self.dispatch(&buf[..n], from),
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }
}

/// `host` and `port` of a `udp://host:port/...` URL.
fn host_port(url: &str) -> Result<(String, u16), TrackerError> {
    let invalid = || TrackerError::InvalidUrl(url.into());
    let parsed = reqwest::Url::parse(url).map_err(|_| invalid())?;
    let port = parsed.port().ok_or_else(invalid)?;
    // IPv6 literals come in brackets, which name resolution does not want.
    let host = parsed.host_str().ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

impl UdpClient {
    pub(super) fn new(cfg: &ClientConfig) -> Self {
        UdpClient {
            timeout: cfg.udp_timeout,
            max_retries: cfg.udp_max_retries,
            connection_id_ttl: cfg.connection_id_ttl,
            max_peers: cfg.max_peers,
            bind_v4: cfg.udp_bind_v4,
            bind_v6: cfg.udp_bind_v6,
            v4: OnceCell::new(),
            v6: OnceCell::new(),
            connections: Mutex::new(HashMap::new()),
        }
    }

    async fn resolve(&self, url: &str) -> Result<(SocketAddr, Arc<Endpoint>), TrackerError> {
        let (host, port) = host_port(url)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| TrackerError::Resolve(host.clone()))?
            .collect();
        // Prefer IPv4, which every tracker serves.
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or(TrackerError::Resolve(host))?;
        let (cell, bind) = if addr.is_ipv4() {
            (&self.v4, self.bind_v4)
        } else {
            (&self.v6, self.bind_v6)
        };
        let endpoint = cell
            .get_or_try_init(|| async {
                Ok::<_, TrackerError>(Arc::new(Endpoint {
                    socket: UdpSocket::bind(bind).await?,
                    waiting: Mutex::new(HashMap::new()),
                }))
            })
            .await?;
        Ok((addr, endpoint.clone()))
    }

    fn cached_connection(&self, to: SocketAddr) -> Option<u64> {
        let mut connections = lock(&self.connections);
        match connections.get(&to) {
            Some(&(id, at)) if at.elapsed() < self.connection_id_ttl => Some(id),
            Some(_) => {
                connections.remove(&to);
                None
            }
            None => None,
        }
    }

    /// Run one request: get a connection id (cached or by `connect`), send the request
    /// built by `request(connection_id, transaction_id)`, and return the answer. An
    /// unanswered packet is sent again after 15 * 2^n s (BEP 15; the base is configurable),
    /// at most `max_retries` times for the connect and as many for the request. A
    /// connection id that gets too old while retransmitting is renewed first.
    async fn request(
        &self,
        url: &str,
        request: impl Fn(u64, u32) -> Vec<u8>,
    ) -> Result<UdpResponse, TrackerError> {
        let (to, endpoint) = self.resolve(url).await?;
        let ipv6 = to.is_ipv6();
        let timeout = |sends: u32| self.timeout * (1u32 << sends.min(16));
        let (mut connect_sends, mut request_sends) = (0u32, 0u32);
        let (mut connect_tx, mut request_tx) = (None, None);
        // A connection id just received is used at least once, however short its life.
        let mut fresh = None;
        loop {
            let Some(id) = fresh.take().or_else(|| self.cached_connection(to)) else {
                if connect_sends > self.max_retries {
                    return Err(TrackerError::Timeout);
                }
                let wait = timeout(connect_sends);
                connect_sends += 1;
                let tx = connect_tx.get_or_insert_with(|| endpoint.begin(to));
                let packet = udp::encode_connect(tx.id);
                let Some(answer) = endpoint.exchange(tx, to, &packet, wait).await? else {
                    continue;
                };
                connect_tx = None;
                match udp::decode_response(&answer, ipv6, self.max_peers)?.1 {
                    UdpResponse::Connect { connection_id } => {
                        lock(&self.connections).insert(to, (connection_id, Instant::now()));
                        fresh = Some(connection_id);
                        continue;
                    }
                    UdpResponse::Error(msg) => return Err(TrackerError::Failure(msg)),
                    _ => return Err(TrackerError::Malformed("UDP answer of the wrong kind")),
                }
            };
            if request_sends > self.max_retries {
                return Err(TrackerError::Timeout);
            }
            let wait = timeout(request_sends);
            request_sends += 1;
            let tx = request_tx.get_or_insert_with(|| endpoint.begin(to));
            let packet = request(id, tx.id);
            let Some(answer) = endpoint.exchange(tx, to, &packet, wait).await? else {
                continue;
            };
            let response = udp::decode_response(&answer, ipv6, self.max_peers)?.1;
            if let UdpResponse::Error(_) = response {
                // Perhaps our connection id expired on the tracker's side: get a new one
                // next time.
                lock(&self.connections).remove(&to);
            }
            return Ok(response);
        }
    }

    pub(super) async fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
    ) -> Result<AnnounceResponse, TrackerError> {
        match self
            .request(url, |conn, tx| udp::encode_announce(conn, tx, req).to_vec())
            .await?
        {
            UdpResponse::Announce(r) => Ok(r),
            UdpResponse::Error(msg) => Err(TrackerError::Failure(msg)),
            _ => Err(TrackerError::Malformed("UDP answer of the wrong kind")),
        }
    }

    pub(super) async fn scrape(
        &self,
        url: &str,
        hashes: &[[u8; 20]],
    ) -> Result<Vec<ScrapeEntry>, TrackerError> {
        let mut entries = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(UDP_MAX_SCRAPE) {
            let response = self
                .request(url, |conn, tx| {
                    udp::encode_scrape(conn, tx, chunk).expect("chunk fits")
                })
                .await?;
            match response {
                UdpResponse::Scrape(mut r) if r.len() >= chunk.len() => {
                    r.truncate(chunk.len());
                    entries.extend(r);
                }
                UdpResponse::Scrape(_) => {
                    return Err(TrackerError::Malformed("UDP scrape answer too short"));
                }
                UdpResponse::Error(msg) => return Err(TrackerError::Failure(msg)),
                _ => return Err(TrackerError::Malformed("UDP answer of the wrong kind")),
            }
        }
        Ok(entries)
    }
}
