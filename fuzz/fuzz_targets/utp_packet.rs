//! The shared UDP socket's demultiplexer and the uTP packet parsers: our `classify` and
//! `UtpHeader::parse`, and `librqbit-utp`'s own header/extension parser, which reads every
//! uTP datagram the demultiplexer passes on. None may panic; the demultiplexer must pass
//! on every datagram the uTP parser accepts, and our header must agree with it. The mark
//! of large-datagram peers (`LargeDatagrams`) is read from any datagram and put on any
//! SYN or ST_STATE without a panic, and a marked packet still parses the same.
#![no_main]

use engine::utp::{Datagram, EXT_BITS, LargeDatagrams, UtpHeader, classify, find_extension};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = find_extension(data, EXT_BITS);
    let from: std::net::SocketAddr = "127.0.0.1:6881".parse().unwrap();
    let large = LargeDatagrams::default();
    large.on_received(data, from);
    let _ = large.known_link_mtu(from);
    if let Some(marked) = large.on_sending(data, from) {
        let a = librqbit_utp::raw::UtpHeader::deserialize(data);
        let b = librqbit_utp::raw::UtpHeader::deserialize(&marked);
        if let Some(((a, at), (b, bt))) = a.zip(b) {
            assert_eq!((a.seq_nr, a.ack_nr, a.connection_id), (b.seq_nr, b.ack_nr, b.connection_id));
            assert_eq!(&data[at..], &marked[bt..], "the payload is kept");
        }
        assert!(find_extension(&marked, EXT_BITS).is_some());
    }
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
