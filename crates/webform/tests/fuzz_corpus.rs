//! Runs the fuzz corpus (`fuzz/corpus/webform_*`, `transmission_rpc`) through the decoders
//! as an ordinary test, so the seeds (and any crash input saved there) are checked on
//! stable Rust, without cargo fuzz.

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
fn form_corpus_decodes_within_bounds() {
    let mut decoded = 0;
    for (path, data) in corpus("webform_form") {
        let s = String::from_utf8(data).unwrap();
        let mut out = Vec::new();
        if webform::parse_form(&s, &mut out, 16).is_ok() {
            assert!(out.len() <= 16, "{}", path.display());
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
    for (_, data) in corpus("webform_multipart") {
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
    for (path, data) in corpus("transmission_rpc") {
        let r = webform::parse_rpc(&data).unwrap_or_else(|| panic!("{}", path.display()));
        assert!(!r.method.is_empty() && r.arguments.is_object());
    }
}
