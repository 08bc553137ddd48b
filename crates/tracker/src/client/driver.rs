//! The task that keeps one torrent announced: it runs the [`Announcer`] schedule (BEP 12)
//! against real time, sends each announce through a [`TrackerClient`], hands the peers to
//! the engine and reports each tracker's state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::http::is_routable;
use super::{Announcer, TrackerClient, TrackerError};
use crate::proto::{AnnounceEvent, AnnounceRequest, AnnounceResponse};

/// How long the final `stopped` announces may take in all.
const STOP_BUDGET: Duration = Duration::from_secs(5);

/// The torrent's transfer counters, as the engine sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub uploaded: u64,
    pub downloaded: u64,
    /// Bytes still to download; 0 once complete.
    pub left: u64,
}

/// What the last announce to one tracker gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerStatus {
    pub url: String,
    /// Tier index in the announce-list (empty tiers not counted).
    pub tier: usize,
    /// The error of the last announce, if it failed.
    pub last_error: Option<String>,
    /// The tracker's `warning message` from its last answer.
    pub warning: Option<String>,
    /// Peers in the last successful answer.
    pub peers_received: usize,
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    /// Announces answered so far.
    pub successes: u32,
}

/// Seed for shuffling the tiers: different per torrent and per run.
fn seed(base: &AnnounceRequest) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(&base.info_hash);
    h.finish()
}

/// The driver's own state besides the schedule.
struct Run {
    client: TrackerClient,
    base: AnnounceRequest,
    announcer: Announcer,
    statuses: Vec<TrackerStatus>,
    tracker_ids: HashMap<String, Vec<u8>>,
    peers: mpsc::Sender<Vec<SocketAddr>>,
    status: watch::Sender<Vec<TrackerStatus>>,
}

impl Run {
    /// Feed the outcome of one announce to the schedule, the peers channel and the status.
    /// `None` as `result` means it was abandoned because we are stopping.
    fn record(
        &mut self,
        url: &str,
        event: AnnounceEvent,
        result: Option<Result<AnnounceResponse, TrackerError>>,
    ) {
        let now = Instant::now().into_std();
        let max_peers = self.client.config().max_peers;
        let entry = self.statuses.iter_mut().find(|s| s.url == url);
        match result {
            None => self.announcer.on_failure(now, url),
            Some(Ok(resp)) => {
                self.announcer.on_success(now, url, &resp);
                if let Some(id) = &resp.tracker_id {
                    self.tracker_ids.insert(url.to_string(), id.clone());
                }
                let list: Vec<SocketAddr> = resp
                    .peers
                    .iter()
                    .filter(|a| is_routable(a))
                    .take(max_peers)
                    .copied()
                    .collect();
                if let Some(s) = entry {
                    s.last_error = None;
                    s.warning = resp.warning.clone();
                    s.peers_received = list.len();
                    s.seeders = resp.complete;
                    s.leechers = resp.incomplete;
                    s.successes += 1;
                }
                if !list.is_empty() && event != AnnounceEvent::Stopped {
                    // A full queue means the engine is behind: these peers can wait for
                    // the next announce rather than block the schedule.
                    let _ = self.peers.try_send(list);
                }
            }
            Some(Err(e)) => {
                self.announcer.on_failure(now, url);
                if let Some(s) = entry {
                    s.last_error = Some(e.to_string());
                }
            }
        }
        self.status.send_replace(self.statuses.clone());
    }

    fn request(&self, event: AnnounceEvent, p: Progress) -> AnnounceRequest {
        AnnounceRequest {
            uploaded: p.uploaded,
            downloaded: p.downloaded,
            left: p.left,
            event,
            // Leaving: no peers wanted.
            numwant: match event {
                AnnounceEvent::Stopped => Some(0),
                _ => self.base.numwant,
            },
            ..self.base.clone()
        }
    }
}

/// Announce one torrent to its trackers until `stop` turns true (or its sender goes away),
/// then send `stopped`, bounded by a few seconds. `base` gives the info-hash, peer id, port,
/// key and numwant; the counters come from `progress`, and `completed` is sent when
/// `progress.left` goes from non-zero to zero. Peers go to `peers` (at most the client's
/// `max_peers` per answer, unroutable ones dropped); failures are reported in `status` and
/// retried with backoff, never fatal.
pub async fn run_announcer(
    client: TrackerClient,
    tiers: Vec<Vec<String>>,
    base: AnnounceRequest,
    mut progress: watch::Receiver<Progress>,
    peers: mpsc::Sender<Vec<SocketAddr>>,
    status: watch::Sender<Vec<TrackerStatus>>,
    mut stop: watch::Receiver<bool>,
) {
    let announcer = Announcer::new(tiers, seed(&base), Instant::now().into_std());
    let statuses: Vec<TrackerStatus> = announcer
        .tiers()
        .iter()
        .enumerate()
        .flat_map(|(tier, trackers)| {
            trackers.iter().map(move |t| TrackerStatus {
                url: t.url.clone(),
                tier,
                ..Default::default()
            })
        })
        .collect();
    status.send_replace(statuses.clone());
    let mut run = Run {
        client,
        base,
        announcer,
        statuses,
        tracker_ids: HashMap::new(),
        peers,
        status,
    };
    let mut left = progress.borrow().left;
    let mut progress_open = true;

    loop {
        if *stop.borrow() || stop.has_changed().is_err() {
            break;
        }
        let p = *progress.borrow_and_update();
        if left > 0 && p.left == 0 {
            run.announcer.on_completed(Instant::now().into_std());
        }
        left = p.left;

        if let Some((url, event)) = run.announcer.next_action(Instant::now().into_std()) {
            let req = run.request(event, p);
            let tracker_id = run.tracker_ids.get(&url).cloned();
            let result = tokio::select! {
                r = run.client.announce(&url, &req, tracker_id.as_deref()) => Some(r),
                _ = stop.wait_for(|s| *s) => None,
            };
            run.record(&url, event, result);
            continue;
        }

        let deadline = run.announcer.poll_timeout().map(Instant::from_std);
        tokio::select! {
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = stop.changed() => {}
            r = progress.changed(), if progress_open => progress_open = r.is_ok(),
        }
    }

    // A download that completed just before stopping still says `completed` first, so the
    // tracker counts it (libtorrent and Transmission do the same).
    let p = *progress.borrow();
    if left > 0 && p.left == 0 {
        run.announcer.on_completed(Instant::now().into_std());
    }
    let _ = tokio::time::timeout(STOP_BUDGET / 2, async {
        if run.announcer.completed_pending()
            && let Some((url, event)) = run.announcer.next_action(Instant::now().into_std())
        {
            let req = run.request(event, p);
            let tracker_id = run.tracker_ids.get(&url).cloned();
            let result = run.client.announce(&url, &req, tracker_id.as_deref()).await;
            run.record(&url, event, Some(result));
        }
    })
    .await;

    // Tell the trackers that know us that we leave; never hold up shutdown for long.
    run.announcer.on_stop(Instant::now().into_std());
    let _ = tokio::time::timeout(STOP_BUDGET, async {
        while let Some((url, event)) = run.announcer.next_action(Instant::now().into_std()) {
            let req = run.request(event, p);
            let tracker_id = run.tracker_ids.get(&url).cloned();
            let result = run.client.announce(&url, &req, tracker_id.as_deref()).await;
            run.record(&url, event, Some(result));
        }
    })
    .await;
}
