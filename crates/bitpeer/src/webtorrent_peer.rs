//! WebTorrent for `download` and `seed`: the torrent's `ws://` and `wss://` trackers (and those given
//! with `--webtorrent-tracker`) introduce browser and Node WebTorrent peers; their WebRTC
//! data channels become ordinary peer connections of the session (routed by their
//! handshake, like any incoming stream), so one torrent serves TCP and WebRTC peers from
//! the same pieces.

use std::sync::Arc;

use engine::session::Session;
use engine::torrent::Torrent;
use engine::transport::{PeerAddr, PeerStream, TransportKind};
use webtorrent::client::Progress;
use webtorrent::node::WebTorrentNode;
use webtorrent::rtc::{RtcConfig, RtcEndpoint};

use crate::{CliError, CliResult};

/// The WebSocket tracker URLs of a torrent, then the extra ones, without duplicates.
pub fn ws_urls(meta: &metainfo::Metainfo, extra: &[String]) -> Vec<String> {
    only_ws(meta.trackers.iter().flatten().chain(extra))
}

/// The WebSocket tracker URLs among `urls`, in order, without duplicates.
pub fn only_ws<'a>(urls: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in urls {
        if is_ws_url(u) && !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

/// Checks a `--webtorrent-tracker` value.
pub fn check_url(url: &str) -> CliResult<()> {
    check_ws_url(url).map_err(|e| CliError::new(format!("--webtorrent-tracker {e}")))
}

/// Checks a WebSocket tracker URL given by a user (the message starts with the URL).
pub fn check_ws_url(url: &str) -> Result<(), String> {
    if is_ws_url(url) {
        Ok(())
    } else {
        let shown: String = url.chars().take(200).collect();
        Err(format!(
            "{shown}: not a WebSocket tracker URL (ws://HOST:PORT/... or wss://HOST/...)"
        ))
    }
}

/// A `ws://` or `wss://` URL of at most 2048 bytes.
pub fn is_ws_url(url: &str) -> bool {
    let lower = url.get(..6).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("ws://") || lower.starts_with("wss://")) && url.len() <= 2048
}

/// The address of a `--stun HOST:PORT` (its first IPv4 one, else the first).
pub fn resolve_stun(stun: Option<&str>) -> CliResult<Option<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    let Some(s) = stun else { return Ok(None) };
    let addrs: Vec<std::net::SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| CliError::new(format!("--stun {s}: {e} (give HOST:PORT)")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .map(Some)
        .ok_or_else(|| CliError::new(format!("--stun {s}: no address")))
}

/// A 64-bit id for a WebRTC peer (its tracker peer id folded).
fn fold(peer_id: &[u8; 20]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in peer_id {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Starts WebTorrent for `torrent` on `urls` (none: nothing is started). Returns the
/// IPs of its UDP sockets (each WebRTC session has one per IP, the host candidates).
pub async fn start(
    session: &Session,
    torrent: &Torrent,
    urls: &[String],
    stun: Option<std::net::SocketAddr>,
) -> CliResult<Option<Vec<std::net::IpAddr>>> {
    let urls: Vec<&String> = urls.iter().filter(|u| is_ws_url(u)).collect();
    if urls.is_empty() {
        return Ok(None);
    }
    let (node, local) = start_node(session, stun).await?;
    let info_hash = torrent.info_hash();
    for url in urls {
        let t = torrent.clone();
        let progress = Arc::new(move || {
            let s = t.stats();
            Progress {
                uploaded: s.uploaded,
                downloaded: s.downloaded,
                left: Some(s.total_bytes.saturating_sub(s.bytes_have)),
            }
        });
        node.add(url, info_hash, progress);
    }
    Ok(Some(local))
}

/// The WebRTC endpoint (on the session's listening IP, or on each of the node's addresses
/// when that is unspecified; their list is returned) and a WebTorrent node whose data
/// channels become connections of `session`: routed by their handshake when the remote
/// peer made the offer, dialled (our handshake first) when we did. With `stun`, each
/// session also offers the public address that STUN server sees.
pub async fn start_node(
    session: &Session,
    stun: Option<std::net::SocketAddr>,
) -> CliResult<(WebTorrentNode, Vec<std::net::IpAddr>)> {
    let mut config = RtcConfig {
        stun,
        ..RtcConfig::default()
    };
    let listen = session.listen_addr();
    if !listen.ip().is_unspecified() {
        config.bind.set_ip(listen.ip());
    }
    let rtc = RtcEndpoint::start(config)
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    let local = rtc.local_ips().to_vec();
    let (mut node, mut conns) = WebTorrentNode::new(rtc, session.peer_id());
    // wss:// trackers: rustls as for HTTPS trackers (the system's roots).
    let tls = tracker::client::tls_config(&[]).map_err(|e| CliError::new(e.to_string()))?;
    node.set_tls(Arc::new(tls));
    let session = session.clone();
    let kept = node.clone();
    tokio::spawn(async move {
        // The node lives as long as this task (as long as the process): the tracker
        // tasks stop when every handle is gone.
        let _node = kept;
        while let Some(c) = conns.recv().await {
            let id = fold(&c.peer_id);
            tracing::debug!(peer = id, outgoing = c.outgoing, "webrtc data channel open");
            let (read, write) = tokio::io::split(c.channel);
            let stream = PeerStream {
                kind: TransportKind::WebRtc,
                remote: PeerAddr::Opaque {
                    kind: TransportKind::WebRtc,
                    id,
                },
                encrypted: true,
                read: Box::new(read),
                write: Box::new(write),
            };
            // The side that made the offer sends the BitTorrent handshake first (as a
            // dialler); the answering side waits for it and routes by it. WebTorrent
            // peers send theirs at once either way, but another bitpeer waits.
            if c.outgoing {
                session.outgoing(&c.info_hash, stream);
            } else {
                session.incoming(stream);
            }
        }
    });
    Ok((node, local))
}
