//! `bitpeer`: the command line of the bitpeer node. Each subcommand lives in its own module;
//! this file parses arguments, runs one command, and turns its error into one line on stderr
//! and an exit code scripts can rely on:
//!
//! - 0: success
//! - 1: the command failed (bad input, I/O error, ...); stderr says why in one line
//! - 2: the command line itself is wrong (clap's usage errors)

mod client;
mod create;
mod daemon;
mod demo;
mod dht_cmd;
mod download;
mod info;
mod ipfs;
mod pipe;
mod port_mapping;
mod tracker;
mod units;
mod webtorrent_peer;
mod webui;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// A peer-to-peer node for the BitTorrent network.
#[derive(Parser)]
#[command(name = "bitpeer", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log more: -v says what the node does, -vv why each connection ended, -vvv
    /// everything. RUST_LOG (e.g. RUST_LOG=engine=debug) overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

/// Logs go to stderr (stdout is for data and progress): warnings by default.
fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[derive(Subcommand)]
enum Command {
    /// Create a .torrent file from a file or a folder.
    Create(create::Args),
    /// Show what a .torrent file or magnet link holds: name, size, files, info-hashes.
    Info(info::Args),
    /// Download a torrent from peers, verifying every piece; exits 0 when complete.
    Download(download::DownloadArgs),
    /// Serve a torrent's data to peers until interrupted.
    Seed(download::SeedArgs),
    /// Run a small swarm of bitpeer nodes on 127.0.0.1 sharing a generated file.
    Demo(demo::Args),
    /// Run a BitTorrent tracker (HTTP and UDP announce and scrape, and with --ws a WebSocket
    /// tracker for WebTorrent peers) until interrupted.
    Tracker(tracker::Args),
    /// Store and read BEP 44 items (immutable, or signed mutable) in the mainline DHT.
    Dht(dht_cmd::Args),
    /// A netcat that finds its peer by public key: `pipe listen` and `pipe connect`.
    Pipe(pipe::Args),
    /// IPFS: import, export, serve and fetch content by CID (UnixFS, CAR, trustless gateway).
    Ipfs(ipfs::Args),
    /// Run an always-on node with many torrents, an HTTP API and a web UI (foreground).
    Daemon(daemon::Args),
    /// Add a torrent to a running daemon: a .torrent file, a magnet link or a URL.
    Add(client::AddArgs),
    /// List the daemon's torrents.
    Ls(client::LsArgs),
    /// Show one torrent of the daemon, with its files.
    Show(client::IdArgs),
    /// Pause a torrent of the daemon.
    Pause(client::IdArgs),
    /// Resume a paused torrent of the daemon.
    Resume(client::IdArgs),
    /// Remove a torrent from the daemon, with --delete-data its files too.
    Rm(client::RmArgs),
    /// Show or set rate limits: of one torrent, or without an ID of the whole daemon.
    Limit(client::LimitArgs),
    /// Move a torrent's data to another folder, through the daemon (it stops and starts
    /// again if it was running).
    Move(client::MoveArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Create(args) => create::run(args),
        Command::Info(args) => info::run(args),
        Command::Download(args) => download::download(args),
        Command::Seed(args) => download::seed(args),
        Command::Demo(args) => demo::run(args),
        Command::Tracker(args) => tracker::run(args),
        Command::Dht(args) => dht_cmd::run(args),
        Command::Pipe(args) => pipe::run(args),
        Command::Ipfs(args) => ipfs::run(args),
        Command::Daemon(args) => daemon::run(args),
        Command::Add(args) => client::add(args),
        Command::Ls(args) => client::ls(args),
        Command::Show(args) => client::show(args),
        Command::Pause(args) => client::pause(args),
        Command::Resume(args) => client::resume(args),
        Command::Rm(args) => client::rm(args),
        Command::Limit(args) => client::limit(args),
        Command::Move(args) => client::move_data(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the error holds.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// A command's failure: a message for the user.
#[derive(Debug)]
pub struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl CliError {
    pub fn new(msg: impl Into<String>) -> Self {
        CliError(msg.into())
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: either stops a command cleanly (connections
/// closed, resume data and the DHT routing table saved, trackers told `stopped`).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
