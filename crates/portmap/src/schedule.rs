//! [`Schedule`]: when to map, renew and retry, as a sans-IO state machine.
//!
//! The shell asks [`Schedule::due`] with `now`, does what it says (map every port, or
//! renew them), and reports back with [`Schedule::mapped`] (the lease the router granted)
//! or [`Schedule::failed`]; it sleeps until [`Schedule::poll_timeout`]. A mapping is renewed
//! when half of its lease is gone (RFC 6886 §3.3 suggests renewing at half the lifetime),
//! an unlimited UPnP lease (0) is refreshed every [`REFRESH_UNLIMITED`] anyway (a router that
//! rebooted has forgotten it), and failures are retried with a doubling back-off from
//! [`RETRY_FIRST`] up to [`RETRY_MAX`].

use std::time::{Duration, Instant};

/// First retry after a failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(10);
/// Longest wait between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(600);
/// How often a mapping without a lease limit is made again.
pub const REFRESH_UNLIMITED: Duration = Duration::from_secs(1800);
/// Shortest time between two renewals, whatever lease a router grants.
pub const RENEW_MIN: Duration = Duration::from_secs(2);

/// What the shell should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Map every port (nothing is mapped, or the last attempt failed).
    Map,
    /// Renew the mappings we hold.
    Renew,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing mapped; try at `at`.
    Unmapped { at: Instant },
    /// Mapped until `expires` (`None`: no limit); renew at `renew`.
    Mapped {
        renew: Instant,
        expires: Option<Instant>,
    },
}

/// The timing of one set of mappings (see the module docs).
#[derive(Debug, Clone)]
pub struct Schedule {
    phase: Phase,
    failures: u32,
}

impl Schedule {
    /// A schedule whose first attempt is due at `now`.
    pub fn new(now: Instant) -> Schedule {
        Schedule {
            phase: Phase::Unmapped { at: now },
            failures: 0,
        }
    }

    /// What is due at `now`, if anything.
    pub fn due(&self, now: Instant) -> Option<Due> {
        match self.phase {
            Phase::Unmapped { at } => (now >= at).then_some(Due::Map),
            Phase::Mapped { renew, expires } => {
                if expires.is_some_and(|e| now >= e) {
                    Some(Due::Map)
                } else {
                    (now >= renew).then_some(Due::Renew)
                }
            }
        }
    }

    /// When to call [`Schedule::due`] next.
    pub fn poll_timeout(&self) -> Instant {
        match self.phase {
            Phase::Unmapped { at } => at,
            Phase::Mapped { renew, .. } => renew,
        }
    }

    /// The router granted `lease` (zero: no limit) at `now`.
    pub fn mapped(&mut self, now: Instant, lease: Duration) {
        self.failures = 0;
        self.phase = if lease.is_zero() {
            Phase::Mapped {
                renew: now + REFRESH_UNLIMITED,
                expires: None,
            }
        } else {
            Phase::Mapped {
                renew: now + (lease / 2).max(RENEW_MIN),
                expires: Some(now + lease),
            }
        };
    }

    /// The attempt due at `now` failed. A failed renewal of a mapping that has not expired
    /// yet is retried before it does; otherwise the mappings count as gone.
    pub fn failed(&mut self, now: Instant) {
        let wait = RETRY_FIRST
            .saturating_mul(1u32 << self.failures.min(16))
            .min(RETRY_MAX);
        self.failures = self.failures.saturating_add(1);
        self.phase = match self.phase {
            Phase::Mapped {
                expires: Some(e), ..
            } if now + wait < e => Phase::Mapped {
                renew: now + wait,
                expires: Some(e),
            },
            Phase::Mapped { expires: None, .. } => Phase::Mapped {
                renew: now + wait,
                expires: None,
            },
            _ => Phase::Unmapped { at: now + wait },
        };
    }

    /// Whether the mappings are believed to be in place at `now`.
    pub fn is_mapped(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Unmapped { .. } => false,
            Phase::Mapped { expires, .. } => expires.is_none_or(|e| now < e),
        }
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_at_once_then_renews_at_half_the_lease() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        assert_eq!(s.due(t0), Some(Due::Map));
        s.mapped(t0, Duration::from_secs(3600));
        assert!(s.is_mapped(t0));
        assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(1800));
        assert_eq!(s.due(t0 + Duration::from_secs(1799)), None);
        assert_eq!(s.due(t0 + Duration::from_secs(1800)), Some(Due::Renew));
        // A renewal grants a fresh lease.
        let t1 = t0 + Duration::from_secs(1800);
        s.mapped(t1, Duration::from_secs(3600));
        assert_eq!(s.poll_timeout(), t1 + Duration::from_secs(1800));
        // Past the lease with no renewal: map again.
        assert_eq!(s.due(t1 + Duration::from_secs(3600)), Some(Due::Map));
        assert!(!s.is_mapped(t1 + Duration::from_secs(3600)));
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_cap() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            s.failed(now);
            let next = s.poll_timeout();
            waits.push(next - now);
            assert_eq!(s.due(next - Duration::from_millis(1)), None);
            assert_eq!(s.due(next), Some(Due::Map));
            now = next;
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 600, 600, 600, 600]);
        // Success resets the back-off.
        s.mapped(now, Duration::from_secs(60));
        assert_eq!(s.failures(), 0);
        s.failed(now + Duration::from_secs(60));
        assert_eq!(s.poll_timeout(), now + Duration::from_secs(70));
    }

    #[test]
    fn a_failed_renewal_is_retried_before_the_lease_ends() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        s.mapped(t0, Duration::from_secs(120));
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(s.due(t1), Some(Due::Renew));
        s.failed(t1);
        // Still mapped, retried in 10 s, as a renewal.
        assert!(s.is_mapped(t1));
        assert_eq!(s.poll_timeout(), t1 + RETRY_FIRST);
        assert_eq!(s.due(t1 + RETRY_FIRST), Some(Due::Renew));
        // A failure whose retry would come after the lease ends: unmapped.
        let late = t0 + Duration::from_secs(115);
        s.failed(late);
        assert!(!s.is_mapped(late));
        assert_eq!(s.due(s.poll_timeout()), Some(Due::Map));
    }

    #[test]
    fn unlimited_and_tiny_leases() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        s.mapped(t0, Duration::ZERO);
        assert!(s.is_mapped(t0 + Duration::from_secs(1_000_000)));
        assert_eq!(s.poll_timeout(), t0 + REFRESH_UNLIMITED);
        assert_eq!(s.due(t0 + REFRESH_UNLIMITED), Some(Due::Renew));
        // A 1 s lease is not renewed in a busy loop.
        s.mapped(t0, Duration::from_secs(1));
        assert_eq!(s.poll_timeout(), t0 + RENEW_MIN);
    }
}
