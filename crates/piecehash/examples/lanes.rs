//! How fast SHA-1 runs with 1 to `MAX_LANES` messages at once on this CPU: a benchmark,
//! not a test (it asserts nothing). Medians of five runs, each hashing 256 MiB as 1 MiB
//! pieces (the pieces cycle through 16 MiB, so they come from memory, not cache).
//!
//!     cargo run --release -p bitpeer-piecehash --example lanes

use std::time::Instant;

fn main() {
    const PIECE: usize = 1 << 20;
    const POOL: usize = 16;
    const TOTAL: usize = 256;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let data: Vec<u8> = (0..PIECE * POOL)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let pieces: Vec<&[u8]> = data.chunks(PIECE).collect();
    let mut single = 0.0;
    for lanes in 1..=piecehash::MAX_LANES {
        let mut runs = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let mut done = 0;
            while done < TOTAL {
                let group: Vec<&[u8]> = (0..lanes).map(|i| pieces[(done + i) % POOL]).collect();
                std::hint::black_box(if lanes == 1 {
                    vec![piecehash::sha1(group[0])]
                } else {
                    piecehash::sha1_many(&group)
                });
                done += lanes;
            }
            runs.push((done * PIECE) as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
        runs.sort_by(f64::total_cmp);
        let gbs = runs[runs.len() / 2];
        if lanes == 1 {
            single = gbs;
        }
        println!(
            "{lanes} at once: {gbs:.2} GB/s ({:.2}x one at a time)",
            gbs / single
        );
    }
}
