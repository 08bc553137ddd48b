//! WebTorrent in the daemon: every running torrent whose .torrent or magnet link names
//! `ws://` or `wss://` trackers (or that was added with some) is announced there, through one
//! WebTorrent node of the daemon (one WebRTC socket, one WebSocket per tracker URL shared
//! by every torrent); its data channels become connections of the session, so a torrent
//! serves TCP/uTP and browser peers from the same pieces. A torrent that is paused or
//! removed is withdrawn. The node starts with the first torrent that needs it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use engine::session::{Session, TorrentBrief};
use metainfo::magnet::Magnet;
use webtorrent::client::Progress;
use webtorrent::node::WebTorrentNode;

use super::state::{Daemon, Source};

/// What the daemon's background loop keeps between passes.
#[derive(Default)]
pub struct Bridge {
    node: Option<WebTorrentNode>,
    /// The node could not start (no address): not tried again.
    failed: bool,
    /// The info-hash and WebSocket trackers of each running record (by record id),
    /// worked out once.
    urls: HashMap<u64, ([u8; 20], Arc<[String]>)>,
    /// What is announced now, by info-hash.
    announced: HashMap<[u8; 20], Arc<[String]>>,
}

/// The `ws://` and `wss://` trackers of a torrent (its metainfo's, or its magnet link's `tr`), then
/// `extra`, without duplicates.
fn urls_of(session: &Session, engine_id: u64, source: &Source, extra: &[String]) -> Arc<[String]> {
    let named: Vec<String> = match source {
        Source::Torrent(_) => session
            .metainfo(engine_id)
            .map(|m| m.trackers.iter().flatten().cloned().collect())
            .unwrap_or_default(),
        Source::Magnet(link) => Magnet::parse(link).map(|m| m.trackers).unwrap_or_default(),
    };
    crate::webtorrent_peer::only_ws(named.iter().chain(extra)).into()
}

impl Bridge {
    /// Brings the announces in line with the torrents that run now.
    pub async fn pass(&mut self, daemon: &Daemon, states: &[TorrentBrief]) {
        if !(daemon.config.trackers && daemon.config.webtorrent) || self.failed {
            return;
        }
        let session = &daemon.session;
        let mut want: HashMap<[u8; 20], Arc<[String]>> = HashMap::new();
        let mut seen = HashSet::new();
        for c in daemon.webtorrent_candidates(states) {
            seen.insert(c.id);
            let (ih, urls) = self
                .urls
                .entry(c.id)
                .or_insert_with(|| {
                    let urls = urls_of(session, c.engine_id, &c.source, &c.trackers);
                    (c.info_hash, urls)
                })
                .clone();
            if !urls.is_empty() {
                want.insert(ih, urls);
            }
        }
        self.urls.retain(|id, _| seen.contains(id));
        if want.is_empty() && self.announced.is_empty() {
            return;
        }
        if self.node.is_none() {
            let stun = daemon.config.stun.clone();
            let stun = tokio::task::spawn_blocking(move || {
                crate::webtorrent_peer::resolve_stun(stun.as_deref())
            })
            .await;
            let stun = match stun {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "webtorrent: STUN server not used");
                    None
                }
                Err(_) => None,
            };
            match crate::webtorrent_peer::start_node(session, stun).await {
                Ok((node, ips)) => {
                    tracing::info!(?ips, "webtorrent: webrtc on udp");
                    self.node = Some(node);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webtorrent: cannot start WebRTC; browser peers off");
                    self.failed = true;
                    return;
                }
            }
        }
        let Some(node) = &self.node else { return };
        self.announced.retain(|ih, urls| {
            let keep = want.get(ih) == Some(urls);
            if !keep {
                for u in urls.iter() {
                    node.remove(u, *ih);
                }
            }
            keep
        });
        for (ih, urls) in want {
            if self.announced.contains_key(&ih) {
                continue;
            }
            for u in urls.iter() {
                let (s, info_hash) = (session.clone(), ih);
                let progress = Arc::new(move || {
                    let Some(i) = s.find(&info_hash).and_then(|id| s.info(id)) else {
                        return Progress::default();
                    };
                    Progress {
                        uploaded: i.stats.uploaded,
                        downloaded: i.stats.downloaded,
                        left: i
                            .has_metadata
                            .then(|| i.stats.total_bytes.saturating_sub(i.stats.bytes_have)),
                    }
                });
                node.add(u, ih, progress);
            }
            self.announced.insert(ih, urls);
        }
    }
}
