//! `bitpeer create PATH`: make a v1 .torrent of a file or folder, hashing on every core.

use crate::{CliError, CliResult, units};
use indicatif::{ProgressBar, ProgressStyle};
use metainfo::create::{self, CreateOptions};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// The file or folder to share.
    path: PathBuf,
    /// Where to write the .torrent file [default: NAME.torrent in the current folder].
    #[arg(short, long, value_name = "OUT.torrent")]
    output: Option<PathBuf>,
    /// Piece length in bytes: a power of two from 16384 to 536870912. By default one is
    /// chosen that gives 1024 to 2048 pieces (16 KiB to 16 MiB).
    #[arg(long, value_name = "BYTES")]
    piece_length: Option<u64>,
    /// A tracker announce URL; repeat for more (each becomes its own tier, tried in order).
    #[arg(short, long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// A web seed URL (BEP 19); repeatable.
    #[arg(short = 'w', long = "web-seed", value_name = "URL")]
    web_seeds: Vec<String>,
    /// Mark the torrent private (BEP 27): peers come from its trackers only.
    #[arg(long)]
    private: bool,
    /// A comment stored in the torrent.
    #[arg(short, long)]
    comment: Option<String>,
    /// Overwrite the output file if it exists.
    #[arg(short, long)]
    force: bool,
    /// Hashing threads [default: one per core].
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    threads: usize,
}

pub fn run(args: Args) -> CliResult {
    let opts = CreateOptions {
        piece_length: args.piece_length,
        trackers: args.trackers,
        web_seeds: args.web_seeds,
        private: args.private,
        comment: args.comment,
        created_by: Some(concat!("bitpeer/", env!("CARGO_PKG_VERSION")).to_string()),
        creation_date: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs() as i64),
        threads: args.threads,
    };
    let plan = create::Plan::new(&args.path, &opts).map_err(|e| CliError::new(e.to_string()))?;
    let total = plan.total_length();
    let output = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", plan.source.name)));
    if output.exists() && !args.force {
        return Err(CliError::new(format!(
            "{} already exists (use --force to overwrite)",
            output.display()
        )));
    }

    let started = Instant::now();
    let progress = AtomicU64::new(0);
    let cancel = AtomicBool::new(false);
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "hashing {bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let (plan, opts, progress, cancel) = (&plan, &opts, &progress, &cancel);
    let bytes = std::thread::scope(|s| {
        let main = std::thread::current();
        let worker = s.spawn(move || {
            let result = plan.run(opts, progress, cancel);
            main.unpark(); // so the wall time is not rounded up to the next tick
            result
        });
        while !worker.is_finished() {
            bar.set_position(progress.load(Ordering::Relaxed));
            std::thread::park_timeout(Duration::from_millis(100));
        }
        worker.join()
    })
    .map_err(|_| CliError::new("a hashing thread panicked"))?
    .map_err(|e| CliError::new(e.to_string()))?;
    bar.finish_and_clear();

    let m = metainfo::Metainfo::from_bytes(&bytes)
        .map_err(|e| CliError::new(format!("the torrent made is invalid: {e}")))?;
    write_atomically(&output, &bytes)?;

    let secs = started.elapsed().as_secs_f64();
    let hash = m
        .info_hashes
        .get_v1()
        .map(|h| h.to_hex())
        .unwrap_or_default();
    println!("created {}", output.display());
    println!("  name       {}", m.info.name);
    println!(
        "  size       {} in {} files",
        units::size(total),
        m.info.files.len()
    );
    println!(
        "  pieces     {} x {}",
        m.info.piece_count(),
        units::size(plan.piece_length)
    );
    println!("  info-hash  {hash}");
    println!(
        "  hashed in  {secs:.2} s ({:.0} MB/s)",
        total as f64 / secs.max(1e-9) / 1e6
    );
    Ok(())
}

/// Write `bytes` to `path` so that a crash leaves either the old file or the new one: a
/// temporary file next to it, fsync, rename.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> CliResult {
    let io = |e: std::io::Error| CliError::new(format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| CliError::new(format!("{}: not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
