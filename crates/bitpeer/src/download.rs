//! `bitpeer download` and `bitpeer seed`: run one torrent over TCP with the peers given.

use crate::{CliError, CliResult, info::read_torrent_file, units};
use engine::magnet::MetadataSources;
use engine::session::{DhtSettings, LsdSettings, Session, SessionConfig};
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
    /// Where to listen for peers (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6881")]
    listen: String,
    /// Keep seeding once the download is complete, until interrupted.
    #[arg(long)]
    seed: bool,
    /// Do not look for peers on the local network (BEP 14 Local Service Discovery).
    #[arg(long)]
    no_lsd: bool,
    #[command(flatten)]
    dht: DhtArgs,
    /// Print one JSON progress object per line instead of a progress bar.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct SeedArgs {
    /// The .torrent file to seed.
    torrent: String,
    /// The folder that holds the content (a multi-file torrent named X is in DIR/X/).
    #[arg(long = "data", value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Where to listen for peers (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6881")]
    listen: String,
    /// A peer to connect to; repeatable.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
    /// Do not announce on the local network (BEP 14 Local Service Discovery).
    #[arg(long)]
    no_lsd: bool,
    #[command(flatten)]
    dht: DhtArgs,
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

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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
async fn bind(listen: &str, lsd: bool, dht: &DhtArgs) -> CliResult<Session> {
    let listen: SocketAddr = listen.parse().map_err(|_| {
        CliError::new(format!(
            "bad --listen address `{listen}` (expected HOST:PORT)"
        ))
    })?;
    let tries = if listen.port() == 6881 { 9 } else { 1 };
    let mut bound = Err(CliError::new("cannot listen"));
    for i in 0..tries {
        let addr = SocketAddr::new(listen.ip(), listen.port() + i);
        let mut config = SessionConfig::new(addr);
        config.lsd = lsd.then(|| lsd_settings(addr));
        config.dht = dht.settings(addr);
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
    Ok(session)
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

/// Bind the session and add the torrent.
async fn start(
    meta: Metainfo,
    dir: PathBuf,
    listen: &str,
    peers: Vec<SocketAddr>,
    lsd: bool,
    dht: &DhtArgs,
) -> CliResult<(Session, Torrent)> {
    let session = bind(listen, lsd, dht).await?;
    let torrent = add(&session, meta, dir, peers).await?;
    Ok((session, torrent))
}

/// A magnet link's first step: the info dictionary from peers (BEP 9), found through the
/// link's `x.pe` peers and `tr` trackers and `--peer`. Shows its progress; Ctrl-C stops it.
/// Returns the torrent and the addresses met on the way.
async fn fetch_metadata(
    session: &Session,
    magnet: &Magnet,
    peers: &[SocketAddr],
    json: bool,
) -> CliResult<(Metainfo, Vec<SocketAddr>)> {
    let mut all = peers.to_vec();
    for p in &magnet.peers {
        // A bad x.pe entry is the link's problem, not a reason to stop.
        if let Ok(a) = resolve(std::slice::from_ref(p)) {
            all.extend(a);
        }
    }
    let trackers: Vec<Vec<String>> = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
    let info_hash = magnet.info_hashes.get_v1().map(|h| h.0).unwrap_or_default();
    let fetch = session.fetch_metadata(
        info_hash,
        MetadataSources {
            peers: all,
            trackers: trackers.clone(),
        },
    );
    let started = Instant::now();
    let spinner = if json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let meta = loop {
        tokio::select! {
            m = fetch.wait(trackers.clone(), magnet.web_seeds.clone()) => {
                break m.map_err(|e| CliError::new(e.to_string()))?;
            }
            _ = tick.tick() => {
                let s = fetch.stats();
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
                return Err(CliError::new("interrupted while fetching the metadata"));
            }
        }
    };
    spinner.finish_and_clear();
    let known = fetch.known_peers();
    fetch.stop();
    Ok((meta, known))
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
    let peers = resolve(&args.peers)?;
    let rt = runtime()?;
    let result = rt.block_on(async {
        let lsd = !args.no_lsd;
        let session = bind(&args.listen, lsd, &args.dht).await?;
        // On stderr, so stdout stays the progress stream; other peers may dial it. For a
        // .torrent once the torrent is ready for them; for a magnet link at once.
        let listening = format!("listening on {}", session.listen_addr());
        let from_magnet = matches!(source, Source::Magnet(_));
        let (meta, met) = match source {
            Source::Torrent(meta) => (*meta, Vec::new()),
            Source::Magnet(m) => {
                eprintln!("{listening}");
                match fetch_metadata(&session, &m, &peers, args.json).await {
                    Ok(found) => found,
                    Err(e) => {
                        session.shutdown().await;
                        return Err(e);
                    }
                }
            }
        };
        let t = add(&session, meta, args.dir.clone(), peers).await?;
        t.add_peers(&met);
        if !from_magnet {
            eprintln!("{listening}");
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
        let done = loop {
            tokio::select! {
                _ = t.wait_complete() => break true,
                _ = tick.tick() => {
                    tracker_log.update(&t, &bar);
                    report(&t.stats(), &bar, args.json, started, "downloading");
                }
                _ = &mut stop => break false,
            }
        };
        report(
            &t.stats(),
            &bar,
            args.json,
            started,
            if done { "complete" } else { "interrupted" },
        );
        bar.finish_and_clear();
        if !done {
            t.shutdown().await;
            session.shutdown().await;
            return Err(CliError::new(
                "interrupted; run the same command again to resume",
            ));
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
        t.shutdown().await;
        session.shutdown().await;
        Ok(())
    });
    finish(rt);
    result
}

pub fn seed(args: SeedArgs) -> CliResult {
    let meta = load(&args.torrent)?;
    let peers = resolve(&args.peers)?;
    let rt = runtime()?;
    let result = rt.block_on(async {
        let lsd = !args.no_lsd;
        let (session, t) =
            start(meta, args.dir.clone(), &args.listen, peers, lsd, &args.dht).await?;
        let s = t.stats();
        if s.pieces_have < s.piece_count {
            t.shutdown().await;
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
        serve_until_interrupted(&t, &mut TrackerLog::default()).await;
        t.shutdown().await;
        session.shutdown().await;
        Ok(())
    });
    finish(rt);
    result
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
