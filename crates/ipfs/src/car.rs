//! CAR v1 files (<https://ipld.io/specs/transport/car/carv1/>): a varint-prefixed dag-cbor
//! header `{roots: [CID], version: 1}`, then varint-prefixed `CID || block` sections.
//!
//! The writer emits the canonical header (keys in dag-cbor order). The reader bounds the
//! header (64 KiB, 1024 roots) and every section (2 MiB block), and parses only the header
//! shape CAR v1 allows; it returns blocks unverified: callers verify each one (the block
//! store refuses any that does not match its CID).

use std::io::{self, Read, Write};

use crate::pb::{self, varint_len};
use crate::store::MAX_BLOCK_SIZE;
use crate::{Cid, Error};

const MAX_HEADER: u64 = 64 << 10;
const MAX_ROOTS: usize = 1024;

fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

/// The header of a CAR v1 file naming `roots`, with its varint length prefix.
pub fn header(roots: &[Cid]) -> Vec<u8> {
    let mut h = Vec::new();
    cbor_head(&mut h, 5, 2);
    cbor_head(&mut h, 3, 5);
    h.extend_from_slice(b"roots");
    cbor_head(&mut h, 4, roots.len() as u64);
    for r in roots {
        let bytes = r.to_bytes();
        cbor_head(&mut h, 6, 42);
        cbor_head(&mut h, 2, bytes.len() as u64 + 1);
        h.push(0);
        h.extend_from_slice(&bytes);
    }
    cbor_head(&mut h, 3, 7);
    h.extend_from_slice(b"version");
    cbor_head(&mut h, 0, 1);
    let mut out = Vec::with_capacity(h.len() + 2);
    pb::put_varint(&mut out, h.len() as u64);
    out.extend_from_slice(&h);
    out
}

/// One section: `varint(len) || CID || block`.
pub fn write_block(out: &mut dyn Write, cid: &Cid, block: &[u8]) -> io::Result<()> {
    let c = cid.to_bytes();
    let mut head = Vec::with_capacity(c.len() + 10);
    pb::put_varint(&mut head, (c.len() + block.len()) as u64);
    head.extend_from_slice(&c);
    out.write_all(&head)?;
    out.write_all(block)
}

/// Bytes a section of `cid` and a `len`-byte block takes.
pub fn section_len(cid: &Cid, len: usize) -> u64 {
    let n = cid.encoded_len() + len;
    (varint_len(n as u64) + n) as u64
}

/// Reads a CAR v1 stream: the roots, then blocks one by one.
pub struct CarReader<R> {
    r: R,
    pub roots: Vec<Cid>,
}

/// Reads a varint from a stream; `None` at a clean end of stream.
fn read_varint(r: &mut dyn Read) -> Result<Option<u64>, Error> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8];
        match r.read_exact(&mut b) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && i == 0 => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(Error::Malformed("CAR: truncated varint".into()));
            }
            Err(e) => return Err(Error::io("CAR", e)),
        }
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(Error::Malformed("CAR: varint too long".into()))
}

struct Cbor<'a>(&'a [u8]);

impl Cbor<'_> {
    fn bad() -> Error {
        Error::Malformed("CAR header is not {roots: [CID...], version: 1}".into())
    }
    fn head(&mut self) -> Result<(u8, u64), Error> {
        let (&b, rest) = self.0.split_first().ok_or_else(Self::bad)?;
        self.0 = rest;
        let info = b & 31;
        let n = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let len = 1usize << (info - 24);
                if self.0.len() < len {
                    return Err(Self::bad());
                }
                let (num, rest) = self.0.split_at(len);
                self.0 = rest;
                num.iter().fold(0u64, |a, &x| a << 8 | u64::from(x))
            }
            _ => return Err(Self::bad()),
        };
        Ok((b >> 5, n))
    }
    fn bytes(&mut self, major: u8) -> Result<&[u8], Error> {
        let (m, n) = self.head()?;
        if m != major || n > self.0.len() as u64 {
            return Err(Self::bad());
        }
        let (b, rest) = self.0.split_at(n as usize);
        self.0 = rest;
        Ok(b)
    }
}

fn parse_header(h: &[u8]) -> Result<Vec<Cid>, Error> {
    let mut c = Cbor(h);
    let (m, n) = c.head()?;
    if m != 5 || n != 2 {
        return Err(Cbor::bad());
    }
    let (mut roots, mut version) = (None, None);
    for _ in 0..2 {
        match c.bytes(3)? {
            b"roots" => {
                let (m, count) = c.head()?;
                if m != 4 || count as usize > MAX_ROOTS || roots.is_some() {
                    return Err(Cbor::bad());
                }
                let mut v = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    if c.head()? != (6, 42) {
                        return Err(Cbor::bad());
                    }
                    let b = c.bytes(2)?;
                    match b.split_first() {
                        Some((0, cid)) => v.push(crate::cid_from_bytes(cid)?),
                        _ => return Err(Cbor::bad()),
                    }
                }
                roots = Some(v);
            }
            b"version" => version = Some(c.head()?),
            _ => return Err(Cbor::bad()),
        }
    }
    if version != Some((0, 1)) {
        return Err(Error::Unsupported("CAR version other than 1".into()));
    }
    if !c.0.is_empty() {
        return Err(Cbor::bad());
    }
    roots.ok_or_else(Cbor::bad)
}

impl<R: Read> CarReader<R> {
    pub fn new(mut r: R) -> Result<Self, Error> {
        let len = read_varint(&mut r)?.ok_or_else(|| Error::Malformed("CAR: empty".into()))?;
        if len == 0 || len > MAX_HEADER {
            return Err(Error::Limit(format!("CAR header of {len} bytes")));
        }
        let mut h = vec![0u8; len as usize];
        r.read_exact(&mut h)
            .map_err(|_| Error::Malformed("CAR: truncated header".into()))?;
        let roots = parse_header(&h)?;
        Ok(CarReader { r, roots })
    }

    /// The next `(cid, block)`, unverified; `None` at the end.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, Error> {
        let Some(len) = read_varint(&mut self.r)? else {
            return Ok(None);
        };
        if len > (MAX_BLOCK_SIZE + 128) as u64 {
            return Err(Error::Limit(format!("CAR section of {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.r
            .read_exact(&mut buf)
            .map_err(|_| Error::Malformed("CAR: truncated section".into()))?;
        let mut rest = &buf[..];
        let cid = Cid::read_bytes(&mut rest).map_err(|e| Error::BadCid(format!("in CAR: {e}")))?;
        let used = buf.len() - rest.len();
        buf.drain(..used);
        Ok(Some((cid, buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RAW, cid_of};

    #[test]
    fn round_trip() {
        let a = cid_of(RAW, b"a", false);
        let mut car = header(&[a]);
        write_block(&mut car, &a, b"a").unwrap();
        let mut r = CarReader::new(&car[..]).unwrap();
        assert_eq!(r.roots, vec![a]);
        assert_eq!(r.next_block().unwrap(), Some((a, b"a".to_vec())));
        assert_eq!(r.next_block().unwrap(), None);
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(CarReader::new(&[][..]).is_err());
        assert!(CarReader::new(&[0x01, 0xa0][..]).is_err());
        let mut bad = header(&[]);
        let n = bad.len();
        bad[n - 1] = 2; // version 2
        assert!(CarReader::new(&bad[..]).is_err());
        assert!(CarReader::new(&[0xff, 0xff, 0xff, 0x0f][..]).is_err());
    }
}
