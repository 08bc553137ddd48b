//! The timed rules of one peer connection (sans-IO): idle timeout, keep-alive, request
//! timeout (snubbing), the receive-rate estimate and the request pipeline depth it
//! implies. The connection loop tells [`PeerTimers`] what happened and when; it asks
//! [`PeerTimers::poll_timeout`] when to wake next and [`PeerTimers::handle_timeout`] what
//! to do then. No clock and no socket in here, so every rule is tested with virtual time.

use std::time::{Duration, Instant};

/// The limits of [`PeerTimers`]; BEP 3 peers send a keep-alive every two minutes.
#[derive(Debug, Clone, Copy)]
pub struct TimerConfig {
    /// A connection that sends us nothing for this long is closed.
    pub idle_timeout: Duration,
    /// We send a keep-alive after this long without sending anything.
    pub keepalive: Duration,
    /// A peer that sends none of the blocks we asked for in this long is snubbed: its
    /// requests go to other peers.
    pub request_timeout: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            idle_timeout: Duration::from_secs(180),
            keepalive: Duration::from_secs(90),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What the connection must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// Nothing came from the peer for the idle timeout: close.
    Idle,
    SendKeepAlive,
    /// Outstanding requests got no block for the request timeout: cancel them, give them
    /// to other peers, and mark the peer snubbed (the choker won't reward it).
    Snubbed,
}

/// The receive rate over the last seconds: bytes per one-second window, each new window
/// averaged with the previous estimate (a half-life of about a second).
#[derive(Debug, Clone, Copy)]
pub struct RateEstimate {
    window_start: Instant,
    window_bytes: u64,
    rate: u64,
}

impl RateEstimate {
    const WINDOW: Duration = Duration::from_secs(1);
    /// How much of the current window [`RateEstimate::pace`] needs to trust its pace.
    const MIN_SAMPLE: Duration = Duration::from_millis(100);

    pub fn new(now: Instant) -> Self {
        RateEstimate {
            window_start: now,
            window_bytes: 0,
            rate: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        while now.saturating_duration_since(self.window_start) >= Self::WINDOW {
            self.rate = (self.rate + self.window_bytes) / 2;
            self.window_bytes = 0;
            self.window_start += Self::WINDOW;
            if self.rate == 0 {
                // Idle for a while: jump to the current window rather than loop.
                let behind = now.saturating_duration_since(self.window_start);
                let whole = behind.as_secs();
                self.window_start += Duration::from_secs(whole);
            }
        }
    }

    pub fn add(&mut self, bytes: u64, now: Instant) {
        self.roll(now);
        self.window_bytes += bytes;
    }

    /// Bytes per second.
    pub fn rate(&mut self, now: Instant) -> u64 {
        self.roll(now);
        self.rate
    }

    /// Bytes per second to plan with: [`RateEstimate::rate`], or the pace of the current
    /// window if that is higher (once the window is [`Self::MIN_SAMPLE`] old). The
    /// estimate is 0 for a new connection's whole first second and lags one that speeds
    /// up; a request pipeline sized from it alone would hold a fast peer to 16 blocks in
    /// flight for that second.
    pub fn pace(&mut self, now: Instant) -> u64 {
        self.roll(now);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < Self::MIN_SAMPLE {
            return self.rate;
        }
        let current = u128::from(self.window_bytes) * 1_000_000 / elapsed.as_micros().max(1);
        self.rate.max(u64::try_from(current).unwrap_or(u64::MAX))
    }
}

/// How many block requests to keep outstanding with a peer sending at `rate` bytes per
/// second: about one second of transfer, at least 16 blocks, at most what the peer
/// accepts (`peer_reqq`, 250 if it did not say) and `our_max`.
pub fn pipeline_target(
    rate: u64,
    block_size: u32,
    peer_reqq: Option<u32>,
    our_max: usize,
) -> usize {
    let peer_max = peer_reqq
        .map_or(250, |q| q as usize)
        .clamp(1, our_max.max(1));
    ((rate / u64::from(block_size.max(1))) as usize).clamp(16.min(peer_max), peer_max)
}

#[derive(Debug, Clone)]
pub struct PeerTimers {
    config: TimerConfig,
    last_recv: Instant,
    last_sent: Instant,
    /// When the oldest outstanding request started waiting for a block.
    waiting_since: Option<Instant>,
    rate: RateEstimate,
}

impl PeerTimers {
    pub fn new(config: TimerConfig, now: Instant) -> Self {
        PeerTimers {
            config,
            last_recv: now,
            last_sent: now,
            waiting_since: None,
            rate: RateEstimate::new(now),
        }
    }

    /// Bytes arrived from the peer.
    pub fn on_recv(&mut self, now: Instant) {
        self.last_recv = now;
    }

    /// We wrote to the peer.
    pub fn on_sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// A block we asked for arrived; `outstanding` is whether requests remain.
    pub fn on_block(&mut self, bytes: u64, outstanding: bool, now: Instant) {
        self.rate.add(bytes, now);
        self.waiting_since = outstanding.then_some(now);
    }

    /// Our outstanding requests changed (sent, cancelled, rejected); `outstanding` is
    /// whether any remain. A first request starts the request timer.
    pub fn on_requests(&mut self, outstanding: bool, now: Instant) {
        match (outstanding, self.waiting_since) {
            (true, None) => self.waiting_since = Some(now),
            (false, _) => self.waiting_since = None,
            _ => {}
        }
    }

    /// The receive rate to size the request pipeline with (see [`RateEstimate::pace`]).
    pub fn rate(&mut self, now: Instant) -> u64 {
        self.rate.pace(now)
    }

    /// The next instant at which [`PeerTimers::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Instant {
        let mut t =
            (self.last_recv + self.config.idle_timeout).min(self.last_sent + self.config.keepalive);
        if let Some(w) = self.waiting_since {
            t = t.min(w + self.config.request_timeout);
        }
        t
    }

    /// What is due at `now`, most urgent first (an idle close makes the rest moot).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TimerAction> {
        let mut out = Vec::new();
        if now >= self.last_recv + self.config.idle_timeout {
            out.push(TimerAction::Idle);
            return out;
        }
        if let Some(w) = self.waiting_since
            && now >= w + self.config.request_timeout
        {
            out.push(TimerAction::Snubbed);
            self.waiting_since = None;
        }
        if now >= self.last_sent + self.config.keepalive {
            out.push(TimerAction::SendKeepAlive);
            // The caller sends it and reports on_sent; don't fire again meanwhile.
            self.last_sent = now;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn idle_peer_is_closed_after_the_timeout_and_not_before() {
        let t0 = Instant::now();
        let mut t = PeerTimers::new(TimerConfig::default(), t0);
        t.on_sent(t0 + secs(100));
        assert!(
            !t.handle_timeout(t0 + secs(179))
                .contains(&TimerAction::Idle)
        );
        t.on_recv(t0 + secs(179));
        assert!(
            !t.handle_timeout(t0 + secs(300))
                .contains(&TimerAction::Idle)
        );
        assert_eq!(t.handle_timeout(t0 + secs(359)), vec![TimerAction::Idle]);
    }

    #[test]
    fn keepalive_every_ninety_seconds_of_silence() {
        let t0 = Instant::now();
        let mut t = PeerTimers::new(TimerConfig::default(), t0);
        assert_eq!(t.poll_timeout(), t0 + secs(90));
        t.on_recv(t0 + secs(89));
        assert!(t.handle_timeout(t0 + secs(89)).is_empty());
        assert_eq!(
            t.handle_timeout(t0 + secs(90)),
            vec![TimerAction::SendKeepAlive]
        );
        // Not again until 90 s later.
        assert!(t.handle_timeout(t0 + secs(91)).is_empty());
        t.on_recv(t0 + secs(170));
        assert_eq!(t.poll_timeout(), t0 + secs(180));
    }

    #[test]
    fn snubbed_after_thirty_seconds_without_a_block() {
        let t0 = Instant::now();
        let mut t = PeerTimers::new(TimerConfig::default(), t0);
        // No requests: no request timer.
        assert_eq!(t.poll_timeout(), t0 + secs(90));
        t.on_requests(true, t0 + secs(1));
        assert_eq!(t.poll_timeout(), t0 + secs(31));
        // A block resets the timer.
        t.on_block(16384, true, t0 + secs(20));
        t.on_recv(t0 + secs(20));
        assert!(t.handle_timeout(t0 + secs(31)).is_empty());
        assert_eq!(t.handle_timeout(t0 + secs(50)), vec![TimerAction::Snubbed]);
        // Once reported, the timer is off until new requests go out.
        assert!(t.handle_timeout(t0 + secs(60)).is_empty());
        t.on_sent(t0 + secs(61));
        t.on_requests(true, t0 + secs(61));
        assert_eq!(t.poll_timeout(), t0 + secs(91));
    }

    #[test]
    fn requests_answered_in_full_stop_the_timer() {
        let t0 = Instant::now();
        let mut t = PeerTimers::new(TimerConfig::default(), t0);
        t.on_requests(true, t0);
        t.on_block(16384, false, t0 + secs(1));
        assert!(t.handle_timeout(t0 + secs(45)).is_empty());
    }

    #[test]
    fn rate_follows_the_transfer() {
        let t0 = Instant::now();
        let mut r = RateEstimate::new(t0);
        // 1 MB/s for 10 s, in 100 ms steps.
        for i in 0..100 {
            r.add(100_000, t0 + Duration::from_millis(i * 100));
        }
        let rate = r.rate(t0 + secs(10));
        assert!((900_000..=1_100_000).contains(&rate), "{rate}");
        // Silence decays it quickly.
        let rate = r.rate(t0 + secs(20));
        assert!(rate < 5_000, "{rate}");
        // And a long silence costs no work per missed window.
        assert_eq!(r.rate(t0 + Duration::from_secs(1_000_000)), 0);
    }

    #[test]
    fn a_new_fast_connection_gets_its_pipeline_within_its_first_second() {
        let t0 = Instant::now();
        let mut t = PeerTimers::new(TimerConfig::default(), t0);
        // 16 blocks every 10 ms: ~26 MB/s from the start.
        for i in 0..30u64 {
            t.on_block(16 * 16384, true, t0 + Duration::from_millis(i * 10));
        }
        // Too early to judge: the floor.
        assert_eq!(
            pipeline_target(t.rate(t0 + Duration::from_millis(50)), 16384, None, 500),
            16
        );
        // 300 ms in: the pace, not the first second's empty estimate, sizes the pipeline.
        let rate = t.rate(t0 + Duration::from_millis(300));
        assert!((20_000_000..=30_000_000).contains(&rate), "{rate}");
        assert_eq!(pipeline_target(rate, 16384, None, 500), 250);
        // A slower window later does not pull it under the estimate.
        let mut r = RateEstimate::new(t0);
        r.add(10_000_000, t0 + Duration::from_millis(500));
        let settled = r.rate(t0 + secs(1));
        assert_eq!(settled, 5_000_000);
        r.add(100_000, t0 + Duration::from_millis(1500));
        assert_eq!(r.pace(t0 + Duration::from_millis(1500)), settled);
        // A faster one lifts it at once.
        r.add(4_000_000, t0 + Duration::from_millis(1600));
        assert!(r.pace(t0 + Duration::from_millis(1600)) > 6_000_000);
    }

    #[test]
    fn pipeline_grows_with_the_rate_within_bounds() {
        assert_eq!(pipeline_target(0, 16384, None, 500), 16);
        assert_eq!(pipeline_target(1 << 20, 16384, None, 500), 64);
        assert_eq!(pipeline_target(100 << 20, 16384, None, 500), 250);
        assert_eq!(pipeline_target(100 << 20, 16384, Some(2000), 500), 500);
        assert_eq!(pipeline_target(100 << 20, 16384, Some(5), 500), 5);
        assert_eq!(pipeline_target(0, 16384, Some(5), 500), 5);
    }
}
