//! The serving side's state (BEP 5): announce tokens, the peers announced to us, and a
//! per-source-IP rate limit on incoming queries. Every structure here has a hard size bound,
//! since all of it is filled by strangers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::id::NodeId;

/// How often the token secret changes. Tokens made with the current or the previous secret
/// are accepted, so a token lives 5 to 10 minutes.
pub const TOKEN_ROTATION: Duration = Duration::from_secs(5 * 60);
/// Bytes of SHA-1 sent as a token.
pub const TOKEN_LEN: usize = 8;

/// Tokens: SHA-1(secret ‖ querier IP), with a rotating secret.
#[derive(Debug)]
pub struct Tokens {
    current: [u8; 20],
    previous: [u8; 20],
    rotated_at: Instant,
}

fn token_with(secret: &[u8; 20], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut h = Sha1::new();
    h.update(secret);
    match ip {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    let full: [u8; 20] = h.finalize().into();
    full[..TOKEN_LEN].try_into().expect("20 > TOKEN_LEN")
}

impl Tokens {
    pub fn new(secret: [u8; 20], now: Instant) -> Tokens {
        Tokens {
            current: secret,
            previous: secret,
            rotated_at: now,
        }
    }

    /// The token to give `ip` now.
    pub fn make(&self, ip: IpAddr) -> Vec<u8> {
        token_with(&self.current, ip).to_vec()
    }

    /// Whether `token` was given to `ip` within the last one or two rotations.
    pub fn check(&self, ip: IpAddr, token: &[u8]) -> bool {
        token == token_with(&self.current, ip) || token == token_with(&self.previous, ip)
    }

    pub fn next_rotation(&self) -> Instant {
        self.rotated_at + TOKEN_ROTATION
    }

    /// Rotate if due, with `fresh` as the new secret.
    pub fn rotate_if_due(&mut self, now: Instant, fresh: impl FnOnce() -> [u8; 20]) -> bool {
        if now < self.next_rotation() {
            return false;
        }
        self.previous = self.current;
        self.current = fresh();
        self.rotated_at = now;
        true
    }
}

/// Bounds of the peer store.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// An announce is forgotten after this long unless renewed.
    pub peer_ttl: Duration,
    /// Most peers kept per info-hash; a new one replaces the oldest.
    pub peers_per_info_hash: usize,
    /// Most info-hashes kept; announces for new ones are dropped beyond it.
    pub info_hashes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            peer_ttl: Duration::from_secs(30 * 60),
            peers_per_info_hash: 200,
            info_hashes: 5000,
        }
    }
}

/// Peers announced to us, per info-hash, each with its expiry time.
#[derive(Debug, Default)]
pub struct PeerStore {
    limits: StoreLimits,
    peers: HashMap<NodeId, Vec<(SocketAddr, Instant)>>,
}

impl PeerStore {
    pub fn new(limits: StoreLimits) -> PeerStore {
        PeerStore {
            limits,
            peers: HashMap::new(),
        }
    }

    /// Record `peer` for `info_hash`. Returns false when the store is full of other
    /// info-hashes.
    pub fn announce(&mut self, info_hash: NodeId, peer: SocketAddr, now: Instant) -> bool {
        let expires = now + self.limits.peer_ttl;
        if !self.peers.contains_key(&info_hash) && self.peers.len() >= self.limits.info_hashes {
            self.expire(now);
            if self.peers.len() >= self.limits.info_hashes {
                return false;
            }
        }
        let list = self.peers.entry(info_hash).or_default();
        if let Some(p) = list.iter_mut().find(|(a, _)| *a == peer) {
            p.1 = expires;
            return true;
        }
        if list.len() >= self.limits.peers_per_info_hash {
            // Replace the one closest to expiry (the oldest announce).
            if let Some(i) = (0..list.len()).min_by_key(|&i| list[i].1) {
                list.swap_remove(i);
            }
        }
        list.push((peer, expires));
        true
    }

    /// Up to `max` live peers for `info_hash` (of the same address family as `family`, if
    /// given), most recently announced first.
    pub fn peers(
        &self,
        info_hash: &NodeId,
        family: Option<IpAddr>,
        max: usize,
        now: Instant,
    ) -> Vec<SocketAddr> {
        let Some(list) = self.peers.get(info_hash) else {
            return Vec::new();
        };
        let mut live: Vec<&(SocketAddr, Instant)> = list
            .iter()
            .filter(|(a, exp)| *exp > now && family.is_none_or(|f| a.is_ipv4() == f.is_ipv4()))
            .collect();
        live.sort_unstable_by_key(|(_, exp)| std::cmp::Reverse(*exp));
        live.into_iter().take(max).map(|(a, _)| *a).collect()
    }

    /// Forget expired announces.
    pub fn expire(&mut self, now: Instant) {
        self.peers.retain(|_, list| {
            list.retain(|(_, exp)| *exp > now);
            !list.is_empty()
        });
    }

    pub fn info_hash_count(&self) -> usize {
        self.peers.len()
    }

    pub fn peer_count(&self) -> usize {
        self.peers.values().map(Vec::len).sum()
    }
}

/// A token bucket per source IP: `burst` queries at once, then `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_ips: usize,
    buckets: HashMap<IpAddr, (f64, Instant)>,
    /// When the map was last swept because it was full (a sweep costs O(max_ips), so a flood
    /// of new sources must not trigger one per query).
    last_sweep: Option<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64, max_ips: usize) -> RateLimiter {
        RateLimiter {
            per_second,
            burst,
            max_ips,
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Whether a query from `ip` may be served now (and spend a token if so).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max_ips {
            let swept_lately = self
                .last_sweep
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
            if !swept_lately {
                self.last_sweep = Some(now);
                self.forget_idle(now);
            }
            if self.buckets.len() >= self.max_ips {
                // Full of busy sources: new ones wait rather than grow the map.
                return false;
            }
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * per_second).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drop the buckets that have refilled: they hold no information.
    pub fn forget_idle(&mut self, now: Instant) {
        let (per_second, burst) = (self.per_second, self.burst);
        self.buckets.retain(|_, (tokens, last)| {
            *tokens + now.saturating_duration_since(*last).as_secs_f64() * per_second < burst
        });
    }

    pub fn tracked_ips(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_rotate_and_the_previous_secret_still_counts() {
        let t0 = Instant::now();
        let mut tokens = Tokens::new([1; 20], t0);
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let other: IpAddr = "1.2.3.5".parse().unwrap();
        let tok = tokens.make(ip);
        assert!(tokens.check(ip, &tok));
        assert!(!tokens.check(other, &tok), "a token is bound to its IP");
        assert!(!tokens.check(ip, b"garbage"));
        assert!(!tokens.rotate_if_due(t0 + Duration::from_secs(60), || [2; 20]));
        assert!(tokens.rotate_if_due(t0 + TOKEN_ROTATION, || [2; 20]));
        assert!(tokens.check(ip, &tok), "previous secret accepted");
        assert_ne!(tokens.make(ip), tok);
        assert!(tokens.rotate_if_due(t0 + 2 * TOKEN_ROTATION, || [3; 20]));
        assert!(!tokens.check(ip, &tok), "two rotations later it is refused");
    }

    #[test]
    fn peer_store_limits_and_expiry() {
        let t0 = Instant::now();
        let limits = StoreLimits {
            peer_ttl: Duration::from_secs(60),
            peers_per_info_hash: 3,
            info_hashes: 2,
        };
        let mut s = PeerStore::new(limits);
        let v4 = Some(IpAddr::from([0, 0, 0, 0]));
        let peer = |i: u16| SocketAddr::from(([10, 0, 0, 1], i));
        let (a, b, c) = (NodeId([1; 20]), NodeId([2; 20]), NodeId([3; 20]));
        for i in 1..=5 {
            assert!(s.announce(a, peer(i), t0 + Duration::from_secs(u64::from(i))));
        }
        // Only the 3 newest stay.
        let got = s.peers(&a, v4, 10, t0 + Duration::from_secs(6));
        assert_eq!(got, vec![peer(5), peer(4), peer(3)]);
        assert!(s.announce(b, peer(1), t0));
        assert!(!s.announce(c, peer(1), t0), "third info-hash refused");
        assert_eq!(s.info_hash_count(), 2);
        // b's announce expires at t0+60; then c fits.
        assert!(s.announce(c, peer(1), t0 + Duration::from_secs(61)));
        assert!(s.peers(&b, v4, 10, t0 + Duration::from_secs(61)).is_empty());
        s.expire(t0 + Duration::from_secs(200));
        assert_eq!(s.info_hash_count(), 0);
        assert_eq!(s.peer_count(), 0);
    }

    #[test]
    fn rate_limit_per_ip() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(1.0, 5.0, 3);
        let ip = |i: u8| IpAddr::from([1, 1, 1, i]);
        let burst = |rl: &mut RateLimiter, i: u8, at: Instant| {
            (0..100).filter(|_| rl.allow(ip(i), at)).count()
        };
        assert_eq!(burst(&mut rl, 1, t0), 5, "the burst, then nothing");
        assert_eq!(burst(&mut rl, 2, t0), 5, "other IPs are not affected");
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(burst(&mut rl, 1, t1), 1, "one a second after the burst");
        assert!(rl.allow(ip(3), t1));
        // The map is bounded: a 4th IP is refused while the others are busy...
        assert!(!rl.allow(ip(4), t1));
        assert!(rl.tracked_ips() <= 3);
        // ...and served once they have gone quiet.
        assert!(rl.allow(ip(4), t1 + Duration::from_secs(10)));
        assert!(rl.tracked_ips() <= 3);
    }
}
