//! A small, bounded bencode reader and writer, just enough for the BEP 10 extended
//! handshake dictionary.
//!
//! TODO(merge): replace with the workspace `bencode` crate when the `wire` and `main`
//! branches merge; it was being written at the same time and was not available here.
//! Keep this private so nothing outside `extended` comes to depend on it.
//!
//! The reader borrows from its input (no copies of strings), limits nesting depth and
//! the number of values, and accepts dictionaries with unsorted keys, because real
//! clients send them and the handshake is not hashed. Integers must be canonical
//! (no leading zeros, no `-0`) and fit an `i64`.

/// Deepest nesting accepted. The handshake is a dictionary holding a dictionary; 16
/// leaves room for unknown keys that other clients add without letting recursion run
/// away.
pub(crate) const MAX_DEPTH: usize = 16;
/// Most values accepted in one document: each costs a few dozen bytes of memory, and
/// a real handshake has fewer than fifty.
pub(crate) const MAX_VALUES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Entries in the order they came.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// First value under `key`, if this is a dictionary.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub(crate) fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    #[error("bencode ends early")]
    UnexpectedEnd,
    #[error("unexpected byte {byte:#04x} at offset {at}")]
    UnexpectedByte { byte: u8, at: usize },
    #[error("bad bencode integer at offset {0}")]
    BadInt(usize),
    #[error("bencode nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("more than {MAX_VALUES} bencode values")]
    TooManyValues,
    #[error("bytes after the end of the bencode value")]
    TrailingBytes,
}

/// Parses exactly one value filling all of `input`.
pub(crate) fn parse(input: &[u8]) -> Result<Value<'_>, BencodeError> {
    let mut p = Parser {
        input,
        pos: 0,
        values: 0,
    };
    let v = p.value(0)?;
    if p.pos != input.len() {
        return Err(BencodeError::TrailingBytes);
    }
    Ok(v)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    values: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEnd)
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(BencodeError::TooManyValues);
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let i = self.int(b'e')?;
                Ok(Value::Int(i))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                if depth >= MAX_DEPTH {
                    return Err(BencodeError::TooDeep);
                }
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                if depth >= MAX_DEPTH {
                    return Err(BencodeError::TooDeep);
                }
                self.pos += 1;
                let mut entries = Vec::new();
                while self.peek()? != b'e' {
                    let key = match self.peek()? {
                        b'0'..=b'9' => self.bytes()?,
                        byte => return Err(BencodeError::UnexpectedByte { byte, at: self.pos }),
                    };
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            byte => Err(BencodeError::UnexpectedByte { byte, at: self.pos }),
        }
    }

    /// Reads a canonical decimal integer up to `end`, which is consumed.
    fn int(&mut self, end: u8) -> Result<i64, BencodeError> {
        let start = self.pos;
        let rest = &self.input[start..];
        let Some(len) = rest.iter().position(|&b| b == end) else {
            return Err(BencodeError::UnexpectedEnd);
        };
        let digits = &rest[..len];
        let (neg, body) = match digits.split_first() {
            Some((b'-', body)) => (true, body),
            _ => (false, digits),
        };
        let canonical = !body.is_empty()
            && body.iter().all(u8::is_ascii_digit)
            && (body == b"0" || body[0] != b'0')
            && !(neg && body == b"0");
        if !canonical {
            return Err(BencodeError::BadInt(start));
        }
        let mut n: i64 = 0;
        for &d in body {
            let d = i64::from(d - b'0');
            n = n
                .checked_mul(10)
                .and_then(|n| {
                    if neg {
                        n.checked_sub(d)
                    } else {
                        n.checked_add(d)
                    }
                })
                .ok_or(BencodeError::BadInt(start))?;
        }
        self.pos = start + len + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let at = self.pos;
        let len = self.int(b':')?;
        let len = usize::try_from(len).map_err(|_| BencodeError::BadInt(at))?;
        // The length is checked against what has arrived before it is used.
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or(BencodeError::UnexpectedEnd)?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// Appends bencode to a `Vec`. Dictionary keys must be written in sorted order by the
/// caller, as bencode requires.
pub(crate) struct Writer<'a>(pub(crate) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(crate) fn int(&mut self, i: i64) {
        self.0.push(b'i');
        self.0.extend_from_slice(i.to_string().as_bytes());
        self.0.push(b'e');
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b.len().to_string().as_bytes());
        self.0.push(b':');
        self.0.extend_from_slice(b);
    }
    pub(crate) fn begin_dict(&mut self) {
        self.0.push(b'd');
    }
    pub(crate) fn end(&mut self) {
        self.0.push(b'e');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_values() {
        let v = parse(b"d1:ai-42e1:bli0e3:xyze1:cd0:0:ee").unwrap();
        assert_eq!(v.get(b"a").and_then(Value::as_int), Some(-42));
        assert_eq!(
            v.get(b"b"),
            Some(&Value::List(vec![Value::Int(0), Value::Bytes(b"xyz")]))
        );
        assert_eq!(
            v.get(b"c"),
            Some(&Value::Dict(vec![(&b""[..], Value::Bytes(b""))]))
        );
    }

    #[test]
    fn refuses_bad_input() {
        use BencodeError::*;
        let cases: &[(&[u8], BencodeError)] = &[
            (b"", UnexpectedEnd),
            (b"i", UnexpectedEnd),
            (b"i01e", BadInt(1)),
            (b"i-0e", BadInt(1)),
            (b"ie", BadInt(1)),
            (b"i9223372036854775808e", BadInt(1)),
            (b"5:abc", UnexpectedEnd),
            (b"99999999999999999999:", BadInt(0)),
            (b"d", UnexpectedEnd),
            (b"di1ei2ee", UnexpectedByte { byte: b'i', at: 1 }),
            (b"x", UnexpectedByte { byte: b'x', at: 0 }),
            (b"i1ei2e", TrailingBytes),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(parse(&[b'l'; 10_000]), Err(TooDeep));
        let mut many = vec![b'l'];
        for _ in 0..MAX_VALUES {
            many.extend_from_slice(b"i1e");
        }
        many.push(b'e');
        assert_eq!(parse(&many), Err(TooManyValues));
        let min = format!("i{}e", i64::MIN);
        assert_eq!(parse(min.as_bytes()), Ok(Value::Int(i64::MIN)));
        assert_eq!(parse(b"-1:"), Err(UnexpectedByte { byte: b'-', at: 0 }));
        assert_eq!(parse(b"l-1:e"), Err(UnexpectedByte { byte: b'-', at: 1 }));
    }

    #[test]
    fn writer_output_parses_back() {
        let mut out = Vec::new();
        let mut w = Writer(&mut out);
        w.begin_dict();
        w.bytes(b"a");
        w.int(-7);
        w.bytes(b"b");
        w.bytes(b"hi");
        w.end();
        assert_eq!(out, b"d1:ai-7e1:b2:hie");
        assert_eq!(
            parse(&out).unwrap().get(b"b").and_then(Value::as_bytes),
            Some(&b"hi"[..])
        );
    }
}
