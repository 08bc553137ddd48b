//! UnixFS v1 `Data` messages (<https://specs.ipfs.tech/unixfs/>), carried in a dag-pb node's
//! Data field: the node's type (file, directory, HAMT shard, raw, symlink), the inline bytes,
//! the file size and the sizes of the children's file data (`blocksizes`).
//!
//! The encoder writes the fields Helia's `ipfs-unixfs` writes, in field order: Type, Data
//! (when not empty), filesize (files and raw nodes only), every blocksize, hashType, fanout.

use crate::Error;
use crate::pb::{self, Reader, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Raw = 0,
    Directory = 1,
    File = 2,
    Metadata = 3,
    Symlink = 4,
    HamtShard = 5,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    pub kind: DataType,
    pub data: Vec<u8>,
    pub filesize: Option<u64>,
    pub blocksizes: Vec<u64>,
    pub hash_type: Option<u64>,
    pub fanout: Option<u64>,
}

impl Data {
    pub fn new(kind: DataType) -> Data {
        Data {
            kind,
            data: Vec::new(),
            filesize: None,
            blocksizes: Vec::new(),
            hash_type: None,
            fanout: None,
        }
    }

    /// A file node: inline `data` and children of `blocksizes` bytes; the file size is their
    /// sum, written as Helia and kubo write it.
    pub fn file(data: Vec<u8>, blocksizes: Vec<u64>) -> Data {
        let filesize = blocksizes
            .iter()
            .fold(data.len() as u64, |a, &b| a.saturating_add(b));
        Data {
            filesize: Some(filesize),
            data,
            blocksizes,
            ..Data::new(DataType::File)
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 16 + self.blocksizes.len() * 4);
        pb::put_uint(&mut out, 1, self.kind as u64);
        if !self.data.is_empty() {
            pb::put_bytes(&mut out, 2, &self.data);
        }
        if let Some(size) = self.filesize {
            pb::put_uint(&mut out, 3, size);
        }
        for &b in &self.blocksizes {
            pb::put_uint(&mut out, 4, b);
        }
        if let Some(h) = self.hash_type {
            pb::put_uint(&mut out, 5, h);
        }
        if let Some(f) = self.fanout {
            pb::put_uint(&mut out, 6, f);
        }
        out
    }

    /// Decodes a UnixFS Data message. `mode` and `mtime` (fields 7 and 8) are accepted and
    /// ignored; `blocksizes` may be packed or not.
    pub fn decode(bytes: &[u8]) -> Result<Data, Error> {
        let mut r = Reader::new(bytes, "UnixFS data");
        let mut kind = None;
        let mut d = Data::new(DataType::Raw);
        while let Some((field, value)) = r.next()? {
            match (field, value) {
                (1, Value::Varint(t)) => {
                    kind = Some(match t {
                        0 => DataType::Raw,
                        1 => DataType::Directory,
                        2 => DataType::File,
                        3 => DataType::Metadata,
                        4 => DataType::Symlink,
                        5 => DataType::HamtShard,
                        t => {
                            return Err(Error::Malformed(format!("UnixFS data: unknown type {t}")));
                        }
                    })
                }
                (2, Value::Bytes(b)) => d.data = b.to_vec(),
                (3, Value::Varint(v)) => d.filesize = Some(v),
                (4, Value::Varint(v)) => d.blocksizes.push(v),
                (4, Value::Bytes(packed)) => {
                    let mut p = Reader::new(packed, "UnixFS blocksizes");
                    while !p.is_empty() {
                        d.blocksizes.push(p.varint()?);
                    }
                }
                (5, Value::Varint(v)) => d.hash_type = Some(v),
                (6, Value::Varint(v)) => d.fanout = Some(v),
                (7, Value::Varint(_)) | (8, Value::Bytes(_)) => {}
                (f, _) => {
                    return Err(Error::Malformed(format!(
                        "UnixFS data: unexpected field {f}"
                    )));
                }
            }
        }
        d.kind = kind.ok_or_else(|| Error::Malformed("UnixFS data without Type".into()))?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = Data::file(vec![], vec![262144, 262144, 1]);
        assert_eq!(d.filesize, Some(524289));
        assert_eq!(Data::decode(&d.encode()).unwrap(), d);
        let dir = Data::new(DataType::Directory);
        assert_eq!(dir.encode(), vec![8, 1]);
    }

    #[test]
    fn rejects_unknown_type_and_missing_type() {
        assert!(Data::decode(&[8, 9]).is_err());
        assert!(Data::decode(&[0x18, 1]).is_err());
    }
}
