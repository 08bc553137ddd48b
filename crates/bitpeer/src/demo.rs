//! `bitpeer demo`: a small swarm on 127.0.0.1 — one seeder and several leechers, all
//! bitpeer nodes in this process — sharing a generated file, with progress and a summary.

use crate::{CliError, CliResult, units};
use engine::session::Session;
use engine::torrent::TorrentConfig;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use metainfo::Metainfo;
use metainfo::create::{self, CreateOptions};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Number of leechers.
    #[arg(long, default_value_t = 5)]
    leechers: usize,
    /// Size of the shared file in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

pub fn run(args: Args) -> CliResult {
    let err = |e: &dyn std::fmt::Display| CliError::new(e.to_string());
    let work = std::env::temp_dir().join(format!("bitpeer-demo-{}", std::process::id()));
    let result = run_in(&args, &work);
    let _ = std::fs::remove_dir_all(&work);
    result.map_err(|e| err(&e))
}

fn run_in(args: &Args, work: &std::path::Path) -> Result<(), String> {
    let seed_dir = work.join("seeder");
    std::fs::create_dir_all(&seed_dir).map_err(|e| e.to_string())?;
    let file = seed_dir.join("demo.bin");
    println!(
        "generating {} of data and a torrent in {}",
        units::size(args.size_mib << 20),
        work.display()
    );
    write_pseudo_random(&file, args.size_mib << 20).map_err(|e| e.to_string())?;
    let opts = CreateOptions::default();
    let bytes = create::create(&file, &opts, &AtomicU64::new(0), &AtomicBool::new(false))
        .map_err(|e| e.to_string())?;
    let meta = Metainfo::from_bytes(&bytes).map_err(|e| e.to_string())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let local: SocketAddr = ([127, 0, 0, 1], 0).into();
        // Each node is a session of its own, with its own listener, as separate processes
        // would be.
        let start = |dir, peers| {
            let meta = meta.clone();
            async move {
                let session = Session::bind(local).await?;
                let config = TorrentConfig::new(dir, peers);
                session
                    .add_torrent(meta, config, Arc::new(AtomicU64::new(0)))
                    .await
            }
        };
        let seeder = start(seed_dir.clone(), vec![])
            .await
            .map_err(|e| e.to_string())?;
        let mut addrs: Vec<SocketAddr> = seeder.listen_addr().into_iter().collect();
        println!(
            "seeder listening on {}; starting {} leechers",
            addrs[0], args.leechers
        );
        let started = Instant::now();
        let mut leechers = Vec::new();
        for i in 0..args.leechers {
            // Each leecher knows the seeder and the leechers before it, so pieces also flow
            // between leechers.
            let t = start(work.join(format!("leecher-{}", i + 1)), addrs.clone())
                .await
                .map_err(|e| e.to_string())?;
            addrs.extend(t.listen_addr());
            leechers.push(t);
        }
        let multi = if std::io::stderr().is_terminal() {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
        };
        let style = ProgressStyle::with_template(
            "{prefix:>10} {bar:40.cyan/blue} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bars: Vec<ProgressBar> = (0..leechers.len())
            .map(|i| {
                let b = multi.add(ProgressBar::new(meta.info.total_length));
                b.set_style(style.clone());
                b.set_prefix(format!("leecher {}", i + 1));
                b
            })
            .collect();
        let deadline = started + Duration::from_secs(args.timeout);
        loop {
            let mut done = true;
            for (t, b) in leechers.iter().zip(&bars) {
                let s = t.stats();
                b.set_position(s.bytes_have);
                b.set_message(format!("{} peers, up {}", s.peers, units::size(s.uploaded)));
                done &= s.pieces_have == s.piece_count;
            }
            if done {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("the swarm did not finish in {} s", args.timeout));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        for b in &bars {
            b.finish_and_clear();
        }
        let original = std::fs::read(&file).map_err(|e| e.to_string())?;
        println!(
            "all {} leechers complete in {secs:.2} s ({:.0} MB/s in all)",
            leechers.len(),
            (meta.info.total_length * leechers.len() as u64) as f64 / secs / 1e6
        );
        let s = seeder.stats();
        println!("  seeder     uploaded {}", units::size(s.uploaded));
        for (i, t) in leechers.iter().enumerate() {
            let s = t.stats();
            let copy = std::fs::read(work.join(format!("leecher-{}", i + 1)).join("demo.bin"))
                .map_err(|e| e.to_string())?;
            let same = if copy == original {
                "identical"
            } else {
                "DIFFERENT"
            };
            println!(
                "  leecher {}  downloaded {}, uploaded {} to other leechers, file {same}",
                i + 1,
                units::size(s.downloaded),
                units::size(s.uploaded)
            );
            if copy != original {
                return Err(format!("leecher {} has different data", i + 1));
            }
        }
        seeder.shutdown().await;
        for t in &leechers {
            t.shutdown().await;
        }
        Ok(())
    })
}

fn write_pseudo_random(path: &std::path::Path, len: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = len;
    let mut chunk = vec![0u8; 1 << 20];
    while left > 0 {
        for c in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.flush()
}
