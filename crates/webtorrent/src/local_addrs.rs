//! The node's own IP addresses, offered as WebRTC host candidates when the endpoint binds
//! an unspecified IP. No new crate: Linux's `/proc` says it all.
//!
//! - IPv4: the `/32 host LOCAL` entries of `/proc/net/fib_trie` (the local routing table).
//!   It does not name interfaces, so the address of an interface set down is still offered
//!   (the kernel keeps its local route): its candidate pairs fail and cost nothing else.
//! - IPv6: `/proc/net/if_inet6`, without addresses still tentative, whose duplicate
//!   detection failed, or deprecated, and without those of interfaces that are down (as
//!   `/sys/class/net/NAME/operstate` says).
//! - Never loopback, link-local (a link-local candidate would need its interface's scope),
//!   multicast or unspecified addresses.
//!
//! The address of the default route comes first, and there are at most [`MAX_HOST_IPS`].
//! The parsers are pure and total: odd lines are skipped, never a panic. Elsewhere than
//! Linux the files are missing and only the default routes' addresses are offered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Most addresses a WebRTC session offers (one UDP socket each).
pub const MAX_HOST_IPS: usize = 8;

/// The IPv4 addresses of `/proc/net/fib_trie` text: each leaf (`|-- A.B.C.D`) that has a
/// `/32 host LOCAL` entry, in order, once each, without loopback and link-local ones.
pub fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("|--") {
            leaf = rest.trim().parse().ok();
        } else if line.starts_with("+--") || line.ends_with(':') {
            // An inner node or a table's name ("Main:", "Local:").
            leaf = None;
        } else if let Some(ip) = leaf {
            let mut words = line.split_whitespace();
            let local = words.next() == Some("/32")
                && words.next() == Some("host")
                && words.next() == Some("LOCAL");
            if local && usable_v4(ip) && !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// IPv6 address flags of `/proc/net/if_inet6` (`IFA_F_*`) that rule an address out.
const IFA_F_DADFAILED: u8 = 0x08;
const IFA_F_DEPRECATED: u8 = 0x20;
const IFA_F_TENTATIVE: u8 = 0x40;

/// The IPv6 addresses of `/proc/net/if_inet6` text (a line is `ADDRESS(32 hex) IFINDEX
/// PREFIXLEN SCOPE FLAGS IFNAME`), in order, once each: no loopback, link-local, site-local,
/// multicast or IPv4-mapped address, none tentative, deprecated or whose duplicate
/// detection failed, none of an interface for which `up(name)` is false.
pub fn parse_if_inet6(text: &str, up: impl Fn(&str) -> bool) -> Vec<Ipv6Addr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [hex, _index, _prefix, _scope, flags, name] = words[..] else {
            continue;
        };
        let Some(ip) = parse_hex_v6(hex) else {
            continue;
        };
        let Ok(flags) = u32::from_str_radix(flags, 16) else {
            continue;
        };
        let bad = u32::from(IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE);
        if flags & bad != 0 || !usable_v6(ip) || out.contains(&ip) || !up(name) {
            continue;
        }
        out.push(ip);
    }
    out
}

/// 32 hex digits as an IPv6 address.
fn parse_hex_v6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)
}

fn usable_v4(ip: Ipv4Addr) -> bool {
    !(ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast())
}

fn usable_v6(ip: Ipv6Addr) -> bool {
    let seg0 = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fe80::/10 link-local, fec0::/10 (deprecated) site-local.
        || (seg0 & 0xffc0) == 0xfe80
        || (seg0 & 0xffc0) == 0xfec0
        || ip.to_ipv4_mapped().is_some())
}

/// The addresses to offer: `first` (the default routes' addresses), then the rest of
/// `v4` and `v6`, once each, at most `max`.
pub fn order(first: &[IpAddr], v4: &[Ipv4Addr], v6: &[Ipv6Addr], max: usize) -> Vec<IpAddr> {
    let rest = v4.iter().map(|&a| IpAddr::V4(a));
    let rest = rest.chain(v6.iter().map(|&a| IpAddr::V6(a)));
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in first.iter().copied().chain(rest) {
        if out.len() >= max {
            break;
        }
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// The address of the default route's interface of a family (no packet is sent).
pub fn default_route_ip(v6: bool) -> Option<IpAddr> {
    let (bind, probe): (SocketAddr, SocketAddr) = if v6 {
        ("[::]:0".parse().ok()?, "[2001:db8::1]:9".parse().ok()?)
    } else {
        ("0.0.0.0:0".parse().ok()?, "192.0.2.1:9".parse().ok()?)
    };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(probe).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// Whether the interface `name` is not down (as `/sys/class/net/NAME/operstate` says; an
/// unreadable state counts as up, loopback's and tunnels' "unknown" too).
fn interface_up(name: &str) -> bool {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return false;
    }
    match std::fs::read_to_string(format!("/sys/class/net/{name}/operstate")) {
        Ok(s) => !matches!(s.trim(), "down" | "lowerlayerdown" | "notpresent"),
        Err(_) => true,
    }
}

/// The node's usable addresses: the default route's address of the preferred family
/// first, then the other family's, then the others (IPv4, then IPv6), at most
/// [`MAX_HOST_IPS`]. Empty when the node has none (only loopback, say).
pub fn host_ips(prefer_v6: bool) -> Vec<IpAddr> {
    let first: Vec<IpAddr> = [prefer_v6, !prefer_v6]
        .into_iter()
        .filter_map(default_route_ip)
        .filter(|ip| match ip {
            IpAddr::V4(a) => usable_v4(*a),
            IpAddr::V6(a) => usable_v6(*a),
        })
        .collect();
    let v4 = std::fs::read_to_string("/proc/net/fib_trie")
        .map(|t| parse_fib_trie(&t))
        .unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/if_inet6")
        .map(|t| parse_if_inet6(&t, interface_up))
        .unwrap_or_default();
    order(&first, &v4, &v6, MAX_HOST_IPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB_TRIE: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
     |-- 10.1.2.3
        /24 link UNICAST
        /32 host LOCAL
     |-- 169.254.3.4
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
           |-- 192.0.2.2
              /32 host LOCAL
     |-- 172.17.0.1
        /32 host LOCAL
";

    #[test]
    fn fib_trie_gives_the_local_ipv4_addresses_once_each() {
        let got = parse_fib_trie(FIB_TRIE);
        let want: Vec<Ipv4Addr> = ["192.0.2.2", "10.1.2.3", "172.17.0.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn fib_trie_odd_input_is_skipped() {
        assert!(parse_fib_trie("").is_empty());
        assert!(parse_fib_trie("/32 host LOCAL\n|--\n/32 host LOCAL").is_empty());
        assert!(parse_fib_trie("|-- 300.1.1.1\n /32 host LOCAL").is_empty());
        assert!(parse_fib_trie("|-- 10.0.0.1\n+-- 10.0.0.0/8\n/32 host LOCAL").is_empty());
        assert!(parse_fib_trie("|-- 10.0.0.1\n/32 host").is_empty());
        assert!(parse_fib_trie("\u{0}\u{ffff}|-- é\n\n\t/32 host LOCAL\u{0}").is_empty());
        assert_eq!(
            parse_fib_trie("|-- 10.0.0.1\n /32  host  LOCAL  \r\n"),
            vec![Ipv4Addr::new(10, 0, 0, 1)]
        );
    }

    const IF_INET6: &str = "\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
fd000000000000000000000000000002 04 40 00 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
20010db8000000000000000000000010 04 40 00 40     eth0
20010db8000000000000000000000020 04 40 00 20     eth0
20010db8000000000000000000000030 04 40 00 08     eth0
20010db8000000000000000000000040 04 40 00 01     eth0
20010db8000000000000000000000050 05 40 00 80     wlan0
fd000000000000000000000000000002 06 40 00 80     eth1
00000000000000000000ffff0a000001 04 60 00 80     eth0
ff020000000000000000000000000001 04 80 20 80     eth0
";

    #[test]
    fn if_inet6_gives_the_usable_ipv6_addresses_once_each() {
        let got = parse_if_inet6(IF_INET6, |name| name != "wlan0");
        let want: Vec<Ipv6Addr> = ["fd00::2", "2001:db8::40"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn if_inet6_odd_input_is_skipped() {
        let up = |_: &str| true;
        assert!(parse_if_inet6("", up).is_empty());
        assert!(parse_if_inet6("fd00 04 40 00 80 eth0", up).is_empty());
        assert!(parse_if_inet6("fd00000000000000000000000000000g 04 40 00 80 eth0", up).is_empty());
        assert!(parse_if_inet6("+d000000000000000000000000000002 04 40 00 80 eth0", up).is_empty());
        assert!(parse_if_inet6("fd000000000000000000000000000002 04 40 00 zz eth0", up).is_empty());
        assert!(parse_if_inet6("fd000000000000000000000000000002 04 40 00 80", up).is_empty());
        assert!(
            parse_if_inet6("fd000000000000000000000000000002 04 40 00 80 eth0 x", up).is_empty()
        );
        assert!(parse_if_inet6("ééééééééééééééééé 04 40 00 80 eth0", up).is_empty());
        assert!(
            parse_if_inet6(
                "fd000000000000000000000000000002 04 40 00 ffffffffffffffffffff eth0",
                up
            )
            .is_empty()
        );
    }

    #[test]
    fn the_default_routes_come_first_and_the_count_is_bounded() {
        let v4: Vec<Ipv4Addr> = (1..=6).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let v6: Vec<Ipv6Addr> = vec!["fd00::2".parse().unwrap(), "fd00::3".parse().unwrap()];
        let first: Vec<IpAddr> = vec!["10.0.0.3".parse().unwrap(), "fd00::3".parse().unwrap()];
        let got = order(&first, &v4, &v6, MAX_HOST_IPS);
        let want: Vec<IpAddr> = [
            "10.0.0.3", "fd00::3", "10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6",
            "fd00::2",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(got, want);
        assert_eq!(order(&first, &v4, &v6, 3).len(), 3);
        assert!(order(&[], &[], &[], MAX_HOST_IPS).is_empty());
    }

    #[test]
    fn this_machine_has_no_unusable_host_ip() {
        let ips = host_ips(false);
        assert!(ips.len() <= MAX_HOST_IPS);
        for ip in &ips {
            assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
        }
    }
}
