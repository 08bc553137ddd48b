//! Runs the fuzz corpus (`fuzz/corpus/webform_*`, `transmission_rpc`) through the decoders
//! as an ordinary test, so the seeds (and any crash input saved there) are checked on
//! stable Rust, without cargo fuzz.

/// The seeds of one fuzz target (at least one).
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(dir.join(target))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    seeds
}

#[test]
fn form_corpus_decodes_within_bounds() {
    let mut decoded = 0;
    for data in corpus("webform_form") {
        let s = String::from_utf8(data).unwrap();
        let mut out = Vec::new();
        if webform::parse_form(&s, &mut out, 16).is_ok() {
            assert!(out.len() <= 16, "{s}");
            decoded += 1;
        }
    }
    assert!(decoded > 0, "no seed decodes");
}

#[test]
fn multipart_corpus_decodes_within_bounds() {
    let limits = webform::Limits {
        max_params: 8,
        max_files: 4,
    };
    let mut decoded = 0;
    for data in corpus("webform_multipart") {
        let mut out = webform::Fields::default();
        let r = webform::parse_multipart(
            bytes::Bytes::from(data),
            "multipart/form-data; boundary=XB",
            limits,
            &mut out,
        );
        assert!(out.pairs.len() <= 8 && out.files.len() <= 4);
        decoded += usize::from(r.is_ok());
    }
    assert!(decoded > 0, "no seed decodes");
}

#[test]
fn rpc_corpus_decodes() {
    for data in corpus("transmission_rpc") {
        let r = webform::parse_rpc(&data).expect("a seed decodes");
        assert!(!r.method.is_empty() && r.arguments.is_object());
    }
}
