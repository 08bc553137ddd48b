//! Fuzzes the `/proc/net/route` reader of the port mapper: any text, no panic, and a
//! gateway found is one a line of the text names.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(gw) = portmap::route::default_gateway(&text) {
        let hex = format!("{:08X}", u32::from_le_bytes(gw.octets()));
        assert!(text.to_ascii_uppercase().contains(&hex), "{gw} not in the text");
    }
});
