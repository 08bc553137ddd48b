//! Bencode (BEP 3): a zero-copy decoder and a canonical encoder.
//!
//! The decoder borrows from its input. Every decoded [`Value`] carries the exact bytes it was
//! decoded from ([`Value::raw`]), because an info-hash is the hash of the `info` dictionary
//! *as received*, never of a re-encoding: real torrents have unsorted keys, and re-encoding
//! them would change the hash.
//!
//! Reading is lenient where real files demand it (dictionary keys in any order) and strict
//! everywhere else: integers must be canonical (`i0e`, no leading zeros, no `-0`, no overflow),
//! duplicate keys are rejected (they make a dictionary mean two things), and every input is
//! bounded by [`Limits`] (total size, nesting depth, string length, item count). Whether the
//! input was canonical (sorted keys) is reported by [`Value::is_canonical`].
//!
//! Writing is always canonical: [`Encoder`] writes dictionary keys sorted bytewise, whatever
//! order they are given in.

mod encode;
mod owned;

pub use encode::{DictEncoder, Encoder, encode_owned};
pub use owned::OwnedValue;

use std::fmt;

/// Why an input is not acceptable bencode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("input ends early at byte {0}")]
    UnexpectedEnd(usize),
    #[error("unexpected byte 0x{byte:02x} at byte {at}")]
    UnexpectedByte { byte: u8, at: usize },
    #[error("invalid integer at byte {0}")]
    InvalidInteger(usize),
    #[error("integer at byte {0} does not fit in 64 bits")]
    IntegerOverflow(usize),
    #[error("invalid string length at byte {0}")]
    InvalidLength(usize),
    #[error("string of {len} bytes at byte {at} is longer than the limit of {max}")]
    StringTooLong { len: u64, max: usize, at: usize },
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("input of {len} bytes is larger than the limit of {max}")]
    InputTooLarge { len: usize, max: usize },
    #[error("more than {0} items")]
    TooManyItems(usize),
    #[error("dictionary key at byte {0} is not a string")]
    KeyNotString(usize),
    #[error("duplicate dictionary key at byte {0}")]
    DuplicateKey(usize),
    #[error("{0} bytes of trailing data after the value")]
    TrailingData(usize),
}

/// Bounds applied while decoding. Every one of them protects against a hostile input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest input accepted, in bytes.
    pub max_input: usize,
    /// Deepest nesting of lists and dictionaries.
    pub max_depth: usize,
    /// Longest byte string.
    pub max_string: usize,
    /// Most values (of any kind) in one input.
    pub max_items: usize,
}

impl Default for Limits {
    /// Bounds that every real .torrent file, tracker response and KRPC message fits in.
    fn default() -> Self {
        Limits {
            max_input: 64 << 20,
            max_depth: 64,
            max_string: 64 << 20,
            max_items: 4_000_000,
        }
    }
}

/// A decoded value borrowing from the input.
#[derive(Clone, PartialEq, Eq)]
pub struct Value<'a> {
    raw: &'a [u8],
    kind: Kind<'a>,
}

/// What a [`Value`] is.
#[derive(Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

/// A dictionary, its entries in the order they appeared in the input.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
    sorted: bool,
}

impl<'a> Dict<'a> {
    /// The value under `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        if self.sorted {
            self.entries
                .binary_search_by(|(k, _)| (*k).cmp(key))
                .ok()
                .map(|i| &self.entries[i].1)
        } else {
            self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
        }
    }

    /// Entries in input order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the keys appeared sorted bytewise, as canonical bencode requires.
    pub fn keys_sorted(&self) -> bool {
        self.sorted
    }
}

impl<'a> Value<'a> {
    /// The exact input bytes this value was decoded from.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn kind(&self) -> &Kind<'a> {
        &self.kind
    }

    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The string if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            Kind::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match &self.kind {
            Kind::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// A short name of the kind, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Int(_) => "integer",
            Kind::Bytes(_) => "string",
            Kind::List(_) => "list",
            Kind::Dict(_) => "dictionary",
        }
    }

    /// Whether this value, and everything in it, is canonical bencode: re-encoding it gives
    /// exactly [`Value::raw`]. (Integers and lengths are always canonical once decoded; only
    /// key order can differ.)
    pub fn is_canonical(&self) -> bool {
        match &self.kind {
            Kind::Int(_) | Kind::Bytes(_) => true,
            Kind::List(l) => l.iter().all(Value::is_canonical),
            Kind::Dict(d) => d.sorted && d.entries.iter().all(|(_, v)| v.is_canonical()),
        }
    }

    /// A deep copy that owns its data.
    pub fn to_owned_value(&self) -> OwnedValue {
        match &self.kind {
            Kind::Int(i) => OwnedValue::Int(*i),
            Kind::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Kind::List(l) => OwnedValue::List(l.iter().map(Value::to_owned_value).collect()),
            Kind::Dict(d) => OwnedValue::Dict(
                d.entries
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Int(i) => write!(f, "{i}"),
            Kind::Bytes(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Kind::List(l) => f.debug_list().entries(l).finish(),
            Kind::Dict(d) => f
                .debug_map()
                .entries(
                    d.entries
                        .iter()
                        .map(|(k, v)| (String::from_utf8_lossy(k), v)),
                )
                .finish(),
        }
    }
}

impl fmt::Debug for Kind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Int(i) => write!(f, "Int({i})"),
            Kind::Bytes(b) => write!(f, "Bytes({:?})", String::from_utf8_lossy(b)),
            Kind::List(l) => f.debug_tuple("List").field(l).finish(),
            Kind::Dict(d) => f.debug_tuple("Dict").field(d).finish(),
        }
    }
}

impl fmt::Debug for Dict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), v)),
            )
            .finish()
    }
}

/// Decode exactly one value that spans the whole input, with the default [`Limits`].
pub fn decode(input: &[u8]) -> Result<Value<'_>, Error> {
    decode_with(input, &Limits::default())
}

/// Decode exactly one value that spans the whole input.
pub fn decode_with<'a>(input: &'a [u8], limits: &Limits) -> Result<Value<'a>, Error> {
    let (value, rest) = decode_prefix_with(input, limits)?;
    if !rest.is_empty() {
        return Err(Error::TrailingData(rest.len()));
    }
    Ok(value)
}

/// Decode one value from the start of the input and return it with the bytes after it
/// (BEP 9 metadata messages carry raw data after a dictionary).
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, &[u8]), Error> {
    decode_prefix_with(input, &Limits::default())
}

/// [`decode_prefix`] with explicit limits.
pub fn decode_prefix_with<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<(Value<'a>, &'a [u8]), Error> {
    if input.len() > limits.max_input {
        return Err(Error::InputTooLarge {
            len: input.len(),
            max: limits.max_input,
        });
    }
    let mut p = Parser {
        input,
        pos: 0,
        items: 0,
        limits,
    };
    let v = p.value(0)?;
    Ok((v, &input[p.pos..]))
}

struct Parser<'a, 'l> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: &'l Limits,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Result<u8, Error> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(Error::UnexpectedEnd(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(Error::TooManyItems(self.limits.max_items));
        }
        let start = self.pos;
        let kind = match self.peek()? {
            b'i' => {
                self.pos += 1;
                Kind::Int(self.integer(b'e')?)
            }
            b'0'..=b'9' => Kind::Bytes(self.bytes()?),
            b'l' => {
                if depth >= self.limits.max_depth {
                    return Err(Error::TooDeep(self.limits.max_depth));
                }
                self.pos += 1;
                let mut list = Vec::new();
                while self.peek()? != b'e' {
                    list.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Kind::List(list)
            }
            b'd' => {
                if depth >= self.limits.max_depth {
                    return Err(Error::TooDeep(self.limits.max_depth));
                }
                self.pos += 1;
                Kind::Dict(self.dict(depth)?)
            }
            byte => return Err(Error::UnexpectedByte { byte, at: self.pos }),
        };
        Ok(Value {
            raw: &self.input[start..self.pos],
            kind,
        })
    }

    fn dict(&mut self, depth: usize) -> Result<Dict<'a>, Error> {
        let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
        let mut sorted = true;
        while self.peek()? != b'e' {
            let key_at = self.pos;
            if !self.peek()?.is_ascii_digit() {
                return Err(Error::KeyNotString(key_at));
            }
            let key = self.bytes()?;
            if let Some((last, _)) = entries.last() {
                match (*last).cmp(key) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return Err(Error::DuplicateKey(key_at)),
                    std::cmp::Ordering::Greater => sorted = false,
                }
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        self.pos += 1;
        if !sorted {
            // Unsorted input: duplicates need not be neighbours, so check them all once.
            let mut keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(Error::DuplicateKey(self.pos - 1));
            }
        }
        Ok(Dict { entries, sorted })
    }

    /// A canonical decimal integer ending with `end`; `pos` is just after the `i` (or at the
    /// first digit of a string length).
    fn integer(&mut self, end: u8) -> Result<i64, Error> {
        let start = self.pos;
        let rest = &self.input[start..];
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(Error::UnexpectedEnd(self.input.len()))?;
        let digits = &rest[..len];
        let (negative, body) = match digits.split_first() {
            Some((b'-', body)) => (true, body),
            _ => (false, digits),
        };
        let canonical = !body.is_empty()
            && body.iter().all(u8::is_ascii_digit)
            && (body == b"0" || body[0] != b'0')
            && !(negative && body == b"0");
        if !canonical {
            return Err(Error::InvalidInteger(start));
        }
        let mut n: i64 = 0;
        for &d in body {
            let d = i64::from(d - b'0');
            n = n
                .checked_mul(10)
                .and_then(|n| {
                    if negative {
                        n.checked_sub(d)
                    } else {
                        n.checked_add(d)
                    }
                })
                .ok_or(Error::IntegerOverflow(start))?;
        }
        self.pos = start + len + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let at = self.pos;
        let len = match self.integer(b':') {
            Ok(n) if n >= 0 => n as u64,
            Err(Error::UnexpectedEnd(e)) => return Err(Error::UnexpectedEnd(e)),
            Err(Error::IntegerOverflow(_)) => {
                return Err(Error::StringTooLong {
                    len: u64::MAX,
                    max: self.limits.max_string,
                    at,
                });
            }
            _ => return Err(Error::InvalidLength(at)),
        };
        if len > self.limits.max_string as u64 {
            return Err(Error::StringTooLong {
                len,
                max: self.limits.max_string,
                at,
            });
        }
        let len = len as usize;
        let remaining = self.input.len() - self.pos;
        if len > remaining {
            return Err(Error::UnexpectedEnd(self.input.len()));
        }
        let s = &self.input[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
