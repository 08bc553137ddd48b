// (bitpeer) LEDBAT congestion control (RFC 6817) as BEP 29 and libtorrent use it.
//
// Sans-IO: the stream dispatcher feeds it the one-way delay samples the peer measures
// for our packets (`timestamp_difference_microseconds` of the packets it sends us), the
// flight size before each ACK, and the usual ACK / loss / RTO events; every time comes in
// as an `Instant`, so tests drive it with virtual time.
//
// - base delay: the minimum of the samples, kept as per-minute minima over the last
//   BASE_HISTORY minutes (a bounded ring; a minute with no samples leaves no entry, and
//   an entry older than BASE_HISTORY minutes is dropped even if nothing replaced it);
// - current delay: the minimum of the last CURRENT_FILTER samples;
// - queuing delay = current delay - base delay; off_target = (TARGET - queuing) / TARGET;
// - on ACK: cwnd += GAIN * off_target * bytes_acked * MSS / cwnd. A decrease is capped at
//   bytes_acked / 2 per ACK (at most halving per RTT, as LEDBAT++ does) so that a huge
//   delay spike does not take the window to the floor within one ACK; growth is capped at
//   flight size + ALLOWED_INCREASE * MSS (RFC 6817 2.4.2; the cap never shrinks the
//   window, an application-limited sender just stops growing it); cwnd never drops below
//   MIN_CWND * MSS on an ACK;
// - slow start (as libtorrent): until the first queuing delay at or over TARGET, a loss,
//   or reaching ssthresh, cwnd grows by bytes_acked per ACK. After an RTO (cwnd = 1 MSS)
//   and after leaving loss recovery below ssthresh, slow start runs again up to ssthresh;
// - loss (entering fast recovery): cwnd halved; RTO: cwnd = 1 MSS (slow start restarts
//   from there), but the window handed to the sender never drops below MIN_CWND MSS (as
//   with this crate's CUBIC): with a single segment in flight no duplicate ACK can come,
//   every further loss costs another backed-off RTO, and at 20% loss the crate's e2e test
//   hit the 10 s inactivity timeout in 2 of 4 runs with a 1 MSS window (0 of 5 without).
//
// Timestamps are 32-bit microsecond counters of two unrelated clocks, so a sample is
// "their clock - our clock" modulo 2^32: only differences between samples mean anything.
// All comparisons are done with wrapping arithmetic (valid while samples are within
// ~35 minutes of each other). A sample far below the base delay (more than
// CLOCK_JUMP_US) is a clock jump or garbage, not a faster path: it is held back, and only
// CURRENT_FILTER such samples in a row reset the history (the peer's clock really moved);
// a single one can not lower the base delay and make every later sample look queued.
//
// Without any delay sample (a peer that always sends timestamp_difference 0) the
// queuing delay is taken as 0, i.e. the controller behaves like Reno with slow start.

use std::time::{Duration, Instant};

use crate::rtte::RttEstimator;

use super::CongestionController;

/// Target queuing delay (BEP 29 / libtorrent default: 100 ms).
pub const TARGET_US: u32 = 100_000;
/// RFC 6817: GAIN MUST be 1 or less.
const GAIN: f64 = 1.;
/// Minutes of per-minute minima the base delay is taken over.
pub const BASE_HISTORY: usize = 10;
const BASE_MINUTE: Duration = Duration::from_secs(60);
/// How many recent samples the current delay is the minimum of.
pub const CURRENT_FILTER: usize = 4;
/// Window floor on ACKs, in MSS.
pub const MIN_CWND: usize = 2;
/// Initial window, in MSS.
pub const INIT_CWND: usize = 2;
/// How far past the flight size an ACK may grow the window, in MSS.
pub const ALLOWED_INCREASE: usize = 2;
/// A sample this far below the base delay is a clock jump, not a shorter path.
pub const CLOCK_JUMP_US: u32 = 1_000_000;

/// `a < b` on the 32-bit wrapping circle.
fn wrapping_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn wrapping_min(a: u32, b: u32) -> u32 {
    if wrapping_lt(b, a) { b } else { a }
}

/// Per-minute minima of the delay samples over the last BASE_HISTORY minutes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BaseDelayHistory {
    /// (start of the minute, minimum sample in it), oldest first from `head`.
    slots: [(Instant, u32); BASE_HISTORY],
    head: usize,
    len: usize,
}

impl BaseDelayHistory {
    fn new(now: Instant) -> Self {
        Self {
            slots: [(now, 0); BASE_HISTORY],
            head: 0,
            len: 0,
        }
    }

    fn slot(&self, i: usize) -> &(Instant, u32) {
        &self.slots[(self.head + i) % BASE_HISTORY]
    }

    fn expire(&mut self, now: Instant) {
        while self.len > 0 {
            let (start, _) = *self.slot(0);
            if now.saturating_duration_since(start) >= BASE_MINUTE * BASE_HISTORY as u32 {
                self.head = (self.head + 1) % BASE_HISTORY;
                self.len -= 1;
            } else {
                break;
            }
        }
    }

    fn add(&mut self, now: Instant, sample: u32) {
        self.expire(now);
        if self.len > 0 {
            let last = (self.head + self.len - 1) % BASE_HISTORY;
            let (start, min) = self.slots[last];
            if now.saturating_duration_since(start) < BASE_MINUTE {
                self.slots[last].1 = wrapping_min(min, sample);
                return;
            }
        }
        if self.len == BASE_HISTORY {
            self.head = (self.head + 1) % BASE_HISTORY;
            self.len -= 1;
        }
        let idx = (self.head + self.len) % BASE_HISTORY;
        self.slots[idx] = (now, sample);
        self.len += 1;
    }

    fn base(&self) -> Option<u32> {
        (0..self.len).map(|i| self.slot(i).1).reduce(wrapping_min)
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// The last CURRENT_FILTER delay samples.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RecentSamples {
    samples: [u32; CURRENT_FILTER],
    next: usize,
    len: usize,
}

impl RecentSamples {
    fn new() -> Self {
        Self {
            samples: [0; CURRENT_FILTER],
            next: 0,
            len: 0,
        }
    }

    fn add(&mut self, sample: u32) {
        self.samples[self.next] = sample;
        self.next = (self.next + 1) % CURRENT_FILTER;
        self.len = (self.len + 1).min(CURRENT_FILTER);
    }

    fn min(&self) -> Option<u32> {
        self.samples[..self.len]
            .iter()
            .copied()
            .reduce(wrapping_min)
    }

    fn clear(&mut self) {
        self.len = 0;
        self.next = 0;
    }
}

#[derive(Clone, Copy, PartialEq)]
pub struct Ledbat {
    /// Congestion window, bytes.
    cwnd: f64,
    /// Slow start threshold, bytes (infinite until the first congestion signal).
    ssthresh: f64,
    slow_start: bool,
    mss: usize,
    /// Remote (advertised) window, bytes.
    rwnd: usize,
    /// Flight size before the ACK about to be processed, if the caller told us.
    flight_size: Option<usize>,

    base: BaseDelayHistory,
    current: RecentSamples,
    /// Samples held back as a suspected clock jump (far below the base delay).
    jump: RecentSamples,
}

impl core::fmt::Debug for Ledbat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ledbat:cwnd={},ssthresh={},slow_start={},queuing_delay_us={:?},mss={}",
            self.window(),
            self.ssthresh,
            self.slow_start,
            self.queuing_delay_us(),
            self.mss
        )
    }
}

impl Ledbat {
    pub fn new(now: Instant, mss: usize) -> Ledbat {
        Ledbat {
            cwnd: (INIT_CWND * mss) as f64,
            ssthresh: f64::INFINITY,
            slow_start: true,
            mss,
            rwnd: 0,
            flight_size: None,
            base: BaseDelayHistory::new(now),
            current: RecentSamples::new(),
            jump: RecentSamples::new(),
        }
    }

    /// The base delay (minimum one-way delay sample of the last BASE_HISTORY minutes),
    /// in the units of the samples (our clock vs. the peer's, so only differences mean
    /// anything).
    #[cfg(test)]
    pub fn base_delay_us(&self) -> Option<u32> {
        self.base.base()
    }

    /// The current queuing delay estimate, microseconds.
    pub fn queuing_delay_us(&self) -> Option<u32> {
        let base = self.base.base()?;
        let current = self.current.min()?;
        // Never negative: current samples are also in the base history, except when an
        // old minute just expired; clamp then.
        Some((current.wrapping_sub(base) as i32).max(0) as u32)
    }

    #[cfg(test)]
    pub fn cwnd_bytes(&self) -> usize {
        self.cwnd as usize
    }

    #[cfg(test)]
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    fn min_cwnd(&self) -> f64 {
        (MIN_CWND * self.mss) as f64
    }
}

impl CongestionController for Ledbat {
    fn window(&self) -> usize {
        // Floored at MIN_CWND even right after an RTO (see the top of the file).
        (self.cwnd.max(self.min_cwnd()) as usize).min(self.rwnd)
    }

    fn sshthresh(&self) -> usize {
        if self.ssthresh.is_finite() {
            self.ssthresh as usize
        } else {
            usize::MAX
        }
    }

    fn set_mss(&mut self, mss: usize) {
        // cwnd and ssthresh are kept in bytes: nothing to rescale.
        self.mss = mss;
    }

    fn smss(&self) -> usize {
        self.mss
    }

    fn on_recovered(&mut self, new_cwnd_bytes: usize, new_sshthresh: usize) {
        self.cwnd = (new_cwnd_bytes as f64).max(self.min_cwnd());
        self.ssthresh = new_sshthresh as f64;
        // The recovery code restarts with a conservative window (about the flight size);
        // get back up to the halved window quickly, as TCP does after recovery.
        self.slow_start = self.cwnd < self.ssthresh;
    }

    fn on_delay_sample(&mut self, now: Instant, delay_us: u32) {
        if delay_us == 0 {
            // The peer had nothing to measure.
            return;
        }
        self.base.expire(now);
        if let Some(base) = self.base.base()
            && base.wrapping_sub(delay_us) as i32 > CLOCK_JUMP_US as i32
        {
            // Far below the base: a clock jump or garbage. Only a run of them resets.
            self.jump.add(delay_us);
            if self.jump.len == CURRENT_FILTER {
                let samples = self.jump;
                self.base.clear();
                self.current.clear();
                self.jump.clear();
                for s in samples.samples {
                    self.base.add(now, s);
                    self.current.add(s);
                }
            }
            return;
        }
        self.jump.clear();
        self.base.add(now, delay_us);
        self.current.add(delay_us);
    }

    fn set_flight_size(&mut self, flight_size_before_ack: usize) {
        self.flight_size = Some(flight_size_before_ack);
    }

    fn on_ack(&mut self, _now: Instant, len: usize, _rtt: &RttEstimator) {
        let flight_size = self.flight_size.take();
        if len == 0 {
            return;
        }
        let mss = self.mss as f64;
        let acked = len as f64;
        let queuing = self.queuing_delay_us().unwrap_or(0);

        if queuing >= TARGET_US && self.slow_start {
            // First delay over target: leave slow start (libtorrent).
            self.slow_start = false;
            self.ssthresh = self.ssthresh.min(self.cwnd / 2.).max(self.min_cwnd());
        }

        let off_target = (TARGET_US as f64 - queuing as f64) / TARGET_US as f64;
        let linear = GAIN * off_target * acked * mss / self.cwnd.max(mss);
        let mut gain = if self.slow_start {
            if self.cwnd + acked >= self.ssthresh {
                self.slow_start = false;
                (self.ssthresh - self.cwnd).max(linear)
            } else {
                acked.max(linear)
            }
        } else {
            linear
        };
        // At most halve per RTT: an RTT's worth of ACKs covers cwnd bytes.
        gain = gain.max(-acked / 2.);

        let old = self.cwnd;
        let mut cwnd = old + gain;
        if gain > 0. {
            // Do not grow past what the receiver lets us send...
            cwnd = cwnd.min(old.max(self.rwnd as f64));
            // ... nor past what we actually use (RFC 6817 max_allowed_cwnd, applied as a
            // growth cap only).
            if let Some(flight) = flight_size {
                let allowed = (flight + ALLOWED_INCREASE * self.mss) as f64;
                cwnd = cwnd.min(old.max(allowed));
            }
        }
        self.cwnd = cwnd.max(self.min_cwnd());
    }

    fn on_retransmission_timeout(&mut self, _now: Instant) {
        self.ssthresh = (self.cwnd / 2.).max(self.min_cwnd());
        self.cwnd = self.mss as f64;
        self.slow_start = true;
    }

    fn on_enter_recovery(&mut self, _now: Instant) {
        self.cwnd = (self.cwnd / 2.).max(self.min_cwnd());
        self.ssthresh = self.cwnd;
        self.slow_start = false;
    }

    fn set_remote_window(&mut self, win: usize) {
        self.rwnd = win;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::{congestion::CongestionController, rtte::RttEstimator};

    use super::*;

    const MSS: usize = 1400;
    const BIG: usize = 64 << 20;

    fn ledbat(now: Instant) -> Ledbat {
        let mut l = Ledbat::new(now, MSS);
        l.set_remote_window(BIG);
        l
    }

    /// One RTT of a cwnd-limited sender: the whole window is ACKed, 2 MSS per ACK, each
    /// ACK carrying `delay_us`.
    fn rtt_of_acks(l: &mut Ledbat, now: &mut Instant, delay_us: u32) {
        let rtte = RttEstimator::default();
        let mut left = l.window();
        while left > 0 {
            let acked = left.min(2 * MSS);
            *now += Duration::from_millis(1);
            l.on_delay_sample(*now, delay_us);
            // The sender refills the window after every ACK.
            l.set_flight_size(l.window());
            l.on_ack(*now, acked, &rtte);
            left -= acked;
        }
    }

    /// Enough samples at `delay_us` that the current delay is `delay_us`.
    fn settle(l: &mut Ledbat, now: Instant, delay_us: u32) {
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(now, delay_us);
        }
    }

    #[test]
    fn slow_start_until_delay_over_target() {
        let mut now = Instant::now();
        let mut l = ledbat(now);
        assert_eq!(l.window(), INIT_CWND * MSS);
        // 20 ms one-way, no queuing: slow start doubles the window per RTT.
        for _ in 0..5 {
            let before = l.window();
            rtt_of_acks(&mut l, &mut now, 20_000);
            assert!(l.in_slow_start());
            assert!(l.window() >= 2 * before - MSS, "{before} -> {}", l.window());
        }
        // Queuing delay 150 ms > target: slow start ends, window shrinks.
        settle(&mut l, now, 170_000);
        assert_eq!(l.queuing_delay_us(), Some(150_000));
        let before = l.window();
        rtt_of_acks(&mut l, &mut now, 170_000);
        assert!(!l.in_slow_start());
        assert!(l.window() < before, "{before} -> {}", l.window());
        // And it does not come back.
        settle(&mut l, now, 20_000);
        rtt_of_acks(&mut l, &mut now, 20_000);
        assert!(!l.in_slow_start());
    }

    #[test]
    fn grows_below_target_shrinks_above() {
        let mut now = Instant::now();
        let mut l = ledbat(now);
        // Get out of slow start with a loss, at a known window.
        for _ in 0..4 {
            rtt_of_acks(&mut l, &mut now, 30_000);
        }
        l.on_enter_recovery(now);
        assert!(!l.in_slow_start());

        // Queuing 0: +GAIN * 1 MSS per RTT.
        let w0 = l.window();
        rtt_of_acks(&mut l, &mut now, 30_000);
        let w1 = l.window();
        assert!(w1 > w0);
        assert!(w1 <= w0 + MSS + 1, "{w0} -> {w1}");

        // Queuing 50 ms (half the target): grows by about half an MSS per RTT.
        settle(&mut l, now, 80_000);
        rtt_of_acks(&mut l, &mut now, 80_000);
        let w2 = l.window();
        assert!(w2 > w1);
        assert!(w2 - w1 < MSS * 3 / 4, "{w1} -> {w2}");

        // Queuing at target: flat.
        settle(&mut l, now, 130_000);
        rtt_of_acks(&mut l, &mut now, 130_000);
        let w3 = l.window();
        assert!(w3.abs_diff(w2) <= 1, "{w2} -> {w3}");

        // Queuing 200 ms: shrinks by about an MSS per RTT.
        settle(&mut l, now, 230_000);
        rtt_of_acks(&mut l, &mut now, 230_000);
        let w4 = l.window();
        assert!(w4 < w3, "{w3} -> {w4}");

        // A huge queue shrinks it fast, but by at most half per RTT.
        settle(&mut l, now, 5_000_000);
        rtt_of_acks(&mut l, &mut now, 5_000_000);
        let w5 = l.window();
        assert!(w5 < w4 && w5 >= w4 / 2 - 1, "{w4} -> {w5}");
    }

    #[test]
    fn min_cwnd_floor() {
        let mut now = Instant::now();
        let mut l = ledbat(now);
        l.on_delay_sample(now, 10_000);
        for _ in 0..200 {
            rtt_of_acks(&mut l, &mut now, 900_000);
        }
        assert_eq!(l.window(), MIN_CWND * MSS);
    }

    #[test]
    fn growth_capped_by_flight_size() {
        let mut now = Instant::now();
        let mut l = ledbat(now);
        let rtte = RttEstimator::default();
        // An application-limited sender with one MSS in flight at a time.
        for _ in 0..1000 {
            now += Duration::from_millis(10);
            l.on_delay_sample(now, 20_000);
            l.set_flight_size(MSS);
            l.on_ack(now, MSS, &rtte);
        }
        assert_eq!(l.window(), (1 + ALLOWED_INCREASE) * MSS);
        // Without flight size information the window is not capped.
        for _ in 0..10 {
            l.on_ack(now, MSS, &rtte);
        }
        assert!(l.window() > (1 + ALLOWED_INCREASE) * MSS);
    }

    #[test]
    fn remote_window_caps() {
        let now = Instant::now();
        let mut l = ledbat(now);
        l.set_remote_window(3 * MSS);
        let rtte = RttEstimator::default();
        for _ in 0..100 {
            l.on_ack(now, MSS, &rtte);
        }
        assert_eq!(l.window(), 3 * MSS);
    }

    #[test]
    fn base_delay_is_minimum_and_forgets_after_ten_minutes() {
        let mut now = Instant::now();
        let mut l = ledbat(now);
        l.on_delay_sample(now, 50_000);
        l.on_delay_sample(now, 40_000);
        l.on_delay_sample(now, 60_000);
        assert_eq!(l.base_delay_us(), Some(40_000));

        // Later minutes with higher delays (e.g. the path got longer): the old minimum
        // rules for 10 minutes...
        for _ in 0..9 {
            now += Duration::from_secs(60);
            l.on_delay_sample(now, 70_000);
            assert_eq!(l.base_delay_us(), Some(40_000));
        }
        // ... then is forgotten.
        now += Duration::from_secs(61);
        l.on_delay_sample(now, 70_000);
        assert_eq!(l.base_delay_us(), Some(70_000));
        assert_eq!(l.queuing_delay_us(), Some(0));

        // Entries expire by age even without newer minutes replacing them.
        now += Duration::from_secs(11 * 60);
        l.on_delay_sample(now, 90_000);
        assert_eq!(l.base_delay_us(), Some(90_000));
    }

    #[test]
    fn current_delay_is_min_of_last_samples() {
        let now = Instant::now();
        let mut l = ledbat(now);
        l.on_delay_sample(now, 10_000);
        // One delayed ACK among low samples does not count as queuing.
        l.on_delay_sample(now, 60_000);
        assert_eq!(l.queuing_delay_us(), Some(0));
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(now, 60_000);
        }
        assert_eq!(l.queuing_delay_us(), Some(50_000));
    }

    #[test]
    fn zero_samples_ignored() {
        let now = Instant::now();
        let mut l = ledbat(now);
        l.on_delay_sample(now, 0);
        assert_eq!(l.base_delay_us(), None);
        l.on_delay_sample(now, 20_000);
        l.on_delay_sample(now, 0);
        assert_eq!(l.base_delay_us(), Some(20_000));
        assert_eq!(l.queuing_delay_us(), Some(0));
    }

    #[test]
    fn wrapping_timestamps() {
        let mut now = Instant::now();
        let mut l = ledbat(now);
        // The two clocks' difference sits just below 2^32: samples wrap through 0.
        let base = u32::MAX - 5_000;
        l.on_delay_sample(now, base);
        l.on_delay_sample(now, base.wrapping_add(20_000)); // = 14_999 after the wrap
        assert_eq!(l.base_delay_us(), Some(base));
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(now, base.wrapping_add(30_000));
        }
        assert_eq!(l.queuing_delay_us(), Some(30_000));
        // Grows normally (queuing below target).
        l.on_enter_recovery(now);
        let w = l.window();
        rtt_of_acks(&mut l, &mut now, base.wrapping_add(30_000));
        assert!(l.window() > w);
    }

    #[test]
    fn backwards_sample_does_not_poison_base() {
        let mut now = Instant::now();
        let mut l = ledbat(now);
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(now, 3_000_000_000);
        }
        // A garbage sample far in the past (or the peer's clock glitching back once).
        l.on_delay_sample(now, 2_990_000_000);
        assert_eq!(l.base_delay_us(), Some(3_000_000_000));
        l.on_delay_sample(now, 3_000_010_000);
        assert_eq!(l.queuing_delay_us(), Some(0));
        l.on_enter_recovery(now);
        let w = l.window();
        rtt_of_acks(&mut l, &mut now, 3_000_010_000);
        assert!(l.window() > w, "window must still grow");

        // A slightly lower sample (drift, a shorter path) does lower the base.
        l.on_delay_sample(now, 2_999_990_000);
        assert_eq!(l.base_delay_us(), Some(2_999_990_000));

        // The peer's clock really jumped back: after a run of such samples the history
        // restarts from them.
        for i in 0..CURRENT_FILTER as u32 {
            l.on_delay_sample(now, 2_900_000_000 + i);
        }
        assert_eq!(l.base_delay_us(), Some(2_900_000_000));
        assert_eq!(l.queuing_delay_us(), Some(0));
        l.on_delay_sample(now, 2_900_020_000);
        assert_eq!(l.base_delay_us(), Some(2_900_000_000));
    }

    #[test]
    fn halves_on_loss() {
        let mut now = Instant::now();
        let mut l = ledbat(now);
        for _ in 0..5 {
            rtt_of_acks(&mut l, &mut now, 20_000);
        }
        let w = l.window();
        l.on_enter_recovery(now);
        assert_eq!(l.window(), w / 2);
        assert_eq!(l.sshthresh(), w / 2);
        assert!(!l.in_slow_start());
        // The recovery code hands back a small window: slow start back up to ssthresh,
        // not beyond.
        l.on_recovered(4 * MSS, w / 2);
        assert!(l.in_slow_start());
        for _ in 0..10 {
            rtt_of_acks(&mut l, &mut now, 20_000);
            if !l.in_slow_start() {
                break;
            }
        }
        assert!(!l.in_slow_start());
        assert!(l.window() >= w / 2 && l.window() <= w / 2 + 2 * MSS);
    }

    #[test]
    fn loss_floor_is_min_cwnd() {
        let now = Instant::now();
        let mut l = ledbat(now);
        l.on_enter_recovery(now);
        l.on_enter_recovery(now);
        assert_eq!(l.window(), MIN_CWND * MSS);
    }

    #[test]
    fn rto_to_one_mss() {
        let mut now = Instant::now();
        let mut l = ledbat(now);
        for _ in 0..5 {
            rtt_of_acks(&mut l, &mut now, 20_000);
        }
        let w = l.window();
        l.on_retransmission_timeout(now);
        assert_eq!(l.cwnd_bytes(), MSS);
        // What the sender may use stays at the floor.
        assert_eq!(l.window(), MIN_CWND * MSS);
        assert_eq!(l.sshthresh(), w / 2);
        assert!(l.in_slow_start());
        // The next ACK brings it back to at least the floor and slow start resumes.
        rtt_of_acks(&mut l, &mut now, 20_000);
        assert!(l.window() >= MIN_CWND * MSS);
        assert!(l.window() <= w / 2);
    }

    #[test]
    fn mss_change_keeps_bytes() {
        let now = Instant::now();
        let mut l = ledbat(now);
        let w = l.window();
        l.set_mss(16 * 1024);
        assert_eq!(l.cwnd_bytes(), w);
        assert_eq!(l.smss(), 16 * 1024);
        // The floor follows the new MSS: at once for the window, on the next ACK for cwnd.
        assert_eq!(l.window(), MIN_CWND * 16 * 1024);
        l.on_ack(now, 100, &RttEstimator::default());
        assert!(l.cwnd_bytes() >= MIN_CWND * 16 * 1024);
    }
}
