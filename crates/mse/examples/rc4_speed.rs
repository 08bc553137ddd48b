//! How fast our RC4 runs here (not a test): `cargo run --release -p bitpeer-mse --example
//! rc4_speed`. Prints MB/s (10^6 bytes) over 256 MiB, in 64 KiB calls as MseWrite makes
//! them, and the time of one handshake's Diffie-Hellman (two modpows).

use std::time::Instant;

fn main() {
    let mut c = mse::Rc4::mse(&[7; 20]);
    let mut buf = vec![0u8; 64 * 1024];
    let rounds = 4096;
    let t = Instant::now();
    for _ in 0..rounds {
        c.apply(&mut buf);
    }
    let secs = t.elapsed().as_secs_f64();
    let bytes = (rounds * buf.len()) as f64;
    println!("rc4: {:.0} MB/s (checksum {})", bytes / secs / 1e6, buf[0]);
    let t = Instant::now();
    let a = mse::KeyPair::from_secret([0x11; 20]);
    let b = mse::KeyPair::from_secret([0x22; 20]);
    let s = a.shared(b.public());
    println!(
        "dh: {:.2} ms for three modpows ({})",
        t.elapsed().as_secs_f64() * 1e3,
        s.is_some()
    );
}
