//! When to announce, with which event, to which tracker: a sans-IO state machine for one
//! torrent, following the multitracker rules of BEP 12.
//!
//! The trackers come in tiers (`announce-list`), each tier shuffled once. Announces go to
//! the first tracker, in tier order, that is not backing off after a failure; a tracker that
//! answers moves to the front of its tier, so it is asked first next time. A failing tracker
//! waits 15 s, then 30 s, 60 s, ... up to 30 minutes (never less than its `min interval`)
//! before it is tried again, while the next one is tried at once.
//!
//! Events: `started` until some tracker has accepted it, `completed` once after the download
//! finishes, `stopped` on shutdown (only if a tracker knows about us), and plain announces
//! every `interval` in between. One announce is in flight at a time.
//!
//! The owner drives it with an explicit `now`: [`Announcer::next_action`] says what to send,
//! [`Announcer::on_success`]/[`Announcer::on_failure`] report how it went, and
//! [`Announcer::poll_timeout`] says when to ask again.

use std::time::{Duration, Instant};

use crate::proto::{AnnounceEvent, AnnounceResponse};

/// First wait after a tracker fails; it doubles with each further failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(15);
/// Longest wait after failures.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30 * 60);
/// Shortest re-announce interval we accept, whatever a tracker says.
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(30);
/// Longest re-announce interval we accept, so a tracker cannot make us forget it.
pub const MAX_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// What the announcer knows about one tracker.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub url: String,
    /// Failures in a row.
    pub failures: u32,
    /// Not to be asked before this, after a failure.
    pub retry_at: Option<Instant>,
    /// The tracker's `min interval`, if it gave one.
    pub min_interval: Option<Duration>,
}

/// The announce schedule of one torrent.
#[derive(Debug)]
pub struct Announcer {
    tiers: Vec<Vec<Tracker>>,
    /// When the next announce is due (immediately for an event).
    due: Instant,
    /// Some tracker has accepted `started`.
    started: bool,
    /// The download finished and `completed` has not been accepted yet.
    completed_pending: bool,
    /// A tracker accepted `completed`: it is never sent again in this session.
    completed_sent: bool,
    stopping: bool,
    /// Nothing more to send.
    finished: bool,
    in_flight: Option<(String, AnnounceEvent)>,
}

/// A small seeded generator (SplitMix64): enough to shuffle tiers reproducibly.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The wait after `failures` failures in a row (at least 1).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_BASE * (1u32 << doublings)).min(BACKOFF_MAX)
}

impl Announcer {
    /// An announcer for `tiers` (the torrent's `announce-list`, or `[[announce]]`). Empty
    /// URLs, duplicates and empty tiers are dropped; each tier is shuffled with `seed`.
    /// `ws://` and `wss://` URLs are left out (they are WebTorrent signalling trackers).
    pub fn new(tiers: Vec<Vec<String>>, seed: u64, now: Instant) -> Self {
        let mut rng = seed;
        let mut seen = std::collections::HashSet::new();
        let tiers: Vec<Vec<Tracker>> = tiers
            .into_iter()
            .map(|tier| {
                let mut tier: Vec<Tracker> = tier
                    .into_iter()
                    .map(|u| u.trim().to_string())
                    // WebSocket (WebTorrent) trackers are announced to by the webtorrent crate.
                    .filter(|u| !u.is_empty() && !is_websocket(u) && seen.insert(u.clone()))
                    .map(|url| Tracker {
                        url,
                        failures: 0,
                        retry_at: None,
                        min_interval: None,
                    })
                    .collect();
                // Fisher-Yates, as BEP 12 asks: spread clients over a tier's trackers.
                for i in (1..tier.len()).rev() {
                    let j = (splitmix(&mut rng) % (i as u64 + 1)) as usize;
                    tier.swap(i, j);
                }
                tier
            })
            .filter(|tier| !tier.is_empty())
            .collect();
        let finished = tiers.is_empty();
        Announcer {
            tiers,
            due: now,
            started: false,
            completed_pending: false,
            completed_sent: false,
            stopping: false,
            finished,
            in_flight: None,
        }
    }

    /// The trackers, tier by tier, in the order they would be asked.
    pub fn tiers(&self) -> &[Vec<Tracker>] {
        &self.tiers
    }

    /// `completed` is waiting to be sent.
    pub fn completed_pending(&self) -> bool {
        self.completed_pending
    }

    /// Nothing more will be sent: stopped, or no trackers at all.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The announce to send now, if any: the tracker's URL and the event. The caller must
    /// answer with [`on_success`](Self::on_success) or [`on_failure`](Self::on_failure).
    pub fn next_action(&mut self, now: Instant) -> Option<(String, AnnounceEvent)> {
        if self.finished || self.in_flight.is_some() || now < self.due {
            return None;
        }
        let Some(url) = self
            .tiers
            .iter()
            .flatten()
            .find(|t| t.retry_at.is_none_or(|at| at <= now))
            .map(|t| t.url.clone())
        else {
            if self.stopping {
                // Every tracker is backing off: give up on telling them we stop.
                self.finished = true;
            }
            return None;
        };
        let event = if self.stopping {
            AnnounceEvent::Stopped
        } else if !self.started {
            AnnounceEvent::Started
        } else if self.completed_pending {
            AnnounceEvent::Completed
        } else {
            AnnounceEvent::None
        };
        self.in_flight = Some((url.clone(), event));
        Some((url, event))
    }

    /// When [`next_action`](Self::next_action) may next have something to send; `None`
    /// while an announce is in flight or when finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished || self.in_flight.is_some() {
            return None;
        }
        let mut available = None::<Instant>;
        for t in self.tiers.iter().flatten() {
            match t.retry_at {
                None => return Some(self.due),
                Some(at) => available = Some(available.map_or(at, |a| a.min(at))),
            }
        }
        available.map(|a| a.max(self.due))
    }

    /// Take the in-flight announce if it went to `url`.
    fn take_in_flight(&mut self, url: &str) -> Option<AnnounceEvent> {
        match &self.in_flight {
            Some((u, event)) if u == url => {
                let event = *event;
                self.in_flight = None;
                Some(event)
            }
            _ => None,
        }
    }

    fn position(&self, url: &str) -> Option<(usize, usize)> {
        self.tiers
            .iter()
            .enumerate()
            .find_map(|(i, tier)| tier.iter().position(|t| t.url == url).map(|j| (i, j)))
    }

    /// The tracker at `url` answered the in-flight announce.
    pub fn on_success(&mut self, now: Instant, url: &str, resp: &AnnounceResponse) {
        let Some(event) = self.take_in_flight(url) else {
            return;
        };
        let min_interval = resp.min_interval.map(|s| Duration::from_secs(s.into()));
        if let Some((i, j)) = self.position(url) {
            let mut tracker = self.tiers[i].remove(j);
            tracker.failures = 0;
            tracker.retry_at = None;
            tracker.min_interval = min_interval;
            self.tiers[i].insert(0, tracker);
        }
        match event {
            AnnounceEvent::Started => self.started = true,
            AnnounceEvent::Completed => {
                self.completed_pending = false;
                self.completed_sent = true;
            }
            AnnounceEvent::Stopped => {
                self.finished = true;
                return;
            }
            AnnounceEvent::None => {}
        }
        let interval = Duration::from_secs(resp.interval.into())
            .max(min_interval.unwrap_or_default())
            .clamp(MIN_ANNOUNCE_INTERVAL, MAX_ANNOUNCE_INTERVAL);
        self.due = if self.completed_pending || self.stopping {
            now
        } else {
            now + interval
        };
    }

    /// The in-flight announce to `url` failed (network, timeout, bad answer, or the
    /// tracker's `failure reason`). The tracker backs off; the next one may be tried now.
    pub fn on_failure(&mut self, now: Instant, url: &str) {
        if self.take_in_flight(url).is_none() {
            return;
        }
        if let Some((i, j)) = self.position(url) {
            let t = &mut self.tiers[i][j];
            t.failures = t.failures.saturating_add(1);
            let wait = backoff(t.failures).max(t.min_interval.unwrap_or_default());
            t.retry_at = Some(now + wait);
        }
    }

    /// The download finished: send `completed` as soon as possible, once per session even
    /// if the download finishes again.
    pub fn on_completed(&mut self, now: Instant) {
        if self.stopping || self.completed_sent {
            return;
        }
        self.completed_pending = true;
        if self.started {
            self.due = self.due.min(now);
        }
    }

    /// Shutting down: send `stopped` to a tracker that knows us, then finish. If no tracker
    /// ever accepted `started`, there is nobody to tell.
    pub fn on_stop(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let announced = self.started || matches!(self.in_flight, Some((_, AnnounceEvent::Started)));
        if !announced {
            self.finished = true;
        }
        self.due = self.due.min(now);
        // A tracker backing off may still be the one that knows us; try them all once.
        for t in self.tiers.iter_mut().flatten() {
            t.retry_at = None;
        }
    }
}

/// Whether `url` is a WebSocket tracker's (`ws://`, `wss://`).
fn is_websocket(url: &str) -> bool {
    let lower = url.get(..6).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("ws://") || lower.starts_with("wss://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(interval: u32) -> AnnounceResponse {
        AnnounceResponse {
            interval,
            ..Default::default()
        }
    }

    fn tiers(t: &[&[&str]]) -> Vec<Vec<String>> {
        t.iter()
            .map(|tier| tier.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn started_then_interval_then_completed_then_stopped() {
        let t0 = Instant::now();
        let mut a = Announcer::new(tiers(&[&["http://a/announce"]]), 1, t0);
        assert_eq!(a.poll_timeout(), Some(t0));
        let (url, ev) = a.next_action(t0).unwrap();
        assert_eq!(ev, AnnounceEvent::Started);
        assert_eq!(a.next_action(t0), None, "one announce in flight at a time");
        assert_eq!(a.poll_timeout(), None);
        a.on_success(t0, &url, &ok(600));
        assert_eq!(a.poll_timeout(), Some(t0 + secs(600)));
        assert_eq!(a.next_action(t0 + secs(599)), None);
        let (url, ev) = a.next_action(t0 + secs(600)).unwrap();
        assert_eq!(ev, AnnounceEvent::None);
        a.on_success(t0 + secs(600), &url, &ok(600));

        a.on_completed(t0 + secs(700));
        assert_eq!(a.poll_timeout(), Some(t0 + secs(700)));
        let (url, ev) = a.next_action(t0 + secs(700)).unwrap();
        assert_eq!(ev, AnnounceEvent::Completed);
        a.on_success(t0 + secs(700), &url, &ok(600));
        a.on_completed(t0 + secs(800));
        let (_, ev) = a.next_action(t0 + secs(1300)).unwrap();
        assert_eq!(ev, AnnounceEvent::None, "completed is sent once");
        a.on_failure(t0 + secs(1300), &url);

        a.on_stop(t0 + secs(1301));
        let (url, ev) = a.next_action(t0 + secs(1301)).unwrap();
        assert_eq!(ev, AnnounceEvent::Stopped);
        a.on_success(t0 + secs(1301), &url, &ok(600));
        assert!(a.is_finished());
        assert_eq!(a.next_action(t0 + secs(99_999)), None);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn failures_back_off_and_move_on_through_the_tiers() {
        let t0 = Instant::now();
        let mut a = Announcer::new(
            tiers(&[&["udp://a:1", "wss://w/"], &["udp://b:1"], &["ws://w:1"]]),
            7,
            t0,
        );
        let (url, _) = a.next_action(t0).unwrap();
        assert_eq!(url, "udp://a:1");
        a.on_failure(t0, &url);
        let (url, ev) = a.next_action(t0).unwrap();
        assert_eq!((url.as_str(), ev), ("udp://b:1", AnnounceEvent::Started));
        a.on_failure(t0, &url);
        // Both back off 15 s.
        assert_eq!(a.next_action(t0 + secs(14)), None);
        assert_eq!(a.poll_timeout(), Some(t0 + secs(15)));
        let (url, _) = a.next_action(t0 + secs(15)).unwrap();
        assert_eq!(url, "udp://a:1", "the first tier is preferred again");
        a.on_failure(t0 + secs(15), &url);
        // a now waits 30 s; b is free again at 15 s.
        let (url, _) = a.next_action(t0 + secs(15)).unwrap();
        assert_eq!(url, "udp://b:1");
        a.on_success(t0 + secs(15), &url, &ok(1800));
        assert_eq!(a.poll_timeout(), Some(t0 + secs(15 + 1800)));
        let (url, ev) = a.next_action(t0 + secs(15 + 1800)).unwrap();
        assert_eq!((url.as_str(), ev), ("udp://a:1", AnnounceEvent::None));
    }

    #[test]
    fn backoff_doubles_up_to_thirty_minutes() {
        assert_eq!(backoff(1), secs(15));
        assert_eq!(backoff(2), secs(30));
        assert_eq!(backoff(5), secs(240));
        assert_eq!(backoff(8), secs(1800));
        assert_eq!(backoff(u32::MAX), secs(1800));

        let t0 = Instant::now();
        let mut a = Announcer::new(tiers(&[&["x"]]), 0, t0);
        let mut now = t0;
        for expected in [15, 30, 60, 120, 240, 480, 960, 1800, 1800] {
            let (url, _) = a.next_action(now).unwrap();
            a.on_failure(now, &url);
            assert_eq!(a.poll_timeout(), Some(now + secs(expected)));
            now += secs(expected);
        }
    }

    #[test]
    fn min_interval_is_honoured() {
        let t0 = Instant::now();
        let mut a = Announcer::new(tiers(&[&["x"]]), 0, t0);
        let (url, _) = a.next_action(t0).unwrap();
        let resp = AnnounceResponse {
            interval: 60,
            min_interval: Some(300),
            ..Default::default()
        };
        a.on_success(t0, &url, &resp);
        assert_eq!(a.poll_timeout(), Some(t0 + secs(300)));
        let (url, _) = a.next_action(t0 + secs(300)).unwrap();
        a.on_failure(t0 + secs(300), &url);
        assert_eq!(
            a.poll_timeout(),
            Some(t0 + secs(600)),
            "backoff >= min interval"
        );
    }

    #[test]
    fn hostile_intervals_are_clamped() {
        let t0 = Instant::now();
        let mut a = Announcer::new(tiers(&[&["x"]]), 0, t0);
        let (url, _) = a.next_action(t0).unwrap();
        a.on_success(t0, &url, &ok(0));
        assert_eq!(a.poll_timeout(), Some(t0 + MIN_ANNOUNCE_INTERVAL));
        let (url, _) = a.next_action(t0 + MIN_ANNOUNCE_INTERVAL).unwrap();
        a.on_success(t0, &url, &ok(u32::MAX));
        assert_eq!(a.poll_timeout(), Some(t0 + MAX_ANNOUNCE_INTERVAL));
    }

    #[test]
    fn success_moves_tracker_to_front_of_its_tier() {
        let t0 = Instant::now();
        let list = tiers(&[&["a", "b", "c", "d"]]);
        let mut a = Announcer::new(list, 3, t0);
        let order: Vec<String> = a.tiers()[0].iter().map(|t| t.url.clone()).collect();
        // Fail the first two, the third answers.
        for _ in 0..2 {
            let (url, _) = a.next_action(t0).unwrap();
            a.on_failure(t0, &url);
        }
        let (url, _) = a.next_action(t0).unwrap();
        assert_eq!(url, order[2]);
        a.on_success(t0, &url, &ok(100));
        let now: Vec<&str> = a.tiers()[0].iter().map(|t| t.url.as_str()).collect();
        assert_eq!(now, [&order[2], &order[0], &order[1], &order[3]]);
    }

    #[test]
    fn tiers_are_shuffled_by_seed() {
        let list: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
        let order = |seed| {
            let a = Announcer::new(vec![list.clone()], seed, Instant::now());
            a.tiers()[0]
                .iter()
                .map(|t| t.url.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(order(5), order(5));
        assert_ne!(order(5), order(6));
        let mut sorted = order(5);
        sorted.sort();
        assert_eq!(sorted, list);
    }

    #[test]
    fn duplicates_and_empty_tiers_are_dropped() {
        let a = Announcer::new(
            tiers(&[&["a", " a ", ""], &[], &["a", "b"]]),
            0,
            Instant::now(),
        );
        let urls: Vec<Vec<&str>> = a
            .tiers()
            .iter()
            .map(|t| t.iter().map(|t| t.url.as_str()).collect())
            .collect();
        assert_eq!(urls, vec![vec!["a"], vec!["b"]]);
        let mut none = Announcer::new(vec![], 0, Instant::now());
        assert!(none.is_finished());
        assert_eq!(none.next_action(Instant::now()), None);
    }

    #[test]
    fn stop_before_any_success_sends_nothing() {
        let t0 = Instant::now();
        let mut a = Announcer::new(tiers(&[&["a"]]), 0, t0);
        let (url, _) = a.next_action(t0).unwrap();
        a.on_failure(t0, &url);
        a.on_stop(t0);
        assert!(a.is_finished());
        assert_eq!(a.next_action(t0), None);
    }

    #[test]
    fn stop_gives_up_when_every_tracker_fails() {
        let t0 = Instant::now();
        let mut a = Announcer::new(tiers(&[&["a"], &["b"]]), 0, t0);
        let (url, _) = a.next_action(t0).unwrap();
        a.on_success(t0, &url, &ok(600));
        a.on_stop(t0 + secs(1));
        for _ in 0..2 {
            let (url, ev) = a.next_action(t0 + secs(1)).unwrap();
            assert_eq!(ev, AnnounceEvent::Stopped);
            a.on_failure(t0 + secs(1), &url);
        }
        assert_eq!(a.next_action(t0 + secs(1)), None);
        assert!(a.is_finished());
    }

    #[test]
    fn completed_before_started_waits_for_started() {
        let t0 = Instant::now();
        let mut a = Announcer::new(tiers(&[&["a"]]), 0, t0);
        a.on_completed(t0);
        let (url, ev) = a.next_action(t0).unwrap();
        assert_eq!(ev, AnnounceEvent::Started);
        a.on_success(t0, &url, &ok(600));
        let (_, ev) = a.next_action(t0).unwrap();
        assert_eq!(ev, AnnounceEvent::Completed);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u64),
        Succeed(u32, Option<u32>),
        Fail,
        Complete,
        Stop,
        WakeAtTimeout,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u64..4000).prop_map(Op::Advance),
            (any::<u32>(), proptest::option::of(any::<u32>())).prop_map(|(i, m)| Op::Succeed(i, m)),
            Just(Op::Fail),
            Just(Op::Complete),
            Just(Op::Stop),
            Just(Op::WakeAtTimeout),
        ]
    }

    proptest::proptest! {
        /// Whatever happens: one announce in flight at most, `poll_timeout` never promises
        /// an announce that `next_action` then refuses, `stopped` is the last event, and
        /// `completed` goes out at most once.
        #[test]
        fn schedule_invariants(seed: u64, ops in proptest::collection::vec(op(), 0..80)) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut a = Announcer::new(tiers(&[&["a", "b"], &["c"]]), seed, t0);
            let mut in_flight: Option<(String, AnnounceEvent)> = None;
            let mut completed_ok = 0;
            let mut stopped_ok = false;
            for op in ops {
                match op {
                    Op::Advance(s) => now += secs(s),
                    Op::Succeed(interval, min_interval) => {
                        if let Some((url, event)) = in_flight.take() {
                            let resp = AnnounceResponse { interval, min_interval, ..Default::default() };
                            a.on_success(now, &url, &resp);
                            completed_ok += usize::from(event == AnnounceEvent::Completed);
                            stopped_ok |= event == AnnounceEvent::Stopped;
                        }
                    }
                    Op::Fail => {
                        if let Some((url, _)) = in_flight.take() {
                            a.on_failure(now, &url);
                        }
                    }
                    Op::Complete => a.on_completed(now),
                    Op::Stop => a.on_stop(now),
                    Op::WakeAtTimeout => {
                        if let Some(t) = a.poll_timeout() {
                            proptest::prop_assert!(in_flight.is_none());
                            now = now.max(t);
                            let action = a.next_action(now);
                            proptest::prop_assert!(action.is_some(), "poll_timeout promised an announce");
                            in_flight = action;
                        }
                    }
                }
                if let Some(action) = a.next_action(now) {
                    proptest::prop_assert!(in_flight.is_none(), "two announces in flight");
                    proptest::prop_assert!(!stopped_ok, "announce after stopped");
                    in_flight = Some(action);
                }
                proptest::prop_assert!(completed_ok <= 1);
                if stopped_ok {
                    proptest::prop_assert!(a.is_finished());
                }
            }
        }
    }

    #[test]
    fn stale_answers_are_ignored() {
        let t0 = Instant::now();
        let mut a = Announcer::new(tiers(&[&["a"], &["b"]]), 0, t0);
        let (url, _) = a.next_action(t0).unwrap();
        a.on_success(t0, "b", &ok(5));
        a.on_failure(t0, "b");
        assert_eq!(a.poll_timeout(), None, "still waiting for {url}");
        a.on_success(t0, &url, &ok(600));
        assert_eq!(a.poll_timeout(), Some(t0 + secs(600)));
    }
}
