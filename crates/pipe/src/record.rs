//! Where a listener is: its addresses as the value of a BEP 44 mutable item, and as a ticket.
//!
//! The item is stored under the listener's ed25519 key with the salt [`SALT`]; its value is a
//! bencoded list of compact addresses (6 bytes for IPv4, 18 for IPv6, as in BEP 5), at most
//! [`MAX_ADDRS`] of them. A ticket is `KEY@ADDR,ADDR...`: the key in hex, then the addresses
//! (`[::1]:5000` for IPv6), so a connector needs no DHT at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The salt of a listener's address record.
pub const SALT: &[u8] = b"bitpeer-pipe";
/// Most addresses in a record or ticket.
pub const MAX_ADDRS: usize = 16;

/// The record's value: `l6:....18:....e`.
pub fn encode_addrs(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut out = vec![b'l'];
    for a in addrs.iter().take(MAX_ADDRS) {
        let mut c = Vec::with_capacity(18);
        match a.ip() {
            IpAddr::V4(v4) => c.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => c.extend_from_slice(&v6.octets()),
        }
        c.extend_from_slice(&a.port().to_be_bytes());
        out.extend_from_slice(format!("{}:", c.len()).as_bytes());
        out.extend_from_slice(&c);
    }
    out.push(b'e');
    out
}

/// Addresses from a record's value: only well-formed compact addresses with a port, at most
/// [`MAX_ADDRS`]; anything else in the value is ignored. `None` if it is not such a list.
pub fn decode_addrs(value: &[u8]) -> Option<Vec<SocketAddr>> {
    let rest = value.strip_prefix(b"l")?.strip_suffix(b"e")?;
    let mut out = Vec::new();
    let mut rest = rest;
    while !rest.is_empty() {
        let colon = rest.iter().take(4).position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
        let body = rest.get(colon + 1..colon + 1 + len)?;
        rest = &rest[colon + 1 + len..];
        let addr = match len {
            6 => SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(body[0], body[1], body[2], body[3])),
                u16::from_be_bytes([body[4], body[5]]),
            ),
            18 => SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&body[..16]).ok()?)),
                u16::from_be_bytes([body[16], body[17]]),
            ),
            _ => continue,
        };
        if addr.port() != 0 && !addr.ip().is_unspecified() && out.len() < MAX_ADDRS {
            out.push(addr);
        }
    }
    Some(out)
}

/// A listener's key and addresses, written `KEY@ADDR,ADDR...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub key: [u8; 32],
    pub addrs: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("a ticket is KEY@ADDR[,ADDR...]: the key is 64 hex digits")]
    Key,
    #[error("a ticket is KEY@ADDR[,ADDR...]: `{0}` is not an IP:PORT address")]
    Addr(String),
    #[error("a ticket holds at most {MAX_ADDRS} addresses")]
    TooMany,
}

/// 64 hex digits as 32 bytes.
pub fn parse_key(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

pub fn key_hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

impl std::str::FromStr for Ticket {
    type Err = TicketError;
    fn from_str(s: &str) -> Result<Ticket, TicketError> {
        let (key, addrs) = s.split_once('@').ok_or(TicketError::Key)?;
        let key = parse_key(key).ok_or(TicketError::Key)?;
        let addrs = addrs
            .split(',')
            .map(|a| a.parse().map_err(|_| TicketError::Addr(a.to_string())))
            .collect::<Result<Vec<SocketAddr>, _>>()?;
        if addrs.len() > MAX_ADDRS {
            return Err(TicketError::TooMany);
        }
        Ok(Ticket { key, addrs })
    }
}

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@", key_hex(&self.key))?;
        for (i, a) in self.addrs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addrs_round_trip() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:5000".parse().unwrap(),
            "[2001:db8::1]:6000".parse().unwrap(),
        ];
        let v = encode_addrs(&addrs);
        assert_eq!(decode_addrs(&v).unwrap(), addrs);
        assert_eq!(decode_addrs(b"le").unwrap(), vec![]);
        // Odd entries are skipped, malformed lists refused.
        assert_eq!(decode_addrs(b"l3:abce").unwrap(), vec![]);
        assert_eq!(decode_addrs(b"l9:abce"), None);
        assert_eq!(decode_addrs(b"i1e"), None);
        assert_eq!(decode_addrs(b"l99999999999:e"), None);
    }

    #[test]
    fn tickets() {
        let t = Ticket {
            key: [0xab; 32],
            addrs: vec!["127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()],
        };
        let s = t.to_string();
        assert_eq!(s.parse::<Ticket>().unwrap(), t);
        assert!("abc@127.0.0.1:1".parse::<Ticket>().is_err());
        assert!(
            format!("{}@nothost", key_hex(&[1; 32]))
                .parse::<Ticket>()
                .is_err()
        );
    }
}
