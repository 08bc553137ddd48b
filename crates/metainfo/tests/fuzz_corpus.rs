//! Runs the fuzz corpus (`fuzz/corpus/*`) through the decoders as an ordinary test, so the
//! seeds and every crash input ever saved there are checked on stable Rust, without cargo fuzz.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{} is empty", dir.display());
    out
}

#[test]
fn bencode_corpus() {
    for (path, data) in corpus("bencode_decode") {
        if let Ok(v) = bencode::decode(&data) {
            let encoded = v.to_owned_value().encode();
            let back = bencode::decode(&encoded).unwrap();
            assert_eq!(
                back.to_owned_value(),
                v.to_owned_value(),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn metainfo_corpus() {
    let mut parsed = 0;
    for (path, data) in corpus("metainfo_parse") {
        if let Ok(m) = metainfo::Metainfo::from_bytes(&data) {
            parsed += 1;
            for i in 0..m.info.files.len() {
                let p = m.info.file_path(i);
                assert!(
                    p.components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))),
                    "{}: {p:?}",
                    path.display()
                );
            }
        }
    }
    // The seeds are valid torrents (v1, v2, hybrid) and must stay parseable.
    assert!(parsed >= 5, "only {parsed} seed torrents parsed");
}

#[test]
fn magnet_corpus() {
    for (path, data) in corpus("magnet_parse") {
        if let Ok(s) = std::str::from_utf8(&data)
            && let Ok(m) = metainfo::Magnet::parse(s)
        {
            let again = metainfo::Magnet::parse(&m.to_string()).unwrap();
            assert_eq!(again.info_hashes, m.info_hashes, "{}", path.display());
        }
    }
}
