//! A STUN Binding request and the parse of its answer (RFC 5389, sans-IO): how a WebRTC
//! session's socket learns the address a STUN server sees it from, offered as a
//! server-reflexive candidate (for peers behind another NAT). Only what that needs: no
//! authentication, no other methods; a response must be a Binding success with our
//! transaction id, and every attribute length is checked against the datagram.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed value in every STUN header (RFC 5389 §6).
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
const HEADER: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// Most attributes looked at in one response.
const MAX_ATTRIBUTES: usize = 32;

/// Why a datagram is not the answer we wait for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("not a STUN message")]
    NotStun,
    #[error("not a Binding success response")]
    NotBindingSuccess,
    #[error("another transaction")]
    OtherTransaction,
    #[error("malformed STUN message")]
    Malformed,
    #[error("no mapped address in the response")]
    NoAddress,
}

/// A Binding request with transaction id `tid` (no attributes).
pub fn binding_request(tid: &[u8; 12]) -> [u8; HEADER] {
    let mut m = [0u8; HEADER];
    m[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // Message length 0.
    m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[8..20].copy_from_slice(tid);
    m
}

/// The mapped address of a Binding success response to transaction `tid`
/// (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS).
pub fn parse_binding_response(buf: &[u8], tid: &[u8; 12]) -> Result<SocketAddr, StunError> {
    let header = buf.get(..HEADER).ok_or(StunError::NotStun)?;
    let be16 = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let kind = be16(header, 0);
    let len = usize::from(be16(header, 2));
    if kind & 0xc000 != 0 || header[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return Err(StunError::NotStun);
    }
    if kind != BINDING_SUCCESS {
        return Err(StunError::NotBindingSuccess);
    }
    if header[8..20] != tid[..] {
        return Err(StunError::OtherTransaction);
    }
    if len % 4 != 0 {
        return Err(StunError::Malformed);
    }
    let body = buf.get(HEADER..HEADER + len).ok_or(StunError::Malformed)?;
    let mut plain = None;
    let mut at = 0;
    for _ in 0..MAX_ATTRIBUTES {
        if at == body.len() {
            break;
        }
        let head = body.get(at..at + 4).ok_or(StunError::Malformed)?;
        let (attr, alen) = (be16(head, 0), usize::from(be16(head, 2)));
        let value = body
            .get(at + 4..at + 4 + alen)
            .ok_or(StunError::Malformed)?;
        match attr {
            ATTR_XOR_MAPPED_ADDRESS => return address(value, Some(&header[4..20])),
            ATTR_MAPPED_ADDRESS => plain = Some(address(value, None)?),
            _ => {}
        }
        // Attributes are padded to 4 bytes.
        at += 4 + alen.div_ceil(4) * 4;
    }
    plain.ok_or(StunError::NoAddress)
}

/// A (XOR-)MAPPED-ADDRESS value; `xor` is the cookie and transaction id (RFC 5389 §15.2).
fn address(v: &[u8], xor: Option<&[u8]>) -> Result<SocketAddr, StunError> {
    let family = *v.get(1).ok_or(StunError::Malformed)?;
    let mut port = u16::from_be_bytes([
        *v.get(2).ok_or(StunError::Malformed)?,
        *v.get(3).ok_or(StunError::Malformed)?,
    ]);
    let n = match family {
        1 => 4,
        2 => 16,
        _ => return Err(StunError::Malformed),
    };
    if v.len() != 4 + n {
        return Err(StunError::Malformed);
    }
    let mut ip = [0u8; 16];
    ip[..n].copy_from_slice(&v[4..4 + n]);
    if let Some(key) = xor {
        port ^= (MAGIC_COOKIE >> 16) as u16;
        for (b, k) in ip[..n].iter_mut().zip(key) {
            *b ^= k;
        }
    }
    let ip = if n == 4 {
        IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(ip))
    };
    Ok(SocketAddr::new(ip, port))
}

/// A Binding success response to `tid` with `addr` as XOR-MAPPED-ADDRESS (what a STUN
/// server sends; for tests and a local responder).
pub fn binding_success(tid: &[u8; 12], addr: SocketAddr) -> Vec<u8> {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    key[4..].copy_from_slice(tid);
    let (family, ip): (u8, Vec<u8>) = match addr.ip() {
        IpAddr::V4(a) => (1, a.octets().to_vec()),
        IpAddr::V6(a) => (2, a.octets().to_vec()),
    };
    let mut value = vec![0, family];
    value.extend_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    value.extend(ip.iter().zip(&key).map(|(b, k)| b ^ k));
    let mut m = Vec::with_capacity(HEADER + 4 + value.len());
    m.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    m.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    m.extend_from_slice(&key);
    m.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    m.extend_from_slice(&(value.len() as u16).to_be_bytes());
    m.extend_from_slice(&value);
    m
}

/// The transaction id of a Binding request (`None`: not one).
pub fn request_tid(buf: &[u8]) -> Option<[u8; 12]> {
    let h = buf.get(..HEADER)?;
    (h[0..2] == BINDING_REQUEST.to_be_bytes() && h[4..8] == MAGIC_COOKIE.to_be_bytes())
        .then(|| h[8..20].try_into().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    #[test]
    fn request_and_response_round_trip() {
        let req = binding_request(&TID);
        assert_eq!(request_tid(&req), Some(TID));
        for a in ["203.0.113.7:54321", "[2001:db8::42]:3478"] {
            let a: SocketAddr = a.parse().unwrap();
            let resp = binding_success(&TID, a);
            assert_eq!(parse_binding_response(&resp, &TID), Ok(a));
            assert_eq!(
                parse_binding_response(&resp, &[0; 12]),
                Err(StunError::OtherTransaction)
            );
        }
    }

    /// RFC 5769 §2.2: a sample IPv4 response (with SOFTWARE, XOR-MAPPED-ADDRESS,
    /// MESSAGE-INTEGRITY and FINGERPRINT).
    #[test]
    fn rfc5769_ipv4_response() {
        let hex = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b\
                   7465737420766563746f7220002000080001a147e112a643\
                   000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
                   80280004c07d4c96";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let tid: [u8; 12] = bytes[8..20].try_into().unwrap();
        assert_eq!(
            parse_binding_response(&bytes, &tid),
            Ok("192.0.2.1:32853".parse().unwrap())
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let good = binding_success(&TID, "198.51.100.1:1".parse().unwrap());
        for n in 0..good.len() {
            assert!(parse_binding_response(&good[..n], &TID).is_err(), "{n}");
        }
        let mut long = good.clone();
        long[3] = 200; // length beyond the datagram
        assert_eq!(
            parse_binding_response(&long, &TID),
            Err(StunError::Malformed)
        );
        let mut other = good.clone();
        other[0..2].copy_from_slice(&0x0111u16.to_be_bytes());
        assert_eq!(
            parse_binding_response(&other, &TID),
            Err(StunError::NotBindingSuccess)
        );
        assert_eq!(
            parse_binding_response(&[0x80; 40], &TID),
            Err(StunError::NotStun)
        );
    }
}
