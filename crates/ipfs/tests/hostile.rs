//! Hostile IPFS data: malformed CIDs, dag-pb "cycles" (only a lying store can make one),
//! links claiming huge sizes, deep nesting, exponential diamonds, bad HAMT labels, CAR
//! sections that do not match their CIDs. Every case ends in a clear error or a bounded
//! walk, never a panic, a hang or a runaway allocation.

use std::collections::HashMap;
use std::sync::Mutex;

use ipfs::dag::{self, Scope};
use ipfs::dagpb::{PbLink, PbNode};
use ipfs::unixfs::{Data, DataType};
use ipfs::{BlockStore, Cid, DAG_PB, Error, RAW, car, cid_of};
use proptest::prelude::*;

/// An in-memory store; `honest: false` makes it return whatever was put, unchecked, as a
/// broken or malicious store would.
#[derive(Default)]
struct MemStore {
    blocks: Mutex<HashMap<Cid, Vec<u8>>>,
    lying: bool,
}

impl BlockStore for MemStore {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error> {
        let b = self.blocks.lock().unwrap().get(cid).cloned();
        if let (Some(b), false) = (&b, self.lying) {
            ipfs::verify_block(cid, b)?;
        }
        Ok(b)
    }
    fn has(&self, cid: &Cid) -> Result<bool, Error> {
        Ok(self.blocks.lock().unwrap().contains_key(cid))
    }
    fn put(&self, cid: &Cid, block: &[u8]) -> Result<(), Error> {
        if !self.lying {
            ipfs::verify_block(cid, block)?;
        }
        self.blocks.lock().unwrap().insert(*cid, block.to_vec());
        Ok(())
    }
}

fn file_node(links: &[(Cid, u64)]) -> Vec<u8> {
    PbNode {
        links: links
            .iter()
            .map(|(c, s)| PbLink {
                hash: *c,
                name: Some(String::new()),
                tsize: Some(*s),
            })
            .collect(),
        data: Some(Data::file(Vec::new(), links.iter().map(|l| l.1).collect()).encode()),
    }
    .encode()
}

fn dir_node(entries: &[(&str, Cid)]) -> Vec<u8> {
    PbNode {
        links: entries
            .iter()
            .map(|(n, c)| PbLink {
                hash: *c,
                name: Some((*n).to_owned()),
                tsize: Some(0),
            })
            .collect(),
        data: Some(Data::new(DataType::Directory).encode()),
    }
    .encode()
}

fn put(store: &MemStore, codec: u64, block: Vec<u8>) -> Cid {
    let cid = cid_of(codec, &block, false);
    store.put(&cid, &block).unwrap();
    cid
}

#[test]
fn malformed_cids_are_errors() {
    for s in [
        "",
        "b",
        "Qm",
        "bafy!!!",
        "z",
        "f01",
        "bafkqaaa\0",
        "QmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQm",
    ] {
        assert!(ipfs::parse_cid(s).is_err(), "{s:?}");
    }
    assert!(ipfs::parse_cid(&"b".repeat(10_000)).is_err());
    for b in [
        &[][..],
        &[1],
        &[1, 0x70],
        &[1, 0x70, 0x12, 0x20, 1, 2],
        &[0xff; 20],
    ] {
        assert!(ipfs::cid_from_bytes(b).is_err(), "{b:?}");
    }
    // A valid CID with trailing bytes is not a CID.
    let mut bytes = cid_of(RAW, b"x", false).to_bytes();
    bytes.push(0);
    assert!(ipfs::cid_from_bytes(&bytes).is_err());
}

#[test]
fn a_cycle_from_a_lying_store_ends_in_an_error() {
    // Content addressing makes cycles impossible with honest hashes; a lying store can
    // still serve one. The walk stops (each block once), reading stops at the depth bound.
    let store = MemStore {
        lying: true,
        ..Default::default()
    };
    let a = cid_of(DAG_PB, b"a", false);
    let b = cid_of(DAG_PB, b"b", false);
    store.put(&a, &file_node(&[(b, 10)])).unwrap();
    store.put(&b, &file_node(&[(a, 10)])).unwrap();
    let mut seen = 0;
    dag::walk(&store, &a, Scope::All, |_, _| {
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, 2);
    let err = dag::write_file(&store, &a, 0, u64::MAX, &mut std::io::sink()).unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let d = cid_of(DAG_PB, b"d", false);
    store.put(&d, &dir_node(&[("again", d)])).unwrap();
    let err = dag::export(&store, &d, &dir.path().join("out")).unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
}

#[test]
fn links_claiming_huge_sizes_are_caught() {
    let store = MemStore::default();
    let leaf = put(&store, RAW, b"tiny".to_vec());
    // Claims 1 TiB behind a 4-byte leaf: the first child shows the lie, nothing is
    // allocated for the claimed size.
    let liar = put(&store, DAG_PB, file_node(&[(leaf, 1 << 40)]));
    let err = dag::write_file(&store, &liar, 0, u64::MAX, &mut std::io::sink()).unwrap_err();
    assert!(err.to_string().contains("holds 4 bytes"), "{err}");
    // Sizes that overflow u64.
    let over = put(&store, DAG_PB, file_node(&[(leaf, u64::MAX), (leaf, 2)]));
    assert!(dag::write_file(&store, &over, 0, u64::MAX, &mut std::io::sink()).is_err());
}

#[test]
fn deep_nesting_is_bounded() {
    let store = MemStore::default();
    let mut cid = put(&store, RAW, b"bottom".to_vec());
    for _ in 0..2000 {
        cid = put(&store, DAG_PB, dir_node(&[("d", cid)]));
    }
    let dir = tempfile::tempdir().unwrap();
    let err = dag::export(&store, &cid, &dir.path().join("out")).unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
    let mut f = put(&store, RAW, b"x".to_vec());
    for _ in 0..2000 {
        f = put(&store, DAG_PB, file_node(&[(f, 1)]));
    }
    let err = dag::write_file(&store, &f, 0, u64::MAX, &mut std::io::sink()).unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
    // The block walk has no recursion: it visits all 2001 blocks of the file chain.
    let mut n = 0;
    dag::walk(&store, &f, Scope::All, |_, _| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 2001);
}

#[test]
fn exponential_diamonds_are_walked_once_per_block() {
    // 40 levels of 2 links to the same child: 2^40 paths, 41 blocks.
    let store = MemStore::default();
    let mut cid = put(&store, RAW, b"z".to_vec());
    let mut size = 1u64;
    for _ in 0..40 {
        cid = put(&store, DAG_PB, file_node(&[(cid, size), (cid, size)]));
        size *= 2;
    }
    let mut n = 0;
    dag::walk(&store, &cid, Scope::All, |_, _| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 41);
    // A byte range of it reads only the blocks it needs.
    let mut out = Vec::new();
    dag::write_file(&store, &cid, 5, 9, &mut out).ok();
    assert_eq!(out, b"zzzz");
}

#[test]
fn unsafe_names_and_bad_hamt_labels_are_refused() {
    let store = MemStore::default();
    let leaf = put(&store, RAW, b"x".to_vec());
    for bad in ["..", "/etc", "a/b", "nul\0", ".", "", "back\\slash"] {
        let d = put(&store, DAG_PB, dir_node(&[(bad, leaf)]));
        let node = dag::load(&store, &d).unwrap();
        let err = dag::dir_entries(&store, &d, &node).unwrap_err();
        assert!(err.to_string().contains("unsafe name"), "{bad:?}: {err}");
    }
    for label in ["", "G1x", "a", "zz..", "00.."] {
        let hamt = PbNode {
            links: vec![PbLink {
                hash: leaf,
                name: Some(label.to_owned()),
                tsize: Some(1),
            }],
            data: Some(
                Data {
                    data: vec![1],
                    hash_type: Some(0x22),
                    fanout: Some(256),
                    ..Data::new(DataType::HamtShard)
                }
                .encode(),
            ),
        }
        .encode();
        let h = put(&store, DAG_PB, hamt);
        let node = dag::load(&store, &h).unwrap();
        assert!(dag::dir_entries(&store, &h, &node).is_err(), "{label:?}");
    }
}

#[test]
fn car_sections_not_matching_their_cids_are_caught() {
    let real = cid_of(RAW, b"real", false);
    let mut bytes = car::header(&[real]);
    car::write_block(&mut bytes, &real, b"fake").unwrap();
    let mut r = car::CarReader::new(&bytes[..]).unwrap();
    let (cid, block) = r.next_block().unwrap().unwrap();
    assert!(matches!(
        ipfs::verify_block(&cid, &block),
        Err(Error::HashMismatch { .. })
    ));
    assert!(
        ipfs::FsStore::open(tempfile::tempdir().unwrap().path())
            .unwrap()
            .put(&cid, &block)
            .is_err()
    );
    // A section length of 1 TiB is refused before any allocation.
    let mut huge = car::header(&[real]);
    huge.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
    assert!(
        car::CarReader::new(&huge[..])
            .unwrap()
            .next_block()
            .is_err()
    );
}

proptest! {
    #[test]
    fn dagpb_round_trips(
        links in prop::collection::vec((any::<[u8; 8]>(), prop::option::of("[a-zA-Z0-9 ._-]{0,20}"), prop::option::of(any::<u64>())), 0..8),
        data in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
    ) {
        let node = PbNode {
            links: links.into_iter().map(|(seed, name, tsize)| PbLink { hash: cid_of(RAW, &seed, false), name, tsize }).collect(),
            data,
        };
        prop_assert_eq!(PbNode::decode(&node.encode()).unwrap(), node);
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = PbNode::decode(&bytes);
        let _ = Data::decode(&bytes);
        let _ = ipfs::cid_from_bytes(&bytes);
        if let Ok(mut r) = car::CarReader::new(&bytes[..]) {
            while let Ok(Some(_)) = r.next_block() {}
        }
    }
}
