//! Any string as a query string or urlencoded body (qBittorrent API): decoding never
//! panics, stays within its bound, and every decoded pair encodes back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = webform::parse_bool(s);
    let mut out = Vec::new();
    if webform::parse_form(s, &mut out, 16).is_ok() {
        assert!(out.len() <= 16);
        for (k, v) in &out {
            let enc = |x: &str| -> String { x.bytes().map(|b| format!("%{b:02X}")).collect() };
            let again = format!("{}={}", enc(k), enc(v));
            let mut back = Vec::new();
            webform::parse_form(&again, &mut back, 1).expect("an encoded pair decodes");
            assert_eq!(back, vec![(k.clone(), v.clone())]);
        }
    }
});
