//! Any bytes as a multipart/form-data body (qBittorrent's `torrents/add`): decoding never
//! panics or waits, and stays within its bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = webform::Limits {
        max_params: 8,
        max_files: 4,
    };
    let mut out = webform::Fields::default();
    let body = bytes::Bytes::copy_from_slice(data);
    let _ = webform::parse_multipart(body, "multipart/form-data; boundary=XB", limits, &mut out);
    assert!(out.pairs.len() <= 8 && out.files.len() <= 4);
    assert!(out.files.iter().map(Vec::len).sum::<usize>() <= data.len());
});
