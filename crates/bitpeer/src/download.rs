//! `bitpeer download` and `bitpeer seed`: run one torrent over TCP with the peers given.

use crate::{CliError, CliResult, info::read_torrent_file, units};
use engine::session::{
    AddSource, AddTorrent, DhtSettings, LsdSettings, Session, SessionConfig, TorrentState,
};
use engine::settings::Settings;
use engine::torrent::{Stats, Torrent, TorrentConfig};
use indicatif::{ProgressBar, ProgressStyle};
use metainfo::Metainfo;
use metainfo::magnet::Magnet;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct DownloadArgs {
    /// The .torrent file or magnet link to download. Peers come from the torrent's (or
    /// the magnet's tr=) trackers, the DHT, peer exchange, the local network (LSD), a
    /// magnet's x.pe peers and --peer.
    torrent: String,
    /// The folder that receives the content (a multi-file torrent named X goes in DIR/X/).
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// A peer to connect to; repeatable.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
    /// Where to listen for peers (TCP, and UDP for the DHT): `HOST:PORT`, or one address
    /// of each family as `V4,V6` (e.g. `127.0.0.1:0,[::1]:0`). `0.0.0.0:PORT` or `[::]:PORT`
    /// is every interface of both IPv4 and IPv6. Port 0: any free port.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6881")]
    listen: String,
    /// Keep seeding once the download is complete, until interrupted.
    #[arg(long)]
    seed: bool,
    /// Transports for peer connections, both ways: `tcp`, `utp` (BEP 29, on the DHT's UDP
    /// port) or `tcp,utp`. With both, peers are dialled over TCP and then over uTP if that
    /// fails (uTP first for peers that peer exchange says accept it).
    #[arg(long, value_name = "LIST", default_value = "tcp,utp")]
    transports: engine::transport::Transports,
    /// Do not look for peers on the local network (BEP 14 Local Service Discovery).
    #[arg(long)]
    no_lsd: bool,
    /// Ask the router to forward the listening port (TCP and UDP) by UPnP IGD or
    /// NAT-PMP/PCP, renew the mapping while running and remove it at the end.
    #[arg(long)]
    port_mapping: bool,
    #[command(flatten)]
    dht: DhtArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// Download only these files, by index as `bitpeer info` lists them, e.g. `0,3-5`.
    /// Other files are not created (bytes of theirs that share a piece with a chosen
    /// file are kept in a part file). Default: every file, or a magnet's `so=` list.
    #[arg(long, value_name = "LIST", value_parser = parse_only)]
    only: Option<FileSelection>,
    /// Fetch pieces in order, so a file can be played while it downloads.
    #[arg(long)]
    sequential: bool,
    /// Print one JSON progress object per line instead of a progress bar.
    #[arg(long)]
    json: bool,
    /// A WebSocket tracker (ws:// or wss://) that introduces WebTorrent peers (browsers,
    /// Node), reached over WebRTC data channels; repeatable. The torrent's own ws:// and
    /// wss:// trackers are used without it.
    #[arg(long = "webtorrent-tracker", value_name = "URL")]
    webtorrent_trackers: Vec<String>,
    /// A STUN server (HOST:PORT) that tells each WebRTC session its public address, offered
    /// to WebTorrent peers as a server-reflexive candidate (for peers behind another NAT).
    /// None by default: no STUN server is ever asked unless given here.
    #[arg(long, value_name = "HOST:PORT")]
    stun: Option<String>,
}

/// File indexes chosen with `--only`.
#[derive(Debug, Clone)]
struct FileSelection(Vec<std::ops::RangeInclusive<u32>>);

/// `0,3-5` → [0..=0, 3..=5].
fn parse_only(s: &str) -> Result<FileSelection, String> {
    let bad = || format!("`{s}` is not a list of file indexes like 0,3-5");
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: u32 = a.parse().map_err(|_| bad())?;
        let b: u32 = b.parse().map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
        out.push(a..=b);
    }
    Ok(FileSelection(out))
}

/// Rate and connection limits of `download` and `seed`.
#[derive(clap::Args)]
pub struct LimitArgs {
    /// Most bytes per second to download, e.g. 500k or 2M (k = 1024); 0: no limit.
    #[arg(long, value_name = "RATE", value_parser = parse_rate, default_value = "0")]
    download_limit: u64,
    /// Most bytes per second to upload, e.g. 500k or 2M (k = 1024); 0: no limit.
    #[arg(long, value_name = "RATE", value_parser = parse_rate, default_value = "0")]
    upload_limit: u64,
    /// Most peers to be connected to at once.
    #[arg(long, value_name = "N", default_value_t = 80,
          value_parser = clap::value_parser!(u16).range(1..))]
    max_peers: u16,
    /// Protocol encryption (MSE/PE): `prefer` dials encrypted and again in plaintext
    /// when a peer refuses, and accepts both; `require` makes and accepts only RC4-
    /// encrypted connections; `disable` only plaintext ones.
    #[arg(long, value_name = "POLICY", default_value = "prefer")]
    encryption: engine::settings::Encryption,
}

impl LimitArgs {
    fn settings(&self) -> Settings {
        Settings {
            download_limit: self.download_limit,
            upload_limit: self.upload_limit,
            max_peers_per_torrent: usize::from(self.max_peers),
            encryption: self.encryption,
            ..Settings::default()
        }
    }
}

fn parse_rate(s: &str) -> Result<u64, String> {
    engine::settings::parse_rate(s)
        .ok_or_else(|| format!("`{s}` is not a rate (bytes per second, like 500k or 2M)"))
}

#[derive(clap::Args)]
pub struct SeedArgs {
    /// The .torrent file to seed.
    torrent: String,
    /// The folder that holds the content (a multi-file torrent named X is in DIR/X/).
    #[arg(long = "data", value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Where to listen for peers (TCP, and UDP for the DHT): `HOST:PORT`, or one address
    /// of each family as `V4,V6` (e.g. `127.0.0.1:0,[::1]:0`). `0.0.0.0:PORT` or `[::]:PORT`
    /// is every interface of both IPv4 and IPv6. Port 0: any free port.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6881")]
    listen: String,
    /// A peer to connect to; repeatable.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
    /// Transports for peer connections, both ways: `tcp`, `utp` (BEP 29, on the DHT's UDP
    /// port) or `tcp,utp`. With both, peers are dialled over TCP and then over uTP if that
    /// fails (uTP first for peers that peer exchange says accept it).
    #[arg(long, value_name = "LIST", default_value = "tcp,utp")]
    transports: engine::transport::Transports,
    /// Do not announce on the local network (BEP 14 Local Service Discovery).
    #[arg(long)]
    no_lsd: bool,
    /// Ask the router to forward the listening port (TCP and UDP) by UPnP IGD or
    /// NAT-PMP/PCP, renew the mapping while running and remove it at the end.
    #[arg(long)]
    port_mapping: bool,
    #[command(flatten)]
    dht: DhtArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// A WebSocket tracker (ws:// or wss://) that introduces WebTorrent peers (browsers,
    /// Node), reached over WebRTC data channels; repeatable. The torrent's own ws:// and
    /// wss:// trackers are used without it.
    #[arg(long = "webtorrent-tracker", value_name = "URL")]
    webtorrent_trackers: Vec<String>,
    /// A STUN server (HOST:PORT) that tells each WebRTC session its public address, offered
    /// to WebTorrent peers as a server-reflexive candidate (for peers behind another NAT).
    /// None by default: no STUN server is ever asked unless given here.
    #[arg(long, value_name = "HOST:PORT")]
    stun: Option<String>,
}

/// The DHT options of `download` and `seed`.
#[derive(clap::Args)]
pub struct DhtArgs {
    /// Do not use the mainline DHT (BEP 5). Private torrents never use it.
    #[arg(long)]
    no_dht: bool,
    /// A DHT node to join through, instead of the well-known routers; repeatable. The
    /// routing table of the last run on the same port is tried first.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    dht_bootstrap: Vec<String>,
}

impl DhtArgs {
    fn settings(&self, listen: SocketAddr) -> Option<DhtSettings> {
        if self.no_dht {
            return None;
        }
        let mut s = DhtSettings::default();
        if !self.dht_bootstrap.is_empty() {
            s.bootstrap = self.dht_bootstrap.clone();
        }
        // Kept per port: two nodes on one machine must not share a node id. A node on an
        // ephemeral port (0) keeps nothing.
        if listen.port() != 0 {
            s.state_file = state_dir().map(|d| d.join(format!("dht-{}.dat", listen.port())));
        }
        Some(s)
    }
}

/// `$XDG_STATE_HOME/bitpeer` or `~/.local/state/bitpeer`, created if needed.
pub(crate) fn state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    let dir = base.join("bitpeer");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// Stop the runtime without waiting long for blocking work still running (a DNS lookup of a
/// DHT router that will never answer): everything that must reach the disk was awaited.
fn finish(rt: tokio::runtime::Runtime) {
    rt.shutdown_timeout(Duration::from_millis(500));
}

/// Threads for blocking work (hashing pieces, disk reads and writes); tokio's default is
/// 512. Hashing is CPU-bound and the page cache answers most reads and writes, so more
/// threads than this only add thread starts, wakeups and malloc arenas: in a 20-leecher
/// swarm on 2 cores each process started about 85 of them.
const MAX_BLOCKING_THREADS: usize = 8;

/// How many threads run a node's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workers {
    /// One per core (tokio's default): the daemon, with many torrents and peers.
    PerCore,
    /// Half the cores, at least one: `seed` and `download`, one torrent each. Their tasks
    /// move blocks between sockets and buffers; the CPU goes to the kernel's copies and to
    /// the hashing and disk work on blocking threads, which the other cores are left for.
    /// With a worker per core each connection's reader and writer tasks woke each other
    /// across threads. On 2 cores: bitpeer -> bitpeer 1 GiB, medians of 5 interleaved,
    /// 1.42 s with a one-worker seeder against 1.48 s with two (a one-worker downloader
    /// the same either way); libtorrent -> bitpeer, medians of 6 interleaved, 2.60 s with
    /// a one-worker downloader against 2.61 s; the 20-leecher swarm, 3 interleaved rounds,
    /// 7.70-8.42 s against 8.21-8.65 s, and a third less memory per leecher.
    Half,
}

fn runtime(workers: Workers) -> CliResult<tokio::runtime::Runtime> {
    node_runtime(workers, MAX_BLOCKING_THREADS)
}

/// The runtime of a node: `workers` threads run the tasks, and the hashing and disk work
/// goes to at most `max_blocking` threads of its own (`TOKIO_WORKER_THREADS`, when set,
/// decides the workers).
pub(crate) fn node_runtime(
    workers: Workers,
    max_blocking: usize,
) -> CliResult<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers == Workers::Half && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads((cores / 2).max(1));
    }
    builder
        .enable_all()
        .max_blocking_threads(max_blocking)
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))
}

/// What `download` was given.
enum Source {
    Torrent(Box<Metainfo>),
    Magnet(Box<Magnet>),
}

fn is_magnet(arg: &str) -> bool {
    arg.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
}

fn load(path: &str) -> CliResult<Metainfo> {
    if is_magnet(path) {
        return Err(CliError::new(
            "seeding needs the .torrent file (or download the magnet link with --seed)",
        ));
    }
    let bytes = read_torrent_file(path)?;
    Metainfo::from_bytes(&bytes).map_err(|e| CliError::new(format!("{path}: invalid torrent: {e}")))
}

fn load_source(arg: &str) -> CliResult<Source> {
    if !is_magnet(arg) {
        return Ok(Source::Torrent(Box::new(load(arg)?)));
    }
    let m = Magnet::parse(arg).map_err(|e| CliError::new(format!("invalid magnet link: {e}")))?;
    if m.info_hashes.get_v1().is_none() {
        return Err(CliError::new(
            "this magnet link has only a v2 info-hash (btmh), which bitpeer cannot download yet",
        ));
    }
    Ok(Source::Magnet(Box::new(m)))
}

fn resolve(addrs: &[String]) -> CliResult<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    addrs
        .iter()
        .map(|a| {
            a.to_socket_addrs()
                .ok()
                .and_then(|mut it| it.next())
                .ok_or_else(|| {
                    CliError::new(format!(
                        "cannot resolve peer address `{a}` (expected HOST:PORT)"
                    ))
                })
        })
        .collect()
}

/// Bind the session. `--listen`: the address given, or if its port is taken and it is the
/// default 6881, the next free port up to 6889.
async fn bind(
    listen: &str,
    lsd: bool,
    dht: &DhtArgs,
    limits: &LimitArgs,
    transports: engine::transport::Transports,
) -> CliResult<Session> {
    let (listen, second) = parse_listen(listen)?;
    let tries = if listen.port() == 6881 { 9 } else { 1 };
    let mut bound = Err(CliError::new("cannot listen"));
    for i in 0..tries {
        let addr = SocketAddr::new(listen.ip(), listen.port() + i);
        let mut config = SessionConfig::new(addr);
        if second.is_some() {
            config.listen6 = second;
        }
        config.lsd = lsd.then(|| lsd_settings(addr));
        config.dht = dht.settings(addr);
        config.settings = limits.settings();
        config.transports = transports;
        bound = Session::start(config)
            .await
            .map_err(|e| CliError::new(e.to_string()));
        if bound.is_ok() {
            break;
        }
    }
    let session = bound?;
    if let Some(e) = session.lsd_error() {
        eprintln!("warning: local peer discovery is off: {e}");
    }
    if let Some(e) = session.dht_error() {
        eprintln!("warning: the DHT is off: {e}");
    }
    if let Some(e) = session.listen6_error() {
        eprintln!("warning: {e}");
    }
    Ok(session)
}

/// `--listen`: `HOST:PORT`, or `V4,V6` (one address of each family).
pub(crate) fn parse_listen(listen: &str) -> CliResult<(SocketAddr, Option<SocketAddr>)> {
    let bad = || {
        CliError::new(format!(
            "bad --listen address `{listen}` (expected HOST:PORT, or one IPv4 and one IPv6 \
             address as V4,V6)"
        ))
    };
    let mut parts = listen.split(',');
    let first: SocketAddr = parts
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .map_err(|_| bad())?;
    let second: Option<SocketAddr> = match parts.next() {
        Some(p) => Some(p.trim().parse().map_err(|_| bad())?),
        None => None,
    };
    if parts.next().is_some() || second.is_some_and(|s| s.is_ipv4() == first.is_ipv4()) {
        return Err(bad());
    }
    Ok((first, second))
}

async fn add(
    session: &Session,
    meta: Metainfo,
    dir: PathBuf,
    peers: Vec<SocketAddr>,
) -> CliResult<Torrent> {
    let config = TorrentConfig::new(dir, peers);
    session
        .add_torrent(meta, config, Arc::new(AtomicU64::new(0)))
        .await
        .map_err(|e| CliError::new(e.to_string()))
}

/// Wait until the torrent is live: for a magnet link, while its metadata is fetched from
/// peers (BEP 9), show how that goes; Ctrl-C stops it.
async fn wait_live(
    session: &Session,
    id: engine::session::TorrentId,
    json: bool,
) -> CliResult<Torrent> {
    let started = Instant::now();
    let spinner = if json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let live = session.wait_live(id);
    tokio::pin!(live);
    let result = loop {
        tokio::select! {
            t = &mut live => break t.map_err(|e| CliError::new(e.to_string())),
            _ = tick.tick() => {
                let Some(info) = session.info(id) else { continue };
                let Some(s) = info.fetch.filter(|_| info.state == TorrentState::Metadata) else {
                    continue;
                };
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "state": "metadata",
                            "candidates": s.candidates,
                            "peers": s.connected,
                            "metadata_pieces": s.pieces,
                            "metadata_piece_count": s.piece_count,
                            "banned": s.banned,
                            "elapsed": started.elapsed().as_secs_f64(),
                        })
                    );
                } else {
                    spinner.set_message(format!(
                        "fetching the torrent's metadata: {} peers known, {} connected, {}/{} pieces",
                        s.candidates, s.connected, s.pieces, s.piece_count
                    ));
                    spinner.tick();
                }
            }
            _ = &mut stop => {
                let what = match session.info(id).map(|i| i.state) {
                    Some(TorrentState::Metadata) => "while fetching the metadata",
                    _ => "while checking the data",
                };
                break Err(CliError::new(format!("interrupted {what}")));
            }
        }
    };
    spinner.finish_and_clear();
    result
}

/// LSD on the interface of the listening address: a node listening on loopback is only
/// reachable there.
fn lsd_settings(listen: SocketAddr) -> LsdSettings {
    let mut s = LsdSettings::default();
    if let std::net::IpAddr::V4(ip) = listen.ip()
        && !ip.is_unspecified()
    {
        s.interface = ip;
    }
    s
}

pub fn download(args: DownloadArgs) -> CliResult {
    let source = load_source(&args.torrent)?;
    for u in &args.webtorrent_trackers {
        crate::webtorrent_peer::check_url(u)?;
    }
    let stun = crate::webtorrent_peer::resolve_stun(args.stun.as_deref())?;
    let peers = resolve(&args.peers)?;
    let rt = runtime(Workers::Half)?;
    let result = rt.block_on(async {
        let lsd = !args.no_lsd;
        let session = bind(
            &args.listen,
            lsd,
            &args.dht,
            &args.limits,
            args.transports,
        )
        .await?;
        let mapper = args
            .port_mapping
            .then(|| crate::port_mapping::start(&session, 3600))
            .flatten();
        // On stderr, so stdout stays the progress stream; other peers may dial it. For a
        // .torrent once the torrent is ready for them; for a magnet link at once.
        let mut listening = format!("listening on {}", session.listen_addr());
        if let Some(a) = session.listen_addr6() {
            listening.push_str(&format!("\nalso listening on {a}"));
        }
        let from_magnet = matches!(source, Source::Magnet(_));
        if from_magnet {
            eprintln!("{listening}");
        }
        let mut config = TorrentConfig::new(args.dir.clone(), peers.clone());
        config.sequential = args.sequential;
        let source = match source {
            Source::Torrent(meta) => AddSource::Torrent(meta),
            Source::Magnet(m) => {
                // BEP 53: the link's own file selection, unless --only says otherwise.
                config.only = m.select_only.clone();
                AddSource::Magnet(m)
            }
        };
        if let Some(only) = &args.only {
            config.only = only.0.clone();
        }
        let added = session.add(AddTorrent {
            source,
            config,
            paused: false,
        });
        let live = match added {
            Ok(id) => wait_live(&session, id, args.json).await,
            Err(e) => Err(CliError::new(e.to_string())),
        };
        let t = match live {
            Ok(t) => t,
            Err(e) => {
                session.shutdown().await;
                return Err(e);
            }
        };
        if !from_magnet {
            eprintln!("{listening}");
        }
        let ws = crate::webtorrent_peer::ws_urls(t.metainfo(), &args.webtorrent_trackers);
        if let Err(e) = start_webtorrent(&session, &t, &ws, stun).await {
            session.shutdown().await;
            return Err(e);
        }
        let trackers = t.tracker_status().len();
        if args.peers.is_empty() && trackers == 0 && (args.no_lsd || t.is_private()) {
            eprintln!("no --peer and no tracker: waiting for peers to connect");
        }
        let started = Instant::now();
        let bar = bar(&t, args.json);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut tracker_log = TrackerLog::default();
        // One listener for the whole wait: a signal between two loop turns is not lost.
        let stop = crate::shutdown_signal();
        tokio::pin!(stop);
        let fatal = t.wait_fatal();
        tokio::pin!(fatal);
        enum End {
            Complete,
            Interrupted,
            Failed(String),
        }
        let end = loop {
            tokio::select! {
                _ = t.wait_complete() => break End::Complete,
                e = &mut fatal => break End::Failed(e),
                _ = tick.tick() => {
                    tracker_log.update(&t, &bar);
                    report(&t.stats(), &bar, args.json, started, "downloading");
                }
                _ = &mut stop => break End::Interrupted,
            }
        };
        let state = match &end {
            End::Complete => "complete",
            End::Interrupted => "interrupted",
            End::Failed(_) => "error",
        };
        report(&t.stats(), &bar, args.json, started, state);
        bar.finish_and_clear();
        match end {
            End::Complete => {}
            End::Interrupted => {
                if let Some(m) = mapper {
                    m.shutdown().await;
                }
                session.shutdown().await;
                return Err(CliError::new(
                    "interrupted; run the same command again to resume",
                ));
            }
            End::Failed(e) => {
                session.shutdown().await;
                return Err(CliError::new(format!(
                    "{e}; the verified data is kept: free the space and run the same command again to resume"
                )));
            }
        }
        let s = t.stats();
        if !args.json {
            println!(
                "downloaded {} in {:.1} s ({:.1} MB/s)",
                units::size(s.total_bytes),
                started.elapsed().as_secs_f64(),
                s.downloaded as f64 / started.elapsed().as_secs_f64().max(1e-3) / 1e6
            );
        }
        if args.seed {
            if let Some(a) = t.listen_addr() {
                println!("seeding on {a}");
            }
            serve_until_interrupted(&t, &mut tracker_log).await;
        }
        if let Some(m) = mapper {
            m.shutdown().await;
        }
        session.shutdown().await;
        Ok(())
    });
    finish(rt);
    result
}

pub fn seed(args: SeedArgs) -> CliResult {
    let meta = load(&args.torrent)?;
    for u in &args.webtorrent_trackers {
        crate::webtorrent_peer::check_url(u)?;
    }
    let stun = crate::webtorrent_peer::resolve_stun(args.stun.as_deref())?;
    let ws = crate::webtorrent_peer::ws_urls(&meta, &args.webtorrent_trackers);
    let peers = resolve(&args.peers)?;
    let rt = runtime(Workers::Half)?;
    let result = rt.block_on(async {
        let lsd = !args.no_lsd;
        let session = bind(&args.listen, lsd, &args.dht, &args.limits, args.transports).await?;
        let mapper = args
            .port_mapping
            .then(|| crate::port_mapping::start(&session, 3600))
            .flatten();
        let t = match add(&session, meta, args.dir.clone(), peers).await {
            Ok(t) => t,
            Err(e) => {
                session.shutdown().await;
                return Err(e);
            }
        };
        let s = t.stats();
        if s.pieces_have < s.piece_count {
            session.shutdown().await;
            return Err(CliError::new(format!(
                "the data in {} is incomplete: {} of {} pieces are valid",
                args.dir.display(),
                s.pieces_have,
                s.piece_count
            )));
        }
        match t.listen_addr() {
            Some(a) => println!("listening on {a}"),
            None => println!("listening"),
        }
        if let Some(a) = session.listen_addr6() {
            println!("also listening on {a}");
        }
        if let Err(e) = start_webtorrent(&session, &t, &ws, stun).await {
            session.shutdown().await;
            return Err(e);
        }
        serve_until_interrupted(&t, &mut TrackerLog::default()).await;
        if let Some(m) = mapper {
            m.shutdown().await;
        }
        session.shutdown().await;
        Ok(())
    });
    finish(rt);
    result
}

/// WebTorrent on the torrent's ws:// trackers and those given; says where on stderr.
async fn start_webtorrent(
    session: &Session,
    t: &Torrent,
    urls: &[String],
    stun: Option<std::net::SocketAddr>,
) -> CliResult {
    if let Some(ips) = crate::webtorrent_peer::start(session, t, urls, stun).await? {
        let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
        eprintln!(
            "webrtc on udp {} ({} websocket tracker(s))",
            ips.join(", "),
            urls.len()
        );
    }
    Ok(())
}

/// Seed until Ctrl-C, telling the user about trackers that fail.
async fn serve_until_interrupted(t: &Torrent, tracker_log: &mut TrackerLog) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => tracker_log.update(t, &ProgressBar::hidden()),
            _ = &mut stop => break,
        }
    }
}

/// Tells the user on stderr when a tracker starts failing (once, not at every retry) and
/// when it works again.
#[derive(Default)]
struct TrackerLog {
    failing: std::collections::HashMap<String, String>,
}

impl TrackerLog {
    fn update(&mut self, t: &Torrent, bar: &ProgressBar) {
        for st in t.tracker_status() {
            match (&st.last_error, self.failing.get(&st.url)) {
                (Some(e), None) => {
                    bar.suspend(|| eprintln!("warning: tracker {}: {e}", st.url));
                    self.failing.insert(st.url.clone(), e.clone());
                }
                (None, Some(_)) if st.successes > 0 => {
                    bar.suspend(|| eprintln!("tracker {} works again", st.url));
                    self.failing.remove(&st.url);
                }
                _ => {}
            }
        }
    }
}

fn bar(t: &Torrent, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(t.stats().total_bytes);
    b.set_style(
        ProgressStyle::with_template("{bar:40.cyan/blue} {bytes}/{total_bytes} {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

fn report(s: &Stats, bar: &ProgressBar, json: bool, started: Instant, state: &str) {
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "state": state,
                "pieces": s.pieces_have,
                "piece_count": s.piece_count,
                "bytes": s.bytes_have,
                "total_bytes": s.total_bytes,
                "downloaded": s.downloaded,
                "uploaded": s.uploaded,
                "peers": s.peers,
                "candidates": s.candidates,
                "hash_failures": s.hash_failures,
                "banned": s.banned,
                "elapsed": secs,
            })
        );
    } else {
        bar.set_position(s.bytes_have);
        bar.set_message(format!(
            "down {:.1} MB/s up {} peers {}",
            s.downloaded as f64 / secs / 1e6,
            units::size(s.uploaded),
            s.peers
        ));
    }
}
