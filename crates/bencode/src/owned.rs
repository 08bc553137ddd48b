//! An owned bencode value, for building messages and for tests.

use std::collections::BTreeMap;

/// A bencode value that owns its data. Dictionaries are kept sorted, so encoding one is
/// always canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedValue {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<OwnedValue>),
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        crate::encode_owned(self)
    }

    pub fn dict() -> Self {
        OwnedValue::Dict(BTreeMap::new())
    }

    /// Insert into a dictionary; does nothing on other kinds.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<OwnedValue>) {
        if let OwnedValue::Dict(d) = self {
            d.insert(key.into(), value.into());
        }
    }
}

impl From<i64> for OwnedValue {
    fn from(i: i64) -> Self {
        OwnedValue::Int(i)
    }
}

impl From<&str> for OwnedValue {
    fn from(s: &str) -> Self {
        OwnedValue::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for OwnedValue {
    fn from(s: String) -> Self {
        OwnedValue::Bytes(s.into_bytes())
    }
}

impl From<Vec<u8>> for OwnedValue {
    fn from(b: Vec<u8>) -> Self {
        OwnedValue::Bytes(b)
    }
}

impl From<&[u8]> for OwnedValue {
    fn from(b: &[u8]) -> Self {
        OwnedValue::Bytes(b.to_vec())
    }
}

impl From<Vec<OwnedValue>> for OwnedValue {
    fn from(l: Vec<OwnedValue>) -> Self {
        OwnedValue::List(l)
    }
}
