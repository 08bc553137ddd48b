//! The addresses a torrent may dial, wherever they came from (`--peer`, trackers, local
//! discovery; later the DHT and PEX), and when to dial each. Sans-IO: the caller passes
//! `now`, dials what [`PeerPool::next_dials`] returns and reports back with
//! [`PeerPool::dial_ended`].
//!
//! Bounded: at most [`MAX_CANDIDATES`] addresses are kept, so a tracker or a peer that hands
//! out millions of addresses costs a fixed amount of memory. An address that keeps failing is
//! retried with exponential backoff and then forgotten, unless the user named it (`pinned`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Addresses kept at most.
pub const MAX_CANDIDATES: usize = 2000;
/// Failed dials (in a row) after which a discovered address is forgotten.
const MAX_FAILURES: u32 = 5;
/// First retry delay after a failed dial; doubles with each failure.
const RETRY_BASE: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(30 * 60);
/// The same for addresses the user named: they are all we may have, so retry sooner.
const PINNED_RETRY_BASE: Duration = Duration::from_secs(1);
const PINNED_RETRY_MAX: Duration = Duration::from_secs(30);
/// Wait before dialling again a peer whose connection worked and then ended.
const RECONNECT_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Candidate {
    /// Named by the user: never forgotten.
    pinned: bool,
    /// Failed dials in a row.
    failures: u32,
    next_try: Instant,
    /// Being dialled or connected now.
    busy: bool,
}

/// The candidate addresses of one torrent.
#[derive(Debug, Default)]
pub struct PeerPool {
    candidates: HashMap<SocketAddr, Candidate>,
    /// Addresses that must never be dialled (our own listening address).
    ours: Vec<SocketAddr>,
}

impl PeerPool {
    pub fn new(ours: Vec<SocketAddr>) -> Self {
        PeerPool {
            candidates: HashMap::new(),
            ours,
        }
    }

    /// Learn an address. Returns whether it was new. Full pools take only pinned addresses.
    pub fn add(&mut self, addr: SocketAddr, pinned: bool, now: Instant) -> bool {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return false;
        }
        if self.ours.contains(&addr) {
            return false;
        }
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.pinned |= pinned;
            return false;
        }
        if !pinned && self.candidates.len() >= MAX_CANDIDATES {
            return false;
        }
        self.candidates.insert(
            addr,
            Candidate {
                pinned,
                failures: 0,
                next_try: now,
                busy: false,
            },
        );
        true
    }

    /// Up to `max` addresses to dial now; they are marked busy until [`Self::dial_ended`].
    pub fn next_dials(
        &mut self,
        now: Instant,
        max: usize,
        skip: impl Fn(&SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let mut ready: Vec<(Instant, SocketAddr)> = self
            .candidates
            .iter()
            .filter(|(a, c)| !c.busy && c.next_try <= now && !skip(a))
            .map(|(a, c)| (c.next_try, *a))
            .collect();
        // Longest waiting first, so nobody starves.
        ready.sort_unstable();
        ready.truncate(max);
        for (_, a) in &ready {
            if let Some(c) = self.candidates.get_mut(a) {
                c.busy = true;
            }
        }
        ready.into_iter().map(|(_, a)| a).collect()
    }

    /// A dial (and the connection, if there was one) ended. `connected`: the handshake
    /// succeeded. `done_with`: we need nothing more from it (both sides complete), so a
    /// discovered address is forgotten.
    pub fn dial_ended(&mut self, addr: SocketAddr, connected: bool, done_with: bool, now: Instant) {
        let Some(c) = self.candidates.get_mut(&addr) else {
            return;
        };
        c.busy = false;
        if connected {
            c.failures = 0;
            c.next_try = now + RECONNECT_DELAY;
            if done_with {
                if c.pinned {
                    c.next_try = now + RETRY_MAX;
                } else {
                    self.candidates.remove(&addr);
                }
            }
            return;
        }
        c.failures = c.failures.saturating_add(1);
        if !c.pinned && c.failures >= MAX_FAILURES {
            self.candidates.remove(&addr);
            return;
        }
        let (base, max) = if c.pinned {
            (PINNED_RETRY_BASE, PINNED_RETRY_MAX)
        } else {
            (RETRY_BASE, RETRY_MAX)
        };
        let backoff = base.saturating_mul(1 << (c.failures - 1).min(10));
        c.next_try = now + backoff.min(max);
    }

    /// Forget an address (banned).
    pub fn remove(&mut self, addr: &SocketAddr) {
        self.candidates.remove(addr);
    }

    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Every address in the pool.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.candidates.keys().copied()
    }

    /// When the next address becomes ready to dial, if any is waiting.
    pub fn next_ready(&self) -> Option<Instant> {
        self.candidates
            .values()
            .filter(|c| !c.busy)
            .map(|c| c.next_try)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn dials_each_address_once_until_it_ends() {
        let now = Instant::now();
        let mut pool = PeerPool::new(vec![]);
        assert!(pool.add(a(1), false, now));
        assert!(!pool.add(a(1), false, now));
        pool.add(a(2), false, now);
        let first = pool.next_dials(now, 10, |_| false);
        assert_eq!(first.len(), 2);
        assert!(pool.next_dials(now, 10, |_| false).is_empty());
        pool.dial_ended(a(1), true, false, now);
        assert!(pool.next_dials(now, 10, |_| false).is_empty());
        let later = now + RECONNECT_DELAY;
        assert_eq!(pool.next_dials(later, 10, |_| false), vec![a(1)]);
    }

    #[test]
    fn failing_addresses_back_off_then_are_forgotten_unless_pinned() {
        let mut now = Instant::now();
        let mut pool = PeerPool::new(vec![]);
        pool.add(a(1), false, now);
        pool.add(a(2), true, now);
        for round in 0..MAX_FAILURES {
            let dials = pool.next_dials(now, 10, |_| false);
            assert_eq!(dials.len(), 2, "round {round}");
            for d in dials {
                pool.dial_ended(d, false, false, now);
            }
            // Not ready again right away.
            assert!(pool.next_dials(now, 10, |_| false).is_empty());
            now += RETRY_MAX;
        }
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.next_dials(now, 10, |_| false), vec![a(2)]);
    }

    #[test]
    fn bounded_and_never_dials_itself_or_junk() {
        let now = Instant::now();
        let ours = a(6881);
        let mut pool = PeerPool::new(vec![ours]);
        assert!(!pool.add(ours, false, now));
        assert!(!pool.add(a(0), false, now));
        assert!(!pool.add("0.0.0.0:1".parse().unwrap(), false, now));
        assert!(!pool.add("239.1.1.1:1".parse().unwrap(), false, now));
        for i in 0..(MAX_CANDIDATES as u32 + 500) {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i);
            pool.add(SocketAddr::from((ip, 1)), false, now);
        }
        assert_eq!(pool.len(), MAX_CANDIDATES);
        // The user's own addresses still get in.
        assert!(pool.add(a(7), true, now));
        assert_eq!(pool.next_dials(now, 16, |_| false).len(), 16);
    }

    #[test]
    fn done_with_forgets_discovered_peers() {
        let now = Instant::now();
        let mut pool = PeerPool::new(vec![]);
        pool.add(a(1), false, now);
        pool.add(a(2), true, now);
        for d in pool.next_dials(now, 10, |_| false) {
            pool.dial_ended(d, true, true, now);
        }
        assert_eq!(pool.len(), 1);
        assert!(
            pool.next_dials(now + RECONNECT_DELAY, 10, |_| false)
                .is_empty()
        );
    }

    #[test]
    fn skip_leaves_addresses_ready() {
        let now = Instant::now();
        let mut pool = PeerPool::new(vec![]);
        pool.add(a(1), false, now);
        assert!(pool.next_dials(now, 10, |x| *x == a(1)).is_empty());
        assert_eq!(pool.next_dials(now, 10, |_| false), vec![a(1)]);
    }
}
