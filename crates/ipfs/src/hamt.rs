//! HAMT-sharded UnixFS directories (<https://specs.ipfs.tech/unixfs/#hamt-directories>), as
//! kubo and Helia build them: fanout 256, the hash of a name is the first 64 bits of
//! murmur3-x64-128 (`h1`, big-endian), each level consumes the next byte; past 8 levels the
//! name is hashed again with the round number appended. A slot holds either one entry (link
//! name = two upper-case hex digits + the entry's name) or a sub-shard (link name = the two
//! digits alone). The node's Data is the occupied-slot bitfield as a minimal big-endian
//! number, with hashType 0x22 (murmur3-x64-64) and fanout 256.

use std::collections::BTreeMap;

use crate::dagpb::{PbLink, PbNode};
use crate::import::BlockSink;
use crate::unixfs::{Data, DataType};
use crate::{Cid, DAG_PB, Error, cid_of};

pub(crate) const FANOUT: u64 = 256;
pub(crate) const HASH_MURMUR3_X64_64: u64 = 0x22;
/// Deeper than any two distinct names can collide in practice (64 bits per 8 levels).
const MAX_LEVEL: usize = 64;

pub(crate) struct Entry {
    pub name: String,
    pub cid: Cid,
    pub tsize: u64,
}

enum Slot {
    Entry(usize),
    Shard(Box<Bucket>),
}

#[derive(Default)]
struct Bucket {
    slots: BTreeMap<u8, Slot>,
}

fn mix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The first half (`h1`) of MurmurHash3 x64 128 with seed 0.
pub(crate) fn murmur3_x64_64(data: &[u8]) -> u64 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        let k1 = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let k2 = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, &b) in tail.iter().enumerate() {
        if i < 8 {
            k1 |= u64::from(b) << (8 * i);
        } else {
            k2 |= u64::from(b) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = mix(h1);
    h2 = mix(h2);
    h1.wrapping_add(h2)
}

/// The slot of `name` at `level` of the trie.
fn slot_index(name: &str, level: usize) -> u8 {
    let round = level / 8;
    let h = if round == 0 {
        murmur3_x64_64(name.as_bytes())
    } else {
        let mut v = name.as_bytes().to_vec();
        v.push(round as u8);
        murmur3_x64_64(&v)
    };
    h.to_be_bytes()[level % 8]
}

impl Bucket {
    fn insert(&mut self, entries: &[Entry], i: usize, level: usize) -> Result<(), Error> {
        if level >= MAX_LEVEL {
            return Err(Error::Limit("HAMT deeper than 64 levels".into()));
        }
        let idx = slot_index(&entries[i].name, level);
        match self.slots.remove(&idx) {
            None => {
                self.slots.insert(idx, Slot::Entry(i));
            }
            Some(Slot::Entry(j)) => {
                let mut sub = Bucket::default();
                sub.insert(entries, j, level + 1)?;
                sub.insert(entries, i, level + 1)?;
                self.slots.insert(idx, Slot::Shard(Box::new(sub)));
            }
            Some(Slot::Shard(mut sub)) => {
                sub.insert(entries, i, level + 1)?;
                self.slots.insert(idx, Slot::Shard(sub));
            }
        }
        Ok(())
    }

    fn flush(
        &self,
        entries: &[Entry],
        v0: bool,
        sink: &mut dyn BlockSink,
    ) -> Result<(Cid, u64), Error> {
        let mut links = Vec::with_capacity(self.slots.len());
        let mut bitfield = [0u8; 32];
        let mut children = 0u64;
        for (&idx, slot) in &self.slots {
            bitfield[31 - usize::from(idx) / 8] |= 1 << (idx % 8);
            let (name, cid, tsize) = match slot {
                Slot::Entry(i) => {
                    let e = &entries[*i];
                    (format!("{idx:02X}{}", e.name), e.cid, e.tsize)
                }
                Slot::Shard(sub) => {
                    let (cid, tsize) = sub.flush(entries, v0, sink)?;
                    (format!("{idx:02X}"), cid, tsize)
                }
            };
            children += tsize;
            links.push(PbLink {
                hash: cid,
                name: Some(name),
                tsize: Some(tsize),
            });
        }
        let first = bitfield.iter().position(|&b| b != 0).unwrap_or(31);
        let data = Data {
            data: bitfield[first..].to_vec(),
            hash_type: Some(HASH_MURMUR3_X64_64),
            fanout: Some(FANOUT),
            ..Data::new(DataType::HamtShard)
        };
        let block = PbNode {
            links,
            data: Some(data.encode()),
        }
        .encode();
        let cid = cid_of(DAG_PB, &block, v0);
        sink.put(&cid, &block)?;
        Ok((cid, block.len() as u64 + children))
    }
}

/// Builds the sharded directory holding `entries` (unique names) and returns its root CID
/// and cumulative size.
pub(crate) fn build(
    entries: &[Entry],
    v0: bool,
    sink: &mut dyn BlockSink,
) -> Result<(Cid, u64), Error> {
    let mut root = Bucket::default();
    for i in 0..entries.len() {
        root.insert(entries, i, 0)?;
    }
    root.flush(entries, v0, sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_known_values() {
        // From the reference MurmurHash3_x64_128 (seed 0): h1 of "hello" and of "".
        assert_eq!(murmur3_x64_64(b""), 0);
        assert_eq!(murmur3_x64_64(b"hello"), 0xcbd8_a7b3_41bd_9b02);
    }
}
