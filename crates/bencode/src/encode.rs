//! The canonical encoder: integers in shortest form, dictionary keys sorted bytewise.

use crate::OwnedValue;

/// Writes bencode into a growing buffer. Dictionaries are written through
/// [`Encoder::dict`], which sorts the keys, so the output is always canonical.
#[derive(Debug, Default)]
pub struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    pub fn int(&mut self, i: i64) -> &mut Self {
        self.out.push(b'i');
        self.out.extend_from_slice(i.to_string().as_bytes());
        self.out.push(b'e');
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b.len().to_string().as_bytes());
        self.out.push(b':');
        self.out.extend_from_slice(b);
        self
    }

    /// Bytes that are already bencode (a raw `info` dictionary, say), written unchanged.
    pub fn raw(&mut self, encoded: &[u8]) -> &mut Self {
        self.out.extend_from_slice(encoded);
        self
    }

    /// A list whose items `f` writes.
    pub fn list(&mut self, f: impl FnOnce(&mut Encoder)) -> &mut Self {
        self.out.push(b'l');
        f(self);
        self.out.push(b'e');
        self
    }

    /// A dictionary: `f` adds entries in any order, and they are written sorted by key. A key
    /// added twice keeps its last value.
    pub fn dict(&mut self, f: impl FnOnce(&mut DictEncoder)) -> &mut Self {
        let mut d = DictEncoder::default();
        f(&mut d);
        d.entries.sort_by(|a, b| a.0.cmp(&b.0));
        d.entries.reverse();
        d.entries.dedup_by(|a, b| a.0 == b.0);
        d.entries.reverse();
        self.out.push(b'd');
        for (k, v) in d.entries {
            self.bytes(&k);
            self.out.extend_from_slice(&v);
        }
        self.out.push(b'e');
        self
    }

    pub fn value(&mut self, v: &OwnedValue) -> &mut Self {
        match v {
            OwnedValue::Int(i) => self.int(*i),
            OwnedValue::Bytes(b) => self.bytes(b),
            OwnedValue::List(l) => self.list(|e| {
                for item in l {
                    e.value(item);
                }
            }),
            OwnedValue::Dict(d) => {
                // BTreeMap iterates in key order already.
                self.out.push(b'd');
                for (k, v) in d {
                    self.bytes(k);
                    self.value(v);
                }
                self.out.push(b'e');
                self
            }
        }
    }
}

/// Collects the entries of one dictionary for [`Encoder::dict`].
#[derive(Debug, Default)]
pub struct DictEncoder {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl DictEncoder {
    /// Add `key` with a value written by `f`.
    pub fn entry(&mut self, key: &[u8], f: impl FnOnce(&mut Encoder)) -> &mut Self {
        let mut e = Encoder::new();
        f(&mut e);
        self.entries.push((key.to_vec(), e.out));
        self
    }

    pub fn int(&mut self, key: &[u8], i: i64) -> &mut Self {
        self.entry(key, |e| {
            e.int(i);
        })
    }

    pub fn bytes(&mut self, key: &[u8], b: &[u8]) -> &mut Self {
        self.entry(key, |e| {
            e.bytes(b);
        })
    }

    /// Add `key` with an already-encoded value.
    pub fn raw(&mut self, key: &[u8], encoded: &[u8]) -> &mut Self {
        self.entries.push((key.to_vec(), encoded.to_vec()));
        self
    }
}

/// The canonical encoding of an owned value.
pub fn encode_owned(v: &OwnedValue) -> Vec<u8> {
    let mut e = Encoder::new();
    e.value(v);
    e.into_bytes()
}
