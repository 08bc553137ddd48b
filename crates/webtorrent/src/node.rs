//! The tokio shell that makes a node a WebTorrent peer: one task per WebSocket tracker URL
//! (shared by every torrent that names it) drives a sans-IO [`TrackerClient`], makes
//! offers and answers with the [`RtcEndpoint`], and hands every data channel that opens
//! out as a [`Connection`] (the caller runs the BitTorrent wire over it).
//!
//! Everything here is bounded: offers are made at most `offers_per_announce` at a time,
//! answers at most one per remote peer (until its connection ends), sessions by the
//! endpoint's cap; frames by the codec's limits; a tracker that cannot be reached is
//! retried with backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{ClientConfig, ClientEvent, Progress, TrackerClient};
use crate::codec::Id20;
use crate::rtc::{DataChannel, PendingChannel, RtcEndpoint, SessionId};
use crate::ws_server::ws_config;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections waiting for the caller to take them.
const CONNECTIONS_QUEUE: usize = 64;

/// A WebRTC peer connection, open, for a torrent.
pub struct Connection {
    pub info_hash: Id20,
    /// The remote peer's id as the tracker relayed it.
    pub peer_id: Id20,
    /// True when we made the offer (we connected to them).
    pub outgoing: bool,
    pub channel: DataChannel,
}

/// Reads a torrent's progress when an announce is made.
pub type ProgressFn = Arc<dyn Fn() -> Progress + Send + Sync>;

enum Cmd {
    Add(Id20, ProgressFn),
    Remove(Id20),
    Completed(Id20),
}

/// What spawned work reports back to a tracker task.
enum Done {
    Connected(
        Box<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
        >,
    ),
    ConnectFailed,
    Offers(Id20, Vec<(SessionId, String, PendingChannel)>),
    Answer(Id20, Id20, Id20, String),
    AnswerFailed(Id20, Id20),
    /// A connection ended, after being open this long.
    PeerGone(Id20, Id20, Duration),
}

/// A connection that ends sooner than this is a strike against its peer (see
/// `TrackerClient::peer_failed`): an honest BitTorrent peer stays longer, a peer that
/// sends garbage is closed at once.
const SHORT_LIVED: Duration = Duration::from_secs(10);

/// A node's WebTorrent side: add torrents to tracker URLs, take [`Connection`]s.
#[derive(Clone)]
pub struct WebTorrentNode {
    rtc: RtcEndpoint,
    peer_id: Id20,
    /// For `wss://` trackers (none: they are not reached).
    tls: Option<Arc<rustls::ClientConfig>>,
    trackers: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Cmd>>>>,
    conns: mpsc::Sender<Connection>,
}

impl WebTorrentNode {
    /// `peer_id` is the node's BitTorrent peer id (sent to trackers).
    pub fn new(rtc: RtcEndpoint, peer_id: Id20) -> (Self, mpsc::Receiver<Connection>) {
        let (tx, rx) = mpsc::channel(CONNECTIONS_QUEUE);
        let node = WebTorrentNode {
            rtc,
            peer_id,
            tls: None,
            trackers: Arc::default(),
            conns: tx,
        };
        (node, rx)
    }

    /// The TLS client config for `wss://` trackers (certificate checks included: give
    /// one that verifies). Without it a `wss://` tracker is not reached.
    pub fn set_tls(&mut self, tls: Arc<rustls::ClientConfig>) {
        self.tls = Some(tls);
    }

    fn send(&self, url: &str, cmd: Cmd) {
        let mut t = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = t.get(url)
            && !tx.is_closed()
        {
            let _ = tx.send(cmd);
            return;
        }
        if !matches!(cmd, Cmd::Add(..)) {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(cmd);
        t.insert(url.to_owned(), tx);
        tokio::spawn(tracker_task(
            url.to_owned(),
            self.tls.clone(),
            self.peer_id,
            self.rtc.clone(),
            self.conns.clone(),
            rx,
        ));
    }

    /// Announces `info_hash` to the WebSocket tracker at `url` (`ws://`, or `wss://` with
    /// a TLS config set).
    pub fn add(&self, url: &str, info_hash: Id20, progress: ProgressFn) {
        self.send(url, Cmd::Add(info_hash, progress));
    }

    /// Stops announcing `info_hash` there.
    pub fn remove(&self, url: &str, info_hash: Id20) {
        self.send(url, Cmd::Remove(info_hash));
    }

    /// The torrent completed: a `completed` announce.
    pub fn completed(&self, url: &str, info_hash: Id20) {
        self.send(url, Cmd::Completed(info_hash));
    }
}

async fn tracker_task(
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    peer_id: Id20,
    rtc: RtcEndpoint,
    conns: mpsc::Sender<Connection>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let mut client = TrackerClient::new(
        peer_id,
        ClientConfig::default(),
        u64::from_le_bytes(seed),
        Instant::now(),
    );
    let mut progress: HashMap<Id20, ProgressFn> = HashMap::new();
    let mut offers: HashMap<Id20, (SessionId, PendingChannel)> = HashMap::new();
    let (done_tx, mut done) = mpsc::unbounded_channel::<Done>();
    let mut ws: Option<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    > = None;
    loop {
        // Events of the client.
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Connect => {
                    let (url, tx, tls) = (url.clone(), done_tx.clone(), tls.clone());
                    tokio::spawn(async move {
                        let secure = url
                            .get(..6)
                            .is_some_and(|s| s.eq_ignore_ascii_case("wss://"));
                        let connector = match (secure, tls) {
                            (false, _) => tokio_tungstenite::Connector::Plain,
                            (true, Some(tls)) => tokio_tungstenite::Connector::Rustls(tls),
                            (true, None) => {
                                tracing::debug!(%url, "websocket tracker: wss:// without a TLS config");
                                let _ = tx.send(Done::ConnectFailed);
                                return;
                            }
                        };
                        let c = tokio_tungstenite::connect_async_tls_with_config(
                            url.as_str(),
                            Some(ws_config()),
                            false,
                            Some(connector),
                        );
                        let r = match tokio::time::timeout(CONNECT_TIMEOUT, c).await {
                            Ok(Ok((ws, _))) => Done::Connected(Box::new(ws)),
                            Ok(Err(e)) => {
                                tracing::debug!(%url, "websocket tracker: {e}");
                                Done::ConnectFailed
                            }
                            Err(_) => Done::ConnectFailed,
                        };
                        let _ = tx.send(r);
                    });
                }
                ClientEvent::Close => {
                    if let Some(mut w) = ws.take() {
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, w.close(None)).await;
                    }
                    client.disconnected(Instant::now());
                }
                ClientEvent::WantOffers { info_hash, count } => {
                    let (rtc, tx) = (rtc.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let mut made = Vec::new();
                        for _ in 0..count {
                            match rtc.create_offer().await {
                                Ok(o) => made.push(o),
                                Err(e) => {
                                    tracing::debug!("webrtc offer: {e}");
                                    break;
                                }
                            }
                        }
                        let _ = tx.send(Done::Offers(info_hash, made));
                    });
                }
                ClientEvent::Offer(r) => {
                    // An SDP that is no offer is refused here, at once: a flood of them
                    // from made-up peers must not hold the torrent's room for answered
                    // peers (`max_answered_per_torrent`) while an honest offer comes in.
                    if let Err(e) = RtcEndpoint::check_offer(&r.sdp) {
                        tracing::debug!("webrtc offer refused: {e}");
                        client.peer_closed(&r.info_hash, &r.peer_id);
                        continue;
                    }
                    let (rtc, tx, conns) = (rtc.clone(), done_tx.clone(), conns.clone());
                    tokio::spawn(async move {
                        match rtc.accept_offer(r.sdp).await {
                            Ok((_, answer, pending)) => {
                                let _ = tx.send(Done::Answer(
                                    r.info_hash,
                                    r.peer_id,
                                    r.offer_id,
                                    answer,
                                ));
                                deliver(pending, r.info_hash, r.peer_id, false, conns, tx).await;
                            }
                            Err(e) => {
                                tracing::debug!("webrtc answer: {e}");
                                let _ = tx.send(Done::AnswerFailed(r.info_hash, r.peer_id));
                            }
                        }
                    });
                }
                ClientEvent::Answer(r) => {
                    if let Some((session, pending)) = offers.remove(&r.offer_id) {
                        let (rtc, tx, conns) = (rtc.clone(), done_tx.clone(), conns.clone());
                        tokio::spawn(async move {
                            match rtc.accept_answer(session, r.sdp).await {
                                Ok(()) => {
                                    deliver(pending, r.info_hash, r.peer_id, true, conns, tx).await;
                                }
                                Err(e) => tracing::debug!("webrtc answer from peer: {e}"),
                            }
                        });
                    }
                }
                ClientEvent::OfferExpired { offer_id } => {
                    if let Some((session, _)) = offers.remove(&offer_id) {
                        rtc.drop_session(session);
                    }
                }
                ClientEvent::Swarm { .. } => {}
                ClientEvent::Failure { reason, .. } => {
                    tracing::debug!(%url, %reason, "websocket tracker failure");
                }
            }
        }
        // Frames to write.
        if let Some(w) = ws.as_mut() {
            let mut failed = false;
            while let Some(text) = client.poll_transmit() {
                let send = w.send(Message::text(text));
                if !matches!(tokio::time::timeout(WRITE_TIMEOUT, send).await, Ok(Ok(()))) {
                    failed = true;
                    break;
                }
            }
            if failed {
                ws = None;
                client.disconnected(Instant::now());
                continue;
            }
        } else {
            while client.poll_transmit().is_some() {}
        }
        if client.torrents() == 0 && ws.is_none() && cmds.is_closed() {
            return;
        }
        let wake = client
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake));
        tokio::select! {
            _ = sleep => {
                for (ih, p) in &progress {
                    client.set_progress(ih, p());
                }
                client.handle_timeout(Instant::now());
            }
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Add(ih, p)) => {
                    client.add_torrent(ih, p(), Instant::now());
                    progress.insert(ih, p);
                    client.handle_timeout(Instant::now());
                }
                Some(Cmd::Remove(ih)) => {
                    progress.remove(&ih);
                    client.remove_torrent(&ih);
                }
                Some(Cmd::Completed(ih)) => {
                    if let Some(p) = progress.get(&ih) {
                        client.set_progress(&ih, p());
                    }
                    client.completed(&ih, Instant::now());
                }
                None => {
                    if client.torrents() == 0 {
                        return;
                    }
                    // The node is gone: stop every torrent.
                    for ih in progress.drain().map(|(ih, _)| ih) {
                        client.remove_torrent(&ih);
                    }
                }
            },
            d = done.recv() => match d {
                Some(Done::Connected(w)) => {
                    ws = Some(*w);
                    client.connected(Instant::now());
                    client.handle_timeout(Instant::now());
                }
                Some(Done::ConnectFailed) => client.disconnected(Instant::now()),
                Some(Done::Offers(ih, made)) => {
                    let sdps = made.iter().map(|(_, sdp, _)| sdp.clone()).collect();
                    let ids = client.provide_offers(&ih, sdps, Instant::now());
                    let mut made = made.into_iter();
                    for id in ids {
                        if let Some((session, _, pending)) = made.next() {
                            offers.insert(id, (session, pending));
                        }
                    }
                    // Offers not taken (no room, or the torrent went away).
                    for (session, _, _) in made {
                        rtc.drop_session(session);
                    }
                }
                Some(Done::Answer(ih, peer, offer_id, sdp)) => {
                    client.send_answer(ih, peer, offer_id, sdp);
                }
                Some(Done::AnswerFailed(ih, peer)) => client.peer_closed(&ih, &peer),
                Some(Done::PeerGone(ih, peer, lived)) => {
                    if lived < SHORT_LIVED {
                        client.peer_failed(&ih, &peer);
                    } else {
                        client.peer_closed(&ih, &peer);
                    }
                }
                None => {}
            },
            frame = async { ws.as_mut()?.next().await }, if ws.is_some() => match frame {
                Some(Ok(Message::Text(t))) => client.handle_message(t.as_str(), Instant::now()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    ws = None;
                    client.disconnected(Instant::now());
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Waits for a session's channel and hands it to the caller; reports the peer gone when
/// the channel does not open, and when the connection ends.
async fn deliver(
    pending: PendingChannel,
    info_hash: Id20,
    peer_id: Id20,
    outgoing: bool,
    conns: mpsc::Sender<Connection>,
    done: mpsc::UnboundedSender<Done>,
) {
    let Ok(mut channel) = pending.await else {
        // Never opened (unreachable, or went away): not a strike.
        let _ = done.send(Done::AnswerFailed(info_hash, peer_id));
        return;
    };
    let tx = done.clone();
    let opened = Instant::now();
    channel.on_drop(Box::new(move || {
        let _ = tx.send(Done::PeerGone(info_hash, peer_id, opened.elapsed()));
    }));
    let _ = conns.try_send(Connection {
        info_hash,
        peer_id,
        outgoing,
        channel,
    });
}
