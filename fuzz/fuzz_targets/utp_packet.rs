//! The shared UDP socket's demultiplexer and the uTP packet parsers: our `classify` and
//! `UtpHeader::parse`, and `librqbit-utp`'s own header/extension parser, which reads every
//! uTP datagram the demultiplexer passes on. None may panic; the demultiplexer must pass
//! on every datagram the uTP parser accepts, and our header must agree with it.
#![no_main]

use engine::utp::{Datagram, UtpHeader, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let class = classify(data);
    let ours = UtpHeader::parse(data);
    assert_eq!(ours.is_some(), class == Datagram::Utp);
    if let Some(h) = ours {
        assert_eq!(&h.encode()[2..], &data[2..20]);
    }
    if let Some((h, payload_at)) = librqbit_utp::raw::UtpHeader::deserialize(data) {
        assert!(payload_at <= data.len());
        assert_eq!(class, Datagram::Utp, "the demultiplexer would drop a uTP packet");
        let ours = ours.expect("ours parses what librqbit-utp parses");
        assert_eq!(ours.connection_id, h.connection_id.0);
        assert_eq!(ours.seq_nr, h.seq_nr.0);
        let mut buf = [0u8; 2048];
        let _ = h.serialize(&mut buf);
    }
});
