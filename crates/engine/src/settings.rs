//! Live settings: the limits a session runs under, changeable while it runs
//! ([`crate::session::Session::set_settings`]), and the token buckets that enforce rate
//! limits.
//!
//! Rates are enforced peer → torrent → session: every byte a connection reads or writes is
//! paid for in its torrent's bucket and in the session's, and the connection waits until
//! both are out of debt. Paying after the fact (the bytes are already read) keeps reads
//! large and syscalls few; over a few seconds the average holds the set rate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a session runs under. Every field can be changed at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Peer connections across all torrents.
    pub max_connections: usize,
    /// Peer connections of one torrent.
    pub max_peers_per_torrent: usize,
    /// Incoming connections still in their handshake, across the session; past it the
    /// oldest is dropped for a newcomer.
    pub max_half_open: usize,
    /// Incoming connections still in their handshake from one IP address.
    pub max_half_open_per_ip: usize,
    /// Connections of one torrent with one IP address. The machine's own loopback
    /// addresses (127.0.0.1, ::1) are exempt, so local swarms and tests on one host work;
    /// other loopback addresses (127.0.0.2, ...) count as other hosts.
    pub max_peers_per_ip: usize,
    /// Peers one torrent uploads to at once (plus one optimistic slot).
    pub upload_slots: usize,
    /// Requests one peer may queue with us (our `reqq`).
    pub max_peer_requests: usize,
    /// Most requests we keep outstanding with one peer.
    pub max_our_requests: usize,
    /// Bytes per second for the whole session; 0: no limit.
    pub download_limit: u64,
    pub upload_limit: u64,
    /// MSE/PE protocol encryption for new connections (both ways).
    pub encryption: Encryption,
}

/// Whether peer connections use MSE/PE (Message Stream Encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Dial encrypted (offering RC4 or plaintext after the handshake), dial again in
    /// plaintext when the peer refuses; accept both.
    #[default]
    Prefer,
    /// Only RC4-encrypted connections, both ways.
    Require,
    /// Plaintext only, both ways.
    Disable,
}

impl Encryption {
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::Prefer => "prefer",
            Encryption::Require => "require",
            Encryption::Disable => "disable",
        }
    }
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Encryption {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "prefer" => Ok(Encryption::Prefer),
            "require" => Ok(Encryption::Require),
            "disable" => Ok(Encryption::Disable),
            _ => Err(format!(
                "`{s}` is not an encryption policy (prefer, require or disable)"
            )),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_connections: 500,
            max_peers_per_torrent: 80,
            max_half_open: 64,
            max_half_open_per_ip: 4,
            max_peers_per_ip: 3,
            upload_slots: 8,
            max_peer_requests: 2000,
            max_our_requests: 500,
            download_limit: 0,
            upload_limit: 0,
            encryption: Encryption::Prefer,
        }
    }
}

/// Whether per-IP limits apply to `ip`: not to this machine's own loopback address.
pub fn ip_limited(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4 != std::net::Ipv4Addr::LOCALHOST,
        std::net::IpAddr::V6(v6) => {
            v6 != std::net::Ipv6Addr::LOCALHOST
                && v6.to_ipv4_mapped() != Some(std::net::Ipv4Addr::LOCALHOST)
        }
    }
}

/// A token bucket (sans-IO): `rate` bytes per second, bursts up to `burst` bytes. Bytes
/// are paid with [`TokenBucket::pay`], which may go into debt; [`TokenBucket::wait`] says
/// how long until the debt is repaid.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    /// Tokens available now; negative is debt.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` bytes per second; 0 means unlimited.
    pub fn new(rate: u64, now: Instant) -> Self {
        TokenBucket {
            rate,
            tokens: 0.0,
            last: now,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Change the rate; what was paid so far stays paid.
    pub fn set_rate(&mut self, rate: u64, now: Instant) {
        self.refill(now);
        self.rate = rate;
        if rate == 0 {
            self.tokens = 0.0;
        }
    }

    /// A burst of a tenth of a second's worth, at least one 16 KiB block: small enough
    /// that the rate holds over a few seconds, large enough not to chop every read.
    fn burst(&self) -> f64 {
        (self.rate as f64 / 10.0).max(16384.0)
    }

    fn refill(&mut self, now: Instant) {
        if self.rate == 0 {
            return;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate as f64).min(self.burst());
    }

    /// Pay for `bytes` just moved.
    pub fn pay(&mut self, bytes: usize, now: Instant) {
        if self.rate == 0 {
            return;
        }
        self.refill(now);
        self.tokens -= bytes as f64;
    }

    /// How long to wait before moving more bytes (zero when not in debt).
    pub fn wait(&mut self, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        self.refill(now);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }
}

/// A bucket shared by the connections of a torrent or a session.
#[derive(Debug, Clone)]
pub struct SharedBucket(Arc<Mutex<TokenBucket>>);

impl SharedBucket {
    pub fn new(rate: u64) -> Self {
        SharedBucket(Arc::new(Mutex::new(TokenBucket::new(rate, Instant::now()))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenBucket> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_rate(&self, rate: u64) {
        self.lock().set_rate(rate, Instant::now());
    }

    pub fn rate(&self) -> u64 {
        self.lock().rate()
    }

    /// Pay for `bytes` and return how long to wait before the next transfer.
    pub fn pay(&self, bytes: usize) -> Duration {
        let now = Instant::now();
        let mut b = self.lock();
        b.pay(bytes, now);
        b.wait(now)
    }

    pub fn wait(&self) -> Duration {
        self.lock().wait(Instant::now())
    }
}

/// The buckets one direction of one connection pays into: its torrent's and the
/// session's.
#[derive(Debug, Clone)]
pub struct Limits {
    pub torrent: SharedBucket,
    pub session: SharedBucket,
}

impl Limits {
    /// Pay for `bytes` in both buckets; how long to wait before the next transfer.
    pub fn pay(&self, bytes: usize) -> Duration {
        self.torrent.pay(bytes).max(self.session.pay(bytes))
    }

    pub fn wait(&self) -> Duration {
        self.torrent.wait().max(self.session.wait())
    }

    pub fn unlimited(&self) -> bool {
        self.torrent.rate() == 0 && self.session.rate() == 0
    }
}

/// Parse a rate like `500k`, `2M`, `1.5m` or `100000` (bytes per second; k = 1024).
pub fn parse_rate(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1024.0),
        'm' | 'M' => (&s[..s.len() - 1], 1024.0 * 1024.0),
        'g' | 'G' => (&s[..s.len() - 1], 1024.0 * 1024.0 * 1024.0),
        _ => (s, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    if !v.is_finite() || v < 0.0 || v * mult > u64::MAX as f64 / 2.0 {
        return None;
    }
    Some((v * mult).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, t0);
        b.pay(1 << 30, t0);
        assert_eq!(b.wait(t0), Duration::ZERO);
    }

    #[test]
    fn debt_is_repaid_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100_000, t0);
        b.pay(200_000, t0);
        let w = b.wait(t0);
        assert!((w.as_secs_f64() - 2.0).abs() < 0.01, "{w:?}");
        assert!(b.wait(t0 + Duration::from_secs(1)) > Duration::ZERO);
        assert_eq!(b.wait(t0 + Duration::from_secs(2)), Duration::ZERO);
    }

    /// Driven with virtual time: a sender that moves 16 KiB blocks whenever the bucket
    /// lets it averages the set rate within 2% over 20 s.
    #[test]
    fn average_rate_holds_over_twenty_seconds() {
        let t0 = Instant::now();
        let rate = 300_000;
        let mut b = TokenBucket::new(rate, t0);
        let mut now = t0;
        let mut sent = 0u64;
        while now < t0 + Duration::from_secs(20) {
            let w = b.wait(now);
            if w > Duration::ZERO {
                now += w;
                continue;
            }
            b.pay(16384, now);
            sent += 16384;
            now += Duration::from_micros(50);
        }
        let avg = sent as f64 / 20.0;
        assert!((avg / rate as f64 - 1.0).abs() < 0.02, "{avg}");
    }

    #[test]
    fn idle_time_does_not_bank_more_than_a_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100_000, t0);
        let later = t0 + Duration::from_secs(60);
        b.pay(100_000, later);
        // At most a burst (16 KiB here) was banked: the rest is debt.
        assert!(b.wait(later) > Duration::from_millis(800));
    }

    #[test]
    fn rate_change_applies_at_once() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100_000, t0);
        b.pay(100_000, t0);
        b.set_rate(0, t0);
        assert_eq!(b.wait(t0), Duration::ZERO);
        b.set_rate(50_000, t0);
        b.pay(50_000, t0);
        assert!((b.wait(t0).as_secs_f64() - 1.0).abs() < 0.01);
    }

    #[test]
    fn only_the_own_loopback_address_is_exempt_from_per_ip_limits() {
        assert!(!ip_limited("127.0.0.1".parse().unwrap()));
        assert!(!ip_limited("::1".parse().unwrap()));
        assert!(!ip_limited("::ffff:127.0.0.1".parse().unwrap()));
        assert!(ip_limited("127.0.0.2".parse().unwrap()));
        assert!(ip_limited("10.1.2.3".parse().unwrap()));
        assert!(ip_limited("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn parses_rates() {
        assert_eq!(parse_rate("100000"), Some(100_000));
        assert_eq!(parse_rate("500k"), Some(512_000));
        assert_eq!(parse_rate("2M"), Some(2 << 20));
        assert_eq!(parse_rate("1.5m"), Some(1_572_864));
        assert_eq!(parse_rate("0"), Some(0));
        assert_eq!(parse_rate("-1"), None);
        assert_eq!(parse_rate("k"), None);
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(parse_rate(""), None);
    }
}
