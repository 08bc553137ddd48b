//! The tokio shell of the WebSocket tracker (`bitpeer tracker --ws`): it accepts
//! WebSocket connections (any path), feeds their text frames to the sans-IO [`WsTracker`]
//! under a short mutex, and queues what it answers on each connection's bounded outbox.
//!
//! Bounds: frames and messages of at most [`MAX_MESSAGE`] bytes (tungstenite refuses larger
//! ones before buffering them), [`MAX_CONNECTIONS`] connections at once, a handshake
//! deadline, an idle deadline, an outbox of [`OUTBOX`] messages per connection (a client
//! that does not read loses offers instead of growing the server's memory) and a write
//! deadline (a client that stops reading altogether is dropped).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::codec::MAX_MESSAGE;
use crate::server::{Config, ConnId, WsTracker};

/// Most WebSocket connections open at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Messages waiting to be written to one connection; more are dropped.
pub const OUTBOX: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
const EXPIRE_EVERY: Duration = Duration::from_secs(30);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum WsServerError {
    #[error("cannot listen for WebSocket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

struct Shared {
    tracker: WsTracker,
    outboxes: HashMap<ConnId, mpsc::Sender<String>>,
    next_id: ConnId,
}

/// A bound WebSocket tracker; [`WsServer::run`] serves it.
pub struct WsServer {
    listener: TcpListener,
    shared: Arc<Mutex<Shared>>,
    idle_timeout: Duration,
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WsServer {
    pub async fn bind(addr: SocketAddr, config: Config) -> Result<Self, WsServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| WsServerError::Bind { addr, source })?;
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| WsServerError::Random(e.to_string()))?;
        // A connection that sends nothing for longer than a peer is kept is closed.
        let idle_timeout = config.peer_timeout;
        Ok(WsServer {
            listener,
            shared: Arc::new(Mutex::new(Shared {
                tracker: WsTracker::new(config, u64::from_le_bytes(seed)),
                outboxes: HashMap::new(),
                next_id: 1,
            })),
            idle_timeout,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until the future is dropped.
    pub async fn run(self) {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let expirer = {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(EXPIRE_EVERY);
                loop {
                    tick.tick().await;
                    lock(&shared).tracker.expire(Instant::now());
                }
            })
        };
        let _abort = AbortOnDrop(expirer);
        loop {
            let Ok((stream, from)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::debug!(%from, "websocket tracker: too many connections");
                continue;
            };
            let shared = self.shared.clone();
            let idle = self.idle_timeout;
            tokio::spawn(async move {
                serve(stream, shared, idle).await;
                drop(permit);
            });
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The limits given to tungstenite.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .max_write_buffer_size(4 * MAX_MESSAGE)
}

async fn serve(stream: TcpStream, shared: Arc<Mutex<Shared>>, idle: Duration) {
    let _ = stream.set_nodelay(true);
    let accept = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config()));
    let Ok(Ok(ws)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<String>(OUTBOX);
    let id = {
        let mut s = lock(&shared);
        let id = s.next_id;
        s.next_id += 1;
        s.tracker.connect(id, Instant::now());
        s.outboxes.insert(id, tx);
        id
    };
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            let send = sink.send(Message::text(text));
            if !matches!(tokio::time::timeout(WRITE_TIMEOUT, send).await, Ok(Ok(()))) {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let _abort = AbortOnDrop(writer);
    loop {
        let msg = match tokio::time::timeout(idle, source.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => break,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            // Pings are answered by tungstenite; binary frames are not part of the protocol.
            _ => continue,
        };
        tracing::trace!(conn = id, frame = %text.as_str(), "websocket tracker: received");
        let mut s = lock(&shared);
        let out = s.tracker.handle(id, Instant::now(), text.as_str());
        for o in out {
            tracing::trace!(conn = o.to, msg = ?o.msg, "websocket tracker: sending");
            if let Some(tx) = s.outboxes.get(&o.to) {
                // A full outbox drops the message: offers and answers are best-effort.
                let _ = tx.try_send(o.msg.encode());
            }
        }
        if s.outboxes.get(&id).is_none_or(|tx| tx.is_closed()) {
            break;
        }
    }
    let mut s = lock(&shared);
    s.tracker.disconnect(id);
    s.outboxes.remove(&id);
}
