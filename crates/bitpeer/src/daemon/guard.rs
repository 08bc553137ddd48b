//! The login ban shared by every way in: the qBittorrent login form, HTTP Basic and bearer
//! keys on `/api/v1`, `/api/v2` and the Transmission RPC, and `/api/v1/login`. An address
//! that fails [`MAX_LOGIN_FAILS`] times in a row is refused for [`BAN_TIME`] before its
//! credentials are even compared, whichever endpoint it tries next (qBittorrent's
//! `WebUI\MaxAuthenticationFailCount` and `BanDuration` defaults). IPv6 addresses count by
//! their /64, which one host can hold whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts in a row before a ban.
pub const MAX_LOGIN_FAILS: u32 = 5;
/// How long a ban lasts, from the last failure.
pub const BAN_TIME: Duration = Duration::from_secs(3600);
/// Addresses whose failures are counted at most (the oldest counts go first).
const MAX_ENTRIES: usize = 4096;
/// What a banned address is told (qBittorrent's words).
pub const BANNED: &str =
    "Your IP address has been banned after too many failed authentication attempts.";

/// Failed logins by address.
#[derive(Default)]
pub struct LoginGuard {
    fails: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// The address a failure counts against: IPv4 (also IPv4-mapped) as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        },
    }
}

impl LoginGuard {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.fails.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is `ip` banned now?
    pub fn banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.lock()
            .get(&key(ip))
            .is_some_and(|&(n, last)| n >= MAX_LOGIN_FAILS && now.duration_since(last) < BAN_TIME)
    }

    /// Is the caller (when its address is known) banned now?
    pub fn banned_now(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| self.banned(ip, Instant::now()))
    }

    /// Counts an attempt of `ip`: a failure adds one, a success clears its count.
    pub fn note(&self, ip: IpAddr, ok: bool, now: Instant) {
        let ip = key(ip);
        let mut fails = self.lock();
        if ok {
            fails.remove(&ip);
            return;
        }
        if fails.len() >= MAX_ENTRIES && !fails.contains_key(&ip) {
            fails.retain(|_, (_, last)| now.duration_since(*last) < BAN_TIME);
            if fails.len() >= MAX_ENTRIES
                && let Some(oldest) = fails
                    .iter()
                    .min_by_key(|(_, (_, last))| *last)
                    .map(|(k, _)| *k)
            {
                fails.remove(&oldest);
            }
        }
        let e = fails.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= BAN_TIME {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
    }

    /// Checks credentials for `ip` (unknown when `None`) with the ban applied: `Err(())`
    /// when the address is banned (`check` is not called), else what `check` says, counted.
    pub fn attempt(&self, ip: Option<IpAddr>, check: impl FnOnce() -> bool) -> Result<bool, ()> {
        let now = Instant::now();
        if ip.is_some_and(|ip| self.banned(ip, now)) {
            return Err(());
        }
        let ok = check();
        if let Some(ip) = ip {
            self.note(ip, ok, now);
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_ban_and_a_success_clears() {
        let g = LoginGuard::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let now = Instant::now();
        for _ in 0..MAX_LOGIN_FAILS - 1 {
            g.note(ip, false, now);
        }
        assert!(!g.banned(ip, now));
        g.note(ip, true, now);
        for _ in 0..MAX_LOGIN_FAILS {
            assert_eq!(g.attempt(Some(ip), || false), Ok(false));
        }
        assert!(g.banned(ip, now));
        // Banned: the right password is not even compared.
        assert_eq!(g.attempt(Some(ip), || panic!("compared")), Err(()));
        assert!(!g.banned(ip, Instant::now() + BAN_TIME));
        assert!(!g.banned("192.0.2.8".parse().unwrap(), now));
    }

    #[test]
    fn five_failed_logins_ban_an_address_for_an_hour() {
        let g = LoginGuard::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..4 {
            g.note(a, false, t0 + Duration::from_secs(i));
        }
        assert!(!g.banned(a, t0 + Duration::from_secs(5)));
        // A success clears the count.
        g.note(a, true, t0 + Duration::from_secs(5));
        for i in 0..5 {
            g.note(a, false, t0 + Duration::from_secs(10 + i));
        }
        let last = t0 + Duration::from_secs(14);
        assert!(g.banned(a, last + Duration::from_secs(1)));
        assert!(!g.banned(b, last), "other addresses are not banned");
        assert!(g.banned(a, last + BAN_TIME - Duration::from_secs(1)));
        assert!(!g.banned(a, last + BAN_TIME), "the ban ends");
        // Counting starts again after a ban.
        g.note(a, false, last + BAN_TIME);
        assert!(!g.banned(a, last + BAN_TIME + Duration::from_secs(1)));
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let g = LoginGuard::default();
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES as u32 + 10 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            g.note(ip, false, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(g.lock().len(), MAX_ENTRIES);
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let g = LoginGuard::default();
        let now = Instant::now();
        for i in 0..MAX_LOGIN_FAILS {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            g.note(ip, false, now);
        }
        assert!(g.banned("2001:db8:1:2:ffff::1".parse().unwrap(), now));
        assert!(!g.banned("2001:db8:1:3::1".parse().unwrap(), now));
        for _ in 0..MAX_LOGIN_FAILS {
            g.note("::ffff:198.51.100.1".parse().unwrap(), false, now);
        }
        assert!(g.banned("198.51.100.1".parse().unwrap(), now));
    }
}
