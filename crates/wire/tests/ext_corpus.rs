//! Runs every seed of the `metadata_decode` and `pex_decode` fuzz targets (BEP 9, BEP 11)
//! through the decoders, so the seeds stay what their names say and the fuzz targets'
//! paths are exercised by plain `cargo test`.

use std::path::Path;

use bytes::Bytes;
use wire::{MetadataError, MetadataMessage, PexMessage};

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
    out
}

#[test]
fn metadata_seeds_decode_as_named() {
    let seeds = seeds("metadata_decode");
    assert!(seeds.len() >= 5);
    for (name, bytes) in seeds {
        let got = MetadataMessage::decode(&Bytes::from(bytes));
        match name.as_str() {
            "request" => assert!(matches!(got, Ok(MetadataMessage::Request { .. }))),
            "reject" => assert!(matches!(got, Ok(MetadataMessage::Reject { .. }))),
            "unknown_type" => assert_eq!(got, Err(MetadataError::UnknownMessageType(3))),
            n if n.starts_with("data") => {
                let Ok(MetadataMessage::Data { data, .. }) = got else {
                    panic!("{name}: {got:?}")
                };
                assert!(!data.is_empty(), "{name}");
            }
            other => panic!("seed {other} has no expectation here"),
        }
    }
}

#[test]
fn pex_seeds_decode() {
    let seeds = seeds("pex_decode");
    assert!(seeds.len() >= 3);
    for (name, bytes) in seeds {
        let m = PexMessage::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        match name.as_str() {
            "empty" => assert_eq!(m, PexMessage::default()),
            "full" => {
                assert_eq!((m.added.len(), m.dropped.len()), (3, 2));
                assert_eq!(m.encode(), bytes, "full is in canonical form");
            }
            "partial" => assert_eq!((m.added.len(), m.dropped.len()), (1, 1)),
            other => panic!("seed {other} has no expectation here"),
        }
    }
}
