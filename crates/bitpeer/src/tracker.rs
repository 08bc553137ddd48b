//! `bitpeer tracker`: run a BitTorrent tracker, HTTP (BEP 3, 23, 7, 48) and UDP (BEP 15),
//! until interrupted. The work is done by `tracker::server`; this module reads the options
//! and the allow list, and prints one line per endpoint once it is listening:
//!
//! ```text
//! http tracker listening on http://ADDR/announce
//! udp tracker listening on udp://ADDR
//! websocket tracker listening on ws://ADDR
//! ```
//!
//! The WebSocket tracker (`--ws`, WebTorrent's signalling) is `webtorrent::ws_server`.

use crate::{CliError, CliResult};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracker::server::{Config, Server, ServerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Where to serve HTTP announces and scrapes (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6969")]
    http: String,
    /// Where to serve UDP announces and scrapes (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6969")]
    udp: String,
    /// Serve no HTTP.
    #[arg(long, conflicts_with = "no_udp")]
    no_http: bool,
    /// Serve no UDP.
    #[arg(long)]
    no_udp: bool,
    /// Also serve a WebSocket tracker for WebTorrent peers (browsers) on ADDR: it relays
    /// WebRTC offers and answers between them, as npm's bittorrent-tracker does.
    #[arg(long, value_name = "ADDR")]
    ws: Option<String>,
    /// Seconds between announces asked of WebSocket peers.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(10..=86_400))]
    ws_interval: u64,
    /// Track only the info-hashes in FILE (40 hex digits a line; `#` starts a comment).
    #[arg(long, value_name = "FILE")]
    allow: Option<PathBuf>,
    /// Seconds between announces asked of peers; peers silent for about two are dropped.
    #[arg(long, value_name = "SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    interval: u64,
    /// Most torrents tracked at once.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_torrents: usize,
    /// Most peers tracked in all torrents together.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    max_peers: usize,
    /// Most peers tracked in one torrent; a newcomer to a full torrent replaces the peer
    /// that announced longest ago.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    max_peers_per_torrent: usize,
    /// Most peers of one IPv4 address (or IPv6 /64) in one torrent, so one host cannot fill
    /// a swarm with made-up peer ids; a newcomer beyond it replaces that address's peer that
    /// announced longest ago.
    #[arg(long, value_name = "N",
          default_value_t = tracker::server::state::DEFAULT_MAX_PEERS_PER_IP as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_peers_per_ip: u64,
}

fn parse_addr(what: &str, s: &str) -> CliResult<SocketAddr> {
    s.parse().map_err(|_| {
        CliError::new(format!(
            "invalid {what} address `{s}` (expected IP:PORT, e.g. 0.0.0.0:6969 or [::]:6969)"
        ))
    })
}

/// Reads an allow list: one info-hash in hex a line, blank lines and `#` comments skipped.
fn read_allow(path: &Path) -> CliResult<HashSet<[u8; 20]>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    let mut set = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = || {
            CliError::new(format!(
                "{}:{}: not an info-hash (40 hex digits): `{line}`",
                path.display(),
                n + 1
            ))
        };
        if line.len() != 40 || !line.is_ascii() {
            return Err(bad());
        }
        let mut h = [0u8; 20];
        for (i, b) in h.iter_mut().enumerate() {
            *b = u8::from_str_radix(&line[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        set.insert(h);
    }
    Ok(set)
}

pub fn run(args: Args) -> CliResult {
    let http = (!args.no_http)
        .then(|| parse_addr("--http", &args.http))
        .transpose()?;
    let udp = (!args.no_udp)
        .then(|| parse_addr("--udp", &args.udp))
        .transpose()?;
    let mut tracker = Config::with_interval(Duration::from_secs(args.interval));
    tracker.max_swarms = args.max_torrents;
    tracker.max_peers = args.max_peers;
    tracker.max_peers_per_swarm = args.max_peers_per_torrent;
    tracker.max_peers_per_ip = usize::try_from(args.max_peers_per_ip).unwrap_or(usize::MAX);
    if let Some(path) = &args.allow {
        tracker.allow = Some(read_allow(path)?);
    }
    let ws = args
        .ws
        .as_deref()
        .map(|a| parse_addr("--ws", a))
        .transpose()?;
    let mut ws_config = webtorrent::server::Config {
        interval: Duration::from_secs(args.ws_interval),
        peer_timeout: Duration::from_secs(args.ws_interval * 3),
        max_swarms: args.max_torrents,
        max_peers: args.max_peers,
        ..webtorrent::server::Config::default()
    };
    ws_config.max_peers_per_swarm = ws_config
        .max_peers_per_swarm
        .min(args.max_peers_per_torrent);
    let config = ServerConfig {
        http,
        udp,
        tracker,
        ..ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async {
        let server = Server::bind(config)
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        let ws = match ws {
            Some(addr) => Some(
                webtorrent::ws_server::WsServer::bind(addr, ws_config)
                    .await
                    .map_err(|e| CliError::new(e.to_string()))?,
            ),
            None => None,
        };
        if let Some(a) = server.http_addr() {
            println!("http tracker listening on http://{a}/announce");
        }
        if let Some(a) = server.udp_addr() {
            println!("udp tracker listening on udp://{a}");
        }
        if let Some(a) = ws.as_ref().and_then(|w| w.local_addr()) {
            println!("websocket tracker listening on ws://{a}");
        }
        let ws_run = async {
            match ws {
                Some(w) => w.run().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = server.run() => Ok(()),
            _ = ws_run => Ok(()),
            _ = crate::shutdown_signal() => Ok(()),
        }
    })
}
