//! The checked-in fuzz seeds (fuzz/corpus/ipfs_*) run through the decoders in every test
//! run: each seed is a valid input and must decode, and round trip where the fuzz target
//! checks it does.

use std::path::Path;

use ipfs::dagpb::PbNode;
use ipfs::unixfs::Data;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

#[test]
fn cid_seeds_parse() {
    for (name, data) in seeds("ipfs_cid") {
        let cid = match std::str::from_utf8(&data) {
            Ok(text) => ipfs::parse_cid(text),
            Err(_) => ipfs::cid_from_bytes(&data),
        }
        .or_else(|_| ipfs::cid_from_bytes(&data))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            ipfs::cid_from_bytes(&cid.to_bytes()).unwrap(),
            cid,
            "{name}"
        );
    }
}

#[test]
fn dagpb_seeds_decode_and_round_trip() {
    for (name, data) in seeds("ipfs_dagpb") {
        let node = PbNode::decode(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(node.encode(), data, "{name}");
    }
}

#[test]
fn unixfs_seeds_decode() {
    for (name, data) in seeds("ipfs_unixfs") {
        let d = Data::decode(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(d.encode(), data, "{name}");
    }
}

#[test]
fn car_seeds_read_and_verify() {
    for (name, data) in seeds("ipfs_car") {
        let mut r = ipfs::car::CarReader::new(&data[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.roots.len(), 1, "{name}");
        // The seed is cut at 4 KiB: its whole sections verify, the cut one is an error.
        let mut blocks = 0;
        while let Ok(Some((cid, block))) = r.next_block() {
            ipfs::verify_block(&cid, &block).unwrap_or_else(|e| panic!("{name}: {e}"));
            blocks += 1;
        }
        assert!(blocks >= 1, "{name}");
    }
}
