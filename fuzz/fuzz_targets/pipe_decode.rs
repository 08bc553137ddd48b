//! Fuzzes what `bitpeer pipe` reads from strangers: the Noise handshake and frame reader of
//! a listener (anyone can connect and send anything), the address record of a DHT item, and
//! a ticket. Nothing may panic or allocate without bound.

#![no_main]

use std::io::{self, Read, Write};

use libfuzzer_sys::fuzz_target;

struct Conn<'a> {
    input: &'a [u8],
    out: Vec<u8>,
}

impl Read for Conn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Conn<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut conn = Conn {
        input: data,
        out: Vec::new(),
    };
    // Only bytes made with the listener's public key complete the handshake; then the rest
    // is read as transport frames.
    if let Ok((_, mut rx)) = pipe::noise::accept(&mut conn, &[7u8; 32]) {
        while let Ok(Some(_)) = rx.recv(&mut conn) {}
    }
    let mut buf = Box::new([0u8; pipe::noise::MAX_FRAME]);
    let mut r = data;
    while let Ok(Some(n)) = pipe::noise::read_frame(&mut r, &mut buf) {
        assert!(n <= pipe::noise::MAX_FRAME);
    }
    if let Some(addrs) = pipe::record::decode_addrs(data) {
        assert!(addrs.len() <= pipe::record::MAX_ADDRS);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(t) = s.parse::<pipe::Ticket>() {
            assert_eq!(t.to_string().parse::<pipe::Ticket>().unwrap(), t);
        }
    }
});
