//! The few protobuf wire-format pieces dag-pb and UnixFS need: varints, tags, and a bounded
//! reader over a byte slice. Only wire types 0 (varint) and 2 (length-delimited) occur in
//! these two formats; anything else is an error, never skipped blindly.

use crate::Error;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Field `field` with wire type 2 holding `bytes`.
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Field `field` with wire type 0 holding `v`.
pub(crate) fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field << 3));
    put_varint(out, v);
}

/// One field read from a protobuf message.
pub(crate) enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Reads fields one by one; every length is checked against what is left.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn bad(&self, why: &str) -> Error {
        Error::Malformed(format!("{}: {why}", self.what))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Error> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err(self.bad("truncated varint"));
            };
            self.buf = rest;
            if i == 9 && b > 1 {
                return Err(self.bad("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(self.bad("varint not minimally encoded"));
                }
                return Ok(v);
            }
        }
        Err(self.bad("varint too long"))
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    pub(crate) fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, Error> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = tag >> 3;
        if field == 0 {
            return Err(self.bad("field number 0"));
        }
        match tag & 7 {
            0 => Ok(Some((field, Value::Varint(self.varint()?)))),
            2 => {
                let len = self.varint()?;
                if len > self.buf.len() as u64 {
                    return Err(self.bad("length past the end"));
                }
                let (bytes, rest) = self.buf.split_at(len as usize);
                self.buf = rest;
                Ok(Some((field, Value::Bytes(bytes))))
            }
            t => Err(self.bad(&format!("unexpected wire type {t}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_length() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&out, "test");
            assert_eq!(r.varint().unwrap(), v);
        }
    }

    #[test]
    fn rejects_overlong_and_truncated_varints() {
        assert!(Reader::new(&[0x80], "t").varint().is_err());
        assert!(Reader::new(&[0x80, 0x00], "t").varint().is_err());
        assert!(Reader::new(&[0xff; 11], "t").varint().is_err());
        assert!(
            Reader::new(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                "t"
            )
            .varint()
            .is_err()
        );
    }
}
