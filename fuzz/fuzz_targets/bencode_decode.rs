//! Any bytes: decoding never panics, and whatever decodes re-encodes to a value that decodes
//! to the same thing (and to the same bytes when the input was canonical).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = bencode::decode(data) {
        assert_eq!(v.raw(), data);
        let owned = v.to_owned_value();
        let again = owned.encode();
        let back = bencode::decode(&again).expect("canonical output must decode");
        assert_eq!(back.to_owned_value(), owned);
        if v.is_canonical() {
            assert_eq!(again, data);
        }
    }
    let _ = bencode::decode_prefix(data);
});
