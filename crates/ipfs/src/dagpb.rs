//! dag-pb, the block format of UnixFS (<https://ipld.io/specs/codecs/dag-pb/spec/>).
//!
//! A node is `Links` (field 2, repeated) then `Data` (field 1, optional); each link is
//! `Hash` (1, a binary CID), `Name` (2, UTF-8), `Tsize` (3, the cumulative size of the
//! linked DAG). The encoder writes exactly what Helia's `@ipld/dag-pb` and kubo write: links
//! first, in the order given (callers sort them), `Name` and `Tsize` only when present. The
//! decoder is strict like the spec asks: fields in canonical order, none repeated, no
//! unknown fields, every CID valid.

use crate::pb::{self, Reader, Value};
use crate::{Cid, Error};

/// Most links one node may hold when decoding (a 2 MiB block holds at most ~50 000).
pub const MAX_LINKS: usize = 1 << 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbLink {
    pub hash: Cid,
    pub name: Option<String>,
    pub tsize: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PbNode {
    pub links: Vec<PbLink>,
    pub data: Option<Vec<u8>>,
}

fn encode_link(link: &PbLink, out: &mut Vec<u8>) {
    pb::put_bytes(out, 1, &link.hash.to_bytes());
    if let Some(name) = &link.name {
        pb::put_bytes(out, 2, name.as_bytes());
    }
    if let Some(tsize) = link.tsize {
        pb::put_uint(out, 3, tsize);
    }
}

impl PbNode {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.data.as_ref().map_or(0, |d| d.len() + 8) + self.links.len() * 64,
        );
        let mut link_buf = Vec::with_capacity(96);
        for link in &self.links {
            link_buf.clear();
            encode_link(link, &mut link_buf);
            pb::put_bytes(&mut out, 2, &link_buf);
        }
        if let Some(data) = &self.data {
            pb::put_bytes(&mut out, 1, data);
        }
        out
    }

    pub fn decode(block: &[u8]) -> Result<PbNode, Error> {
        let mut r = Reader::new(block, "dag-pb node");
        let mut node = PbNode::default();
        while let Some((field, value)) = r.next()? {
            match (field, value) {
                (2, Value::Bytes(b)) => {
                    if node.data.is_some() {
                        return Err(Error::Malformed("dag-pb node: Links after Data".into()));
                    }
                    if node.links.len() >= MAX_LINKS {
                        return Err(Error::Limit(format!(
                            "dag-pb node has more than {MAX_LINKS} links"
                        )));
                    }
                    node.links.push(decode_link(b)?);
                }
                (1, Value::Bytes(b)) => {
                    if node.data.is_some() {
                        return Err(Error::Malformed("dag-pb node: Data twice".into()));
                    }
                    node.data = Some(b.to_vec());
                }
                (f, _) => {
                    return Err(Error::Malformed(format!(
                        "dag-pb node: unexpected field {f}"
                    )));
                }
            }
        }
        Ok(node)
    }
}

fn decode_link(bytes: &[u8]) -> Result<PbLink, Error> {
    let mut r = Reader::new(bytes, "dag-pb link");
    let mut hash = None;
    let mut name = None;
    let mut tsize = None;
    let mut last = 0;
    while let Some((field, value)) = r.next()? {
        if field <= last {
            return Err(Error::Malformed(format!(
                "dag-pb link: field {field} out of order or repeated"
            )));
        }
        last = field;
        match (field, value) {
            (1, Value::Bytes(b)) => hash = Some(crate::cid_from_bytes(b)?),
            (2, Value::Bytes(b)) => {
                name = Some(
                    String::from_utf8(b.to_vec())
                        .map_err(|_| Error::Malformed("dag-pb link: Name is not UTF-8".into()))?,
                )
            }
            (3, Value::Varint(v)) => tsize = Some(v),
            (f, _) => {
                return Err(Error::Malformed(format!(
                    "dag-pb link: unexpected field {f}"
                )));
            }
        }
    }
    let hash = hash.ok_or_else(|| Error::Malformed("dag-pb link without Hash".into()))?;
    Ok(PbLink { hash, name, tsize })
}

/// Bytes one link adds to its node, as the encoder writes it (the `block-bytes` estimate of
/// a directory's size uses it).
pub(crate) fn link_encoded_len(name_len: usize, cid_len: usize, tsize: u64) -> usize {
    let inner = 1
        + pb::varint_len(cid_len as u64)
        + cid_len
        + 1
        + pb::varint_len(name_len as u64)
        + name_len
        + 1
        + pb::varint_len(tsize);
    1 + pb::varint_len(inner as u64) + inner
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DAG_PB, RAW, cid_of};

    #[test]
    fn round_trip_and_link_size() {
        let child = cid_of(RAW, b"hello", false);
        let node = PbNode {
            links: vec![PbLink {
                hash: child,
                name: Some("a name".into()),
                tsize: Some(300),
            }],
            data: Some(vec![8, 1]),
        };
        let bytes = node.encode();
        assert_eq!(PbNode::decode(&bytes).unwrap(), node);
        assert_eq!(
            bytes.len(),
            link_encoded_len(6, child.to_bytes().len(), 300) + 4
        );
    }

    #[test]
    fn empty_directory_matches_known_cids() {
        let node = PbNode {
            links: vec![],
            data: Some(vec![8, 1]),
        };
        let block = node.encode();
        assert_eq!(
            cid_of(DAG_PB, &block, true).to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
    }

    #[test]
    fn rejects_data_before_links_and_garbage() {
        let child = cid_of(RAW, b"x", false);
        let mut bad = Vec::new();
        pb::put_bytes(&mut bad, 1, &[8, 1]);
        let mut link = Vec::new();
        pb::put_bytes(&mut link, 1, &child.to_bytes());
        pb::put_bytes(&mut bad, 2, &link);
        assert!(PbNode::decode(&bad).is_err());
        assert!(PbNode::decode(&[0x12, 0x03, 0x0a, 0x01, 0x00]).is_err());
        assert!(PbNode::decode(&[0xff]).is_err());
    }
}
